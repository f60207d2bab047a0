#include "config.h"

#include "pkcs11/hmac.h"

#include <stdlib.h>
#include <string.h>

#include "pkcs11/internal.h"

#define HMAC_ID_MAX 64

struct p11_hmac_key {
    p11_objref ref;
    size_t id_len;
    uint8_t id[HMAC_ID_MAX];
};

static p11kms_err hmac_finder(p11_token *t, p11_session *s, void *arg, CK_OBJECT_HANDLE *h,
                              p11kms_error *err)
{
    p11_hmac_key *k = arg;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_ID, k->id, k->id_len},
    };
    return p11_find_one(t, s, tmpl, 4, "generic secret key with this CKA_ID", h, err);
}

static p11kms_err hmac_alloc(const uint8_t *id, size_t id_len, p11_hmac_key **out,
                             p11kms_error *err)
{
    if (id == NULL || id_len == 0 || id_len > HMAC_ID_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "an HMAC key id must be 1 to %d bytes",
                            HMAC_ID_MAX);
    p11_hmac_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    memcpy(k->id, id, id_len);
    k->id_len = id_len;
    atomic_init(&k->ref.handle, CK_INVALID_HANDLE);
    atomic_init(&k->ref.gen, 0);
    *out = k;
    return P11KMS_OK;
}

void p11_hmac_key_free(p11_hmac_key *key)
{
    free(key);
}

static p11kms_err find_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_hmac_key *k = arg;
    CK_OBJECT_HANDLE h;
    return p11_objref_refresh(t, s, &k->ref, hmac_finder, k, &h, err);
}

p11kms_err p11_hmac_key_find(p11_token *t, const uint8_t *id, size_t id_len, p11_hmac_key **out,
                             p11kms_error *err)
{
    *out = NULL;
    p11_hmac_key *k;
    p11kms_err rc = hmac_alloc(id, id_len, &k, err);
    if (rc == P11KMS_OK)
        rc = p11_run(t, &k->ref, find_op, k, err);
    if (rc != P11KMS_OK) {
        free(k);
        return rc;
    }
    *out = k;
    return P11KMS_OK;
}

struct generate_args {
    p11_hmac_key *key;
    const char *label;
};

static p11kms_err generate_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct generate_args *a = arg;
    p11_hmac_key *k = a->key;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_ID, k->id, k->id_len},
    };
    CK_OBJECT_HANDLE *existing = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, find, 3, &existing, &n, err) != P11KMS_OK)
        return err->code;
    free(existing);
    if (n > 0)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                            "a secret key with this CKA_ID already exists in token %s",
                            t->token_uri);
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_ULONG value_len = P11_HMAC_KEY_LEN;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
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
        {CKA_ID, k->id, k->id_len},
        {CKA_LABEL, (void *)a->label, strlen(a->label)},
    };
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    if (p11c_generate_key(t->calls, s->handle, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h,
                          err) != P11KMS_OK)
        return err->code;
    CK_BBOOL never_extractable = CK_FALSE, always_sensitive = CK_FALSE;
    CK_ATTRIBUTE check[] = {
        {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(CK_BBOOL)},
        {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof(CK_BBOOL)},
    };
    p11kms_err rc = p11c_get_attribute_value(t->calls, s->handle, h, check, 2, err);
    if (rc != P11KMS_OK || never_extractable != CK_TRUE || always_sensitive != CK_TRUE) {
        p11kms_error ignored = {0};
        (void)p11c_destroy_object(t->calls, s->handle, h, &ignored);
        P11KMS_RAISE(err, P11KMS_E_TOKEN,
                     "the generated HMAC key is not protected as required: destroyed it");
        err->ckr = 0;
        return P11KMS_E_TOKEN;
    }
    atomic_store(&k->ref.handle, h);
    atomic_store(&k->ref.gen, gen);
    return P11KMS_OK;
}

p11kms_err p11_hmac_key_generate(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                                 p11_hmac_key **out, p11kms_error *err)
{
    *out = NULL;
    p11_hmac_key *k;
    p11kms_err rc = hmac_alloc(id, id_len, &k, err);
    if (rc != P11KMS_OK)
        return rc;
    struct generate_args a = {k, label};
    pthread_mutex_lock(&t->create_lock);
    rc = p11_run(t, NULL, generate_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc != P11KMS_OK) {
        free(k);
        return rc;
    }
    *out = k;
    return P11KMS_OK;
}

struct sign_args {
    p11_hmac_key *key;
    const uint8_t *data;
    size_t len;
    uint8_t *mac;
};

static p11kms_err sign_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct sign_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, hmac_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    if (p11c_sign_init(t->calls, s->handle, &mech, h, err) != P11KMS_OK)
        return err->code;
    CK_ULONG out_len = P11_HMAC_LEN;
    if (p11c_sign(t->calls, s->handle, a->data, a->len, a->mac, &out_len, err) != P11KMS_OK) {
        s->dirty = true;
        return err->code;
    }
    if (out_len != P11_HMAC_LEN) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_Sign returned %lu bytes, expected %d",
                     (unsigned long)out_len, P11_HMAC_LEN);
        err->ckr = 0;
        return P11KMS_E_TOKEN;
    }
    return P11KMS_OK;
}

p11kms_err p11_hmac_sign(p11_token *t, p11_hmac_key *key, const uint8_t *data, size_t len,
                         uint8_t mac[P11_HMAC_LEN], p11kms_error *err)
{
    struct sign_args a = {key, data, len, mac};
    return p11_run(t, &key->ref, sign_op, &a, err);
}
