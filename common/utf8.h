/* UTF-8 decoding shared by the YAML loader, the glob matcher and request checks: one definition
 * of "well-formed" (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
#ifndef P11KMS_COMMON_UTF8_H
#define P11KMS_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed sequence at s (1-4), or 0 if s does not start one. avail >= 1. */
size_t policy_utf8_sequence_len(const unsigned char *s, size_t avail);
/* Code point of a sequence already known to be well formed and n bytes long. */
uint32_t policy_utf8_code_point(const unsigned char *s, size_t n);
/* Whole string well formed? */
bool policy_utf8_valid(const char *s, size_t len);
/* Well formed and free of control characters (C0, DEL, C1): safe to print on one line. */
bool policy_utf8_printable(const char *s, size_t len);

/* Copies s for an error message: at most POLICY_QUOTE_MAX bytes, control characters as '?', cut at
 * a character boundary with "..." appended. */
#define POLICY_QUOTE_MAX 64
typedef struct policy_quoted {
    char text[POLICY_QUOTE_MAX + 4];
} policy_quoted;
policy_quoted policy_quote(const char *s);

#endif
