/* Token layer for imported key material (BYOK): RSA wrapping key pairs generated in the token
 * and C_UnwrapKey straight into a token AES key object, so that imported key material never
 * exists in p11kms's memory.
 *
 * A wrapping key pair is two token objects sharing one CKA_ID: an RSA private key (sensitive,
 * never extractable, CKA_UNWRAP only) and its public key. Everything here goes through the
 * pool (p11_run) and the wrapper layer (calls.c). */
#ifndef P11KMS_PKCS11_RSA_WRAP_H
#define P11KMS_PKCS11_RSA_WRAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11/token.h"

/* The AWS KMS wrapping algorithms p11kms implements (RSAES_PKCS1_V1_5 is refused, as AWS does). */
typedef enum p11_wrap_alg {
    P11_WRAP_OAEP_SHA1 = 1,    /* RSAES_OAEP_SHA_1: CKM_RSA_PKCS_OAEP, SHA-1, MGF1-SHA-1 */
    P11_WRAP_OAEP_SHA256 = 2,  /* RSAES_OAEP_SHA_256 */
    P11_WRAP_RSA_AES_SHA1 = 3, /* RSA_AES_KEY_WRAP_SHA_1: OAEP(ephemeral AES-256) || KWP */
    P11_WRAP_RSA_AES_SHA256 = 4,
} p11_wrap_alg;

#define P11_WRAP_ID_LEN 16

/* "RSAES_OAEP_SHA_1" etc.; NULL for an unknown value. */
const char *p11_wrap_alg_name(p11_wrap_alg alg);
/* false for names p11kms does not implement (RSAES_PKCS1_V1_5 included). */
bool p11_wrap_alg_parse(const char *name, p11_wrap_alg *out);

/* Generates an RSA key pair of bits (2048, 3072 or 4096) as token objects with CKA_ID id and
 * CKA_LABEL label. The private key is CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=FALSE,
 * CKA_UNWRAP only (no decrypt, sign or derive); both halves are verified after generation.
 * *spki (malloc'ed) receives the public key as DER SubjectPublicKeyInfo built with OpenSSL
 * from CKA_MODULUS and CKA_PUBLIC_EXPONENT. */
P11KMS_MUST_CHECK p11kms_err p11_rsa_wrap_generate(p11_token *t, const uint8_t *id, size_t id_len,
                                                   const char *label, unsigned bits,
                                                   OSSL_LIB_CTX *libctx, uint8_t **spki,
                                                   size_t *spki_len, p11kms_error *err);

/* Destroys every object (public and private key) with this CKA_ID. NOT_FOUND if there was none. */
p11kms_err p11_rsa_wrap_destroy(p11_token *t, const uint8_t *id, size_t id_len, p11kms_error *err);

/* Calls fn for each RSA private key whose CKA_LABEL starts with label_prefix (maintenance). */
p11kms_err p11_rsa_wrap_list(p11_token *t, const char *label_prefix,
                             int (*fn)(const uint8_t *id, size_t id_len, const char *label,
                                       void *arg),
                             void *arg, p11kms_error *err);

/* Whether the token performs alg with this wrapping key pair: wraps 32 random bytes with
 * OpenSSL under the public key exactly as a client would, unwraps them in the token into a
 * session object and destroys it. P11KMS_E_UNSUPPORTED (naming the token and what it lacks)
 * when the token refuses the mechanism or its parameters. */
P11KMS_MUST_CHECK p11kms_err p11_rsa_wrap_probe(p11_token *t, const uint8_t *id, size_t id_len,
                                                p11_wrap_alg alg, OSSL_LIB_CTX *libctx,
                                                p11kms_error *err);

/* What an unwrap creates. */
typedef struct p11_unwrap_target {
    const uint8_t *id; /* CKA_ID of the new object */
    size_t id_len;
    const char *label;
    size_t value_len; /* required length of the unwrapped key (32 for AES-256) */
    /* Test support (Wycheproof): a session CKK_GENERIC_SECRET object, extractable, whose value
     * is returned in *value. Never used by the provider. */
    bool test_extractable;
    uint8_t *value; /* test_extractable: receives value_len bytes */
} p11_unwrap_target;

/* Unwraps wrapped (as the client made it for alg) with the wrapping private key id into a new
 * token secret key: CKK_AES, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=FALSE,
 * CKA_ENCRYPT/CKA_DECRYPT only. Any input the token refuses to unwrap, and any key of another
 * length than target->value_len (the object is destroyed), is P11KMS_E_INVALID_CIPHERTEXT.
 * NOT_FOUND when no wrapping key has this id. On success *out is the new key. */
P11KMS_MUST_CHECK p11kms_err p11_rsa_wrap_unwrap(p11_token *t, const uint8_t *wrap_id,
                                                 size_t wrap_id_len, p11_wrap_alg alg,
                                                 const uint8_t *wrapped, size_t wrapped_len,
                                                 p11_unwrap_target *target, p11_key **out,
                                                 p11kms_error *err);

/* Test support: imports an RSA private key (components as big-endian bytes) as a session
 * object with CKA_ID id and CKA_UNWRAP, so that test vectors can go through the unwrap path. */
typedef struct p11_rsa_components {
    const uint8_t *n, *e, *d, *p, *q, *dp, *dq, *qi;
    size_t n_len, e_len, d_len, p_len, q_len, dp_len, dq_len, qi_len;
} p11_rsa_components;
P11KMS_MUST_CHECK p11kms_err p11_rsa_wrap_test_import(p11_token *t, const uint8_t *id,
                                                      size_t id_len, const p11_rsa_components *c,
                                                      p11kms_error *err);

/* Test support (Wycheproof AES-KWP): unwraps wrapped under a session AES key made from kek with
 * the RFC 5649 mechanism the token offers, through the same last step as RSA_AES_KEY_WRAP_*.
 * target must be test_extractable. */
P11KMS_MUST_CHECK p11kms_err p11_kwp_test_unwrap(p11_token *t, const uint8_t *kek, size_t kek_len,
                                                 const uint8_t *wrapped, size_t wrapped_len,
                                                 p11_unwrap_target *target, p11kms_error *err);

#endif
