/* The public encryption-context and principal types, as the provider sees them. */
#ifndef P11KMS_PROVIDER_CONTEXT_API_H
#define P11KMS_PROVIDER_CONTEXT_API_H

#include "p11kms.h"
#include "provider/enc-context.h"

struct p11kms_context {
    enc_context *pairs;
};

struct p11kms_principal {
    char **names;
    size_t count;
};

/* The context behind a public handle; NULL (no context) gives the shared empty context. */
const enc_context *context_pairs(const p11kms_context *ctx);

#endif
