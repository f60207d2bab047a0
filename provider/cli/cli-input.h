/* Parameter values as the AWS CLI takes them: blobs from "fileb://PATH" (raw bytes),
 * "file://PATH" (the file's text is the value, so base64 for a blob) or a base64 literal; text
 * parameters literally or from "file://PATH"; tags in shorthand or JSON form. */
#ifndef P11KMS_CLI_INPUT_H
#define P11KMS_CLI_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p11kms.h"

/* The largest file the CLI reads: far above any blob or plaintext the service accepts. */
#define CLI_MAX_FILE ((size_t)1 << 20)

/* Bytes from a blob parameter. Secret bytes live in the secure heap. */
typedef struct cli_bytes {
    uint8_t *data;
    size_t len;
    bool secret;
} cli_bytes;

void cli_bytes_clear(cli_bytes *b);

/* Reads at most CLI_MAX_FILE bytes of path; option names the parameter for messages. */
p11kms_err cli_read_file(const char *option, const char *path, bool secret, cli_bytes *out,
                         p11kms_error *err);

/* A blob parameter (--plaintext, --ciphertext-blob, ...). */
p11kms_err cli_blob_param(const char *option, const char *value, bool secret, cli_bytes *out,
                          p11kms_error *err);

/* A text parameter: the value itself, or the text of the file named by "file://PATH" (one
 * trailing newline removed). *out is either value or *owned (free *owned with free()). */
p11kms_err cli_text_param(const char *option, const char *value, const char **out, char **owned,
                          p11kms_error *err);

/* An encryption context option (shorthand "k=v,k2=v2", JSON object, or file://). NULL value
 * gives NULL (the empty context). */
p11kms_err cli_context_param(const char *option, const char *value, p11kms_context **out,
                             p11kms_error *err);

/* Tags from --tags values: each "TagKey=k,TagValue=v", or one JSON list
 * [{"TagKey":"k","TagValue":"v"},...], or file:// holding the JSON list. */
typedef struct cli_tags {
    p11kms_tag *tags;
    size_t count;
    char **strings; /* owned copies the tags point into */
    size_t string_count;
} cli_tags;

p11kms_err cli_tags_param(const char *option, const char *const *values, size_t n, cli_tags *out,
                          p11kms_error *err);
void cli_tags_clear(cli_tags *t);

/* Tag keys from --tag-keys values: words, or one JSON list of strings. */
typedef struct cli_strings {
    const char **items;
    size_t count;
    char **owned;
    size_t owned_count;
} cli_strings;

p11kms_err cli_tag_keys_param(const char *option, const char *const *values, size_t n,
                              cli_strings *out, p11kms_error *err);
void cli_strings_clear(cli_strings *s);

#endif
