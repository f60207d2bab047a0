/* HMAC-SHA256 with a generic-secret key held in the token (sensitive, never extractable, sign
 * and verify only). Used for the audit log's MACs; the key bytes never reach the host. */
#ifndef P11KMS_PKCS11_HMAC_H
#define P11KMS_PKCS11_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include "pkcs11/token.h"

#define P11_HMAC_LEN 32
#define P11_HMAC_KEY_LEN 32

typedef struct p11_hmac_key p11_hmac_key;

/* Generates a 256-bit CKK_GENERIC_SECRET token key with CKA_ID id; ALREADY_EXISTS when a secret
 * key with that id is present. The key is checked to be sensitive and never extractable. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_key_generate(p11_token *t, const uint8_t *id, size_t id_len,
                                                   const char *label, p11_hmac_key **out,
                                                   p11kms_error *err);
/* NOT_FOUND when the token has no secret key with that id. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_key_find(p11_token *t, const uint8_t *id, size_t id_len,
                                               p11_hmac_key **out, p11kms_error *err);
/* C_Sign with CKM_SHA256_HMAC. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_sign(p11_token *t, p11_hmac_key *key, const uint8_t *data,
                                           size_t len, uint8_t mac[P11_HMAC_LEN],
                                           p11kms_error *err);
void p11_hmac_key_free(p11_hmac_key *key);

#endif
