#include "config.h"

#include "p11kms-error.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *klass;
    const char *text;
} error_table[P11KMS_E__COUNT] = {
    [P11KMS_OK] = {"Success", "success"},
    [P11KMS_E_VALIDATION] = {"ValidationException", "invalid request"},
    [P11KMS_E_NOT_FOUND] = {"NotFoundException", "key or alias not found"},
    [P11KMS_E_DISABLED] = {"DisabledException", "key is disabled"},
    [P11KMS_E_INVALID_STATE] = {"KMSInvalidStateException",
                                "key state does not allow this operation"},
    [P11KMS_E_INVALID_CIPHERTEXT] = {"InvalidCiphertextException",
                                     "ciphertext or encryption context is invalid"},
    [P11KMS_E_INCORRECT_KEY] = {"IncorrectKeyException",
                                "ciphertext was not encrypted under the given key"},
    [P11KMS_E_ACCESS_DENIED] = {"AccessDeniedException", "access denied by key policy"},
    [P11KMS_E_UNSUPPORTED] = {"UnsupportedOperationException", "operation not supported"},
    [P11KMS_E_ALREADY_EXISTS] = {"AlreadyExistsException", "resource already exists"},
    [P11KMS_E_LIMIT_EXCEEDED] = {"LimitExceededException", "limit exceeded"},
    [P11KMS_E_INVALID_ALIAS] = {"InvalidAliasNameException", "invalid alias name"},
    [P11KMS_E_KEY_UNAVAILABLE] = {"KeyUnavailableException", "key store unavailable"},
    [P11KMS_E_INVALID_ARN] = {"InvalidArnException", "invalid ARN"},
    [P11KMS_E_TAG] = {"TagException", "invalid tag"},
    [P11KMS_E_INCORRECT_KEY_MATERIAL] = {"IncorrectKeyMaterialException", "incorrect key material"},
    [P11KMS_E_INVALID_IMPORT_TOKEN] = {"InvalidImportTokenException", "invalid import token"},
    [P11KMS_E_EXPIRED_IMPORT_TOKEN] = {"ExpiredImportTokenException", "import token expired"},
    [P11KMS_E_MALFORMED_POLICY] = {"MalformedPolicyDocumentException", "malformed key policy"},
    [P11KMS_E_CONFIG] = {"ConfigurationError", "invalid configuration"},
    [P11KMS_E_TOKEN] = {"TokenError", "PKCS#11 token error"},
    [P11KMS_E_PIN] = {"PinError", "token PIN refused or unavailable"},
    [P11KMS_E_NO_MEMORY] = {"OutOfMemory", "out of memory"},
    [P11KMS_E_IO] = {"IOError", "file input/output error"},
    [P11KMS_E_INTERNAL] = {"KMSInternalException", "internal error"},
};

static int code_is_known(p11kms_err code)
{
    return (int)code >= 0 && code < P11KMS_E__COUNT;
}

const char *p11kms_error_class(p11kms_err code)
{
    return code_is_known(code) ? error_table[code].klass : "UnknownError";
}

const char *p11kms_strerror(p11kms_err code)
{
    return code_is_known(code) ? error_table[code].text : "unknown error";
}

p11kms_err p11kms_error_set(p11kms_error *err, p11kms_err code, const char *file, int line,
                            const char *func, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    /* A lower layer may already have named the CKR_* code: keep it when a caller re-raises. */
    unsigned long ckr = err->code != P11KMS_OK ? err->ckr : 0;
    err->code = code;
    err->ckr = ckr;
    err->file = file;
    err->line = line;
    err->func = func;
    /* Callers wrap a lower error by passing err->message as an argument: format aside first. */
    char message[sizeof(err->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    memcpy(err->message, message, sizeof(message));
    return code;
}

void p11kms_error_clear(p11kms_error *err)
{
    if (err != NULL)
        memset(err, 0, sizeof(*err));
}
