/* SigV4 credentials: secret access keys kept in the token as HMAC keys (see p11kms.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "pkcs11/hmac.h"
#include "provider/audit-ops.h"
#include "provider/gate.h"
#include "provider/service.h"

#define CRED_PREFIX "p11kms-sigv4:"
#define CRED_PREFIX_LEN (sizeof(CRED_PREFIX) - 1)
#define AKID_PREFIX "PKMS"
#define AKID_RANDOM_BYTES 10   /* 80 bits: 16 base32 characters */
#define SECRET_RANDOM_BYTES 30 /* 240 bits: 40 base64 characters */
#define AWS4_LEN 4

static bool principal_name_ok(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > P11KMS_PRINCIPAL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("+=,.@_-", c) != NULL;
        if (!ok || c == '\0')
            return false;
    }
    return true;
}

/* "PKMS" + 16 of A-Z2-7. */
static bool access_key_id_ok(const char *id)
{
    if (id == NULL || strlen(id) != P11KMS_ACCESS_KEY_ID_LEN ||
        strncmp(id, AKID_PREFIX, strlen(AKID_PREFIX)) != 0)
        return false;
    for (size_t i = strlen(AKID_PREFIX); i < P11KMS_ACCESS_KEY_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7')))
            return false;
    }
    return true;
}

static void make_access_key_id(const uint8_t rnd[AKID_RANDOM_BYTES],
                               char out[P11KMS_ACCESS_KEY_ID_LEN + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    size_t o = strlen(AKID_PREFIX);
    memcpy(out, AKID_PREFIX, o);
    /* 80 bits, 5 at a time */
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < AKID_RANDOM_BYTES; i++) {
        acc = (acc << 8) | rnd[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
    }
    out[o] = '\0';
}

static size_t cred_id(const char *akid, uint8_t out[CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN])
{
    memcpy(out, CRED_PREFIX, CRED_PREFIX_LEN);
    memcpy(out + CRED_PREFIX_LEN, akid, P11KMS_ACCESS_KEY_ID_LEN);
    return CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN;
}

/* label "p11kms-sigv4:AKID:NAME" -> credential; false for a label of another shape. */
static bool parse_label(const char *label, p11kms_credential *out)
{
    size_t n = strlen(label);
    if (n < CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN + 2 ||
        memcmp(label, CRED_PREFIX, CRED_PREFIX_LEN) != 0 ||
        label[CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN] != ':')
        return false;
    memcpy(out->access_key_id, label + CRED_PREFIX_LEN, P11KMS_ACCESS_KEY_ID_LEN);
    out->access_key_id[P11KMS_ACCESS_KEY_ID_LEN] = '\0';
    const char *name = label + CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN + 1;
    if (!access_key_id_ok(out->access_key_id) || !principal_name_ok(name))
        return false;
    snprintf(out->principal_name, sizeof(out->principal_name), "%s", name);
    return true;
}

void p11kms_secret_free(char *secret)
{
    if (secret != NULL)
        OPENSSL_secure_clear_free(secret, P11KMS_SECRET_ACCESS_KEY_LEN + 1);
}

p11kms_err kms_op_credentials_create(p11kms *svc, const p11kms_principal *who,
                                     const char *principal_name, p11kms_credential *out,
                                     char **secret, p11kms_error *err)
{
    if (svc == NULL || out == NULL || secret == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "p11kms_credentials_create: missing argument");
    *secret = NULL;
    memset(out, 0, sizeof(*out));
    if (!principal_name_ok(principal_name))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "a principal name is 1 to %d characters: letters, digits and "
                            "+ = , . @ _ -",
                            P11KMS_PRINCIPAL_NAME_MAX);
    p11kms_err rc = gate_check_global(svc, who, POLICY_ACTION_CREATE_CREDENTIALS, err);
    if (rc != P11KMS_OK)
        return rc;

    /* "AWS4" + secret, then the NUL: the secret is a suffix of the key value. */
    size_t value_len = AWS4_LEN + P11KMS_SECRET_ACCESS_KEY_LEN;
    char *value = OPENSSL_secure_malloc(value_len + 1);
    uint8_t *rnd = OPENSSL_secure_malloc(SECRET_RANDOM_BYTES);
    char *shown = OPENSSL_secure_malloc(P11KMS_SECRET_ACCESS_KEY_LEN + 1);
    if (value == NULL || rnd == NULL || shown == NULL) {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory for a secret key");
        goto done;
    }
    if (RAND_priv_bytes_ex(svc->libctx, rnd, SECRET_RANDOM_BYTES, 0) != 1) {
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "the random generator failed");
        goto done;
    }
    memcpy(value, "AWS4", AWS4_LEN);
    if (EVP_EncodeBlock((unsigned char *)value + AWS4_LEN, rnd, SECRET_RANDOM_BYTES) !=
        P11KMS_SECRET_ACCESS_KEY_LEN) {
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "encoding the secret failed");
        goto done;
    }
    /* A fresh id collides with an existing one with probability ~n/2^80; try a few anyway. */
    rc = P11KMS_E_ALREADY_EXISTS;
    for (int attempt = 0; attempt < 3 && rc == P11KMS_E_ALREADY_EXISTS; attempt++) {
        uint8_t id_rnd[AKID_RANDOM_BYTES];
        if (RAND_bytes_ex(svc->libctx, id_rnd, sizeof(id_rnd), 0) != 1) {
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "the random generator failed");
            break;
        }
        make_access_key_id(id_rnd, out->access_key_id);
        uint8_t id[CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN];
        size_t id_len = cred_id(out->access_key_id, id);
        char label[CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN + 1 + P11KMS_PRINCIPAL_NAME_MAX + 1];
        snprintf(label, sizeof(label), "%s%s:%s", CRED_PREFIX, out->access_key_id, principal_name);
        p11_key *k = NULL;
        rc = p11_hmac_import(svc->token, id, id_len, label, (const uint8_t *)value, value_len, &k,
                             err);
    }
    if (rc != P11KMS_OK) {
        memset(out, 0, sizeof(*out));
        goto done;
    }
    snprintf(out->principal_name, sizeof(out->principal_name), "%s", principal_name);
    memcpy(shown, value + AWS4_LEN, P11KMS_SECRET_ACCESS_KEY_LEN + 1);
    *secret = shown;
    shown = NULL;
done:
    OPENSSL_secure_clear_free(value, value_len + 1);
    OPENSSL_secure_clear_free(rnd, SECRET_RANDOM_BYTES);
    p11kms_secret_free(shown);
    return rc;
}

struct list_state {
    int (*fn)(const p11kms_credential *c, void *arg);
    void *arg;
};

static int list_one(const uint8_t *id, size_t id_len, const char *label, void *arg)
{
    struct list_state *s = arg;
    p11kms_credential c;
    uint8_t want[CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN];
    /* only objects whose id and label agree: anything else is not a credential p11kms made */
    if (!parse_label(label, &c) || id_len != cred_id(c.access_key_id, want) ||
        memcmp(id, want, id_len) != 0)
        return 0;
    return s->fn(&c, s->arg);
}

p11kms_err p11kms_credentials_list(p11kms *svc, const p11kms_principal *who,
                                   int (*fn)(const p11kms_credential *c, void *arg), void *arg,
                                   p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (svc == NULL || fn == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11kms_credentials_list: missing argument");
    p11kms_err rc = gate_check_global(svc, who, POLICY_ACTION_LIST_CREDENTIALS, err);
    if (rc != P11KMS_OK)
        return rc;
    struct list_state s = {fn, arg};
    return p11_key_list(svc->token, CRED_PREFIX, list_one, &s, err);
}

/* The credential's HMAC key and the principal name its label carries. */
static p11kms_err find_credential(p11kms *svc, const char *access_key_id, p11_key **key,
                                  p11kms_credential *c, p11kms_error *err)
{
    if (!access_key_id_ok(access_key_id))
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no credential with access key id '%.32s'",
                            access_key_id != NULL ? access_key_id : "");
    uint8_t id[CRED_PREFIX_LEN + P11KMS_ACCESS_KEY_ID_LEN];
    size_t id_len = cred_id(access_key_id, id);
    p11kms_err rc = p11_hmac_find(svc->token, id, id_len, key, err);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no credential with access key id '%s'",
                            access_key_id);
    if (rc != P11KMS_OK)
        return rc;
    p11_key_attributes a;
    if ((rc = p11_key_get_attributes(svc->token, *key, &a, err)) != P11KMS_OK)
        return rc == P11KMS_E_NOT_FOUND
                   ? P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no credential with access key id '%s'",
                                  access_key_id)
                   : rc;
    if (!parse_label(a.label, c) || strcmp(c->access_key_id, access_key_id) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "the token object of access key id '%s' has a foreign label",
                            access_key_id);
    return P11KMS_OK;
}

p11kms_err kms_op_credentials_delete(p11kms *svc, const p11kms_principal *who,
                                     const char *access_key_id, p11kms_error *err)
{
    if (svc == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "p11kms_credentials_delete: missing argument");
    p11kms_err rc = gate_check_global(svc, who, POLICY_ACTION_DELETE_CREDENTIALS, err);
    if (rc != P11KMS_OK)
        return rc;
    p11_key *key = NULL;
    p11kms_credential c;
    if ((rc = find_credential(svc, access_key_id, &key, &c, err)) != P11KMS_OK)
        return rc;
    return p11_key_destroy(svc->token, key, err);
}

static bool scope_part_ok(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

p11kms_err p11kms_sigv4_signing_key(p11kms *svc, const char *access_key_id, const char *yyyymmdd,
                                    const char *region, const char *service, uint8_t out[32],
                                    char *principal_name, size_t principal_name_size,
                                    p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (svc == NULL || out == NULL || (principal_name == NULL && principal_name_size > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11kms_sigv4_signing_key: missing argument");
    bool date_ok = yyyymmdd != NULL && strlen(yyyymmdd) == 8;
    for (size_t i = 0; date_ok && i < 8; i++)
        date_ok = yyyymmdd[i] >= '0' && yyyymmdd[i] <= '9';
    if (!date_ok || !scope_part_ok(region, 64) || !scope_part_ok(service, 32))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "a SigV4 scope is YYYYMMDD, a region and a service (a-z, 0-9, '-')");
    p11_key *key = NULL;
    p11kms_credential c;
    p11kms_err rc = find_credential(svc, access_key_id, &key, &c, err);
    if (rc != P11KMS_OK)
        return rc;
    /* kDate in the token; kRegion, kService, kSigning here, all in the secure heap */
    uint8_t *k = OPENSSL_secure_malloc(2 * 32);
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    uint8_t *a = k, *b = k + 32;
    rc = p11_hmac_sha256(svc->token, key, (const uint8_t *)yyyymmdd, 8, a, err);
    if (rc == P11KMS_E_NOT_FOUND)
        rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no credential with access key id '%s'",
                          access_key_id);
    size_t n = 0;
    const char *steps[3] = {region, service, "aws4_request"};
    for (int i = 0; rc == P11KMS_OK && i < 3; i++) {
        uint8_t *from = i % 2 == 0 ? a : b, *to = i % 2 == 0 ? b : a;
        if (EVP_Q_mac(svc->libctx, "HMAC", NULL, "SHA256", NULL, from, 32,
                      (const unsigned char *)steps[i], strlen(steps[i]), to, 32, &n) == NULL ||
            n != 32)
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "HMAC-SHA256 failed");
    }
    if (rc == P11KMS_OK) {
        memcpy(out, b, 32); /* the third step wrote b */
        if (principal_name_size > 0)
            snprintf(principal_name, principal_name_size, "%s", c.principal_name);
    }
    OPENSSL_secure_clear_free(k, 2 * 32);
    return rc;
}
