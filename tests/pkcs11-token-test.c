/* The token layer against a real token: information, mechanisms, random bytes, master
 * keys, AES-GCM (including every tampering that must be refused), data objects, the GCM layout
 * and IV mode knobs, and CKR_* naming. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pkcs11-testutil.h"

static p11kms_error e;

static void test_info(p11_token *t)
{
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(strcmp(info.token_label, test_env("P11KMS_TEST_TOKEN_LABEL")) == 0);
    CHECK(strcmp(info.module, test_env("P11KMS_TEST_MODULE")) == 0);
    CHECK(info.token_serial[0] != '\0');
    CHECK(info.cryptoki_major >= 2);
    CHECK(info.pool_size >= 1 && info.pool_size <= 8); /* default 8, capped by the token */
    const char *kind = getenv("P11KMS_TEST_TOKEN");
    if (kind == NULL || strcmp(kind, "softhsm") == 0) {
        CHECK(pt_contains(info.library_manufacturer, "SoftHSM"));
        CHECK(pt_contains(info.token_manufacturer, "SoftHSM"));
        CHECK(info.cryptoki_major == 2);
        /* SoftHSM 2.6.1 has no C_GetInterface: the function list came from C_GetFunctionList. */
        CHECK(!info.via_get_interface);
        CHECK(info.pool_size == 8); /* SoftHSM reports no session limit */
        CHECK(info.max_rw_sessions == CK_EFFECTIVELY_INFINITE);
    }
    fprintf(stderr, "token '%s' serial %s slot %lu, module %s %u.%u (cryptoki %u.%u)\n",
            info.token_label, info.token_serial, info.slot_id, info.library_description,
            info.library_version_major, info.library_version_minor, info.cryptoki_major,
            info.cryptoki_minor);
    CHECK_ERR(p11_token_get_info(t, NULL, &e), P11KMS_E_VALIDATION, &e);
}

static void test_mechanisms(p11_token *t)
{
    p11_mechanism_report r[16];
    size_t n = 16;
    CHECK_OK(p11_token_mechanisms(t, r, &n, &e), &e);
    CHECK(n == 6);
    const CK_MECHANISM_TYPE want[] = {CKM_AES_KEY_GEN,           CKM_AES_GCM,
                                      CKM_AES_KEY_WRAP_PAD,      CKM_RSA_PKCS_OAEP,
                                      CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_SHA256_HMAC};
    for (size_t i = 0; i < n && i < 6; i++) {
        CHECK(r[i].mechanism == want[i]);
        CHECK(r[i].name != NULL && r[i].purpose != NULL);
        fprintf(stderr, "  %-26s %-3s %lu..%lu  %s\n", r[i].name, r[i].supported ? "yes" : "no",
                r[i].min_key_size, r[i].max_key_size, r[i].purpose);
    }
    /* What doc/design.md §4 says SoftHSM 2.6.1 offers. */
    CHECK(r[0].supported && r[1].supported && r[2].supported && r[3].supported && r[4].supported &&
          r[5].supported);
    CHECK(r[1].name != NULL && strcmp(r[1].name, "CKM_AES_GCM") == 0);
    CHECK(r[1].max_key_size >= 32);

    size_t two = 2;
    CHECK_OK(p11_token_mechanisms(t, r, &two, &e), &e);
    CHECK(two == 2 && r[1].mechanism == CKM_AES_GCM);
    size_t zero = 0;
    CHECK_OK(p11_token_mechanisms(t, NULL, &zero, &e), &e);
    CHECK(zero == 0);
}

static void check_random(p11_token *t)
{
    uint8_t a[64], b[64], zero[64] = {0};
    CHECK_OK(p11_token_random(t, a, sizeof(a), &e), &e);
    CHECK_OK(p11_token_random(t, b, sizeof(b), &e), &e);
    CHECK(memcmp(a, zero, sizeof(a)) != 0);
    CHECK(memcmp(a, b, sizeof(a)) != 0);
    CHECK_OK(p11_token_random(t, a, 0, &e), &e);
    CHECK_ERR(p11_token_random(t, NULL, 8, &e), P11KMS_E_VALIDATION, &e);
    size_t big_len = (2u << 20) + 5; /* more than one C_GenerateRandom chunk */
    uint8_t *big = calloc(1, big_len);
    REQUIRE(big != NULL);
    CHECK_OK(p11_token_random(t, big, big_len, &e), &e);
    CHECK(memcmp(big + big_len - 64, zero, 64) != 0);
    free(big);
}

static void test_random(p11_token *t)
{
    check_random(t);
    p11_token_config cfg = pt_config();
    cfg.rng = P11_RNG_OPENSSL;
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    REQUIRE(ctx != NULL);
    cfg.libctx = ctx;
    p11_token *t2 = pt_open(&cfg);
    check_random(t2);
    p11_token_close(t2);
    OSSL_LIB_CTX_free(ctx);
}

static p11_key *test_generate(p11_token *t)
{
    const uint8_t id[] = "master-key-1";
    p11_key *k = NULL;
    CHECK_OK(p11_key_generate(t, id, sizeof(id) - 1, "p11kms-test/master-key-1", &k, &e), &e);
    REQUIRE(k != NULL);
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, k, &a, &e), &e);
    CHECK(a.token && a.private_ && a.sensitive && !a.extractable);
    CHECK(a.always_sensitive && a.never_extractable);
    CHECK(a.encrypt && a.decrypt);
    CHECK(!a.wrap && !a.unwrap && !a.derive && !a.sign && !a.verify);
    CHECK(a.modifiable);
    CHECK(a.key_type == CKK_AES && a.value_len == 32);
    CHECK(strcmp(a.label, "p11kms-test/master-key-1") == 0);

    /* cached: the same object, no new search */
    p11_key *again = NULL;
    CHECK_OK(p11_key_find(t, id, sizeof(id) - 1, &again, &e), &e);
    CHECK(again == k);
    p11_key *dup = NULL;
    CHECK_ERR(p11_key_generate(t, id, sizeof(id) - 1, "dup", &dup, &e), P11KMS_E_ALREADY_EXISTS,
              &e);
    CHECK(dup == NULL);

    p11_key *none = NULL;
    const uint8_t missing[] = "no-such-key";
    CHECK_ERR(p11_key_find(t, missing, sizeof(missing) - 1, &none, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK(none == NULL);
    CHECK(pt_contains(e.message, "6e6f2d737563682d6b6579")); /* the id, in hex */
    CHECK_ERR(p11_key_find(t, missing, 0, &none, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_key_generate(t, NULL, 4, "x", &none, &e), P11KMS_E_VALIDATION, &e);
    return k;
}

static void test_usage(p11_token *t, p11_key *k)
{
    uint8_t iv[12] = {1, 2, 3}, pt[20] = "usage switch", ct[36], back[20];
    CHECK_OK(p11_key_set_usage(t, k, false, &e), &e);
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, k, &a, &e), &e);
    CHECK(!a.encrypt && !a.decrypt);
    p11kms_error_clear(&e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), P11KMS_E_TOKEN,
              &e);
    /* SoftHSM's refusal; NSS softokn answers CKR_KEY_TYPE_INCONSISTENT */
    CHECK(e.ckr == CKR_KEY_FUNCTION_NOT_PERMITTED || e.ckr == CKR_KEY_TYPE_INCONSISTENT);
    CHECK(pt_contains(e.message, "CKR_KEY_"));
    CHECK_OK(p11_key_set_usage(t, k, true, &e), &e);
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), &e);
    CHECK_OK(p11_key_set_usage(t, k, false, &e), &e);
    p11kms_error_clear(&e);
    CHECK_ERR(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &e), P11KMS_E_TOKEN,
              &e);
    CHECK(e.ckr == CKR_KEY_FUNCTION_NOT_PERMITTED || e.ckr == CKR_KEY_TYPE_INCONSISTENT);
    CHECK_OK(p11_key_set_usage(t, k, true, &e), &e);
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &e), &e);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
}

/* Decrypt that must fail with INVALID_CIPHERTEXT and leave the output untouched. */
static void check_refused(p11_token *t, p11_key *k, const uint8_t *iv, const uint8_t *aad,
                          size_t aad_len, const uint8_t *ct, size_t ct_len, const char *what)
{
    uint8_t out[256];
    memset(out, 0xa5, sizeof(out));
    p11kms_err rc = p11_gcm_decrypt(t, k, iv, 12, aad, aad_len, ct, ct_len, 16, out, &e);
    CHECK(rc == P11KMS_E_INVALID_CIPHERTEXT);
    if (rc != P11KMS_E_INVALID_CIPHERTEXT)
        fprintf(stderr, "  %s: got %s: %s\n", what, p11kms_error_class(rc), e.message);
    size_t i = 0;
    while (i < sizeof(out) && out[i] == 0xa5)
        i++;
    CHECK(i == sizeof(out));
}

/* The token's GCM must be the standard one: decrypt with OpenSSL. */
static int openssl_gcm_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                               const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                               uint8_t *pt)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    const EVP_CIPHER *cipher = key_len == 16   ? EVP_aes_128_gcm()
                               : key_len == 24 ? EVP_aes_192_gcm()
                                               : EVP_aes_256_gcm();
    int len,
        ok = c != NULL && EVP_DecryptInit_ex(c, cipher, NULL, key, iv) == 1 &&
             (aad_len == 0 || EVP_DecryptUpdate(c, NULL, &len, aad, (int)aad_len) == 1) &&
             EVP_DecryptUpdate(c, pt, &len, ct, (int)(ct_len - 16)) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(ct + ct_len - 16)) == 1 &&
             EVP_DecryptFinal_ex(c, pt + len, &len) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

static void test_gcm(p11_token *t, p11_key *k)
{
    uint8_t iv[12], pt[100], ct[116], back[100];
    const uint8_t aad[] = "\x00\x01\x00\x03key\x00\x05value";
    CHECK_OK(p11_token_random(t, iv, sizeof(iv), &e), &e);
    for (size_t i = 0; i < sizeof(pt); i++)
        pt[i] = (uint8_t)(i * 7 + 3);
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, aad, sizeof(aad), pt, sizeof(pt), ct, 16, &e), &e);
    CHECK(memcmp(ct, pt, 16) != 0);
    memset(back, 0, sizeof(back));
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, aad, sizeof(aad), ct, sizeof(ct), 16, back, &e), &e);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);

    /* every kind of tampering is refused, and nothing reaches the output */
    uint8_t bad[116], bad_iv[12];
    check_refused(t, k, iv, aad, sizeof(aad) - 1, ct, sizeof(ct), "shorter AAD");
    check_refused(t, k, iv, NULL, 0, ct, sizeof(ct), "no AAD");
    uint8_t aad2[sizeof(aad)];
    memcpy(aad2, aad, sizeof(aad));
    aad2[5] ^= 0x20;
    check_refused(t, k, iv, aad2, sizeof(aad2), ct, sizeof(ct), "changed AAD");
    memcpy(bad, ct, sizeof(ct));
    bad[0] ^= 1;
    check_refused(t, k, iv, aad, sizeof(aad), bad, sizeof(bad), "flipped ciphertext byte");
    memcpy(bad, ct, sizeof(ct));
    bad[sizeof(bad) - 1] ^= 0x80;
    check_refused(t, k, iv, aad, sizeof(aad), bad, sizeof(bad), "flipped tag byte");
    memcpy(bad_iv, iv, sizeof(iv));
    bad_iv[11] ^= 1;
    check_refused(t, k, bad_iv, aad, sizeof(aad), ct, sizeof(ct), "wrong IV");
    check_refused(t, k, iv, aad, sizeof(aad), ct, sizeof(ct) - 1, "truncated");
    check_refused(t, k, iv, aad, sizeof(aad), ct + 1, sizeof(ct) - 1, "dropped first byte");
    check_refused(t, k, iv, aad, sizeof(aad), ct, 15, "shorter than a tag");
    check_refused(t, k, iv, aad, sizeof(aad), ct + 100, 16, "tag only");

    /* other IV and tag sizes never reach the token */
    uint8_t iv16[16] = {0};
    CHECK_ERR(p11_gcm_encrypt(t, k, iv16, 8, NULL, 0, pt, 10, ct, 16, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv16, 16, NULL, 0, pt, 10, ct, 16, &e), P11KMS_E_VALIDATION,
              &e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, 10, ct, 12, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_gcm_decrypt(t, k, iv16, 8, NULL, 0, ct, 26, 16, back, &e), P11KMS_E_VALIDATION,
              &e);
    CHECK_ERR(p11_gcm_decrypt(t, k, iv16, 16, NULL, 0, ct, 26, 16, back, &e), P11KMS_E_VALIDATION,
              &e);
    CHECK_ERR(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, 26, 12, back, &e), P11KMS_E_VALIDATION,
              &e);
    CHECK_ERR(p11_gcm_encrypt(t, k, NULL, 12, NULL, 0, pt, 10, ct, 16, &e), P11KMS_E_VALIDATION,
              &e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 5, pt, 10, ct, 16, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, 26, 16, NULL, &e), P11KMS_E_VALIDATION,
              &e);

    /* empty plaintext and empty AAD */
    uint8_t tag_only[16], nothing[1];
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, NULL, 0, tag_only, 16, &e), &e);
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, tag_only, 16, 16, nothing, &e), &e);
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, tag_only, 16, 16, NULL, &e), &e);
    tag_only[3] ^= 4;
    check_refused(t, k, iv, NULL, 0, tag_only, 16, "empty plaintext, bad tag");

    /* a known key: the token's output is standard AES-256-GCM */
    uint8_t raw[32];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(0x40 + i);
    p11_key *sk = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &sk, &e), &e);
    REQUIRE(sk != NULL);
    CHECK_OK(p11_gcm_encrypt(t, sk, iv, 12, aad, sizeof(aad), pt, sizeof(pt), ct, 16, &e), &e);
    uint8_t ossl[100];
    CHECK(openssl_gcm_decrypt(raw, 32, iv, aad, sizeof(aad), ct, sizeof(ct), ossl));
    CHECK(memcmp(ossl, pt, sizeof(pt)) == 0);
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, sk, &a, &e), &e);
    CHECK(!a.token && a.sensitive && !a.extractable && a.encrypt && a.decrypt);
    /* a different key cannot open it */
    check_refused(t, k, iv, aad, sizeof(aad), ct, sizeof(ct), "wrong key");
    CHECK_OK(p11_key_destroy(t, sk, &e), &e);
    CHECK_ERR(p11_key_create_session_aes(t, raw, 20, &sk, &e), P11KMS_E_VALIDATION, &e);
}

struct collected {
    int n;
    char labels[8][64];
    size_t lens[8];
    int stop_after;
};

static int collect_data(const char *label, const uint8_t *value, size_t len, void *arg)
{
    (void)value;
    struct collected *c = arg;
    if (c->n < 8) {
        snprintf(c->labels[c->n], sizeof(c->labels[0]), "%s", label);
        c->lens[c->n] = len;
    }
    c->n++;
    return c->stop_after > 0 && c->n >= c->stop_after;
}

static int collect_key(const uint8_t *id, size_t id_len, const char *label, void *arg)
{
    (void)id;
    (void)id_len;
    struct collected *c = arg;
    if (c->n < 8)
        snprintf(c->labels[c->n], sizeof(c->labels[0]), "%s", label);
    c->n++;
    return 0;
}

static void test_data(p11_token *t)
{
    const char *v1 = "{\"state\":\"Enabled\"}";
    const char *v2 = "{\"state\":\"Disabled\",\"description\":\"a longer value than before\"}";
    CHECK_OK(p11_data_create(t, "p11kms-test/meta/a", (const uint8_t *)v1, strlen(v1), &e), &e);
    CHECK_ERR(p11_data_create(t, "p11kms-test/meta/a", (const uint8_t *)v1, strlen(v1), &e),
              P11KMS_E_ALREADY_EXISTS, &e);
    uint8_t *value = NULL;
    size_t len = 0;
    CHECK_OK(p11_data_read(t, "p11kms-test/meta/a", &value, &len, &e), &e);
    CHECK(len == strlen(v1) && value != NULL && memcmp(value, v1, len) == 0);
    free(value);
    CHECK_OK(p11_data_write(t, "p11kms-test/meta/a", (const uint8_t *)v2, strlen(v2), &e), &e);
    CHECK_OK(p11_data_read(t, "p11kms-test/meta/a", &value, &len, &e), &e);
    CHECK(len == strlen(v2) && value != NULL && memcmp(value, v2, len) == 0);
    free(value);
    CHECK_OK(p11_data_write(t, "p11kms-test/meta/a", (const uint8_t *)"x", 1, &e), &e);
    CHECK_OK(p11_data_read(t, "p11kms-test/meta/a", &value, &len, &e), &e);
    CHECK(len == 1 && value[0] == 'x');
    free(value);

    CHECK_OK(p11_data_create(t, "p11kms-test/meta/b", NULL, 0, &e), &e);
    CHECK_OK(p11_data_read(t, "p11kms-test/meta/b", &value, &len, &e), &e);
    CHECK(len == 0);
    free(value);
    CHECK_OK(p11_data_create(t, "p11kms-test/alias/c", (const uint8_t *)"cc", 2, &e), &e);

    struct collected c = {0};
    CHECK_OK(p11_data_list(t, "p11kms-test/meta/", collect_data, &c, &e), &e);
    CHECK(c.n == 2);
    c = (struct collected){0};
    CHECK_OK(p11_data_list(t, "p11kms-test/", collect_data, &c, &e), &e);
    CHECK(c.n == 3);
    c = (struct collected){0};
    c.stop_after = 1;
    CHECK_OK(p11_data_list(t, "p11kms-test/", collect_data, &c, &e), &e);
    CHECK(c.n == 1);
    c = (struct collected){0};
    CHECK_OK(p11_data_list(t, "nothing-has-this-prefix", collect_data, &c, &e), &e);
    CHECK(c.n == 0);
    c = (struct collected){0};
    CHECK_OK(p11_data_list(t, "p11kms-test/alias/", collect_data, &c, &e), &e);
    CHECK(c.n == 1 && strcmp(c.labels[0], "p11kms-test/alias/c") == 0 && c.lens[0] == 2);

    /* data objects are not keys, and keys are listed by label prefix */
    c = (struct collected){0};
    CHECK_OK(p11_key_list(t, "p11kms-test/master-", collect_key, &c, &e), &e);
    CHECK(c.n == 1 && strcmp(c.labels[0], "p11kms-test/master-key-1") == 0);
    c = (struct collected){0};
    CHECK_OK(p11_key_list(t, "p11kms-test/meta", collect_key, &c, &e), &e);
    CHECK(c.n == 0);

    CHECK_OK(p11_data_delete(t, "p11kms-test/meta/a", &e), &e);
    CHECK_ERR(p11_data_read(t, "p11kms-test/meta/a", &value, &len, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK(value == NULL);
    CHECK(pt_contains(e.message, "p11kms-test/meta/a"));
    CHECK_ERR(p11_data_delete(t, "p11kms-test/meta/a", &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11_data_write(t, "p11kms-test/meta/a", (const uint8_t *)"y", 1, &e),
              P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11_data_read(t, "p11kms-test/never", &value, &len, &e), P11KMS_E_NOT_FOUND, &e);
    /* re-created under the same label: the cache follows */
    CHECK_OK(p11_data_create(t, "p11kms-test/meta/a", (const uint8_t *)"new", 3, &e), &e);
    CHECK_OK(p11_data_read(t, "p11kms-test/meta/a", &value, &len, &e), &e);
    CHECK(len == 3 && memcmp(value, "new", 3) == 0);
    free(value);

    CHECK_ERR(p11_data_create(t, "", (const uint8_t *)"x", 1, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_data_create(t, NULL, (const uint8_t *)"x", 1, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_data_create(t, "p11kms-test/z", NULL, 3, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_data_read(t, "p11kms-test/z", NULL, &len, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_data_list(t, "", NULL, NULL, &e), P11KMS_E_VALIDATION, &e);
}

static void test_destroy(p11_token *t, p11_key *k)
{
    const uint8_t id[] = "master-key-1";
    CHECK_OK(p11_key_destroy(t, k, &e), &e);
    p11_key *gone = NULL;
    CHECK_ERR(p11_key_find(t, id, sizeof(id) - 1, &gone, &e), P11KMS_E_NOT_FOUND, &e);
    struct collected c = {0};
    CHECK_OK(p11_key_list(t, "p11kms-test/", collect_key, &c, &e), &e);
    CHECK(c.n == 0);
}

/* A wrong GCM knob fails the capability self-test: the token is refused at open, naming it. */
static void check_refused_at_open(const p11_token_config *cfg, const char *why)
{
    p11_token *t = NULL;
    CHECK_ERR(p11_token_open(cfg, &t, &e), P11KMS_E_UNSUPPORTED, &e);
    CHECK(t == NULL);
    CHECK(pt_contains(e.message, "AES-GCM self-test") && pt_contains(e.message, why) &&
          pt_contains(e.message, "cannot serve p11kms"));
    fprintf(stderr, "refused at open: %s\n", e.message);
}

/* OpenSSL's AES-256-GCM of pt (16-byte tag appended), to compare a token's answer with. */
static void openssl_gcm(const uint8_t key[32], const uint8_t iv[12], const uint8_t *pt, size_t len,
                        uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    REQUIRE(c != NULL && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1);
    REQUIRE(EVP_EncryptUpdate(c, out, &n, pt, (int)len) == 1);
    REQUIRE(EVP_EncryptFinal_ex(c, out + n, &fin) == 1);
    REQUIRE(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + len) == 1);
    EVP_CIPHER_CTX_free(c);
}

/* LEGACY passes the layout without ulIvBits. A token either refuses it, and then the knob must
 * reach the token and fail cleanly, at open and, past the check, at every operation with nothing
 * handed out (SoftHSM 2.6.1 knows only the v2.40 layout: CKR_ARGUMENTS_BAD); or takes it, and
 * then it must give AES-GCM's answers (NSS softokn tells the two layouts apart by their size).
 * tests/pkcs11-shim-test.c shows the layout round-trips with a token that takes it. */
static void test_legacy_layout(void)
{
    p11_token_config cfg = pt_config();
    cfg.gcm_layout = P11_GCM_LEGACY;
    uint8_t raw[32] = {7}, iv[12] = {1}, pt[16] = "legacy", ct[32], back[16];
    p11_token *t = NULL;
    if (p11_token_open(&cfg, &t, &e) == P11KMS_OK) {
        fprintf(stderr, "legacy CK_GCM_PARAMS layout: taken by the token\n");
        uint8_t want[32];
        openssl_gcm(raw, iv, pt, sizeof(pt), want);
        p11_key *k = NULL;
        CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
        CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), &e);
        CHECK(memcmp(ct, want, sizeof(ct)) == 0);
        CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &e), &e);
        CHECK(memcmp(back, pt, sizeof(pt)) == 0);
        ct[31] ^= 1;
        CHECK_ERR(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &e),
                  P11KMS_E_INVALID_CIPHERTEXT, &e);
        p11_token_close(t);
        return;
    }
    CHECK(e.code == P11KMS_E_UNSUPPORTED && t == NULL);
    CHECK(pt_contains(e.message, "AES-GCM self-test") &&
          pt_contains(e.message, "cannot serve p11kms") &&
          (pt_contains(e.message, "CKR_ARGUMENTS_BAD") ||
           pt_contains(e.message, "CKR_MECHANISM_PARAM_INVALID")));
    fprintf(stderr, "refused at open: %s\n", e.message);
    cfg.skip_capability_check = true; /* what the layer does with it once opened */
    t = pt_open(&cfg);
    p11_key *k = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    memset(ct, 0xa5, sizeof(ct));
    p11kms_error_clear(&e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), P11KMS_E_TOKEN,
              &e);
    CHECK(e.ckr == CKR_ARGUMENTS_BAD || e.ckr == CKR_MECHANISM_PARAM_INVALID);
    fprintf(stderr, "legacy CK_GCM_PARAMS layout refused: %s\n", e.message);
    CHECK(ct[0] == 0xa5 && ct[31] == 0xa5);
    memset(back, 0xa5, sizeof(back));
    CHECK_ERR(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &e), P11KMS_E_TOKEN,
              &e);
    CHECK(back[0] == 0xa5);
    p11_token_close(t);
}

/* TOKEN mode with a token that does not generate IVs (SoftHSM, NSS softokn): it would encrypt under
 * the all-zero IV every time, so the layer must refuse to hand out the ciphertext. */
static void test_token_iv_mode_refused(void)
{
    p11_token_config cfg = pt_config();
    cfg.iv_mode = P11_IV_TOKEN;
    check_refused_at_open(&cfg, "did not generate an IV");
    cfg.skip_capability_check = true;
    p11_token *t = pt_open(&cfg);
    uint8_t raw[32] = {9}, iv[12], pt[16] = "token iv", ct[32];
    memset(iv, 0x11, sizeof(iv));
    memset(ct, 0xa5, sizeof(ct));
    p11_key *k = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), P11KMS_E_TOKEN,
              &e);
    CHECK(pt_contains(e.message, "did not generate an IV"));
    CHECK(ct[0] == 0xa5 && iv[0] == 0x11);
    p11_token_close(t);
}

static void test_ckr_names(void)
{
    static const struct {
        CK_RV rv;
        const char *name;
    } known[] = {
        {CKR_OK, "CKR_OK"},
        {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
        {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
        {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
        {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
        {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
        {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
        {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
        {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
        {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
        {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
        {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
        {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
        {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
        {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
        {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
        {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
        {CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED"},
        {0x1b8, "CKR_PIN_TOO_WEAK"},
        {0x42, "CKR_AEAD_DECRYPT_FAILED"},
        {0x203, "CKR_KEY_EXHAUSTED"},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        CHECK(strcmp(p11_ckr_name(known[i].rv), known[i].name) == 0);
        if (strcmp(p11_ckr_name(known[i].rv), known[i].name) != 0)
            fprintf(stderr, "  0x%lx named %s\n", known[i].rv, p11_ckr_name(known[i].rv));
    }
    /* every value up to 0x300 is either named or shown as a number, never empty */
    int named = 0;
    for (CK_RV rv = 0; rv < 0x300; rv++) {
        const char *n = p11_ckr_name(rv);
        CHECK(strncmp(n, "CKR_", 4) == 0);
        named += strncmp(n, "CKR_0x", 6) != 0;
    }
    CHECK(named >= 100);
    CHECK(strcmp(p11_ckr_name(0x4), "CKR_0x4") == 0);
    CHECK(strcmp(p11_ckr_name(0x80000123UL), "CKR_0x80000123") == 0);
}

int main(void)
{
    REQUIRE(CRYPTO_secure_malloc_init(256 * 1024, 32) != 0);
    p11_token_config cfg = pt_config();
    p11_token *t = pt_open(&cfg);
    test_info(t);
    test_mechanisms(t);
    test_random(t);
    p11_key *k = test_generate(t);
    test_usage(t, k);
    test_gcm(t, k);
    /* Data objects are used only to read and remove what earlier versions kept in the token
     * (provider/migrate.c, provider/audit-checkpoint.c). */
    if (pt_token_stores_data(t, "the data object checks (test_data)"))
        test_data(t);
    test_destroy(t, k);
    p11_token_close(t);
    p11_token_close(NULL);
    test_legacy_layout();
    test_token_iv_mode_refused();
    test_ckr_names();
    int rc = check_finish("pkcs11-token-test");
    CRYPTO_secure_malloc_done();
    return rc;
}
