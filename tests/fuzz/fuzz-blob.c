/* Fuzz target: the ciphertext blob parser (doc/ciphertext-format.md) and blob opening.
 *
 * Input: one byte choosing the opening key (the keys of doc/ciphertext-vectors.json), a u16
 * big-endian length and that many bytes of canonical encryption context, then the blob. The
 * seeds are the vectors themselves, so the fuzzer starts from blobs that open.
 *
 * Invariants: a parsed blob re-encodes to exactly its input (one encoding per blob) and has the
 * length its type and ciphertext length imply; a refusal is InvalidCiphertext with a message; a
 * blob that opens re-seals, with its IV, header and context, to exactly its input; a CHILD blob
 * opens under its parent only when the KCV is the parent's. */
#include "config.h"

#include <openssl/crypto.h>
#include <string.h>

#include "blob.h"
#include "fuzz.h"

static const uint8_t keys[][BLOB_KEY_LEN] = {
    {0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae,
     0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61,
     0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4},
    {0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f,
     0x94, 0x67, 0x30, 0x83, 0x08, 0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65,
     0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08},
    {0x4c, 0x8e, 0xbf, 0xe1, 0x44, 0x4e, 0xc1, 0xb2, 0xd5, 0x03, 0xc6,
     0x98, 0x66, 0x59, 0xaf, 0x2c, 0x94, 0xfa, 0xfe, 0x96, 0xf6, 0xc6,
     0xe6, 0xd3, 0xc7, 0xf0, 0xe5, 0xde, 0x9b, 0x3b, 0x5f, 0x1e},
    {0x8d, 0x2b, 0x5c, 0x1e, 0x6f, 0x0a, 0x39, 0x47, 0xb1, 0xe2, 0xd3,
     0xc4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e,
     0x0f, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0xa9},
};
#define KEY_COUNT (sizeof(keys) / sizeof(keys[0]))

static blob_key *opened[KEY_COUNT];

/* Key schedules are set up once per process: libFuzzer calls the target millions of times. */
static blob_key *key_for(uint8_t selector)
{
    size_t i = selector % KEY_COUNT;
    if (opened[i] == NULL) {
        p11kms_error err = {0};
        FUZZ_ASSERT(blob_key_new(NULL, keys[i], BLOB_KEY_LEN, &opened[i], &err) == P11KMS_OK);
    }
    return opened[i];
}

static void check_parsed(const uint8_t *blob, size_t len, const blob_view *v)
{
    FUZZ_ASSERT((v->version == BLOB_VERSION_1 || v->version == BLOB_VERSION_2) &&
                v->alg == BLOB_ALG_AES_256_GCM);
    FUZZ_ASSERT(v->header == blob && v->header_len == blob_header_len(v->version, v->type));
    FUZZ_ASSERT(v->ciphertext_len >= 1 && v->ciphertext_len <= BLOB_MAX_PLAINTEXT);
    FUZZ_ASSERT(len == BLOB_OVERHEAD(v->header_len) + v->ciphertext_len && len <= BLOB_MAX_LEN);
    FUZZ_ASSERT(v->version == blob_current_version(v->type) ||
                len == blob_len(v->type, v->ciphertext_len) - BLOB_SALT_LEN);
    FUZZ_ASSERT((v->type == BLOB_TYPE_MASTER) == (v->key_id != NULL));
    FUZZ_ASSERT((v->type == BLOB_TYPE_CHILD) == (v->kcv != NULL));
    FUZZ_ASSERT((v->type == BLOB_TYPE_CHILD && v->version == BLOB_VERSION_2) == (v->salt != NULL));
    FUZZ_ASSERT(v->iv == blob + v->header_len);
    FUZZ_ASSERT(v->ciphertext == v->iv + BLOB_IV_LEN + 4);
    FUZZ_ASSERT(v->tag == v->ciphertext + v->ciphertext_len && v->tag + BLOB_TAG_LEN == blob + len);

    /* Round trip: header fields -> header bytes, parts -> whole blob, byte for byte. */
    blob_header h;
    blob_view_header(v, &h);
    uint8_t header[BLOB_HEADER_MAX];
    size_t hlen = 0;
    p11kms_error err = {0};
    FUZZ_ASSERT(blob_header_encode(&h, header, &hlen, &err) == P11KMS_OK);
    FUZZ_ASSERT(hlen == v->header_len && memcmp(header, blob, hlen) == 0);
    uint8_t *out = malloc(len);
    FUZZ_ASSERT(out != NULL);
    size_t out_len = 0;
    FUZZ_ASSERT(blob_encode(&h, v->iv, v->ciphertext, v->ciphertext_len, v->tag, out, len, &out_len,
                            &err) == P11KMS_OK);
    FUZZ_ASSERT(out_len == len && memcmp(out, blob, len) == 0);
    /* One byte short is refused, not overrun. */
    FUZZ_ASSERT(blob_encode(&h, v->iv, v->ciphertext, v->ciphertext_len, v->tag, out, len - 1,
                            &out_len, &err) != P11KMS_OK);
    free(out);
}

static void check_open(blob_key *k, const enc_context *ctx, const uint8_t *blob, size_t len,
                       const blob_view *v)
{
    uint8_t pt[BLOB_MAX_PLAINTEXT];
    size_t pt_len = 0;
    p11kms_error err = {0};
    p11kms_err rc = blob_key_open(k, v, ctx, pt, sizeof(pt), &pt_len, &err);
    if (v->type == BLOB_TYPE_CHILD) {
        size_t child_len = 0;
        uint8_t child_pt[BLOB_MAX_PLAINTEXT];
        p11kms_err crc =
            blob_child_open(k, ctx, blob, len, child_pt, sizeof(child_pt), &child_len, &err);
        bool same_kcv = CRYPTO_memcmp(v->kcv, blob_key_kcv(k), BLOB_KCV_LEN) == 0;
        if (!same_kcv)
            FUZZ_ASSERT(crc == P11KMS_E_INCORRECT_KEY);
        else
            FUZZ_ASSERT(crc == rc);
        if (crc == P11KMS_OK)
            FUZZ_ASSERT(child_len == pt_len && memcmp(child_pt, pt, pt_len) == 0);
    }
    if (rc != P11KMS_OK) {
        FUZZ_ASSERT(rc == P11KMS_E_INVALID_CIPHERTEXT);
        return;
    }
    FUZZ_ASSERT(pt_len == v->ciphertext_len);
    /* The blob is what sealing this plaintext with its IV gives: GCM is deterministic. */
    blob_header h;
    blob_view_header(v, &h);
    uint8_t *again = malloc(len);
    FUZZ_ASSERT(again != NULL);
    size_t again_len = 0;
    FUZZ_ASSERT(blob_key_seal(k, &h, v->iv, ctx, pt, pt_len, again, len, &again_len, &err) ==
                P11KMS_OK);
    FUZZ_ASSERT(again_len == len && memcmp(again, blob, len) == 0);
    free(again);
    OPENSSL_cleanse(pt, sizeof(pt));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    blob_key *k = key_for(data[0]);
    size_t ctx_len = (size_t)data[1] << 8 | data[2];
    if (ctx_len > size - 3)
        return 0;
    enc_context *ctx = NULL;
    p11kms_error err = {0};
    if (enc_context_parse_canonical(data + 3, ctx_len, &ctx, &err) != P11KMS_OK)
        ctx = NULL; /* the empty context: the blob is still parsed */
    const uint8_t *blob = data + 3 + ctx_len;
    size_t len = size - 3 - ctx_len;

    /* An exact-size copy, so that a read past the blob is caught even inside the input. */
    uint8_t *copy = malloc(len > 0 ? len : 1);
    FUZZ_ASSERT(copy != NULL);
    memcpy(copy, blob, len);
    blob_view v;
    p11kms_err rc = blob_parse(copy, len, &v, &err);
    if (rc == P11KMS_OK) {
        check_parsed(copy, len, &v);
        uint8_t aad[BLOB_AAD_MAX];
        size_t aad_len = 0;
        FUZZ_ASSERT(blob_aad(v.header, v.header_len, ctx, aad, sizeof(aad), &aad_len, &err) ==
                    P11KMS_OK);
        FUZZ_ASSERT(aad_len == blob_aad_len(v.header_len, ctx) && aad_len <= BLOB_AAD_MAX);
        check_open(k, ctx, copy, len, &v);
    } else {
        FUZZ_ASSERT(rc == P11KMS_E_INVALID_CIPHERTEXT && err.message[0] != '\0');
        /* Opening goes through the same parser: the blob is refused there too. */
        uint8_t pt[BLOB_MAX_PLAINTEXT];
        size_t pt_len = 0;
        FUZZ_ASSERT(blob_child_open(k, ctx, copy, len, pt, sizeof(pt), &pt_len, &err) ==
                    P11KMS_E_INVALID_CIPHERTEXT);
    }
    free(copy);
    enc_context_free(ctx);
    return 0;
}
