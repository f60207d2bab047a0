/* The capability check: what p11kms needs of a token, asked of the token itself.
 *
 * C_GetMechanismInfo says whether a mechanism is offered for a use and for which key sizes; a
 * token can still list a mechanism it cannot run (tpm2-pkcs11 lists AES key generation and
 * refuses it), so AES-GCM is also run once on a session key with the IV and tag sizes and the
 * CK_GCM_PARAMS layout p11kms uses. A token that cannot serve is refused when it is opened,
 * never after a key that cannot be used has been created. */
#include "config.h"

#include "pkcs11/internal.h"

#include <stdio.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

typedef struct mechanism_need {
    CK_MECHANISM_TYPE mechanism;
    const char *name;
    CK_FLAGS flags;
    bool key_size; /* must accept 32-byte (256-bit) keys */
    bool required;
    const char *needed;
} mechanism_need;

/* AES key sizes are in bytes (PKCS#11 v2.40); some tokens report bits: either accepts 32. */
static const mechanism_need needs[] = {
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", CKF_GENERATE, true, true,
     "generate 32-byte AES master keys"},
    {CKM_AES_GCM, "CKM_AES_GCM", CKF_ENCRYPT | CKF_DECRYPT, true, true,
     "encrypt and decrypt under 32-byte AES keys"},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC", CKF_SIGN | CKF_VERIFY, false, true,
     "sign and verify with HMAC-SHA256 (record integrity, SigV4 credentials)"},
    {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD", CKF_WRAP | CKF_UNWRAP, false, false,
     "wrap and unwrap imported key material (import only)"},
    {CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP", CKF_UNWRAP, false, false,
     "unwrap the ephemeral key of a key import (import only)"},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN", CKF_GENERATE_KEY_PAIR, false, false,
     "generate key import wrapping key pairs (import only)"},
};
#define N_NEEDS (sizeof(needs) / sizeof(needs[0]))
/* The index of the self-test in the report: after the mechanisms. */
#define SELF_TEST N_NEEDS

static void flag_words(CK_FLAGS flags, char *out, size_t size)
{
    static const struct {
        CK_FLAGS flag;
        const char *word;
    } words[] = {{CKF_ENCRYPT, "encrypt"},   {CKF_DECRYPT, "decrypt"},
                 {CKF_SIGN, "sign"},         {CKF_VERIFY, "verify"},
                 {CKF_WRAP, "wrap"},         {CKF_UNWRAP, "unwrap"},
                 {CKF_GENERATE, "generate"}, {CKF_GENERATE_KEY_PAIR, "generate-key-pair"}};
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (!(flags & words[i].flag))
            continue;
        int n = snprintf(out + o, size - o, "%s%s", o > 0 ? "/" : "", words[i].word);
        if (n < 0 || (size_t)n >= size - o)
            break;
        o += (size_t)n;
    }
}

struct mech_args {
    const mechanism_need *need;
    p11_capability *out;
};

static p11kms_err mechanism_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    (void)s;
    struct mech_args *a = arg;
    const mechanism_need *m = a->need;
    p11_capability *c = a->out;
    CK_MECHANISM_INFO mi = {0}; /* a token may leave fields it has no value for untouched */
    p11kms_error probe = {0};
    if (p11c_get_mechanism_info(t->calls, t->slot, m->mechanism, &mi, &probe) != P11KMS_OK) {
        /* CKR_MECHANISM_INVALID is the token's answer, not a failure of the check. */
        if (probe.ckr != CKR_MECHANISM_INVALID && probe.ckr != CKR_FUNCTION_NOT_SUPPORTED) {
            *err = probe;
            return probe.code;
        }
        snprintf(c->detail, sizeof(c->detail), "not offered (%s)", p11_ckr_name(probe.ckr));
        return P11KMS_OK;
    }
    char have[96], want[96];
    flag_words(mi.flags, have, sizeof(have));
    flag_words(m->flags, want, sizeof(want));
    if ((mi.flags & m->flags) != m->flags) {
        snprintf(c->detail, sizeof(c->detail), "offered for %.60s, p11kms needs %.60s",
                 have[0] ? have : "nothing", want);
        return P11KMS_OK;
    }
    if (m->key_size && !(mi.ulMinKeySize <= 32 && mi.ulMaxKeySize >= 32) &&
        !(mi.ulMinKeySize <= 256 && mi.ulMaxKeySize >= 256)) {
        snprintf(c->detail, sizeof(c->detail), "key sizes %lu..%lu do not include 32 bytes",
                 (unsigned long)mi.ulMinKeySize, (unsigned long)mi.ulMaxKeySize);
        return P11KMS_OK;
    }
    c->passed = true;
    snprintf(c->detail, sizeof(c->detail), "%.90s, key sizes %lu..%lu", have,
             (unsigned long)mi.ulMinKeySize, (unsigned long)mi.ulMaxKeySize);
    return P11KMS_OK;
}

static p11kms_err check_mechanism(p11_token *t, size_t i, p11_capability *c, p11kms_error *err)
{
    memset(c, 0, sizeof(*c));
    c->name = needs[i].name;
    c->needed = needs[i].needed;
    c->required = needs[i].required;
    c->mechanism_check = true;
    struct mech_args a = {&needs[i], c};
    return p11_run(t, NULL, mechanism_op, &a, err);
}

/* The Galois/Counter Mode paper's test case 16 (AES-256, 96-bit IV, AAD, 128-bit tag). */
static const uint8_t kat_key[32] = {
    0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08,
    0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08};
static const uint8_t kat_iv[12] = {0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce,
                                   0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88};
static const uint8_t kat_aad[20] = {0xfe, 0xed, 0xfa, 0xce, 0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed,
                                    0xfa, 0xce, 0xde, 0xad, 0xbe, 0xef, 0xab, 0xad, 0xda, 0xd2};
static const uint8_t kat_pt[60] = {
    0xd9, 0x31, 0x32, 0x25, 0xf8, 0x84, 0x06, 0xe5, 0xa5, 0x59, 0x09, 0xc5, 0xaf, 0xf5, 0x26,
    0x9a, 0x86, 0xa7, 0xa9, 0x53, 0x15, 0x34, 0xf7, 0xda, 0x2e, 0x4c, 0x30, 0x3d, 0x8a, 0x31,
    0x8a, 0x72, 0x1c, 0x3c, 0x0c, 0x95, 0x95, 0x68, 0x09, 0x53, 0x2f, 0xcf, 0x0e, 0x24, 0x49,
    0xa6, 0xb5, 0x25, 0xb1, 0x6a, 0xed, 0xf5, 0xaa, 0x0d, 0xe6, 0x57, 0xba, 0x63, 0x7b, 0x39};
static const uint8_t kat_ct[60 + 16] = {
    0x52, 0x2d, 0xc1, 0xf0, 0x99, 0x56, 0x7d, 0x07, 0xf4, 0x7f, 0x37, 0xa3, 0x2a, 0x84, 0x42, 0x7d,
    0x64, 0x3a, 0x8c, 0xdc, 0xbf, 0xe5, 0xc0, 0xc9, 0x75, 0x98, 0xa2, 0xbd, 0x25, 0x55, 0xd1, 0xaa,
    0x8c, 0xb0, 0x8e, 0x48, 0x59, 0x0d, 0xbb, 0x3d, 0xa7, 0xb0, 0x8b, 0x10, 0x56, 0x82, 0x88, 0x38,
    0xc5, 0xf6, 0x1e, 0x63, 0x93, 0xba, 0x7a, 0x0a, 0xbc, 0xc9, 0xf6, 0x62,
    /* tag */
    0x76, 0xfc, 0x6e, 0xce, 0x0f, 0x4e, 0x17, 0x68, 0xcd, 0xdf, 0x88, 0x53, 0xbb, 0x2d, 0x55, 0x1b};

/* Encrypts and decrypts on key k; known says the key is kat_key, so the ciphertext can be
 * compared (only when p11kms chooses the IV). A flipped tag must be refused. */
static p11kms_err gcm_round_trip(p11_token *t, p11_key *k, bool known, char *detail, size_t size,
                                 bool *passed, p11kms_error *err)
{
    uint8_t iv[P11_GCM_IV_LEN], ct[sizeof(kat_ct)], back[sizeof(kat_pt)];
    if (t->iv_mode == P11_IV_HOST)
        memcpy(iv, kat_iv, sizeof(iv));
    else
        memset(iv, 0, sizeof(iv));
    p11kms_error e = {0};
    if (p11_gcm_encrypt(t, k, iv, sizeof(iv), kat_aad, sizeof(kat_aad), kat_pt, sizeof(kat_pt), ct,
                        P11_GCM_TAG_LEN, &e) != P11KMS_OK) {
        if (e.code == P11KMS_E_NO_MEMORY) {
            *err = e;
            return e.code;
        }
        snprintf(detail, size, "encrypt failed: %.120s", e.message);
        return P11KMS_OK;
    }
    if (known && t->iv_mode == P11_IV_HOST && memcmp(ct, kat_ct, sizeof(ct)) != 0) {
        snprintf(detail, size,
                 "the ciphertext differs from the known answer (check the "
                 "token's gcm-params layout)");
        return P11KMS_OK;
    }
    if (p11_gcm_decrypt(t, k, iv, sizeof(iv), kat_aad, sizeof(kat_aad), ct, sizeof(ct),
                        P11_GCM_TAG_LEN, back, &e) != P11KMS_OK) {
        snprintf(detail, size, "decrypt of its own ciphertext failed: %.100s", e.message);
        return P11KMS_OK;
    }
    if (memcmp(back, kat_pt, sizeof(back)) != 0) {
        snprintf(detail, size, "decrypt returned other bytes than were encrypted");
        return P11KMS_OK;
    }
    ct[sizeof(ct) - 1] ^= 1;
    p11kms_err rc = p11_gcm_decrypt(t, k, iv, sizeof(iv), kat_aad, sizeof(kat_aad), ct, sizeof(ct),
                                    P11_GCM_TAG_LEN, back, &e);
    if (rc != P11KMS_E_INVALID_CIPHERTEXT) {
        snprintf(detail, size, "a flipped tag was %s",
                 rc == P11KMS_OK ? "accepted" : "refused with another error");
        return P11KMS_OK;
    }
    *passed = true;
    snprintf(detail, size, "%s, %d-byte IV (%s), %d-byte tag: encrypt, decrypt, tag refusal",
             known ? "known answer" : "round trip on a generated key", P11_GCM_IV_LEN,
             t->iv_mode == P11_IV_HOST ? "from p11kms" : "from the token", P11_GCM_TAG_LEN);
    return P11KMS_OK;
}

static p11kms_err self_test(p11_token *t, p11_capability *c, p11kms_error *err)
{
    memset(c, 0, sizeof(*c));
    c->name = "AES-GCM self-test";
    c->needed = "run AES-256-GCM with the configured iv: and gcm-params: settings";
    c->required = true;
    p11_key *k = NULL;
    bool known = true;
    p11kms_error e = {0};
    if (p11_key_create_session_aes(t, kat_key, sizeof(kat_key), &k, &e) != P11KMS_OK) {
        /* Tokens that refuse plaintext key values (FIPS mode) still generate session keys. */
        known = false;
        char first[160];
        snprintf(first, sizeof(first), "%.150s", e.message);
        if (p11_key_generate_session_aes(t, &k, &e) != P11KMS_OK) {
            if (e.code == P11KMS_E_NO_MEMORY) {
                *err = e;
                return e.code;
            }
            snprintf(c->detail, sizeof(c->detail), "no session key: %.70s; %.70s", first,
                     e.message);
            return P11KMS_OK;
        }
    }
    p11kms_err rc = gcm_round_trip(t, k, known, c->detail, sizeof(c->detail), &c->passed, err);
    p11kms_error ignored = {0};
    (void)p11_key_destroy(t, k, &ignored);
    return rc;
}

p11kms_err p11_token_capabilities(p11_token *t, p11_capability *out, size_t *count,
                                  p11kms_error *err)
{
    if (t == NULL || count == NULL || (out == NULL && *count > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_capabilities: missing argument");
    size_t n = 0;
    for (size_t i = 0; i < N_NEEDS && n < *count; i++, n++)
        if (check_mechanism(t, i, &out[n], err) != P11KMS_OK)
            return err->code;
    if (n < *count) {
        if (self_test(t, &out[n], err) != P11KMS_OK)
            return err->code;
        n++;
    }
    *count = n;
    return P11KMS_OK;
}

static void token_label(p11_token *t, char *out, size_t size)
{
    const unsigned char *l = t->token_info.label;
    size_t n = p11_kit_space_strlen(l, sizeof(t->token_info.label));
    if (n >= size)
        n = size - 1;
    memcpy(out, l, n);
    out[n] = '\0';
}

static p11kms_err refuse(p11_token *t, const p11_capability *c, p11kms_error *err)
{
    char label[33];
    token_label(t, label, sizeof(label));
    return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                        "token \"%s\" (module %s) cannot serve p11kms: %s: %s; p11kms needs it "
                        "to %s: %s (doc/tokens.md; 'p11kms token info' shows every check)",
                        label, t->module, c->name, c->detail, c->needed,
                        c->mechanism_check ? "use a token that offers it"
                                           : "set the token section's iv: and gcm-params: to "
                                             "what this token does, or use another token");
}

p11kms_err p11_token_check(p11_token *t, p11kms_error *err)
{
    p11_capability caps[P11_CAPABILITY_MAX];
    size_t n = P11_CAPABILITY_MAX;
    if (p11_token_capabilities(t, caps, &n, err) != P11KMS_OK)
        return err->code;
    for (size_t i = 0; i < n; i++)
        if (caps[i].required && !caps[i].passed)
            return refuse(t, &caps[i], err);
    return P11KMS_OK;
}

p11kms_err p11_token_check_generate(p11_token *t, p11kms_error *err)
{
    if (t == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_check_generate: no token");
    /* CKM_AES_KEY_GEN and CKM_AES_GCM: the first two needs. */
    for (size_t i = 0; i < 2; i++) {
        p11_capability c;
        if (check_mechanism(t, i, &c, err) != P11KMS_OK)
            return err->code;
        if (!c.passed)
            return refuse(t, &c, err);
    }
    return P11KMS_OK;
}
