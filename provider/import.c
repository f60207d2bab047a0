#include "config.h"

#include "provider/import.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/rsa-wrap.h"
#include "provider/import-material.h"
#include "provider/import-token.h"
#include "provider/keyaccess.h"
#include "provider/keycache.h"
#include "provider/keyref.h"
#include "provider/keystore.h"
#include "provider/kms-crypto.h"
#include "provider/lifecycle-report.h"
#include "provider/lifecycle-state.h"

/* Imported key material (BYOK), as AWS KMS: GetParametersForImport, ImportKeyMaterial,
 * DeleteImportedKeyMaterial. The material is unwrapped by C_UnwrapKey straight into a token
 * object (the key's version 1, the object a generated key's first version would be), so it
 * never exists in p11kms's memory. The record keeps no versions while the key waits for its
 * material (PendingImport). */

#define DAY_SECONDS INT64_C(86400)
#define PARAMETERS_LIFETIME DAY_SECONDS /* AWS: 24 hours */
#define VALID_TO_MAX_DAYS 365           /* AWS: ValidTo at most 365 days ahead */
#define MATERIAL_LEN 32                 /* SYMMETRIC_DEFAULT: AES-256 */
#define ENCRYPTED_MATERIAL_MAX 4096
#define VERSION_ID_LEN (KEY_UUID_LEN + 4)
#define WRAP_LABEL_PREFIX "p11kms-import/wrap/"

/* --- key check value -------------------------------------------------------------------------- */

/* KCV = IV || AES-256-GCM(key, IV, AAD = label || key id, 16 zero bytes) || tag, computed in the
 * token with the imported key when the material is first imported. A later import is the same
 * material exactly when the new key object decrypts the KCV (tag verified in the token).
 *
 * Why this construction: a classic KCV (AES-ECB of a zero block) would be E_K(0^128), which is
 * the GHASH key H of every GCM ciphertext under K: it would let anyone forge ciphertexts. The
 * GCM KCV is an ordinary GCM ciphertext with a fresh random IV of a known plaintext, which anyone
 * allowed to call Encrypt can obtain anyway; its AAD (a label no blob header starts with, and the
 * key id) can never be the AAD of a ciphertext blob, so it cannot be replayed as one, and it
 * differs between keys even with the same material. */
static const char kcv_label[] = "p11kms imported key material check value v1";
#define KCV_PLAIN_LEN 16
#define KCV_LEN (P11_GCM_IV_LEN + KCV_PLAIN_LEN + P11_GCM_TAG_LEN)
_Static_assert(KCV_LEN <= KEYMETA_KCV_MAX, "KCV fits the record");

static void kcv_aad(const uint8_t id[KEY_UUID_LEN], uint8_t *aad, size_t *len)
{
    memcpy(aad, kcv_label, sizeof(kcv_label) - 1);
    memcpy(aad + sizeof(kcv_label) - 1, id, KEY_UUID_LEN);
    *len = sizeof(kcv_label) - 1 + KEY_UUID_LEN;
}

static p11kms_err kcv_compute(p11kms *svc, p11_key *key, key_meta *m, p11kms_error *err)
{
    uint8_t aad[sizeof(kcv_label) + KEY_UUID_LEN], zeros[KCV_PLAIN_LEN] = {0};
    size_t aad_len;
    kcv_aad(m->id, aad, &aad_len);
    uint8_t *out = m->material_kcv;
    p11kms_err rc = p11_token_random(svc->token, out, P11_GCM_IV_LEN, err);
    if (rc == P11KMS_OK)
        rc = p11_gcm_encrypt(svc->token, key, out, P11_GCM_IV_LEN, aad, aad_len, zeros,
                             sizeof(zeros), out + P11_GCM_IV_LEN, P11_GCM_TAG_LEN, err);
    if (rc == P11KMS_OK)
        m->material_kcv_len = KCV_LEN;
    return rc;
}

static p11kms_err kcv_verify(p11kms *svc, p11_key *key, const key_meta *m, p11kms_error *err)
{
    if (m->material_kcv_len != KCV_LEN)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key %s: its material check value is corrupt",
                            m->id_text);
    uint8_t aad[sizeof(kcv_label) + KEY_UUID_LEN], plain[KCV_PLAIN_LEN];
    size_t aad_len;
    kcv_aad(m->id, aad, &aad_len);
    p11kms_error probe = {0};
    p11kms_err rc =
        p11_gcm_decrypt(svc->token, key, m->material_kcv, P11_GCM_IV_LEN, aad, aad_len,
                        m->material_kcv + P11_GCM_IV_LEN, KCV_PLAIN_LEN + P11_GCM_TAG_LEN,
                        P11_GCM_TAG_LEN, plain, &probe);
    if (rc == P11KMS_E_INVALID_CIPHERTEXT)
        return P11KMS_RAISE(err, P11KMS_E_INCORRECT_KEY_MATERIAL,
                            "key %s: this is not the key material that was imported into it "
                            "before (a key accepts only the same material again)",
                            m->id_text);
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

/* --- shared steps ----------------------------------------------------------------------------- */

static void version_id(const uint8_t id[KEY_UUID_LEN], uint8_t out[VERSION_ID_LEN])
{
    memcpy(out, id, KEY_UUID_LEN);
    out[16] = out[17] = out[18] = 0;
    out[19] = IMPORT_MATERIAL_VERSION;
}

static p11kms_err refuse_not_external(const key_meta *m, const char *op, p11kms_error *err)
{
    if (m->origin == P11KMS_ORIGIN_EXTERNAL)
        return P11KMS_OK;
    return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                        "%s refused: key %s has origin AWS_KMS; key material can only be "
                        "imported into keys created with origin EXTERNAL",
                        op, m->id_text);
}

/* --- GetParametersForImport ------------------------------------------------------------------- */

void p11kms_import_parameters_free(p11kms_import_parameters *p)
{
    if (p == NULL)
        return;
    free(p->public_key);
    free(p->import_token);
    memset(p, 0, sizeof(*p));
}

static p11kms_err parse_wrapping(const char *alg_name, const char *spec, p11_wrap_alg *alg,
                                 unsigned *bits, p11kms_error *err)
{
    if (alg_name == NULL || spec == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "a wrapping algorithm and a wrapping key spec are required");
    if (strcmp(alg_name, "RSAES_PKCS1_V1_5") == 0)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "wrapping algorithm RSAES_PKCS1_V1_5 is refused (as AWS KMS refuses "
                            "it): use RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, "
                            "RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256");
    if (!p11_wrap_alg_parse(alg_name, alg))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "unknown wrapping algorithm %.64s: RSAES_OAEP_SHA_1, "
                            "RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or "
                            "RSA_AES_KEY_WRAP_SHA_256",
                            alg_name);
    if (strcmp(spec, "RSA_2048") == 0)
        *bits = 2048;
    else if (strcmp(spec, "RSA_3072") == 0)
        *bits = 3072;
    else if (strcmp(spec, "RSA_4096") == 0)
        *bits = 4096;
    else
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "unknown wrapping key spec %.64s: RSA_2048, RSA_3072 or RSA_4096",
                            spec);
    return P11KMS_OK;
}

/* Resolves the key, asks the policy and checks what every import operation requires. */
static p11kms_err begin(p11kms *svc, const p11kms_principal *who, policy_action action,
                        const char *op, const char *key_ref, key_entry **entry, p11kms_error *err)
{
    key_access acc;
    p11kms_err rc = kms_begin(svc, who, action, key_ref, NULL, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = refuse_not_external(acc.meta, op, err);
    if (rc == P11KMS_OK && acc.meta->state == P11KMS_KEY_PENDING_DELETION)
        rc = lifecycle_refuse_state(acc.meta, op, err);
    *entry = acc.entry;
    key_access_end(&acc);
    return rc;
}

p11kms_err p11kms_get_parameters_for_import(p11kms *svc, const p11kms_principal *who,
                                            const char *key_ref, const char *wrapping_algorithm,
                                            const char *wrapping_key_spec,
                                            p11kms_import_parameters *out, p11kms_error *err)
{
    memset(out, 0, sizeof(*out));
    p11_wrap_alg alg = P11_WRAP_OAEP_SHA1;
    unsigned bits = 0;
    key_entry *entry = NULL;
    p11kms_err rc = parse_wrapping(wrapping_algorithm, wrapping_key_spec, &alg, &bits, err);
    if (rc == P11KMS_OK)
        rc = begin(svc, who, POLICY_ACTION_GET_PARAMETERS_FOR_IMPORT, "GetParametersForImport",
                   key_ref, &entry, err);
    if (rc != P11KMS_OK)
        return rc;
    import_token tok;
    memcpy(tok.key_id, entry->id, KEY_UUID_LEN);
    tok.alg = alg;
    tok.expires = service_now() + PARAMETERS_LIFETIME;
    rc = p11_token_random(svc->token, tok.wrap_id, sizeof(tok.wrap_id), err);
    if (rc != P11KMS_OK)
        return rc;
    /* The label carries key and expiry so that maintenance can destroy expired pairs. */
    char label[128];
    snprintf(label, sizeof(label), WRAP_LABEL_PREFIX "%s/%" PRId64, entry->id_text, tok.expires);
    rc = p11_rsa_wrap_generate(svc->token, tok.wrap_id, sizeof(tok.wrap_id), label, bits,
                               svc->libctx, &out->public_key, &out->public_key_len, err);
    if (rc != P11KMS_OK)
        return rc;
    /* Never discover at import that the token cannot unwrap what the caller was told to send. */
    rc = p11_rsa_wrap_probe(svc->token, tok.wrap_id, sizeof(tok.wrap_id), alg, svc->libctx, err);
    if (rc == P11KMS_OK && (out->import_token = malloc(IMPORT_TOKEN_LEN)) == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK) {
        rc = keystore_lock(svc, err);
        if (rc == P11KMS_OK) {
            rc = import_token_seal(svc, &tok, out->import_token, err);
            keystore_unlock(svc);
        }
    }
    if (rc != P11KMS_OK) {
        p11kms_error ignored = {0};
        (void)p11_rsa_wrap_destroy(svc->token, tok.wrap_id, sizeof(tok.wrap_id), &ignored);
        p11kms_import_parameters_free(out);
        return rc;
    }
    out->import_token_len = IMPORT_TOKEN_LEN;
    out->parameters_valid_to = tok.expires;
    keyref_key_arn(svc->cfg, entry->id_text, out->key_id);
    return P11KMS_OK;
}

/* --- ImportKeyMaterial ------------------------------------------------------------------------ */

static p11kms_err parse_expiration(const p11kms_import_input *in, expiration_model *model,
                                   p11kms_error *err)
{
    const char *name = in->expiration_model;
    /* AWS's default model is KEY_MATERIAL_EXPIRES, which needs a ValidTo: a ValidTo alone means
     * that model. Neither given, AWS refuses the request; p11kms takes the material as
     * non-expiring, the only reading left. */
    if (name == NULL)
        name = in->valid_to != 0 ? "KEY_MATERIAL_EXPIRES" : "KEY_MATERIAL_DOES_NOT_EXPIRE";
    if (strcmp(name, "KEY_MATERIAL_DOES_NOT_EXPIRE") == 0) {
        if (in->valid_to != 0)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "ValidTo is allowed only with KEY_MATERIAL_EXPIRES");
        *model = EXPIRATION_DOES_NOT_EXPIRE;
        return P11KMS_OK;
    }
    if (strcmp(name, "KEY_MATERIAL_EXPIRES") != 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "unknown expiration model %.64s: KEY_MATERIAL_EXPIRES or "
                            "KEY_MATERIAL_DOES_NOT_EXPIRE",
                            name);
    int64_t now = service_now();
    if (in->valid_to <= now || in->valid_to > now + VALID_TO_MAX_DAYS * DAY_SECONDS)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "KEY_MATERIAL_EXPIRES needs a ValidTo in the future, at most %d days "
                            "ahead",
                            VALID_TO_MAX_DAYS);
    *model = EXPIRATION_EXPIRES;
    return P11KMS_OK;
}

typedef struct import_job {
    const p11kms_import_input *in;
    const import_token *tok;
    expiration_model model;
} import_job;

/* Unwraps into the key's material object, checks it against the record's KCV and makes the key
 * Enabled. Caller holds the lock. The record is committed only after the object exists and its
 * check value matched: a crash in between leaves PendingImport and an unnamed object, which the
 * next access, import or maintain destroys (import_sweep). */
static p11kms_err import_locked(p11kms *svc, key_entry *entry, key_meta *m, const import_job *j,
                                p11kms_error *err)
{
    /* A leftover object (an interrupted import or deletion) would make the new one ambiguous:
     * the record lists no material, so no ciphertext depends on it. */
    p11kms_err rc = import_destroy_material(svc, entry, m->id, NULL, err);
    if (rc != P11KMS_OK)
        return rc;
    uint8_t vid[VERSION_ID_LEN];
    char label[KEYSTORE_LABEL_MAX];
    version_id(m->id, vid);
    snprintf(label, sizeof(label), "p11kms/%s/v%u", m->id_text, IMPORT_MATERIAL_VERSION);
    p11_unwrap_target target = {vid, sizeof(vid), label, MATERIAL_LEN, false, NULL};
    p11_key *key = NULL;
    rc = p11_rsa_wrap_unwrap(svc->token, j->tok->wrap_id, sizeof(j->tok->wrap_id), j->tok->alg,
                             j->in->encrypted_key_material, j->in->encrypted_key_material_len,
                             &target, &key, err);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_IMPORT_TOKEN,
                            "the wrapping key of this import token no longer exists (run "
                            "get-parameters-for-import again)");
    if (rc != P11KMS_OK)
        return rc;
    key_meta *next = keymeta_clone(m);
    if (next == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    else if (m->material_kcv_len > 0)
        rc = kcv_verify(svc, key, m, err);
    else
        rc = kcv_compute(svc, key, next, err);
    if (rc == P11KMS_OK &&
        !keymeta_add_version(next, IMPORT_MATERIAL_VERSION, service_now(), ROTATION_INITIAL))
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK) {
        next->state = P11KMS_KEY_ENABLED;
        next->expiration = j->model;
        next->valid_to = j->model == EXPIRATION_EXPIRES ? j->in->valid_to : 0;
        rc = keycache_commit(svc, entry, next, err);
    }
    keymeta_free(next);
    if (rc != P11KMS_OK) {
        p11kms_error ignored = {0};
        keycache_drop_version_key(svc, entry, IMPORT_MATERIAL_VERSION);
        if (p11_key_destroy(svc->token, key, &ignored) != P11KMS_OK)
            return rc; /* the record lists no material: import_sweep destroys the object */
    }
    return rc;
}

p11kms_err p11kms_import_key_material(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      const p11kms_import_input *in, p11kms_error *err)
{
    if (in == NULL || in->encrypted_key_material == NULL || in->encrypted_key_material_len == 0 ||
        in->encrypted_key_material_len > ENCRYPTED_MATERIAL_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "encrypted key material must have 1 to %d bytes",
                            ENCRYPTED_MATERIAL_MAX);
    if (in->import_token == NULL || in->import_token_len == 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "an import token is required");
    expiration_model model = EXPIRATION_NONE;
    key_entry *entry = NULL;
    p11kms_err rc = parse_expiration(in, &model, err);
    if (rc == P11KMS_OK)
        rc = begin(svc, who, POLICY_ACTION_IMPORT_KEY_MATERIAL, "ImportKeyMaterial", key_ref,
                   &entry, err);
    if (rc != P11KMS_OK)
        return rc;
    import_token tok;
    rc = import_token_open(svc, in->import_token, in->import_token_len, &tok, err);
    if (rc != P11KMS_OK)
        return rc;
    if (CRYPTO_memcmp(tok.key_id, entry->id, KEY_UUID_LEN) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_IMPORT_TOKEN,
                            "the import token was issued for another key, not %s", entry->id_text);
    if (tok.expires <= service_now())
        return P11KMS_RAISE(err, P11KMS_E_EXPIRED_IMPORT_TOKEN,
                            "the import token expired (it is valid for 24 hours): run "
                            "get-parameters-for-import again");

    rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_OK)
        rc = refuse_not_external(m, "ImportKeyMaterial", err);
    if (rc == P11KMS_OK && m->state != P11KMS_KEY_PENDING_IMPORT)
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_STATE, "ImportKeyMaterial refused: key %s is %s%s",
                          m->id_text, p11kms_key_state_name(m->state),
                          m->state == P11KMS_KEY_PENDING_DELETION
                              ? ""
                              : " and already has key material (delete it first)");
    if (rc == P11KMS_OK) {
        import_job j = {in, &tok, model};
        rc = import_locked(svc, entry, m, &j, err);
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

/* --- DeleteImportedKeyMaterial ---------------------------------------------------------------- */

p11kms_err p11kms_delete_imported_key_material(p11kms *svc, const p11kms_principal *who,
                                               const char *key_ref, p11kms_error *err)
{
    key_entry *entry = NULL;
    p11kms_err rc = begin(svc, who, POLICY_ACTION_DELETE_IMPORTED_KEY_MATERIAL,
                          "DeleteImportedKeyMaterial", key_ref, &entry, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_OK)
        rc = refuse_not_external(m, "DeleteImportedKeyMaterial", err);
    if (rc == P11KMS_OK && m->state == P11KMS_KEY_PENDING_IMPORT &&
        keymeta_version(m, IMPORT_MATERIAL_VERSION) == NULL)
        rc = import_destroy_material(svc, entry, m->id, NULL, err); /* an interrupted import's */
    if (rc == P11KMS_OK &&
        (m->state == P11KMS_KEY_PENDING_IMPORT || m->state == P11KMS_KEY_PENDING_DELETION))
        rc = lifecycle_refuse_state(m, "DeleteImportedKeyMaterial", err);
    if (rc == P11KMS_OK)
        rc = import_remove_material_locked(svc, entry, m, err);
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

/* --- maintenance ------------------------------------------------------------------------------ */

typedef struct due_scan {
    char (*ids)[P11KMS_KEY_ID_LEN + 1];
    size_t count;
    bool oom;
    int64_t now;
} due_scan;

static int collect_due(const key_meta *m, void *arg)
{
    due_scan *s = arg;
    if (!import_material_due(m, s->now))
        return 0;
    void *grown = realloc(s->ids, (s->count + 1) * sizeof(*s->ids));
    if (grown == NULL) {
        s->oom = true;
        return 1;
    }
    s->ids = grown;
    memcpy(s->ids[s->count++], m->id_text, P11KMS_KEY_ID_LEN + 1);
    return 0;
}

typedef struct wrap_scan {
    p11kms *svc;
    void (*fn)(const char *line, void *arg);
    void *arg;
    int64_t now;
    p11kms_err rc;
    p11kms_error *err;
} wrap_scan;

static int destroy_if_expired(const uint8_t *id, size_t id_len, const char *label, void *arg)
{
    wrap_scan *s = arg;
    const char *slash = strrchr(label, '/');
    char *end = NULL;
    long long expires = slash ? strtoll(slash + 1, &end, 10) : 0;
    if (slash == NULL || end == slash + 1 || *end != '\0' || expires > s->now)
        return 0;
    s->rc = p11_rsa_wrap_destroy(s->svc->token, id, id_len, s->err);
    if (s->rc == P11KMS_E_NOT_FOUND)
        s->rc = P11KMS_OK; /* destroyed by another process meanwhile */
    if (s->rc != P11KMS_OK)
        return 1;
    lifecycle_report(s->fn, s->arg, "wrapping key pair %s expired; destroyed",
                     label + strlen(WRAP_LABEL_PREFIX));
    return 0;
}

p11kms_err import_maintain(p11kms *svc, void (*fn)(const char *line, void *arg), void *arg,
                           p11kms_error *err)
{
    due_scan d = {NULL, 0, false, service_now()};
    p11kms_err rc = keystore_meta_list(svc, collect_due, NULL, &d, err);
    if (rc == P11KMS_OK && d.oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == P11KMS_OK && i < d.count; i++) {
        key_entry *entry = keycache_entry(svc, d.ids[i]);
        if (entry == NULL)
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        else
            rc = import_expire_if_due(svc, entry, err);
        if (rc == P11KMS_OK)
            lifecycle_report(fn, arg,
                             "key %s: imported key material expired; destroyed (PendingImport)",
                             d.ids[i]);
    }
    free(d.ids);
    if (rc != P11KMS_OK)
        return rc;
    wrap_scan w = {svc, fn, arg, service_now(), P11KMS_OK, err};
    rc = p11_rsa_wrap_list(svc->token, WRAP_LABEL_PREFIX, destroy_if_expired, &w, err);
    return rc != P11KMS_OK ? rc : w.rc;
}
