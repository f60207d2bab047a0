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
    char *source;     /* audit: set by a front end (peer pid/uid or address); NULL: local */
    char *request_id; /* audit: set by a front end; NULL: the library makes one */
};

static inline const char *principal_source(const p11kms_principal *p)
{
    return p != NULL ? p->source : NULL;
}
static inline const char *principal_request_id(const p11kms_principal *p)
{
    return p != NULL ? p->request_id : NULL;
}

/* The context behind a public handle; NULL (no context) gives the shared empty context. */
const enc_context *context_pairs(const p11kms_context *ctx);

#endif
