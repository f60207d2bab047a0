#include "config.h"

#include "common/uuid.h"

#include "common/hex.h"

/* Byte offsets where the text form's groups start: 8-4-4-4-12 digits. */
static const size_t group_bytes[] = {4, 2, 2, 2, 6};

void uuid_mark_v4(uint8_t id[UUID_LEN])
{
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* variant 10 (RFC 4122) */
}

void uuid_format(const uint8_t id[UUID_LEN], char out[UUID_TEXT_LEN + 1])
{
    size_t in = 0, o = 0;
    for (size_t g = 0; g < sizeof(group_bytes) / sizeof(group_bytes[0]); g++) {
        if (g > 0)
            out[o++] = '-';
        hex_encode(id + in, group_bytes[g], out + o);
        in += group_bytes[g];
        o += 2 * group_bytes[g];
    }
    out[o] = '\0';
}

bool uuid_parse(const char *text, uint8_t out[UUID_LEN])
{
    /* The 8-4-4-4-12 rule is uuid_canonical's; what is left is decoding the groups. */
    char canonical[UUID_TEXT_LEN + 1];
    if (!uuid_canonical(text, canonical))
        return false;
    size_t in = 0, o = 0;
    for (size_t g = 0; g < sizeof(group_bytes) / sizeof(group_bytes[0]); g++) {
        if (g > 0)
            in++; /* the dash */
        if (!hex_decode(canonical + in, 2 * group_bytes[g], out + o, group_bytes[g], 0))
            return false;
        in += 2 * group_bytes[g];
        o += group_bytes[g];
    }
    return true;
}

bool uuid_canonical(const char *text, char out[UUID_TEXT_LEN + 1])
{
    if (text == NULL)
        return false;
    for (size_t i = 0; i < UUID_TEXT_LEN; i++) {
        char c = text[i];
        bool dash_here = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash_here) {
            if (c != '-')
                return false;
        } else if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false; /* also the NUL of a shorter text */
        }
        out[i] = c;
    }
    out[UUID_TEXT_LEN] = '\0';
    return text[UUID_TEXT_LEN] == '\0';
}
