/* Process protection for anything that holds key material: no core dumps, and a secure heap
 * whose pages are locked in memory (or a loud report that they are not). */
#include "config.h"

#include "provider/protect.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

/* Locked memory for key bytes and PINs; one process-wide heap shared with anything else in the
 * process that uses OpenSSL's secure heap. */
#define SECURE_HEAP_SIZE (1u << 20)
#define SECURE_HEAP_FALLBACK (1u << 15)
#define SECURE_HEAP_MIN 16

static pthread_mutex_t heap_mutex = PTHREAD_MUTEX_INITIALIZER;
static protect_heap_state heap_state = PROTECT_HEAP_NONE;

/* CRYPTO_secure_malloc_init returns 1 when the heap is locked, 2 when mlock (or MADV_DONTDUMP)
 * failed and the heap is ordinary memory, 0 when there is no heap. RLIMIT_MEMLOCK may be small
 * for ordinary users: an unlocked large heap is dropped for a smaller one that may fit. */
static protect_heap_state init_heap_locked(void)
{
    if (CRYPTO_secure_malloc_initialized())
        return heap_state != PROTECT_HEAP_NONE ? heap_state : PROTECT_HEAP_FOREIGN;
    int rc = CRYPTO_secure_malloc_init(SECURE_HEAP_SIZE, SECURE_HEAP_MIN);
    if (rc == 1)
        return PROTECT_HEAP_LOCKED;
    if (rc == 2)
        CRYPTO_secure_malloc_done();
    rc = CRYPTO_secure_malloc_init(SECURE_HEAP_FALLBACK, SECURE_HEAP_MIN);
    return rc == 1 ? PROTECT_HEAP_LOCKED : rc == 2 ? PROTECT_HEAP_UNLOCKED : PROTECT_HEAP_NONE;
}

static void report_unlocked(protect_heap_state state)
{
    struct rlimit rl;
    char limit[32] = "unknown";
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY)
            snprintf(limit, sizeof(limit), "unlimited");
        else
            snprintf(limit, sizeof(limit), "%llu bytes", (unsigned long long)rl.rlim_cur);
    }
    fprintf(stderr,
            "p11kms: WARNING: the secure heap is %s (RLIMIT_MEMLOCK %s): keys and PINs may be "
            "swapped to disk. Raise the limit (ulimit -l, LimitMEMLOCK=) or set "
            "\"secure-memory: required\" to refuse to start.\n",
            state == PROTECT_HEAP_UNLOCKED ? "not locked in memory" : "not available", limit);
}

protect_heap_state protect_secure_heap(void)
{
    pthread_mutex_lock(&heap_mutex);
    bool first = heap_state == PROTECT_HEAP_NONE;
    heap_state = init_heap_locked();
    protect_heap_state state = heap_state;
    pthread_mutex_unlock(&heap_mutex);
    if (first && (state == PROTECT_HEAP_UNLOCKED || state == PROTECT_HEAP_NONE))
        report_unlocked(state);
    return state;
}

p11kms_err protect_no_core_dumps(p11kms_error *err)
{
    /* Not dumpable: no core file, and /proc/PID/mem is closed to other processes of the user. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "cannot disable core dumps: prctl: %s",
                            strerror(errno));
    /* execve resets the dumpable flag; RLIMIT_CORE 0 is inherited by whatever this runs. */
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "cannot disable core dumps: setrlimit: %s",
                            strerror(errno));
    return P11KMS_OK;
}

p11kms_err p11kms_protect_process(unsigned flags, p11kms_error *err)
{
    if ((flags & P11KMS_OPEN_NO_CORE_DUMPS) != 0) {
        p11kms_err rc = protect_no_core_dumps(err);
        if (rc != P11KMS_OK)
            return rc;
    }
    protect_heap_state state = protect_secure_heap();
    if ((flags & P11KMS_OPEN_REQUIRE_LOCKED_MEMORY) != 0 && state != PROTECT_HEAP_LOCKED &&
        state != PROTECT_HEAP_FOREIGN)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "secure-memory: required, but the secure heap is not locked in "
                            "memory (raise RLIMIT_MEMLOCK: ulimit -l, LimitMEMLOCK=)");
    return P11KMS_OK;
}
