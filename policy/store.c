#include "config.h"

/* The policy in force. A reader takes a reference under a short lock and evaluates without it;
 * a reload builds the new policy without the lock and swaps one pointer, so requests never wait
 * on a file being parsed and each request sees exactly one policy. */

#include "policy/model.h"

#include <pthread.h>
#include <stdlib.h>

struct policy_store {
    pthread_mutex_t lock;
    policy *current;
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
    if (pthread_mutex_init(&store->lock, NULL) != 0) {
        free(store);
        policy_free(initial);
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy store: cannot create its lock");
    }
    store->current = initial;
    *out = store;
    return P11KMS_OK;
}

void policy_store_free(policy_store *store)
{
    if (store == NULL)
        return;
    policy_free(store->current);
    pthread_mutex_destroy(&store->lock);
    free(store);
}

policy *policy_store_acquire(policy_store *store)
{
    if (store == NULL)
        return NULL;
    pthread_mutex_lock(&store->lock);
    policy *pol = policy_ref(store->current);
    pthread_mutex_unlock(&store->lock);
    return pol;
}

void policy_store_replace(policy_store *store, policy *pol)
{
    if (store == NULL) {
        policy_free(pol);
        return;
    }
    pthread_mutex_lock(&store->lock);
    policy *old = store->current;
    store->current = pol;
    pthread_mutex_unlock(&store->lock);
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
        return rc; /* the policy in force stays */
    policy_store_replace(store, pol);
    return P11KMS_OK;
}
