#include "config.h"

#include "common/utf8.h"

#include <string.h>

size_t policy_utf8_sequence_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

uint32_t policy_utf8_code_point(const unsigned char *s, size_t n)
{
    static const unsigned char lead_mask[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t cp = s[0] & lead_mask[n];
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (s[i] & 0x3Fu);
    return cp;
}

bool policy_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = policy_utf8_sequence_len(u + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

bool policy_utf8_printable(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = policy_utf8_sequence_len(u + i, len - i);
        if (n == 0)
            return false;
        uint32_t cp = policy_utf8_code_point(u + i, n);
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return false;
        i += n;
    }
    return true;
}

policy_quoted policy_quote(const char *s)
{
    policy_quoted q;
    size_t o = 0;
    size_t len = s != NULL ? strlen(s) : 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = policy_utf8_sequence_len(u + i, len - i);
        bool control = n == 0 || u[i] < 0x20 || u[i] == 0x7F ||
                       (n == 2 && policy_utf8_code_point(u + i, n) <= 0x9F);
        size_t out_n = control ? 1 : n;
        if (o + out_n > POLICY_QUOTE_MAX) {
            memcpy(q.text + o, "...", 3);
            o += 3;
            break;
        }
        if (control)
            q.text[o] = '?';
        else
            memcpy(q.text + o, u + i, n);
        o += out_n;
        i += n == 0 ? 1 : n;
    }
    q.text[o] = '\0';
    return q;
}
