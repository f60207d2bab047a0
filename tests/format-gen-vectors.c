/* Prints doc/ciphertext-vectors.json: ciphertext blobs computed from fixed inputs (keys, IVs, key
 * ids, versions, contexts, plaintexts), plus damaged blobs that must be refused. Deterministic:
 * same program, same bytes. MASTER blobs are computed with OpenSSL under a known key standing in
 * for a master key version; a token's CKM_AES_GCM gives identical bytes for the same key, IV and
 * AAD. tests/format-vectors-test re-derives and opens every vector. */
#include "config.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"

static OSSL_LIB_CTX *libctx;
static p11kms_error e;

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "format-gen-vectors: %s: %s\n", what, e.message);
    exit(99);
}

static json_object *hex(const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (s == NULL)
        die("out of memory");
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 15];
    }
    s[2 * n] = '\0';
    json_object *o = json_object_new_string(s);
    free(s);
    return o;
}

static void unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (*s == '-')
            s++;
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            die("bad hex constant");
        out[i] = (uint8_t)v;
        s += 2;
    }
}

/* Fixed keys: no meaning beyond being distinct and reproducible. */
#define KEY_MASTER_V1 "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
#define KEY_MASTER_V2 "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define KEY_CLUSTER "4c8ebfe1444ec1b2d503c6986659af2c94fafe96f6c6e6d3c7f0e5de9b3b5f1e"
#define KEY_DATABASE "8d2b5c1e6f0a3947b1e2d3c4a5968778695a4b3c2d1e0f1021324354657687a9"
#define KEY_OTHER "0000000000000000000000000000000000000000000000000000000000000001"
#define KEY_ID "1234abcd-12ab-34cd-56ef-1234567890ab"

typedef struct spec {
    const char *comment;
    uint8_t version;
    uint8_t type;
    const char *key_hex;
    uint32_t key_version; /* MASTER */
    const char *salt_hex; /* CHILD version 2 */
    const char *iv_hex;
    const char *context_json;
    const char *plaintext_hex; /* or NULL: plaintext_len bytes i*31+7 */
    size_t plaintext_len;
} spec;

static const spec specs[] = {
    {"MASTER: RDS per-instance data key under master key version 1", BLOB_VERSION_1,
     BLOB_TYPE_MASTER, KEY_MASTER_V1, 1, NULL, "cafebabefacedbaddecaf888",
     "{\"aws:rds:db-id\":\"db-CQYSMDPBRZ7BPMH7Y3RTDG5QY\"}",
     "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf", 32},
    {"MASTER: Redshift cluster key under master key version 2", BLOB_VERSION_1, BLOB_TYPE_MASTER,
     KEY_MASTER_V2, 2, NULL, "000102030405060708090a0b",
     "{\"aws:redshift:arn\":\"arn:aws:redshift:region:account_ID:cluster:cluster_name\","
     "\"aws:redshift:createtime\":\"20150206T1832Z\"}",
     KEY_CLUSTER, 32},
    {"MASTER: empty context, one byte", BLOB_VERSION_1, BLOB_TYPE_MASTER, KEY_MASTER_V1, 1, NULL,
     "ffffffffffffffffffffffff", "{}", "00", 1},
    {"MASTER: non-ASCII context keys, text plaintext", BLOB_VERSION_1, BLOB_TYPE_MASTER,
     KEY_MASTER_V1, 1, NULL, "1a2b3c4d5e6f708192a3b4c5",
     "{\"\xc3\xa9t\xc3\xa9\":\"summer\",\"\xf0\x9f\x94\x91\":\"key emoji\",\"z\":\"last\"}",
     "48656c6c6f2c207031316b6d7321", 14},
    {"CHILD version 1 (opened, no longer written): database key (tier 3) under the cluster key",
     BLOB_VERSION_1, BLOB_TYPE_CHILD, KEY_CLUSTER, 0, NULL, "0102030405060708090a0b0c",
     "{\"tier\":\"database\",\"database\":\"sales\"}", KEY_DATABASE, 32},
    {"CHILD version 1: block data key (tier 4) under the database key", BLOB_VERSION_1,
     BLOB_TYPE_CHILD, KEY_DATABASE, 0, NULL, "c0c1c2c3c4c5c6c7c8c9cacb",
     "{\"block\":\"0000000000000001\"}",
     "5f4dcc3b5aa765d61d8327deb882cf99b2a4c7e9f1d3a5b7c9e1f3a5b7c9d1e3", 32},
    {"CHILD version 1: empty-string value, one byte", BLOB_VERSION_1, BLOB_TYPE_CHILD, KEY_DATABASE,
     0, NULL, "000000000000000000000000", "{\"purpose\":\"\"}", "ff", 1},
    {"CHILD version 1: 1024-byte plaintext (largest GenerateDataKey), empty context",
     BLOB_VERSION_1, BLOB_TYPE_CHILD, KEY_CLUSTER, 0, NULL, "a1a2a3a4a5a6a7a8a9aaabac", "{}", NULL,
     1024},
    {"CHILD version 2: database key (tier 3) under the cluster key", BLOB_VERSION_2,
     BLOB_TYPE_CHILD, KEY_CLUSTER, 0, "00112233445566778899aabbccddeeff",
     "0102030405060708090a0b0c", "{\"tier\":\"database\",\"database\":\"sales\"}", KEY_DATABASE,
     32},
    {"CHILD version 2: block data key (tier 4) under the database key, same salt as vector 8",
     BLOB_VERSION_2, BLOB_TYPE_CHILD, KEY_DATABASE, 0, "00112233445566778899aabbccddeeff",
     "c0c1c2c3c4c5c6c7c8c9cacb", "{\"block\":\"0000000000000001\"}",
     "5f4dcc3b5aa765d61d8327deb882cf99b2a4c7e9f1d3a5b7c9e1f3a5b7c9d1e3", 32},
    {"CHILD version 2: another salt, same key, IV and context as vector 8", BLOB_VERSION_2,
     BLOB_TYPE_CHILD, KEY_CLUSTER, 0, "ffeeddccbbaa99887766554433221100",
     "0102030405060708090a0b0c", "{\"tier\":\"database\",\"database\":\"sales\"}", KEY_DATABASE,
     32},
    {"CHILD version 2: 1024-byte plaintext (largest GenerateDataKey), empty context",
     BLOB_VERSION_2, BLOB_TYPE_CHILD, KEY_CLUSTER, 0, "000102030405060708090a0b0c0d0e0f",
     "a1a2a3a4a5a6a7a8a9aaabac", "{}", NULL, 1024},
};
enum { NSPECS = sizeof(specs) / sizeof(specs[0]) };

typedef struct built {
    uint8_t key[32];
    enc_context *ctx;
    json_object *ctx_json;
    uint8_t blob[BLOB_MAX_LEN];
    size_t blob_len;
} built;

static json_object *build(const spec *s, built *b)
{
    json_object *v = json_object_new_object();
    uint8_t iv[BLOB_IV_LEN], pt[BLOB_MAX_PLAINTEXT], canon[ENC_CONTEXT_MAX_SERIALIZED];
    uint8_t aad[BLOB_AAD_MAX], header[BLOB_HEADER_MAX];
    size_t canon_len, aad_len, hlen;
    blob_header h = {.version = s->version, .type = s->type, .alg = BLOB_ALG_AES_256_GCM};
    blob_key *k = NULL;

    unhex(s->key_hex, b->key, 32);
    unhex(s->iv_hex, iv, BLOB_IV_LEN);
    if (s->plaintext_hex != NULL) {
        unhex(s->plaintext_hex, pt, s->plaintext_len);
    } else {
        for (size_t i = 0; i < s->plaintext_len; i++)
            pt[i] = (uint8_t)(i * 31 + 7);
    }
    if (enc_context_parse_json(s->context_json, &b->ctx, &e) != P11KMS_OK)
        die("context");
    b->ctx_json = json_tokener_parse(s->context_json);
    if (blob_key_new(libctx, b->key, 32, &k, &e) != P11KMS_OK)
        die("key");
    if (s->type == BLOB_TYPE_MASTER) {
        unhex(KEY_ID, h.key_id, BLOB_KEY_ID_LEN);
        h.key_version = s->key_version;
    } else {
        memcpy(h.kcv, blob_key_kcv(k), BLOB_KCV_LEN);
        if (s->version == BLOB_VERSION_2)
            unhex(s->salt_hex, h.salt, BLOB_SALT_LEN);
    }
    if (blob_key_seal(k, &h, iv, b->ctx, pt, s->plaintext_len, b->blob, sizeof(b->blob),
                      &b->blob_len, &e) != P11KMS_OK ||
        enc_context_serialize(b->ctx, canon, sizeof(canon), &canon_len, &e) != P11KMS_OK ||
        blob_header_encode(&h, header, &hlen, &e) != P11KMS_OK ||
        blob_aad(header, hlen, b->ctx, aad, sizeof(aad), &aad_len, &e) != P11KMS_OK)
        die("seal");

    json_object_object_add(v, "comment", json_object_new_string(s->comment));
    json_object_object_add(v, "version", json_object_new_int(s->version));
    json_object_object_add(
        v, "type", json_object_new_string(s->type == BLOB_TYPE_MASTER ? "MASTER" : "CHILD"));
    json_object_object_add(v, "key_hex", hex(b->key, 32));
    if (s->type == BLOB_TYPE_MASTER) {
        json_object_object_add(v, "key_id", json_object_new_string(KEY_ID));
        json_object_object_add(v, "key_id_hex", hex(h.key_id, BLOB_KEY_ID_LEN));
        json_object_object_add(v, "key_version", json_object_new_int64(s->key_version));
    } else {
        json_object_object_add(v, "kcv_hex", hex(h.kcv, BLOB_KCV_LEN));
        if (s->version == BLOB_VERSION_2) {
            uint8_t derived[BLOB_KEY_LEN];
            json_object_object_add(v, "salt_hex", hex(h.salt, BLOB_SALT_LEN));
            if (blob_derive_child_key(libctx, b->key, h.salt, derived, &e) != P11KMS_OK)
                die("derive");
            json_object_object_add(v, "derived_key_hex", hex(derived, BLOB_KEY_LEN));
        }
    }
    json_object_object_add(v, "iv_hex", hex(iv, BLOB_IV_LEN));
    json_object_object_add(v, "context", json_object_get(b->ctx_json));
    json_object_object_add(v, "context_serialized_hex", hex(canon, canon_len));
    json_object_object_add(v, "plaintext_hex", hex(pt, s->plaintext_len));
    json_object_object_add(v, "aad_hex", hex(aad, aad_len));
    json_object_object_add(v, "blob_hex", hex(b->blob, b->blob_len));
    blob_key_free(k);
    return v;
}

/* A damaged copy of vector `base`; open_key_hex NULL means the vector's own key. */
static json_object *damaged(const built *b, size_t base, const char *comment, const uint8_t *blob,
                            size_t len, const char *context_json, const char *open_key_hex,
                            const char *error)
{
    json_object *v = json_object_new_object();
    uint8_t key[32];
    if (open_key_hex != NULL)
        unhex(open_key_hex, key, 32);
    json_object_object_add(v, "comment", json_object_new_string(comment));
    json_object_object_add(v, "base_vector", json_object_new_int64((int64_t)base));
    json_object_object_add(
        v, "open_as",
        json_object_new_string(specs[base].type == BLOB_TYPE_MASTER ? "MASTER" : "CHILD"));
    json_object_object_add(v, "key_hex", hex(open_key_hex != NULL ? key : b->key, 32));
    json_object_object_add(v, "context",
                           context_json != NULL ? json_tokener_parse(context_json)
                                                : json_object_get(b->ctx_json));
    json_object_object_add(v, "blob_hex", hex(blob, len));
    json_object_object_add(v, "error", json_object_new_string(error));
    return v;
}

static json_object *flip(const built *b, size_t base, const char *comment, size_t at, uint8_t x,
                         const char *error)
{
    uint8_t copy[BLOB_MAX_LEN + 1];
    memcpy(copy, b->blob, b->blob_len);
    copy[at] ^= x;
    return damaged(b, base, comment, copy, b->blob_len, NULL, NULL, error);
}

int main(void)
{
    libctx = OSSL_LIB_CTX_new();
    if (libctx == NULL)
        die("OSSL_LIB_CTX_new");
    static built b[NSPECS];
    json_object *doc = json_object_new_object();
    json_object *vectors = json_object_new_array();
    json_object *invalid = json_object_new_array();
    for (size_t i = 0; i < NSPECS; i++)
        json_object_array_add(vectors, build(&specs[i], &b[i]));

    const char *icx = "InvalidCiphertextException", *ikx = "IncorrectKeyException";
    const size_t m = 0, c = 4, d = 8; /* a MASTER, a CHILD v1 and a CHILD v2 vector to damage */
    size_t clen = b[c].blob_len, dlen = b[d].blob_len;
    uint8_t copy[BLOB_MAX_LEN + 1];
    json_object_array_add(invalid, flip(&b[c], c, "format version 0x03", 0, 0x02, icx));
    json_object_array_add(invalid, flip(&b[c], c, "unknown blob type 0x03", 1, 0x01, icx));
    json_object_array_add(invalid, flip(&b[c], c, "unknown algorithm 0x02", 2, 0x03, icx));
    json_object_array_add(invalid, flip(&b[c], c, "KCV changed: another parent", 3, 0x01, ikx));
    json_object_array_add(invalid, flip(&b[c], c, "IV changed", 11, 0x80, icx));
    json_object_array_add(invalid, flip(&b[c], c, "ciphertext length 0", 26, 32, icx));
    json_object_array_add(invalid, flip(&b[c], c, "ciphertext length 33", 26, 1, icx));
    json_object_array_add(invalid, flip(&b[c], c, "ciphertext bit flipped", 27, 0x01, icx));
    json_object_array_add(invalid, flip(&b[c], c, "tag bit flipped", clen - 1, 0x80, icx));
    json_object_array_add(invalid,
                          damaged(&b[c], c, "last byte cut", b[c].blob, clen - 1, NULL, NULL, icx));
    memcpy(copy, b[c].blob, clen);
    copy[clen] = 0x00;
    json_object_array_add(invalid,
                          damaged(&b[c], c, "one byte appended", copy, clen + 1, NULL, NULL, icx));
    json_object_array_add(invalid,
                          damaged(&b[c], c, "context value differs in case", b[c].blob, clen,
                                  "{\"tier\":\"database\",\"database\":\"Sales\"}", NULL, icx));
    json_object_array_add(invalid, damaged(&b[c], c, "context pair missing", b[c].blob, clen,
                                           "{\"tier\":\"database\"}", NULL, icx));
    json_object_array_add(invalid, damaged(&b[c], c, "opened under another parent key", b[c].blob,
                                           clen, NULL, KEY_OTHER, ikx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: format version 0x03", 0, 0x01, icx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: format version 0x01", 0, 0x03, icx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: KCV changed: another parent", 3, 0x01, ikx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: salt changed", 11, 0x01, icx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: last salt byte changed", 26, 0x80, icx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: IV changed", 27, 0x80, icx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: ciphertext bit flipped", 43, 0x01, icx));
    json_object_array_add(invalid, flip(&b[d], d, "v2: tag bit flipped", dlen - 1, 0x80, icx));
    json_object_array_add(invalid, damaged(&b[d], d, "v2: last byte cut (cut in the salt)",
                                           b[d].blob, 20, NULL, NULL, icx));
    json_object_array_add(invalid, damaged(&b[d], d, "v2: context pair missing", b[d].blob, dlen,
                                           "{\"tier\":\"database\"}", NULL, icx));
    json_object_array_add(invalid, damaged(&b[d], d, "v2: opened under another parent key",
                                           b[d].blob, dlen, NULL, KEY_OTHER, ikx));
    memcpy(copy, b[d].blob, 3);
    copy[0] = BLOB_VERSION_2;
    copy[1] = BLOB_TYPE_MASTER;
    memcpy(copy + 3, b[m].blob + 3, b[m].blob_len - 3);
    json_object_array_add(invalid, damaged(&b[m], m, "MASTER with format version 2 (undefined)",
                                           copy, b[m].blob_len, NULL, NULL, icx));
    json_object_array_add(invalid, flip(&b[m], m, "MASTER: key version changed", 22, 0x02, icx));
    json_object_array_add(invalid, flip(&b[m], m, "MASTER: key id changed", 3, 0x01, icx));
    json_object_array_add(invalid, damaged(&b[m], m, "MASTER: empty context instead of RDS's",
                                           b[m].blob, b[m].blob_len, "{}", NULL, icx));
    json_object_array_add(invalid, damaged(&b[m], m, "MASTER: opened under another key", b[m].blob,
                                           b[m].blob_len, NULL, KEY_MASTER_V2, icx));

    json_object_object_add(
        doc, "description",
        json_object_new_string(
            "p11kms ciphertext blob vectors (format versions 1 and 2), generated by "
            "tests/format-gen-vectors and checked by tests/format-vectors-test; layout in "
            "doc/ciphertext-format.md. Each vector: the wrapping key (key_hex: the master key "
            "version's AES-256 key for MASTER, the opened parent key for CHILD), header fields "
            "(a version-2 CHILD blob adds a salt and is sealed under derived_key_hex = "
            "HKDF-SHA256(key_hex, salt, child_key_info)), "
            "IV, encryption context (JSON and canonical bytes), plaintext, the exact AAD and the "
            "blob. MASTER blobs were computed in software under key_hex; a PKCS#11 token's "
            "CKM_AES_GCM with the same key, IV and AAD gives the same bytes. 'invalid' lists "
            "damaged blobs with the error a reader must return when opening them with key_hex "
            "and context (MASTER ones opened in software, without the key id lookup)."));
    json_object_object_add(doc, "format_version", json_object_new_int(BLOB_VERSION_2));
    json_object_object_add(doc, "kcv_label", json_object_new_string(BLOB_KCV_LABEL));
    json_object_object_add(doc, "child_key_info", json_object_new_string(BLOB_CHILD_KEY_INFO));
    json_object_object_add(doc, "vectors", vectors);
    json_object_object_add(doc, "invalid", invalid);
    fputs(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE),
          stdout);
    fputc('\n', stdout);

    json_object_put(doc);
    for (size_t i = 0; i < NSPECS; i++) {
        enc_context_free(b[i].ctx);
        json_object_put(b[i].ctx_json);
    }
    OSSL_LIB_CTX_free(libctx);
    return fflush(stdout) == 0 ? 0 : 1;
}
