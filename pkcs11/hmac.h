/* HMAC-SHA256 keys in the token: the one design for every secret p11kms MACs with and never
 * sees again (SigV4 secret access keys, the storage integrity key, the audit key).
 *
 * An HMAC key is a p11_key (same cache, same CKA_ID namespace, destroyed with p11_key_destroy,
 * described with p11_key_get_attributes) whose object is CKO_SECRET_KEY / CKK_GENERIC_SECRET,
 * CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=FALSE, CKA_SIGN and CKA_VERIFY TRUE,
 * CKA_ENCRYPT/DECRYPT/WRAP/UNWRAP/DERIVE FALSE and CKA_MODIFIABLE=FALSE (its label, which may
 * carry meaning such as the principal of a credential, cannot be changed in place). Generic
 * secret keys with CKM_SHA256_HMAC are in PKCS#11 v2.40 itself; nothing here depends on SoftHSM.
 * Choose CKA_IDs that cannot collide with master key ids (those are 16-byte UUIDs): e.g. an
 * ASCII prefix naming the purpose. */
#ifndef P11KMS_PKCS11_HMAC_H
#define P11KMS_PKCS11_HMAC_H

#include "pkcs11/token.h"

#define P11_HMAC_SHA256_LEN 32
/* Longest key value p11_hmac_import accepts (HMAC hashes longer keys anyway). */
#define P11_HMAC_KEY_MAX 1024

/* Creates a persistent HMAC key from value (C_CreateObject); a length outside the token's
 * CKM_SHA256_HMAC key size range (SoftHSM: 32 to 512 bytes) is refused first. Then reads its
 * attributes back and destroys it, failing, unless the token stored what was asked (class, key
 * type, sensitive, not extractable, sign-only usage). ALREADY_EXISTS if a secret key with this
 * CKA_ID exists. The value is not kept: the caller wipes its copy. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_import(p11_token *t, const uint8_t *id, size_t id_len,
                                             const char *label, const uint8_t *value, size_t len,
                                             p11_key **out, p11kms_error *err);

/* Generates a persistent HMAC key of len bytes inside the token (CKM_GENERIC_SECRET_KEY_GEN),
 * for keys nobody outside the token ever needs (integrity and audit keys). Besides the checks of
 * p11_hmac_import, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE must be TRUE. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_generate(p11_token *t, const uint8_t *id, size_t id_len,
                                               const char *label, size_t len, p11_key **out,
                                               p11kms_error *err);

/* Finds the HMAC key with this CKA_ID (cached like p11_key_find). NOT_FOUND if none; TOKEN
 * error if the object is not an HMAC key as described above (e.g. a master key's id). */
P11KMS_MUST_CHECK p11kms_err p11_hmac_find(p11_token *t, const uint8_t *id, size_t id_len,
                                           p11_key **out, p11kms_error *err);

/* Finds the one HMAC key whose CKA_LABEL is exactly label. NOT_FOUND if none, TOKEN error if
 * several secret keys carry it. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_find_label(p11_token *t, const char *label, p11_key **out,
                                                 p11kms_error *err);

/* out = HMAC-SHA256(key, data) computed in the token (C_SignInit(CKM_SHA256_HMAC), C_Sign).
 * A key that is not an HMAC key, or was destroyed, is refused with the token's CKR_* code. */
P11KMS_MUST_CHECK p11kms_err p11_hmac_sha256(p11_token *t, p11_key *key, const uint8_t *data,
                                             size_t len, uint8_t out[P11_HMAC_SHA256_LEN],
                                             p11kms_error *err);

#endif
