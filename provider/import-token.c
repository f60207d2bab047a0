#include "config.h"

#include "provider/import-token.h"

#include <openssl/crypto.h>
#include <string.h>

/* Layout: magic "p1t" || version 0x01 || IV (12) || GCM(plaintext, 41 bytes) || tag (16), with
 * the first four bytes as AAD. Plaintext: key id (16) || wrapping key id (16) || algorithm (1) ||
 * expiry (i64 big-endian). */
#define TOKEN_HEADER_LEN 4
#define TOKEN_PLAIN_LEN (KEY_UUID_LEN + P11_WRAP_ID_LEN + 1 + 8)
static const uint8_t token_header[TOKEN_HEADER_LEN] = {'p', '1', 't', 0x01};

_Static_assert(IMPORT_TOKEN_LEN ==
                   TOKEN_HEADER_LEN + P11_GCM_IV_LEN + TOKEN_PLAIN_LEN + P11_GCM_TAG_LEN,
               "import token length");

/* The import-token key: CKA_ID of 23 bytes, so that no scan takes it for a key version (those
 * have 20-byte ids and labels under "p11kms/"). */
static const uint8_t token_key_id[] = "p11kms-import-token-key";
#define TOKEN_KEY_LABEL "p11kms-import/token-key"

static p11kms_err token_key(p11kms *svc, bool create, p11_key **out, p11kms_error *err)
{
    p11kms_error probe = {0};
    p11kms_err rc = p11_key_find(svc->token, token_key_id, sizeof(token_key_id) - 1, out, &probe);
    if (rc == P11KMS_E_NOT_FOUND && create)
        return p11_key_generate(svc->token, token_key_id, sizeof(token_key_id) - 1, TOKEN_KEY_LABEL,
                                out, err);
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

static void put_i64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)((uint64_t)v & 0xff);
        v = (int64_t)((uint64_t)v >> 8);
    }
}

static int64_t get_i64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

p11kms_err import_token_seal(p11kms *svc, const import_token *t, uint8_t out[IMPORT_TOKEN_LEN],
                             p11kms_error *err)
{
    p11_key *key = NULL;
    p11kms_err rc = token_key(svc, true, &key, err);
    if (rc != P11KMS_OK)
        return rc;
    uint8_t plain[TOKEN_PLAIN_LEN];
    memcpy(plain, t->key_id, KEY_UUID_LEN);
    memcpy(plain + KEY_UUID_LEN, t->wrap_id, P11_WRAP_ID_LEN);
    plain[KEY_UUID_LEN + P11_WRAP_ID_LEN] = (uint8_t)t->alg;
    put_i64(plain + KEY_UUID_LEN + P11_WRAP_ID_LEN + 1, t->expires);
    memcpy(out, token_header, TOKEN_HEADER_LEN);
    uint8_t *iv = out + TOKEN_HEADER_LEN;
    rc = p11_token_random(svc->token, iv, P11_GCM_IV_LEN, err);
    if (rc == P11KMS_OK)
        rc = p11_gcm_encrypt(svc->token, key, iv, P11_GCM_IV_LEN, token_header, TOKEN_HEADER_LEN,
                             plain, sizeof(plain), iv + P11_GCM_IV_LEN, P11_GCM_TAG_LEN, err);
    OPENSSL_cleanse(plain, sizeof(plain));
    return rc;
}

p11kms_err import_token_open(p11kms *svc, const uint8_t *in, size_t len, import_token *out,
                             p11kms_error *err)
{
    if (in == NULL || len != IMPORT_TOKEN_LEN || memcmp(in, token_header, TOKEN_HEADER_LEN) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_IMPORT_TOKEN,
                            "the import token is not one this service issued (wrong length or "
                            "version)");
    p11_key *key = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = token_key(svc, false, &key, &probe);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_IMPORT_TOKEN,
                            "the import token is not one this service issued (no import token "
                            "was ever issued by this token)");
    if (rc != P11KMS_OK) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    uint8_t plain[TOKEN_PLAIN_LEN];
    const uint8_t *iv = in + TOKEN_HEADER_LEN;
    rc = p11_gcm_decrypt(svc->token, key, iv, P11_GCM_IV_LEN, in, TOKEN_HEADER_LEN,
                         iv + P11_GCM_IV_LEN, TOKEN_PLAIN_LEN + P11_GCM_TAG_LEN, P11_GCM_TAG_LEN,
                         plain, &probe);
    if (rc == P11KMS_E_INVALID_CIPHERTEXT)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_IMPORT_TOKEN,
                            "the import token is not one this service issued (it was modified)");
    if (rc != P11KMS_OK) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    memcpy(out->key_id, plain, KEY_UUID_LEN);
    memcpy(out->wrap_id, plain + KEY_UUID_LEN, P11_WRAP_ID_LEN);
    out->alg = (p11_wrap_alg)plain[KEY_UUID_LEN + P11_WRAP_ID_LEN];
    out->expires = get_i64(plain + KEY_UUID_LEN + P11_WRAP_ID_LEN + 1);
    OPENSSL_cleanse(plain, sizeof(plain));
    if (p11_wrap_alg_name(out->alg) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_IMPORT_TOKEN,
                            "the import token names an unknown wrapping algorithm");
    return P11KMS_OK;
}
