#include "config.h"

#include "pkcs11/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

/* The PIN file must be a regular file (a FIFO would block, a device would be sent as a PIN and
 * cost a try on tokens with a retry counter), owned by this user or root and closed to group and
 * others; insecure relaxes the last two for development and says so on stderr. */
static p11kms_err check_pin_file(int fd, const char *path, bool insecure, p11kms_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return P11KMS_RAISE(err, P11KMS_E_PIN, "cannot stat PIN file %s: %s", path,
                            strerror(errno));
    if (!S_ISREG(st.st_mode))
        return P11KMS_RAISE(err, P11KMS_E_PIN, "PIN file %s is not a regular file (mode %06o)",
                            path, (unsigned)st.st_mode);
    unsigned mode = (unsigned)st.st_mode & 07777u;
    bool owner_ok = st.st_uid == geteuid() || st.st_uid == 0;
    bool mode_ok = (mode & 077u) == 0;
    if (owner_ok && mode_ok)
        return P11KMS_OK;
    if (insecure) {
        fprintf(stderr,
                "p11kms: WARNING: PIN file %s has mode %04o and owner uid %u: accepted only "
                "because of insecure-pin-file. Development only.\n",
                path, mode, (unsigned)st.st_uid);
        return P11KMS_OK;
    }
    if (!owner_ok)
        return P11KMS_RAISE(err, P11KMS_E_PIN,
                            "PIN file %s is owned by uid %u, not by this user (uid %u) or root",
                            path, (unsigned)st.st_uid, (unsigned)geteuid());
    return P11KMS_RAISE(err, P11KMS_E_PIN,
                        "PIN file %s has mode %04o: group and others must have no access "
                        "(chmod 600 %s)",
                        path, mode, path);
}

p11kms_err p11_pin_load(const char *source, bool insecure, char **pin, size_t *len,
                        p11kms_error *err)
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
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return P11KMS_RAISE(err, P11KMS_E_PIN, "cannot open PIN file %s: %s", path,
                            strerror(errno));
    p11kms_err checked = check_pin_file(fd, path, insecure, err);
    if (checked != P11KMS_OK) {
        close(fd);
        return checked;
    }
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
