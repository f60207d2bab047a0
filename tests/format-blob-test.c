#include "config.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "lib/check.h"

static OSSL_LIB_CTX *libctx;
static p11kms_error e;

static const uint8_t key_a[32] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                  0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                                  0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const uint8_t key_b[32] = {0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                  0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                                  0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const uint8_t fixed_iv[12] = {0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce,
                                     0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88};

static enc_context *ctx_of(const char *shorthand)
{
    enc_context *ctx = NULL;
    if (shorthand == NULL)
        return NULL;
    REQUIRE(enc_context_parse_shorthand(shorthand, &ctx, &e) == P11KMS_OK);
    return ctx;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

static void test_kcv(void)
{
    uint8_t kcv[BLOB_KCV_LEN], kcv2[BLOB_KCV_LEN], want[32];
    size_t want_len = 0;
    CHECK_OK(blob_kcv(libctx, key_a, sizeof(key_a), kcv, &e), &e);
    /* Independently: HMAC-SHA256 through the default library context. */
    REQUIRE(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key_a, sizeof(key_a),
                      (const unsigned char *)"p11kms key check value v1", 25, want, sizeof(want),
                      &want_len) != NULL);
    CHECK(want_len == 32 && memcmp(kcv, want, BLOB_KCV_LEN) == 0);
    CHECK_OK(blob_kcv(libctx, key_b, sizeof(key_b), kcv2, &e), &e);
    CHECK(memcmp(kcv, kcv2, BLOB_KCV_LEN) != 0);
    CHECK_ERR(blob_kcv(libctx, key_a, 0, kcv, &e), P11KMS_E_INTERNAL, &e);

    blob_key *k = NULL;
    CHECK_OK(blob_key_new(libctx, key_a, sizeof(key_a), &k, &e), &e);
    CHECK(k != NULL && memcmp(blob_key_kcv(k), want, BLOB_KCV_LEN) == 0);
    blob_key_free(k);
    CHECK_ERR(blob_key_new(libctx, key_a, 16, &k, &e), P11KMS_E_VALIDATION, &e);
    CHECK(k == NULL);
    CHECK_ERR(blob_key_new(libctx, NULL, 32, &k, &e), P11KMS_E_VALIDATION, &e);
    blob_key_free(NULL);
}

static void test_round_trips(blob_key *a)
{
    static const size_t lens[] = {1, 15, 16, 17, 32, 64, 1024, 4095, 4096};
    static const char *ctxs[] = {NULL, "tier=database,database=sales", "block=0000000001"};
    uint8_t pt[BLOB_MAX_PLAINTEXT], out[BLOB_MAX_PLAINTEXT], blob[BLOB_MAX_LEN];
    for (size_t i = 0; i < sizeof(pt); i++)
        pt[i] = (uint8_t)(i * 7 + 3);
    for (size_t c = 0; c < sizeof(ctxs) / sizeof(ctxs[0]); c++) {
        enc_context *ctx = ctx_of(ctxs[c]);
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            size_t n = lens[i], blen = 0, olen = 0;
            CHECK_OK(blob_child_seal(a, NULL, ctx, pt, n, blob, sizeof(blob), &blen, &e), &e);
            CHECK(blen == blob_len(BLOB_TYPE_CHILD, n) && blen == BLOB_OVERHEAD(27) + n);
            CHECK(blob[0] == 2 && blob[1] == 2 && blob[2] == 1);
            CHECK(memcmp(blob + 3, blob_key_kcv(a), BLOB_KCV_LEN) == 0);
            CHECK(memcmp(blob + 43, pt, n) != 0 || n < 4); /* actually encrypted */
            memset(out, 0, sizeof(out));
            CHECK_OK(blob_child_open(a, ctx, blob, blen, out, sizeof(out), &olen, &e), &e);
            CHECK(olen == n && memcmp(out, pt, n) == 0);
            /* The output buffer only has to hold the plaintext. */
            CHECK_OK(blob_child_open(a, ctx, blob, blen, out, n, &olen, &e), &e);
            CHECK_ERR(blob_child_open(a, ctx, blob, blen, out, n - 1, &olen, &e), P11KMS_E_INTERNAL,
                      &e);
        }
        enc_context_free(ctx);
    }

    /* Random IVs: two seals of the same input differ; a fixed IV is deterministic. */
    uint8_t b1[BLOB_MAX_LEN], b2[BLOB_MAX_LEN];
    size_t l1, l2;
    CHECK_OK(blob_child_seal(a, NULL, NULL, pt, 32, b1, sizeof(b1), &l1, &e), &e);
    CHECK_OK(blob_child_seal(a, NULL, NULL, pt, 32, b2, sizeof(b2), &l2, &e), &e);
    CHECK(l1 == l2 && memcmp(b1 + 27, b2 + 27, 12) != 0);
    CHECK_OK(blob_child_seal(a, fixed_iv, NULL, pt, 32, b1, sizeof(b1), &l1, &e), &e);
    CHECK_OK(blob_child_seal(a, fixed_iv, NULL, pt, 32, b2, sizeof(b2), &l2, &e), &e);
    CHECK(l1 == l2 && memcmp(b1, b2, l1) == 0 && memcmp(b1 + 27, fixed_iv, 12) == 0);

    /* Limits and buffers. */
    size_t len;
    CHECK_ERR(blob_child_seal(a, NULL, NULL, pt, 0, blob, sizeof(blob), &len, &e),
              P11KMS_E_VALIDATION, &e);
    uint8_t *big = calloc(1, BLOB_MAX_PLAINTEXT + 1);
    REQUIRE(big != NULL);
    CHECK_ERR(
        blob_child_seal(a, NULL, NULL, big, BLOB_MAX_PLAINTEXT + 1, blob, sizeof(blob), &len, &e),
        P11KMS_E_VALIDATION, &e);
    free(big);
    CHECK_ERR(
        blob_child_seal(a, NULL, NULL, pt, 32, blob, blob_len(BLOB_TYPE_CHILD, 32) - 1, &len, &e),
        P11KMS_E_INTERNAL, &e);
    blob_header bad = {.type = 7, .alg = BLOB_ALG_AES_256_GCM};
    CHECK_ERR(blob_key_seal(a, &bad, NULL, NULL, pt, 32, blob, sizeof(blob), &len, &e),
              P11KMS_E_INTERNAL, &e);
    bad.type = BLOB_TYPE_CHILD;
    bad.alg = 2;
    CHECK_ERR(blob_key_seal(a, &bad, NULL, NULL, pt, 32, blob, sizeof(blob), &len, &e),
              P11KMS_E_INTERNAL, &e);

    /* A context larger than the key's inline scratch space, then small ones again. */
    enc_context *large = enc_context_new();
    REQUIRE(large != NULL);
    char value[2001];
    memset(value, 'v', 2000);
    value[2000] = '\0';
    CHECK_OK(enc_context_add(large, "big", value, &e), &e);
    size_t olen;
    CHECK_OK(blob_child_seal(a, NULL, large, pt, 100, blob, sizeof(blob), &len, &e), &e);
    CHECK_OK(blob_child_open(a, large, blob, len, out, sizeof(out), &olen, &e), &e);
    CHECK(olen == 100 && memcmp(out, pt, 100) == 0);
    CHECK_ERR(blob_child_open(a, NULL, blob, len, out, sizeof(out), &olen, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK_OK(blob_child_seal(a, NULL, NULL, pt, 100, blob, sizeof(blob), &len, &e), &e);
    CHECK_OK(blob_child_open(a, NULL, blob, len, out, sizeof(out), &olen, &e), &e);
    enc_context_free(large);
}

/* The format as documented, computed without blob.c: AES-256-GCM over a hand-built AAD. */
static void test_independent_encryption(blob_key *a)
{
    enc_context *ctx = ctx_of("tier=database,database=sales");
    uint8_t pt[32], blob[BLOB_MAX_LEN], aad[256], want[BLOB_MAX_LEN];
    size_t blen, aad_len = 0;
    memset(pt, 0x42, sizeof(pt));
    CHECK_OK(blob_child_seal(a, fixed_iv, ctx, pt, sizeof(pt), blob, sizeof(blob), &blen, &e), &e);

    /* header: 02 02 01 KCV salt; the key: HKDF-SHA256(key_a, salt, info), never key_a itself */
    uint8_t header[27] = {2, 2, 1};
    memcpy(header + 3, blob_key_kcv(a), 8);
    memcpy(header + 11, blob + 11, 16);
    memcpy(aad, header, 27);
    aad_len = 27;
    uint8_t derived[32];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string("key", (void *)key_a, 32),
        OSSL_PARAM_construct_octet_string("salt", blob + 11, 16),
        OSSL_PARAM_construct_octet_string("info", (char *)"p11kms child wrapping key v2", 28),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    REQUIRE(kctx != NULL && EVP_KDF_derive(kctx, derived, sizeof(derived), params) == 1);
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    CHECK(memcmp(derived, key_a, 32) != 0);
    static const uint8_t canon[] = "\x00\x02\x00\x08"
                                   "database"
                                   "\x00\x05"
                                   "sales"
                                   "\x00\x04"
                                   "tier"
                                   "\x00\x08"
                                   "database";
    size_t canon_len = sizeof(canon) - 1;
    aad[aad_len++] = 0;
    aad[aad_len++] = 0;
    aad[aad_len++] = 0;
    aad[aad_len++] = (uint8_t)canon_len;
    memcpy(aad + aad_len, canon, canon_len);
    aad_len += canon_len;

    size_t w = 0;
    memcpy(want, header, 27);
    w = 27;
    memcpy(want + w, fixed_iv, 12);
    w += 12;
    want[w++] = 0;
    want[w++] = 0;
    want[w++] = 0;
    want[w++] = 32;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, f = 0;
    REQUIRE(c != NULL && EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), derived, fixed_iv, NULL) &&
            EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) &&
            EVP_EncryptUpdate(c, want + w, &n, pt, sizeof(pt)) &&
            EVP_EncryptFinal_ex(c, want + w + n, &f) &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, want + w + 32) == 1);
    EVP_CIPHER_CTX_free(c);
    w += 32 + 16;
    CHECK(blen == w && memcmp(blob, want, w) == 0);

    /* blob_aad gives the same AAD. */
    uint8_t aad2[BLOB_AAD_MAX];
    size_t aad2_len;
    CHECK_OK(blob_aad(header, 27, ctx, aad2, sizeof(aad2), &aad2_len, &e), &e);
    CHECK(aad2_len == aad_len && memcmp(aad2, aad, aad_len) == 0);
    CHECK(blob_aad_len(27, ctx) == aad_len);
    enc_context_free(ctx);
}

/* Every single-bit change anywhere in a CHILD blob is refused, and nothing reaches the output. */
static void test_bit_flips(blob_key *a)
{
    enc_context *ctx = ctx_of("tier=database,database=sales");
    uint8_t pt[32], blob[BLOB_MAX_LEN], out[BLOB_MAX_PLAINTEXT];
    size_t blen, olen;
    memset(pt, 0x5a, sizeof(pt));
    CHECK_OK(blob_child_seal(a, NULL, ctx, pt, sizeof(pt), blob, sizeof(blob), &blen, &e), &e);
    size_t refused = 0;
    for (size_t i = 0; i < blen; i++) {
        for (int bit = 0; bit < 8; bit++) {
            blob[i] ^= (uint8_t)(1u << bit);
            memset(out, 0xEE, sizeof(out));
            p11kms_err rc = blob_child_open(a, ctx, blob, blen, out, sizeof(out), &olen, &e);
            /* KCV bytes name another parent; every other change (salt included: another derived
             * key) is a damaged blob. */
            p11kms_err want =
                i >= 3 && i < 11 ? P11KMS_E_INCORRECT_KEY : P11KMS_E_INVALID_CIPHERTEXT;
            if (rc != want || !all_bytes(out, sizeof(out), 0xEE)) {
                check_failures++;
                fprintf(stderr, "flip byte %zu bit %d: got %s (%s)\n", i, bit,
                        p11kms_error_class(rc), e.message);
            } else {
                refused++;
            }
            check_count++;
            blob[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK(refused == blen * 8);
    CHECK_OK(blob_child_open(a, ctx, blob, blen, out, sizeof(out), &olen, &e), &e);
    CHECK(olen == 32 && memcmp(out, pt, 32) == 0);

    /* Truncation at every length, and bytes appended. */
    for (size_t n = 0; n < blen; n++) {
        memset(out, 0xEE, sizeof(out));
        CHECK_ERR(blob_child_open(a, ctx, blob, n, out, sizeof(out), &olen, &e),
                  P11KMS_E_INVALID_CIPHERTEXT, &e);
        CHECK(all_bytes(out, sizeof(out), 0xEE));
    }
    blob[blen] = 0;
    CHECK_ERR(blob_child_open(a, ctx, blob, blen + 1, out, sizeof(out), &olen, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "after the tag") != NULL);
    CHECK_ERR(blob_child_open(a, ctx, NULL, 0, out, sizeof(out), &olen, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    enc_context_free(ctx);
}

static void test_wrong_context_and_key(blob_key *a, blob_key *b)
{
    enc_context *ctx = ctx_of("tier=database,database=sales");
    uint8_t pt[32], blob[BLOB_MAX_LEN], out[BLOB_MAX_PLAINTEXT];
    size_t blen, olen;
    memset(pt, 0x11, sizeof(pt));
    CHECK_OK(blob_child_seal(a, NULL, ctx, pt, sizeof(pt), blob, sizeof(blob), &blen, &e), &e);

    static const char *wrong[] = {
        NULL,
        "tier=database",
        "tier=database,database=sales,extra=1",
        "tier=database,database=Sales",
        "Tier=database,database=sales",
        "tier=database,database=sales ",
        "tier=databasedatabase=sales",
        "tier=database,database=sale",
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        enc_context *w = ctx_of(wrong[i]);
        memset(out, 0xEE, sizeof(out));
        CHECK_ERR(blob_child_open(a, w, blob, blen, out, sizeof(out), &olen, &e),
                  P11KMS_E_INVALID_CIPHERTEXT, &e);
        CHECK(all_bytes(out, sizeof(out), 0xEE));
        enc_context_free(w);
    }
    /* Same pairs in another order is the same context. */
    enc_context *same = ctx_of("database=sales,tier=database");
    CHECK_OK(blob_child_open(a, same, blob, blen, out, sizeof(out), &olen, &e), &e);
    enc_context_free(same);

    /* Another parent: refused by KCV before any decryption. */
    memset(out, 0xEE, sizeof(out));
    CHECK_ERR(blob_child_open(b, ctx, blob, blen, out, sizeof(out), &olen, &e),
              P11KMS_E_INCORRECT_KEY, &e);
    CHECK(all_bytes(out, sizeof(out), 0xEE));
    /* A blob claiming b's KCV but sealed by a: the KCV passes, the tag does not. */
    memcpy(blob + 3, blob_key_kcv(b), BLOB_KCV_LEN);
    CHECK_ERR(blob_child_open(b, ctx, blob, blen, out, sizeof(out), &olen, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(all_bytes(out, sizeof(out), 0xEE));

    /* A MASTER blob is not a child of any opened key. */
    blob_header m = {.type = BLOB_TYPE_MASTER, .alg = BLOB_ALG_AES_256_GCM, .key_version = 1};
    CHECK_OK(blob_key_seal(a, &m, NULL, ctx, pt, sizeof(pt), blob, sizeof(blob), &blen, &e), &e);
    CHECK_ERR(blob_child_open(a, ctx, blob, blen, out, sizeof(out), &olen, &e),
              P11KMS_E_INCORRECT_KEY, &e);
    /* but opens under its key in software */
    blob_view v;
    CHECK_OK(blob_parse(blob, blen, &v, &e), &e);
    CHECK_OK(blob_key_open(a, &v, ctx, out, sizeof(out), &olen, &e), &e);
    CHECK(olen == 32 && memcmp(out, pt, 32) == 0);
    memset(out, 0xEE, sizeof(out));
    CHECK_ERR(blob_key_open(b, &v, ctx, out, sizeof(out), &olen, &e), P11KMS_E_INVALID_CIPHERTEXT,
              &e);
    CHECK(all_bytes(out, sizeof(out), 0xEE));
    /* A failed open leaves the key usable. */
    CHECK_OK(blob_key_open(a, &v, ctx, out, sizeof(out), &olen, &e), &e);
    blob_view unparsed = {0};
    CHECK_ERR(blob_key_open(a, &unparsed, ctx, out, sizeof(out), &olen, &e), P11KMS_E_INTERNAL, &e);
    enc_context_free(ctx);
}

static void test_parse_errors(void)
{
    uint8_t blob[BLOB_MAX_LEN];
    /* Version 1 CHILD layout (no longer written, still read). */
    blob_header h = {
        .version = BLOB_VERSION_1, .type = BLOB_TYPE_CHILD, .alg = BLOB_ALG_AES_256_GCM};
    memset(h.kcv, 0x77, sizeof(h.kcv));
    uint8_t ct[40], tag[16];
    memset(ct, 0xC7, sizeof(ct));
    memset(tag, 0x7A, sizeof(tag));
    size_t blen;
    CHECK_OK(blob_encode(&h, fixed_iv, ct, sizeof(ct), tag, blob, sizeof(blob), &blen, &e), &e);
    CHECK(blen == 11 + 12 + 4 + 40 + 16);
    blob_view v;
    CHECK_OK(blob_parse(blob, blen, &v, &e), &e);
    CHECK(v.version == 1 && v.type == BLOB_TYPE_CHILD && v.alg == 1 && v.header == blob &&
          v.header_len == 11 && v.kcv == blob + 3 && v.key_id == NULL && v.iv == blob + 11 &&
          v.ciphertext == blob + 27 && v.ciphertext_len == 40 && v.tag == blob + 67 &&
          v.tag == v.ciphertext + v.ciphertext_len);

    static const struct {
        size_t at;
        uint8_t value;
        const char *why;
    } bad[] = {
        {0, 0x00, "version 0"},
        {0, 0x03, "version 3"},
        {0, 0xff, "version 255"},
        {1, 0x00, "type 0"},
        {1, 0x03, "type 3"},
        {1, 0xff, "type 255"},
        {2, 0x00, "algorithm 0"},
        {2, 0x02, "algorithm 2"},
        /* the length field: 0, past the limit, one more or one less than present */
        {26, 0x00, "1..4096"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t copy[BLOB_MAX_LEN];
        memcpy(copy, blob, blen);
        copy[bad[i].at] = bad[i].value;
        p11kms_err rc = blob_parse(copy, blen, &v, &e);
        check_count++;
        if (rc != P11KMS_E_INVALID_CIPHERTEXT || strstr(e.message, bad[i].why) == NULL) {
            check_failures++;
            fprintf(stderr, "parse case %zu: %s, want \"%s\"\n", i, e.message, bad[i].why);
        }
    }
    uint8_t copy[BLOB_MAX_LEN + 8];
    memcpy(copy, blob, blen);
    copy[25] = 0x10;
    copy[26] = 0x01; /* 4097 */
    CHECK_ERR(blob_parse(copy, blen, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "4097") != NULL);
    memcpy(copy, blob, blen);
    copy[26] = 41;
    CHECK_ERR(blob_parse(copy, blen, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "tag") != NULL);
    copy[26] = 39;
    CHECK_ERR(blob_parse(copy, blen, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "after the tag") != NULL);
    copy[26] = 40;
    memcpy(copy, blob, blen);
    copy[26] = 200;
    CHECK_ERR(blob_parse(copy, blen, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "truncated in the ciphertext") != NULL);

    /* Truncation names the field it stopped in. */
    static const struct {
        size_t len;
        const char *why;
    } cut[] = {
        {0, "empty"}, {1, "blob type"},          {2, "algorithm"},   {5, "key check value"},
        {12, "IV"},   {25, "ciphertext length"}, {30, "ciphertext"}, {70, "tag"},
    };
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        p11kms_err rc = blob_parse(blob, cut[i].len, &v, &e);
        check_count++;
        if (rc != P11KMS_E_INVALID_CIPHERTEXT || strstr(e.message, cut[i].why) == NULL) {
            check_failures++;
            fprintf(stderr, "cut case %zu: %s, want \"%s\"\n", i, e.message, cut[i].why);
        }
    }

    /* Encoding refuses what parsing would refuse. */
    CHECK_ERR(blob_encode(&h, fixed_iv, ct, 0, tag, blob, sizeof(blob), &blen, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(blob_encode(&h, fixed_iv, ct, 4097, tag, blob, sizeof(blob), &blen, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(blob_encode(&h, fixed_iv, ct, sizeof(ct), tag, blob, 50, &blen, &e),
              P11KMS_E_INTERNAL, &e);
    CHECK(blob_header_len(1, 0) == 0 && blob_header_len(0, BLOB_TYPE_CHILD) == 0 &&
          blob_header_len(3, BLOB_TYPE_CHILD) == 0 && blob_len(9, 10) == 0);

    /* Version 2: the salt after the KCV; MASTER has no version-2 layout. */
    h.version = BLOB_VERSION_2;
    memset(h.salt, 0x5a, sizeof(h.salt));
    CHECK_OK(blob_encode(&h, fixed_iv, ct, sizeof(ct), tag, blob, sizeof(blob), &blen, &e), &e);
    CHECK(blen == 27 + 12 + 4 + 40 + 16 && blob[0] == 2 &&
          blen == blob_len(BLOB_TYPE_CHILD, sizeof(ct)));
    CHECK_OK(blob_parse(blob, blen, &v, &e), &e);
    CHECK(v.version == 2 && v.type == BLOB_TYPE_CHILD && v.header_len == 27 && v.kcv == blob + 3 &&
          v.salt == blob + 11 && v.iv == blob + 27 && v.ciphertext == blob + 43 &&
          v.ciphertext_len == 40 && v.tag == blob + 83);
    blob_header back;
    blob_view_header(&v, &back);
    CHECK(memcmp(&back, &h, sizeof(h)) == 0);
    CHECK_ERR(blob_parse(blob, 20, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "salt") != NULL);
    memcpy(copy, blob, blen);
    copy[1] = BLOB_TYPE_MASTER;
    CHECK_ERR(blob_parse(copy, blen, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "unknown blob type 1 for format version 2") != NULL);
    h.type = BLOB_TYPE_MASTER;
    CHECK_ERR(blob_encode(&h, fixed_iv, ct, sizeof(ct), tag, blob, sizeof(blob), &blen, &e),
              P11KMS_E_INTERNAL, &e);
}

/* The bound by construction: after the seal limit a CHILD blob gets a new salt, hence a new
 * derived key; blobs under every salt open, in this process and in another (a fresh blob_key of
 * the same key), and version-1 blobs under the parent itself still open. */
static void test_seal_bound(void)
{
    enum { LIMIT = 3, BLOBS = 7 };
    blob_key *k = NULL, *other = NULL;
    REQUIRE(blob_key_new(libctx, key_a, sizeof(key_a), &k, &e) == P11KMS_OK);
    REQUIRE(blob_key_new(libctx, key_a, sizeof(key_a), &other, &e) == P11KMS_OK);
    blob_key_set_seal_limit(k, LIMIT);
    enc_context *ctx = ctx_of("tier=database");
    uint8_t pt[32], blobs[BLOBS][BLOB_MAX_LEN], out[BLOB_MAX_PLAINTEXT];
    size_t lens[BLOBS], olen;
    for (size_t i = 0; i < BLOBS; i++) {
        memset(pt, (int)i, sizeof(pt));
        CHECK_OK(
            blob_child_seal(k, NULL, ctx, pt, sizeof(pt), blobs[i], sizeof(blobs[i]), &lens[i], &e),
            &e);
    }
    for (size_t i = 0; i < BLOBS; i++) {
        for (size_t j = 0; j < BLOBS; j++) {
            bool same_salt = memcmp(blobs[i] + 11, blobs[j] + 11, BLOB_SALT_LEN) == 0;
            CHECK(same_salt == (i / LIMIT == j / LIMIT));
        }
    }
    /* Interleaved salts, opened by both keys (other derives each salt it has not seen). */
    static const size_t order[] = {6, 0, 3, 1, 4, 6, 2, 5, 0};
    for (size_t n = 0; n < sizeof(order) / sizeof(order[0]); n++) {
        size_t i = order[n];
        memset(pt, (int)i, sizeof(pt));
        CHECK_OK(blob_child_open(k, ctx, blobs[i], lens[i], out, sizeof(out), &olen, &e), &e);
        CHECK(olen == 32 && memcmp(out, pt, 32) == 0);
        CHECK_OK(blob_child_open(other, ctx, blobs[i], lens[i], out, sizeof(out), &olen, &e), &e);
        CHECK(olen == 32 && memcmp(out, pt, 32) == 0);
    }
    /* other seals under a salt of its own. */
    size_t l;
    CHECK_OK(blob_child_seal(other, NULL, ctx, pt, 32, blobs[0], sizeof(blobs[0]), &l, &e), &e);
    for (size_t i = 1; i < BLOBS; i++)
        CHECK(memcmp(blobs[0] + 11, blobs[i] + 11, BLOB_SALT_LEN) != 0);
    CHECK_OK(blob_child_open(k, ctx, blobs[0], l, out, sizeof(out), &olen, &e), &e);

    /* A version-1 CHILD blob (sealed under the parent key itself) still opens. */
    blob_header v1 = {
        .version = BLOB_VERSION_1, .type = BLOB_TYPE_CHILD, .alg = BLOB_ALG_AES_256_GCM};
    memcpy(v1.kcv, blob_key_kcv(k), BLOB_KCV_LEN);
    CHECK_OK(blob_key_seal(other, &v1, NULL, ctx, pt, 32, blobs[1], sizeof(blobs[1]), &l, &e), &e);
    CHECK(l == BLOB_OVERHEAD(11) + 32 && blobs[1][0] == 1);
    CHECK_OK(blob_child_open(k, ctx, blobs[1], l, out, sizeof(out), &olen, &e), &e);
    CHECK(olen == 32 && memcmp(out, pt, 32) == 0);

    /* The default bound leaves a factor 4 below the 2^32 random IVs of NIST SP 800-38D. */
    CHECK(BLOB_DERIVED_KEY_SEALS <= (UINT64_C(1) << 32) / 4);
    enc_context_free(ctx);
    blob_key_free(k);
    blob_key_free(other);
}

static void master_header(blob_header *h, uint8_t id_byte, uint32_t version)
{
    memset(h, 0, sizeof(*h));
    h->version = BLOB_VERSION_1;
    h->type = BLOB_TYPE_MASTER;
    h->alg = BLOB_ALG_AES_256_GCM;
    for (int i = 0; i < BLOB_KEY_ID_LEN; i++)
        h->key_id[i] = (uint8_t)(id_byte + i);
    h->key_version = version;
}

static size_t aad_of(const blob_header *h, const enc_context *ctx, uint8_t *out, size_t cap)
{
    uint8_t header[BLOB_HEADER_MAX];
    size_t hlen, len = 0;
    REQUIRE(blob_header_encode(h, header, &hlen, &e) == P11KMS_OK);
    REQUIRE(blob_aad(header, hlen, ctx, out, cap, &len, &e) == P11KMS_OK);
    return len;
}

/* Reads an AAD back into its parts: the constructive proof that AAD construction is injective. */
static bool decode_aad(const uint8_t *aad, size_t len, blob_header *h, enc_context **ctx)
{
    buf_reader r;
    uint8_t version, type, alg;
    uint32_t ctx_len;
    const uint8_t *canon;
    memset(h, 0, sizeof(*h));
    buf_reader_init(&r, aad, len);
    buf_read_u8(&r, &version);
    buf_read_u8(&r, &type);
    buf_read_u8(&r, &alg);
    if (!buf_reader_ok(&r) || (version != 1 && version != 2))
        return false;
    h->version = version;
    h->type = type;
    h->alg = alg;
    if (type == BLOB_TYPE_MASTER) {
        buf_read_bytes(&r, h->key_id, BLOB_KEY_ID_LEN);
        buf_read_u32be(&r, &h->key_version);
    } else if (type == BLOB_TYPE_CHILD) {
        buf_read_bytes(&r, h->kcv, BLOB_KCV_LEN);
        if (version == 2)
            buf_read_bytes(&r, h->salt, BLOB_SALT_LEN);
    } else {
        return false;
    }
    buf_read_u32be(&r, &ctx_len);
    if (!buf_read_ref(&r, ctx_len, &canon) || buf_reader_remaining(&r) != 0)
        return false;
    return enc_context_parse_canonical(canon, ctx_len, ctx, &e) == P11KMS_OK;
}

static void test_master_header_and_aad(void)
{
    /* Header layout and view. */
    blob_header h, back;
    master_header(&h, 0x10, 0x01020304);
    uint8_t header[BLOB_HEADER_MAX];
    size_t hlen;
    CHECK_OK(blob_header_encode(&h, header, &hlen, &e), &e);
    CHECK(hlen == 23 && header[0] == 1 && header[1] == 1 && header[2] == 1 && header[3] == 0x10 &&
          header[18] == 0x1f && memcmp(header + 19, "\x01\x02\x03\x04", 4) == 0);

    uint8_t ct_tag[16 + 16], blob[BLOB_MAX_LEN];
    memset(ct_tag, 0xAB, sizeof(ct_tag));
    size_t blen;
    CHECK_OK(blob_encode(&h, fixed_iv, ct_tag, 16, ct_tag + 16, blob, sizeof(blob), &blen, &e), &e);
    CHECK(blen == 23 + 12 + 4 + 16 + 16 && blen == blob_len(BLOB_TYPE_MASTER, 16));
    blob_view v;
    CHECK_OK(blob_parse(blob, blen, &v, &e), &e);
    CHECK(v.type == BLOB_TYPE_MASTER && v.key_id == blob + 3 && v.key_version == 0x01020304 &&
          v.kcv == NULL && v.header_len == 23 && v.iv == blob + 23 && v.ciphertext == blob + 39 &&
          v.ciphertext_len == 16 && v.tag == blob + 55);
    blob_view_header(&v, &back);
    CHECK(memcmp(&back, &h, sizeof(h)) == 0);

    /* In place: ciphertext and tag already where the blob wants them (a token's output). */
    uint8_t inplace[BLOB_MAX_LEN];
    memset(inplace, 0, sizeof(inplace));
    memcpy(inplace + 39, ct_tag, sizeof(ct_tag));
    size_t ilen;
    CHECK_OK(blob_encode(&h, fixed_iv, inplace + 39, 16, inplace + 55, inplace, sizeof(inplace),
                         &ilen, &e),
             &e);
    CHECK(ilen == blen && memcmp(inplace, blob, blen) == 0);

    /* Truncation inside the MASTER header fields. */
    CHECK_ERR(blob_parse(blob, 10, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "key id") != NULL);
    CHECK_ERR(blob_parse(blob, 21, &v, &e), P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(strstr(e.message, "key version") != NULL);

    /* AAD: the view's header gives the same AAD as the encoded header. */
    CHECK_OK(blob_parse(blob, blen, &v, &e), &e);
    enc_context *ctx = ctx_of("aws:rds:db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QY");
    uint8_t a1[BLOB_AAD_MAX], a2[BLOB_AAD_MAX];
    size_t l1 = aad_of(&h, ctx, a1, sizeof(a1)), l2;
    CHECK_OK(blob_aad(v.header, v.header_len, ctx, a2, sizeof(a2), &l2, &e), &e);
    CHECK(l1 == l2 && memcmp(a1, a2, l1) == 0);
    CHECK(l1 == 23 + 4 + enc_context_serialized_len(ctx));

    /* Changing any key id byte, the version, or the context changes the AAD. */
    for (int i = 0; i < BLOB_KEY_ID_LEN; i++) {
        blob_header h2 = h;
        h2.key_id[i] ^= 0x01;
        l2 = aad_of(&h2, ctx, a2, sizeof(a2));
        CHECK(l1 == l2 && memcmp(a1, a2, l1) != 0);
    }
    static const uint32_t versions[] = {0, 1, 0x01020305, 0x81020304, 0xffffffff};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        blob_header h2 = h;
        h2.key_version = versions[i];
        l2 = aad_of(&h2, ctx, a2, sizeof(a2));
        CHECK(l1 == l2 && memcmp(a1, a2, l1) != 0);
    }
    enc_context *other = ctx_of("aws:rds:db-id=db-CQYSMDPBRZ7BPMH7Y3RTDG5QZ");
    l2 = aad_of(&h, other, a2, sizeof(a2));
    CHECK(l1 == l2 && memcmp(a1, a2, l1) != 0);
    l2 = aad_of(&h, NULL, a2, sizeof(a2));
    CHECK(l2 == 27 && memcmp(a2 + 23, "\0\0\0\0", 4) == 0);
    enc_context_free(other);

    /* blob_aad refuses a malformed header and a small buffer. */
    CHECK_ERR(blob_aad(header, 22, ctx, a2, sizeof(a2), &l2, &e), P11KMS_E_INTERNAL, &e);
    CHECK_ERR(blob_aad(header, 11, ctx, a2, sizeof(a2), &l2, &e), P11KMS_E_INTERNAL, &e);
    uint8_t bad_header[23];
    memcpy(bad_header, header, 23);
    bad_header[0] = 2;
    CHECK_ERR(blob_aad(bad_header, 23, ctx, a2, sizeof(a2), &l2, &e), P11KMS_E_INTERNAL, &e);
    CHECK_ERR(blob_aad(header, 23, ctx, a2, l1 - 1, &l2, &e), P11KMS_E_INTERNAL, &e);
    enc_context_free(ctx);
}

/* Tricky inputs whose bytes could shift between fields must still give distinct AADs, and every
 * AAD must decode back to exactly its inputs. */
static void test_aad_injective(void)
{
    static const char *contexts[] = {
        NULL,
        "a=bc",
        "ab=c",
        "abc=",
        "=abc",
        "a=b,c=d",
        "a=b\x01,c=d",
        "a=b,\x01"
        "c=d",
        "a=,b=",
        "\x01=\x01",
        "x=\x01\x02\x03\x04",
        "x=\x01\x01\x01\x01",
        "k=v",
        "k=v,l=w",
    };
    enum { NCTX = sizeof(contexts) / sizeof(contexts[0]) };
    enc_context *ctx[NCTX];
    for (size_t i = 0; i < NCTX; i++)
        ctx[i] = ctx_of(contexts[i]);

    /* Headers chosen so that header bytes resemble length prefixes and context bytes. */
    blob_header hs[12];
    size_t nh = 0;
    master_header(&hs[nh++], 0x00, 0);
    master_header(&hs[nh++], 0x00, 1);
    master_header(&hs[nh++], 0x00, 0x00010001);
    master_header(&hs[nh++], 0x01, 0);
    /* CHILD headers of both versions; version-2 salts that look like a context length. */
    for (uint8_t version = 1; version <= 2; version++) {
        memset(&hs[nh], 0, sizeof(hs[0]));
        hs[nh].version = version;
        hs[nh].type = BLOB_TYPE_CHILD;
        hs[nh++].alg = 1;
        memset(&hs[nh], 0, sizeof(hs[0]));
        hs[nh].version = version;
        hs[nh].type = BLOB_TYPE_CHILD;
        hs[nh].alg = 1;
        memcpy(hs[nh++].kcv, "\x00\x00\x00\x04\x00\x01\x00\x01", 8);
        memset(&hs[nh], 0, sizeof(hs[0]));
        hs[nh].version = version;
        hs[nh].type = BLOB_TYPE_CHILD;
        hs[nh].alg = 1;
        memcpy(hs[nh++].kcv, "\x00\x00\x00\x00\x00\x00\x00\x01", 8);
    }
    memset(&hs[nh], 0, sizeof(hs[0]));
    hs[nh].version = 2;
    hs[nh].type = BLOB_TYPE_CHILD;
    hs[nh].alg = 1;
    memcpy(hs[nh++].salt, "\x00\x00\x00\x04\x00\x01\x00\x01\x00\x00\x00\x04\x00\x01\x00\x01", 16);

    enum { MAXA = 12 * NCTX };
    static uint8_t aads[MAXA][128];
    size_t lens[MAXA], n = 0;
    for (size_t i = 0; i < nh; i++) {
        for (size_t j = 0; j < NCTX; j++) {
            lens[n] = aad_of(&hs[i], ctx[j], aads[n], sizeof(aads[n]));
            blob_header h;
            enc_context *dec = NULL;
            CHECK(decode_aad(aads[n], lens[n], &h, &dec));
            CHECK(memcmp(&h, &hs[i], sizeof(h)) == 0 && enc_context_equal(dec, ctx[j]));
            enc_context_free(dec);
            n++;
        }
    }
    size_t collisions = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (lens[i] == lens[j] && memcmp(aads[i], aads[j], lens[i]) == 0)
                collisions++;
    CHECK(collisions == 0);
    for (size_t i = 0; i < NCTX; i++)
        enc_context_free(ctx[i]);
}

int main(void)
{
    libctx = OSSL_LIB_CTX_new();
    REQUIRE(libctx != NULL);
    blob_key *a = NULL, *b = NULL;
    REQUIRE(blob_key_new(libctx, key_a, sizeof(key_a), &a, &e) == P11KMS_OK);
    REQUIRE(blob_key_new(libctx, key_b, sizeof(key_b), &b, &e) == P11KMS_OK);

    test_kcv();
    test_round_trips(a);
    test_independent_encryption(a);
    test_bit_flips(a);
    test_wrong_context_and_key(a, b);
    test_parse_errors();
    test_seal_bound();
    test_master_header_and_aad();
    test_aad_injective();

    blob_key_free(a);
    blob_key_free(b);
    OSSL_LIB_CTX_free(libctx);
    return check_finish("format-blob-test");
}
