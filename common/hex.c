#include "config.h"

#include "common/hex.h"

#include <string.h>

void hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_len, unsigned flags)
{
    if (in == NULL || out_len > SIZE_MAX / 2 || in_len != 2 * out_len)
        return false;
    for (size_t i = 0; i < in_len; i++)
        if ((flags & HEX_LOWER_ONLY) != 0 && in[i] >= 'A' && in[i] <= 'F')
            return false;
    for (size_t i = 0; i < out_len; i++) {
        int hi = hex_nibble(in[2 * i]), lo = hex_nibble(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

bool hex_decode_str(const char *in, uint8_t *out, size_t out_len, unsigned flags)
{
    return in != NULL && hex_decode(in, strlen(in), out, out_len, flags);
}
