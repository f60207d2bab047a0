/* p11kms error currency: one enum shared by every layer, with AWS KMS exception classes.
 *
 * This header depends on nothing else in p11kms, so the token layer (pkcs11/) and the policy
 * layer (policy/) can raise the same errors the provider returns without depending on it. */
#ifndef P11KMS_ERROR_H
#define P11KMS_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define P11KMS_API __attribute__((visibility("default")))
#define P11KMS_MUST_CHECK __attribute__((warn_unused_result))
#define P11KMS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define P11KMS_API
#define P11KMS_MUST_CHECK
#define P11KMS_PRINTF(f, a)
#endif

/* The order is part of the ABI and of the CLI's exit status (exit status = code). */
typedef enum p11kms_err {
    P11KMS_OK = 0,
    P11KMS_E_VALIDATION = 1,              /* ValidationException: malformed request */
    P11KMS_E_NOT_FOUND = 2,               /* NotFoundException */
    P11KMS_E_DISABLED = 3,                /* DisabledException */
    P11KMS_E_INVALID_STATE = 4,           /* KMSInvalidStateException */
    P11KMS_E_INVALID_CIPHERTEXT = 5,      /* InvalidCiphertextException */
    P11KMS_E_INCORRECT_KEY = 6,           /* IncorrectKeyException */
    P11KMS_E_ACCESS_DENIED = 7,           /* AccessDeniedException */
    P11KMS_E_UNSUPPORTED = 8,             /* UnsupportedOperationException */
    P11KMS_E_ALREADY_EXISTS = 9,          /* AlreadyExistsException */
    P11KMS_E_LIMIT_EXCEEDED = 10,         /* LimitExceededException */
    P11KMS_E_INVALID_ALIAS = 11,          /* InvalidAliasNameException */
    P11KMS_E_KEY_UNAVAILABLE = 12,        /* KeyUnavailableException: token unreachable */
    P11KMS_E_INVALID_ARN = 13,            /* InvalidArnException */
    P11KMS_E_TAG = 14,                    /* TagException */
    P11KMS_E_INCORRECT_KEY_MATERIAL = 15, /* IncorrectKeyMaterialException */
    P11KMS_E_INVALID_IMPORT_TOKEN = 16,   /* InvalidImportTokenException */
    P11KMS_E_EXPIRED_IMPORT_TOKEN = 17,   /* ExpiredImportTokenException */
    P11KMS_E_MALFORMED_POLICY = 18,       /* MalformedPolicyDocumentException */
    P11KMS_E_CONFIG = 19,                 /* ConfigurationError: p11kms.yaml or its sources */
    P11KMS_E_TOKEN = 20,                  /* TokenError: the PKCS#11 module failed (CKR_* named) */
    P11KMS_E_PIN = 21,                    /* PinError: PIN refused, locked or unreadable */
    P11KMS_E_NO_MEMORY = 22,              /* OutOfMemory */
    P11KMS_E_IO = 23,                     /* IOError: a local file could not be read or written */
    P11KMS_E_INTERNAL = 24,               /* KMSInternalException */
    P11KMS_E__COUNT
} p11kms_err;

/* Filled by every failing call; the message never contains key bytes or PINs. */
typedef struct p11kms_error {
    p11kms_err code;
    unsigned long ckr; /* CKR_* value when a PKCS#11 call caused it, else 0 */
    const char *file;  /* where it was raised (source file of p11kms) */
    int line;
    const char *func;
    char message[512];
} p11kms_error;

/* Exception class name, e.g. "NotFoundException"; never NULL. */
P11KMS_API const char *p11kms_error_class(p11kms_err code);
/* Short human description of a code, e.g. "key or alias not found"; never NULL. */
P11KMS_API const char *p11kms_strerror(p11kms_err code);

/* Records an error (code, origin and message) in err, which may be NULL; returns code. Use the
 * P11KMS_RAISE macro, which supplies the origin. */
P11KMS_API p11kms_err p11kms_error_set(p11kms_error *err, p11kms_err code, const char *file,
                                       int line, const char *func, const char *fmt, ...)
    P11KMS_PRINTF(6, 7);
P11KMS_API void p11kms_error_clear(p11kms_error *err);

/* Makes untrusted bytes safe to echo in one line of a terminal or log: every C0 control (ESC,
 * BEL, CR, LF, TAB...), DEL, every C1 control (U+0080..U+009F) and every byte that is not part of
 * valid UTF-8 becomes \xNN (hex of the byte); other valid UTF-8 is kept. With
 * P11KMS_ESCAPE_QUOTED, '"' and '\\' are escaped too, so that the text can stand between quotes
 * unambiguously. Without it the function is idempotent: escaping its output changes nothing.
 * Writes at most out_size bytes including the NUL; input that does not fit is cut (at a whole
 * character) and marked with "...". Returns out. */
#define P11KMS_ESCAPE_QUOTED 0x1u
P11KMS_API char *p11kms_escape(char *out, size_t out_size, const char *in, size_t in_len,
                               unsigned flags);

/* Returns code. Through this inline function the value of P11KMS_RAISE is visibly its code,
 * not only what p11kms_error_set returns from another translation unit: static analysers then
 * know that a raised error is never P11KMS_OK. */
static inline p11kms_err p11kms_raised_(p11kms_err code, p11kms_err recorded)
{
    (void)recorded;
    return code;
}

/* The error contract: every public function accepts err == NULL (the caller then gets only the
 * code). Public functions start with P11KMS_ERR_LOCAL(err), which points err at a local record
 * when it is NULL, so that no inner layer has to test it. */
#define P11KMS_ERR_LOCAL(err)                                                                      \
    p11kms_error err##_local_;                                                                     \
    if ((err) == NULL)                                                                             \
    (err) = (err##_local_.code = P11KMS_OK, err##_local_.ckr = 0, &err##_local_)

/* code must have no side effects (it is evaluated twice). */
#define P11KMS_RAISE(err, code, ...)                                                               \
    p11kms_raised_((code),                                                                         \
                   p11kms_error_set((err), (code), __FILE__, __LINE__, __func__, __VA_ARGS__))

#ifdef __cplusplus
}
#endif
#endif
