/* p11kms audit verify / audit show: the audit trail, for auditors and for people. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cmd-common.h"

typedef struct verify_state {
    p11kms_err write_rc;
    p11kms_error write_err;
    char first[512];
} verify_state;

static void verify_line(const char *line, void *arg)
{
    verify_state *s = arg;
    if (s->first[0] == '\0' && strncmp(line, "INVALID ", 8) == 0)
        snprintf(s->first, sizeof(s->first), "%s", line + 8);
    if (s->write_rc == P11KMS_OK)
        s->write_rc = cli_write_all(STDOUT_FILENO, line, strlen(line), &s->write_err);
    if (s->write_rc == P11KMS_OK)
        s->write_rc = cli_write_all(STDOUT_FILENO, "\n", 1, &s->write_err);
}

p11kms_err cli_cmd_audit_verify(cli *c, p11kms_error *err)
{
    verify_state s = {0};
    bool valid = false;
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_audit_verify(c->svc, c->args.positionals, c->args.positional_count, verify_line,
                                 &s, &valid, err);
    if (rc == P11KMS_OK && s.write_rc != P11KMS_OK) {
        *err = s.write_err;
        return s.write_rc;
    }
    if (rc == P11KMS_OK && !valid)
        rc = P11KMS_RAISE(err, P11KMS_E_INVALID_CIPHERTEXT, "the audit log does not verify: %s",
                          s.first[0] ? s.first : "see the report above");
    return rc;
}

/* --- show ------------------------------------------------------------------------------------ */

typedef struct show_filter {
    const char *key, *principal, *operation, *decision, *since, *until;
} show_filter;

static const char *member(json_object *o, const char *name)
{
    json_object *v;
    return json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static bool key_matches(json_object *rec, const char *key)
{
    json_object *params, *resources;
    if (json_object_object_get_ex(rec, "requestParameters", &params)) {
        const char *k = member(params, "keyId"), *d = member(params, "destinationKeyId");
        if ((k && strcmp(k, key) == 0) || (d && strcmp(d, key) == 0))
            return true;
    }
    if (json_object_object_get_ex(rec, "resources", &resources) &&
        json_object_is_type(resources, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(resources); i++) {
            json_object *r = json_object_array_get_idx(resources, i);
            const char *id = member(r, "keyId"), *arn = member(r, "ARN");
            if ((id && strcmp(id, key) == 0) || (arn && strcmp(arn, key) == 0))
                return true;
        }
    }
    return false;
}

static bool principal_matches(json_object *rec, const char *name)
{
    json_object *identity, *list;
    if (!json_object_object_get_ex(rec, "userIdentity", &identity) ||
        !json_object_object_get_ex(identity, "principals", &list) ||
        !json_object_is_type(list, json_type_array))
        return false;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        const char *p = json_object_get_string(json_object_array_get_idx(list, i));
        if (p != NULL && strcmp(p, name) == 0)
            return true;
    }
    return false;
}

static bool wanted(json_object *rec, const show_filter *f)
{
    const char *name = member(rec, "eventName"), *time = member(rec, "eventTime");
    const char *decision = member(rec, "decision");
    if (name == NULL || time == NULL)
        return false; /* seals */
    if (f->operation && strcasecmp(f->operation, name) != 0)
        return false;
    if (f->decision && (decision == NULL || strcasecmp(f->decision, decision) != 0))
        return false;
    /* ISO 8601 UTC times compare as strings; a prefix such as 2026-11-30 is allowed. */
    if (f->since && strncmp(time, f->since, strlen(f->since)) < 0)
        return false;
    if (f->until && strncmp(time, f->until, strlen(f->until)) > 0)
        return false;
    if (f->key && !key_matches(rec, f->key))
        return false;
    if (f->principal && !principal_matches(rec, f->principal))
        return false;
    return true;
}

static void text_line(json_object *rec, char *out, size_t size)
{
    json_object *identity, *list, *resources;
    const char *who = "-", *key = "-";
    if (json_object_object_get_ex(rec, "userIdentity", &identity) &&
        json_object_object_get_ex(identity, "principals", &list) &&
        json_object_array_length(list) > 0)
        who = json_object_get_string(json_object_array_get_idx(list, 0));
    if (json_object_object_get_ex(rec, "resources", &resources) &&
        json_object_array_length(resources) > 0) {
        const char *id = member(json_object_array_get_idx(resources, 0), "keyId");
        key = id ? id : "-";
    }
    json_object *seq;
    json_object_object_get_ex(rec, "seq", &seq);
    const char *decision = member(rec, "decision"), *sid = member(rec, "sid");
    const char *code = member(rec, "errorCode");
    snprintf(out, size, "%" PRId64 "\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", json_object_get_int64(seq),
             member(rec, "eventTime"), member(rec, "eventName"), who, key,
             decision ? decision : "-", sid ? sid : "-", code ? code : "OK");
}

static p11kms_err show_file(const char *path, const show_filter *f, bool text, p11kms_error *err)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    p11kms_err rc = P11KMS_OK;
    while (rc == P11KMS_OK && (n = getline(&line, &cap, fp)) > 0) {
        json_object *rec = json_tokener_parse(line);
        if (rec != NULL && json_object_is_type(rec, json_type_object) && wanted(rec, f)) {
            if (text) {
                char out[2048];
                text_line(rec, out, sizeof(out));
                rc = cli_write_all(STDOUT_FILENO, out, strlen(out), err);
            } else {
                rc = cli_write_all(STDOUT_FILENO, line, (size_t)n, err);
            }
        }
        json_object_put(rec);
    }
    free(line);
    fclose(fp);
    return rc;
}

p11kms_err cli_cmd_audit_show(cli *c, p11kms_error *err)
{
    show_filter f = {
        .key = cli_arg(&c->args, "key-id"),
        .principal = cli_arg(&c->args, "principal"),
        .operation = cli_arg(&c->args, "operation"),
        .decision = cli_arg(&c->args, "decision"),
        .since = cli_arg(&c->args, "since"),
        .until = cli_arg(&c->args, "until"),
    };
    if (f.decision && strcasecmp(f.decision, "Allow") != 0 && strcasecmp(f.decision, "Deny") != 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "--decision must be Allow or Deny");
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; rc == P11KMS_OK && i < c->args.positional_count; i++)
        rc = show_file(c->args.positionals[i], &f, c->globals.output == CLI_OUTPUT_TEXT, err);
    return rc;
}
