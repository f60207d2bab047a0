/* Client mode: each command's parsed options become the operation's JSON request, sent with
 * libcurl; the response becomes the command's output, errors their classes and exit codes. */
#include "config.h"

#include "cli-remote.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "cli-base64.h"
#include "secret-marker.h"

/* KMS responses are small; a bigger one is not from p11kmsd. */
#define MAX_RESPONSE ((size_t)1 << 20)
#define LIST_PAGE 1000 /* the model's largest Limit */

/* --- endpoints ---------------------------------------------------------------------------------
 */

typedef struct endpoint {
    char url[1024];         /* what curl connects to */
    char socket_path[1024]; /* unix: endpoints */
    bool tls;
} endpoint;

static bool loopback_host(const char *host)
{
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* "host:port" (host may be "[v6]") followed by nothing or "/". */
static p11kms_err split_authority(const char *text, const char *scheme, char *host, size_t host_cap,
                                  const char *raw, p11kms_error *err)
{
    size_t len = strlen(text);
    if (len > 0 && text[len - 1] == '/')
        len--;
    const char *colon = NULL;
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close != NULL && (size_t)(close + 1 - text) < len && close[1] == ':')
            colon = close + 1;
    } else {
        colon = memchr(text, ':', len);
    }
    size_t host_len = colon != NULL ? (size_t)(colon - text) : len;
    bool ok = host_len > 0 && host_len < host_cap && memchr(text, '/', len) == NULL &&
              memchr(text, '@', len) == NULL && memchr(text, '?', len) == NULL;
    if (ok && colon != NULL) {
        size_t digits = len - host_len - 1;
        ok = digits > 0 && digits <= 5;
        unsigned long port = 0;
        for (size_t i = 0; ok && i < digits; i++) {
            ok = colon[1 + i] >= '0' && colon[1 + i] <= '9';
            port = port * 10 + (unsigned long)(colon[1 + i] - '0');
        }
        ok = ok && port >= 1 && port <= 65535;
    }
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "endpoint '%.200s': expected %s://HOST[:PORT] with no path", raw,
                            scheme);
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    return P11KMS_OK;
}

static p11kms_err parse_endpoint(const char *raw, endpoint *e, p11kms_error *err)
{
    memset(e, 0, sizeof(*e));
    char host[256];
    if (strncmp(raw, "unix:", 5) == 0) {
        const char *path = raw + 5;
        if (path[0] != '/' || strlen(path) >= sizeof(e->socket_path))
            return P11KMS_RAISE(
                err, P11KMS_E_VALIDATION,
                "endpoint '%.200s': expected unix:/ABSOLUTE/PATH of p11kmsd's socket", raw);
        snprintf(e->socket_path, sizeof(e->socket_path), "%s", path);
        snprintf(e->url, sizeof(e->url), "http://localhost/");
        return P11KMS_OK;
    }
    if (strncmp(raw, "https://", 8) == 0) {
        p11kms_err rc = split_authority(raw + 8, "https", host, sizeof(host), raw, err);
        if (rc != P11KMS_OK)
            return rc;
        e->tls = true;
    } else if (strncmp(raw, "http://", 7) == 0) {
        p11kms_err rc = split_authority(raw + 7, "http", host, sizeof(host), raw, err);
        if (rc != P11KMS_OK)
            return rc;
        if (!loopback_host(host))
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "endpoint '%.200s': plain http is only for loopback (127.0.0.1, "
                                "[::1], localhost); use https:// or unix:",
                                raw);
    } else {
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "endpoint '%.200s': expected unix:/PATH, https://HOST:PORT or "
                            "http://127.0.0.1:PORT",
                            raw);
    }
    if (strlen(raw) + 2 > sizeof(e->url))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "endpoint '%.200s': too long", raw);
    size_t n = strlen(raw);
    snprintf(e->url, sizeof(e->url), "%s%s", raw, raw[n - 1] == '/' ? "" : "/");
    return P11KMS_OK;
}

bool cli_remote_applies(const cli_command *cmd)
{
    return strcmp(cmd->name, "policy check") != 0 && strcmp(cmd->name, "audit show") != 0;
}

p11kms_err cli_remote_endpoint(const cli *c, char **out, p11kms_error *err)
{
    *out = NULL;
    const char *e = c->globals.endpoint;
    if (e == NULL && (e = getenv("P11KMS_ENDPOINT")) != NULL && e[0] == '\0')
        e = NULL;
    if (e != NULL) {
        if ((*out = strdup(e)) == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        return P11KMS_OK;
    }
    return p11kms_config_endpoint(c->globals.config_path, out, err);
}

/* --- secure buffers ----------------------------------------------------------------------------
 */

/* Request and response bodies may hold a plaintext: they live in the secure heap. */
typedef struct sbuf {
    char *data;
    size_t len, cap;
    bool too_big;
} sbuf;

static void sbuf_clear(sbuf *b)
{
    if (b->data != NULL)
        OPENSSL_secure_clear_free(b->data, b->cap);
    memset(b, 0, sizeof(*b));
}

static bool sbuf_append(sbuf *b, const char *p, size_t n)
{
    if (b->data == NULL || b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = OPENSSL_secure_malloc(cap);
        if (grown == NULL)
            return false;
        if (b->data != NULL) {
            memcpy(grown, b->data, b->len);
            OPENSSL_secure_clear_free(b->data, b->cap);
        }
        b->data = grown;
        b->cap = cap;
    }
    if (n > 0) /* p may be NULL for an empty piece */
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    sbuf *b = arg;
    size_t bytes = size * n;
    if (b->len + bytes > MAX_RESPONSE) {
        b->too_big = true;
        return 0;
    }
    return sbuf_append(b, p, bytes) ? bytes : 0;
}

/* --- the request
 * --------------------------------------------------------------------------------*/

typedef struct request {
    json_object *root;
    char *secret_b64; /* the request's one secret (Encrypt's Plaintext), secure heap */
    char marker[SECRET_MARKER_SIZE("p11kms-secret-")]; /* stands in for it in the JSON tree */
    bool failed;
} request;

static void put(request *r, const char *key, json_object *v)
{
    if (v == NULL || json_object_object_add(r->root, key, v) != 0) {
        json_object_put(v);
        r->failed = true;
    }
}

static void put_str(request *r, const char *key, const char *value)
{
    if (value != NULL)
        put(r, key, json_object_new_string(value));
}

/* An unsigned option, checked as local mode checks it (the daemon checks the range again). */
static p11kms_err put_uint(request *r, const cli_args *a, const char *option, const char *key,
                           unsigned long min, p11kms_error *err)
{
    const char *text = cli_arg(a, option);
    unsigned long v;
    if (text == NULL)
        return P11KMS_OK;
    p11kms_err rc = cli_parse_unsigned(option, text, min, INT_MAX, &v, err);
    if (rc == P11KMS_OK)
        put(r, key, json_object_new_int64((int64_t)v));
    return rc;
}

static p11kms_err put_text(request *r, const cli_args *a, const char *option, const char *key,
                           p11kms_error *err)
{
    const char *value = cli_arg(a, option);
    if (value == NULL)
        return P11KMS_OK;
    char flag[64];
    snprintf(flag, sizeof(flag), "--%s", option);
    const char *text;
    char *owned;
    p11kms_err rc = cli_text_param(flag, value, &text, &owned, err);
    if (rc == P11KMS_OK)
        put_str(r, key, text);
    free(owned);
    return rc;
}

static p11kms_err put_context(request *r, const cli_args *a, const char *option, const char *key,
                              p11kms_error *err)
{
    char flag[64];
    snprintf(flag, sizeof(flag), "--%s", option);
    p11kms_context *ctx = NULL;
    p11kms_err rc = cli_context_param(flag, cli_arg(a, option), &ctx, err);
    if (rc != P11KMS_OK || ctx == NULL)
        return rc;
    json_object *o = json_object_new_object();
    for (size_t i = 0; o != NULL && i < p11kms_context_count(ctx); i++)
        if (json_object_object_add(o, p11kms_context_key(ctx, i),
                                   json_object_new_string(p11kms_context_value(ctx, i))) != 0)
            r->failed = true;
    put(r, key, o);
    p11kms_context_free(ctx);
    return P11KMS_OK;
}

static p11kms_err put_blob(request *r, const cli_args *a, const char *option, const char *key,
                           bool secret, p11kms_error *err)
{
    char flag[64];
    snprintf(flag, sizeof(flag), "--%s", option);
    cli_bytes bytes = {0};
    char *b64 = NULL;
    p11kms_err rc = cli_blob_param(flag, cli_arg(a, option), secret, &bytes, err);
    if (rc == P11KMS_OK)
        rc = cli_base64_encode(bytes.data, bytes.len, secret, &b64, err);
    cli_bytes_clear(&bytes);
    if (rc != P11KMS_OK)
        return rc;
    if (!secret) {
        put_str(r, key, b64);
        cli_base64_free(b64, false);
        return P11KMS_OK;
    }
    if (r->secret_b64 != NULL ||
        !secret_marker_new("p11kms-secret-", r->marker, sizeof(r->marker))) {
        cli_base64_free(b64, true);
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "cannot build the request");
    }
    r->secret_b64 = b64;
    put_str(r, key, r->marker);
    return P11KMS_OK;
}

static p11kms_err put_tags(request *r, const cli_args *a, p11kms_error *err)
{
    size_t n;
    const char *const *values = cli_arg_list(a, "tags", &n);
    if (n == 0)
        return P11KMS_OK;
    cli_tags tags = {0};
    p11kms_err rc = cli_tags_param("--tags", values, n, &tags, err);
    if (rc != P11KMS_OK)
        return rc;
    json_object *list = json_object_new_array();
    for (size_t i = 0; list != NULL && i < tags.count; i++) {
        json_object *t = json_object_new_object();
        if (t == NULL ||
            json_object_object_add(t, "TagKey", json_object_new_string(tags.tags[i].key)) != 0 ||
            json_object_object_add(t, "TagValue", json_object_new_string(tags.tags[i].value)) !=
                0 ||
            json_object_array_add(list, t) != 0) {
            json_object_put(t);
            r->failed = true;
        }
    }
    put(r, "Tags", list);
    cli_tags_clear(&tags);
    return P11KMS_OK;
}

static p11kms_err put_tag_keys(request *r, const cli_args *a, p11kms_error *err)
{
    size_t n;
    const char *const *values = cli_arg_list(a, "tag-keys", &n);
    cli_strings keys = {0};
    p11kms_err rc = cli_tag_keys_param("--tag-keys", values, n, &keys, err);
    if (rc != P11KMS_OK)
        return rc;
    json_object *list = json_object_new_array();
    for (size_t i = 0; list != NULL && i < keys.count; i++)
        if (json_object_array_add(list, json_object_new_string(keys.items[i])) != 0)
            r->failed = true;
    put(r, "TagKeys", list);
    cli_strings_clear(&keys);
    return P11KMS_OK;
}

/* --- commands ----------------------------------------------------------------------------------
 */

typedef p11kms_err (*build_fn)(request *r, const cli *c, p11kms_error *err);

static p11kms_err b_key(request *r, const cli *c, p11kms_error *err)
{
    (void)err;
    put_str(r, "KeyId", cli_arg(&c->args, "key-id"));
    return P11KMS_OK;
}

static p11kms_err b_none(request *r, const cli *c, p11kms_error *err)
{
    (void)r, (void)c, (void)err;
    return P11KMS_OK;
}

static p11kms_err b_create_key(request *r, const cli *c, p11kms_error *err)
{
    put_str(r, "KeySpec", cli_arg(&c->args, "key-spec"));
    put_str(r, "KeyUsage", cli_arg(&c->args, "key-usage"));
    put_str(r, "Origin", cli_arg(&c->args, "origin"));
    p11kms_err rc = put_text(r, &c->args, "description", "Description", err);
    return rc != P11KMS_OK ? rc : put_tags(r, &c->args, err);
}

static p11kms_err b_schedule(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    return put_uint(r, &c->args, "pending-window-in-days", "PendingWindowInDays", 1, err);
}

static p11kms_err b_description(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    return put_text(r, &c->args, "description", "Description", err);
}

static p11kms_err b_enable_rotation(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    return put_uint(r, &c->args, "rotation-period-in-days", "RotationPeriodInDays", 1, err);
}

static p11kms_err b_tag(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    return put_tags(r, &c->args, err);
}

static p11kms_err b_untag(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    return put_tag_keys(r, &c->args, err);
}

static p11kms_err b_alias(request *r, const cli *c, p11kms_error *err)
{
    (void)err;
    put_str(r, "AliasName", cli_arg(&c->args, "alias-name"));
    put_str(r, "TargetKeyId", cli_arg(&c->args, "target-key-id"));
    return P11KMS_OK;
}

static p11kms_err b_encrypt(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    p11kms_err rc = put_blob(r, &c->args, "plaintext", "Plaintext", true, err);
    return rc != P11KMS_OK
               ? rc
               : put_context(r, &c->args, "encryption-context", "EncryptionContext", err);
}

static p11kms_err b_decrypt(request *r, const cli *c, p11kms_error *err)
{
    b_key(r, c, err);
    p11kms_err rc = put_blob(r, &c->args, "ciphertext-blob", "CiphertextBlob", false, err);
    return rc != P11KMS_OK
               ? rc
               : put_context(r, &c->args, "encryption-context", "EncryptionContext", err);
}

static p11kms_err b_re_encrypt(request *r, const cli *c, p11kms_error *err)
{
    put_str(r, "SourceKeyId", cli_arg(&c->args, "source-key-id"));
    put_str(r, "DestinationKeyId", cli_arg(&c->args, "destination-key-id"));
    p11kms_err rc = put_blob(r, &c->args, "ciphertext-blob", "CiphertextBlob", false, err);
    if (rc == P11KMS_OK)
        rc = put_context(r, &c->args, "source-encryption-context", "SourceEncryptionContext", err);
    if (rc == P11KMS_OK)
        rc = put_context(r, &c->args, "destination-encryption-context",
                         "DestinationEncryptionContext", err);
    return rc;
}

static p11kms_err b_data_key(request *r, const cli *c, p11kms_error *err)
{
    const char *spec = cli_arg(&c->args, "key-spec");
    if ((spec == NULL) == (cli_arg(&c->args, "number-of-bytes") == NULL))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "%s: give exactly one of --key-spec and --number-of-bytes (see "
                            "'p11kms %s --help')",
                            c->command->name, c->command->name);
    b_key(r, c, err);
    put_str(r, "KeySpec", spec);
    p11kms_err rc = put_uint(r, &c->args, "number-of-bytes", "NumberOfBytes", 1, err);
    return rc != P11KMS_OK
               ? rc
               : put_context(r, &c->args, "encryption-context", "EncryptionContext", err);
}

static p11kms_err b_random(request *r, const cli *c, p11kms_error *err)
{
    return put_uint(r, &c->args, "number-of-bytes", "NumberOfBytes", 1, err);
}

typedef struct remote_command {
    const char *command;   /* the CLI's name */
    const char *operation; /* X-Amz-Target's operation */
    build_fn build;
    const char *list; /* paginated operations: the member holding the items */
} remote_command;

static const remote_command remote_commands[] = {
    {"create-key", "CreateKey", b_create_key, NULL},
    {"describe-key", "DescribeKey", b_key, NULL},
    {"list-keys", "ListKeys", b_none, "Keys"},
    {"enable-key", "EnableKey", b_key, NULL},
    {"disable-key", "DisableKey", b_key, NULL},
    {"schedule-key-deletion", "ScheduleKeyDeletion", b_schedule, NULL},
    {"cancel-key-deletion", "CancelKeyDeletion", b_key, NULL},
    {"update-key-description", "UpdateKeyDescription", b_description, NULL},
    {"rotate-key-on-demand", "RotateKeyOnDemand", b_key, NULL},
    {"enable-key-rotation", "EnableKeyRotation", b_enable_rotation, NULL},
    {"disable-key-rotation", "DisableKeyRotation", b_key, NULL},
    {"get-key-rotation-status", "GetKeyRotationStatus", b_key, NULL},
    {"list-key-rotations", "ListKeyRotations", b_key, "Rotations"},
    {"tag-resource", "TagResource", b_tag, NULL},
    {"untag-resource", "UntagResource", b_untag, NULL},
    {"list-resource-tags", "ListResourceTags", b_key, "Tags"},
    {"create-alias", "CreateAlias", b_alias, NULL},
    {"update-alias", "UpdateAlias", b_alias, NULL},
    {"delete-alias", "DeleteAlias", b_alias, NULL},
    {"list-aliases", "ListAliases", b_key, "Aliases"},
    {"encrypt", "Encrypt", b_encrypt, NULL},
    {"decrypt", "Decrypt", b_decrypt, NULL},
    {"re-encrypt", "ReEncrypt", b_re_encrypt, NULL},
    {"generate-data-key", "GenerateDataKey", b_data_key, NULL},
    {"generate-data-key-without-plaintext", "GenerateDataKeyWithoutPlaintext", b_data_key, NULL},
    {"generate-random", "GenerateRandom", b_random, NULL},
};

/* --- transport ---------------------------------------------------------------------------------
 */

typedef struct conn {
    CURL *curl;
    endpoint ep;
    const char *raw;
} conn;

static p11kms_err conn_open(conn *k, const cli *c, const char *raw, p11kms_error *err)
{
    memset(k, 0, sizeof(*k));
    k->raw = raw;
    p11kms_err rc = parse_endpoint(raw, &k->ep, err);
    if (rc != P11KMS_OK)
        return rc;
    const cli_globals *g = &c->globals;
    if (!k->ep.tls && (g->ca_bundle || g->client_cert || g->client_key))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "--ca-bundle, --client-cert and --client-key are for https:// "
                            "endpoints, not '%.200s'",
                            raw);
    if ((g->client_cert == NULL) != (g->client_key == NULL))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "give --client-cert and --client-key together");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (k->curl = curl_easy_init()) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "cannot initialise libcurl");
    CURL *h = k->curl;
    bool ok =
        curl_easy_setopt(h, CURLOPT_URL, k->ep.url) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, k->ep.tls ? "https" : "http") == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L) == CURLE_OK &&
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
    if (ok && k->ep.socket_path[0] != '\0')
        ok = curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, k->ep.socket_path) == CURLE_OK;
    if (ok && k->ep.tls) {
        ok = curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
        if (ok && g->ca_bundle != NULL)
            ok = curl_easy_setopt(h, CURLOPT_CAINFO, g->ca_bundle) == CURLE_OK;
        if (ok && g->client_cert != NULL)
            ok = curl_easy_setopt(h, CURLOPT_SSLCERT, g->client_cert) == CURLE_OK &&
                 curl_easy_setopt(h, CURLOPT_SSLKEY, g->client_key) == CURLE_OK;
    }
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "libcurl refused an option");
    return P11KMS_OK;
}

static void conn_close(conn *k)
{
    if (k->curl != NULL)
        curl_easy_cleanup(k->curl);
    k->curl = NULL;
}

/* The error classes of the model p11kms has no code of its own for. */
static p11kms_err code_of_class(const char *klass)
{
    for (int rc = P11KMS_E_VALIDATION; rc < P11KMS_E__COUNT; rc++)
        if (strcmp(p11kms_error_class((p11kms_err)rc), klass) == 0)
            return (p11kms_err)rc;
    static const struct {
        const char *klass;
        p11kms_err rc;
    } others[] = {
        {"MissingAuthenticationTokenException", P11KMS_E_ACCESS_DENIED},
        {"UnrecognizedClientException", P11KMS_E_ACCESS_DENIED},
        {"InvalidSignatureException", P11KMS_E_ACCESS_DENIED},
        {"IncompleteSignature", P11KMS_E_ACCESS_DENIED},
        {"InvalidMarkerException", P11KMS_E_VALIDATION},
        {"InvalidKeyUsageException", P11KMS_E_VALIDATION},
        {"SerializationException", P11KMS_E_VALIDATION},
        {"UnknownOperationException", P11KMS_E_UNSUPPORTED},
        {"DryRunOperationException", P11KMS_E_VALIDATION},
        {"RequestEntityTooLargeException", P11KMS_E_VALIDATION},
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (strcmp(others[i].klass, klass) == 0)
            return others[i].rc;
    return P11KMS_E_INTERNAL;
}

/* The base64 text of "Plaintext" moves into the secure heap and is overwritten in body, so
 * that json-c never holds it. */
static p11kms_err take_plaintext(sbuf *body, char **secret, p11kms_error *err)
{
    *secret = NULL;
    static const char name[] = "\"Plaintext\"";
    char *p = strstr(body->data, name);
    if (p == NULL)
        return P11KMS_OK;
    p += sizeof(name) - 1;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != ':')
        return P11KMS_OK;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != '"')
        return P11KMS_OK;
    char *end = strchr(p, '"');
    if (end == NULL)
        return P11KMS_OK; /* json-c reports the malformed body */
    size_t n = (size_t)(end - p);
    char *s = OPENSSL_secure_malloc(n + 1);
    if (s == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\\') /* "\/" in a base64 string */
            s[k++] = p[i];
    s[k] = '\0';
    memset(p, 'A', n);
    *secret = s;
    return P11KMS_OK;
}

static void free_secret(char *s)
{
    if (s != NULL)
        OPENSSL_secure_clear_free(s, strlen(s) + 1);
}

static p11kms_err remote_error(const conn *k, long status, json_object *resp, p11kms_error *err)
{
    json_object *t = NULL, *m = NULL;
    const char *klass = NULL, *message = NULL;
    if (resp != NULL && json_object_object_get_ex(resp, "__type", &t))
        klass = json_object_get_string(t);
    if (resp != NULL && (json_object_object_get_ex(resp, "message", &m) ||
                         json_object_object_get_ex(resp, "Message", &m)))
        message = json_object_get_string(m);
    if (klass == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "%.200s answered HTTP %ld without a KMS error (is it p11kmsd?)", k->raw,
                            status);
    const char *hash = strrchr(klass, '#'); /* "prefix#ClassName" is allowed by the protocol */
    if (hash != NULL)
        klass = hash + 1;
    p11kms_err rc = code_of_class(klass);
    if (strcmp(p11kms_error_class(rc), klass) == 0)
        return P11KMS_RAISE(err, rc, "%s", message != NULL ? message : klass);
    return P11KMS_RAISE(err, rc, "p11kmsd: %.64s: %s", klass, message != NULL ? message : "");
}

/* One call: *resp is the parsed response (never holding the plaintext, which is in *secret). */
static p11kms_err call(conn *k, const char *operation, request *r, json_object **resp,
                       char **secret, p11kms_error *err)
{
    *resp = NULL;
    *secret = NULL;
    sbuf req = {0}, body = {0};
    struct curl_slist *headers = NULL;
    p11kms_err rc = P11KMS_OK;
    size_t len;
    const char *text = json_object_to_json_string_length(
        r->root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    const char *mark = r->secret_b64 != NULL ? strstr(text, r->marker) : NULL;
    bool built = text != NULL;
    if (built && mark != NULL)
        built = sbuf_append(&req, text, (size_t)(mark - text)) &&
                sbuf_append(&req, r->secret_b64, strlen(r->secret_b64)) &&
                sbuf_append(&req, mark + strlen(r->marker),
                            len - (size_t)(mark - text) - strlen(r->marker));
    else if (built)
        built = sbuf_append(&req, text, len);
    char target[128];
    snprintf(target, sizeof(target), "X-Amz-Target: TrentService.%s", operation);
    struct curl_slist *h1 = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.1");
    struct curl_slist *h2 = h1 != NULL ? curl_slist_append(h1, target) : NULL;
    struct curl_slist *h3 = h2 != NULL ? curl_slist_append(h2, "Expect:") : NULL;
    headers = h3 != NULL ? h3 : h2 != NULL ? h2 : h1;
    if (!built || r->failed || h3 == NULL) {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory building the request");
        goto out;
    }
    CURL *h = k->curl;
    char curl_error[CURL_ERROR_SIZE] = "";
    if (curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.data) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req.len) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_error) != CURLE_OK) {
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "libcurl refused an option");
        goto out;
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (cc != CURLE_OK) {
        if (body.too_big)
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "%.200s sent a response over %zu bytes",
                              k->raw, MAX_RESPONSE);
        else
            rc = P11KMS_RAISE(err, P11KMS_E_KEY_UNAVAILABLE, "cannot reach p11kmsd at %.200s: %s",
                              k->raw, curl_error[0] != '\0' ? curl_error : curl_easy_strerror(cc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (body.data == NULL && !sbuf_append(&body, "", 0)) {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of secure memory");
        goto out;
    }
    if (status == 200 && (rc = take_plaintext(&body, secret, err)) != P11KMS_OK)
        goto out;
    json_object *parsed = json_tokener_parse(body.data);
    if (parsed != NULL && !json_object_is_type(parsed, json_type_object)) {
        json_object_put(parsed);
        parsed = NULL;
    }
    if (status != 200) {
        rc = remote_error(k, status, parsed, err);
        json_object_put(parsed);
        goto out;
    }
    if (parsed == NULL) {
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                          "%.200s sent a response that is not a JSON "
                          "object",
                          k->raw);
        goto out;
    }
    *resp = parsed;
out:
    if (rc != P11KMS_OK) {
        free_secret(*secret);
        *secret = NULL;
    }
    curl_slist_free_all(headers);
    sbuf_clear(&req);
    sbuf_clear(&body);
    return rc;
}

/* --- responses ---------------------------------------------------------------------------------
 */

static p11kms_err copy_member(cli *c, const char *key, json_object *value, p11kms_error *err)
{
    if (json_object_object_add(cli_out_root(c->out), key, json_object_get(value)) != 0) {
        json_object_put(value);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    return P11KMS_OK;
}

/* The response's members become the output in their order; Plaintext as the secret. */
static p11kms_err output(cli *c, json_object *resp, const char *secret, p11kms_error *err)
{
    p11kms_err rc = P11KMS_OK;
    json_object_object_foreach(resp, key, value)
    {
        if (secret != NULL && strcmp(key, "Plaintext") == 0)
            cli_json_secret_text(c->out, cli_out_root(c->out), key, secret);
        else if ((rc = copy_member(c, key, value, err)) != P11KMS_OK)
            return rc;
    }
    return rc;
}

/* Every page of a list: the items of all pages, without the paging members (as "aws kms"
 * prints a paginated list). */
static p11kms_err run_list(cli *c, conn *k, const remote_command *rc_cmd, request *r,
                           p11kms_error *err)
{
    json_object *items = json_object_new_array();
    char *marker = NULL;
    p11kms_err rc =
        items == NULL ? P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory") : P11KMS_OK;
    put(r, "Limit", json_object_new_int(LIST_PAGE));
    for (unsigned pages = 0; rc == P11KMS_OK; pages++) {
        if (pages > 100000) {
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "%.200s: the list never ends", k->raw);
            break;
        }
        json_object_object_del(r->root, "Marker");
        if (marker != NULL)
            put_str(r, "Marker", marker);
        json_object *resp;
        char *secret;
        if ((rc = call(k, rc_cmd->operation, r, &resp, &secret, err)) != P11KMS_OK)
            break;
        free_secret(secret);
        json_object *page = NULL, *truncated = NULL, *next = NULL;
        if (json_object_object_get_ex(resp, rc_cmd->list, &page) &&
            json_object_is_type(page, json_type_array))
            for (size_t i = 0; i < json_object_array_length(page); i++)
                json_object_array_add(items, json_object_get(json_object_array_get_idx(page, i)));
        bool more = json_object_object_get_ex(resp, "Truncated", &truncated) &&
                    json_object_get_boolean(truncated) &&
                    json_object_object_get_ex(resp, "NextMarker", &next);
        free(marker);
        marker = more ? strdup(json_object_get_string(next)) : NULL;
        if (more && marker == NULL)
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        if (rc == P11KMS_OK && !more) {
            json_object_object_foreach(resp, key, value)
            {
                if (strcmp(key, "Truncated") == 0 || strcmp(key, "NextMarker") == 0)
                    continue;
                rc = copy_member(c, key, strcmp(key, rc_cmd->list) == 0 ? items : value, err);
                if (rc != P11KMS_OK)
                    break;
            }
            json_object_put(resp);
            break;
        }
        json_object_put(resp);
    }
    free(marker);
    json_object_put(items);
    return rc;
}

p11kms_err cli_remote_run(cli *c, const char *raw, p11kms_error *err)
{
    const remote_command *cmd = NULL;
    for (size_t i = 0; i < sizeof(remote_commands) / sizeof(remote_commands[0]); i++)
        if (strcmp(remote_commands[i].command, c->command->name) == 0)
            cmd = &remote_commands[i];
    if (cmd == NULL)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "'%s' is not served by p11kmsd: run it without an endpoint (no "
                            "--endpoint, $P11KMS_ENDPOINT or endpoint: in the configuration), "
                            "as the token's owner on the daemon's host",
                            c->command->name);
    conn k;
    request r = {.root = json_object_new_object()};
    p11kms_err rc = conn_open(&k, c, raw, err);
    if (rc == P11KMS_OK && r.root == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK)
        rc = cmd->build(&r, c, err);
    if (rc == P11KMS_OK && cmd->list != NULL) {
        rc = run_list(c, &k, cmd, &r, err);
    } else if (rc == P11KMS_OK) {
        json_object *resp;
        char *secret;
        if ((rc = call(&k, cmd->operation, &r, &resp, &secret, err)) == P11KMS_OK)
            rc = output(c, resp, secret, err);
        json_object_put(resp);
        free_secret(secret);
    }
    if (r.secret_b64 != NULL)
        cli_base64_free(r.secret_b64, true);
    json_object_put(r.root);
    conn_close(&k);
    return rc;
}
