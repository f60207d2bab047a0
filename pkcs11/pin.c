#include "config.h"

#include "pkcs11/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* Longer than any PIN a token accepts; the first line must fit. */
#define PIN_MAX 256

void p11_pin_free(char *pin, size_t len)
{
    if (pin != NULL)
        OPENSSL_secure_clear_free(pin, PIN_MAX + 1);
    (void)len;
}

/* "file:/abs", "file:///abs" -> "/abs"; anything else is not a PIN source p11kms reads. */
static const char *pin_file_path(const char *source)
{
    if (strncmp(source, "file:", 5) != 0)
        return NULL;
    const char *p = source + 5;
    if (strncmp(p, "///", 3) == 0)
        p += 2;
    return p[0] == '/' ? p : NULL;
}

p11kms_err p11_pin_load(const char *source, char **pin, size_t *len, p11kms_error *err)
{
    *pin = NULL;
    *len = 0;
    if (source == NULL || *source == '\0')
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "no PIN source: set pin-source to file:/path or add pin-source to "
                            "the token URI");
    const char *path = pin_file_path(source);
    if (path == NULL)
        /* Not echoed: a misplaced literal PIN must not reach a log. */
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "unsupported PIN source: use file:/absolute/path (first line is the "
                            "PIN)");

    /* read(2) straight into the secure heap: stdio would leave a copy in its own buffer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return P11KMS_RAISE(err, P11KMS_E_PIN, "cannot open PIN file %s: %s", path,
                            strerror(errno));
    char *buf = OPENSSL_secure_zalloc(PIN_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "no secure memory for the PIN");
    }
    size_t n = 0;
    bool line_ended = false;
    while (n < PIN_MAX && !line_ended) {
        ssize_t got = read(fd, buf + n, PIN_MAX - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            OPENSSL_secure_clear_free(buf, PIN_MAX + 1);
            return P11KMS_RAISE(err, P11KMS_E_PIN, "cannot read PIN file %s: %s", path,
                                strerror(e));
        }
        if (got == 0)
            break;
        line_ended = memchr(buf + n, '\n', (size_t)got) != NULL;
        n += (size_t)got;
    }
    close(fd);

    char *nl = memchr(buf, '\n', n);
    if (nl == NULL && n == PIN_MAX) {
        OPENSSL_secure_clear_free(buf, PIN_MAX + 1);
        return P11KMS_RAISE(err, P11KMS_E_PIN, "PIN file %s: first line longer than %d bytes", path,
                            PIN_MAX - 1);
    }
    size_t pin_len = nl != NULL ? (size_t)(nl - buf) : n;
    if (pin_len > 0 && buf[pin_len - 1] == '\r')
        pin_len--;
    /* Only the first line is the PIN: wipe the rest of what was read. */
    OPENSSL_cleanse(buf + pin_len, PIN_MAX + 1 - pin_len);
    if (pin_len == 0) {
        OPENSSL_secure_clear_free(buf, PIN_MAX + 1);
        return P11KMS_RAISE(err, P11KMS_E_PIN, "PIN file %s: the first line is empty", path);
    }
    *pin = buf;
    *len = pin_len;
    return P11KMS_OK;
}
