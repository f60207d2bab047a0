/* Fuzz target: the JSON form of an encryption context ({"k":"v",...}). The parser takes a C
 * string, so the input stops at its first NUL byte, as it would on a command line or in a file
 * read as text. */
#include "config.h"

#include <string.h>

#include "context-check.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    enc_context *ctx = NULL;
    p11kms_error err = {0};
    p11kms_err rc = enc_context_parse_json(text, &ctx, &err);
    if (rc != P11KMS_OK) {
        fuzz_check_refusal(rc, &err, ctx);
    } else {
        fuzz_check_context(ctx);
        /* The CLI form picks JSON for this text too when it starts with '{'. */
        const char *p = text + strspn(text, " \t\r\n");
        if (*p == '{') {
            enc_context *cli = NULL;
            FUZZ_ASSERT(enc_context_parse_cli(text, &cli, &err) == P11KMS_OK);
            FUZZ_ASSERT(enc_context_equal(ctx, cli));
            enc_context_free(cli);
        }
        enc_context_free(ctx);
    }
    free(text);
    return 0;
}
