/* Import tokens of GetParametersForImport (doc/import.md): opaque to the caller, authenticated by
 * the PKCS#11 token. An import token binds the key, the wrapping key pair, the wrapping algorithm
 * and the expiry, encrypted with AES-256-GCM under an import-token key that lives in the token
 * and is independent of every master key. */
#ifndef P11KMS_PROVIDER_IMPORT_TOKEN_H
#define P11KMS_PROVIDER_IMPORT_TOKEN_H

#include "pkcs11/rsa-wrap.h"
#include "provider/service.h"

#define IMPORT_TOKEN_LEN 73

typedef struct import_token {
    uint8_t key_id[KEY_UUID_LEN];
    uint8_t wrap_id[P11_WRAP_ID_LEN];
    p11_wrap_alg alg;
    int64_t expires; /* seconds since the epoch */
} import_token;

/* Seals t into out (IMPORT_TOKEN_LEN bytes). Creates the import-token key on first use; the
 * caller holds the keystore lock (creation must not race another process). */
P11KMS_MUST_CHECK p11kms_err import_token_seal(p11kms *svc, const import_token *t,
                                               uint8_t out[IMPORT_TOKEN_LEN], p11kms_error *err);

/* Opens a token: INVALID_IMPORT_TOKEN when it was not made by this service (wrong length, wrong
 * version, modified, or no import-token key exists). Expiry and key are the caller's checks. */
P11KMS_MUST_CHECK p11kms_err import_token_open(p11kms *svc, const uint8_t *in, size_t len,
                                               import_token *out, p11kms_error *err);

#endif
