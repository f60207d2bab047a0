#include "config.h"

#include "blob.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ivbuf.h"

_Static_assert(IVBUF_IV_LEN == BLOB_IV_LEN, "blob IVs come from ivbuf");

/* --- layout --------------------------------------------------------------------------------- */

uint8_t blob_current_version(uint8_t type)
{
    switch (type) {
    case BLOB_TYPE_MASTER:
        return BLOB_VERSION_1;
    case BLOB_TYPE_CHILD:
        return BLOB_VERSION_2;
    default:
        return 0;
    }
}

size_t blob_header_len(uint8_t version, uint8_t type)
{
    if (version == BLOB_VERSION_1 && type == BLOB_TYPE_MASTER)
        return BLOB_MASTER_HEADER_LEN;
    if (version == BLOB_VERSION_1 && type == BLOB_TYPE_CHILD)
        return BLOB_CHILD_V1_HEADER_LEN;
    if (version == BLOB_VERSION_2 && type == BLOB_TYPE_CHILD)
        return BLOB_CHILD_HEADER_LEN;
    return 0; /* version 2 defines no MASTER layout: master keys count their encryptions */
}

size_t blob_len(uint8_t type, size_t plaintext_len)
{
    size_t h = blob_header_len(blob_current_version(type), type);
    return h != 0 ? BLOB_OVERHEAD(h) + plaintext_len : 0;
}

p11kms_err blob_header_encode(const blob_header *h, uint8_t out[BLOB_HEADER_MAX], size_t *len,
                              p11kms_error *err)
{
    uint8_t version = h->version != 0 ? h->version : blob_current_version(h->type);
    if (blob_header_len(version, h->type) == 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: unknown blob type 0x%02x (version %u)",
                            h->type, version);
    if (h->alg != BLOB_ALG_AES_256_GCM)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: unknown algorithm 0x%02x", h->alg);
    buf_writer w;
    buf_writer_init(&w, out, BLOB_HEADER_MAX);
    buf_write_u8(&w, version);
    buf_write_u8(&w, h->type);
    buf_write_u8(&w, h->alg);
    if (h->type == BLOB_TYPE_MASTER) {
        buf_write_bytes(&w, h->key_id, BLOB_KEY_ID_LEN);
        buf_write_u32be(&w, h->key_version);
    } else {
        buf_write_bytes(&w, h->kcv, BLOB_KCV_LEN);
        if (version == BLOB_VERSION_2)
            buf_write_bytes(&w, h->salt, BLOB_SALT_LEN);
    }
    *len = buf_writer_len(&w); /* cannot overflow: BLOB_HEADER_MAX is the larger header */
    return P11KMS_OK;
}

/* --- AAD ------------------------------------------------------------------------------------ */

size_t blob_aad_len(size_t header_len, const enc_context *ctx)
{
    return header_len + 4 + enc_context_serialized_len(ctx);
}

p11kms_err blob_aad(const uint8_t *header, size_t header_len, const enc_context *ctx, uint8_t *out,
                    size_t cap, size_t *aad_len, p11kms_error *err)
{
    /* Only a well-formed header keeps the AAD unambiguous (see doc/ciphertext-format.md). */
    if (header == NULL || header_len < 3 || blob_header_len(header[0], header[1]) != header_len)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: AAD built from a malformed header");
    buf_writer w;
    buf_writer_init(&w, out, cap);
    buf_write_bytes(&w, header, header_len);
    buf_write_u32be(&w, (uint32_t)enc_context_serialized_len(ctx));
    if (!enc_context_write(ctx, &w))
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "blob: AAD buffer of %zu bytes too small for %zu", cap,
                            buf_writer_len(&w));
    *aad_len = buf_writer_len(&w);
    return P11KMS_OK;
}

/* --- whole blobs ---------------------------------------------------------------------------- */

static p11kms_err check_plaintext_len(size_t n, p11kms_error *err)
{
    if (n == 0 || n > BLOB_MAX_PLAINTEXT)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "blob: plaintext of %zu bytes, must be 1 to %d bytes", n,
                            BLOB_MAX_PLAINTEXT);
    return P11KMS_OK;
}

p11kms_err blob_encode(const blob_header *h, const uint8_t iv[BLOB_IV_LEN], const uint8_t *ct,
                       size_t ct_len, const uint8_t tag[BLOB_TAG_LEN], uint8_t *out, size_t cap,
                       size_t *len, p11kms_error *err)
{
    uint8_t header[BLOB_HEADER_MAX];
    size_t hlen;
    p11kms_err rc = blob_header_encode(h, header, &hlen, err);
    if (rc != P11KMS_OK || (rc = check_plaintext_len(ct_len, err)) != P11KMS_OK)
        return rc;
    buf_writer w;
    buf_writer_init(&w, out, cap);
    buf_write_bytes(&w, header, hlen);
    buf_write_bytes(&w, iv, BLOB_IV_LEN);
    buf_write_u32be(&w, (uint32_t)ct_len);
    buf_write_bytes(&w, ct, ct_len);
    if (!buf_write_bytes(&w, tag, BLOB_TAG_LEN))
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: buffer of %zu bytes too small for %zu",
                            cap, buf_writer_len(&w));
    *len = buf_writer_len(&w);
    return P11KMS_OK;
}

static p11kms_err invalid(p11kms_error *err, const char *what)
{
    return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT, "ciphertext blob: truncated in the %s",
                        what);
}

p11kms_err blob_parse(const uint8_t *blob, size_t len, blob_view *v, p11kms_error *err)
{
    memset(v, 0, sizeof(*v));
    buf_reader r;
    buf_reader_init(&r, blob, len);
    if (!buf_read_u8(&r, &v->version))
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT, "ciphertext blob: empty");
    if (v->version != BLOB_VERSION_1 && v->version != BLOB_VERSION_2)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext blob: unknown format version %u", v->version);
    if (!buf_read_u8(&r, &v->type))
        return invalid(err, "blob type");
    v->header_len = blob_header_len(v->version, v->type);
    if (v->header_len == 0)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext blob: unknown blob type %u for format version %u", v->type,
                            v->version);
    if (!buf_read_u8(&r, &v->alg))
        return invalid(err, "algorithm");
    if (v->alg != BLOB_ALG_AES_256_GCM)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext blob: unknown algorithm %u", v->alg);
    if (v->type == BLOB_TYPE_MASTER) {
        if (!buf_read_ref(&r, BLOB_KEY_ID_LEN, &v->key_id))
            return invalid(err, "key id");
        if (!buf_read_u32be(&r, &v->key_version))
            return invalid(err, "key version");
    } else {
        if (!buf_read_ref(&r, BLOB_KCV_LEN, &v->kcv))
            return invalid(err, "parent key check value");
        if (v->version == BLOB_VERSION_2 && !buf_read_ref(&r, BLOB_SALT_LEN, &v->salt))
            return invalid(err, "salt");
    }
    v->header = blob;
    if (!buf_read_ref(&r, BLOB_IV_LEN, &v->iv))
        return invalid(err, "IV");
    uint32_t n;
    if (!buf_read_u32be(&r, &n))
        return invalid(err, "ciphertext length");
    if (n == 0 || n > BLOB_MAX_PLAINTEXT)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext blob: ciphertext length %u outside 1..%d", n,
                            BLOB_MAX_PLAINTEXT);
    size_t left = buf_reader_remaining(&r);
    if (!buf_read_ref(&r, n, &v->ciphertext))
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext blob: truncated in the ciphertext (%u bytes declared, %zu "
                            "present)",
                            n, left);
    v->ciphertext_len = n;
    if (!buf_read_ref(&r, BLOB_TAG_LEN, &v->tag))
        return invalid(err, "tag");
    if (buf_reader_remaining(&r) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                            "ciphertext blob: length mismatch: %zu bytes after the tag",
                            buf_reader_remaining(&r));
    return P11KMS_OK;
}

void blob_view_header(const blob_view *v, blob_header *out)
{
    memset(out, 0, sizeof(*out));
    out->version = v->version;
    out->type = v->type;
    out->alg = v->alg;
    if (v->key_id != NULL)
        memcpy(out->key_id, v->key_id, BLOB_KEY_ID_LEN);
    out->key_version = v->key_version;
    if (v->kcv != NULL)
        memcpy(out->kcv, v->kcv, BLOB_KCV_LEN);
    if (v->salt != NULL)
        memcpy(out->salt, v->salt, BLOB_SALT_LEN);
}

/* --- key check value ------------------------------------------------------------------------ */

p11kms_err blob_kcv(OSSL_LIB_CTX *libctx, const uint8_t *key, size_t key_len,
                    uint8_t out[BLOB_KCV_LEN], p11kms_error *err)
{
    static const char label[] = BLOB_KCV_LABEL;
    uint8_t mac[32];
    size_t mac_len = 0;
    p11kms_err rc = P11KMS_OK;
    EVP_MAC *hmac = EVP_MAC_fetch(libctx, "HMAC", NULL);
    EVP_MAC_CTX *mctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (key == NULL || key_len == 0)
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key check value: empty key");
    else if (mctx == NULL || !EVP_MAC_init(mctx, key, key_len, params) ||
             !EVP_MAC_update(mctx, (const unsigned char *)label, sizeof(label) - 1) ||
             !EVP_MAC_final(mctx, mac, &mac_len, sizeof(mac)) || mac_len != sizeof(mac)) {
        ERR_clear_error();
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key check value: HMAC-SHA256 failed");
    } else {
        memcpy(out, mac, BLOB_KCV_LEN);
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(hmac);
    return rc;
}

/* --- in-memory keys ------------------------------------------------------------------------- */

#define AAD_INLINE 512 /* covers every context the hierarchy uses without touching the heap */

/* The key bytes live only in OpenSSL's secure heap (locked, excluded from core dumps). Each seal
 * or open builds its AES-GCM context from them and frees it (which cleanses the key schedule)
 * before returning: OpenSSL allocates cipher contexts on the ordinary heap, so a context kept
 * for the key's lifetime would leave the key schedule in dumpable, swappable memory for hours.
 * The cost, measured by figure 4 of tests/bench, is in doc/BENCHMARKS.md.
 *
 * Beside the key itself the secure block holds two derived keys: the one version-2 CHILD blobs
 * are sealed under now (seal_salt), and the last other one a blob was opened or sealed under
 * (other_salt), so that unwrapping many children of another open costs one derivation. */
enum { SECRET_KEY = 0, SECRET_SEAL = BLOB_KEY_LEN, SECRET_OTHER = 2 * BLOB_KEY_LEN };
#define SECRET_LEN (3 * BLOB_KEY_LEN)

struct blob_key {
    OSSL_LIB_CTX *libctx;
    EVP_CIPHER *cipher;
    EVP_KDF *hkdf;
    uint8_t *secret; /* SECRET_LEN bytes in the secure heap */
    uint8_t kcv[BLOB_KCV_LEN];
    bool seal_ready, other_ready;
    uint8_t seal_salt[BLOB_SALT_LEN], other_salt[BLOB_SALT_LEN];
    uint64_t seals, seal_limit; /* blobs sealed under the current seal salt, and the bound */
    uint8_t child_header[BLOB_CHILD_HEADER_LEN]; /* version 2, with the current seal salt */
    uint8_t *aad; /* aad_inline, or a heap buffer once a larger context was seen */
    size_t aad_cap;
    uint8_t aad_inline[AAD_INLINE];
};

void blob_key_free(blob_key *k)
{
    if (k == NULL)
        return;
    OPENSSL_secure_clear_free(k->secret, SECRET_LEN);
    EVP_CIPHER_free(k->cipher);
    EVP_KDF_free(k->hkdf);
    if (k->aad != k->aad_inline)
        free(k->aad);
    free(k);
}

p11kms_err blob_key_new(OSSL_LIB_CTX *libctx, const uint8_t *key, size_t key_len, blob_key **out,
                        p11kms_error *err)
{
    *out = NULL;
    if (key == NULL || key_len != BLOB_KEY_LEN)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "blob key: %zu-byte key, AES-256 needs %d",
                            key != NULL ? key_len : 0, BLOB_KEY_LEN);
    blob_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "blob key: out of memory");
    k->libctx = libctx;
    k->aad = k->aad_inline;
    k->aad_cap = sizeof(k->aad_inline);
    k->seal_limit = BLOB_DERIVED_KEY_SEALS;
    p11kms_err rc = blob_kcv(libctx, key, key_len, k->kcv, err);
    if (rc == P11KMS_OK) {
        k->cipher = EVP_CIPHER_fetch(libctx, "AES-256-GCM", NULL);
        k->hkdf = EVP_KDF_fetch(libctx, "HKDF", NULL);
        k->secret = OPENSSL_secure_zalloc(SECRET_LEN);
        if (k->secret != NULL)
            memcpy(k->secret + SECRET_KEY, key, BLOB_KEY_LEN);
        if (k->cipher == NULL || k->hkdf == NULL || k->secret == NULL) {
            ERR_clear_error();
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob key: cannot set up AES-256-GCM");
        }
    }
    if (rc != P11KMS_OK) {
        blob_key_free(k);
        return rc;
    }
    *out = k;
    return P11KMS_OK;
}

const uint8_t *blob_key_kcv(const blob_key *k)
{
    return k->kcv;
}

void blob_key_set_seal_limit(blob_key *k, uint64_t seals)
{
    k->seal_limit = seals >= 1 && seals <= BLOB_DERIVED_KEY_SEALS ? seals : BLOB_DERIVED_KEY_SEALS;
}

/* out = HKDF-SHA256(IKM = key, salt, info = BLOB_CHILD_KEY_INFO), BLOB_KEY_LEN bytes. */
static p11kms_err hkdf(EVP_KDF *kdf, const uint8_t *key, const uint8_t salt[BLOB_SALT_LEN],
                       uint8_t *out, p11kms_error *err)
{
    static const char info[] = BLOB_CHILD_KEY_INFO;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, BLOB_KEY_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, BLOB_SALT_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof(info) - 1),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    bool ok = kctx != NULL && EVP_KDF_derive(kctx, out, BLOB_KEY_LEN, params) == 1;
    EVP_KDF_CTX_free(kctx); /* cleanses the pseudorandom key */
    if (!ok) {
        ERR_clear_error();
        OPENSSL_cleanse(out, BLOB_KEY_LEN);
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: HKDF-SHA256 failed");
    }
    return P11KMS_OK;
}

static p11kms_err derive(blob_key *k, const uint8_t salt[BLOB_SALT_LEN], uint8_t *out,
                         p11kms_error *err)
{
    return hkdf(k->hkdf, k->secret + SECRET_KEY, salt, out, err);
}

p11kms_err blob_derive_child_key(OSSL_LIB_CTX *libctx, const uint8_t key[BLOB_KEY_LEN],
                                 const uint8_t salt[BLOB_SALT_LEN], uint8_t out[BLOB_KEY_LEN],
                                 p11kms_error *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(libctx, "HKDF", NULL);
    p11kms_err rc = hkdf(kdf, key, salt, out, err);
    EVP_KDF_free(kdf);
    return rc;
}

/* The AES key a blob with this (well-formed) header is sealed under: the key itself, or for a
 * version-2 CHILD header the key derived from the header's salt, from a slot or derived now. */
static p11kms_err key_for_header(blob_key *k, const uint8_t *header, const uint8_t **key,
                                 p11kms_error *err)
{
    if (header[0] != BLOB_VERSION_2 || header[1] != BLOB_TYPE_CHILD) {
        *key = k->secret + SECRET_KEY;
        return P11KMS_OK;
    }
    const uint8_t *salt = header + 3 + BLOB_KCV_LEN;
    if (k->seal_ready && memcmp(salt, k->seal_salt, BLOB_SALT_LEN) == 0) {
        *key = k->secret + SECRET_SEAL;
        return P11KMS_OK;
    }
    if (!k->other_ready || memcmp(salt, k->other_salt, BLOB_SALT_LEN) != 0) {
        k->other_ready = false;
        p11kms_err rc = derive(k, salt, k->secret + SECRET_OTHER, err);
        if (rc != P11KMS_OK)
            return rc;
        memcpy(k->other_salt, salt, BLOB_SALT_LEN);
        k->other_ready = true;
    }
    *key = k->secret + SECRET_OTHER;
    return P11KMS_OK;
}

/* Makes sure the current sealing key may seal one more blob: a fresh salt and key when there is
 * none yet or the current one reached its bound. Counts the seal. */
static p11kms_err take_seal(blob_key *k, p11kms_error *err)
{
    if (!k->seal_ready || k->seals >= k->seal_limit) {
        k->seal_ready = false;
        if (RAND_bytes_ex(k->libctx, k->seal_salt, BLOB_SALT_LEN, 0) != 1) {
            ERR_clear_error();
            return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: no random salt from the DRBG");
        }
        p11kms_err rc = derive(k, k->seal_salt, k->secret + SECRET_SEAL, err);
        if (rc != P11KMS_OK)
            return rc;
        blob_header h = {
            .version = BLOB_VERSION_2, .type = BLOB_TYPE_CHILD, .alg = BLOB_ALG_AES_256_GCM};
        uint8_t header[BLOB_HEADER_MAX];
        size_t hlen;
        memcpy(h.kcv, k->kcv, BLOB_KCV_LEN);
        memcpy(h.salt, k->seal_salt, BLOB_SALT_LEN);
        if ((rc = blob_header_encode(&h, header, &hlen, err)) != P11KMS_OK)
            return rc;
        memcpy(k->child_header, header, sizeof(k->child_header));
        k->seals = 0;
        k->seal_ready = true;
    }
    k->seals++;
    return P11KMS_OK;
}

/* The AAD in the key's scratch space, grown (and kept) for a context larger than seen before. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline p11kms_err
key_aad(blob_key *k, const uint8_t *header, size_t header_len, const enc_context *ctx,
        size_t *aad_len, p11kms_error *err)
{
    size_t ctx_len = enc_context_serialized_len(ctx);
    size_t need = header_len + 4 + ctx_len;
    if (need > k->aad_cap) {
        uint8_t *mem = malloc(need);
        if (mem == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "blob: out of memory");
        if (k->aad != k->aad_inline)
            free(k->aad);
        k->aad = mem;
        k->aad_cap = need;
    }
    /* The same bytes blob_aad writes; headers here come from blob_header_encode or blob_parse. */
    buf_writer w;
    buf_writer_init(&w, k->aad, k->aad_cap);
    buf_write_bytes(&w, header, header_len);
    buf_write_u32be(&w, (uint32_t)ctx_len);
    enc_context_write(ctx, &w);
    *aad_len = buf_writer_len(&w);
    return P11KMS_OK;
}

/* Seals under k with the header already encoded (cached for CHILD blobs). Inlined into its two
 * callers so that the header copies have a constant length on the CHILD path. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline p11kms_err
seal(blob_key *k, const uint8_t *header, size_t hlen, const uint8_t *iv, const enc_context *ctx,
     const uint8_t *pt, size_t pt_len, uint8_t *out, size_t cap, size_t *len, p11kms_error *err)
{
    uint8_t random_iv[BLOB_IV_LEN];
    size_t aad_len = 0;
    const uint8_t *key = NULL;
    p11kms_err rc = check_plaintext_len(pt_len, err);
    if (rc != P11KMS_OK || (rc = key_for_header(k, header, &key, err)) != P11KMS_OK)
        return rc;
    if (cap < BLOB_OVERHEAD(hlen) + pt_len)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: buffer of %zu bytes too small for %zu",
                            cap, BLOB_OVERHEAD(hlen) + pt_len);
    if ((rc = key_aad(k, header, hlen, ctx, &aad_len, err)) != P11KMS_OK)
        return rc;
    if (iv == NULL) {
        /* From the thread's block of DRBG IVs: one RAND call per 64 seals (figure 4 measured a
         * RAND_bytes_ex call per seal at a fifth of a child key's cost). */
        if ((rc = ivbuf_take(k->libctx, random_iv, err)) != P11KMS_OK)
            return rc;
        iv = random_iv;
    }
    buf_writer w;
    buf_writer_init(&w, out, cap);
    buf_write_bytes(&w, header, hlen);
    buf_write_bytes(&w, iv, BLOB_IV_LEN);
    buf_write_u32be(&w, (uint32_t)pt_len);
    uint8_t *ct = buf_write_reserve(&w, pt_len);
    uint8_t *tag = buf_write_reserve(&w, BLOB_TAG_LEN);
    if (tag == NULL) /* checked above; kept so the writer stays the one bounds check */
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: output buffer too small");

    int n = 0, fin = 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, BLOB_TAG_LEN),
        OSSL_PARAM_construct_end(),
    };
    EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new();
    bool ok = enc != NULL && EVP_EncryptInit_ex2(enc, k->cipher, key, iv, NULL) &&
              EVP_EncryptUpdate(enc, NULL, &n, k->aad, (int)aad_len) &&
              EVP_EncryptUpdate(enc, ct, &n, pt, (int)pt_len) && (size_t)n == pt_len &&
              EVP_EncryptFinal_ex(enc, ct + n, &fin) && fin == 0 &&
              EVP_CIPHER_CTX_get_params(enc, params);
    EVP_CIPHER_CTX_free(enc); /* cleanses the key schedule */
    if (!ok) {
        ERR_clear_error();
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: AES-256-GCM encryption failed");
    }
    *len = buf_writer_len(&w);
    return P11KMS_OK;
}

p11kms_err blob_key_seal(blob_key *k, const blob_header *h, const uint8_t *iv,
                         const enc_context *ctx, const uint8_t *pt, size_t pt_len, uint8_t *out,
                         size_t cap, size_t *len, p11kms_error *err)
{
    uint8_t header[BLOB_HEADER_MAX];
    size_t hlen;
    p11kms_err rc = blob_header_encode(h, header, &hlen, err);
    if (rc != P11KMS_OK)
        return rc;
    return seal(k, header, hlen, iv, ctx, pt, pt_len, out, cap, len, err);
}

p11kms_err blob_key_open(blob_key *k, const blob_view *v, const enc_context *ctx, uint8_t *out,
                         size_t cap, size_t *pt_len, p11kms_error *err)
{
    /* Decrypted into scratch and released only once the tag verified. */
    uint8_t scratch[BLOB_MAX_PLAINTEXT];
    uint8_t tag[BLOB_TAG_LEN];
    size_t aad_len = 0;
    const uint8_t *key = NULL;
    if (v->ciphertext_len == 0 || v->ciphertext_len > BLOB_MAX_PLAINTEXT || v->header == NULL ||
        v->header_len != blob_header_len(v->version, v->type) || v->header[0] != v->version ||
        v->header[1] != v->type)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: open of an unparsed blob");
    if (cap < v->ciphertext_len)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "blob: plaintext buffer of %zu bytes too small for %zu", cap,
                            v->ciphertext_len);
    p11kms_err rc = key_aad(k, v->header, v->header_len, ctx, &aad_len, err);
    if (rc != P11KMS_OK || (rc = key_for_header(k, v->header, &key, err)) != P11KMS_OK)
        return rc;
    memcpy(tag, v->tag, BLOB_TAG_LEN);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, BLOB_TAG_LEN),
        OSSL_PARAM_construct_end(),
    };
    int n = 0, fin = 0;
    EVP_CIPHER_CTX *dec = EVP_CIPHER_CTX_new();
    if (dec == NULL || !EVP_DecryptInit_ex2(dec, k->cipher, key, v->iv, NULL) ||
        !EVP_CIPHER_CTX_set_params(dec, params) ||
        !EVP_DecryptUpdate(dec, NULL, &n, k->aad, (int)aad_len) ||
        !EVP_DecryptUpdate(dec, scratch, &n, v->ciphertext, (int)v->ciphertext_len) ||
        (size_t)n != v->ciphertext_len) {
        ERR_clear_error();
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "blob: AES-256-GCM decryption failed");
    } else if (EVP_DecryptFinal_ex(dec, scratch + n, &fin) <= 0) {
        ERR_clear_error();
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT,
                          "ciphertext blob: authentication failed (wrong key, wrong encryption "
                          "context or altered bytes)");
    } else {
        memcpy(out, scratch, v->ciphertext_len);
        *pt_len = v->ciphertext_len;
    }
    EVP_CIPHER_CTX_free(dec); /* cleanses the key schedule */
    OPENSSL_cleanse(scratch, v->ciphertext_len);
    return rc;
}

p11kms_err blob_child_seal(blob_key *parent, const uint8_t *iv, const enc_context *ctx,
                           const uint8_t *pt, size_t pt_len, uint8_t *out, size_t cap, size_t *len,
                           p11kms_error *err)
{
    p11kms_err rc = take_seal(parent, err);
    if (rc != P11KMS_OK)
        return rc;
    return seal(parent, parent->child_header, sizeof(parent->child_header), iv, ctx, pt, pt_len,
                out, cap, len, err);
}

p11kms_err blob_child_open(blob_key *parent, const enc_context *ctx, const uint8_t *blob,
                           size_t len, uint8_t *out, size_t cap, size_t *pt_len, p11kms_error *err)
{
    blob_view v;
    p11kms_err rc = blob_parse(blob, len, &v, err);
    if (rc != P11KMS_OK)
        return rc;
    if (v.type != BLOB_TYPE_CHILD)
        return P11KMS_RAISE(err, P11KMS_E_INCORRECT_KEY,
                            "ciphertext blob: wrapped by a master key, not by an opened parent "
                            "key");
    if (CRYPTO_memcmp(v.kcv, parent->kcv, BLOB_KCV_LEN) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INCORRECT_KEY,
                            "ciphertext blob: wrapped by another parent key (key check value "
                            "differs)");
    return blob_key_open(parent, &v, ctx, out, cap, pt_len, err);
}
