/* HMAC-SHA256 keys in the token (see hmac.h). */
#include "config.h"

#include "pkcs11/hmac.h"
#include "pkcs11/internal.h"

#include <stdlib.h>
#include <string.h>

#define ID_MAX 256
#define LABEL_MAX 512

/* SoftHSM refuses a NULL data pointer even with length 0. */
static const CK_BYTE empty_input[1];

static p11kms_err check_args(const uint8_t *id, size_t id_len, const char *label, p11kms_error *err)
{
    if (id == NULL || id_len == 0 || id_len > ID_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "an HMAC key id must be 1 to %d bytes",
                            ID_MAX);
    if (label == NULL || strlen(label) > LABEL_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "an HMAC key label must be 0 to %d bytes",
                            LABEL_MAX);
    return P11KMS_OK;
}

/* What an HMAC key's attributes must be. generated: also always-sensitive, never-extractable
 * (an imported key was, by definition, once outside the token). */
typedef struct hmac_attrs {
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE key_type;
    CK_ULONG value_len;
    CK_BBOOL token, private_, sensitive, extractable, sign, verify, encrypt, decrypt, wrap, unwrap,
        derive, always_sensitive, never_extractable;
} hmac_attrs;

static p11kms_err read_attrs(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h, hmac_attrs *a,
                             p11kms_error *err)
{
    memset(a, 0, sizeof(*a));
    a->extractable = CK_TRUE; /* unread must not pass */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &a->cls, sizeof(a->cls)},
        {CKA_KEY_TYPE, &a->key_type, sizeof(a->key_type)},
        {CKA_VALUE_LEN, &a->value_len, sizeof(a->value_len)},
        {CKA_TOKEN, &a->token, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &a->private_, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &a->sensitive, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &a->extractable, sizeof(CK_BBOOL)},
        {CKA_SIGN, &a->sign, sizeof(CK_BBOOL)},
        {CKA_VERIFY, &a->verify, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, &a->encrypt, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &a->decrypt, sizeof(CK_BBOOL)},
        {CKA_WRAP, &a->wrap, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &a->unwrap, sizeof(CK_BBOOL)},
        {CKA_DERIVE, &a->derive, sizeof(CK_BBOOL)},
        {CKA_ALWAYS_SENSITIVE, &a->always_sensitive, sizeof(CK_BBOOL)},
        {CKA_NEVER_EXTRACTABLE, &a->never_extractable, sizeof(CK_BBOOL)},
    };
    return p11c_get_attribute_value(t->calls, s->handle, h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]),
                                    err);
}

/* NULL when the attributes are those of an HMAC key, else what is wrong. */
static const char *attrs_problem(const hmac_attrs *a, bool generated, size_t want_len)
{
    if (a->cls != CKO_SECRET_KEY)
        return "not a secret key";
    if (a->key_type != CKK_GENERIC_SECRET)
        return "not a generic secret key";
    if (want_len != 0 && a->value_len != want_len)
        return "wrong key length";
    if (a->token != CK_TRUE || a->private_ != CK_TRUE)
        return "not a private token object";
    if (a->sensitive != CK_TRUE || a->extractable != CK_FALSE)
        return "not sensitive or extractable";
    if (a->sign != CK_TRUE || a->verify != CK_TRUE)
        return "cannot sign and verify";
    if (a->encrypt != CK_FALSE || a->decrypt != CK_FALSE || a->wrap != CK_FALSE ||
        a->unwrap != CK_FALSE || a->derive != CK_FALSE)
        return "has a usage other than sign and verify";
    if (generated && (a->always_sensitive != CK_TRUE || a->never_extractable != CK_TRUE))
        return "was once extractable or not sensitive";
    return NULL;
}

/* --- create / generate -------------------------------------------------------------------------
 */

struct create_args {
    p11_key *key;
    const char *label;
    const uint8_t *value; /* NULL: generate */
    size_t len;
};

static p11kms_err create_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct create_args *a = arg;
    p11_key *k = a->key;
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

    CK_KEY_TYPE key_type = CKK_GENERIC_SECRET;
    CK_ULONG value_len = (CK_ULONG)a->len;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
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
        /* last: CKA_VALUE to import, CKA_VALUE_LEN to generate */
        {CKA_VALUE, (void *)a->value, a->len},
    };
    CK_ULONG count = sizeof(tmpl) / sizeof(tmpl[0]);
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    p11kms_err rc;
    if (a->value != NULL) {
        rc = p11c_create_object(t->calls, s->handle, tmpl, count, &h, err);
    } else {
        tmpl[count - 1] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &value_len, sizeof(value_len)};
        CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
        rc = p11c_generate_key(t->calls, s->handle, &mech, tmpl, count, &h, err);
    }
    if (rc != P11KMS_OK)
        return rc;
    atomic_store(&k->ref.handle, h);
    atomic_store(&k->ref.gen, gen);
    return P11KMS_OK;
}

struct verify_args {
    p11_key *key;
    bool generated;
    size_t len;
};

static p11kms_err verify_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct verify_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    hmac_attrs at;
    p11kms_err rc = read_attrs(t, s, h, &at, err);
    if (rc != P11KMS_OK && err->ckr != CKR_ATTRIBUTE_TYPE_INVALID &&
        err->ckr != CKR_ATTRIBUTE_SENSITIVE)
        return rc; /* could not read: recovery may retry the check */
    const char *problem =
        rc == P11KMS_OK ? attrs_problem(&at, a->generated, a->len) : "attributes unreadable";
    if (problem == NULL)
        return P11KMS_OK;
    p11kms_error ignored = {0};
    (void)p11c_destroy_object(t->calls, s->handle, h, &ignored);
    P11KMS_RAISE(err, P11KMS_E_TOKEN,
                 "the token did not store the HMAC key as required (%s): destroyed it", problem);
    err->ckr = 0;
    return P11KMS_E_TOKEN;
}

static p11kms_err create_key(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                             const uint8_t *value, size_t len, p11_key **out, p11kms_error *err)
{
    p11_key *k = p11_key_new(id, id_len);
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory for a key");
    struct create_args ca = {k, label, value, len};
    struct verify_args va = {k, value == NULL, len};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, create_op, &ca, err);
    if (rc == P11KMS_OK)
        rc = p11_run(t, &k->ref, verify_op, &va, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc != P11KMS_OK) {
        p11_key_free(k);
        return rc;
    }
    if ((k = p11_key_adopt(t, k, err)) == NULL)
        return err->code;
    atomic_store(&k->hmac_checked, true);
    *out = k;
    return P11KMS_OK;
}

/* The token's range of HMAC-SHA256 key lengths (CK_MECHANISM_INFO, in bytes for HMAC). A key it
 * would refuse at C_SignInit is refused at import, naming the range, instead of being stored. */
static p11kms_err check_token_range(p11_token *t, size_t len, p11kms_error *err)
{
    p11_mechanism_report r[16];
    size_t n = sizeof(r) / sizeof(r[0]);
    if (p11_token_mechanisms(t, r, &n, err) != P11KMS_OK)
        return err->code;
    for (size_t i = 0; i < n; i++) {
        if (r[i].mechanism != CKM_SHA256_HMAC)
            continue;
        if (!r[i].supported)
            return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                                "the token does not offer CKM_SHA256_HMAC for signing");
        if ((r[i].min_key_size != 0 && len < r[i].min_key_size) ||
            (r[i].max_key_size != 0 && len > r[i].max_key_size))
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "the token takes HMAC-SHA256 keys of %lu to %lu bytes, not %zu",
                                r[i].min_key_size, r[i].max_key_size, len);
        return P11KMS_OK;
    }
    return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                        "CKM_SHA256_HMAC is not in the mechanism report");
}

p11kms_err p11_hmac_import(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                           const uint8_t *value, size_t len, p11_key **out, p11kms_error *err)
{
    if (t == NULL || out == NULL || value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_import: missing argument");
    *out = NULL;
    if (check_args(id, id_len, label, err) != P11KMS_OK)
        return err->code;
    if (len == 0 || len > P11_HMAC_KEY_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "an HMAC key value must be 1 to %d bytes",
                            P11_HMAC_KEY_MAX);
    if (check_token_range(t, len, err) != P11KMS_OK)
        return err->code;
    return create_key(t, id, id_len, label, value, len, out, err);
}

p11kms_err p11_hmac_generate(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                             size_t len, p11_key **out, p11kms_error *err)
{
    if (t == NULL || out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_generate: missing argument");
    *out = NULL;
    if (check_args(id, id_len, label, err) != P11KMS_OK)
        return err->code;
    if (len < 16 || len > 64)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "a generated HMAC key must be 16 to 64 bytes, not %zu", len);
    if (check_token_range(t, len, err) != P11KMS_OK)
        return err->code;
    return create_key(t, id, id_len, label, NULL, len, out, err);
}

/* --- find --------------------------------------------------------------------------------------
 */

static p11kms_err check_kind_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_key *k = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &k->ref, p11_key_finder, k, &h, err) != P11KMS_OK)
        return err->code;
    hmac_attrs at;
    if (read_attrs(t, s, h, &at, err) != P11KMS_OK)
        return err->code;
    const char *problem = attrs_problem(&at, false, 0);
    if (problem != NULL) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN, "the secret key with this CKA_ID is no HMAC key (%s)",
                     problem);
        err->ckr = 0;
        return P11KMS_E_TOKEN;
    }
    return P11KMS_OK;
}

p11kms_err p11_hmac_find(p11_token *t, const uint8_t *id, size_t id_len, p11_key **out,
                         p11kms_error *err)
{
    if (t == NULL || out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_find: missing argument");
    *out = NULL;
    p11_key *k = NULL;
    if (p11_key_find(t, id, id_len, &k, err) != P11KMS_OK)
        return err->code;
    if (!atomic_load(&k->hmac_checked)) {
        if (p11_run(t, &k->ref, check_kind_op, k, err) != P11KMS_OK)
            return err->code;
        atomic_store(&k->hmac_checked, true);
    }
    *out = k;
    return P11KMS_OK;
}

struct label_args {
    const char *label;
    uint8_t *id;
    size_t id_len;
};

static p11kms_err find_label_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct label_args *a = arg;
    free(a->id); /* from a failed earlier attempt */
    a->id = NULL;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)a->label, strlen(a->label)},
    };
    CK_OBJECT_HANDLE h;
    if (p11_find_one(t, s, tmpl, 3, "secret key with this label", &h, err) != P11KMS_OK)
        return err->code;
    return p11_get_attr_alloc(t, s, h, CKA_ID, &a->id, &a->id_len, err);
}

p11kms_err p11_hmac_find_label(p11_token *t, const char *label, p11_key **out, p11kms_error *err)
{
    if (t == NULL || out == NULL || label == NULL || label[0] == '\0')
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_find_label: missing argument");
    *out = NULL;
    struct label_args a = {label, NULL, 0};
    p11kms_err rc = p11_run(t, NULL, find_label_op, &a, err);
    if (rc == P11KMS_OK && a.id_len == 0)
        rc = P11KMS_RAISE(err, P11KMS_E_TOKEN, "the secret key with this label has no CKA_ID");
    if (rc == P11KMS_OK)
        rc = p11_hmac_find(t, a.id, a.id_len, out, err);
    free(a.id);
    return rc;
}

/* --- sign --------------------------------------------------------------------------------------
 */

struct sign_args {
    p11_key *key;
    const uint8_t *data;
    size_t len;
    uint8_t *out;
};

static p11kms_err sign_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct sign_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    if (p11c_sign_init(t->calls, s->handle, &mech, h, err) != P11KMS_OK) {
        if (err->ckr == CKR_OPERATION_ACTIVE)
            s->dirty = true;
        return err->code;
    }
    CK_ULONG out_len = P11_HMAC_SHA256_LEN;
    const CK_BYTE *in = a->len > 0 ? a->data : empty_input;
    if (p11c_sign(t->calls, s->handle, in, (CK_ULONG)a->len, a->out, &out_len, err) != P11KMS_OK) {
        s->dirty = true; /* a failed C_Sign may leave the operation active */
        return err->code;
    }
    if (out_len != P11_HMAC_SHA256_LEN) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_Sign(CKM_SHA256_HMAC) returned %lu bytes, not %d",
                     (unsigned long)out_len, P11_HMAC_SHA256_LEN);
        err->ckr = 0;
        return P11KMS_E_TOKEN;
    }
    return P11KMS_OK;
}

p11kms_err p11_hmac_sha256(p11_token *t, p11_key *key, const uint8_t *data, size_t len,
                           uint8_t out[P11_HMAC_SHA256_LEN], p11kms_error *err)
{
    if (t == NULL || key == NULL || out == NULL || (data == NULL && len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_sha256: missing argument");
    if (len > ((size_t)1 << 30))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_hmac_sha256: input too long");
    struct sign_args a = {key, data, len, out};
    return p11_run(t, &key->ref, sign_op, &a, err);
}
