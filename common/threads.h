/* Initialising pthread mutexes, condition variables and read-write locks with their results
 * checked: pthread_*_init can fail (EAGAIN, ENOMEM, EPERM), and an object whose init failed must
 * be neither used nor destroyed. Either every object of a list is initialised or none is. */
#ifndef P11KMS_COMMON_THREADS_H
#define P11KMS_COMMON_THREADS_H

#include <pthread.h>
#include <stddef.h>

#include "p11kms-error.h"

typedef enum sync_kind {
    SYNC_MUTEX,
    SYNC_MUTEX_RECURSIVE,
    SYNC_COND,
    SYNC_RWLOCK,
} sync_kind;

typedef struct sync_obj {
    sync_kind kind;
    void *obj;        /* pthread_mutex_t, pthread_cond_t or pthread_rwlock_t */
    const char *name; /* for the error message, e.g. "the token's login lock" */
} sync_obj;

/* Initialises objs[0..n) in order. On a failure destroys those already initialised and raises
 * P11KMS_E_NO_MEMORY (EAGAIN, ENOMEM) or P11KMS_E_INTERNAL, naming the object and the error. */
P11KMS_MUST_CHECK p11kms_err sync_init_all(const sync_obj *objs, size_t n, p11kms_error *err);
/* Destroys objs[0..n) (all initialised by sync_init_all). */
void sync_destroy_all(const sync_obj *objs, size_t n);

#endif
