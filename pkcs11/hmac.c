#include "config.h"

#include "pkcs11/internal.h"

#include <stdlib.h>
#include <string.h>

/* HMAC-SHA256 keys in the token: the provider authenticates what it keeps outside the token
 * (database rows) with one, so the key never leaves the token and every MAC is a C_Sign. */

struct hmac_generate_args {
    const uint8_t *id;
    size_t id_len;
    const char *label;
};

static p11kms_err hmac_generate_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct hmac_generate_args *a = arg;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_ID, (void *)a->id, a->id_len},
    };
    CK_OBJECT_HANDLE *existing = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, find, 3, &existing, &n, err) != P11KMS_OK)
        return err->code;
    free(existing);
    if (n > 0)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                            "a secret key labelled %s already exists in token %s", a->label,
                            t->token_uri);
    CK_KEY_TYPE key_type = CKK_GENERIC_SECRET;
    CK_ULONG value_len = P11_HMAC_SHA256_LEN;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_MODIFIABLE, &no, sizeof(no)},
        {CKA_ID, (void *)a->id, a->id_len},
        {CKA_LABEL, (void *)a->label, strlen(a->label)},
    };
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    return p11c_generate_key(t->calls, s->handle, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h,
                             err);
}

p11kms_err p11_hmac_key_generate(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                                 p11_key **out, p11kms_error *err)
{
    if (t == NULL || id == NULL || id_len == 0 || label == NULL || out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_key_generate: missing argument");
    *out = NULL;
    struct hmac_generate_args a = {id, id_len, label};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, hmac_generate_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc != P11KMS_OK)
        return rc;
    /* Found again from a fresh lookup: the key exists as the token stored it. */
    p11_key *key = NULL;
    rc = p11_key_find(t, id, id_len, &key, err);
    if (rc != P11KMS_OK)
        return rc;
    p11_key_attributes at;
    rc = p11_key_get_attributes(t, key, &at, err);
    if (rc != P11KMS_OK)
        return rc;
    if (at.key_type != CKK_GENERIC_SECRET || !at.sensitive || at.extractable ||
        !at.never_extractable || !at.always_sensitive || !at.sign || at.encrypt || at.decrypt ||
        at.wrap || at.unwrap || at.derive) {
        p11kms_error ignored = {0};
        (void)p11_key_destroy(t, key, &ignored);
        return P11KMS_RAISE(err, P11KMS_E_TOKEN,
                            "the generated HMAC key %s is not protected as required (sensitive "
                            "%d, extractable %d, never-extractable %d, sign %d, encrypt %d): "
                            "destroyed it",
                            label, at.sensitive, at.extractable, at.never_extractable, at.sign,
                            at.encrypt);
    }
    *out = key;
    return P11KMS_OK;
}

struct hmac_sign_args {
    p11_key *key;
    const uint8_t *data;
    size_t len;
    uint8_t *mac;
};

static p11kms_err hmac_sign_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct hmac_sign_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    /* SoftHSM refuses a NULL data pointer even with length 0. */
    static const CK_BYTE empty[1];
    s->dirty = true;
    if (p11c_sign_init(t->calls, s->handle, &mech, h, err) != P11KMS_OK)
        return err->code;
    CK_ULONG out_len = P11_HMAC_SHA256_LEN;
    if (p11c_sign(t->calls, s->handle, a->len ? a->data : empty, (CK_ULONG)a->len, a->mac, &out_len,
                  err) != P11KMS_OK)
        return err->code;
    s->dirty = false;
    if (out_len != P11_HMAC_SHA256_LEN)
        return P11KMS_RAISE(err, P11KMS_E_TOKEN, "CKM_SHA256_HMAC returned %lu bytes instead of %d",
                            out_len, P11_HMAC_SHA256_LEN);
    return P11KMS_OK;
}

p11kms_err p11_hmac_sign(p11_token *t, p11_key *key, const uint8_t *data, size_t len,
                         uint8_t mac[P11_HMAC_SHA256_LEN], p11kms_error *err)
{
    if (t == NULL || key == NULL || (data == NULL && len > 0) || mac == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_sign: missing argument");
    struct hmac_sign_args a = {key, data, len, mac};
    return p11_run(t, &key->ref, hmac_sign_op, &a, err);
}
