#include "config.h"

#include "provider/ivbuf.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "common/fork-generation.h"

typedef struct iv_block {
    unsigned long generation; /* fork_generation() it was filled under; 0: never filled */
    unsigned next;            /* IVs handed out from bytes */
    uint8_t bytes[IVBUF_COUNT * IVBUF_IV_LEN];
} iv_block;

static _Thread_local iv_block block;

p11kms_err ivbuf_take(OSSL_LIB_CTX *libctx, uint8_t iv[IVBUF_IV_LEN], p11kms_error *err)
{
    unsigned long now = fork_generation();
    if (now == 0 || block.generation != now || block.next >= IVBUF_COUNT) {
        if (RAND_bytes_ex(libctx, block.bytes, sizeof(block.bytes), 0) != 1) {
            ERR_clear_error();
            block.generation = 0;
            return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "no random IV from the DRBG");
        }
        block.generation = now;
        block.next = 0;
    }
    uint8_t *slot = block.bytes + (size_t)block.next * IVBUF_IV_LEN;
    memcpy(iv, slot, IVBUF_IV_LEN);
    OPENSSL_cleanse(slot, IVBUF_IV_LEN); /* handed out once */
    block.next++;
    return P11KMS_OK;
}
