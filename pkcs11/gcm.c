#include "config.h"

#include "pkcs11/internal.h"

#include <string.h>

#include <openssl/crypto.h>

/* Single-part inputs this large are refused: it also keeps the length sums below from
 * overflowing. */
#define GCM_INPUT_MAX ((size_t)1 << 31)

/* CK_GCM_PARAMS of vendor headers older than the PKCS#11 v2.40 errata: no ulIvBits. */
typedef struct gcm_params_legacy {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} gcm_params_legacy;

typedef union gcm_params {
    CK_GCM_PARAMS v240;
    gcm_params_legacy legacy;
} gcm_params;

/* SoftHSM refuses a NULL data pointer even with length 0. */
static const CK_BYTE empty_input[1];

struct gcm_args {
    p11_key *key;
    uint8_t *iv_out;      /* encrypt: where the IV used goes (TOKEN mode) */
    const uint8_t *iv_in; /* the IV to use (HOST mode, decrypt) */
    const uint8_t *aad;
    size_t aad_len;
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;
};

static void gcm_mechanism(const p11_token *t, CK_MECHANISM *m, gcm_params *p, uint8_t *iv,
                          const struct gcm_args *a)
{
    CK_BYTE_PTR aad = a->aad_len > 0 ? (CK_BYTE_PTR)a->aad : NULL;
    if (t->gcm_layout == P11_GCM_LEGACY) {
        p->legacy =
            (gcm_params_legacy){iv, P11_GCM_IV_LEN, aad, (CK_ULONG)a->aad_len, P11_GCM_TAG_LEN * 8};
        *m = (CK_MECHANISM){CKM_AES_GCM, &p->legacy, sizeof(p->legacy)};
        return;
    }
    p->v240.pIv = iv;
    p->v240.ulIvLen = P11_GCM_IV_LEN;
    p->v240.ulIvBits = P11_GCM_IV_LEN * 8;
    p->v240.pAAD = aad;
    p->v240.ulAADLen = (CK_ULONG)a->aad_len;
    p->v240.ulTagBits = P11_GCM_TAG_LEN * 8;
    *m = (CK_MECHANISM){CKM_AES_GCM, &p->v240, sizeof(p->v240)};
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* The hot path: handle from the cache, C_EncryptInit, C_Encrypt into the caller's buffer. */
static p11kms_err encrypt_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct gcm_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    uint8_t iv[P11_GCM_IV_LEN];
    /* TOKEN mode: a zero IV the token replaces (or ignores, appending its own to the output). */
    if (t->iv_mode == P11_IV_TOKEN)
        memset(iv, 0, sizeof(iv));
    else
        memcpy(iv, a->iv_in, sizeof(iv));
    CK_MECHANISM m;
    gcm_params p;
    gcm_mechanism(t, &m, &p, iv, a);
    if (p11c_encrypt_init(t->calls, s->handle, &m, h, err) != P11KMS_OK)
        return err->code;
    const CK_BYTE *in = a->in_len > 0 ? a->in : empty_input;
    size_t want = a->in_len + P11_GCM_TAG_LEN;

    if (t->iv_mode == P11_IV_HOST) {
        CK_ULONG out_len = want;
        if (p11c_encrypt(t->calls, s->handle, in, a->in_len, a->out, &out_len, err) != P11KMS_OK) {
            s->dirty = true; /* CKR_BUFFER_TOO_SMALL and others can leave the operation active */
            return err->code;
        }
        if (out_len != want) {
            P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_Encrypt returned %lu bytes, expected %zu",
                         (unsigned long)out_len, want);
            err->ckr = 0;
            return P11KMS_E_TOKEN;
        }
        return P11KMS_OK;
    }

    uint8_t *buf = p11_session_scratch(s, want + P11_GCM_IV_LEN, err);
    if (buf == NULL) {
        s->dirty = true;
        return err->code;
    }
    CK_ULONG out_len = want + P11_GCM_IV_LEN;
    if (p11c_encrypt(t->calls, s->handle, in, a->in_len, buf, &out_len, err) != P11KMS_OK) {
        s->dirty = true;
        OPENSSL_cleanse(buf, want + P11_GCM_IV_LEN);
        return err->code;
    }
    const uint8_t *used_iv;
    if (out_len == want)
        used_iv = iv; /* the token wrote its IV into pIv */
    else if (out_len == want + P11_GCM_IV_LEN)
        used_iv = buf + want; /* the token appended its IV */
    else
        used_iv = NULL;
    p11kms_err rc = P11KMS_OK;
    if (used_iv == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_TOKEN,
                          "C_Encrypt returned %lu bytes, expected %zu or %zu with the IV",
                          (unsigned long)out_len, want, want + P11_GCM_IV_LEN);
    else if (all_zero(used_iv, P11_GCM_IV_LEN))
        /* Repeating an IV under one key breaks GCM: never hand out such a ciphertext. */
        rc = P11KMS_RAISE(err, P11KMS_E_TOKEN,
                          "iv_mode is token but the token did not generate an IV (it used the "
                          "all-zero IV); the ciphertext was discarded");
    if (rc == P11KMS_OK) {
        memcpy(a->out, buf, want);
        memcpy(a->iv_out, used_iv, P11_GCM_IV_LEN);
    } else {
        err->ckr = 0;
    }
    OPENSSL_cleanse(buf, want + P11_GCM_IV_LEN);
    return rc;
}

p11kms_err p11_gcm_encrypt(p11_token *t, p11_key *key, uint8_t *iv, size_t iv_len,
                           const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                           uint8_t *out, size_t tag_len, p11kms_error *err)
{
    if (t == NULL || key == NULL || out == NULL || (pt == NULL && pt_len > 0) ||
        (aad == NULL && aad_len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_gcm_encrypt: missing argument");
    if (iv == NULL || iv_len != P11_GCM_IV_LEN || tag_len != P11_GCM_TAG_LEN)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "AES-GCM through the token takes a %d-byte IV and a %d-byte tag, not "
                            "%zu and %zu",
                            P11_GCM_IV_LEN, P11_GCM_TAG_LEN, iv_len, tag_len);
    if (pt_len > GCM_INPUT_MAX || aad_len > GCM_INPUT_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "input too large for single-part GCM");
    struct gcm_args a = {key, iv, iv, aad, aad_len, pt, pt_len, out};
    return p11_run(t, &key->ref, encrypt_op, &a, err);
}

/* What tokens return for a failed tag check: SoftHSM 2.6.1 CKR_GENERAL_ERROR, SoftHSM 2.7 and
 * NSS CKR_ENCRYPTED_DATA_INVALID, PKCS#11 3.0 CKR_AEAD_DECRYPT_FAILED, others the rest. */
static bool tag_failure(CK_RV rv)
{
    switch (rv) {
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_GENERAL_ERROR:
    case CKR_DATA_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_SIGNATURE_INVALID:
    case 0x42UL: /* CKR_AEAD_DECRYPT_FAILED */
        return true;
    default:
        return false;
    }
}

static p11kms_err decrypt_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct gcm_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    /* The plaintext lands here, never in the caller's buffer, until the tag verified. */
    uint8_t *buf = p11_session_scratch(s, a->in_len, err);
    if (buf == NULL)
        return err->code;
    uint8_t iv[P11_GCM_IV_LEN];
    memcpy(iv, a->iv_in, sizeof(iv));
    CK_MECHANISM m;
    gcm_params p;
    gcm_mechanism(t, &m, &p, iv, a);
    if (p11c_decrypt_init(t->calls, s->handle, &m, h, err) != P11KMS_OK)
        return err->code;
    CK_ULONG out_len = a->in_len; /* SoftHSM wants room for the whole input */
    size_t want = a->in_len - P11_GCM_TAG_LEN;
    if (p11c_decrypt(t->calls, s->handle, a->in, a->in_len, buf, &out_len, err) != P11KMS_OK) {
        OPENSSL_cleanse(buf, a->in_len);
        if (tag_failure(err->ckr))
            return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                                "the token rejected the ciphertext, tag or AAD (%s)",
                                p11_ckr_name(err->ckr));
        s->dirty = true;
        return err->code;
    }
    if (out_len != want) {
        OPENSSL_cleanse(buf, a->in_len);
        P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_Decrypt returned %lu bytes, expected %zu",
                     (unsigned long)out_len, want);
        err->ckr = 0;
        return P11KMS_E_TOKEN;
    }
    if (want > 0)
        memcpy(a->out, buf, want);
    OPENSSL_cleanse(buf, want);
    return P11KMS_OK;
}

p11kms_err p11_gcm_decrypt(p11_token *t, p11_key *key, const uint8_t *iv, size_t iv_len,
                           const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                           size_t tag_len, uint8_t *pt, p11kms_error *err)
{
    if (t == NULL || key == NULL || in == NULL || (aad == NULL && aad_len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_gcm_decrypt: missing argument");
    if (iv == NULL || iv_len != P11_GCM_IV_LEN || tag_len != P11_GCM_TAG_LEN)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "AES-GCM through the token takes a %d-byte IV and a %d-byte tag, not "
                            "%zu and %zu",
                            P11_GCM_IV_LEN, P11_GCM_TAG_LEN, iv_len, tag_len);
    if (in_len > GCM_INPUT_MAX || aad_len > GCM_INPUT_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "input too large for single-part GCM");
    if (in_len < P11_GCM_TAG_LEN)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext of %zu bytes is shorter than the tag", in_len);
    if (pt == NULL && in_len > P11_GCM_TAG_LEN)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_gcm_decrypt: no plaintext buffer");
    struct gcm_args a = {key, NULL, iv, aad, aad_len, in, in_len, pt};
    return p11_run(t, &key->ref, decrypt_op, &a, err);
}
