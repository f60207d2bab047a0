/* p11kms's own tools: token report, maintenance, and policy checking and explaining. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd-common.h"

/* PKCS#11 text fields are blank-padded and not NUL-terminated in the token; the report holds
 * them as C strings, possibly still padded. */
static void json_trimmed(cli_out *o, json_object *obj, const char *key, const char *text,
                         size_t size)
{
    char buf[256];
    size_t n = strnlen(text, size < sizeof(buf) ? size : sizeof(buf) - 1);
    memcpy(buf, text, n);
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
    cli_json_string(o, obj, key, buf);
}

#define TRIMMED(o, obj, key, field) json_trimmed(o, obj, key, field, sizeof(field))

p11kms_err cli_cmd_token_info(cli *c, p11kms_error *err)
{
    p11kms_token_report *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    /* A token that fails the capability check is opened all the same: this reports why. */
    p11kms_err rc = cli_service_with(c, P11KMS_OPEN_TOKEN_REPORT, err);
    if (rc == P11KMS_OK)
        rc = p11kms_token_info(c->svc, t, err);
    if (rc == P11KMS_OK) {
        cli_out *o = c->out;
        json_object *root = cli_out_root(o);
        TRIMMED(o, root, "Module", t->module);
        json_object *lib = cli_json_object(o, root, "Library");
        TRIMMED(o, lib, "Description", t->library_description);
        TRIMMED(o, lib, "Manufacturer", t->library_manufacturer);
        TRIMMED(o, lib, "Version", t->library_version);
        TRIMMED(o, lib, "CryptokiVersion", t->cryptoki_version);
        cli_json_bool(o, lib, "ViaGetInterface", t->via_get_interface);
        json_object *tok = cli_json_object(o, root, "Token");
        TRIMMED(o, tok, "Label", t->token_label);
        TRIMMED(o, tok, "Manufacturer", t->token_manufacturer);
        TRIMMED(o, tok, "Model", t->token_model);
        TRIMMED(o, tok, "SerialNumber", t->token_serial);
        cli_json_int(o, tok, "SlotId", (int64_t)t->slot_id);
        cli_json_int(o, tok, "SessionPoolSize", t->pool_size);
        json_object *kc = cli_json_object(o, root, "KeyCache");
        cli_json_string(o, kc, "Mode", t->key_cache);
        if (t->key_cache_reason[0] != '\0')
            cli_json_string(o, kc, "Reason", t->key_cache_reason);
        cli_json_int(o, kc, "SessionKeys", t->session_keys);
        cli_json_int(o, kc, "SessionCopies", (int64_t)t->session_copies);
        cli_json_int(o, kc, "RefusedKeys", t->refused_keys);
        json_object *mechs = cli_json_array(o, root, "Mechanisms");
        size_t n = t->mechanism_count;
        if (n > sizeof(t->mechanisms) / sizeof(t->mechanisms[0]))
            n = sizeof(t->mechanisms) / sizeof(t->mechanisms[0]);
        for (size_t i = 0; i < n; i++) {
            const p11kms_token_mechanism *m = &t->mechanisms[i];
            json_object *e = cli_json_append_object(o, mechs);
            cli_json_string(o, e, "Name", m->name != NULL ? m->name : "");
            cli_json_string(o, e, "Purpose", m->purpose != NULL ? m->purpose : "");
            cli_json_bool(o, e, "Supported", m->supported);
        }
        json_object *caps = cli_json_array(o, root, "Capabilities");
        bool all_required = true;
        for (size_t i = 0; i < t->capability_count; i++) {
            const struct p11kms_token_capability *k = &t->capabilities[i];
            json_object *e = cli_json_append_object(o, caps);
            cli_json_string(o, e, "Check", k->name);
            cli_json_string(o, e, "Needed", k->needed);
            cli_json_bool(o, e, "Required", k->required);
            cli_json_string(o, e, "Result", k->passed ? "pass" : "fail");
            cli_json_string(o, e, "Detail", k->detail);
            if (k->required && !k->passed)
                all_required = false;
        }
        cli_json_bool(o, root, "CanServe", all_required);
    }
    free(t);
    return rc;
}

typedef struct maintain_state {
    cli *c;
    json_object *actions;
    p11kms_err write_rc;
    p11kms_error write_err;
} maintain_state;

static void maintain_line(const char *line, void *arg)
{
    maintain_state *s = arg;
    if (s->c->globals.output == CLI_OUTPUT_JSON) {
        cli_json_append_string(s->c->out, s->actions, line);
        return;
    }
    /* Text: each action as it happens, so an interrupted run still shows what it did. */
    if (s->write_rc == P11KMS_OK)
        s->write_rc = cli_write_all(STDOUT_FILENO, line, strlen(line), &s->write_err);
    if (s->write_rc == P11KMS_OK)
        s->write_rc = cli_write_all(STDOUT_FILENO, "\n", 1, &s->write_err);
}

p11kms_err cli_cmd_maintain(cli *c, p11kms_error *err)
{
    maintain_state s = {.c = c};
    if (c->globals.output == CLI_OUTPUT_JSON)
        s.actions = cli_json_array(c->out, cli_out_root(c->out), "Actions");
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_maintain(c->svc, c->who, maintain_line, &s, err);
    if (rc != P11KMS_OK && c->globals.output == CLI_OUTPUT_JSON) {
        /* The actions already taken are reported even when a later one failed. */
        p11kms_error ignored;
        (void)cli_out_print(c->out, c->globals.output, &ignored);
    }
    if (rc == P11KMS_OK && s.write_rc != P11KMS_OK) {
        *err = s.write_err;
        rc = s.write_rc;
    }
    return rc;
}

p11kms_err cli_cmd_store_migrate(cli *c, p11kms_error *err)
{
    maintain_state s = {.c = c};
    if (c->globals.output == CLI_OUTPUT_JSON)
        s.actions = cli_json_array(c->out, cli_out_root(c->out), "Actions");
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_store_migrate(c->svc, maintain_line, &s, err);
    if (rc != P11KMS_OK && c->globals.output == CLI_OUTPUT_JSON) {
        p11kms_error ignored;
        (void)cli_out_print(c->out, c->globals.output, &ignored);
    }
    if (rc == P11KMS_OK && s.write_rc != P11KMS_OK) {
        *err = s.write_err;
        rc = s.write_rc;
    }
    return rc;
}

typedef struct check_state {
    p11kms_err write_rc;
    p11kms_error write_err;
    size_t lines;
} check_state;

static void check_line(const char *line, void *arg)
{
    check_state *s = arg;
    s->lines++;
    if (s->write_rc == P11KMS_OK)
        s->write_rc = cli_write_all(STDOUT_FILENO, line, strlen(line), &s->write_err);
    if (s->write_rc == P11KMS_OK)
        s->write_rc = cli_write_all(STDOUT_FILENO, "\n", 1, &s->write_err);
}

p11kms_err cli_cmd_policy_check(cli *c, p11kms_error *err)
{
    const char *path = c->args.positionals[0];
    check_state s = {0};
    p11kms_err rc = p11kms_policy_check_file(path, check_line, &s, err);
    if (rc == P11KMS_OK && s.write_rc == P11KMS_OK) {
        char line[4200];
        snprintf(line, sizeof(line), "%s: OK\n", path);
        return cli_write_all(STDOUT_FILENO, line, strlen(line), err);
    }
    if (s.write_rc != P11KMS_OK) {
        *err = s.write_err;
        return s.write_rc;
    }
    if (s.lines > 1) {
        char msg[sizeof(err->message)];
        snprintf(msg, sizeof(msg), "%s", err->message);
        P11KMS_RAISE(err, rc, "%.200s: %zu errors, the first: %s", path, s.lines, msg);
    }
    return rc;
}

/* Without --principal the subject is the caller: the OS user as the CLI names itself. */
p11kms_err cli_cmd_policy_explain(cli *c, p11kms_error *err)
{
    size_t n = 0;
    const char *const *names = cli_arg_list(&c->args, "principal", &n);
    p11kms_context *ctx = NULL;
    char explanation[4096] = "";
    bool allowed = false;
    p11kms_principal *subject = NULL;
    p11kms_err rc = P11KMS_OK;
    if (n > 0 && (subject = p11kms_principal_new()) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == P11KMS_OK && i < n; i++)
        rc = p11kms_principal_add(subject, names[i], err);
    if (rc == P11KMS_OK)
        rc = cli_context_param("--encryption-context", cli_arg(&c->args, "encryption-context"),
                               &ctx, err);
    if (rc == P11KMS_OK)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_policy_explain(c->svc, c->who, subject, cli_arg(&c->args, "action"),
                                   cli_arg(&c->args, "key-id"), ctx, &allowed, explanation,
                                   sizeof(explanation), err);
    if (rc == P11KMS_OK) {
        cli_json_string(c->out, cli_out_root(c->out), "Decision", allowed ? "Allowed" : "Denied");
        cli_json_string(c->out, cli_out_root(c->out), "Explanation", explanation);
    }
    p11kms_context_free(ctx);
    p11kms_principal_free(subject);
    return rc;
}
