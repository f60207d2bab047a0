#include "config.h"

#include "kms-ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli/cli-base64.h"
#include "cli/secret-marker.h"

#define ALGORITHM "SYMMETRIC_DEFAULT"
#define LIST_DEFAULT_LIMIT 100 /* AWS's default page size */

/* --- response building ------------------------------------------------------------------------
 * The JSON tree never holds a secret: a random marker stands in for the base64 plaintext,
 * which is spliced in while the body is assembled in the secure heap. */

typedef struct out {
    json_object *root;
    bool failed;
    const uint8_t *secret;
    size_t secret_len;
    char marker[SECRET_MARKER_SIZE("p11kmsd-secret-")];
} out;

static void add(out *o, json_object *obj, const char *key, json_object *value)
{
    if (obj == NULL || value == NULL || json_object_object_add(obj, key, value) != 0) {
        json_object_put(value);
        o->failed = true;
    }
}

static void add_string(out *o, json_object *obj, const char *key, const char *value)
{
    add(o, obj, key, json_object_new_string(value));
}

static void add_int(out *o, json_object *obj, const char *key, int64_t value)
{
    add(o, obj, key, json_object_new_int64(value));
}

static void add_bool(out *o, json_object *obj, const char *key, bool value)
{
    add(o, obj, key, json_object_new_boolean(value));
}

static json_object *add_container(out *o, json_object *obj, const char *key, json_object *child)
{
    add(o, obj, key, child);
    return o->failed ? NULL : child;
}

static json_object *append_object(out *o, json_object *array)
{
    json_object *child = json_object_new_object();
    if (array == NULL || child == NULL || json_object_array_add(array, child) != 0) {
        json_object_put(child);
        o->failed = true;
        return NULL;
    }
    return child;
}

static void add_blob(out *o, json_object *obj, const char *key, const uint8_t *bytes, size_t len)
{
    char *b64;
    p11kms_error ignored;
    if (cli_base64_encode(bytes, len, false, &b64, &ignored) != P11KMS_OK) {
        o->failed = true;
        return;
    }
    add_string(o, obj, key, b64);
    cli_base64_free(b64, false);
}

static void add_secret(out *o, json_object *obj, const char *key, const uint8_t *bytes, size_t len)
{
    if (o->secret != NULL || !secret_marker_new("p11kmsd-secret-", o->marker, sizeof(o->marker))) {
        o->failed = true;
        return;
    }
    o->secret = bytes;
    o->secret_len = len;
    add_string(o, obj, key, o->marker);
}

void kms_reply_clear(kms_reply *reply)
{
    if (reply->body != NULL) {
        if (reply->secret)
            OPENSSL_secure_clear_free(reply->body, reply->len + 1);
        else
            free(reply->body);
    }
    reply->body = NULL;
    reply->len = 0;
}

static bool set_body(kms_reply *reply, const char *text, size_t len)
{
    reply->body = malloc(len + 1);
    if (reply->body == NULL)
        return false;
    memcpy(reply->body, text, len);
    reply->body[len] = '\0';
    reply->len = len;
    reply->secret = false;
    return true;
}

static const char internal_body[] =
    "{\"__type\":\"KMSInternalException\",\"message\":\"out of memory\"}";

void kms_reply_fault(kms_reply *reply, const kms_fault *f)
{
    kms_reply_clear(reply);
    reply->status = f->status;
    reply->klass = f->klass;
    json_object *root = json_object_new_object();
    if (root != NULL &&
        json_object_object_add(root, "__type", json_object_new_string(f->klass)) == 0 &&
        json_object_object_add(root, "message", json_object_new_string(f->message)) == 0) {
        size_t len;
        const char *s = json_object_to_json_string_length(
            root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (s != NULL && set_body(reply, s, len)) {
            json_object_put(root);
            return;
        }
    }
    json_object_put(root);
    reply->status = 500;
    reply->klass = "KMSInternalException";
    set_body(reply, internal_body, sizeof(internal_body) - 1);
}

/* Serialises o into reply (status 200), with the secret spliced in the secure heap. */
static void finish(out *o, kms_reply *reply)
{
    kms_fault f;
    size_t len = 0;
    const char *s =
        o->failed ? NULL
                  : json_object_to_json_string_length(
                        o->root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s == NULL) {
        kms_fault_set(&f, 500, "KMSInternalException", "out of memory building the response");
        kms_reply_fault(reply, &f);
        return;
    }
    reply->status = 200;
    reply->klass = NULL;
    if (o->secret == NULL) {
        if (!set_body(reply, s, len)) {
            kms_fault_set(&f, 500, "KMSInternalException", "out of memory");
            kms_reply_fault(reply, &f);
        }
        return;
    }
    const char *at = strstr(s, o->marker);
    size_t mlen = strlen(o->marker);
    char *b64 = NULL;
    p11kms_error ignored;
    if (at == NULL || strstr(at + mlen, o->marker) != NULL ||
        cli_base64_encode(o->secret, o->secret_len, true, &b64, &ignored) != P11KMS_OK) {
        kms_fault_set(&f, 500, "KMSInternalException", "internal error building the response");
        kms_reply_fault(reply, &f);
        return;
    }
    size_t blen = strlen(b64);
    size_t total = len - mlen + blen;
    char *body = OPENSSL_secure_malloc(total + 1);
    if (body == NULL) {
        cli_base64_free(b64, true);
        kms_fault_set(&f, 500, "KMSInternalException", "out of memory");
        kms_reply_fault(reply, &f);
        return;
    }
    size_t before = (size_t)(at - s);
    memcpy(body, s, before);
    memcpy(body + before, b64, blen);
    memcpy(body + before + blen, at + mlen, len - before - mlen);
    body[total] = '\0';
    cli_base64_free(b64, true);
    reply->body = body;
    reply->len = total;
    reply->secret = true;
}

/* --- errors --------------------------------------------------------------------------------- */

void kms_fault_from_error(p11kms_err rc, const p11kms_error *err, kms_fault *f)
{
    const char *msg = err != NULL && err->message[0] != '\0' ? err->message : p11kms_strerror(rc);
    switch (rc) {
    case P11KMS_E_VALIDATION:
    case P11KMS_E_NOT_FOUND:
    case P11KMS_E_DISABLED:
    case P11KMS_E_INVALID_STATE:
    case P11KMS_E_INVALID_CIPHERTEXT:
    case P11KMS_E_INCORRECT_KEY:
    case P11KMS_E_ACCESS_DENIED:
    case P11KMS_E_UNSUPPORTED:
    case P11KMS_E_ALREADY_EXISTS:
    case P11KMS_E_LIMIT_EXCEEDED:
    case P11KMS_E_INVALID_ALIAS:
    case P11KMS_E_INVALID_ARN:
    case P11KMS_E_TAG:
    case P11KMS_E_INCORRECT_KEY_MATERIAL:
    case P11KMS_E_INVALID_IMPORT_TOKEN:
    case P11KMS_E_EXPIRED_IMPORT_TOKEN:
    case P11KMS_E_MALFORMED_POLICY:
        kms_fault_set(f, 400, p11kms_error_class(rc), "%s", msg);
        return;
    case P11KMS_E_TOKEN:
    case P11KMS_E_PIN:
    case P11KMS_E_KEY_UNAVAILABLE:
        /* The token is unreachable or failing: the details are for the operator's log. */
        kms_fault_set(f, 500, "KeyUnavailableException", "the key store is unavailable");
        return;
    default:
        kms_fault_set(f, 500, "KMSInternalException", "internal error");
        return;
    }
}

/* --- request helpers -------------------------------------------------------------------------- */

typedef struct op_state {
    p11kms *svc;
    const p11kms_principal *who;
    const kms_request *req;
    kms_reply *reply;
    out o;
    p11kms_error err;
    kms_fault fault;
    bool faulted; /* fault holds a refusal of the daemon's own */
} op_state;

static const char *str(op_state *s, const char *name)
{
    const kms_value *v = kms_request_get(s->req, name);
    return v->present ? v->str : NULL;
}

static const kms_value *val(op_state *s, const char *name)
{
    return kms_request_get(s->req, name);
}

static void note_key(op_state *s, const char *key)
{
    if (key != NULL && s->reply->key[0] == '\0')
        snprintf(s->reply->key, sizeof(s->reply->key), "%s", key);
}

static p11kms_err refuse(op_state *s, unsigned status, const char *klass, const char *message)
{
    kms_fault_set(&s->fault, status, klass, "%s", message);
    s->faulted = true;
    return P11KMS_E_VALIDATION;
}

static p11kms_err context_of(op_state *s, const char *name, p11kms_context **ctx)
{
    *ctx = NULL;
    const kms_value *v = val(s, name);
    if (!v->present)
        return P11KMS_OK;
    p11kms_context *c = p11kms_context_new();
    if (c == NULL)
        return P11KMS_RAISE(&s->err, P11KMS_E_NO_MEMORY, "out of memory");
    json_object_object_foreach(v->json, key, value)
    {
        p11kms_err rc = p11kms_context_add(c, key, json_object_get_string(value), &s->err);
        if (rc != P11KMS_OK) {
            p11kms_context_free(c);
            return rc;
        }
    }
    *ctx = c;
    return P11KMS_OK;
}

static p11kms_err algorithm_ok(op_state *s, const char *name)
{
    const char *a = str(s, name);
    if (a != NULL && strcmp(a, ALGORITHM) != 0)
        return refuse(s, 400, "InvalidKeyUsageException",
                      "symmetric keys support only the SYMMETRIC_DEFAULT encryption algorithm");
    return P11KMS_OK;
}

/* Whether the policy allows action on key_ref (AccessDeniedException if not). */
static p11kms_err dry_run_allowed(op_state *s, const char *action, const char *key_ref,
                                  const p11kms_context *ctx)
{
    if (key_ref == NULL)
        return refuse(s, 400, "ValidationException", "DryRun needs KeyId for this operation");
    bool allowed = false;
    char explanation[1024];
    p11kms_err rc = p11kms_policy_explain(s->svc, s->who, NULL, action, key_ref, ctx, &allowed,
                                          explanation, sizeof(explanation), &s->err);
    OPENSSL_cleanse(explanation, sizeof(explanation));
    if (rc == P11KMS_OK && !allowed)
        rc = P11KMS_RAISE(&s->err, P11KMS_E_ACCESS_DENIED,
                          "the key policy does not allow this request");
    return rc;
}

/* The key a ciphertext's operation uses: key_ref when given, else the key the blob names. */
static const char *blob_key_ref(op_state *s, const char *key_ref, const kms_value *blob,
                                char id[P11KMS_KEY_ID_LEN + 1], p11kms_err *rc)
{
    if (key_ref != NULL)
        return key_ref;
    *rc = p11kms_ciphertext_key_id(blob->bytes, blob->len, id, &s->err);
    return *rc == P11KMS_OK ? id : NULL;
}

/* DryRun: the caller learns whether the policy would allow the action, nothing else. A second
 * action (ReEncrypt's re-encrypt-from on the source key) must be allowed as well. */
static p11kms_err dry_run2(op_state *s, const char *action, const char *key_ref,
                           const p11kms_context *ctx, const char *action2, const char *key_ref2,
                           const p11kms_context *ctx2, bool *stop)
{
    const kms_value *v = val(s, "DryRun");
    *stop = v->present && v->b;
    if (!*stop)
        return P11KMS_OK;
    p11kms_err rc = dry_run_allowed(s, action, key_ref, ctx);
    if (rc == P11KMS_OK && action2 != NULL)
        rc = dry_run_allowed(s, action2, key_ref2, ctx2);
    if (rc != P11KMS_OK)
        return rc;
    return refuse(s, 412, "DryRunOperationException",
                  "The request would have succeeded, but the DryRun option is set.");
}

static p11kms_err dry_run(op_state *s, const char *action, const char *key_ref,
                          const p11kms_context *ctx, bool *stop)
{
    return dry_run2(s, action, key_ref, ctx, NULL, NULL, NULL, stop);
}

/* Limit and Marker of a paginated list. The marker is the decimal position of the next
 * entry: opaque to clients, and refused when it is not one p11kmsd could have made. */
typedef struct page {
    size_t skip, limit, seen;
    bool truncated;
} page;

static p11kms_err page_of(op_state *s, page *p)
{
    memset(p, 0, sizeof(*p));
    const kms_value *limit = val(s, "Limit");
    p->limit = limit->present ? (size_t)limit->i : LIST_DEFAULT_LIMIT;
    const char *marker = str(s, "Marker");
    if (marker == NULL)
        return P11KMS_OK;
    char *end;
    unsigned long long n = strtoull(marker, &end, 10);
    if (marker[0] < '1' || marker[0] > '9' || *end != '\0' || n > 1000000000ULL)
        return refuse(s, 400, "InvalidMarkerException", "the marker is not valid");
    p->skip = (size_t)n;
    return P11KMS_OK;
}

/* true when the entry belongs on this page; sets truncated past its end. */
static bool page_take(page *p)
{
    size_t i = p->seen++;
    if (i < p->skip)
        return false;
    if (i - p->skip >= p->limit) {
        p->truncated = true;
        return false;
    }
    return true;
}

static void page_finish(op_state *s, const page *p)
{
    add_bool(&s->o, s->o.root, "Truncated", p->truncated);
    if (p->truncated) {
        char marker[32];
        snprintf(marker, sizeof(marker), "%zu", p->skip + p->limit);
        add_string(&s->o, s->o.root, "NextMarker", marker);
    }
}

/* --- operations ------------------------------------------------------------------------------ */

static void key_metadata(op_state *s, const p11kms_key_metadata *m)
{
    out *o = &s->o;
    json_object *km = add_container(o, o->root, "KeyMetadata", json_object_new_object());
    add_string(o, km, "KeyId", m->key_id);
    add_string(o, km, "Arn", m->arn);
    add_int(o, km, "CreationDate", m->creation_date);
    add_bool(o, km, "Enabled", m->state == P11KMS_KEY_ENABLED);
    add_string(o, km, "Description", m->description);
    add_string(o, km, "KeyUsage", "ENCRYPT_DECRYPT");
    add_string(o, km, "KeyState", p11kms_key_state_name(m->state));
    if (m->state == P11KMS_KEY_PENDING_DELETION) {
        add_int(o, km, "DeletionDate", m->deletion_date);
        add_int(o, km, "PendingDeletionWindowInDays", m->pending_window_days);
    }
    add_string(o, km, "Origin", p11kms_key_origin_name(m->origin));
    if (m->expiration_model[0] != '\0')
        add_string(o, km, "ExpirationModel", m->expiration_model);
    if (m->valid_to != 0)
        add_int(o, km, "ValidTo", m->valid_to);
    add_string(o, km, "KeyManager", "CUSTOMER");
    add_string(o, km, "CustomerMasterKeySpec", "SYMMETRIC_DEFAULT");
    add_string(o, km, "KeySpec", "SYMMETRIC_DEFAULT");
    json_object *algs = add_container(o, km, "EncryptionAlgorithms", json_object_new_array());
    if (algs == NULL || json_object_array_add(algs, json_object_new_string(ALGORITHM)) != 0)
        o->failed = true;
    add_bool(o, km, "MultiRegion", false);
    note_key(s, m->key_id);
}

static p11kms_err tags_of(op_state *s, p11kms_tag **tags, size_t *count)
{
    const kms_value *v = val(s, "Tags");
    *tags = NULL;
    *count = 0;
    if (!v->present)
        return P11KMS_OK;
    size_t n = json_object_array_length(v->json);
    if (n == 0)
        return P11KMS_OK;
    p11kms_tag *t = calloc(n, sizeof(*t));
    if (t == NULL)
        return P11KMS_RAISE(&s->err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v->json, i);
        t[i].key = json_object_get_string(json_object_object_get(e, "TagKey"));
        t[i].value = json_object_get_string(json_object_object_get(e, "TagValue"));
    }
    *tags = t;
    *count = n;
    return P11KMS_OK;
}

static p11kms_err op_create_key(op_state *s)
{
    if (str(s, "Policy") != NULL)
        return refuse(s, 400, "UnsupportedOperationException",
                      "key policies are set in p11kmsd's policy file, not per key");
    if (str(s, "CustomKeyStoreId") != NULL)
        return refuse(s, 400, "UnsupportedOperationException",
                      "custom key stores are not supported");
    const kms_value *mr = val(s, "MultiRegion");
    if (mr->present && mr->b)
        return refuse(s, 400, "UnsupportedOperationException",
                      "multi-Region keys are not supported");
    const char *spec = str(s, "KeySpec");
    const char *cmk_spec = str(s, "CustomerMasterKeySpec");
    if (spec != NULL && cmk_spec != NULL)
        return refuse(s, 400, "ValidationException",
                      "give KeySpec or CustomerMasterKeySpec, not both");
    p11kms_create_key_input in = {
        .description = str(s, "Description"),
        .key_spec = spec != NULL ? spec : cmk_spec,
        .key_usage = str(s, "KeyUsage"),
        .origin = str(s, "Origin"),
    };
    p11kms_tag *tags;
    p11kms_err rc = tags_of(s, &tags, &in.tag_count);
    if (rc != P11KMS_OK)
        return rc;
    in.tags = tags;
    p11kms_key_metadata m;
    rc = p11kms_create_key(s->svc, s->who, &in, &m, &s->err);
    free(tags);
    if (rc == P11KMS_OK)
        key_metadata(s, &m);
    return rc;
}

static p11kms_err op_describe_key(op_state *s)
{
    p11kms_key_metadata m;
    p11kms_err rc = p11kms_describe_key(s->svc, s->who, str(s, "KeyId"), &m, &s->err);
    if (rc == P11KMS_OK)
        key_metadata(s, &m);
    return rc;
}

typedef struct list_state {
    op_state *s;
    json_object *array;
    page p;
    const char *key_id;
} list_state;

static int list_key(const char *key_id, const char *arn, void *arg)
{
    list_state *l = arg;
    if (!page_take(&l->p))
        return l->p.truncated;
    json_object *e = append_object(&l->s->o, l->array);
    add_string(&l->s->o, e, "KeyId", key_id);
    add_string(&l->s->o, e, "KeyArn", arn);
    return 0;
}

static p11kms_err op_list_keys(op_state *s)
{
    list_state l = {s, add_container(&s->o, s->o.root, "Keys", json_object_new_array()), {0}, NULL};
    p11kms_err rc = page_of(s, &l.p);
    if (rc == P11KMS_OK)
        rc = p11kms_list_keys(s->svc, s->who, list_key, &l, &s->err);
    if (rc == P11KMS_OK)
        page_finish(s, &l.p);
    return rc;
}

static p11kms_err op_schedule_key_deletion(op_state *s)
{
    const kms_value *days = val(s, "PendingWindowInDays");
    p11kms_key_metadata m;
    p11kms_err rc = p11kms_schedule_key_deletion(
        s->svc, s->who, str(s, "KeyId"), days->present ? (unsigned)days->i : 0, &m, &s->err);
    if (rc != P11KMS_OK)
        return rc;
    note_key(s, m.key_id);
    add_string(&s->o, s->o.root, "KeyId", m.arn);
    add_int(&s->o, s->o.root, "DeletionDate", m.deletion_date);
    add_string(&s->o, s->o.root, "KeyState", p11kms_key_state_name(m.state));
    add_int(&s->o, s->o.root, "PendingWindowInDays", m.pending_window_days);
    return P11KMS_OK;
}

static p11kms_err op_cancel_key_deletion(op_state *s)
{
    p11kms_key_metadata m;
    p11kms_err rc = p11kms_cancel_key_deletion(s->svc, s->who, str(s, "KeyId"), &s->err);
    /* CancelKeyDeletion answers with the key ARN. */
    if (rc == P11KMS_OK)
        rc = p11kms_describe_key(s->svc, s->who, str(s, "KeyId"), &m, &s->err);
    if (rc == P11KMS_OK) {
        note_key(s, m.key_id);
        add_string(&s->o, s->o.root, "KeyId", m.arn);
    }
    return rc;
}

static p11kms_err op_rotate_key_on_demand(op_state *s)
{
    p11kms_key_metadata m;
    p11kms_err rc = p11kms_rotate_key_on_demand(s->svc, s->who, str(s, "KeyId"), &m, &s->err);
    if (rc == P11KMS_OK) {
        note_key(s, m.key_id);
        add_string(&s->o, s->o.root, "KeyId", m.key_id);
    }
    return rc;
}

static p11kms_err op_get_key_rotation_status(op_state *s)
{
    p11kms_key_metadata m;
    p11kms_err rc = p11kms_describe_key(s->svc, s->who, str(s, "KeyId"), &m, &s->err);
    if (rc == P11KMS_OK) {
        note_key(s, m.key_id);
        add_bool(&s->o, s->o.root, "KeyRotationEnabled", m.rotation_enabled);
    }
    return rc;
}

static int add_rotation(const p11kms_rotation *r, void *arg)
{
    list_state *l = arg;
    /* The model's RotationType is AUTOMATIC or ON_DEMAND: the original material is no
     * rotation. */
    if (strcmp(r->rotation_type, "INITIAL") == 0)
        return 0;
    if (!page_take(&l->p))
        return l->p.truncated;
    json_object *e = append_object(&l->s->o, l->array);
    add_string(&l->s->o, e, "KeyId", l->key_id);
    add_int(&l->s->o, e, "RotationDate", r->rotation_date);
    add_string(&l->s->o, e, "RotationType", r->rotation_type);
    return 0;
}

static p11kms_err op_list_key_rotations(op_state *s)
{
    p11kms_key_metadata m;
    list_state l = {s, NULL, {0}, NULL};
    p11kms_err rc = page_of(s, &l.p);
    if (rc == P11KMS_OK)
        rc = p11kms_describe_key(s->svc, s->who, str(s, "KeyId"), &m, &s->err);
    if (rc != P11KMS_OK)
        return rc;
    note_key(s, m.key_id);
    l.key_id = m.key_id;
    l.array = add_container(&s->o, s->o.root, "Rotations", json_object_new_array());
    rc = p11kms_list_key_rotations(s->svc, s->who, str(s, "KeyId"), add_rotation, &l, &s->err);
    if (rc == P11KMS_OK)
        page_finish(s, &l.p);
    return rc;
}

static p11kms_err op_tag_resource(op_state *s)
{
    p11kms_tag *tags;
    size_t n;
    p11kms_err rc = tags_of(s, &tags, &n);
    if (rc == P11KMS_OK)
        rc = p11kms_tag_resource(s->svc, s->who, str(s, "KeyId"), tags, n, &s->err);
    free(tags);
    return rc;
}

static p11kms_err op_untag_resource(op_state *s)
{
    json_object *list = val(s, "TagKeys")->json;
    size_t n = json_object_array_length(list);
    const char **keys = calloc(n + 1, sizeof(*keys));
    if (keys == NULL)
        return P11KMS_RAISE(&s->err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++)
        keys[i] = json_object_get_string(json_object_array_get_idx(list, i));
    p11kms_err rc = p11kms_untag_resource(s->svc, s->who, str(s, "KeyId"), keys, n, &s->err);
    free(keys);
    return rc;
}

static int add_tag(const p11kms_tag *tag, void *arg)
{
    list_state *l = arg;
    if (!page_take(&l->p))
        return l->p.truncated;
    json_object *e = append_object(&l->s->o, l->array);
    add_string(&l->s->o, e, "TagKey", tag->key);
    add_string(&l->s->o, e, "TagValue", tag->value);
    return 0;
}

static p11kms_err op_list_resource_tags(op_state *s)
{
    list_state l = {s, add_container(&s->o, s->o.root, "Tags", json_object_new_array()), {0}, NULL};
    p11kms_err rc = page_of(s, &l.p);
    if (rc == P11KMS_OK)
        rc = p11kms_list_resource_tags(s->svc, s->who, str(s, "KeyId"), add_tag, &l, &s->err);
    if (rc == P11KMS_OK)
        page_finish(s, &l.p);
    return rc;
}

/* Aliases are collected first and paged after (the library lists only aliases of keys the
 * caller may describe). */
typedef struct alias_entry {
    char *name, *arn, *target;
} alias_entry;

typedef struct alias_vec {
    alias_entry *items;
    size_t count, cap;
    bool failed;
} alias_vec;

static int collect_alias(const char *alias_name, const char *alias_arn, const char *target_key_id,
                         void *arg)
{
    alias_vec *v = arg;
    if (v->count == v->cap) {
        size_t cap = v->cap == 0 ? 16 : v->cap * 2;
        alias_entry *items = realloc(v->items, cap * sizeof(*items));
        if (items == NULL) {
            v->failed = true;
            return 1;
        }
        v->items = items;
        v->cap = cap;
    }
    alias_entry *e = &v->items[v->count];
    e->name = strdup(alias_name);
    e->arn = strdup(alias_arn);
    e->target = strdup(target_key_id != NULL ? target_key_id : "");
    v->count++;
    if (e->name == NULL || e->arn == NULL || e->target == NULL) {
        v->failed = true;
        return 1;
    }
    return 0;
}

static p11kms_err op_list_aliases(op_state *s)
{
    json_object *array = add_container(&s->o, s->o.root, "Aliases", json_object_new_array());
    page p;
    alias_vec v = {0};
    p11kms_err rc = page_of(s, &p);
    if (rc == P11KMS_OK)
        rc = p11kms_list_aliases(s->svc, s->who, str(s, "KeyId"), collect_alias, &v, &s->err);
    if (rc == P11KMS_OK && v.failed)
        rc = P11KMS_RAISE(&s->err, P11KMS_E_NO_MEMORY, "out of memory listing aliases");
    for (size_t i = 0; rc == P11KMS_OK && i < v.count && !p.truncated; i++) {
        const alias_entry *a = &v.items[i];
        if (!page_take(&p)) /* the library lists only aliases the caller may describe */
            continue;
        json_object *e = append_object(&s->o, array);
        add_string(&s->o, e, "AliasName", a->name);
        add_string(&s->o, e, "AliasArn", a->arn);
        add_string(&s->o, e, "TargetKeyId", a->target);
    }
    /* page_take only notices the end of a page when it sees one more visible entry. */
    if (rc == P11KMS_OK)
        page_finish(s, &p);
    for (size_t i = 0; i < v.count; i++) {
        free(v.items[i].name);
        free(v.items[i].arn);
        free(v.items[i].target);
    }
    free(v.items);
    return rc;
}

static p11kms_err op_encrypt(op_state *s)
{
    p11kms_context *ctx = NULL;
    p11kms_result r = {0};
    bool stop = false;
    const kms_value *pt = val(s, "Plaintext");
    p11kms_err rc = algorithm_ok(s, "EncryptionAlgorithm");
    if (rc == P11KMS_OK)
        rc = context_of(s, "EncryptionContext", &ctx);
    if (rc == P11KMS_OK)
        rc = dry_run(s, "encrypt", str(s, "KeyId"), ctx, &stop);
    if (rc == P11KMS_OK && !stop)
        rc = p11kms_encrypt(s->svc, s->who, str(s, "KeyId"), ctx, pt->bytes, pt->len, &r, &s->err);
    if (rc == P11KMS_OK && !stop) {
        note_key(s, r.key_id);
        add_blob(&s->o, s->o.root, "CiphertextBlob", r.ciphertext, r.ciphertext_len);
        add_string(&s->o, s->o.root, "KeyId", r.key_id);
        add_string(&s->o, s->o.root, "EncryptionAlgorithm", ALGORITHM);
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
    return rc;
}

/* Decrypt, GenerateDataKey and GenerateRandom put a plaintext in the reply: the result must
 * live until the body is assembled, so these finish the reply themselves. */
static p11kms_err op_decrypt(op_state *s, p11kms_result *r)
{
    p11kms_context *ctx = NULL;
    bool stop = false;
    const kms_value *blob = val(s, "CiphertextBlob");
    p11kms_err rc = algorithm_ok(s, "EncryptionAlgorithm");
    if (rc == P11KMS_OK)
        rc = context_of(s, "EncryptionContext", &ctx);
    char id[P11KMS_KEY_ID_LEN + 1];
    const char *key_ref = str(s, "KeyId");
    if (rc == P11KMS_OK && val(s, "DryRun")->b)
        key_ref = blob_key_ref(s, key_ref, blob, id, &rc);
    if (rc == P11KMS_OK)
        rc = dry_run(s, "decrypt", key_ref, ctx, &stop);
    if (rc == P11KMS_OK && !stop)
        rc = p11kms_decrypt(s->svc, s->who, str(s, "KeyId"), ctx, blob->bytes, blob->len, r,
                            &s->err);
    if (rc == P11KMS_OK && !stop) {
        note_key(s, r->key_id);
        add_string(&s->o, s->o.root, "KeyId", r->key_id);
        add_secret(&s->o, s->o.root, "Plaintext", r->plaintext, r->plaintext_len);
        add_string(&s->o, s->o.root, "EncryptionAlgorithm", ALGORITHM);
    }
    p11kms_context_free(ctx);
    return rc;
}

static p11kms_err op_re_encrypt(op_state *s)
{
    p11kms_context *source_ctx = NULL, *dest_ctx = NULL;
    p11kms_result r = {0};
    bool stop = false;
    const kms_value *blob = val(s, "CiphertextBlob");
    p11kms_err rc = algorithm_ok(s, "SourceEncryptionAlgorithm");
    if (rc == P11KMS_OK)
        rc = algorithm_ok(s, "DestinationEncryptionAlgorithm");
    if (rc == P11KMS_OK)
        rc = context_of(s, "SourceEncryptionContext", &source_ctx);
    if (rc == P11KMS_OK)
        rc = context_of(s, "DestinationEncryptionContext", &dest_ctx);
    char id[P11KMS_KEY_ID_LEN + 1];
    const char *source_ref = str(s, "SourceKeyId");
    if (rc == P11KMS_OK && val(s, "DryRun")->b)
        source_ref = blob_key_ref(s, source_ref, blob, id, &rc);
    if (rc == P11KMS_OK)
        rc = dry_run2(s, "re-encrypt-to", str(s, "DestinationKeyId"), dest_ctx, "re-encrypt-from",
                      source_ref, source_ctx, &stop);
    if (rc == P11KMS_OK && !stop)
        rc = p11kms_re_encrypt(s->svc, s->who, str(s, "SourceKeyId"), source_ctx, blob->bytes,
                               blob->len, str(s, "DestinationKeyId"), dest_ctx, &r, &s->err);
    if (rc == P11KMS_OK && !stop) {
        note_key(s, r.key_id);
        add_blob(&s->o, s->o.root, "CiphertextBlob", r.ciphertext, r.ciphertext_len);
        add_string(&s->o, s->o.root, "SourceKeyId", r.source_key_id);
        add_string(&s->o, s->o.root, "KeyId", r.key_id);
        add_string(&s->o, s->o.root, "SourceEncryptionAlgorithm", ALGORITHM);
        add_string(&s->o, s->o.root, "DestinationEncryptionAlgorithm", ALGORITHM);
    }
    p11kms_result_free(&r);
    p11kms_context_free(dest_ctx);
    p11kms_context_free(source_ctx);
    return rc;
}

static p11kms_err op_data_key(op_state *s, bool want_plaintext, p11kms_result *r)
{
    const char *spec = str(s, "KeySpec");
    const kms_value *bytes = val(s, "NumberOfBytes");
    if ((spec == NULL) == !bytes->present)
        return refuse(s, 400, "ValidationException",
                      "give exactly one of KeySpec and NumberOfBytes");
    p11kms_context *ctx = NULL;
    bool stop = false;
    p11kms_err rc = context_of(s, "EncryptionContext", &ctx);
    if (rc == P11KMS_OK)
        rc =
            dry_run(s, want_plaintext ? "generate-data-key" : "generate-data-key-without-plaintext",
                    str(s, "KeyId"), ctx, &stop);
    if (rc == P11KMS_OK && !stop)
        rc = p11kms_generate_data_key(s->svc, s->who, str(s, "KeyId"), ctx, spec,
                                      bytes->present ? (size_t)bytes->i : 0, want_plaintext, r,
                                      &s->err);
    if (rc == P11KMS_OK && !stop) {
        note_key(s, r->key_id);
        add_blob(&s->o, s->o.root, "CiphertextBlob", r->ciphertext, r->ciphertext_len);
        if (want_plaintext)
            add_secret(&s->o, s->o.root, "Plaintext", r->plaintext, r->plaintext_len);
        add_string(&s->o, s->o.root, "KeyId", r->key_id);
    }
    p11kms_context_free(ctx);
    return rc;
}

static p11kms_err op_generate_random(op_state *s, p11kms_result *r)
{
    if (str(s, "CustomKeyStoreId") != NULL)
        return refuse(s, 400, "UnsupportedOperationException",
                      "custom key stores are not supported");
    const kms_value *bytes = val(s, "NumberOfBytes");
    if (!bytes->present)
        return refuse(s, 400, "ValidationException", "NumberOfBytes is required");
    p11kms_err rc = p11kms_generate_random(s->svc, s->who, (size_t)bytes->i, r, &s->err);
    if (rc == P11KMS_OK)
        add_secret(&s->o, s->o.root, "Plaintext", r->plaintext, r->plaintext_len);
    return rc;
}

/* --- imported key material (BYOK) ---------------------------------------------------------- */

static p11kms_err op_get_parameters_for_import(op_state *s)
{
    p11kms_import_parameters p = {0};
    p11kms_err rc = p11kms_get_parameters_for_import(s->svc, s->who, str(s, "KeyId"),
                                                     str(s, "WrappingAlgorithm"),
                                                     str(s, "WrappingKeySpec"), &p, &s->err);
    if (rc == P11KMS_OK) {
        note_key(s, p.key_id);
        add_string(&s->o, s->o.root, "KeyId", p.key_id);
        add_blob(&s->o, s->o.root, "ImportToken", p.import_token, p.import_token_len);
        add_blob(&s->o, s->o.root, "PublicKey", p.public_key, p.public_key_len);
        add_int(&s->o, s->o.root, "ParametersValidTo", p.parameters_valid_to);
    }
    p11kms_import_parameters_free(&p);
    return rc;
}

static p11kms_err op_import_key_material(op_state *s)
{
    const kms_value *material = val(s, "EncryptedKeyMaterial");
    const kms_value *token = val(s, "ImportToken");
    const kms_value *valid_to = val(s, "ValidTo");
    const char *model = str(s, "ExpirationModel");
    /* The model's default is KEY_MATERIAL_EXPIRES, which needs ValidTo: a request with ValidTo
     * alone means that; one with neither means material that does not expire (as AWS now
     * treats it). */
    if (model == NULL && valid_to->present)
        model = "KEY_MATERIAL_EXPIRES";
    p11kms_import_input in = {
        .encrypted_key_material = material->bytes,
        .encrypted_key_material_len = material->len,
        .import_token = token->bytes,
        .import_token_len = token->len,
        .expiration_model = model,
        .valid_to = valid_to->present ? valid_to->i : 0,
    };
    return p11kms_import_key_material(s->svc, s->who, str(s, "KeyId"), &in, &s->err);
}

static p11kms_err perform(op_state *s, p11kms_result *r)
{
    const char *key = str(s, "KeyId");
    switch (s->req->op) {
    case KMS_OP_CREATE_KEY:
        return op_create_key(s);
    case KMS_OP_DESCRIBE_KEY:
        return op_describe_key(s);
    case KMS_OP_LIST_KEYS:
        return op_list_keys(s);
    case KMS_OP_ENABLE_KEY:
        return p11kms_enable_key(s->svc, s->who, key, &s->err);
    case KMS_OP_DISABLE_KEY:
        return p11kms_disable_key(s->svc, s->who, key, &s->err);
    case KMS_OP_SCHEDULE_KEY_DELETION:
        return op_schedule_key_deletion(s);
    case KMS_OP_CANCEL_KEY_DELETION:
        return op_cancel_key_deletion(s);
    case KMS_OP_UPDATE_KEY_DESCRIPTION:
        return p11kms_update_key_description(s->svc, s->who, key, str(s, "Description"), &s->err);
    case KMS_OP_ROTATE_KEY_ON_DEMAND:
        return op_rotate_key_on_demand(s);
    case KMS_OP_ENABLE_KEY_ROTATION: {
        const kms_value *days = val(s, "RotationPeriodInDays");
        return p11kms_enable_key_rotation(s->svc, s->who, key,
                                          days->present ? (unsigned)days->i : 0, &s->err);
    }
    case KMS_OP_DISABLE_KEY_ROTATION:
        return p11kms_disable_key_rotation(s->svc, s->who, key, &s->err);
    case KMS_OP_GET_KEY_ROTATION_STATUS:
        return op_get_key_rotation_status(s);
    case KMS_OP_LIST_KEY_ROTATIONS:
        return op_list_key_rotations(s);
    case KMS_OP_TAG_RESOURCE:
        return op_tag_resource(s);
    case KMS_OP_UNTAG_RESOURCE:
        return op_untag_resource(s);
    case KMS_OP_LIST_RESOURCE_TAGS:
        return op_list_resource_tags(s);
    case KMS_OP_CREATE_ALIAS:
        return p11kms_create_alias(s->svc, s->who, str(s, "AliasName"), str(s, "TargetKeyId"),
                                   &s->err);
    case KMS_OP_UPDATE_ALIAS:
        return p11kms_update_alias(s->svc, s->who, str(s, "AliasName"), str(s, "TargetKeyId"),
                                   &s->err);
    case KMS_OP_DELETE_ALIAS:
        return p11kms_delete_alias(s->svc, s->who, str(s, "AliasName"), &s->err);
    case KMS_OP_LIST_ALIASES:
        return op_list_aliases(s);
    case KMS_OP_ENCRYPT:
        return op_encrypt(s);
    case KMS_OP_DECRYPT:
        return op_decrypt(s, r);
    case KMS_OP_RE_ENCRYPT:
        return op_re_encrypt(s);
    case KMS_OP_GENERATE_DATA_KEY:
        return op_data_key(s, true, r);
    case KMS_OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT:
        return op_data_key(s, false, r);
    case KMS_OP_GENERATE_RANDOM:
        return op_generate_random(s, r);
    case KMS_OP_GET_PARAMETERS_FOR_IMPORT:
        return op_get_parameters_for_import(s);
    case KMS_OP_IMPORT_KEY_MATERIAL:
        return op_import_key_material(s);
    case KMS_OP_DELETE_IMPORTED_KEY_MATERIAL:
        return p11kms_delete_imported_key_material(s->svc, s->who, key, &s->err);
    case KMS_OP__COUNT:
        break;
    }
    return refuse(s, 400, "UnknownOperationException", "unknown operation");
}

/* The policy action that guards a key-bound operation, and the member naming its key. */
static bool key_action(kms_op op, const char **action, const char **member)
{
    static const struct {
        kms_op op;
        const char *action, *member;
    } table[] = {
        {KMS_OP_DESCRIBE_KEY, "describe-key", "KeyId"},
        {KMS_OP_ENABLE_KEY, "enable-key", "KeyId"},
        {KMS_OP_DISABLE_KEY, "disable-key", "KeyId"},
        {KMS_OP_SCHEDULE_KEY_DELETION, "schedule-key-deletion", "KeyId"},
        {KMS_OP_CANCEL_KEY_DELETION, "cancel-key-deletion", "KeyId"},
        {KMS_OP_UPDATE_KEY_DESCRIPTION, "update-key-description", "KeyId"},
        {KMS_OP_ROTATE_KEY_ON_DEMAND, "rotate-key-on-demand", "KeyId"},
        {KMS_OP_ENABLE_KEY_ROTATION, "enable-key-rotation", "KeyId"},
        {KMS_OP_DISABLE_KEY_ROTATION, "disable-key-rotation", "KeyId"},
        {KMS_OP_GET_KEY_ROTATION_STATUS, "get-key-rotation-status", "KeyId"},
        {KMS_OP_LIST_KEY_ROTATIONS, "list-key-rotations", "KeyId"},
        {KMS_OP_TAG_RESOURCE, "tag-resource", "KeyId"},
        {KMS_OP_UNTAG_RESOURCE, "untag-resource", "KeyId"},
        {KMS_OP_LIST_RESOURCE_TAGS, "list-resource-tags", "KeyId"},
        {KMS_OP_CREATE_ALIAS, "create-alias", "TargetKeyId"},
        {KMS_OP_UPDATE_ALIAS, "update-alias", "TargetKeyId"},
        {KMS_OP_DELETE_ALIAS, "delete-alias", "AliasName"},
        {KMS_OP_LIST_ALIASES, "describe-key", "KeyId"},
        {KMS_OP_ENCRYPT, "encrypt", "KeyId"},
        {KMS_OP_DECRYPT, "decrypt", "KeyId"},
        {KMS_OP_RE_ENCRYPT, "re-encrypt-to", "DestinationKeyId"},
        {KMS_OP_GENERATE_DATA_KEY, "generate-data-key", "KeyId"},
        {KMS_OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT, "generate-data-key-without-plaintext",
         "KeyId"},
        {KMS_OP_GET_PARAMETERS_FOR_IMPORT, "get-parameters-for-import", "KeyId"},
        {KMS_OP_IMPORT_KEY_MATERIAL, "import-key-material", "KeyId"},
        {KMS_OP_DELETE_IMPORTED_KEY_MATERIAL, "delete-imported-key-material", "KeyId"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].op == op) {
            *action = table[i].action;
            *member = table[i].member;
            return true;
        }
    return false;
}

/* A caller without rights learns nothing: a denial never names the resolved key, and a key
 * that does not exist is reported as denied unless the caller could use that name anyway
 * (then NotFound tells it nothing it could not learn). The same class and message either way. */
static void hide_existence(op_state *s, p11kms_err *rc)
{
    const char *action, *member;
    if (*rc == P11KMS_E_NOT_FOUND && key_action(s->req->op, &action, &member) &&
        str(s, member) != NULL) {
        bool allowed = false;
        char explanation[1024];
        p11kms_error ignored = {0};
        if (p11kms_policy_explain(s->svc, s->who, NULL, action, str(s, member), NULL, &allowed,
                                  explanation, sizeof(explanation), &ignored) != P11KMS_OK ||
            !allowed)
            *rc = P11KMS_E_ACCESS_DENIED;
    }
    if (*rc == P11KMS_E_ACCESS_DENIED) {
        kms_fault_set(&s->fault, 400, "AccessDeniedException",
                      "The caller is not authorized to perform kms:%s on this resource, or the "
                      "resource does not exist",
                      kms_op_name(s->req->op));
        s->faulted = true;
    }
}

/* Whether the model lists InvalidArnException among the operation's errors. The others (the
 * cryptographic operations, ListKeys, the alias writes, ...) report a malformed ARN as AWS
 * does: NotFoundException. */
static bool models_invalid_arn(kms_op op)
{
    switch (op) {
    case KMS_OP_ENCRYPT:
    case KMS_OP_DECRYPT:
    case KMS_OP_RE_ENCRYPT:
    case KMS_OP_GENERATE_DATA_KEY:
    case KMS_OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT:
    case KMS_OP_GENERATE_RANDOM:
    case KMS_OP_LIST_KEYS:
    case KMS_OP_LIST_KEY_ROTATIONS:
    case KMS_OP_ROTATE_KEY_ON_DEMAND:
    case KMS_OP_CREATE_ALIAS:
    case KMS_OP_UPDATE_ALIAS:
    case KMS_OP_DELETE_ALIAS:
        return false;
    default:
        return true;
    }
}

void kms_ops_perform(p11kms *svc, const p11kms_principal *who, const kms_request *req,
                     kms_reply *reply)
{
    memset(reply, 0, sizeof(*reply));
    op_state s = {.svc = svc, .who = who, .req = req, .reply = reply};
    s.o.root = json_object_new_object();
    if (s.o.root == NULL) {
        kms_fault_set(&s.fault, 500, "KMSInternalException", "out of memory");
        kms_reply_fault(reply, &s.fault);
        return;
    }
    note_key(&s, str(&s, "KeyId"));
    if (reply->key[0] == '\0')
        note_key(&s, str(&s, "AliasName"));
    p11kms_result r = {0};
    p11kms_err rc = perform(&s, &r);
    if (rc == P11KMS_E_INVALID_ARN && !s.faulted && !models_invalid_arn(req->op))
        rc = P11KMS_E_NOT_FOUND;
    if (rc != P11KMS_OK && !s.faulted)
        hide_existence(&s, &rc);
    if (rc == P11KMS_OK) {
        finish(&s.o, reply);
    } else {
        if (!s.faulted)
            kms_fault_from_error(rc, &s.err, &s.fault);
        kms_reply_fault(reply, &s.fault);
    }
    p11kms_result_free(&r);
    json_object_put(s.o.root);
}
