#include "config.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "common/threads.h"
#include "provider/blob.h"
#include "provider/context-api.h"
#include "provider/keycache.h"
#include "provider/keystore.h"

/* What every key opened below one master key shares: the master key's entry and whether it was
 * last seen usable. Revocation of the master key reaches every opened key through it within
 * revocation-check-ms, at the cost of one token read per interval, not per operation. */
typedef struct lineage {
    p11kms *svc;
    key_entry *root;
    pthread_mutex_t lock;
    int64_t checked_ms;
    uint64_t generation; /* state generation at the last check */
    bool revoked;
    char why[200];
    atomic_int refs;
} lineage;

struct p11kms_opened_key {
    lineage *line;
    pthread_mutex_t lock; /* the cipher contexts of blob_key are not shareable between threads */
    blob_key *key;
    uint8_t kcv[BLOB_KCV_LEN];
    int64_t expires_ms; /* never later than the parent's */
    uint64_t uses_left;
    bool closed;
};

static lineage *lineage_ref(lineage *l)
{
    atomic_fetch_add(&l->refs, 1);
    return l;
}

static void lineage_unref(lineage *l)
{
    if (l != NULL && atomic_fetch_sub(&l->refs, 1) == 1) {
        pthread_mutex_destroy(&l->lock);
        free(l);
    }
}

/* Re-reads the master key's record when the last check is older than the interval. */
static p11kms_err lineage_check(lineage *l, p11kms_error *err)
{
    p11kms *svc = l->svc;
    int64_t now = service_monotonic_ms();
    pthread_mutex_lock(&l->lock);
    /* A change to keys on this host (the generation moved) is checked at once; otherwise at most
     * every revocation-check-ms, the bound for tokens shared beyond this host's lock file. */
    uint64_t gen = service_generation(svc);
    if (!l->revoked &&
        (gen != l->generation || now - l->checked_ms >= (int64_t)svc->cfg->revocation_check_ms)) {
        key_meta *m = NULL;
        p11kms_error probe = {0};
        p11kms_err rc = keystore_meta_read(svc, l->root->id_text, &m, &probe);
        if (rc == P11KMS_OK && m->state != P11KMS_KEY_ENABLED) {
            l->revoked = true;
            snprintf(l->why, sizeof(l->why), "master key %s is %s", m->id_text,
                     p11kms_key_state_name(m->state));
        } else if (rc == P11KMS_E_NOT_FOUND) {
            l->revoked = true;
            snprintf(l->why, sizeof(l->why), "master key %s was deleted", l->root->id_text);
        }
        /* Token unreachable: keep working from memory until the TTL; that is the point of the
         * cache during a short HSM outage. */
        if (rc == P11KMS_OK || rc == P11KMS_E_NOT_FOUND) {
            l->checked_ms = now;
            l->generation = gen;
        }
        if (rc == P11KMS_OK)
            keycache_install_read(svc, l->root, m, gen); /* read without the lock */
        else
            keymeta_free(m);
    }
    bool revoked = l->revoked;
    pthread_mutex_unlock(&l->lock);
    if (revoked)
        return P11KMS_RAISE(err, P11KMS_E_DISABLED, "opened key revoked: %s", l->why);
    return P11KMS_OK;
}

/* Takes one use of k, refusing (and wiping) an expired, exhausted or revoked key. Called with
 * k->lock held. */
static p11kms_err take_use(p11kms_opened_key *k, p11kms_error *err)
{
    if (k->key == NULL && k->line->revoked)
        return P11KMS_RAISE(err, P11KMS_E_DISABLED, "opened key revoked: %s", k->line->why);
    if (k->closed || k->key == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_STATE, "opened key is closed or expired");
    p11kms_err rc = P11KMS_OK;
    if (service_monotonic_ms() >= k->expires_ms)
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_STATE,
                          "opened key expired (hierarchy ttl-seconds); open it again");
    else if (k->uses_left == 0)
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_STATE,
                          "opened key reached its use limit (hierarchy max-uses); open it again");
    else
        rc = lineage_check(k->line, err);
    if (rc != P11KMS_OK) {
        blob_key_free(k->key); /* wipes the key schedule */
        k->key = NULL;
        return rc;
    }
    k->uses_left--;
    return P11KMS_OK;
}

static p11kms_err opened_new(lineage *line, const uint8_t *key, size_t len, int64_t max_expiry,
                             p11kms_opened_key **out, p11kms_error *err)
{
    p11kms *svc = line->svc;
    if (len != BLOB_KEY_LEN)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "only %d-byte (AES-256) keys can be opened as parents, this one has "
                            "%zu bytes",
                            BLOB_KEY_LEN, len);
    p11kms_opened_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p11kms_err rc = blob_key_new(svc->libctx, key, len, &k->key, err);
    if (rc != P11KMS_OK) {
        free(k);
        return rc;
    }
    memcpy(k->kcv, blob_key_kcv(k->key), BLOB_KCV_LEN);
    const sync_obj lock = {SYNC_MUTEX, &k->lock, "an opened key's lock"};
    rc = sync_init_all(&lock, 1, err);
    if (rc != P11KMS_OK) {
        blob_key_free(k->key);
        free(k);
        return rc;
    }
    k->line = lineage_ref(line);
    int64_t expiry = service_monotonic_ms() + (int64_t)svc->cfg->hierarchy_ttl_s * 1000;
    k->expires_ms = expiry < max_expiry ? expiry : max_expiry;
    k->uses_left = svc->cfg->hierarchy_max_uses;
    *out = k;
    return P11KMS_OK;
}

p11kms_err kms_op_open_key(p11kms *svc, const p11kms_principal *who, const p11kms_context *ctx,
                           const uint8_t *blob, size_t blob_len, p11kms_opened_key **out,
                           p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    *out = NULL;
    p11kms_result r;
    p11kms_err rc = p11kms_decrypt(svc, who, NULL, ctx, blob, blob_len, &r, err);
    if (rc != P11KMS_OK)
        return rc;
    blob_view v;
    rc = blob_parse(blob, blob_len, &v, err);
    lineage *line = NULL;
    if (rc == P11KMS_OK && (line = calloc(1, sizeof(*line))) == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK) {
        const sync_obj lock = {SYNC_MUTEX, &line->lock, "an opened key's lineage lock"};
        rc = sync_init_all(&lock, 1, err);
        if (rc != P11KMS_OK) {
            free(line);
            line = NULL;
        }
    }
    if (rc == P11KMS_OK) {
        char id_text[P11KMS_KEY_ID_LEN + 1];
        uuid_format(v.key_id, id_text);
        line->svc = svc;
        line->root = keycache_entry(svc, id_text);
        line->checked_ms = service_monotonic_ms(); /* decrypt just proved it usable */
        line->generation = service_generation(svc);
        atomic_init(&line->refs, 1);
        if (line->root == NULL)
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        else
            rc = opened_new(line, r.plaintext, r.plaintext_len, INT64_MAX, out, err);
    }
    lineage_unref(line);
    p11kms_result_free(&r);
    return rc;
}

p11kms_err p11kms_generate_child_key(p11kms_opened_key *parent, const p11kms_context *ctx,
                                     size_t key_len, bool want_plaintext, p11kms_result *out,
                                     p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    if (key_len < 1 || key_len > P11KMS_MAX_DATA_KEY)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "child key length must be 1 to %d bytes",
                            P11KMS_MAX_DATA_KEY);
    size_t total = blob_len(BLOB_TYPE_CHILD, key_len);
    uint8_t *key = OPENSSL_secure_malloc(key_len);
    uint8_t *blob = malloc(total);
    p11kms_err rc = P11KMS_OK;
    if (key == NULL || blob == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK && RAND_bytes_ex(parent->line->svc->libctx, key, key_len, 0) != 1) {
        ERR_clear_error();
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "no random bytes from the DRBG");
    }
    size_t len = 0;
    if (rc == P11KMS_OK) {
        pthread_mutex_lock(&parent->lock);
        rc = take_use(parent, err);
        if (rc == P11KMS_OK)
            rc = blob_child_seal(parent->key, NULL, context_pairs(ctx), key, key_len, blob, total,
                                 &len, err);
        pthread_mutex_unlock(&parent->lock);
    }
    if (rc == P11KMS_OK && want_plaintext) {
        out->plaintext = key;
        out->plaintext_len = key_len;
        key = NULL;
    }
    if (key != NULL)
        OPENSSL_secure_clear_free(key, key_len);
    if (rc != P11KMS_OK) {
        free(blob);
        return rc;
    }
    out->ciphertext = blob;
    out->ciphertext_len = len;
    return P11KMS_OK;
}

/* Unwraps a child blob into secure memory. */
static p11kms_err unwrap(p11kms_opened_key *parent, const p11kms_context *ctx, const uint8_t *blob,
                         size_t blob_len, uint8_t **key, size_t *key_len, p11kms_error *err)
{
    uint8_t *pt = OPENSSL_secure_malloc(BLOB_MAX_PLAINTEXT);
    if (pt == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    pthread_mutex_lock(&parent->lock);
    p11kms_err rc = take_use(parent, err);
    if (rc == P11KMS_OK)
        rc = blob_child_open(parent->key, context_pairs(ctx), blob, blob_len, pt,
                             BLOB_MAX_PLAINTEXT, key_len, err);
    pthread_mutex_unlock(&parent->lock);
    if (rc != P11KMS_OK) {
        OPENSSL_secure_clear_free(pt, BLOB_MAX_PLAINTEXT);
        return rc;
    }
    *key = pt;
    return P11KMS_OK;
}

p11kms_err p11kms_unwrap_child_key(p11kms_opened_key *parent, const p11kms_context *ctx,
                                   const uint8_t *blob, size_t blob_len, p11kms_result *out,
                                   p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    uint8_t *pt = NULL;
    size_t len = 0;
    p11kms_err rc = unwrap(parent, ctx, blob, blob_len, &pt, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    out->plaintext = OPENSSL_secure_malloc(len);
    if (out->plaintext != NULL) {
        memcpy(out->plaintext, pt, len);
        out->plaintext_len = len;
    } else {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    }
    OPENSSL_secure_clear_free(pt, BLOB_MAX_PLAINTEXT);
    return rc;
}

p11kms_err p11kms_open_child_key(p11kms_opened_key *parent, const p11kms_context *ctx,
                                 const uint8_t *blob, size_t blob_len, p11kms_opened_key **out,
                                 p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    *out = NULL;
    uint8_t *pt = NULL;
    size_t len = 0;
    p11kms_err rc = unwrap(parent, ctx, blob, blob_len, &pt, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = opened_new(parent->line, pt, len, parent->expires_ms, out, err);
    OPENSSL_secure_clear_free(pt, BLOB_MAX_PLAINTEXT);
    return rc;
}

void p11kms_opened_key_check_value(const p11kms_opened_key *key, uint8_t kcv[8])
{
    memcpy(kcv, key->kcv, BLOB_KCV_LEN);
}

void p11kms_opened_key_close(p11kms_opened_key *key)
{
    if (key == NULL)
        return;
    blob_key_free(key->key);
    pthread_mutex_destroy(&key->lock);
    lineage_unref(key->line);
    free(key);
}
