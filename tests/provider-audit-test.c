#include "config.h"

/* The audit trail through the library: every public operation, allowed, denied or refused
 * before the policy, leaves exactly one record with the right fields (the policy's sid among
 * them) and never a secret; a front end's source and request id reach the record; and each kind
 * of tampering (an edited byte, a deleted line, two lines swapped, a forged line inserted, a cut
 * tail, a line spliced in from another log, a forged record with a recomputed chain) is found
 * by p11kms_audit_verify at the right line. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/audit.h"
#include "provider/gate.h"
#include "provider/keystore.h"
#include "provider/store.h"

static p11kms *svc;
static p11kms_principal *admin, *app1, *app2, *nobody;
static p11kms_error e;
static char *log_path;
static size_t seen; /* records read so far */

static const char *const policy_text =
    "version: 1\n"
    "global:\n"
    "  - sid: admin-global\n"
    "    effect: allow\n"
    "    principals: [unix:user:admin1]\n"
    "    actions: [create-key, list-keys, list-aliases, create-credentials, delete-credentials,\n"
    "              maintain, explain-policy]\n"
    "statements:\n"
    "  - sid: admin-manage\n"
    "    effect: allow\n"
    "    principals: [unix:user:admin1]\n"
    "    keys: [\"*\"]\n"
    "    actions: [describe-key, list-resource-tags, list-key-rotations, enable-key, disable-key,\n"
    "              schedule-key-deletion, cancel-key-deletion, rotate-key-on-demand,\n"
    "              enable-key-rotation, disable-key-rotation, create-alias, delete-alias,\n"
    "              update-alias, tag-resource, untag-resource, update-key-description]\n"
    "  - sid: apps-use\n"
    "    effect: allow\n"
    "    principals: [unix:user:app1, unix:user:app2]\n"
    "    keys: [\"alias/app-*\"]\n"
    "    actions: [encrypt, decrypt, generate-data-key, generate-data-key-without-plaintext,\n"
    "              re-encrypt-from, re-encrypt-to]\n"
    "    conditions:\n"
    "      context-keys-any: [tenant]\n"
    "  - sid: app2-no-decrypt\n"
    "    effect: deny\n"
    "    principals: [unix:user:app2]\n"
    "    keys: [alias/app-one]\n"
    "    actions: [decrypt]\n";

/* --- reading the log ------------------------------------------------------------------------ */

static json_object **records;
static size_t record_count;

static void read_records(void)
{
    for (size_t i = 0; i < record_count; i++)
        json_object_put(records[i]);
    free(records);
    records = NULL;
    record_count = 0;
    char *text = test_read_file(log_path, NULL);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_object *o = json_tokener_parse(line);
        REQUIRE(o != NULL);
        json_object *v;
        if (!json_object_object_get_ex(o, "seq", &v)) {
            json_object_put(o);
            continue;
        }
        records = realloc(records, (record_count + 1) * sizeof(*records));
        REQUIRE(records != NULL);
        records[record_count++] = o;
    }
    free(text);
}

static const char *str(json_object *o, const char *path)
{
    /* "a.b" walks objects; "resources.0.keyId" walks the first array element too. */
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_object *cur = o;
    for (char *part = strtok(buf, "."); part != NULL && cur != NULL; part = strtok(NULL, ".")) {
        if (json_object_is_type(cur, json_type_array))
            cur = json_object_array_get_idx(cur, (size_t)atoi(part));
        else if (!json_object_object_get_ex(cur, part, &cur))
            cur = NULL;
    }
    return cur != NULL ? json_object_get_string(cur) : NULL;
}

static bool str_is(json_object *o, const char *path, const char *want)
{
    const char *got = str(o, path);
    if (want == NULL)
        return got == NULL;
    return got != NULL && strcmp(got, want) == 0;
}

/* The one record the last call left: exactly one new record, named event. */
static json_object *one_record(const char *event, int line)
{
    read_records();
    check_count++;
    if (record_count != seen + 1) {
        check_failures++;
        fprintf(stderr, "%s:%d: %s: want exactly 1 new record, got %zu\n", __FILE__, line, event,
                record_count - seen);
        seen = record_count;
        return record_count > 0 ? records[record_count - 1] : NULL;
    }
    seen = record_count;
    json_object *r = records[record_count - 1];
    if (!str_is(r, "eventName", event)) {
        check_failures++;
        fprintf(stderr, "%s:%d: want eventName %s, got %s\n", __FILE__, line, event,
                str(r, "eventName"));
    }
    return r;
}

#define RECORD(event) one_record(event, __LINE__)

/* decision NULL: none was made; sid NULL: none; code NULL: success. */
static void check_rec(json_object *r, const char *decision, const char *sid, const char *code,
                      int line)
{
    const char *cls = code == NULL                                 ? "Success"
                      : strcmp(code, "AccessDeniedException") == 0 ? "AccessDenied"
                                                                   : "ClientError";
    check_count++;
    if (r == NULL || !str_is(r, "decision", decision) || !str_is(r, "sid", sid) ||
        !str_is(r, "errorCode", code) || !str_is(r, "resultClass", cls)) {
        check_failures++;
        fprintf(stderr, "%s:%d: want decision %s sid %s error %s, got %s\n", __FILE__, line,
                decision ? decision : "-", sid ? sid : "-", code ? code : "-",
                r ? json_object_to_json_string(r) : "nothing");
    }
}

#define CHECK_REC(r, decision, sid, code) check_rec(r, decision, sid, code, __LINE__)

/* --- every operation ------------------------------------------------------------------------ */

static int ignore_key(const char *a, const char *b, void *arg)
{
    (void)a, (void)b, (void)arg;
    return 0;
}
static int ignore_alias(const char *a, const char *b, const char *c, void *arg)
{
    (void)a, (void)b, (void)c, (void)arg;
    return 0;
}
static int ignore_tag(const p11kms_tag *t, void *arg)
{
    (void)t, (void)arg;
    return 0;
}
static int ignore_rotation(const p11kms_rotation *r, void *arg)
{
    (void)r, (void)arg;
    return 0;
}
static void ignore_line(const char *l, void *arg)
{
    (void)l, (void)arg;
}

static const uint8_t secret[] = "AUDIT-SECRET-PLAINTEXT-0123456789";

static void test_every_operation(void)
{
    json_object *r;
    char k1[P11KMS_KEY_ID_LEN + 1], k2[P11KMS_KEY_ID_LEN + 1];
    p11kms_key_metadata m;
    p11kms_context *ctx = fx_ctx("tenant", "t1", NULL);
    p11kms_result res, res2;

    fx_say("management operations by the administrator: Allow with the deciding sid");
    p11kms_create_key_input in = {.description = "audited"};
    CHECK_OK(p11kms_create_key(svc, admin, &in, &m, &e), &e);
    snprintf(k1, sizeof(k1), "%s", m.key_id);
    r = RECORD("CreateKey");
    CHECK_REC(r, "Allow", "admin-global", NULL);
    CHECK(str_is(r, "resources.0.keyId", k1));
    CHECK(str_is(r, "userIdentity.principals.0", "unix:user:admin1"));
    CHECK(str(r, "requestID") != NULL && strlen(str(r, "requestID")) == 36);
    CHECK(str(r, "eventTime") != NULL && strlen(str(r, "eventTime")) == 24);
    CHECK(str(r, "source") != NULL && strncmp(str(r, "source"), "local pid=", 10) == 0);
    CHECK_OK(p11kms_create_key(svc, admin, &in, &m, &e), &e);
    snprintf(k2, sizeof(k2), "%s", m.key_id);
    RECORD("CreateKey");

    CHECK_OK(p11kms_create_alias(svc, admin, "alias/app-one", k1, &e), &e);
    r = RECORD("CreateAlias");
    CHECK_REC(r, "Allow", "admin-manage", NULL);
    CHECK(str_is(r, "requestParameters.keyId", "alias/app-one"));
    CHECK(str_is(r, "requestParameters.destinationKeyId", k1));
    CHECK_OK(p11kms_create_alias(svc, admin, "alias/app-two", k2, &e), &e);
    RECORD("CreateAlias");
    CHECK_OK(p11kms_describe_key(svc, admin, "alias/app-one", &m, &e), &e);
    r = RECORD("DescribeKey");
    CHECK_REC(r, "Allow", "admin-manage", NULL);
    CHECK(str_is(r, "resources.0.keyId", k1));
    CHECK_OK(p11kms_list_keys(svc, admin, ignore_key, NULL, &e), &e);
    CHECK_REC(RECORD("ListKeys"), "Allow", "admin-global", NULL);
    CHECK_OK(p11kms_list_aliases(svc, admin, NULL, ignore_alias, NULL, &e), &e);
    CHECK_REC(RECORD("ListAliases"), "Allow", "admin-global", NULL);
    p11kms_tag tag = {"team", "a"};
    CHECK_OK(p11kms_tag_resource(svc, admin, k1, &tag, 1, &e), &e);
    CHECK_REC(RECORD("TagResource"), "Allow", "admin-manage", NULL);
    const char *tag_keys[] = {"team"};
    CHECK_OK(p11kms_untag_resource(svc, admin, k1, tag_keys, 1, &e), &e);
    CHECK_REC(RECORD("UntagResource"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_list_resource_tags(svc, admin, k1, ignore_tag, NULL, &e), &e);
    CHECK_REC(RECORD("ListResourceTags"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_update_key_description(svc, admin, k1, "changed", &e), &e);
    CHECK_REC(RECORD("UpdateKeyDescription"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_enable_key_rotation(svc, admin, k1, 0, &e), &e);
    CHECK_REC(RECORD("EnableKeyRotation"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_disable_key_rotation(svc, admin, k1, &e), &e);
    CHECK_REC(RECORD("DisableKeyRotation"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, admin, k1, &m, &e), &e);
    CHECK_REC(RECORD("RotateKeyOnDemand"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_list_key_rotations(svc, admin, k1, ignore_rotation, NULL, &e), &e);
    CHECK_REC(RECORD("ListKeyRotations"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_disable_key(svc, admin, k2, &e), &e);
    CHECK_REC(RECORD("DisableKey"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_enable_key(svc, admin, k2, &e), &e);
    CHECK_REC(RECORD("EnableKey"), "Allow", "admin-manage", NULL);

    fx_say("cryptographic operations by the application: key, version and context recorded");
    CHECK_OK(p11kms_encrypt(svc, app1, "alias/app-one", ctx, secret, sizeof(secret), &res, &e), &e);
    r = RECORD("Encrypt");
    CHECK_REC(r, "Allow", "apps-use", NULL);
    CHECK(str_is(r, "requestParameters.keyId", "alias/app-one"));
    CHECK(str_is(r, "requestParameters.encryptionContext.tenant", "t1"));
    CHECK(str_is(r, "resources.0.keyId", k1));
    CHECK(str_is(r, "resources.0.keyVersion", "2"));
    char arn[P11KMS_ARN_MAX];
    fx_key_arn(k1, arn);
    CHECK(str_is(r, "resources.0.ARN", arn));
    /* The same request again is decided from the gate's cache, which keeps no sid: the record
     * must still name the deciding statement. */
    uint64_t hits_before, hits_after, misses;
    gate_decision_stats(svc, &hits_before, &misses);
    p11kms_result again = {0};
    CHECK_OK(p11kms_encrypt(svc, app1, "alias/app-one", ctx, secret, sizeof(secret), &again, &e),
             &e);
    p11kms_result_free(&again);
    gate_decision_stats(svc, &hits_after, &misses);
    CHECK(hits_after == hits_before + 1);
    CHECK_REC(RECORD("Encrypt"), "Allow", "apps-use", NULL);
    CHECK_OK(p11kms_decrypt(svc, app1, NULL, ctx, res.ciphertext, res.ciphertext_len, &res2, &e),
             &e);
    CHECK_REC(RECORD("Decrypt"), "Allow", "apps-use", NULL);
    p11kms_result_free(&res2);
    CHECK_OK(p11kms_re_encrypt(svc, app1, NULL, ctx, res.ciphertext, res.ciphertext_len,
                               "alias/app-two", ctx, &res2, &e),
             &e);
    r = RECORD("ReEncrypt");
    CHECK_REC(r, "Allow", "apps-use", NULL);
    CHECK(str_is(r, "resources.0.keyId", k1));
    CHECK(str_is(r, "resources.1.keyId", k2));
    CHECK(str_is(r, "requestParameters.destinationKeyId", "alias/app-two"));
    p11kms_result_free(&res2);
    CHECK_OK(
        p11kms_generate_data_key(svc, app1, "alias/app-one", ctx, "AES_256", 0, true, &res2, &e),
        &e);
    CHECK_REC(RECORD("GenerateDataKey"), "Allow", "apps-use", NULL);
    p11kms_opened_key *opened = NULL;
    CHECK_OK(p11kms_open_key(svc, app1, ctx, res2.ciphertext, res2.ciphertext_len, &opened, &e),
             &e);
    /* open_key decrypts through the public Decrypt: still one record. */
    CHECK_REC(RECORD("OpenKey"), "Allow", "apps-use", NULL);
    p11kms_opened_key_close(opened);
    p11kms_result_free(&res2);
    CHECK_OK(p11kms_generate_data_key(svc, app1, "alias/app-one", ctx, NULL, 64, false, &res2, &e),
             &e);
    CHECK_REC(RECORD("GenerateDataKeyWithoutPlaintext"), "Allow", "apps-use", NULL);
    p11kms_result_free(&res2);

    fx_say("refusals: a deny statement names its sid, no statement leaves none");
    CHECK_ERR(p11kms_decrypt(svc, app2, NULL, ctx, res.ciphertext, res.ciphertext_len, &res2, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    r = RECORD("Decrypt");
    CHECK_REC(r, "Deny", "app2-no-decrypt", "AccessDeniedException");
    CHECK(str(r, "errorMessage") != NULL);
    CHECK_ERR(p11kms_encrypt(svc, nobody, "alias/app-one", ctx, secret, 4, &res2, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK_REC(RECORD("Encrypt"), "Deny", NULL, "AccessDeniedException");
    CHECK_ERR(p11kms_encrypt(svc, app1, "alias/app-one", NULL, secret, 4, &res2, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK_REC(RECORD("Encrypt"), "Deny", NULL, "AccessDeniedException");
    CHECK_ERR(p11kms_generate_random(svc, app1, 16, &res2, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_REC(RECORD("GenerateRandom"), "Deny", NULL, "AccessDeniedException");
    CHECK_ERR(p11kms_disable_key(svc, app1, "alias/app-one", &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_REC(RECORD("DisableKey"), "Deny", NULL, "AccessDeniedException");

    fx_say("a request refused before the policy is asked: one record, no decision");
    CHECK_ERR(p11kms_encrypt(svc, app1, "alias/app-one", ctx, secret, 0, &res2, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_REC(RECORD("Encrypt"), NULL, NULL, "ValidationException");
    CHECK_ERR(p11kms_describe_key(svc, admin, "alias/missing", &m, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_REC(RECORD("DescribeKey"), "Allow", "admin-manage", "NotFoundException");
    /* err NULL (allowed for every public function): the record still has the message */
    CHECK(p11kms_describe_key(svc, admin, "alias/missing", &m, NULL) == P11KMS_E_NOT_FOUND);
    r = RECORD("DescribeKey");
    CHECK_REC(r, "Allow", "admin-manage", "NotFoundException");
    CHECK(str(r, "errorMessage") != NULL &&
          strstr(str(r, "errorMessage"), "alias/missing") != NULL);

    fx_say("aliases, deletion, maintenance");
    CHECK_OK(p11kms_update_alias(svc, admin, "alias/app-two", k1, &e), &e);
    CHECK_REC(RECORD("UpdateAlias"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_delete_alias(svc, admin, "alias/app-two", &e), &e);
    CHECK_REC(RECORD("DeleteAlias"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_schedule_key_deletion(svc, admin, k2, 7, &m, &e), &e);
    CHECK_REC(RECORD("ScheduleKeyDeletion"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_cancel_key_deletion(svc, admin, k2, &e), &e);
    CHECK_REC(RECORD("CancelKeyDeletion"), "Allow", "admin-manage", NULL);
    CHECK_OK(p11kms_maintain(svc, admin, ignore_line, NULL, &e), &e);
    CHECK_REC(RECORD("Maintain"), "Allow", "admin-global", NULL);
    CHECK_OK(p11kms_store_migrate(svc, ignore_line, NULL, &e), &e);
    CHECK_REC(RECORD("MigrateStore"), NULL, NULL, NULL);

    fx_say("policy explain: a question about another principal is recorded, one about oneself "
           "is not (p11kmsd asks so inside requests that have their own record)");
    bool allowed = false;
    char why[512];
    CHECK_OK(p11kms_policy_explain(svc, admin, app1, "encrypt", "alias/app-one", ctx, &allowed, why,
                                   sizeof(why), &e),
             &e);
    r = RECORD("ExplainPolicy");
    CHECK_REC(r, "Allow", "admin-global", NULL);
    CHECK(str_is(r, "requestParameters.keyId", "alias/app-one"));
    CHECK_ERR(p11kms_policy_explain(svc, app1, app2, "encrypt", "alias/app-one", ctx, &allowed, why,
                                    sizeof(why), &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK_REC(RECORD("ExplainPolicy"), "Deny", NULL, "AccessDeniedException");
    CHECK_OK(p11kms_policy_explain(svc, app1, NULL, "encrypt", "alias/app-one", ctx, &allowed, why,
                                   sizeof(why), &e),
             &e);
    read_records();
    CHECK(record_count == seen);

    fx_say("credentials: creation and deletion recorded, the secret never");
    p11kms_credential cred;
    char *sk = NULL;
    CHECK_OK(p11kms_credentials_create(svc, admin, "etl-job", &cred, &sk, &e), &e);
    r = RECORD("CreateCredentials");
    CHECK_REC(r, "Allow", "admin-global", NULL);
    CHECK(sk != NULL && strstr(json_object_to_json_string(r), sk) == NULL);
    p11kms_secret_free(sk);
    sk = NULL;
    p11kms_credential denied;
    CHECK_ERR(p11kms_credentials_create(svc, app1, "etl-job", &denied, &sk, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK_REC(RECORD("CreateCredentials"), "Deny", NULL, "AccessDeniedException");
    CHECK_OK(p11kms_credentials_delete(svc, admin, cred.access_key_id, &e), &e);
    CHECK_REC(RECORD("DeleteCredentials"), "Allow", "admin-global", NULL);

    fx_say("a front end's source and request id reach the record");
    p11kms_principal *remote = fx_principal("unix:user:app1");
    CHECK_OK(p11kms_principal_set_source(remote, "unix pid=4242 uid=1001", &e), &e);
    CHECK_OK(p11kms_principal_set_request_id(remote, "req-0001", &e), &e);
    CHECK_OK(p11kms_encrypt(svc, remote, "alias/app-one", ctx, secret, 8, &res2, &e), &e);
    r = RECORD("Encrypt");
    CHECK(str_is(r, "source", "unix pid=4242 uid=1001"));
    CHECK(str_is(r, "requestID", "req-0001"));
    p11kms_result_free(&res2);
    CHECK_ERR(p11kms_principal_set_source(remote, "", &e), P11KMS_E_VALIDATION, &e);
    p11kms_principal_free(remote);

    fx_say("no plaintext, data key or ciphertext body in the log");
    char *text = test_read_file(log_path, NULL);
    CHECK(strstr(text, (const char *)secret) == NULL);
    CHECK(strstr(text, "AUDIT-SECRET") == NULL);
    free(text);

    p11kms_result_free(&res);
    p11kms_context_free(ctx);
}

/* --- tampering ------------------------------------------------------------------------------ */

typedef struct lines {
    char **v;
    size_t n;
} lines;

static lines split(const char *path)
{
    lines l = {0};
    char *text = test_read_file(path, NULL);
    for (char *p = strtok(text, "\n"); p != NULL; p = strtok(NULL, "\n")) {
        l.v = realloc(l.v, (l.n + 1) * sizeof(*l.v));
        REQUIRE(l.v != NULL);
        l.v[l.n++] = strdup(p);
    }
    free(text);
    return l;
}

static char *join_to(const char *name, const lines *l)
{
    size_t total = 1;
    for (size_t i = 0; i < l->n; i++)
        total += strlen(l->v[i]) + 1;
    char *text = calloc(1, total);
    size_t used = 0;
    for (size_t i = 0; i < l->n; i++)
        used += (size_t)snprintf(text + used, total - used, "%s\n", l->v[i]);
    char *path = fx_write_file(name, text);
    free(text);
    return path;
}

static void free_lines(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static char first_invalid[1024];

static void verify_line(const char *line, void *arg)
{
    (void)arg;
    fprintf(stderr, "    verify: %s\n", line);
    if (first_invalid[0] == '\0' && strncmp(line, "INVALID ", 8) == 0)
        snprintf(first_invalid, sizeof(first_invalid), "%s", line + 8);
}

/* Verifies the files; returns validity and leaves the first INVALID finding in first_invalid. */
static bool verify(const char *const *files, size_t n)
{
    bool valid = false;
    first_invalid[0] = '\0';
    CHECK_OK(p11kms_audit_verify(svc, files, n, verify_line, NULL, &valid, &e), &e);
    return valid;
}

/* The tampered file must be refused, the finding naming path:line and containing what. */
static void expect_invalid(const char *path, size_t line, const char *what)
{
    const char *files[] = {path};
    CHECK(!verify(files, 1));
    char where[600];
    snprintf(where, sizeof(where), "%s:%zu: ", path, line);
    check_count++;
    if (strncmp(first_invalid, where, strlen(where)) != 0 || strstr(first_invalid, what) == NULL) {
        check_failures++;
        fprintf(stderr, "%s: want a finding at %s about \"%s\", got \"%s\"\n", __FILE__, where,
                what, first_invalid);
    }
}

/* Recomputes every seq and prev after an insertion, as a forger without the audit key would. */
static void rechain(lines *l)
{
    uint8_t hash[AUDIT_HASH_LEN] = {0};
    uint64_t seq = 0;
    for (size_t i = 0; i < l->n; i++) {
        json_object *o = json_tokener_parse(l->v[i]);
        REQUIRE(o != NULL);
        char prev[2 * AUDIT_HASH_LEN + 1];
        hex_encode(hash, AUDIT_HASH_LEN, prev);
        json_object *v;
        if (json_object_object_get_ex(o, "seq", &v))
            json_object_object_add(o, "seq", json_object_new_int64((int64_t)++seq));
        else
            json_object_object_add(o, "seal", json_object_new_int64((int64_t)seq));
        json_object_object_add(o, "prev", json_object_new_string(prev));
        free(l->v[i]);
        l->v[i] = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        audit_hash_line(l->v[i], strlen(l->v[i]), hash);
    }
}

static void test_tampering(const char *other_log)
{
    fx_say("the untouched log verifies against the token and its checkpoint");
    const char *files[] = {log_path};
    CHECK(verify(files, 1));
    CHECK(first_invalid[0] == '\0');

    lines l = split(log_path);
    REQUIRE(l.n > 12);
    /* Line numbers are 1-based; l.v[4] is line 5. Records sit on odd lines, seals on even. */

    fx_say("an edited byte is located at the line after the edited one");
    lines t = split(log_path);
    char *p = strstr(t.v[4], "\"eventName\":\"");
    REQUIRE(p != NULL);
    p[14] ^= 0x01; /* one letter of the operation name */
    char *path = join_to("tamper-edit.log", &t);
    expect_invalid(path, 6, "tamper-edit.log:5");
    free(path);
    free_lines(&t);

    fx_say("a deleted record line is located by the missing sequence number");
    t = split(log_path);
    free(t.v[4]);
    memmove(&t.v[4], &t.v[5], (t.n - 5) * sizeof(*t.v));
    t.n--;
    path = join_to("tamper-delete.log", &t);
    expect_invalid(path, 5, "records 3..3 are missing (deleted)");
    free(path);
    free_lines(&t);

    fx_say("two swapped records are located");
    t = split(log_path);
    char *tmp = t.v[4];
    t.v[4] = t.v[6];
    t.v[6] = tmp;
    path = join_to("tamper-swap.log", &t);
    expect_invalid(path, 5, "records 3..3 are missing (deleted)");
    free(path);
    free_lines(&t);

    fx_say("a forged line inserted is located");
    t = split(log_path);
    t.v = realloc(t.v, (t.n + 1) * sizeof(*t.v));
    memmove(&t.v[5], &t.v[4], (t.n - 4) * sizeof(*t.v));
    t.n++;
    t.v[4] = strdup(t.v[2]); /* a copy of an earlier record */
    path = join_to("tamper-insert.log", &t);
    expect_invalid(path, 5, "out of order");
    free(path);

    fx_say("a forged record with the whole chain recomputed fails at the next seal's MAC");
    rechain(&t);
    path = join_to("tamper-rechain.log", &t);
    expect_invalid(path, 7, "MAC does not verify");
    free(path);
    free_lines(&t);

    fx_say("a cut tail is found by the token's checkpoint");
    t = split(log_path);
    free(t.v[--t.n]);
    free(t.v[--t.n]);
    path = join_to("tamper-truncate.log", &t);
    expect_invalid(path, 0, "truncated");
    free(path);
    free_lines(&t);

    fx_say("a line spliced in from another log is located");
    lines other = split(other_log);
    t = split(log_path);
    free(t.v[6]);
    t.v[6] = strdup(other.v[0]);
    path = join_to("tamper-splice.log", &t);
    expect_invalid(path, 7, "record seq 1");
    free(path);
    free_lines(&t);
    free_lines(&other);

    fx_say("a seal made with another key (another token) is named as such");
    t = split(log_path);
    p = strstr(t.v[3], "\"mac\":\"");
    REQUIRE(p != NULL);
    p[7] = p[7] == '0' ? '1' : '0';
    path = join_to("tamper-seal.log", &t);
    expect_invalid(path, 4, "another token");
    free(path);
    free_lines(&t);
    free_lines(&l);
}

/* The checkpoint is a row of the key store (authenticated by the token's integrity key), not a
 * token object; one an earlier version left in the token is moved into the store at start-up;
 * an edited row is refused. */
static void test_checkpoint_in_store(const char *audit_cfg)
{
    lines l = split(log_path);
    const char *seal = l.v[l.n - 1];
    const char *at = strstr(seal, "\"chain\":\"");
    REQUIRE(at != NULL);
    char chain[2 * AUDIT_CHAIN_ID_LEN + 1], label[128];
    snprintf(chain, sizeof(chain), "%.*s", 2 * AUDIT_CHAIN_ID_LEN, at + 9);
    snprintf(label, sizeof(label), "%s-%s", AUDIT_CHECKPOINT_LABEL, chain);
    free(l.v[--l.n]);
    free(l.v[--l.n]);
    char *cut = join_to("checkpoint-truncate.log", &l);
    free_lines(&l);

    fx_say("the checkpoint is a row of the store, and no token object");
    uint8_t *value = NULL, *legacy = NULL;
    size_t len = 0, legacy_len = 0;
    CHECK_OK(keystore_audit_read(svc, chain, &value, &len, &e), &e);
    CHECK_ERR(p11_data_read(svc->token, label, &legacy, &legacy_len, &e), P11KMS_E_NOT_FOUND, &e);
    store_row row;
    CHECK_OK(store_get(svc->store, STORE_AUDIT, chain, &row, &e), &e);
    CHECK(row.version >= 1);
    store_row_clear(&row);

    fx_say("a checkpoint left in the token by an earlier version still detects a cut tail");
    /* Earlier versions kept it as a CKO_DATA object. Only a token that stores data objects can
     * hold one to upgrade (NSS softokn refuses the class: CKR_ATTRIBUTE_VALUE_INVALID), so the
     * upgrade is checked where writing one works; a token that refuses it must refuse it as a
     * token error, and everything else in this test still runs there. */
    p11kms_err made = p11_data_create(svc->token, label, value, len, &e);
    const char *kind = getenv("P11KMS_TEST_TOKEN");
    if (made != P11KMS_OK) {
        /* the codes a token refuses an object class or its template with, not a p11kms error */
        CHECK(made == P11KMS_E_TOKEN &&
              (e.ckr == CKR_ATTRIBUTE_VALUE_INVALID || e.ckr == CKR_TEMPLATE_INCONSISTENT ||
               e.ckr == CKR_ATTRIBUTE_TYPE_INVALID || e.ckr == CKR_FUNCTION_NOT_SUPPORTED));
        /* SoftHSM stores data objects: there the upgrade is always checked, never passed over */
        CHECK(kind == NULL || strcmp(kind, "softhsm") != 0);
        fprintf(stderr,
                "not run on this token: the upgrade of a checkpoint left in the token by an "
                "earlier version (the token refuses CKO_DATA objects: %s)\n",
                e.message);
    } else {
        CHECK_OK(store_delete(svc->store, STORE_AUDIT, chain, &e), &e);
        expect_invalid(cut, 0, "truncated");

        fx_say("opening the audit log moves it into the store and deletes the token object");
        p11kms_close(svc);
        svc = fx_open(audit_cfg);
        p11kms_close(svc);
        svc = fx_open(audit_cfg);
        CHECK_ERR(p11_data_read(svc->token, label, &legacy, &legacy_len, &e), P11KMS_E_NOT_FOUND,
                  &e);
        uint8_t *moved = NULL;
        size_t moved_len = 0;
        CHECK_OK(keystore_audit_read(svc, chain, &moved, &moved_len, &e), &e);
        CHECK(moved_len == len && moved != NULL && memcmp(moved, value, len) == 0);
        free(moved);
        expect_invalid(cut, 0, "truncated");
    }
    const char *files[] = {log_path};
    CHECK(verify(files, 1));

    fx_say("a checkpoint row edited in the database is refused");
    CHECK_OK(store_get(svc->store, STORE_AUDIT, chain, &row, &e), &e);
    REQUIRE(row.len > 0);
    row.value[0] = row.value[0] == '1' ? '2' : '1';
    row.version++;
    CHECK_OK(store_put(svc->store, STORE_AUDIT, &row, &e), &e);
    store_row_clear(&row);
    CHECK(!verify(files, 1));
    CHECK(strncmp(first_invalid, "checkpoint:0: ", 14) == 0 &&
          strstr(first_invalid, "integrity check") != NULL);
    free(value);
    free(cut);
}

/* What the gate reports is kept as given, and cut to the record's fields when longer (a waiver
 * reason may be twice an audit field): never past them. */
static void test_decision_note_bounds(void)
{
    fx_say("decision notes: copied whole when they fit, cut at the field's size when not");
    static const char key_id[] = "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5";
    audit_req a;
    audit_begin(&a, NULL, "Encrypt", NULL, NULL, NULL);
    audit_note_decision(false, true, "apps-use", true, "incident 42", key_id);
    CHECK(strcmp(a.sid, "apps-use") == 0 && a.waiver &&
          strcmp(a.waiver_reason, "incident 42") == 0);
    CHECK(strcmp(a.key_id, key_id) == 0 && a.dest_key_id[0] == '\0');
    CHECK(audit_end(&a, P11KMS_OK, &e) == P11KMS_OK);

    char sid[AUDIT_SID_MAX + 50], reason[2 * AUDIT_WAIVER_MAX + 1];
    memset(sid, 's', sizeof(sid) - 1);
    sid[sizeof(sid) - 1] = '\0';
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    audit_begin(&a, NULL, "Encrypt", NULL, NULL, NULL);
    audit_note_decision(true, false, sid, true, reason, key_id);
    CHECK(strlen(a.sid) == AUDIT_SID_MAX - 1 && strspn(a.sid, "s") == AUDIT_SID_MAX - 1);
    CHECK(strlen(a.waiver_reason) == AUDIT_WAIVER_MAX - 1);
    CHECK(a.denied && a.key_id[0] == '\0' && strcmp(a.dest_key_id, key_id) == 0);
    CHECK(audit_end(&a, P11KMS_OK, &e) == P11KMS_OK);

    audit_begin(&a, NULL, "Encrypt", NULL, NULL, NULL);
    audit_note_decision(false, false, NULL, false, "not kept without a waiver", NULL);
    CHECK(a.sid[0] == '\0' && a.waiver_reason[0] == '\0' && a.key_id[0] == '\0' && a.denied);
    CHECK(audit_end(&a, P11KMS_OK, &e) == P11KMS_OK);
}

int main(void)
{
    test_decision_note_bounds();
    char *policy_path = fx_write_file("policy.yaml", policy_text);
    char *cfg = fx_config("audit.yaml", NULL, NULL, policy_path);
    log_path = fx_write_file("audit.log", "");
    FILE *f = fopen(cfg, "a");
    REQUIRE(f != NULL);
    fprintf(f, "audit:\n  file: %s\n  checkpoint-seconds: 3600\n", log_path);
    fclose(f);
    admin = fx_principal("unix:user:admin1");
    app1 = fx_principal("unix:user:app1");
    app2 = fx_principal("unix:user:app2");
    nobody = fx_principal("unix:user:nobody");

    svc = fx_open(cfg);
    test_every_operation();
    p11kms_close(svc); /* the shutdown checkpoint */

    /* A second, independent log of the same token: the source of a spliced line. */
    char *other_log = fx_write_file("other.log", "");
    char *other_cfg = fx_config("other.yaml", NULL, NULL, policy_path);
    f = fopen(other_cfg, "a");
    REQUIRE(f != NULL);
    fprintf(f, "audit:\n  file: %s\n", other_log);
    fclose(f);
    svc = fx_open(other_cfg);
    p11kms_context *ctx = fx_ctx("tenant", "x", NULL);
    p11kms_result res;
    CHECK_ERR(p11kms_encrypt(svc, nobody, "alias/app-one", ctx, secret, 4, &res, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    p11kms_context_free(ctx);
    p11kms_close(svc);

    /* Verify with a service that writes nothing (no audit section). */
    char *plain_cfg = fx_config("plain.yaml", NULL, NULL, policy_path);
    svc = fx_open(plain_cfg);
    test_tampering(other_log);
    test_checkpoint_in_store(cfg);
    p11kms_close(svc);

    for (size_t i = 0; i < record_count; i++)
        json_object_put(records[i]);
    free(records);
    free(plain_cfg);
    free(other_cfg);
    free(other_log);
    free(cfg);
    free(policy_path);
    free(log_path);
    p11kms_principal_free(admin);
    p11kms_principal_free(app1);
    p11kms_principal_free(app2);
    p11kms_principal_free(nobody);
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
