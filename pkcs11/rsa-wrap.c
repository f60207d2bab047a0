#include "config.h"

#include "pkcs11/rsa-wrap.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/internal.h"

#define MATERIAL_PROBE_LEN 32
#define EPHEMERAL_AES_LEN 32
/* PKCS#11 3.0 names RFC 5649 unambiguously; p11-kit 0.24's header lacks the constant. */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210bUL
#endif

static const struct {
    p11_wrap_alg alg;
    const char *name;
} alg_names[] = {
    {P11_WRAP_OAEP_SHA1, "RSAES_OAEP_SHA_1"},
    {P11_WRAP_OAEP_SHA256, "RSAES_OAEP_SHA_256"},
    {P11_WRAP_RSA_AES_SHA1, "RSA_AES_KEY_WRAP_SHA_1"},
    {P11_WRAP_RSA_AES_SHA256, "RSA_AES_KEY_WRAP_SHA_256"},
};

const char *p11_wrap_alg_name(p11_wrap_alg alg)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (alg_names[i].alg == alg)
            return alg_names[i].name;
    return NULL;
}

bool p11_wrap_alg_parse(const char *name, p11_wrap_alg *out)
{
    for (size_t i = 0; name != NULL && i < sizeof(alg_names) / sizeof(alg_names[0]); i++) {
        if (strcmp(alg_names[i].name, name) == 0) {
            *out = alg_names[i].alg;
            return true;
        }
    }
    return false;
}

static bool alg_uses_sha256(p11_wrap_alg alg)
{
    return alg == P11_WRAP_OAEP_SHA256 || alg == P11_WRAP_RSA_AES_SHA256;
}

static bool alg_is_two_step(p11_wrap_alg alg)
{
    return alg == P11_WRAP_RSA_AES_SHA1 || alg == P11_WRAP_RSA_AES_SHA256;
}

static void oaep_params(p11_wrap_alg alg, CK_RSA_PKCS_OAEP_PARAMS *p)
{
    memset(p, 0, sizeof(*p));
    p->hashAlg = alg_uses_sha256(alg) ? CKM_SHA256 : CKM_SHA_1;
    p->mgf = alg_uses_sha256(alg) ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1;
    p->source = CKZ_DATA_SPECIFIED;
    p->pSourceData = NULL;
    p->ulSourceDataLen = 0;
}

/* --- finding the private key ------------------------------------------------------------------ */

typedef struct wrap_ref {
    const uint8_t *id;
    size_t id_len;
} wrap_ref;

static p11kms_err find_private(p11_token *t, p11_session *s, const wrap_ref *w, CK_OBJECT_HANDLE *h,
                               p11kms_error *err)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_ID, (void *)w->id, w->id_len},
    };
    p11kms_err rc = p11_find_one(t, s, tmpl, 2, "wrapping private key with this CKA_ID", h, err);
    if (rc == P11KMS_E_NOT_FOUND)
        P11KMS_RAISE(err, rc, "no wrapping key with this id in token %s", t->token_uri);
    return rc;
}

/* --- generation ---------------------------------------------------------------------------------
 */

struct generate_args {
    wrap_ref w;
    const char *label;
    CK_ULONG bits;
    CK_OBJECT_HANDLE pub, priv;
};

static p11kms_err generate_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct generate_args *a = arg;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BYTE exponent[] = {0x01, 0x00, 0x01};
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE pub[] = {
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_MODULUS_BITS, &a->bits, sizeof(a->bits)},
        {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)},
        /* the public half is never used by the token: clients wrap with OpenSSL */
        {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},
        {CKA_ID, (void *)a->w.id, a->w.id_len},
        {CKA_LABEL, (void *)a->label, strlen(a->label)},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_KEY_TYPE, &kt, sizeof(kt)},        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},       {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},     {CKA_UNWRAP, &yes, sizeof(yes)},
        {CKA_DECRYPT, &no, sizeof(no)},         {CKA_SIGN, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},          {CKA_MODIFIABLE, &no, sizeof(no)},
        {CKA_ID, (void *)a->w.id, a->w.id_len}, {CKA_LABEL, (void *)a->label, strlen(a->label)},
    };
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    return p11c_generate_key_pair(t->calls, s->handle, &mech, pub, sizeof(pub) / sizeof(pub[0]),
                                  priv, sizeof(priv) / sizeof(priv[0]), &a->pub, &a->priv, err);
}

struct export_args {
    struct generate_args *gen;
    uint8_t *n, *e;
    size_t n_len, e_len;
};

/* Reads the public components and checks the private key is protected as asked. */
static p11kms_err export_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct export_args *a = arg;
    CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, never_extractable = CK_FALSE,
             unwrap = CK_FALSE, decrypt = CK_TRUE;
    CK_ATTRIBUTE check[] = {
        {CKA_SENSITIVE, &sensitive, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &extractable, sizeof(CK_BBOOL)},
        {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &unwrap, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &decrypt, sizeof(CK_BBOOL)},
    };
    if (p11c_get_attribute_value(t->calls, s->handle, a->gen->priv, check, 5, err) != P11KMS_OK)
        return err->code;
    if (sensitive != CK_TRUE || extractable != CK_FALSE || never_extractable != CK_TRUE ||
        unwrap != CK_TRUE || decrypt != CK_FALSE) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN,
                     "the token made a wrapping private key that is not protected as required "
                     "(sensitive %d, extractable %d, never-extractable %d, unwrap %d, decrypt %d)",
                     sensitive, extractable, never_extractable, unwrap, decrypt);
        err->ckr = 0;
        return P11KMS_E_TOKEN;
    }
    free(a->n);
    free(a->e);
    a->n = a->e = NULL;
    if (p11_get_attr_alloc(t, s, a->gen->pub, CKA_MODULUS, &a->n, &a->n_len, err) != P11KMS_OK)
        return err->code;
    return p11_get_attr_alloc(t, s, a->gen->pub, CKA_PUBLIC_EXPONENT, &a->e, &a->e_len, err);
}

static p11kms_err build_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
                             OSSL_LIB_CTX *libctx, uint8_t **spki, size_t *spki_len,
                             p11kms_error *err)
{
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *der = NULL;
    int der_len = -1;
    if (bn_n != NULL && bn_e != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
        (ctx = EVP_PKEY_CTX_new_from_name(libctx, "RSA", NULL)) != NULL &&
        EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) > 0)
        der_len = i2d_PUBKEY(pkey, &der);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    if (der_len <= 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "OpenSSL could not encode the wrapping public key");
    *spki = malloc((size_t)der_len);
    if (*spki == NULL) {
        OPENSSL_free(der);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    memcpy(*spki, der, (size_t)der_len);
    *spki_len = (size_t)der_len;
    OPENSSL_free(der);
    return P11KMS_OK;
}

struct destroy_args {
    wrap_ref w;
    size_t destroyed;
};

static p11kms_err destroy_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct destroy_args *a = arg;
    CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    for (size_t c = 0; c < 2; c++) {
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &classes[c], sizeof(classes[c])},
            {CKA_ID, (void *)a->w.id, a->w.id_len},
        };
        CK_OBJECT_HANDLE *found = NULL;
        size_t n = 0;
        if (p11_find_all(t, s, tmpl, 2, &found, &n, err) != P11KMS_OK)
            return err->code;
        for (size_t i = 0; i < n; i++) {
            if (p11c_destroy_object(t->calls, s->handle, found[i], err) != P11KMS_OK) {
                free(found);
                return err->code;
            }
            a->destroyed++;
        }
        free(found);
    }
    return P11KMS_OK;
}

p11kms_err p11_rsa_wrap_destroy(p11_token *t, const uint8_t *id, size_t id_len, p11kms_error *err)
{
    struct destroy_args a = {{id, id_len}, 0};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, destroy_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc == P11KMS_OK && a.destroyed == 0)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no wrapping key with this id");
    return rc;
}

p11kms_err p11_rsa_wrap_generate(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                                 unsigned bits, OSSL_LIB_CTX *libctx, uint8_t **spki,
                                 size_t *spki_len, p11kms_error *err)
{
    *spki = NULL;
    if (bits != 2048 && bits != 3072 && bits != 4096)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "RSA wrapping keys are 2048, 3072 or 4096 "
                            "bits");
    struct generate_args g = {{id, id_len}, label, bits, CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    struct export_args x = {&g, NULL, NULL, 0, 0};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, generate_op, &g, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc == P11KMS_OK)
        rc = p11_run(t, NULL, export_op, &x, err);
    if (rc == P11KMS_OK)
        rc = build_spki(x.n, x.n_len, x.e, x.e_len, libctx, spki, spki_len, err);
    free(x.n);
    free(x.e);
    if (rc != P11KMS_OK && g.priv != CK_INVALID_HANDLE) {
        p11kms_error ignored = {0};
        (void)p11_rsa_wrap_destroy(t, id, id_len, &ignored);
    }
    return rc;
}

/* --- listing ------------------------------------------------------------------------------------
 */

typedef struct listed {
    uint8_t *id;
    size_t id_len;
    char *label;
} listed;

struct list_args {
    const char *prefix;
    listed *items;
    size_t n;
};

static p11kms_err list_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct list_args *a = arg;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
    };
    CK_OBJECT_HANDLE *found = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, tmpl, 2, &found, &n, err) != P11KMS_OK)
        return err->code;
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; rc == P11KMS_OK && i < n; i++) {
        uint8_t *label = NULL, *id = NULL;
        size_t label_len = 0, id_len = 0;
        rc = p11_get_attr_alloc(t, s, found[i], CKA_LABEL, &label, &label_len, err);
        if (rc == P11KMS_OK)
            rc = p11_get_attr_alloc(t, s, found[i], CKA_ID, &id, &id_len, err);
        if (rc == P11KMS_OK && strncmp((char *)label, a->prefix, strlen(a->prefix)) == 0) {
            listed *grown = realloc(a->items, (a->n + 1) * sizeof(*grown));
            if (grown == NULL) {
                rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
            } else {
                a->items = grown;
                a->items[a->n++] = (listed){id, id_len, (char *)label};
                id = NULL;
                label = NULL;
            }
        }
        free(label);
        free(id);
    }
    free(found);
    return rc;
}

p11kms_err p11_rsa_wrap_list(p11_token *t, const char *label_prefix,
                             int (*fn)(const uint8_t *id, size_t id_len, const char *label,
                                       void *arg),
                             void *arg, p11kms_error *err)
{
    struct list_args a = {label_prefix != NULL ? label_prefix : "", NULL, 0};
    p11kms_err rc = p11_run(t, NULL, list_op, &a, err);
    /* callbacks run with no session held: they may destroy what they are given */
    for (size_t i = 0; rc == P11KMS_OK && i < a.n; i++)
        if (fn(a.items[i].id, a.items[i].id_len, a.items[i].label, arg) != 0)
            break;
    for (size_t i = 0; i < a.n; i++) {
        free(a.items[i].id);
        free(a.items[i].label);
    }
    free(a.items);
    return rc;
}

/* --- unwrapping ---------------------------------------------------------------------------------
 */

/* Any refusal of the wrapped bytes themselves: the caller's ciphertext is wrong (wrong key, wrong
 * padding, tampered, wrong length). Tokens differ in the code they use for a bad padding. */
static bool refused_input(CK_RV rv)
{
    switch (rv) {
    case CKR_WRAPPED_KEY_INVALID:
    case CKR_WRAPPED_KEY_LEN_RANGE:
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_DATA_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_KEY_SIZE_RANGE:
    case CKR_TEMPLATE_INCONSISTENT:
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
        return true;
    default:
        return false;
    }
}

static bool refused_mechanism(CK_RV rv)
{
    return rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID ||
           rv == CKR_ARGUMENTS_BAD || rv == CKR_KEY_TYPE_INCONSISTENT ||
           rv == CKR_FUNCTION_NOT_SUPPORTED;
}

/* The RFC 5649 mechanism the token offers for unwrapping (0 when none). */
static CK_MECHANISM_TYPE kwp_mechanism(p11_token *t)
{
    static const CK_MECHANISM_TYPE candidates[] = {CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD};
    for (size_t i = 0; i < 2; i++) {
        CK_MECHANISM_INFO info;
        p11kms_error ignored = {0};
        if (p11c_get_mechanism_info(t->calls, t->slot, candidates[i], &info, &ignored) ==
                P11KMS_OK &&
            (info.flags & CKF_UNWRAP))
            return candidates[i];
    }
    return 0;
}

struct unwrap_args {
    wrap_ref w;
    p11_wrap_alg alg;
    CK_MECHANISM_TYPE kwp;
    const uint8_t *wrapped;
    size_t wrapped_len;
    p11_unwrap_target *target;
    bool session_object; /* probe and tests: CKA_TOKEN=FALSE, destroyed at once */
    CK_OBJECT_HANDLE made;
    CK_RV refused;   /* CK_RV of a refused unwrap (0: none) */
    size_t made_len; /* CKA_VALUE_LEN of what was made */
    /* refused by p11kms before the token was asked: the block's length (not as long as the
     * modulus), or its value (not below the modulus) */
    const char *refused_here;
};

/* Unwraps with mechanism mech under key into a secret key made from tmpl. A refusal is recorded
 * in a->refused and returns OK: it is the input's fault, not the session's, and must not make
 * p11_run retry. */
static p11kms_err unwrap_step(p11_token *t, p11_session *s, struct unwrap_args *a,
                              CK_MECHANISM *mech, CK_OBJECT_HANDLE key, const uint8_t *in,
                              size_t in_len, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                              CK_OBJECT_HANDLE *made, p11kms_error *err)
{
    p11kms_error probe = {0};
    if (p11c_unwrap_key(t->calls, s->handle, mech, key, (CK_BYTE *)in, in_len, tmpl, count, made,
                        &probe) == P11KMS_OK)
        return P11KMS_OK;
    if (refused_input(probe.ckr) || refused_mechanism(probe.ckr)) {
        a->refused = probe.ckr;
        return P11KMS_OK;
    }
    if (err != NULL)
        *err = probe;
    return probe.code;
}

static void destroy_quietly(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h)
{
    p11kms_error ignored = {0};
    if (h != CK_INVALID_HANDLE)
        (void)p11c_destroy_object(t->calls, s->handle, h, &ignored);
}

/* The length of the key an unwrap with (mech, key, in) makes. Tokens report it as CKA_VALUE_LEN;
 * SoftHSM 2.6.1 leaves that 0 for unwrapped keys and refuses it in the unwrap template. Then the
 * same input is unwrapped once more into a session twin whose CKA_VALUE may be read (PKCS#11
 * hides the value of a sensitive or non-extractable key, its length included), usable for
 * nothing, and only the length of its CKA_VALUE is asked for (pValue NULL): the value itself is
 * never copied out of the token. The twin is destroyed in the same operation. */
static p11kms_err made_length(p11_token *t, p11_session *s, struct unwrap_args *a,
                              CK_MECHANISM *mech, CK_OBJECT_HANDLE key, const uint8_t *in,
                              size_t in_len, CK_ULONG *len, p11kms_error *err)
{
    CK_ATTRIBUTE vl = {CKA_VALUE_LEN, len, sizeof(*len)};
    *len = 0;
    if (p11c_get_attribute_value(t->calls, s->handle, a->made, &vl, 1, err) != P11KMS_OK)
        return err->code;
    if (*len != 0)
        return P11KMS_OK;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE generic = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE twin_tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &generic, sizeof(generic)},
        {CKA_TOKEN, &no, sizeof(no)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &no, sizeof(no)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)},
        {CKA_ENCRYPT, &no, sizeof(no)},   {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_WRAP, &no, sizeof(no)},      {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_SIGN, &no, sizeof(no)},      {CKA_VERIFY, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
    };
    CK_OBJECT_HANDLE twin = CK_INVALID_HANDLE;
    p11kms_error probe = {0};
    if (p11c_unwrap_key(t->calls, s->handle, mech, key, (CK_BYTE *)in, in_len, twin_tmpl,
                        sizeof(twin_tmpl) / sizeof(twin_tmpl[0]), &twin, &probe) != P11KMS_OK) {
        if (err != NULL)
            *err = probe;
        return probe.code;
    }
    CK_ATTRIBUTE v = {CKA_VALUE, NULL, 0};
    p11kms_err rc = p11c_get_attribute_value(t->calls, s->handle, twin, &v, 1, err);
    destroy_quietly(t, s, twin);
    if (rc == P11KMS_OK)
        *len = v.ulValueLen;
    return rc;
}

/* The last unwrap: into the target object, which must have the target's length. */
static p11kms_err final_step(p11_token *t, p11_session *s, struct unwrap_args *a,
                             CK_MECHANISM *mech, CK_OBJECT_HANDLE key, const uint8_t *in,
                             size_t in_len, p11kms_error *err)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES, generic = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    p11_unwrap_target *tg = a->target;
    bool test = tg->test_extractable;
    CK_BBOOL on_token = a->session_object ? CK_FALSE : CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, test ? &generic : &aes, sizeof(aes)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, test ? &no : &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, test ? &yes : &no, sizeof(no)},
        {CKA_ENCRYPT, test ? &no : &yes, sizeof(yes)},
        {CKA_DECRYPT, test ? &no : &yes, sizeof(yes)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_MODIFIABLE, &yes, sizeof(yes)},
        {CKA_ID, (void *)tg->id, tg->id_len},
        {CKA_LABEL, (void *)tg->label, strlen(tg->label)},
    };
    p11kms_err rc = unwrap_step(t, s, a, mech, key, in, in_len, tmpl,
                                sizeof(tmpl) / sizeof(tmpl[0]), &a->made, err);
    if (rc != P11KMS_OK || a->refused != 0)
        return rc;
    CK_ULONG got = 0;
    rc = made_length(t, s, a, mech, key, in, in_len, &got, err);
    if (rc == P11KMS_OK && got != tg->value_len) {
        a->made_len = got;
        a->refused = CKR_WRAPPED_KEY_LEN_RANGE;
    }
    if (rc == P11KMS_OK && a->refused == 0 && test && tg->value != NULL) {
        CK_ATTRIBUTE v = {CKA_VALUE, tg->value, tg->value_len};
        rc = p11c_get_attribute_value(t->calls, s->handle, a->made, &v, 1, err);
    }
    if (rc != P11KMS_OK || a->refused != 0 || a->session_object) {
        destroy_quietly(t, s, a->made);
        a->made = CK_INVALID_HANDLE;
    }
    return rc;
}

static p11kms_err unwrap_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct unwrap_args *a = arg;
    a->made = CK_INVALID_HANDLE;
    a->refused = 0;
    a->made_len = 0;
    a->refused_here = NULL;
    CK_OBJECT_HANDLE priv;
    if (find_private(t, s, &a->w, &priv, err) != P11KMS_OK)
        return err->code;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    oaep_params(a->alg, &oaep);
    CK_MECHANISM rsa = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};

    /* The OAEP block is as long as the modulus (alone, or followed by the RFC 5649 wrap of the
     * material), and as a number below it (RFC 8017 7.1.2 and RSADP step 1). Checked here, not
     * left to the token: tokens answer such input with different codes, and NSS softokn's for a
     * block not below the modulus, CKR_ARGUMENTS_BAD, is also what a token that lacks the OAEP
     * parameters answers, so the client would be told the algorithm is unsupported instead of
     * that its ciphertext is wrong (Wycheproof RSA-OAEP tcId 27, "added n to c"). */
    uint8_t *modulus = NULL;
    size_t modulus_len = 0;
    if (p11_get_attr_alloc(t, s, priv, CKA_MODULUS, &modulus, &modulus_len, err) != P11KMS_OK)
        return err->code;
    size_t skip = 0; /* a big integer may come with leading zero bytes */
    while (skip + 1 < modulus_len && modulus[skip] == 0)
        skip++;
    bool two_step = alg_is_two_step(a->alg);
    size_t block_len = modulus_len - skip;
    bool bad_len = two_step ? a->wrapped_len <= block_len : a->wrapped_len != block_len;
    bool not_below = !bad_len && memcmp(a->wrapped, modulus + skip, block_len) >= 0;
    free(modulus);
    if (bad_len || not_below) {
        a->refused = bad_len ? CKR_WRAPPED_KEY_LEN_RANGE : CKR_WRAPPED_KEY_INVALID;
        if (!bad_len)
            a->refused_here = "its RSA-OAEP block, as a number, is not below the wrapping key's "
                              "modulus";
        else if (two_step)
            a->refused_here = "it is not longer than the wrapping key's modulus (an RSA-OAEP "
                              "block followed by an RFC 5649 wrap)";
        else
            a->refused_here = "it is not as long as the wrapping key's modulus";
        return P11KMS_OK;
    }
    modulus_len = block_len;
    if (!two_step)
        return final_step(t, s, a, &rsa, priv, a->wrapped, a->wrapped_len, err);

    /* OAEP(ephemeral AES key), as long as the modulus, || RFC 5649 wrap of the material. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE eph_tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &aes, sizeof(aes)},
        {CKA_TOKEN, &no, sizeof(no)},       {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_UNWRAP, &yes, sizeof(yes)},    {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},     {CKA_WRAP, &no, sizeof(no)},
    };
    CK_OBJECT_HANDLE eph = CK_INVALID_HANDLE;
    p11kms_err rc = unwrap_step(t, s, a, &rsa, priv, a->wrapped, modulus_len, eph_tmpl,
                                sizeof(eph_tmpl) / sizeof(eph_tmpl[0]), &eph, err);
    if (rc == P11KMS_OK && a->refused == 0) {
        /* the ephemeral key must be AES-256, as AWS specifies */
        CK_ULONG eph_len = 0;
        CK_OBJECT_HANDLE saved = a->made;
        a->made = eph;
        rc = made_length(t, s, a, &rsa, priv, a->wrapped, modulus_len, &eph_len, err);
        a->made = saved;
        if (rc == P11KMS_OK && eph_len != EPHEMERAL_AES_LEN)
            a->refused = CKR_WRAPPED_KEY_INVALID;
        CK_MECHANISM kwp = {a->kwp, NULL, 0};
        if (rc == P11KMS_OK && a->refused == 0)
            rc = final_step(t, s, a, &kwp, eph, a->wrapped + modulus_len,
                            a->wrapped_len - modulus_len, err);
    }
    destroy_quietly(t, s, eph);
    return rc;
}

static p11kms_err check_alg(p11_token *t, p11_wrap_alg alg, CK_MECHANISM_TYPE *kwp,
                            p11kms_error *err)
{
    if (p11_wrap_alg_name(alg) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED, "unknown wrapping algorithm");
    CK_MECHANISM_INFO info;
    p11kms_error probe = {0};
    if (p11c_get_mechanism_info(t->calls, t->slot, CKM_RSA_PKCS_OAEP, &info, &probe) != P11KMS_OK ||
        !(info.flags & CKF_UNWRAP))
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "wrapping algorithm %s is not supported by token %s (%s): it offers "
                            "no CKM_RSA_PKCS_OAEP for unwrapping",
                            p11_wrap_alg_name(alg), t->token_uri, t->module);
    *kwp = 0;
    if (alg_is_two_step(alg) && (*kwp = kwp_mechanism(t)) == 0)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "wrapping algorithm %s is not supported by token %s (%s): it offers "
                            "neither CKM_AES_KEY_WRAP_KWP nor CKM_AES_KEY_WRAP_PAD for unwrapping",
                            p11_wrap_alg_name(alg), t->token_uri, t->module);
    return P11KMS_OK;
}

static p11kms_err run_unwrap(p11_token *t, struct unwrap_args *a, p11kms_error *err)
{
    if (check_alg(t, a->alg, &a->kwp, err) != P11KMS_OK)
        return err->code;
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, unwrap_op, a, err);
    pthread_mutex_unlock(&t->create_lock);
    return rc;
}

p11kms_err p11_rsa_wrap_unwrap(p11_token *t, const uint8_t *wrap_id, size_t wrap_id_len,
                               p11_wrap_alg alg, const uint8_t *wrapped, size_t wrapped_len,
                               p11_unwrap_target *target, p11_key **out, p11kms_error *err)
{
    if (out != NULL)
        *out = NULL;
    bool session = target->test_extractable;
    struct unwrap_args a = {.w = {wrap_id, wrap_id_len},
                            .alg = alg,
                            .wrapped = wrapped,
                            .wrapped_len = wrapped_len,
                            .target = target,
                            .session_object = session};
    p11kms_err rc = run_unwrap(t, &a, err);
    if (rc != P11KMS_OK)
        return rc;
    if (a.refused != 0) {
        if (refused_mechanism(a.refused))
            return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                                "token %s refused to unwrap with %s (%s)", t->token_uri,
                                p11_wrap_alg_name(alg), p11_ckr_name(a.refused));
        if (a.made_len != 0)
            return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                                "the encrypted key material unwraps to %zu bytes: only %zu-byte "
                                "key material can be imported",
                                a.made_len, target->value_len);
        if (a.refused_here != NULL)
            return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                                "the encrypted key material cannot be unwrapped with this "
                                "wrapping key and %s: %s",
                                p11_wrap_alg_name(alg), a.refused_here);
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "the encrypted key material cannot be unwrapped with this wrapping "
                            "key and %s (token said %s)",
                            p11_wrap_alg_name(alg), p11_ckr_name(a.refused));
    }
    if (session || out == NULL)
        return P11KMS_OK;
    return p11_key_find(t, target->id, target->id_len, out, err);
}

/* --- probe --------------------------------------------------------------------------------------
 */

/* What a client does: OAEP under the public key (and, for the two-step algorithms, an RFC 5649
 * wrap under an ephemeral AES key), with OpenSSL. */
static p11kms_err client_wrap(EVP_PKEY *pub, p11_wrap_alg alg, OSSL_LIB_CTX *libctx,
                              const uint8_t *material, size_t material_len, uint8_t *out,
                              size_t *out_len, p11kms_error *err)
{
    const char *md = alg_uses_sha256(alg) ? "SHA256" : "SHA1";
    uint8_t eph[EPHEMERAL_AES_LEN];
    const uint8_t *rsa_in = material;
    size_t rsa_in_len = material_len;
    if (alg_is_two_step(alg)) {
        if (RAND_bytes_ex(libctx, eph, sizeof(eph), 0) != 1)
            return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "OpenSSL random failed");
        rsa_in = eph;
        rsa_in_len = sizeof(eph);
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(libctx, pub, NULL);
    size_t rsa_len = *out_len;
    bool ok = ctx != NULL && EVP_PKEY_encrypt_init(ctx) > 0 &&
              EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
              EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) > 0 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md, NULL) > 0 &&
              EVP_PKEY_encrypt(ctx, out, &rsa_len, rsa_in, rsa_in_len) > 0;
    EVP_PKEY_CTX_free(ctx);
    size_t total = rsa_len;
    if (ok && alg_is_two_step(alg)) {
        EVP_CIPHER *kwp = EVP_CIPHER_fetch(libctx, "AES-256-WRAP-PAD", NULL);
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n = 0, f = 0;
        ok = kwp != NULL && c != NULL && *out_len - rsa_len >= material_len + 16;
        if (ok) {
            EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
            ok = EVP_EncryptInit_ex2(c, kwp, eph, NULL, NULL) > 0 &&
                 EVP_EncryptUpdate(c, out + rsa_len, &n, material, (int)material_len) > 0 &&
                 EVP_EncryptFinal_ex(c, out + rsa_len + n, &f) > 0;
        }
        total += (size_t)n + (size_t)f;
        EVP_CIPHER_CTX_free(c);
        EVP_CIPHER_free(kwp);
    }
    OPENSSL_cleanse(eph, sizeof(eph));
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "OpenSSL could not wrap the probe value");
    *out_len = total;
    return P11KMS_OK;
}

struct pub_args {
    wrap_ref w;
    uint8_t *n, *e;
    size_t n_len, e_len;
};

static p11kms_err read_public_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct pub_args *a = arg;
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_ID, (void *)a->w.id, a->w.id_len},
    };
    CK_OBJECT_HANDLE h;
    if (p11_find_one(t, s, tmpl, 2, "wrapping public key with this CKA_ID", &h, err) != P11KMS_OK)
        return err->code;
    free(a->n);
    free(a->e);
    a->n = a->e = NULL;
    if (p11_get_attr_alloc(t, s, h, CKA_MODULUS, &a->n, &a->n_len, err) != P11KMS_OK)
        return err->code;
    return p11_get_attr_alloc(t, s, h, CKA_PUBLIC_EXPONENT, &a->e, &a->e_len, err);
}

p11kms_err p11_rsa_wrap_probe(p11_token *t, const uint8_t *id, size_t id_len, p11_wrap_alg alg,
                              OSSL_LIB_CTX *libctx, p11kms_error *err)
{
    CK_MECHANISM_TYPE kwp = 0;
    if (check_alg(t, alg, &kwp, err) != P11KMS_OK)
        return err->code;
    struct pub_args pa = {{id, id_len}, NULL, NULL, 0, 0};
    uint8_t *spki = NULL;
    size_t spki_len = 0;
    p11kms_err rc = p11_run(t, NULL, read_public_op, &pa, err);
    if (rc == P11KMS_OK)
        rc = build_spki(pa.n, pa.n_len, pa.e, pa.e_len, libctx, &spki, &spki_len, err);
    free(pa.n);
    free(pa.e);
    if (rc != P11KMS_OK)
        return rc;
    const unsigned char *p = spki;
    EVP_PKEY *pub = d2i_PUBKEY_ex(NULL, &p, (long)spki_len, libctx, NULL);
    free(spki);
    if (pub == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "OpenSSL could not read the wrapping key");
    uint8_t material[MATERIAL_PROBE_LEN], wrapped[512 + MATERIAL_PROBE_LEN + 16];
    size_t wrapped_len = sizeof(wrapped);
    if (RAND_bytes_ex(libctx, material, sizeof(material), 0) != 1)
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "OpenSSL random failed");
    else
        rc = client_wrap(pub, alg, libctx, material, sizeof(material), wrapped, &wrapped_len, err);
    OPENSSL_cleanse(material, sizeof(material));
    EVP_PKEY_free(pub);
    if (rc != P11KMS_OK)
        return rc;
    static const uint8_t probe_id[] = "p11kms-import-probe";
    p11_unwrap_target target = {
        probe_id, sizeof(probe_id) - 1, "p11kms-import-probe", MATERIAL_PROBE_LEN, false, NULL};
    struct unwrap_args a = {.w = {id, id_len},
                            .alg = alg,
                            .kwp = kwp,
                            .wrapped = wrapped,
                            .wrapped_len = wrapped_len,
                            .target = &target,
                            .session_object = true};
    pthread_mutex_lock(&t->create_lock);
    rc = p11_run(t, NULL, unwrap_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc == P11KMS_OK && a.refused != 0)
        rc = P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                          "wrapping algorithm %s is not supported by token %s (module %s): a "
                          "test unwrap was refused with %s",
                          p11_wrap_alg_name(alg), t->token_uri, t->module, p11_ckr_name(a.refused));
    return rc;
}

/* --- test support -------------------------------------------------------------------------------
 */

static p11kms_err test_import_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    (void)s;
    void **args = arg;
    const wrap_ref *w = args[0];
    const p11_rsa_components *c = args[1];
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_UNWRAP, &yes, sizeof(yes)},
        {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_ID, (void *)w->id, w->id_len},
        {CKA_MODULUS, (void *)c->n, c->n_len},
        {CKA_PUBLIC_EXPONENT, (void *)c->e, c->e_len},
        {CKA_PRIVATE_EXPONENT, (void *)c->d, c->d_len},
        {CKA_PRIME_1, (void *)c->p, c->p_len},
        {CKA_PRIME_2, (void *)c->q, c->q_len},
        {CKA_EXPONENT_1, (void *)c->dp, c->dp_len},
        {CKA_EXPONENT_2, (void *)c->dq, c->dq_len},
        {CKA_COEFFICIENT, (void *)c->qi, c->qi_len},
    };
    CK_SESSION_HANDLE login;
    if (p11_login_session_lock(t, &login, err) != P11KMS_OK)
        return err->code;
    CK_OBJECT_HANDLE h;
    p11kms_err rc =
        p11c_create_object(t->calls, login, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h, err);
    p11_login_session_unlock(t);
    return rc;
}

p11kms_err p11_rsa_wrap_test_import(p11_token *t, const uint8_t *id, size_t id_len,
                                    const p11_rsa_components *c, p11kms_error *err)
{
    wrap_ref w = {id, id_len};
    void *args[2] = {&w, (void *)c};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, test_import_op, args, err);
    pthread_mutex_unlock(&t->create_lock);
    return rc;
}

struct kwp_test_args {
    struct unwrap_args *a;
    const uint8_t *kek;
    size_t kek_len;
};

static p11kms_err kwp_test_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct kwp_test_args *k = arg;
    struct unwrap_args *a = k->a;
    a->made = CK_INVALID_HANDLE;
    a->refused = 0;
    a->made_len = 0;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &aes, sizeof(aes)},
        {CKA_TOKEN, &no, sizeof(no)},       {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_UNWRAP, &yes, sizeof(yes)},    {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},     {CKA_VALUE, (void *)k->kek, k->kek_len},
    };
    CK_OBJECT_HANDLE kek;
    if (p11c_create_object(t->calls, s->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &kek, err) !=
        P11KMS_OK)
        return err->code;
    CK_MECHANISM mech = {a->kwp, NULL, 0};
    p11kms_err rc = final_step(t, s, a, &mech, kek, a->wrapped, a->wrapped_len, err);
    destroy_quietly(t, s, kek);
    return rc;
}

p11kms_err p11_kwp_test_unwrap(p11_token *t, const uint8_t *kek, size_t kek_len,
                               const uint8_t *wrapped, size_t wrapped_len,
                               p11_unwrap_target *target, p11kms_error *err)
{
    struct unwrap_args a = {.alg = P11_WRAP_RSA_AES_SHA1,
                            .wrapped = wrapped,
                            .wrapped_len = wrapped_len,
                            .target = target,
                            .session_object = true};
    if (check_alg(t, a.alg, &a.kwp, err) != P11KMS_OK)
        return err->code;
    struct kwp_test_args k = {&a, kek, kek_len};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, kwp_test_op, &k, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc == P11KMS_OK && a.refused != 0)
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT, "RFC 5649 unwrap refused (%s)",
                          p11_ckr_name(a.refused));
    return rc;
}
