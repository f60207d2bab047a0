/* Re-derives every vector of doc/ciphertext-vectors.json byte for byte (canonical context, KCV,
 * derived key, AAD, blob), recomputes each blob's derived key, ciphertext and tag with bare
 * OpenSSL from the documented inputs, opens every blob (version-1 CHILD blobs, which p11kms no
 * longer writes, included), and checks that every damaged blob is refused with the stated
 * error. */
#include "config.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "lib/check.h"

static OSSL_LIB_CTX *libctx;
static p11kms_error e;

static const char *field(json_object *o, const char *name)
{
    json_object *v;
    REQUIRE(json_object_object_get_ex(o, name, &v));
    return json_object_get_string(v);
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (; *s != '\0'; s += 2) {
        while (*s == '-')
            s++;
        unsigned v;
        REQUIRE(n < cap && sscanf(s, "%2x", &v) == 1);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static bool same(const uint8_t *a, size_t alen, const char *want_hex)
{
    static uint8_t want[BLOB_AAD_MAX];
    size_t n = unhex(want_hex, want, sizeof(want));
    return n == alen && (n == 0 || memcmp(a, want, n) == 0);
}

static blob_key *key_of(json_object *v, uint8_t raw[32])
{
    blob_key *k = NULL;
    REQUIRE(unhex(field(v, "key_hex"), raw, 32) == 32);
    REQUIRE(blob_key_new(libctx, raw, 32, &k, &e) == P11KMS_OK);
    return k;
}

static enc_context *context_of(json_object *v)
{
    json_object *j;
    enc_context *ctx = NULL;
    REQUIRE(json_object_object_get_ex(v, "context", &j));
    REQUIRE(enc_context_from_json_object(j, &ctx, &e) == P11KMS_OK);
    return ctx;
}

/* AES-256-GCM with OpenSSL's default context and nothing from blob.c. */
static void bare_gcm(const uint8_t key[32], const uint8_t *iv, const uint8_t *aad, size_t aad_len,
                     const uint8_t *pt, size_t n, uint8_t *ct, uint8_t tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, fin = 0;
    REQUIRE(c != NULL && EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), key, iv, NULL) &&
            EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) &&
            EVP_EncryptUpdate(c, ct, &outl, pt, (int)n) &&
            EVP_EncryptFinal_ex(c, ct + outl, &fin) &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1);
    EVP_CIPHER_CTX_free(c);
}

/* HKDF-SHA256 with OpenSSL's default context and nothing from blob.c. */
static void bare_hkdf(const uint8_t key[32], const uint8_t salt[BLOB_SALT_LEN], const char *info,
                      uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *c = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string("key", (void *)key, 32),
        OSSL_PARAM_construct_octet_string("salt", (void *)salt, BLOB_SALT_LEN),
        OSSL_PARAM_construct_octet_string("info", (void *)info, strlen(info)),
        OSSL_PARAM_construct_end(),
    };
    REQUIRE(c != NULL && EVP_KDF_derive(c, out, 32, params) == 1);
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
}

static void check_vector(size_t idx, json_object *v, size_t *masters, size_t *children,
                         size_t *children_v2)
{
    static uint8_t canon[ENC_CONTEXT_MAX_SERIALIZED], aad[BLOB_AAD_MAX], want_aad[BLOB_AAD_MAX];
    uint8_t raw[32], iv[BLOB_IV_LEN], pt[BLOB_MAX_PLAINTEXT], out[BLOB_MAX_PLAINTEXT];
    uint8_t blob[BLOB_MAX_LEN], resealed[BLOB_MAX_LEN], header[BLOB_HEADER_MAX];
    uint8_t ct[BLOB_MAX_PLAINTEXT], tag[16], gcm_key[32];
    size_t canon_len, aad_len, hlen, resealed_len, olen;
    int before = check_failures;

    blob_key *k = key_of(v, raw);
    enc_context *ctx = context_of(v);
    size_t blob_len = unhex(field(v, "blob_hex"), blob, sizeof(blob));
    size_t pt_len = unhex(field(v, "plaintext_hex"), pt, sizeof(pt));
    REQUIRE(unhex(field(v, "iv_hex"), iv, sizeof(iv)) == BLOB_IV_LEN);
    size_t want_aad_len = unhex(field(v, "aad_hex"), want_aad, sizeof(want_aad));

    /* The context's canonical bytes. */
    CHECK_OK(enc_context_serialize(ctx, canon, sizeof(canon), &canon_len, &e), &e);
    CHECK(same(canon, canon_len, field(v, "context_serialized_hex")));

    /* The header from the stated fields. */
    blob_header h = {.alg = BLOB_ALG_AES_256_GCM};
    json_object *version;
    REQUIRE(json_object_object_get_ex(v, "version", &version));
    h.version = (uint8_t)json_object_get_int(version);
    memcpy(gcm_key, raw, 32);
    const char *type = field(v, "type");
    if (strcmp(type, "MASTER") == 0) {
        json_object *ver;
        h.type = BLOB_TYPE_MASTER;
        REQUIRE(unhex(field(v, "key_id_hex"), h.key_id, sizeof(h.key_id)) == BLOB_KEY_ID_LEN);
        uint8_t from_text[BLOB_KEY_ID_LEN];
        REQUIRE(unhex(field(v, "key_id"), from_text, sizeof(from_text)) == BLOB_KEY_ID_LEN);
        CHECK(memcmp(from_text, h.key_id, BLOB_KEY_ID_LEN) == 0);
        REQUIRE(json_object_object_get_ex(v, "key_version", &ver));
        h.key_version = (uint32_t)json_object_get_int64(ver);
        (*masters)++;
    } else {
        REQUIRE(strcmp(type, "CHILD") == 0);
        h.type = BLOB_TYPE_CHILD;
        uint8_t kcv[BLOB_KCV_LEN];
        REQUIRE(unhex(field(v, "kcv_hex"), h.kcv, sizeof(h.kcv)) == BLOB_KCV_LEN);
        CHECK_OK(blob_kcv(libctx, raw, 32, kcv, &e), &e);
        CHECK(memcmp(kcv, h.kcv, BLOB_KCV_LEN) == 0 &&
              memcmp(blob_key_kcv(k), h.kcv, BLOB_KCV_LEN) == 0);
        (*children)++;
        if (h.version == BLOB_VERSION_2) {
            /* Sealed under the key derived from the parent and the salt, not the parent. */
            uint8_t derived[32], ours[32];
            REQUIRE(unhex(field(v, "salt_hex"), h.salt, sizeof(h.salt)) == BLOB_SALT_LEN);
            REQUIRE(unhex(field(v, "derived_key_hex"), derived, sizeof(derived)) == 32);
            bare_hkdf(raw, h.salt, BLOB_CHILD_KEY_INFO, gcm_key);
            CHECK(memcmp(gcm_key, derived, 32) == 0);
            CHECK_OK(blob_derive_child_key(libctx, raw, h.salt, ours, &e), &e);
            CHECK(memcmp(ours, derived, 32) == 0);
            (*children_v2)++;
        } else {
            CHECK(h.version == BLOB_VERSION_1);
        }
    }

    /* The AAD. */
    CHECK_OK(blob_header_encode(&h, header, &hlen, &e), &e);
    CHECK_OK(blob_aad(header, hlen, ctx, aad, sizeof(aad), &aad_len, &e), &e);
    CHECK(aad_len == want_aad_len && memcmp(aad, want_aad, aad_len) == 0);

    /* The blob, through blob.c ... */
    CHECK_OK(
        blob_key_seal(k, &h, iv, ctx, pt, pt_len, resealed, sizeof(resealed), &resealed_len, &e),
        &e);
    CHECK(resealed_len == blob_len && memcmp(resealed, blob, blob_len) == 0);
    /* ... and with bare OpenSSL from the documented AAD. */
    bare_gcm(gcm_key, iv, want_aad, want_aad_len, pt, pt_len, ct, tag);
    CHECK(blob_len == hlen + 16 + pt_len + 16);
    CHECK(memcmp(blob, header, hlen) == 0 && memcmp(blob + hlen, iv, BLOB_IV_LEN) == 0);
    CHECK(blob[hlen + 12] == 0 && blob[hlen + 13] == 0 && blob[hlen + 14] == (pt_len >> 8) &&
          blob[hlen + 15] == (pt_len & 0xff));
    CHECK(memcmp(blob + hlen + 16, ct, pt_len) == 0 &&
          CRYPTO_memcmp(blob + hlen + 16 + pt_len, tag, 16) == 0);

    /* Parsed, and opened. */
    blob_view view;
    CHECK_OK(blob_parse(blob, blob_len, &view, &e), &e);
    blob_header from_view;
    blob_view_header(&view, &from_view);
    CHECK(memcmp(&from_view, &h, sizeof(h)) == 0);
    memset(out, 0, sizeof(out));
    if (h.type == BLOB_TYPE_CHILD)
        CHECK_OK(blob_child_open(k, ctx, blob, blob_len, out, sizeof(out), &olen, &e), &e);
    else
        CHECK_OK(blob_key_open(k, &view, ctx, out, sizeof(out), &olen, &e), &e);
    CHECK(olen == pt_len && memcmp(out, pt, pt_len) == 0);

    if (check_failures != before)
        fprintf(stderr, "vector %zu (%s) failed\n", idx, field(v, "comment"));
    enc_context_free(ctx);
    blob_key_free(k);
}

static void check_invalid(size_t idx, json_object *v)
{
    uint8_t raw[32], blob[BLOB_MAX_LEN + 16], out[BLOB_MAX_PLAINTEXT];
    size_t olen = 0;
    blob_key *k = key_of(v, raw);
    enc_context *ctx = context_of(v);
    size_t len = unhex(field(v, "blob_hex"), blob, sizeof(blob));
    p11kms_err rc;
    memset(out, 0xEE, sizeof(out));
    if (strcmp(field(v, "open_as"), "CHILD") == 0) {
        rc = blob_child_open(k, ctx, blob, len, out, sizeof(out), &olen, &e);
    } else {
        blob_view view;
        rc = blob_parse(blob, len, &view, &e);
        if (rc == P11KMS_OK)
            rc = blob_key_open(k, &view, ctx, out, sizeof(out), &olen, &e);
    }
    check_count++;
    bool untouched = true;
    for (size_t i = 0; i < sizeof(out); i++)
        untouched = untouched && out[i] == 0xEE;
    if (rc == P11KMS_OK || strcmp(p11kms_error_class(rc), field(v, "error")) != 0 || !untouched) {
        check_failures++;
        fprintf(stderr, "invalid %zu (%s): got %s (%s), want %s\n", idx, field(v, "comment"),
                p11kms_error_class(rc), e.message, field(v, "error"));
    }
    enc_context_free(ctx);
    blob_key_free(k);
}

int main(void)
{
    char path[4096];
    int n =
        snprintf(path, sizeof(path), "%s/doc/ciphertext-vectors.json", test_env("P11KMS_SRCDIR"));
    REQUIRE(n > 0 && (size_t)n < sizeof(path));
    json_object *doc = json_object_from_file(path);
    REQUIRE(doc != NULL);
    libctx = OSSL_LIB_CTX_new();
    REQUIRE(libctx != NULL);

    json_object *vectors, *invalid, *version, *label, *info;
    REQUIRE(json_object_object_get_ex(doc, "vectors", &vectors));
    REQUIRE(json_object_object_get_ex(doc, "invalid", &invalid));
    REQUIRE(json_object_object_get_ex(doc, "format_version", &version));
    REQUIRE(json_object_object_get_ex(doc, "kcv_label", &label));
    REQUIRE(json_object_object_get_ex(doc, "child_key_info", &info));
    CHECK(json_object_get_int(version) == BLOB_VERSION_2);
    CHECK(strcmp(json_object_get_string(info), BLOB_CHILD_KEY_INFO) == 0);
    CHECK(strcmp(json_object_get_string(label), BLOB_KCV_LABEL) == 0);

    size_t masters = 0, children = 0, children_v2 = 0;
    for (size_t i = 0; i < json_object_array_length(vectors); i++)
        check_vector(i, json_object_array_get_idx(vectors, i), &masters, &children, &children_v2);
    CHECK(masters >= 4 && children - children_v2 >= 4 && children_v2 >= 4);
    for (size_t i = 0; i < json_object_array_length(invalid); i++)
        check_invalid(i, json_object_array_get_idx(invalid, i));
    CHECK(json_object_array_length(invalid) >= 30);

    json_object_put(doc);
    OSSL_LIB_CTX_free(libctx);
    return check_finish("format-vectors-test");
}
