/* Fuzz target: the CLI's base64 decoder (RFC 4648 with padding; blobs and plaintexts on the
 * command line and in files).
 *
 * Invariants: decoding then encoding gives back the input's base64 characters exactly (so two
 * different texts never decode to the same bytes, whitespace aside); the decoded length is
 * 3/4 of the characters less the padding; encoding any bytes (the input itself) decodes back to
 * them; the secure-heap variant gives the same bytes. */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "provider/cli/cli-base64.h"

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void check_encode(const uint8_t *data, size_t size)
{
    char *text = NULL;
    p11kms_error err = {0};
    FUZZ_ASSERT(cli_base64_encode(data, size, false, &text, &err) == P11KMS_OK);
    FUZZ_ASSERT(strlen(text) == 4 * ((size + 2) / 3));
    uint8_t *bytes = NULL;
    size_t len = 0;
    FUZZ_ASSERT(cli_base64_decode("fuzz", text, strlen(text), false, &bytes, &len, &err) ==
                P11KMS_OK);
    FUZZ_ASSERT(len == size && (size == 0 || memcmp(bytes, data, size) == 0));
    cli_bytes_free(bytes, len, false);
    cli_base64_free(text, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    uint8_t *bytes = NULL;
    size_t len = 0;
    p11kms_error err = {0};
    p11kms_err rc = cli_base64_decode("fuzz", text, size, false, &bytes, &len, &err);
    if (rc != P11KMS_OK) {
        FUZZ_ASSERT(bytes == NULL && len == 0);
        FUZZ_ASSERT(rc == P11KMS_E_VALIDATION && err.message[0] != '\0');
    } else {
        /* The input without its whitespace, which is all the decoder may ignore. */
        char *compact = malloc(size + 1);
        FUZZ_ASSERT(compact != NULL);
        size_t n = 0, pad = 0;
        for (size_t i = 0; i < size; i++) {
            if (!is_space(data[i]))
                compact[n++] = (char)data[i];
            pad += data[i] == '=';
        }
        FUZZ_ASSERT(n % 4 == 0 && pad <= 2 && len == n / 4 * 3 - pad);
        char *again = NULL;
        FUZZ_ASSERT(cli_base64_encode(bytes, len, false, &again, &err) == P11KMS_OK);
        if (strlen(again) != n || memcmp(again, compact, n) != 0) {
            fprintf(stderr, "decoded %.*s, re-encodes as %s\n", (int)(n > 200 ? 200 : n), compact,
                    again);
            FUZZ_ASSERT(!"base64 has one spelling per byte string");
        }
        /* The secure-heap variant decodes the same. */
        uint8_t *secret = NULL;
        size_t secret_len = 0;
        FUZZ_ASSERT(cli_base64_decode("fuzz", text, size, true, &secret, &secret_len, &err) ==
                    P11KMS_OK);
        FUZZ_ASSERT(secret_len == len && (len == 0 || memcmp(secret, bytes, len) == 0));
        cli_bytes_free(secret, secret_len, true);
        cli_base64_free(again, false);
        free(compact);
        cli_bytes_free(bytes, len, false);
    }
    check_encode(data, size);
    return 0;
}
