/* sync_init_all (common/threads.c): the program replaces pthread_mutex_init, pthread_cond_init
 * and pthread_rwlock_init so that the Nth call fails, for every N of a list of four objects.
 * Each failure must raise the right class naming the object, and destroy exactly the objects
 * initialised before it (an object whose init failed is never destroyed). */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "common/threads.h"

#define REPLACEMENT __attribute__((visibility("default")))

static int calls, fail_at = -1, fail_with;
static int destroyed;

static bool fail_now(void)
{
    return calls++ == fail_at;
}

#define REAL(name, params)                                                                         \
    static int(*real_##name) params;                                                               \
    if (real_##name == NULL)                                                                       \
        *(void **)&real_##name = dlsym(RTLD_NEXT, #name);                                          \
    REQUIRE(real_##name != NULL)

REPLACEMENT int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    REAL(pthread_mutex_init, (pthread_mutex_t *, const pthread_mutexattr_t *));
    return fail_now() ? fail_with : real_pthread_mutex_init(m, a);
}

REPLACEMENT int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a)
{
    REAL(pthread_cond_init, (pthread_cond_t *, const pthread_condattr_t *));
    return fail_now() ? fail_with : real_pthread_cond_init(c, a);
}

REPLACEMENT int pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *a)
{
    REAL(pthread_rwlock_init, (pthread_rwlock_t *, const pthread_rwlockattr_t *));
    return fail_now() ? fail_with : real_pthread_rwlock_init(l, a);
}

REPLACEMENT int pthread_mutex_destroy(pthread_mutex_t *m)
{
    REAL(pthread_mutex_destroy, (pthread_mutex_t *));
    destroyed++;
    return real_pthread_mutex_destroy(m);
}

REPLACEMENT int pthread_cond_destroy(pthread_cond_t *c)
{
    REAL(pthread_cond_destroy, (pthread_cond_t *));
    destroyed++;
    return real_pthread_cond_destroy(c);
}

REPLACEMENT int pthread_rwlock_destroy(pthread_rwlock_t *l)
{
    REAL(pthread_rwlock_destroy, (pthread_rwlock_t *));
    destroyed++;
    return real_pthread_rwlock_destroy(l);
}

int main(void)
{
    pthread_mutex_t a, b;
    pthread_cond_t c;
    pthread_rwlock_t d;
    const sync_obj objs[] = {
        {SYNC_MUTEX, &a, "lock A"},
        {SYNC_MUTEX_RECURSIVE, &b, "lock B"},
        {SYNC_COND, &c, "condition C"},
        {SYNC_RWLOCK, &d, "lock D"},
    };
    const size_t n = sizeof(objs) / sizeof(objs[0]);
    static const char *const names[] = {"lock A", "lock B", "condition C", "lock D"};

    for (int with = 0; with < 2; with++) {
        fail_with = with == 0 ? EAGAIN : EPERM;
        for (int k = 0; k < (int)n; k++) {
            p11kms_error e = {0};
            calls = destroyed = 0;
            fail_at = k;
            p11kms_err rc = sync_init_all(objs, n, &e);
            fail_at = -1;
            CHECK(rc == (fail_with == EAGAIN ? P11KMS_E_NO_MEMORY : P11KMS_E_INTERNAL));
            CHECK(e.code == rc);
            CHECK(strstr(e.message, names[k]) != NULL);
            CHECK(strstr(e.message, strerror(fail_with)) != NULL);
            CHECK(destroyed == k); /* those before k, not k itself */
        }
    }

    p11kms_error e = {0};
    calls = destroyed = 0;
    CHECK_OK(sync_init_all(objs, n, &e), &e);
    CHECK(calls == (int)n);
    /* The recursive mutex really is recursive. */
    CHECK(pthread_mutex_lock(&b) == 0 && pthread_mutex_lock(&b) == 0);
    CHECK(pthread_mutex_unlock(&b) == 0 && pthread_mutex_unlock(&b) == 0);
    sync_destroy_all(objs, n);
    CHECK(destroyed == (int)n);
    return check_finish("common-threads-test");
}
