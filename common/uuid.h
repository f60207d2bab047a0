/* RFC 4122 UUIDs as p11kms writes them: key ids and request ids, in lowercase
 * 8-4-4-4-12 text. The random bytes come from the caller (the token or OpenSSL): common/ has no
 * random source of its own. */
#ifndef P11KMS_COMMON_UUID_H
#define P11KMS_COMMON_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define UUID_LEN 16
#define UUID_TEXT_LEN 36

/* Makes 16 random bytes a version-4 (random) UUID: sets the version and variant bits. */
void uuid_mark_v4(uint8_t id[UUID_LEN]);
/* Lowercase 8-4-4-4-12 text and a NUL. */
void uuid_format(const uint8_t id[UUID_LEN], char out[UUID_TEXT_LEN + 1]);
/* Exactly 8-4-4-4-12 hex digits (either case); false otherwise (out may be partly written). */
bool uuid_parse(const char *text, uint8_t out[UUID_LEN]);
/* The text uuid_format would write for what uuid_parse reads (lowercase), in one pass: a key
 * reference is canonicalized on every request. False, out partly written, where uuid_parse
 * would refuse. */
bool uuid_canonical(const char *text, char out[UUID_TEXT_LEN + 1]);

#endif
