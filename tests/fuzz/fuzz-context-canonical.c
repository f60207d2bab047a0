/* Fuzz target: the canonical encryption-context bytes (the AAD part stored with every blob). */
#include "config.h"

#include <string.h>

#include "context-check.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enc_context *ctx = NULL;
    p11kms_error err = {0};
    p11kms_err rc = enc_context_parse_canonical(data, size, &ctx, &err);
    if (rc != P11KMS_OK) {
        fuzz_check_refusal(rc, &err, ctx);
        return 0;
    }
    /* Accepted bytes are exactly the context's serialization: no second spelling exists. */
    uint8_t *bytes = NULL;
    size_t len = 0;
    FUZZ_ASSERT(enc_context_serialize_alloc(ctx, &bytes, &len, &err) == P11KMS_OK);
    FUZZ_ASSERT(len == size && (size == 0 || memcmp(bytes, data, size) == 0));
    free(bytes);
    fuzz_check_context(ctx);
    enc_context_free(ctx);
    return 0;
}
