/* AWS Signature Version 4 verification of one HTTP request (the daemon's TCP authentication).
 *
 * Pure: no I/O, no globals, no clock (the caller passes "now"); the only outside call is the
 * signing-key callback, which derives kSigning for an access key id (p11kms_sigv4_signing_key:
 * the first HMAC runs in the token). What is checked, in this order (the first failure wins):
 *   1. exactly one Authorization header "AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/
 *      SERVICE/aws4_request, SignedHeaders=h1;h2, Signature=<64 lowercase hex>" (components in
 *      any order, each once, nothing else); presigned URLs (X-Amz-Signature in the query) and
 *      session tokens (X-Amz-Security-Token) are refused;
 *      (the canonical query decodes and re-encodes each name and value as AWS documents; botocore
 *      signs the query as sent, which is the same for what botocore itself encodes)
 *   2. SignedHeaders: lowercase, strictly sorted, unique; it names host and x-amz-date, and every
 *      header of the request that names the operation or the payload (content-type, and every
 *      x-amz-* header, e.g. x-amz-target); each signed header is present in the request;
 *   3. x-amz-date is YYYYMMDDTHHMMSSZ, a real UTC time, its date equals the credential scope's,
 *      and it lies within 5 minutes of now, in both directions;
 *   4. the scope's region is the expected region and its service "kms";
 *   5. x-amz-content-sha256, when present, is the SHA-256 of the body (UNSIGNED-PAYLOAD refused);
 *   6. the access key id is known (callback), and the signature, recomputed over the canonical
 *      request exactly as AWS documents it (canonical URI of the raw path, sorted canonical query,
 *      canonical headers with trimmed and space-collapsed values, SHA-256 of the body), is equal
 *      (CRYPTO_memcmp over the 32 bytes).
 * Success gives the access key id and the principal name stored with the credential; the policy
 * principal of the caller is "sigv4:<access key id>" (sigv4_result.principal), never the
 * principal name, which is descriptive only.
 *
 * Errors. The KMS service model of botocore has no authentication errors: AWS answers them with
 * its common error classes, which SDKs surface as ClientError with that code. p11kms does the
 * same, all with HTTP 400 as AWS JSON services do:
 *   MissingAuthenticationTokenException  no Authorization header
 *   IncompleteSignatureException         malformed Authorization header, unsigned or missing
 *                                        required headers, malformed x-amz-date
 *   InvalidSignatureException            signature mismatch, expired or future x-amz-date, wrong
 *                                        scope date, region or service, payload hash mismatch
 *   UnrecognizedClientException          unknown (or deleted) access key id, or a session
 *                                        token (X-Amz-Security-Token: not supported)
 *   KMSInternalException (500)           the signing key could not be derived (token failure)
 * Every failure has its own message (sigv4_result.message); messages name what the client sent
 * that was wrong, never a key, a signature the server computed or the canonical request. */
#ifndef P11KMS_DAEMON_SIGV4_H
#define P11KMS_DAEMON_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/types.h>

#include "p11kms-error.h"

#define SIGV4_MAX_SKEW_SECONDS 300
#define SIGV4_ACCESS_KEY_ID_MAX 128
#define SIGV4_PRINCIPAL_NAME_MAX 128
#define SIGV4_AUTHORIZATION_MAX 4096
#define SIGV4_SIGNED_HEADERS_MAX 64

/* One header as received (name in any case; value untrimmed). Pointers with lengths, so that
 * libmicrohttpd's MHD_get_connection_values can feed them directly. */
typedef struct sigv4_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sigv4_header;

typedef struct sigv4_request {
    const char *method; /* "POST" */
    const char *path;   /* the raw (still percent-encoded) path of the request line, "/" */
    const char *query;  /* the raw query string without '?'; NULL or "" when none */
    const sigv4_header *headers;
    size_t header_count;
    const uint8_t *body;
    size_t body_len;
} sigv4_request;

/* Derives kSigning = HMAC chain("AWS4" + secret, date, region, service, "aws4_request") for an
 * access key id and copies the principal name stored with the credential into principal_name.
 * Returns P11KMS_OK, P11KMS_E_NOT_FOUND for an unknown access key id, anything else for a
 * failure of the server (token). */
typedef p11kms_err (*sigv4_signing_key_fn)(void *arg, const char *access_key_id,
                                           const char *yyyymmdd, const char *region,
                                           const char *service, uint8_t key[32],
                                           char *principal_name, size_t principal_name_size,
                                           p11kms_error *err);

typedef struct sigv4_expect {
    const char *region;  /* the daemon's region, e.g. "us-east-1" */
    const char *service; /* "kms" */
    time_t now;
    OSSL_LIB_CTX *libctx; /* the provider's private context (SHA-256, HMAC); NULL: default */
    sigv4_signing_key_fn signing_key;
    void *arg;
} sigv4_expect;

typedef enum sigv4_status {
    SIGV4_OK = 0,
    SIGV4_MISSING,    /* MissingAuthenticationTokenException */
    SIGV4_INCOMPLETE, /* IncompleteSignatureException */
    SIGV4_INVALID,    /* InvalidSignatureException */
    SIGV4_UNKNOWN_KEY /* UnrecognizedClientException */,
    SIGV4_INTERNAL /* KMSInternalException */
} sigv4_status;

typedef struct sigv4_result {
    sigv4_status status;
    int http_status;         /* 200 on success, else 400 (500 for SIGV4_INTERNAL) */
    const char *error_class; /* NULL on success */
    char message[256];       /* on failure: what was wrong */
    char access_key_id[SIGV4_ACCESS_KEY_ID_MAX + 1];
    char principal_name[SIGV4_PRINCIPAL_NAME_MAX + 1];
    char principal[SIGV4_ACCESS_KEY_ID_MAX + 7]; /* "sigv4:" + access key id */
} sigv4_result;

/* Verifies req; fills *res and returns res->status. */
sigv4_status sigv4_verify(const sigv4_request *req, const sigv4_expect *expect, sigv4_result *res);

/* The parsed Authorization header. */
typedef struct sigv4_authorization {
    char access_key_id[SIGV4_ACCESS_KEY_ID_MAX + 1];
    char date[9]; /* YYYYMMDD */
    char region[65];
    char service[33];
    char signed_headers[1024];                     /* as sent: "content-type;host;x-amz-date" */
    char names[1024];                              /* the same, split at the semicolons */
    const char *headers[SIGV4_SIGNED_HEADERS_MAX]; /* into names */
    size_t header_count;
    uint8_t signature[32];
} sigv4_authorization;

/* Parses one Authorization header value (exposed for the fuzz driver and tests). Returns
 * SIGV4_OK or SIGV4_INCOMPLETE with the reason in why. */
sigv4_status sigv4_parse_authorization(const char *value, size_t len, sigv4_authorization *out,
                                       char *why, size_t why_size);

/* "IncompleteSignatureException" etc.; NULL for SIGV4_OK. */
const char *sigv4_error_class(sigv4_status status);

#endif
