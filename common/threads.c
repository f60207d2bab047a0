#include "config.h"

#include "common/threads.h"

#include <errno.h>
#include <string.h>

static int init_one(const sync_obj *o)
{
    switch (o->kind) {
    case SYNC_MUTEX:
        return pthread_mutex_init(o->obj, NULL);
    case SYNC_MUTEX_RECURSIVE: {
        pthread_mutexattr_t attr;
        int rc = pthread_mutexattr_init(&attr);
        if (rc != 0)
            return rc;
        rc = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        if (rc == 0)
            rc = pthread_mutex_init(o->obj, &attr);
        pthread_mutexattr_destroy(&attr);
        return rc;
    }
    case SYNC_COND:
        return pthread_cond_init(o->obj, NULL);
    case SYNC_RWLOCK:
        return pthread_rwlock_init(o->obj, NULL);
    }
    return EINVAL;
}

static void destroy_one(const sync_obj *o)
{
    switch (o->kind) {
    case SYNC_MUTEX:
    case SYNC_MUTEX_RECURSIVE:
        pthread_mutex_destroy(o->obj);
        break;
    case SYNC_COND:
        pthread_cond_destroy(o->obj);
        break;
    case SYNC_RWLOCK:
        pthread_rwlock_destroy(o->obj);
        break;
    }
}

p11kms_err sync_init_all(const sync_obj *objs, size_t n, p11kms_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = init_one(&objs[i]);
        if (rc != 0) {
            sync_destroy_all(objs, i);
            p11kms_err code = rc == EAGAIN || rc == ENOMEM ? P11KMS_E_NO_MEMORY : P11KMS_E_INTERNAL;
            return P11KMS_RAISE(err, code, "cannot initialise %s: %s", objs[i].name, strerror(rc));
        }
    }
    return P11KMS_OK;
}

void sync_destroy_all(const sync_obj *objs, size_t n)
{
    for (size_t i = n; i > 0; i--)
        destroy_one(&objs[i - 1]);
}
