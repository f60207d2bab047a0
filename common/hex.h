/* Hexadecimal text for bytes: the one encoder and decoder every layer uses (key ids in messages,
 * audit hashes, key check values, SigV4 signatures). */
#ifndef P11KMS_COMMON_HEX_H
#define P11KMS_COMMON_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes 2 * len lowercase hex digits and a NUL to out (2 * len + 1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);

/* Value of one hex digit (0-9, a-f, A-F), or -1. */
int hex_nibble(char c);

/* Only lowercase digits are accepted (formats that must have one spelling). */
#define HEX_LOWER_ONLY 0x1u

/* Decodes in (in_len characters) into exactly out_len bytes: false unless in_len == 2 * out_len
 * and every character is a hex digit (lowercase with HEX_LOWER_ONLY). out may be partly written
 * on failure. */
bool hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_len, unsigned flags);
/* The same for a NUL-terminated string; false when in is NULL. */
bool hex_decode_str(const char *in, uint8_t *out, size_t out_len, unsigned flags);

#endif
