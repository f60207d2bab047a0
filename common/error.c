#include "config.h"

#include "p11kms-error.h"

#include <stdbool.h>
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

/* Length of the valid UTF-8 sequence at s (at most len bytes), 0 if there is none. Rejects
 * overlong forms, surrogates and code points above U+10FFFF; *cp receives the code point. */
static size_t utf8_sequence(const unsigned char *s, size_t len, unsigned long *cp)
{
    unsigned char c = s[0];
    size_t n;
    unsigned long v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0u) != 0x80u)
            return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFFul || (v >= 0xD800ul && v <= 0xDFFFul))
        return 0;
    *cp = v;
    return n;
}

/* The next piece of s: *bytes input bytes, written as-is or (*escape) as \xNN each. */
static void next_piece(const unsigned char *s, size_t len, unsigned flags, size_t *bytes,
                       bool *escape)
{
    unsigned long cp = 0;
    size_t n = utf8_sequence(s, len, &cp);
    *escape = n == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
              ((flags & P11KMS_ESCAPE_QUOTED) != 0 && (cp == '"' || cp == '\\'));
    *bytes = n == 0 ? 1 : n;
}

char *p11kms_escape(char *out, size_t out_size, const char *in, size_t in_len, unsigned flags)
{
    static const char hex[] = "0123456789abcdef";
    if (out == NULL || out_size == 0)
        return out;
    const unsigned char *s = (const unsigned char *)(in != NULL ? in : "");
    if (in == NULL)
        in_len = 0;
    size_t total = 0, bytes;
    bool escape;
    for (size_t i = 0; i < in_len; i += bytes) {
        next_piece(s + i, in_len - i, flags, &bytes, &escape);
        total += escape ? 4 * bytes : bytes;
    }
    /* When it does not all fit, room is kept for "..." (if the buffer can hold it at all). */
    bool cut = total > out_size - 1;
    size_t limit = !cut ? out_size - 1 : out_size > 4 ? out_size - 4 : 0;
    size_t o = 0;
    for (size_t i = 0; i < in_len; i += bytes) {
        next_piece(s + i, in_len - i, flags, &bytes, &escape);
        if (o + (escape ? 4 * bytes : bytes) > limit)
            break;
        for (size_t b = 0; b < bytes; b++) {
            unsigned char c = s[i + b];
            if (escape) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
            } else {
                out[o++] = (char)c;
            }
        }
    }
    if (cut && out_size > 4) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}
