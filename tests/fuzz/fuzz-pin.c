/* Fuzz target: the PIN reader (pkcs11/pin.c). The input is the content of a PIN file, written
 * to a private temporary file and read back through the "file:" PIN source, as the token layer
 * reads it at login.
 *
 * Invariants: the PIN is exactly the file's first line without its line end ("\n" or "\r\n"),
 * 1 to 255 bytes, NUL-terminated inside the secure allocation; a file whose first line is empty,
 * or that has no line end within 256 bytes, is refused with a PIN error whose message does not
 * contain the file's content. */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "pkcs11/internal.h"

#define PIN_MAX 256 /* pkcs11/pin.c */

static char path[64];

static const char *pin_path(void)
{
    if (path[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof(path), "%s/p11kms-fuzz-pin-%ld",
                 tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp", (long)getpid());
    }
    return path;
}

static void write_file(const uint8_t *data, size_t size)
{
    unlink(pin_path());
    FILE *f = fopen(pin_path(), "wbx");
    FUZZ_ASSERT(f != NULL);
    FUZZ_ASSERT(fchmod(fileno(f), 0600) == 0);
    FUZZ_ASSERT(fwrite(data, 1, size, f) == size);
    FUZZ_ASSERT(fclose(f) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_file(data, size);
    /* What the reader must return: the first line, if it ends within PIN_MAX bytes or the file
     * is shorter. */
    size_t scan = size < PIN_MAX ? size : PIN_MAX;
    const uint8_t *nl = memchr(data, '\n', scan);
    bool too_long = nl == NULL && size >= PIN_MAX;
    size_t expect = nl != NULL ? (size_t)(nl - data) : size;
    if (expect > 0 && data[expect - 1] == '\r')
        expect--;

    static const char *const prefixes[] = {"file:", "file://"};
    for (size_t i = 0; i < 2; i++) {
        char source[128];
        snprintf(source, sizeof(source), "%s%s", prefixes[i], pin_path());
        char *pin = NULL;
        size_t len = 0;
        p11kms_error err = {0};
        p11kms_err rc = p11_pin_load(source, false, &pin, &len, &err);
        if (too_long || expect == 0) {
            FUZZ_ASSERT(rc == P11KMS_E_PIN && pin == NULL && len == 0);
            FUZZ_ASSERT(err.message[0] != '\0' && strchr(err.message, '\n') == NULL);
            continue;
        }
        FUZZ_ASSERT(rc == P11KMS_OK && pin != NULL);
        FUZZ_ASSERT(len == expect && len >= 1 && len < PIN_MAX);
        FUZZ_ASSERT(memcmp(pin, data, len) == 0 && pin[len] == '\0');
        p11_pin_free(pin, len);
    }
    /* Sources that are not an absolute file path are refused without reading anything. */
    char *pin = NULL;
    size_t len = 0;
    p11kms_error err = {0};
    FUZZ_ASSERT(p11_pin_load("file:relative", false, &pin, &len, &err) == P11KMS_E_CONFIG &&
                pin == NULL);
    unlink(pin_path());
    return 0;
}
