#include "config.h"

#include "cli-base64.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* Inputs are bounded by the CLI's file limit; this keeps every length inside an int for
 * EVP_EncodeBlock/EVP_DecodeBlock. */
#define BASE64_MAX_INPUT ((size_t)64 << 20)

static void *alloc_bytes(size_t n, bool secret)
{
    return secret ? OPENSSL_secure_malloc(n) : OPENSSL_malloc(n);
}

void cli_bytes_free(uint8_t *p, size_t len, bool secret)
{
    if (p == NULL)
        return;
    if (secret)
        OPENSSL_secure_clear_free(p, len);
    else
        OPENSSL_free(p);
}

void cli_base64_free(char *s, bool secret)
{
    if (s != NULL)
        cli_bytes_free((uint8_t *)s, strlen(s) + 1, secret);
}

p11kms_err cli_base64_encode(const uint8_t *in, size_t len, bool secret, char **out,
                             p11kms_error *err)
{
    *out = NULL;
    if (len > BASE64_MAX_INPUT)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "base64: %zu bytes is too long", len);
    size_t n = 4 * ((len + 2) / 3) + 1;
    char *s = alloc_bytes(n, secret);
    if (s == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory encoding base64");
    int w = EVP_EncodeBlock((unsigned char *)s, in, (int)len);
    if (w < 0 || (size_t)w != n - 1) {
        cli_bytes_free((uint8_t *)s, n, secret);
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "base64 encoding failed");
    }
    *out = s;
    return P11KMS_OK;
}

static bool is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* The 6-bit value of an alphabet character. */
static unsigned b64_value(unsigned char c)
{
    return c >= 'A' && c <= 'Z'   ? (unsigned)(c - 'A')
           : c >= 'a' && c <= 'z' ? (unsigned)(c - 'a' + 26)
           : c >= '0' && c <= '9' ? (unsigned)(c - '0' + 52)
           : c == '+'             ? 62u
                                  : 63u;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

p11kms_err cli_base64_decode(const char *what, const char *text, size_t text_len, bool secret,
                             uint8_t **out, size_t *out_len, p11kms_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (text_len > BASE64_MAX_INPUT)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: base64 text is too long", what);
    /* Compact the alphabet characters; the compacted text is as secret as the bytes. */
    char *clean = alloc_bytes(text_len + 1, secret);
    if (clean == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory decoding base64");
    size_t n = 0;
    size_t pad = 0;
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < text_len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            pad++;
        } else if (!is_b64_char(c) || pad != 0) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "%s: not valid base64 (bad character at offset %zu)", what, i);
            goto out;
        }
        clean[n++] = (char)c;
    }
    clean[n] = '\0';
    if (n % 4 != 0 || pad > 2) {
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                          "%s: not valid base64 (length or padding is wrong)", what);
        goto out;
    }
    /* The bits the padding leaves over must be zero (RFC 4648 section 3.5): otherwise "QR==" and
     * "QQ==" would both stand for "A", and one blob would have several spellings. */
    if (pad > 0 && (b64_value((unsigned char)clean[n - pad - 1]) & (pad == 1 ? 0x3u : 0xFu)) != 0) {
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                          "%s: not valid base64 (non-zero bits before the padding)", what);
        goto out;
    }
    size_t max = n / 4 * 3;
    uint8_t *bytes = alloc_bytes(max + 1, secret);
    if (bytes == NULL) {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory decoding base64");
        goto out;
    }
    int d = n == 0 ? 0 : EVP_DecodeBlock(bytes, (const unsigned char *)clean, (int)n);
    if (d < 0 || (size_t)d != max) {
        cli_bytes_free(bytes, max + 1, secret);
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: not valid base64", what);
        goto out;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    *out = bytes;
    *out_len = max - pad;
out:
    cli_bytes_free((uint8_t *)clean, text_len + 1, secret);
    return rc;
}
