/* Encryption context: a set of string -> string pairs bound to a ciphertext as AES-GCM additional
 * authenticated data, and its canonical serialization (doc/design.md §2, the AWS Encryption SDK
 * layout):
 *
 *   empty context -> zero bytes
 *   otherwise u16 count (> 0), then count x { u16 key_len, key, u16 value_len, value },
 *   pairs sorted ascending by the key's bytes (plain byte compare); all integers big-endian.
 *
 * Rules enforced by every way of building a context: keys unique (exact bytes, case-sensitive);
 * keys and values strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF);
 * keys and values may be empty (the AWS Encryption SDK puts no lower bound on them); no U+0000,
 * because keys and values are handed out as C strings; serialized length <= 65,535 bytes.
 *
 * A context keeps its pairs in canonical order as they are added, so serializing it is one pass
 * with no sorting and no allocation. A NULL context is accepted wherever a const context is read
 * and means the empty context. A context is not locked: build it in one thread, then share it
 * read-only.
 *
 * Every failure is P11KMS_E_VALIDATION (or P11KMS_E_NO_MEMORY) with a one-line message naming
 * the offending key. enc_context_parse_canonical also raises P11KMS_E_VALIDATION: a caller
 * parsing bytes taken from a stored blob maps that to its own error. */
#ifndef P11KMS_ENC_CONTEXT_H
#define P11KMS_ENC_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "p11kms-error.h"

struct json_object;

#define ENC_CONTEXT_MAX_SERIALIZED 65535 /* largest canonical serialization, in bytes */

typedef struct enc_context enc_context;

/* One pair. key and value are NUL-terminated and contain no other NUL. */
typedef struct enc_context_pair {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} enc_context_pair;

/* --- building ------------------------------------------------------------------------------- */

/* An empty context; NULL when out of memory. */
enc_context *enc_context_new(void);
void enc_context_free(enc_context *ctx);
/* A deep copy (NULL src copies as empty). */
p11kms_err enc_context_copy(const enc_context *src, enc_context **out, p11kms_error *err);

/* Adds one pair; refuses a duplicate key, invalid UTF-8, U+0000 and a context that would
 * serialize to more than ENC_CONTEXT_MAX_SERIALIZED bytes. The context is unchanged on failure. */
p11kms_err enc_context_add(enc_context *ctx, const char *key, const char *value, p11kms_error *err);
/* The same with explicit lengths (a NUL byte inside is refused). */
p11kms_err enc_context_add_n(enc_context *ctx, const char *key, size_t key_len, const char *value,
                             size_t value_len, p11kms_error *err);

/* --- parsing text (CLI and API forms) -------------------------------------------------------- */

/* AWS CLI shorthand "k=v,k2=v2": pairs split on ',', each on its first '='; nothing is trimmed.
 * Refuses empty text, an empty piece ("a=1,,b=2", trailing ','), a piece without '=' and
 * duplicate keys. A value containing ',' needs the JSON form. */
p11kms_err enc_context_parse_shorthand(const char *text, enc_context **out, p11kms_error *err);
/* A JSON object of strings, {"k":"v",...} ({} is the empty context). Refuses malformed JSON
 * (strict RFC 8259), trailing text, non-string values, duplicate keys (after unescaping),
 * \u escapes of lone surrogates or of U+0000, raw control characters and invalid UTF-8. */
p11kms_err enc_context_parse_json(const char *text, enc_context **out, p11kms_error *err);
/* Either form, as the AWS CLI's --encryption-context: JSON when the first non-blank character
 * is '{', else shorthand. */
p11kms_err enc_context_parse_cli(const char *text, enc_context **out, p11kms_error *err);
/* From an already parsed json-c object whose values must all be strings. json-c has merged any
 * duplicate keys of the text by then: parse text with enc_context_parse_json to refuse them. */
p11kms_err enc_context_from_json_object(struct json_object *obj, enc_context **out,
                                        p11kms_error *err);

/* --- canonical bytes ------------------------------------------------------------------------ */

/* Length of the canonical serialization (0 for the empty context); O(1). */
size_t enc_context_serialized_len(const enc_context *ctx);
/* Appends the canonical serialization to a checked writer; false when it overflowed. This is the
 * hot-path form: no allocation, no sorting. */
bool enc_context_write(const enc_context *ctx, buf_writer *w);
/* Into a caller buffer of cap bytes (cap >= enc_context_serialized_len, at most
 * ENC_CONTEXT_MAX_SERIALIZED is ever needed); *len gets the length. */
p11kms_err enc_context_serialize(const enc_context *ctx, uint8_t *out, size_t cap, size_t *len,
                                 p11kms_error *err);
/* Into a malloc'ed buffer (free()); *out is NULL for the empty context. */
p11kms_err enc_context_serialize_alloc(const enc_context *ctx, uint8_t **out, size_t *len,
                                       p11kms_error *err);
/* Strict parse of canonical bytes: refuses an explicit count of 0, truncation, trailing bytes,
 * keys unsorted or repeated, lengths overrunning the input, invalid UTF-8 and U+0000. */
p11kms_err enc_context_parse_canonical(const uint8_t *bytes, size_t len, enc_context **out,
                                       p11kms_error *err);

/* --- reading -------------------------------------------------------------------------------- */

size_t enc_context_count(const enc_context *ctx);
/* The pairs in canonical order (enc_context_count of them); NULL when empty. Valid until the
 * context is changed or freed. */
const enc_context_pair *enc_context_pairs(const enc_context *ctx);
/* The value of key (exact match), or NULL. */
const char *enc_context_get(const enc_context *ctx, const char *key);
/* Exact, case-sensitive, order-independent equality (NULL equals an empty context). */
bool enc_context_equal(const enc_context *a, const enc_context *b);
/* A new json-c object {"k":"v",...} in canonical order; NULL when out of memory. */
struct json_object *enc_context_to_json(const enc_context *ctx);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. U+0000 is
 * valid UTF-8 here; contexts refuse it separately. */
bool enc_context_utf8_valid(const uint8_t *s, size_t len);

#endif
