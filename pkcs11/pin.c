#include "config.h"

#include "pkcs11/internal.h"

#include <errno.h>
#include <limits.h>
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

/* --- refused PIN files ------------------------------------------------------------------------ */

static bool marker_path(const char *source, char *out, size_t cap)
{
    const char *path = source != NULL ? pin_file_path(source) : NULL;
    return path != NULL && (size_t)snprintf(out, cap, "%s.refused", path) < cap;
}

/* The identity of the PIN file as a line; false when it cannot be read. */
static bool pin_identity(const char *source, char *out, size_t cap)
{
    struct stat st;
    const char *path = pin_file_path(source);
    if (path == NULL || stat(path, &st) != 0)
        return false;
    return (size_t)snprintf(out, cap, "dev=%llu ino=%llu size=%lld mtime=%lld.%09ld\n",
                            (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                            (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                            st.st_mtim.tv_nsec) < cap;
}

p11kms_err p11_pin_refused(const char *source, p11kms_error *err)
{
    char marker[PATH_MAX], identity[256], recorded[512];
    if (!marker_path(source, marker, sizeof(marker)) ||
        !pin_identity(source, identity, sizeof(identity)))
        return P11KMS_OK;
    int fd = open(marker, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return P11KMS_OK;
    ssize_t n = read(fd, recorded, sizeof(recorded) - 1);
    close(fd);
    if (n <= 0)
        return P11KMS_OK;
    recorded[n] = '\0';
    char *ckr = strstr(recorded, " ckr=");
    size_t id_len = strlen(identity) - 1; /* without the newline */
    if (strncmp(recorded, identity, id_len) != 0 || ckr != recorded + id_len)
        return P11KMS_OK; /* the file changed since: a new PIN deserves one try */
    ckr[strcspn(ckr, "\n")] = '\0';
    return P11KMS_RAISE(err, P11KMS_E_PIN,
                        "the token refused PIN file %s (%s) at an earlier login and the file has "
                        "not changed since; p11kms does not spend another PIN try on it (fix the "
                        "file, or remove %s to try it again)",
                        pin_file_path(source), ckr + 5, marker);
}

bool p11_pin_remember_refusal(const char *source, CK_RV ckr)
{
    char marker[PATH_MAX], identity[256], line[512];
    if (!marker_path(source, marker, sizeof(marker)) ||
        !pin_identity(source, identity, sizeof(identity)))
        return false;
    identity[strlen(identity) - 1] = '\0';
    int len = snprintf(line, sizeof(line), "%s ckr=%s\n", identity, p11_ckr_name(ckr));
    int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return false;
    bool ok = len > 0 && write(fd, line, (size_t)len) == len;
    return close(fd) == 0 && ok;
}

void p11_pin_forget_refusal(const char *source)
{
    char marker[PATH_MAX];
    if (marker_path(source, marker, sizeof(marker)))
        (void)unlink(marker);
}
