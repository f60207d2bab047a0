/* Cryptographic operations under master keys, shared by the API and the hierarchy. */
#ifndef P11KMS_PROVIDER_KMS_CRYPTO_H
#define P11KMS_PROVIDER_KMS_CRYPTO_H

#include "provider/blob.h"
#include "policy/policy.h"
#include "provider/keyaccess.h"

/* Resolves key_ref and asks the policy; a key the principal may not use is AccessDenied whether
 * or not it exists. On success acc must be ended by the caller. */
P11KMS_MUST_CHECK p11kms_err kms_begin(p11kms *svc, const p11kms_principal *who,
                                       policy_action action, const char *key_ref,
                                       const p11kms_context *ctx, const p11kms_context *ctx2,
                                       key_access *acc, p11kms_error *err);

/* Encrypts under the key's current version (charging its encryption budget). */
P11KMS_MUST_CHECK p11kms_err kms_encrypt_under(p11kms *svc, key_access *acc, const enc_context *ctx,
                                               const uint8_t *pt, size_t pt_len, p11kms_result *out,
                                               p11kms_error *err);

/* Decrypts a parsed master blob; *pt_out is in the secure heap. */
P11KMS_MUST_CHECK p11kms_err kms_decrypt_view(p11kms *svc, key_access *acc, const blob_view *v,
                                              const enc_context *ctx, const char *op,
                                              uint8_t **pt_out, size_t *pt_len, p11kms_error *err);

#endif
