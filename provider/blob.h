/* Ciphertext blob: p11kms's self-describing, versioned wire format for everything it encrypts
 * (doc/ciphertext-format.md describes it byte by byte). All integers unsigned big-endian.
 *
 *   offset  size  field
 *   0       1     format version: 0x01, or 0x02 for CHILD blobs under a derived key
 *   1       1     type: 0x01 MASTER (wrapped in the token by a master key version)
 *                       0x02 CHILD  (wrapped in memory under an opened parent key)
 *   2       1     algorithm: 0x01 AES-256-GCM, 96-bit IV, 128-bit tag
 *   MASTER (version 1):  3   16  key id (binary UUID)
 *                        19  4   key version
 *   CHILD (version 1):   3   8   parent key check value (KCV)
 *   CHILD (version 2):   3   8   parent key check value (KCV)
 *                        11  16  salt: the blob is sealed under HKDF-SHA256(parent, salt)
 *   H       12    IV                  (H, the header length: 23 MASTER, 11 CHILD v1, 27 CHILD v2)
 *   H+12    4     ciphertext length N, 1..4096
 *   H+16    N     ciphertext
 *   H+16+N  16    GCM tag            (ciphertext and tag are contiguous, as C_Decrypt wants them)
 *
 *   AAD = header (H bytes) || u32 length of the canonical context || canonical context
 *
 * p11kms writes MASTER blobs as version 1 and CHILD blobs as version 2; it opens version 1 CHILD
 * blobs as before. Parse failures are P11KMS_E_INVALID_CIPHERTEXT with a message naming the
 * field. */
#ifndef P11KMS_BLOB_H
#define P11KMS_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "enc-context.h"
#include "p11kms-error.h"

#define BLOB_VERSION_1 0x01 /* MASTER blobs; CHILD blobs sealed under the parent key itself */
#define BLOB_VERSION_2                                                                             \
    0x02 /* CHILD blobs sealed under a key derived from the parent and a salt                      \
          */
#define BLOB_TYPE_MASTER 0x01
#define BLOB_TYPE_CHILD 0x02
#define BLOB_ALG_AES_256_GCM 0x01

#define BLOB_KEY_ID_LEN 16
#define BLOB_KCV_LEN 8
#define BLOB_IV_LEN 12
#define BLOB_TAG_LEN 16
#define BLOB_KEY_LEN 32 /* AES-256 */
#define BLOB_SALT_LEN 16
#define BLOB_MAX_PLAINTEXT 4096

#define BLOB_MASTER_HEADER_LEN (3 + BLOB_KEY_ID_LEN + 4)         /* 23 */
#define BLOB_CHILD_V1_HEADER_LEN (3 + BLOB_KCV_LEN)              /* 11 */
#define BLOB_CHILD_HEADER_LEN (3 + BLOB_KCV_LEN + BLOB_SALT_LEN) /* 27, version 2 */
#define BLOB_HEADER_MAX BLOB_CHILD_HEADER_LEN
/* Bytes a blob adds to its plaintext, by header length. */
#define BLOB_OVERHEAD(header_len) ((header_len) + BLOB_IV_LEN + 4 + BLOB_TAG_LEN)
#define BLOB_MAX_LEN (BLOB_OVERHEAD(BLOB_HEADER_MAX) + BLOB_MAX_PLAINTEXT) /* 4155 */
/* Largest AAD: a caller buffer of this size never overflows. */
#define BLOB_AAD_MAX (BLOB_HEADER_MAX + 4 + ENC_CONTEXT_MAX_SERIALIZED)

#define BLOB_KCV_LABEL "p11kms key check value v1"
/* HKDF-SHA256 info of the key a version-2 CHILD blob is sealed under. */
#define BLOB_CHILD_KEY_INFO "p11kms child wrapping key v2"
/* Seals under one derived key before a fresh salt is drawn: 2^30, a quarter of the 2^32 random
 * 96-bit IVs that NIST SP 800-38D allows per key (doc/ciphertext-format.md, section 5). */
#define BLOB_DERIVED_KEY_SEALS (UINT64_C(1) << 30)

/* What the header says; fields of the other type are ignored. */
typedef struct blob_header {
    uint8_t version;                 /* BLOB_VERSION_*; 0 means what p11kms writes for the type */
    uint8_t type;                    /* BLOB_TYPE_* */
    uint8_t alg;                     /* BLOB_ALG_* */
    uint8_t key_id[BLOB_KEY_ID_LEN]; /* MASTER */
    uint32_t key_version;            /* MASTER */
    uint8_t kcv[BLOB_KCV_LEN];       /* CHILD */
    uint8_t salt[BLOB_SALT_LEN];     /* CHILD, version 2 */
} blob_header;

/* A parsed blob: pointers into the parsed bytes, valid as long as they are. */
typedef struct blob_view {
    uint8_t version, type, alg;
    const uint8_t *header; /* the header bytes, first of the AAD */
    size_t header_len;
    const uint8_t *key_id;     /* MASTER, BLOB_KEY_ID_LEN bytes; else NULL */
    uint32_t key_version;      /* MASTER; else 0 */
    const uint8_t *kcv;        /* CHILD, BLOB_KCV_LEN bytes; else NULL */
    const uint8_t *salt;       /* CHILD version 2, BLOB_SALT_LEN bytes; else NULL */
    const uint8_t *iv;         /* BLOB_IV_LEN bytes */
    const uint8_t *ciphertext; /* ciphertext_len bytes, immediately followed by the tag */
    size_t ciphertext_len;
    const uint8_t *tag; /* BLOB_TAG_LEN bytes */
} blob_view;

/* --- layout --------------------------------------------------------------------------------- */

/* The version p11kms writes for a type: 1 for MASTER, 2 for CHILD (0 for an unknown type). */
uint8_t blob_current_version(uint8_t type);
/* Header length of a version and type, 0 for an unknown or undefined combination. */
size_t blob_header_len(uint8_t version, uint8_t type);
/* Whole blob length that p11kms writes for a type and plaintext length (0 for an unknown type). */
size_t blob_len(uint8_t type, size_t plaintext_len);
/* Writes the header bytes (blob_header_len of them) into out. P11KMS_E_INTERNAL for an unknown
 * version, type or algorithm. */
p11kms_err blob_header_encode(const blob_header *h, uint8_t out[BLOB_HEADER_MAX], size_t *len,
                              p11kms_error *err);

/* --- AAD ------------------------------------------------------------------------------------ */

/* Length of the AAD for a header length and context. */
size_t blob_aad_len(size_t header_len, const enc_context *ctx);
/* Writes header || u32 context length || canonical context into out (cap >= blob_aad_len; a
 * buffer of BLOB_AAD_MAX always fits). header is blob_header_encode's output or a view's header.
 * No allocation: this sits on the encrypt and decrypt path. */
p11kms_err blob_aad(const uint8_t *header, size_t header_len, const enc_context *ctx, uint8_t *out,
                    size_t cap, size_t *aad_len, p11kms_error *err);

/* --- whole blobs ---------------------------------------------------------------------------- */

/* Assembles a blob from its parts into out (cap >= blob_len). ct and tag may already lie at their
 * final place in out, e.g. a token's C_Encrypt output written at offset header_len + 16.
 * P11KMS_E_VALIDATION when ct_len is not 1..BLOB_MAX_PLAINTEXT. */
p11kms_err blob_encode(const blob_header *h, const uint8_t iv[BLOB_IV_LEN], const uint8_t *ct,
                       size_t ct_len, const uint8_t tag[BLOB_TAG_LEN], uint8_t *out, size_t cap,
                       size_t *len, p11kms_error *err);
/* Parses and checks the framing (version, type, algorithm, lengths, nothing trailing).
 * P11KMS_E_INVALID_CIPHERTEXT with the reason. */
P11KMS_MUST_CHECK p11kms_err blob_parse(const uint8_t *blob, size_t len, blob_view *out,
                                        p11kms_error *err);
/* The header fields of a parsed blob. */
void blob_view_header(const blob_view *v, blob_header *out);

/* --- in-memory keys (CHILD blobs; MASTER blobs in software for vectors and tests) ------------ */

/* Key check value: first 8 bytes of HMAC-SHA256(key, BLOB_KCV_LABEL). Identifies a parent key
 * without revealing it. */
p11kms_err blob_kcv(OSSL_LIB_CTX *libctx, const uint8_t *key, size_t key_len,
                    uint8_t out[BLOB_KCV_LEN], p11kms_error *err);

/* The key a version-2 CHILD blob under `key` with this salt is sealed under:
 * HKDF-SHA256(IKM = key, salt, info = BLOB_CHILD_KEY_INFO), BLOB_KEY_LEN bytes. For vectors and
 * tests; blob_key derives (and keeps) these keys itself. */
p11kms_err blob_derive_child_key(OSSL_LIB_CTX *libctx, const uint8_t key[BLOB_KEY_LEN],
                                 const uint8_t salt[BLOB_SALT_LEN], uint8_t out[BLOB_KEY_LEN],
                                 p11kms_error *err);

/* An AES-256 key ready for sealing and opening: the cipher and HKDF fetched once, the KCV
 * computed once, the key bytes (and the keys derived from them) in the secure heap. One thread
 * at a time: give each thread its own blob_key, or a lock.
 *
 * Version-2 CHILD blobs are sealed under HKDF-SHA256(key, salt, BLOB_CHILD_KEY_INFO), never under
 * the key itself: blob_child_seal draws a random salt, derives the sealing key once and uses it
 * for at most BLOB_DERIVED_KEY_SEALS blobs, then draws a new salt. The bound on any one AES key
 * thus holds by construction, however long the parent lives or however often it is opened. */
typedef struct blob_key blob_key;

/* key_len must be BLOB_KEY_LEN. libctx is kept (not owned) for the key's lifetime. */
p11kms_err blob_key_new(OSSL_LIB_CTX *libctx, const uint8_t *key, size_t key_len, blob_key **out,
                        p11kms_error *err);
void blob_key_free(blob_key *k);
const uint8_t *blob_key_kcv(const blob_key *k); /* BLOB_KCV_LEN bytes */

/* Seals plaintext (1..BLOB_MAX_PLAINTEXT bytes) under k with header h and context ctx into out
 * (cap >= blob_len(h->type, pt_len)): under k itself, or for a version-2 CHILD header under the
 * key derived from k and h->salt (not counted against the seal bound: this is for vectors and
 * tests; the service seals CHILD blobs with blob_child_seal). iv NULL draws a random IV from
 * libctx's DRBG; a given iv is for test vectors. No check that h names k. */
p11kms_err blob_key_seal(blob_key *k, const blob_header *h, const uint8_t *iv,
                         const enc_context *ctx, const uint8_t *pt, size_t pt_len, uint8_t *out,
                         size_t cap, size_t *len, p11kms_error *err);
/* Opens a parsed blob of any type under k, or under the key derived from k and the blob's salt
 * for a version-2 CHILD blob (no check of key id or KCV: the caller chose k).
 * Writes plaintext to out (cap >= v->ciphertext_len) only after the tag verified.
 * P11KMS_E_INVALID_CIPHERTEXT when the tag does not verify (wrong key, context or bytes). */
P11KMS_MUST_CHECK p11kms_err blob_key_open(blob_key *k, const blob_view *v, const enc_context *ctx,
                                           uint8_t *out, size_t cap, size_t *pt_len,
                                           p11kms_error *err);

/* A version-2 CHILD blob under the opened parent key: parent's KCV, the current salt, sealed under
 * the key derived from them; a new salt (and key) after BLOB_DERIVED_KEY_SEALS seals. */
p11kms_err blob_child_seal(blob_key *parent, const uint8_t *iv, const enc_context *ctx,
                           const uint8_t *pt, size_t pt_len, uint8_t *out, size_t cap, size_t *len,
                           p11kms_error *err);
/* Test hook: draw a new salt after `seals` seals instead of BLOB_DERIVED_KEY_SEALS (1 to that). */
void blob_key_set_seal_limit(blob_key *k, uint64_t seals);

/* Parses blob (version 1 or 2), refuses anything but a CHILD blob of this parent
 * (P11KMS_E_INCORRECT_KEY when the KCV is another key's, or the blob is a MASTER blob), then opens
 * it as blob_key_open does. */
P11KMS_MUST_CHECK p11kms_err blob_child_open(blob_key *parent, const enc_context *ctx,
                                             const uint8_t *blob, size_t len, uint8_t *out,
                                             size_t cap, size_t *pt_len, p11kms_error *err);

#endif
