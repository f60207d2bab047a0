/* Standard base64 (RFC 4648, with padding) for blobs on the command line and in the output. */
#ifndef P11KMS_CLI_BASE64_H
#define P11KMS_CLI_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p11kms-error.h"

/* Encodes len bytes into a NUL-terminated string. With secret the string is allocated in the
 * secure heap; free it with cli_base64_free(s, secret). */
p11kms_err cli_base64_encode(const uint8_t *in, size_t len, bool secret, char **out,
                             p11kms_error *err);
void cli_base64_free(char *s, bool secret);

/* Decodes text, ignoring ASCII whitespace (line-wrapped base64 files are common). Requires
 * correct padding. what names the input for messages. With secret the bytes are allocated in
 * the secure heap; free them with cli_bytes_free(p, len, secret). */
p11kms_err cli_base64_decode(const char *what, const char *text, size_t text_len, bool secret,
                             uint8_t **out, size_t *out_len, p11kms_error *err);

void cli_bytes_free(uint8_t *p, size_t len, bool secret);

#endif
