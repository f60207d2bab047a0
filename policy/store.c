#include "config.h"

/* The policy in force. A reader takes a reference under a short lock and evaluates without it;
 * a reload builds the new policy without the lock and swaps one pointer, so requests never wait
 * on a file being parsed and each request sees exactly one policy. */

#include "policy/model.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/threads.h"

struct policy_store {
    /* A read-write lock: every request of the hot path takes it to acquire the policy, a reload
     * only to swap the pointer, so readers must not queue behind each other. */
    pthread_rwlock_t lock;
    policy *current;
    /* Counts the policies put in force (1 for the initial one), read with current under the lock:
     * a cache of decisions keyed on it can never pair a decision with another policy. */
    uint64_t generation;
};

p11kms_err policy_store_new(policy *initial, policy_store **out, p11kms_error *err)
{
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_store_new: out is NULL");
    *out = NULL;
    policy_store *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        policy_free(initial);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "policy store: out of memory");
    }
    const sync_obj lock = {SYNC_RWLOCK, &store->lock, "the policy store's lock"};
    p11kms_err rc = sync_init_all(&lock, 1, err);
    if (rc != P11KMS_OK) {
        free(store);
        policy_free(initial);
        return rc;
    }
    store->current = initial;
    store->generation = 1;
    *out = store;
    return P11KMS_OK;
}

void policy_store_free(policy_store *store)
{
    if (store == NULL)
        return;
    policy_free(store->current);
    pthread_rwlock_destroy(&store->lock);
    free(store);
}

policy *policy_store_acquire(policy_store *store, uint64_t *generation)
{
    if (store == NULL) {
        if (generation != NULL)
            *generation = 0;
        return NULL;
    }
    pthread_rwlock_rdlock(&store->lock);
    policy *pol = policy_ref(store->current);
    if (generation != NULL)
        *generation = store->generation;
    pthread_rwlock_unlock(&store->lock);
    return pol;
}

void policy_store_replace(policy_store *store, policy *pol)
{
    if (store == NULL) {
        policy_free(pol);
        return;
    }
    pthread_rwlock_wrlock(&store->lock);
    policy *old = store->current;
    store->current = pol;
    store->generation++;
    pthread_rwlock_unlock(&store->lock);
    /* Requests still holding the old policy keep it alive until they finish. */
    policy_free(old);
}

p11kms_err policy_store_reload(policy_store *store, const char *path, policy_error_fn on_error,
                               void *arg, p11kms_error *err)
{
    if (store == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_store_reload: store is NULL");
    policy *pol = NULL;
    p11kms_err rc = policy_load_file(path, on_error, arg, &pol, err);
    if (rc != P11KMS_OK)
        return rc; /* the policy in force, and its generation, stay */
    policy_store_replace(store, pol);
    return P11KMS_OK;
}
