/* Invariants every accepted encryption context must satisfy, whichever parser built it. */
#ifndef P11KMS_FUZZ_CONTEXT_CHECK_H
#define P11KMS_FUZZ_CONTEXT_CHECK_H

#include "enc-context.h"

/* Aborts unless ctx survives every round trip: canonical bytes (parse -> serialize -> parse
 * equal, byte-identical), JSON, shorthand when it can express ctx, and a copy; and its lengths
 * stay within the documented bounds. */
void fuzz_check_context(const enc_context *ctx);

/* Aborts unless a refusal looks like one: a validation error with a one-line message, and no
 * context handed out. */
void fuzz_check_refusal(p11kms_err rc, const p11kms_error *err, const enc_context *out);

#endif
