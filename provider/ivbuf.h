/* Random GCM IVs for the hot path, drawn from the DRBG in blocks: one RAND_bytes_ex call (and
 * the DRBG's per-call fork check, a getpid system call) per IVBUF_COUNT IVs instead of per
 * encryption. IVs must be unique, not secret. */
#ifndef P11KMS_PROVIDER_IVBUF_H
#define P11KMS_PROVIDER_IVBUF_H

#include <stdint.h>

#include <openssl/types.h>

#include "p11kms-error.h"

#define IVBUF_IV_LEN 12
#define IVBUF_COUNT 64

/* One random IV from the calling thread's block, refilled from libctx's DRBG when used up. A
 * block drawn before a fork is never used after it in the child (pthread_atfork), so parent and
 * child cannot hand out the same IV. */
P11KMS_MUST_CHECK p11kms_err ivbuf_take(OSSL_LIB_CTX *libctx, uint8_t iv[IVBUF_IV_LEN],
                                        p11kms_error *err);

#endif
