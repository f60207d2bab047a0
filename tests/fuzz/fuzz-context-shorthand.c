/* Fuzz target: the AWS CLI shorthand form of an encryption context (k=v,k2=v2). The parser takes
 * a C string, so the input stops at its first NUL byte. */
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
    p11kms_err rc = enc_context_parse_shorthand(text, &ctx, &err);
    if (rc != P11KMS_OK) {
        fuzz_check_refusal(rc, &err, ctx);
    } else {
        fuzz_check_context(ctx);
        /* Every piece between commas became exactly one pair (duplicates are refused). */
        size_t pieces = 1;
        for (const char *p = text; *p != '\0'; p++)
            pieces += *p == ',';
        FUZZ_ASSERT(enc_context_count(ctx) == pieces);
        /* Each pair is its piece split at the first '=': the key holds no '='. */
        const enc_context_pair *pairs = enc_context_pairs(ctx);
        for (size_t i = 0; i < pieces; i++)
            FUZZ_ASSERT(memchr(pairs[i].key, '=', pairs[i].key_len) == NULL);
        enc_context_free(ctx);
    }
    free(text);
    return 0;
}
