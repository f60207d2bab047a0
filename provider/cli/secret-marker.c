#include "config.h"

#include "secret-marker.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/hex.h"

bool secret_marker_new(const char *prefix, char *out, size_t size)
{
    unsigned char nonce[SECRET_MARKER_NONCE_LEN];
    size_t prefix_len = strlen(prefix);
    if (size > 0)
        out[0] = '\0';
    if (size < prefix_len + 2 * sizeof(nonce) + 1 || RAND_bytes(nonce, sizeof(nonce)) != 1)
        return false;
    memcpy(out, prefix, prefix_len);
    hex_encode(nonce, sizeof(nonce), out + prefix_len);
    OPENSSL_cleanse(nonce, sizeof(nonce));
    return true;
}
