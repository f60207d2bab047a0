#include "config.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "provider/blob.h"
#include "provider/buf.h"
#include "provider/context-api.h"
#include "provider/gate.h"
#include "provider/ivbuf.h"
#include "provider/keyaccess.h"
#include "provider/keycache.h"
#include "provider/keyref.h"
#include "provider/keystore.h"
#include "provider/kms-crypto.h"
#include "provider/lifecycle-state.h"
#include "provider/lifecycle.h"

/* AAD buffers up to this size live on the stack; larger contexts are rare. */
#define AAD_STACK 1024
/* Batches of reserved encryptions grow from this size to keys.count-batch. A reservation is a
 * token write (on SoftHSM one pass over every object file), so it must be rare; unused
 * reservations are lost when a process exits, so a short-lived process (one CLI call) wastes at
 * most this much of a version's budget (2^30 by default: a million process lifetimes). */
#define FIRST_BATCH 1024

void p11kms_result_free(p11kms_result *r)
{
    if (r == NULL)
        return;
    free(r->ciphertext);
    if (r->plaintext != NULL)
        OPENSSL_secure_clear_free(r->plaintext, r->plaintext_len);
    memset(r, 0, sizeof(*r));
}

/* Reasons a key may not be used for cryptography, with the KMS error classes of doc/design.md §5.
 */
static p11kms_err usable_for_crypto(const key_meta *m, const char *op, p11kms_error *err)
{
    return m->state == P11KMS_KEY_ENABLED ? P11KMS_OK : lifecycle_refuse_crypto(m, op, err);
}

/* The cached state may be stale: a refusal is only final after the token confirms it. */
static p11kms_err check_usable(p11kms *svc, key_access *acc, const char *op, p11kms_error *err)
{
    if (acc->meta->state == P11KMS_KEY_ENABLED)
        return P11KMS_OK;
    p11kms_err rc = key_access_refresh(svc, acc, err);
    return rc != P11KMS_OK ? rc : usable_for_crypto(acc->meta, op, err);
}

/* --- the per-version encryption budget ----------------------------------------------------- */

static bool take_from_batch(key_entry *entry, uint32_t version)
{
    bool ok = false;
    pthread_mutex_lock(&entry->lock);
    if (entry->batch_version == version && entry->batch_left > 0) {
        entry->batch_left--;
        ok = true;
    }
    pthread_mutex_unlock(&entry->lock);
    return ok;
}

/* Under the lock: reserves a new batch under the current version, rotating first when rotation
 * is due or the version's budget is spent and automatic rotation is on. */
static p11kms_err refill_batch(p11kms *svc, key_entry *entry, p11kms_error *err)
{
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_OK)
        rc = usable_for_crypto(m, "Encrypt", err);
    uint64_t bound = svc->cfg->max_encryptions_per_version;
    if (rc == P11KMS_OK && m->rotation_enabled &&
        (m->next_rotation <= service_now() || keymeta_current(m)->reserved >= bound))
        rc = lifecycle_rotate_locked(svc, m, ROTATION_AUTOMATIC, err);
    if (rc == P11KMS_OK) {
        key_version *cur = &m->versions[m->version_count - 1];
        pthread_mutex_lock(&entry->lock);
        /* Another thread of this process may have refilled while this one waited for the lock. */
        bool refilled = entry->batch_version == cur->number && entry->batch_left > 0;
        uint64_t want = entry->next_batch ? entry->next_batch : FIRST_BATCH;
        pthread_mutex_unlock(&entry->lock);
        if (want > svc->cfg->count_batch)
            want = svc->cfg->count_batch;
        if (refilled)
            ; /* nothing to reserve */
        else if (cur->reserved >= bound)
            rc = P11KMS_RAISE(err, P11KMS_E_LIMIT_EXCEEDED,
                              "key %s version %u reached its limit of %llu encryptions (AES-GCM "
                              "random IV bound): rotate the key",
                              m->id_text, cur->number, (unsigned long long)bound);
        else {
            if (want > bound - cur->reserved)
                want = bound - cur->reserved;
            cur->reserved += want;
            /* A reservation changes nothing other processes act on: do not make every process
             * re-read its keys (a rotation above still does). */
            bool announce = svc->lock_dirty;
            rc = keystore_meta_write(svc, m, err);
            svc->lock_dirty = announce;
            if (rc == P11KMS_OK) {
                pthread_mutex_lock(&entry->lock);
                if (entry->batch_version != cur->number)
                    entry->batch_left = 0;
                entry->batch_version = cur->number;
                entry->batch_left += want;
                entry->next_batch = want * 2;
                pthread_mutex_unlock(&entry->lock);
                keycache_install(svc, entry, m);
                m = NULL;
            }
        }
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

/* Picks the version to encrypt under and charges one encryption to it. */
static p11kms_err reserve_encryption(p11kms *svc, key_access *acc, uint32_t *version,
                                     p11kms_error *err)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        const key_meta *m = acc->meta;
        uint32_t current = acc->snap->current_version; /* no read of m->versions: see service.h */
        bool due = m->rotation_enabled && m->next_rotation <= service_now();
        if (!due && take_from_batch(acc->entry, current)) {
            *version = current;
            return P11KMS_OK;
        }
        p11kms_err rc = refill_batch(svc, acc->entry, err);
        if (rc == P11KMS_OK)
            rc = key_access_renew(svc, acc, err); /* refill_batch installed what it wrote */
        if (rc == P11KMS_OK)
            rc = usable_for_crypto(acc->meta, "Encrypt", err);
        if (rc != P11KMS_OK)
            return rc;
    }
    return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                        "key %s: could not reserve an encryption (contention); retry",
                        acc->meta->id_text);
}

/* --- token operations with cross-process state enforcement -------------------------------- */

/* How tokens say "not with this key": SoftHSM answers a key whose CKA_ENCRYPT/CKA_DECRYPT
 * were switched off with CKR_KEY_FUNCTION_NOT_PERMITTED, NSS softokn with
 * CKR_KEY_TYPE_INCONSISTENT; a key destroyed elsewhere may be CKR_KEY_HANDLE_INVALID. Each is
 * explained from the record, re-read. */
static bool token_refused_key(const p11kms_error *e)
{
    return e->code == P11KMS_E_TOKEN &&
           (e->ckr == CKR_KEY_FUNCTION_NOT_PERMITTED || e->ckr == CKR_KEY_TYPE_INCONSISTENT ||
            e->ckr == CKR_KEY_HANDLE_INVALID);
}

/* The token refused the key: another process changed its state. Explain with fresh metadata. */
static p11kms_err explain_refusal(p11kms *svc, key_access *acc, const char *op, p11kms_error *err)
{
    p11kms_err rc = key_access_refresh(svc, acc, err);
    if (rc != P11KMS_OK)
        return rc;
    if (acc->meta->state != P11KMS_KEY_ENABLED)
        return lifecycle_refuse_crypto(acc->meta, op, err);
    return P11KMS_RAISE(err, P11KMS_E_INVALID_STATE,
                        "%s refused: the token refuses key %s although its record says Enabled "
                        "(a state change is in progress or was interrupted: run p11kms maintain)",
                        op, acc->meta->id_text);
}

/* IVs must be unique, not secret: they come from the private OpenSSL DRBG (seeded by the OS),
 * which saves a token round trip per encryption, in blocks per thread (provider/ivbuf.c);
 * token.rng governs key material. */
static p11kms_err random_iv(p11kms *svc, uint8_t iv[BLOB_IV_LEN], p11kms_error *err)
{
    _Static_assert(BLOB_IV_LEN == IVBUF_IV_LEN, "blob IVs are GCM's 96 bits");
    return ivbuf_take(svc->libctx, iv, err);
}

static p11kms_err write_aad(const uint8_t *header, size_t header_len, const enc_context *ctx,
                            uint8_t *stack_buf, uint8_t **aad, size_t *aad_len, p11kms_error *err)
{
    size_t need = blob_aad_len(header_len, ctx);
    *aad = need <= AAD_STACK ? stack_buf : malloc(need);
    if (*aad == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p11kms_err rc = blob_aad(header, header_len, ctx, *aad, need, aad_len, err);
    if (rc != P11KMS_OK && *aad != stack_buf) {
        free(*aad);
        *aad = NULL;
    }
    return rc;
}

static void free_aad(uint8_t *aad, const uint8_t *stack_buf)
{
    if (aad != stack_buf)
        free(aad);
}

p11kms_err kms_encrypt_under(p11kms *svc, key_access *acc, const enc_context *ctx,
                             const uint8_t *pt, size_t pt_len, p11kms_result *out,
                             p11kms_error *err)
{
    uint32_t version = 0;
    p11kms_err rc = reserve_encryption(svc, acc, &version, err);
    if (rc != P11KMS_OK)
        return rc;
    keycache_use use;
    rc = keycache_use_version(svc, acc->entry, version, &use, err);
    if (rc != P11KMS_OK)
        return rc;

    blob_header h = {.type = BLOB_TYPE_MASTER, .alg = BLOB_ALG_AES_256_GCM, .key_version = version};
    memcpy(h.key_id, acc->meta->id, BLOB_KEY_ID_LEN);
    size_t total = blob_len(BLOB_TYPE_MASTER, pt_len);
    uint8_t *blob = malloc(total);
    if (blob == NULL) {
        keycache_release(svc, &use);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    uint8_t header[BLOB_HEADER_MAX];
    size_t header_len;
    rc = blob_header_encode(&h, header, &header_len, err);
    buf_writer w;
    buf_writer_init(&w, blob, total);
    buf_write_bytes(&w, header, header_len);
    uint8_t *iv = buf_write_reserve(&w, BLOB_IV_LEN);
    buf_write_u32be(&w, (uint32_t)pt_len);
    uint8_t *ct = buf_write_reserve(&w, pt_len + BLOB_TAG_LEN);
    if (rc == P11KMS_OK && (!buf_writer_ok(&w) || buf_writer_len(&w) != total))
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "ciphertext layout mismatch");

    uint8_t aad_stack[AAD_STACK], *aad = NULL;
    size_t aad_len = 0;
    if (rc == P11KMS_OK)
        rc = write_aad(header, header_len, ctx, aad_stack, &aad, &aad_len, err);
    if (rc == P11KMS_OK) {
        if (svc->cfg->iv_mode == P11_IV_HOST)
            rc = random_iv(svc, iv, err);
        else
            memset(iv, 0, BLOB_IV_LEN);
    }
    if (rc == P11KMS_OK) {
        rc = p11_gcm_encrypt(svc->token, use.key, iv, BLOB_IV_LEN, aad, aad_len, pt, pt_len, ct,
                             BLOB_TAG_LEN, err);
        if (rc != P11KMS_OK && token_refused_key(err))
            rc = explain_refusal(svc, acc, "Encrypt", err);
    }
    free_aad(aad, aad_stack);
    keycache_release(svc, &use);
    if (rc != P11KMS_OK) {
        free(blob);
        return rc;
    }
    keyref_key_arn(svc->cfg, acc->meta->id_text, out->key_id);
    out->key_version = version;
    out->ciphertext = blob;
    out->ciphertext_len = total;
    return P11KMS_OK;
}

p11kms_err kms_decrypt_view(p11kms *svc, key_access *acc, const blob_view *v,
                            const enc_context *ctx, const char *op, uint8_t **pt_out,
                            size_t *pt_len, p11kms_error *err)
{
    if (keymeta_version(acc->meta, v->key_version) == NULL) {
        /* Maybe rotated by another process since this process read the record. */
        p11kms_err rc = key_access_refresh(svc, acc, err);
        if (rc != P11KMS_OK)
            return rc;
        if (keymeta_version(acc->meta, v->key_version) == NULL)
            return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                                "ciphertext names version %u of key %s, which does not exist",
                                v->key_version, acc->meta->id_text);
    }
    uint8_t aad_stack[AAD_STACK], *aad = NULL;
    size_t aad_len = 0;
    p11kms_err rc = write_aad(v->header, v->header_len, ctx, aad_stack, &aad, &aad_len, err);
    if (rc != P11KMS_OK)
        return rc;
    uint8_t *pt = OPENSSL_secure_malloc(v->ciphertext_len ? v->ciphertext_len : 1);
    if (pt == NULL) {
        free_aad(aad, aad_stack);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    }
    keycache_use use;
    rc = keycache_use_version(svc, acc->entry, v->key_version, &use, err);
    if (rc != P11KMS_OK) {
        free_aad(aad, aad_stack);
        OPENSSL_secure_free(pt);
        return rc;
    }
    rc = p11_gcm_decrypt(svc->token, use.key, v->iv, BLOB_IV_LEN, aad, aad_len, v->ciphertext,
                         v->ciphertext_len + BLOB_TAG_LEN, BLOB_TAG_LEN, pt, err);
    keycache_release(svc, &use);
    free_aad(aad, aad_stack);
    if (rc != P11KMS_OK && token_refused_key(err))
        rc = explain_refusal(svc, acc, op, err);
    if (rc == P11KMS_E_INVALID_CIPHERTEXT)
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                          "ciphertext or encryption context is invalid for key %s",
                          acc->meta->id_text);
    if (rc != P11KMS_OK) {
        OPENSSL_secure_clear_free(pt, v->ciphertext_len ? v->ciphertext_len : 1);
        return rc;
    }
    *pt_out = pt;
    *pt_len = v->ciphertext_len;
    return P11KMS_OK;
}

/* --- public operations --------------------------------------------------------------------- */

p11kms_err kms_begin(p11kms *svc, const p11kms_principal *who, policy_action action,
                     const char *key_ref, const p11kms_context *ctx, const p11kms_context *ctx2,
                     key_access *acc, p11kms_error *err)
{
    p11kms_err rc = key_access_begin(svc, key_ref, acc, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        /* Do not reveal to a principal the policy denies whether the key exists. */
        p11kms_error saved = err ? *err : (p11kms_error){0};
        if (gate_check(svc, who, action, key_ref, NULL, ctx, ctx2, err) != P11KMS_OK)
            return P11KMS_E_ACCESS_DENIED;
        if (err != NULL)
            *err = saved;
        return rc;
    }
    if (rc != P11KMS_OK)
        return rc;
    rc = gate_check(svc, who, action, key_ref, acc->meta, ctx, ctx2, err);
    if (rc != P11KMS_OK)
        key_access_end(acc);
    return rc;
}

p11kms_err kms_op_encrypt(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                          const p11kms_context *ctx, const uint8_t *plaintext, size_t len,
                          p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    if (plaintext == NULL || len == 0 || len > P11KMS_MAX_PLAINTEXT)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "plaintext must have 1 to %d bytes",
                            P11KMS_MAX_PLAINTEXT);
    key_access acc;
    p11kms_err rc = kms_begin(svc, who, POLICY_ACTION_ENCRYPT, key_ref, ctx, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = check_usable(svc, &acc, "Encrypt", err);
    if (rc == P11KMS_OK)
        rc = kms_encrypt_under(svc, &acc, context_pairs(ctx), plaintext, len, out, err);
    key_access_end(&acc);
    return rc;
}

/* The blob's master key id; a child blob is not one. */
static p11kms_err master_blob_key(const uint8_t *blob, size_t blob_len, blob_view *v,
                                  char id_text[P11KMS_KEY_ID_LEN + 1], p11kms_error *err)
{
    p11kms_err rc = blob_parse(blob, blob_len, v, err);
    if (rc != P11KMS_OK)
        return rc;
    if (v->type != BLOB_TYPE_MASTER)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "this ciphertext was wrapped under an opened key of the hierarchy, "
                            "not a master key: unwrap it with its parent");
    uuid_format(v->key_id, id_text);
    return P11KMS_OK;
}

p11kms_err p11kms_ciphertext_key_id(const uint8_t *blob, size_t blob_len,
                                    char key_id[P11KMS_KEY_ID_LEN + 1], p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (blob == NULL || key_id == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11kms_ciphertext_key_id: missing argument");
    blob_view v;
    return master_blob_key(blob, blob_len, &v, key_id, err);
}

/* Parses a master-key blob and finds its key, checking an optional expected key reference. */
static p11kms_err open_master_blob(p11kms *svc, const p11kms_principal *who, policy_action action,
                                   const char *key_ref, const p11kms_context *ctx,
                                   const p11kms_context *ctx2, const uint8_t *blob, size_t blob_len,
                                   blob_view *v, key_access *acc, p11kms_error *err)
{
    char id_text[P11KMS_KEY_ID_LEN + 1];
    p11kms_err rc = master_blob_key(blob, blob_len, v, id_text, err);
    if (rc != P11KMS_OK)
        return rc;
    if (key_ref != NULL) {
        key_access expected;
        rc = kms_begin(svc, who, action, key_ref, ctx, ctx2, &expected, err);
        if (rc != P11KMS_OK)
            return rc;
        bool same = strcmp(expected.meta->id_text, id_text) == 0;
        key_access_end(&expected);
        if (!same)
            return P11KMS_RAISE(err, P11KMS_E_INCORRECT_KEY,
                                "ciphertext was not encrypted under key %.80s", key_ref);
    }
    rc = kms_begin(svc, who, action, id_text, ctx, ctx2, acc, err);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext names key %s, which does not exist", id_text);
    return rc;
}

p11kms_err kms_op_decrypt(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                          const p11kms_context *ctx, const uint8_t *blob, size_t blob_len,
                          p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    blob_view v;
    key_access acc;
    p11kms_err rc = open_master_blob(svc, who, POLICY_ACTION_DECRYPT, key_ref, ctx, NULL, blob,
                                     blob_len, &v, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = check_usable(svc, &acc, "Decrypt", err);
    if (rc == P11KMS_OK)
        rc = kms_decrypt_view(svc, &acc, &v, context_pairs(ctx), "Decrypt", &out->plaintext,
                              &out->plaintext_len, err);
    if (rc == P11KMS_OK) {
        keyref_key_arn(svc->cfg, acc.meta->id_text, out->key_id);
        out->key_version = v.key_version;
    }
    key_access_end(&acc);
    return rc;
}

p11kms_err kms_op_re_encrypt(p11kms *svc, const p11kms_principal *who, const char *source_key_ref,
                             const p11kms_context *source_ctx, const uint8_t *blob, size_t blob_len,
                             const char *dest_key_ref, const p11kms_context *dest_ctx,
                             p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    key_access dest;
    p11kms_err rc = kms_begin(svc, who, POLICY_ACTION_RE_ENCRYPT_TO, dest_key_ref, dest_ctx,
                              source_ctx, &dest, err);
    if (rc != P11KMS_OK)
        return rc;
    blob_view v;
    key_access src;
    rc = open_master_blob(svc, who, POLICY_ACTION_RE_ENCRYPT_FROM, source_key_ref, source_ctx,
                          dest_ctx, blob, blob_len, &v, &src, err);
    if (rc != P11KMS_OK) {
        key_access_end(&dest);
        return rc;
    }
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    rc = check_usable(svc, &src, "ReEncrypt", err);
    if (rc == P11KMS_OK)
        rc = kms_decrypt_view(svc, &src, &v, context_pairs(source_ctx), "ReEncrypt", &pt, &pt_len,
                              err);
    if (rc == P11KMS_OK)
        rc = check_usable(svc, &dest, "ReEncrypt", err);
    if (rc == P11KMS_OK)
        rc = kms_encrypt_under(svc, &dest, context_pairs(dest_ctx), pt, pt_len, out, err);
    if (rc == P11KMS_OK)
        keyref_key_arn(svc->cfg, src.meta->id_text, out->source_key_id);
    if (pt != NULL)
        OPENSSL_secure_clear_free(pt, pt_len ? pt_len : 1);
    key_access_end(&src);
    key_access_end(&dest);
    return rc;
}

static p11kms_err data_key_length(const char *key_spec, size_t number_of_bytes, size_t *len,
                                  p11kms_error *err)
{
    if (key_spec != NULL && number_of_bytes != 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "give either a key spec or a number of bytes, not both");
    if (key_spec != NULL) {
        if (strcmp(key_spec, "AES_256") == 0)
            *len = 32;
        else if (strcmp(key_spec, "AES_128") == 0)
            *len = 16;
        else
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "key spec must be AES_128 or AES_256, not %.32s", key_spec);
        return P11KMS_OK;
    }
    if (number_of_bytes < 1 || number_of_bytes > P11KMS_MAX_DATA_KEY)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "number of bytes must be 1 to %d (or give a key spec)",
                            P11KMS_MAX_DATA_KEY);
    *len = number_of_bytes;
    return P11KMS_OK;
}

/* Decrypts what was just wrapped and compares: a token or memory fault caught here would
 * otherwise make everything encrypted under the data key unrecoverable. */
static p11kms_err trial_decrypt(p11kms *svc, key_access *acc, const p11kms_result *wrapped,
                                const enc_context *ctx, const uint8_t *key, size_t len,
                                p11kms_error *err)
{
    blob_view v;
    p11kms_err rc = blob_parse(wrapped->ciphertext, wrapped->ciphertext_len, &v, err);
    uint8_t *check = NULL;
    size_t check_len = 0;
    if (rc == P11KMS_OK)
        rc = kms_decrypt_view(svc, acc, &v, ctx, "GenerateDataKey", &check, &check_len, err);
    if (rc != P11KMS_OK)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "the wrapped data key failed its trial decrypt: %s; nothing was "
                            "returned",
                            err ? err->message : "");
    bool same = check_len == len && CRYPTO_memcmp(check, key, len) == 0;
    OPENSSL_secure_clear_free(check, check_len ? check_len : 1);
    if (!same)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "the wrapped data key does not decrypt to the generated key (token "
                            "or memory fault); nothing was returned");
    return P11KMS_OK;
}

p11kms_err kms_op_generate_data_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                    const p11kms_context *ctx, const char *key_spec,
                                    size_t number_of_bytes, bool want_plaintext, p11kms_result *out,
                                    p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    size_t len;
    p11kms_err rc = data_key_length(key_spec, number_of_bytes, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    policy_action action = want_plaintext ? POLICY_ACTION_GENERATE_DATA_KEY
                                          : POLICY_ACTION_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT;
    key_access acc;
    rc = kms_begin(svc, who, action, key_ref, ctx, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    uint8_t *key = OPENSSL_secure_malloc(len);
    if (key == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    if (rc == P11KMS_OK)
        rc = check_usable(svc, &acc, "GenerateDataKey", err);
    if (rc == P11KMS_OK)
        rc = p11_token_random_key(svc->token, key, len, err);
    if (rc == P11KMS_OK)
        rc = kms_encrypt_under(svc, &acc, context_pairs(ctx), key, len, out, err);
    if (rc == P11KMS_OK)
        rc = trial_decrypt(svc, &acc, out, context_pairs(ctx), key, len, err);
    key_access_end(&acc);
    if (rc == P11KMS_OK && want_plaintext) {
        out->plaintext = key;
        out->plaintext_len = len;
        key = NULL;
    }
    if (key != NULL)
        OPENSSL_secure_clear_free(key, len);
    if (rc != P11KMS_OK)
        p11kms_result_free(out);
    return rc;
}

p11kms_err kms_op_generate_random(p11kms *svc, const p11kms_principal *who, size_t number_of_bytes,
                                  p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    if (number_of_bytes < 1 || number_of_bytes > P11KMS_MAX_DATA_KEY)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "number of bytes must be 1 to %d",
                            P11KMS_MAX_DATA_KEY);
    p11kms_err rc = gate_check_global(svc, who, POLICY_ACTION_GENERATE_RANDOM, err);
    if (rc != P11KMS_OK)
        return rc;
    uint8_t *bytes = OPENSSL_secure_malloc(number_of_bytes);
    if (bytes == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    rc = p11_token_random(svc->token, bytes, number_of_bytes, err);
    if (rc != P11KMS_OK) {
        OPENSSL_secure_clear_free(bytes, number_of_bytes);
        return rc;
    }
    out->plaintext = bytes;
    out->plaintext_len = number_of_bytes;
    return P11KMS_OK;
}
