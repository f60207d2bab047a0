/* One audit record per public request: the scope a public operation opens on entry, the
 * decisions the gate reports into it, and the record written on the way out. */
#include "config.h"

#include "provider/audit.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/rand.h>

#include "provider/context-api.h"
#include "provider/enc-context.h"
#include "provider/keyref.h"

/* The request this thread is running (NULL outside a public operation). */
static _Thread_local audit_req *current;

/* Truncates like snprintf(dst, size, "%s", src), without the formatter: the gate reports a
 * decision on every request, and snprintf was most of the audit note's cost on the hot path. */
static void copy(char *dst, size_t size, const char *src)
{
    size_t n = src != NULL ? strnlen(src, size - 1) : 0;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

void audit_begin(audit_req *a, p11kms *svc, const char *event, const p11kms_principal *who,
                 const char *key_ref, const p11kms_context *ctx)
{
    memset(a, 0, sizeof(*a));
    a->svc = svc;
    a->event = event;
    a->who = who;
    a->key_ref = key_ref;
    a->ctx = ctx;
    a->outer = current;
    a->nested = current != NULL;
    if (!a->nested)
        current = a;
}

void audit_note_decision(bool dest_key, bool allowed, const char *sid, bool waiver,
                         const char *waiver_reason, const char *key_id)
{
    audit_req *a = current;
    if (a == NULL)
        return;
    a->decisions++;
    if (key_id != NULL) {
        char *slot = dest_key ? a->dest_key_id : a->key_id;
        if (slot[0] == '\0')
            copy(slot, P11KMS_KEY_ID_LEN + 1, key_id);
    }
    if (a->denied)
        return; /* the first deny decided the request */
    if (!allowed || a->sid[0] == '\0') {
        copy(a->sid, sizeof(a->sid), sid);
        a->waiver = waiver;
        copy(a->waiver_reason, sizeof(a->waiver_reason), waiver ? waiver_reason : NULL);
    }
    if (!allowed)
        a->denied = true;
}

static const char *result_class(p11kms_err rc)
{
    switch (rc) {
    case P11KMS_OK:
        return "Success";
    case P11KMS_E_ACCESS_DENIED:
        return "AccessDenied";
    case P11KMS_E_KEY_UNAVAILABLE:
    case P11KMS_E_CONFIG:
    case P11KMS_E_TOKEN:
    case P11KMS_E_PIN:
    case P11KMS_E_NO_MEMORY:
    case P11KMS_E_IO:
    case P11KMS_E_INTERNAL:
    case P11KMS_E__COUNT:
        return "ServerError";
    default:
        return "ClientError";
    }
}

static void event_time(char *out, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%.19s.%03dZ", base, (int)(ts.tv_nsec / 1000000));
}

static void random_request_id(p11kms *svc, char *out)
{
    uint8_t b[16];
    if (RAND_bytes_ex(svc->libctx, b, sizeof(b), 0) != 1)
        memset(b, 0, sizeof(b));
    uuid_mark_v4(b);
    uuid_format(b, out);
}

static void add_str(json_object *o, const char *name, const char *value)
{
    if (value != NULL && value[0] != '\0')
        json_object_object_add(o, name, json_object_new_string(value));
}

static json_object *context_json(const p11kms_context *ctx)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < p11kms_context_count(ctx); i++)
        json_object_object_add(o, p11kms_context_key(ctx, i),
                               json_object_new_string(p11kms_context_value(ctx, i)));
    return o;
}

static void add_resource(json_object *list, p11kms *svc, const char *key_id, uint32_t version)
{
    if (key_id == NULL || key_id[0] == '\0')
        return;
    char arn[P11KMS_ARN_MAX];
    keyref_key_arn(svc->cfg, key_id, arn);
    json_object *r = json_object_new_object();
    json_object_object_add(r, "type", json_object_new_string("AWS::KMS::Key"));
    json_object_object_add(r, "ARN", json_object_new_string(arn));
    json_object_object_add(r, "keyId", json_object_new_string(key_id));
    if (version > 0)
        json_object_object_add(r, "keyVersion", json_object_new_int64(version));
    json_object_array_add(list, r);
}

/* The record without its chain members, as JSON members (no surrounding braces). */
static char *record_body(const audit_req *a, p11kms_err rc, const p11kms_error *err)
{
    char when[40], request_id[40], source[128];
    event_time(when, sizeof(when));
    const char *rid = principal_request_id(a->who);
    if (rid == NULL) {
        random_request_id(a->svc, request_id);
        rid = request_id;
    }
    const char *src = principal_source(a->who);
    if (src == NULL) {
        snprintf(source, sizeof(source), "local pid=%ld uid=%ld", (long)getpid(), (long)geteuid());
        src = source;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "eventVersion", json_object_new_string("1.0"));
    json_object_object_add(o, "eventTime", json_object_new_string(when));
    json_object_object_add(o, "eventSource", json_object_new_string("p11kms"));
    json_object_object_add(o, "eventName", json_object_new_string(a->event));
    json_object_object_add(o, "requestID", json_object_new_string(rid));
    json_object *who = json_object_new_array();
    for (size_t i = 0; i < p11kms_principal_count(a->who); i++)
        json_object_array_add(who, json_object_new_string(p11kms_principal_name(a->who, i)));
    json_object *identity = json_object_new_object();
    json_object_object_add(identity, "principals", who);
    json_object_object_add(o, "userIdentity", identity);
    json_object_object_add(o, "source", json_object_new_string(src));

    json_object *params = json_object_new_object();
    add_str(params, "keyId", a->key_ref);
    if (p11kms_context_count(a->ctx) > 0)
        json_object_object_add(params, "encryptionContext", context_json(a->ctx));
    add_str(params, "destinationKeyId", a->dest_key_ref);
    if (p11kms_context_count(a->dest_ctx) > 0)
        json_object_object_add(params, "destinationEncryptionContext", context_json(a->dest_ctx));
    json_object_object_add(o, "requestParameters", params);

    json_object *resources = json_object_new_array();
    const char *key_id = a->key_id[0] ? a->key_id : a->created_key_id;
    add_resource(resources, a->svc, key_id, a->dest_key_id[0] ? 0 : a->key_version);
    add_resource(resources, a->svc, a->dest_key_id, a->key_version);
    json_object_object_add(o, "resources", resources);

    if (a->decisions > 0) {
        json_object_object_add(o, "decision", json_object_new_string(a->denied ? "Deny" : "Allow"));
        add_str(o, "sid", a->sid);
        if (a->waiver)
            json_object_object_add(o, "waiverReason", json_object_new_string(a->waiver_reason));
    }
    json_object_object_add(o, "resultClass", json_object_new_string(result_class(rc)));
    if (rc != P11KMS_OK) {
        json_object_object_add(o, "errorCode", json_object_new_string(p11kms_error_class(rc)));
        add_str(o, "errorMessage", err != NULL ? err->message : NULL);
    }
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(text);
    char *body = len >= 2 ? strndup(text + 1, len - 2) : NULL;
    json_object_put(o);
    return body;
}

p11kms_err audit_end(audit_req *a, p11kms_err rc, p11kms_error *err)
{
    if (a->nested)
        return rc;
    current = NULL;
    audit_log *log = a->svc != NULL ? a->svc->audit : NULL;
    if (log == NULL)
        return rc;
    char *body = record_body(a, rc, err);
    p11kms_error werr = {0};
    p11kms_err wrc = body != NULL ? audit_log_write(log, body, &werr)
                                  : P11KMS_RAISE(&werr, P11KMS_E_NO_MEMORY, "out of memory");
    free(body);
    if (wrc == P11KMS_OK)
        return rc;
    if (!audit_log_refuses(log)) {
        fprintf(stderr, "p11kms: AUDIT FAILURE (audit.on-failure: continue): %s: %s\n", a->event,
                werr.message);
        return rc;
    }
    return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                        "the audit record of this %s could not be written, so the request is "
                        "refused (audit.on-failure: refuse): %s",
                        a->event, werr.message);
}
