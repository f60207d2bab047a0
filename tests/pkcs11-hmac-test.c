/* HMAC-SHA256 keys in a real token (pkcs11/hmac.h): RFC 4231 vectors computed by the
 * token from imported keys, generated keys, the attributes the token stored (checked through
 * the layer and, independently, through the module's own function list: CKA_VALUE must be
 * unreadable, the label unchangeable, encryption refused), lookups, refusals and destruction. */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pkcs11-testutil.h"
#include "pkcs11/hmac.h"

static p11kms_error e;

/* RFC 4231 section 4 (HMAC-SHA256 results). Test case 5 is truncated to 128 bits. */
static const struct {
    const char *key_hex;
    const char *data_hex; /* NULL: data_text */
    const char *data_text;
    const char *mac_hex;
} rfc4231[] = {
    {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", NULL, "Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"4a656665", NULL, "what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
     "dddddddddd",
     NULL, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {"0102030405060708090a0b0c0d0e0f10111213141516171819",
     "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
     "cdcdcdcdcd",
     NULL, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", NULL, "Test With Truncation",
     "a3b6167473100ee06e0c796c2955552b"},
    {NULL, NULL, "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {NULL, NULL,
     "This is a test using a larger than block-size key and a larger than block-size data. The "
     "key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
};

/* The token's range of HMAC-SHA256 key lengths, in bytes, as its CK_MECHANISM_INFO reports it
 * (0 for the maximum: none reported). */
static void token_key_range(p11_token *t, size_t *min_key, size_t *max_key)
{
    p11_mechanism_report r[16];
    size_t n = 16;
    CHECK_OK(p11_token_mechanisms(t, r, &n, &e), &e);
    for (size_t i = 0; i < n; i++)
        if (r[i].mechanism == CKM_SHA256_HMAC && r[i].supported) {
            *min_key = r[i].min_key_size;
            *max_key = r[i].max_key_size;
            return;
        }
    REQUIRE(!"CKM_SHA256_HMAC offered");
}

/* Every vector is checked against OpenSSL. Which path a vector takes is decided from what the
 * token reports, not from which token it is: a key inside the token's range must be imported and
 * give RFC 4231's MAC (SoftHSM 2.6.1 reports 32 to 512 bytes: cases 6 and 7 with their 131-byte
 * key go through the token, the shorter keys of cases 1 to 5 do not); a key outside it must be
 * refused at import as a validation error naming the range, and never stored (NSS softokn 3.87
 * reports 1 to 128 bytes: cases 6 and 7 are refused). No vector is left unchecked either way. */
static void test_rfc4231(p11_token *t)
{
    size_t min_key = 0, max_key = 0;
    token_key_range(t, &min_key, &max_key);
    fprintf(stderr, "token HMAC-SHA256 key length: %zu to %zu bytes (0: no maximum reported)\n",
            min_key, max_key);
    size_t computed = 0, refused = 0;
    const size_t cases = sizeof(rfc4231) / sizeof(rfc4231[0]);
    for (size_t i = 0; i < cases; i++) {
        uint8_t key[131], data[256], want[32], mac[P11_HMAC_SHA256_LEN];
        size_t key_len, data_len;
        if (rfc4231[i].key_hex != NULL) {
            key_len = pt_unhex(rfc4231[i].key_hex, key, sizeof(key));
        } else { /* test cases 6 and 7: 131 bytes of 0xaa */
            key_len = 131;
            memset(key, 0xaa, key_len);
        }
        if (rfc4231[i].data_hex != NULL) {
            data_len = pt_unhex(rfc4231[i].data_hex, data, sizeof(data));
        } else {
            data_len = strlen(rfc4231[i].data_text);
            memcpy(data, rfc4231[i].data_text, data_len);
        }
        size_t want_len = pt_unhex(rfc4231[i].mac_hex, want, sizeof(want));

        char id[32], label[48];
        snprintf(id, sizeof(id), "rfc4231-%zu", i + 1);
        snprintf(label, sizeof(label), "p11kms-test/rfc4231-%zu", i + 1);
        uint8_t ref[EVP_MAX_MD_SIZE];
        unsigned ref_len = 0;
        REQUIRE(HMAC(EVP_sha256(), key, (int)key_len, data, data_len, ref, &ref_len) != NULL);
        CHECK(ref_len == 32 && CRYPTO_memcmp(ref, want, want_len) == 0);

        p11_key *k = NULL;
        if (key_len < min_key || (max_key != 0 && key_len > max_key)) {
            fprintf(stderr, "RFC 4231 case %zu: %zu-byte key outside the token's range: refused\n",
                    i + 1, key_len);
            CHECK_ERR(
                p11_hmac_import(t, (const uint8_t *)id, strlen(id), label, key, key_len, &k, &e),
                P11KMS_E_VALIDATION, &e);
            char range[64];
            snprintf(range, sizeof(range), "HMAC-SHA256 keys of %zu to %zu bytes, not %zu", min_key,
                     max_key, key_len);
            CHECK(pt_contains(e.message, "the token takes") && pt_contains(e.message, range));
            CHECK(k == NULL);
            CHECK_ERR(p11_hmac_find(t, (const uint8_t *)id, strlen(id), &k, &e), P11KMS_E_NOT_FOUND,
                      &e);
            refused++;
            continue;
        }
        fprintf(stderr, "RFC 4231 case %zu: %zu-byte key computed by the token\n", i + 1, key_len);
        CHECK_OK(p11_hmac_import(t, (const uint8_t *)id, strlen(id), label, key, key_len, &k, &e),
                 &e);
        if (k == NULL)
            continue;
        memset(mac, 0, sizeof(mac));
        CHECK_OK(p11_hmac_sha256(t, k, data, data_len, mac, &e), &e);
        CHECK(CRYPTO_memcmp(mac, want, want_len) == 0);
        computed++;
        CHECK_OK(p11_key_destroy(t, k, &e), &e);
    }
    /* every case took one of the two paths to its end, and the token computed at least one */
    CHECK(computed + refused == cases);
    CHECK(computed >= 1);
}

/* The module's own function list, beside the layer (same process: the module is already
 * initialized and the application is logged in, so a new session sees private objects). */
static CK_FUNCTION_LIST *raw_module(void)
{
    void *dl = dlopen(test_env("P11KMS_TEST_MODULE"), RTLD_NOW | RTLD_NOLOAD);
    REQUIRE(dl != NULL);
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    REQUIRE(get != NULL);
    CK_FUNCTION_LIST *f = NULL;
    REQUIRE(get(&f) == CKR_OK && f != NULL);
    dlclose(dl); /* the layer keeps its own reference */
    return f;
}

static void check_raw(p11_token *t, const uint8_t *id, size_t id_len)
{
    CK_FUNCTION_LIST *f = raw_module();
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CK_SESSION_HANDLE s;
    REQUIRE(f->C_OpenSession(info.slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) ==
            CKR_OK);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    REQUIRE(f->C_FindObjectsInit(s, find, 2) == CKR_OK);
    REQUIRE(f->C_FindObjects(s, h, 2, &n) == CKR_OK);
    REQUIRE(f->C_FindObjectsFinal(s) == CKR_OK);
    CHECK(n == 1);
    if (n == 1) {
        uint8_t value[64];
        CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
        CHECK(f->C_GetAttributeValue(s, h[0], &v, 1) == CKR_ATTRIBUTE_SENSITIVE);
        CHECK(v.ulValueLen == CK_UNAVAILABLE_INFORMATION);
        const char other[] = "renamed";
        CK_ATTRIBUTE l = {CKA_LABEL, (void *)other, sizeof(other) - 1};
        CK_RV rv = f->C_SetAttributeValue(s, h[0], &l, 1);
        CHECK(rv == CKR_ACTION_PROHIBITED || rv == CKR_ATTRIBUTE_READ_ONLY);
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE x = {CKA_EXTRACTABLE, &yes, sizeof(yes)};
        CHECK(f->C_SetAttributeValue(s, h[0], &x, 1) != CKR_OK);
        uint8_t iv[16] = {0};
        CK_MECHANISM cbc = {CKM_AES_CBC, iv, sizeof(iv)};
        CHECK(f->C_EncryptInit(s, &cbc, h[0]) != CKR_OK);
    }
    CHECK(f->C_CloseSession(s) == CKR_OK);
}

static void test_import_attributes(p11_token *t)
{
    const uint8_t id[] = "p11kms-test-hmac-imported";
    uint8_t value[44];
    memcpy(value, "AWS4", 4);
    memset(value + 4, 'x', 40);
    p11_key *k = NULL;
    CHECK_OK(p11_hmac_import(t, id, sizeof(id) - 1, "p11kms-test/imported:alice", value,
                             sizeof(value), &k, &e),
             &e);
    REQUIRE(k != NULL);
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, k, &a, &e), &e);
    CHECK(a.key_type == CKK_GENERIC_SECRET && a.value_len == sizeof(value));
    CHECK(a.token && a.private_ && a.sensitive && !a.extractable);
    CHECK(a.sign && a.verify);
    CHECK(!a.encrypt && !a.decrypt && !a.wrap && !a.unwrap && !a.derive);
    CHECK(!a.modifiable);
    CHECK(strcmp(a.label, "p11kms-test/imported:alice") == 0);
    check_raw(t, id, sizeof(id) - 1);

    /* the id is taken, for HMAC and master keys alike */
    p11_key *dup = NULL;
    CHECK_ERR(p11_hmac_import(t, id, sizeof(id) - 1, "dup", value, sizeof(value), &dup, &e),
              P11KMS_E_ALREADY_EXISTS, &e);
    CHECK(dup == NULL);
    CHECK_ERR(p11_hmac_generate(t, id, sizeof(id) - 1, "dup", 32, &dup, &e),
              P11KMS_E_ALREADY_EXISTS, &e);
    CHECK_ERR(p11_key_generate(t, id, sizeof(id) - 1, "dup", &dup, &e), P11KMS_E_ALREADY_EXISTS,
              &e);

    /* found by id (cached) and by label */
    p11_key *again = NULL;
    CHECK_OK(p11_hmac_find(t, id, sizeof(id) - 1, &again, &e), &e);
    CHECK(again == k);
    again = NULL;
    CHECK_OK(p11_hmac_find_label(t, "p11kms-test/imported:alice", &again, &e), &e);
    CHECK(again == k);
    CHECK_ERR(p11_hmac_find_label(t, "p11kms-test/imported:bob", &again, &e), P11KMS_E_NOT_FOUND,
              &e);
    CHECK_ERR(p11_hmac_find_label(t, "p11kms-test/imported", &again, &e), P11KMS_E_NOT_FOUND, &e);

    uint8_t mac[32], ref[32];
    unsigned ref_len = 0;
    const char msg[] = "20261130";
    CHECK_OK(p11_hmac_sha256(t, k, (const uint8_t *)msg, 8, mac, &e), &e);
    REQUIRE(HMAC(EVP_sha256(), value, sizeof(value), (const uint8_t *)msg, 8, ref, &ref_len));
    CHECK(CRYPTO_memcmp(mac, ref, 32) == 0);
    /* empty input */
    CHECK_OK(p11_hmac_sha256(t, k, NULL, 0, mac, &e), &e);
    REQUIRE(HMAC(EVP_sha256(), value, sizeof(value), (const uint8_t *)"", 0, ref, &ref_len));
    CHECK(CRYPTO_memcmp(mac, ref, 32) == 0);
    OPENSSL_cleanse(value, sizeof(value));

    CHECK_OK(p11_key_destroy(t, k, &e), &e);
    CHECK_ERR(p11_hmac_find(t, id, sizeof(id) - 1, &again, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11_hmac_find_label(t, "p11kms-test/imported:alice", &again, &e), P11KMS_E_NOT_FOUND,
              &e);
}

static void test_generate(p11_token *t)
{
    const uint8_t id[] = "p11kms-test-integrity";
    p11_key *k = NULL;
    CHECK_OK(p11_hmac_generate(t, id, sizeof(id) - 1, "p11kms-test/integrity", 32, &k, &e), &e);
    REQUIRE(k != NULL);
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, k, &a, &e), &e);
    CHECK(a.key_type == CKK_GENERIC_SECRET && a.value_len == 32);
    CHECK(a.sensitive && !a.extractable && a.always_sensitive && a.never_extractable);
    CHECK(a.sign && a.verify && !a.encrypt && !a.decrypt && !a.wrap && !a.unwrap && !a.derive);
    check_raw(t, id, sizeof(id) - 1);
    uint8_t m1[32], m2[32], m3[32];
    CHECK_OK(p11_hmac_sha256(t, k, (const uint8_t *)"record", 6, m1, &e), &e);
    CHECK_OK(p11_hmac_sha256(t, k, (const uint8_t *)"record", 6, m2, &e), &e);
    CHECK_OK(p11_hmac_sha256(t, k, (const uint8_t *)"recorD", 6, m3, &e), &e);
    CHECK(CRYPTO_memcmp(m1, m2, 32) == 0 && CRYPTO_memcmp(m1, m3, 32) != 0);
    /* two generated keys differ */
    const uint8_t id2[] = "p11kms-test-audit";
    p11_key *k2 = NULL;
    CHECK_OK(p11_hmac_generate(t, id2, sizeof(id2) - 1, "p11kms-test/audit", 32, &k2, &e), &e);
    REQUIRE(k2 != NULL);
    CHECK_OK(p11_hmac_sha256(t, k2, (const uint8_t *)"record", 6, m2, &e), &e);
    CHECK(CRYPTO_memcmp(m1, m2, 32) != 0);
    CHECK_OK(p11_key_destroy(t, k2, &e), &e);
    CHECK_OK(p11_key_destroy(t, k, &e), &e);

    CHECK_ERR(p11_hmac_generate(t, id, sizeof(id) - 1, "x", 8, &k, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_generate(t, id, sizeof(id) - 1, "x", 65, &k, &e), P11KMS_E_VALIDATION, &e);
}

static void test_refusals(p11_token *t)
{
    p11_key *k = NULL;
    uint8_t mac[32], value[32] = {1};
    /* a master key (AES, encrypt/decrypt only) is not an HMAC key */
    const uint8_t aes_id[] = "p11kms-test-aes";
    p11_key *aes = NULL;
    CHECK_OK(p11_key_generate(t, aes_id, sizeof(aes_id) - 1, "p11kms-test/aes", &aes, &e), &e);
    REQUIRE(aes != NULL);
    CHECK_ERR(p11_hmac_find(t, aes_id, sizeof(aes_id) - 1, &k, &e), P11KMS_E_TOKEN, &e);
    CHECK(pt_contains(e.message, "no HMAC key"));
    CHECK(k == NULL);
    CHECK_ERR(p11_hmac_sha256(t, aes, (const uint8_t *)"x", 1, mac, &e), P11KMS_E_TOKEN, &e);
    CHECK(e.ckr == CKR_KEY_TYPE_INCONSISTENT || e.ckr == CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_OK(p11_key_destroy(t, aes, &e), &e);

    /* a destroyed key (handle gone, found again: none) */
    const uint8_t id[] = "p11kms-test-gone";
    CHECK_OK(
        p11_hmac_import(t, id, sizeof(id) - 1, "p11kms-test/gone", value, sizeof(value), &k, &e),
        &e);
    REQUIRE(k != NULL);
    p11_key *other = NULL;
    CHECK_OK(p11_hmac_find(t, id, sizeof(id) - 1, &other, &e), &e);
    /* destroy behind the layer's back, through the module's own list */
    CK_FUNCTION_LIST *f = raw_module();
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CK_SESSION_HANDLE s;
    REQUIRE(f->C_OpenSession(info.slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) ==
            CKR_OK);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, sizeof(id) - 1}};
    CK_OBJECT_HANDLE h;
    CK_ULONG n = 0;
    REQUIRE(f->C_FindObjectsInit(s, find, 2) == CKR_OK);
    REQUIRE(f->C_FindObjects(s, &h, 1, &n) == CKR_OK && n == 1);
    REQUIRE(f->C_FindObjectsFinal(s) == CKR_OK);
    REQUIRE(f->C_DestroyObject(s, h) == CKR_OK);
    REQUIRE(f->C_CloseSession(s) == CKR_OK);
    /* the stale handle is found again: the key is gone (what a deleted credential must give) */
    CHECK_ERR(p11_hmac_sha256(t, k, (const uint8_t *)"x", 1, mac, &e), P11KMS_E_NOT_FOUND, &e);
    (void)p11_key_destroy(t, k, &e); /* forgets the cache entry; the object is gone */

    /* bad arguments */
    CHECK_ERR(p11_hmac_import(t, id, 0, "x", value, 32, &k, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_import(t, id, 3, NULL, value, 32, &k, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_import(t, id, 3, "x", value, 0, &k, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_import(t, id, 3, "x", NULL, 32, &k, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_import(t, id, 3, "x", value, P11_HMAC_KEY_MAX + 1, &k, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_sha256(t, NULL, value, 1, mac, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11_hmac_find_label(t, "", &k, &e), P11KMS_E_VALIDATION, &e);
}

int main(void)
{
    REQUIRE(CRYPTO_secure_malloc_init(256 * 1024, 32) != 0);
    p11_token_config cfg = pt_config();
    p11_token *t = pt_open(&cfg);
    test_rfc4231(t);
    test_import_attributes(t);
    test_generate(t);
    test_refusals(t);
    p11_token_close(t);
    int rc = check_finish("pkcs11-hmac-test");
    CRYPTO_secure_malloc_done();
    return rc;
}
