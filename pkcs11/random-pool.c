/* Token randomness for key material, drawn in blocks per thread.
 *
 * Why: a C_GenerateRandom per data key costs SoftHSM about 5 us (its lock, OpenSSL's per-call
 * fork check), 11 % of a whole GenerateDataKey. One call per P11_RANDOM_POOL_BYTES (1,024) serves
 * 32 AES-256 data keys. The bytes are the token's own (token.rng: token), so the keys still come
 * from the HSM's generator; only the moment they were drawn changes.
 *
 * Rules, each because of what the bytes are:
 *   - the block lives in the OpenSSL secure heap, as the data keys themselves do (locked and
 *     left out of core dumps where the system allows), and every byte is wiped as it is handed
 *     out, the rest when the block is dropped: bytes are handed out once;
 *   - a block drawn before a fork is never used after it (fork_generation): parent and child
 *     would otherwise hand out the same data keys;
 *   - a block belongs to one opened token (its serial, never reused): a process with two tokens
 *     gets each token's keys from that token;
 *   - a refill that fails hands out nothing and leaves the block empty. */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/fork-generation.h"
#include "pkcs11/internal.h"

typedef struct random_pool {
    uint64_t token_serial;    /* the token the bytes came from */
    unsigned long generation; /* fork_generation() when drawn; 0: empty */
    size_t used;              /* bytes handed out (wiped) from the front of bytes */
    uint8_t bytes[P11_RANDOM_POOL_BYTES];
} random_pool;

static pthread_key_t pool_key;
static bool pool_key_ok;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_drop(random_pool *p)
{
    OPENSSL_cleanse(p->bytes, sizeof(p->bytes));
    p->generation = 0;
    p->used = sizeof(p->bytes);
}

/* Runs at thread exit with the thread's pool. */
static void pool_free(void *arg)
{
    OPENSSL_secure_clear_free(arg, sizeof(random_pool));
}

static void pool_key_create(void)
{
    pool_key_ok = pthread_key_create(&pool_key, pool_free) == 0;
}

/* The calling thread's pool, made on first use; NULL when it cannot be kept (no key, no secure
 * memory): the caller then asks the token directly. */
static random_pool *thread_pool(void)
{
    pthread_once(&pool_once, pool_key_create);
    if (!pool_key_ok)
        return NULL;
    random_pool *p = pthread_getspecific(pool_key);
    if (p != NULL)
        return p;
    p = OPENSSL_secure_zalloc(sizeof(*p));
    if (p == NULL)
        return NULL;
    pool_drop(p);
    if (pthread_setspecific(pool_key, p) != 0) {
        OPENSSL_secure_clear_free(p, sizeof(*p));
        return NULL;
    }
    return p;
}

p11kms_err p11_token_random_key(p11_token *t, uint8_t *buf, size_t len, p11kms_error *err)
{
    if (t == NULL || (buf == NULL && len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_random_key: missing argument");
    unsigned long now = fork_generation();
    random_pool *p = NULL;
    if (t->rng != P11_RNG_TOKEN || len == 0 || len > P11_RANDOM_POOL_TAKE_MAX || now == 0 ||
        (p = thread_pool()) == NULL)
        return p11_token_random(t, buf, len, err);
    if (p->generation != now || p->token_serial != t->serial || sizeof(p->bytes) - p->used < len) {
        pool_drop(p);
        p11kms_err rc = p11_token_random(t, p->bytes, sizeof(p->bytes), err);
        if (rc != P11KMS_OK) {
            pool_drop(p);
            return rc;
        }
        p->token_serial = t->serial;
        p->generation = now;
        p->used = 0;
    }
    memcpy(buf, p->bytes + p->used, len);
    OPENSSL_cleanse(p->bytes + p->used, len);
    p->used += len;
    return P11KMS_OK;
}

void p11_random_pool_forget(const p11_token *t)
{
    pthread_once(&pool_once, pool_key_create);
    if (!pool_key_ok)
        return;
    random_pool *p = pthread_getspecific(pool_key);
    if (p != NULL && p->token_serial == t->serial)
        pool_drop(p);
}
