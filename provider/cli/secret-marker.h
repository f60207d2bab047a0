/* The placeholder that stands for a result's (or request's) one secret in a json-c tree: json-c
 * and stdio never hold the secret; the writer splices it in where the marker is. Shared by the
 * CLI's output, the CLI's requests to p11kmsd and p11kmsd's responses. */
#ifndef P11KMS_CLI_SECRET_MARKER_H
#define P11KMS_CLI_SECRET_MARKER_H

#include <stdbool.h>
#include <stddef.h>

/* 16 random bytes as hex after the prefix: unguessable, so no caller-chosen text (a key
 * description, an alias) can be mistaken for the marker. */
#define SECRET_MARKER_NONCE_LEN 16
#define SECRET_MARKER_SIZE(prefix) (sizeof(prefix) - 1 + 2 * SECRET_MARKER_NONCE_LEN + 1)

/* Writes prefix and the random hex digits to out (size bytes, at least
 * strlen(prefix) + 2 * SECRET_MARKER_NONCE_LEN + 1). False when the random generator fails or
 * out is too small (out is then empty). */
bool secret_marker_new(const char *prefix, char *out, size_t size);

#endif
