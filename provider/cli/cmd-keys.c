#include "config.h"

#include <string.h>

#include "cli.h"
#include "cmd-common.h"

void cli_key_metadata_json(cli_out *o, json_object *parent, const p11kms_key_metadata *m)
{
    json_object *km = cli_json_object(o, parent, "KeyMetadata");
    cli_json_string(o, km, "KeyId", m->key_id);
    cli_json_string(o, km, "Arn", m->arn);
    cli_json_int(o, km, "CreationDate", m->creation_date);
    cli_json_bool(o, km, "Enabled", m->state == P11KMS_KEY_ENABLED);
    cli_json_string(o, km, "Description", m->description);
    cli_json_string(o, km, "KeyUsage", "ENCRYPT_DECRYPT");
    cli_json_string(o, km, "KeyState", p11kms_key_state_name(m->state));
    if (m->state == P11KMS_KEY_PENDING_DELETION) {
        cli_json_int(o, km, "DeletionDate", m->deletion_date);
        cli_json_int(o, km, "PendingDeletionWindowInDays", m->pending_window_days);
    }
    cli_json_string(o, km, "Origin", p11kms_key_origin_name(m->origin));
    cli_json_string(o, km, "KeyManager", "CUSTOMER");
    cli_json_string(o, km, "CustomerMasterKeySpec", "SYMMETRIC_DEFAULT");
    cli_json_string(o, km, "KeySpec", "SYMMETRIC_DEFAULT");
    json_object *algs = cli_json_array(o, km, "EncryptionAlgorithms");
    cli_json_append_string(o, algs, "SYMMETRIC_DEFAULT");
    cli_json_int(o, km, "CurrentKeyVersion", m->current_version);
    if (m->expiration_model[0] != '\0')
        cli_json_string(o, km, "ExpirationModel", m->expiration_model);
    if (m->valid_to != 0)
        cli_json_int(o, km, "ValidTo", m->valid_to);
}

p11kms_err cli_cmd_create_key(cli *c, p11kms_error *err)
{
    p11kms_create_key_input in = {
        .key_spec = cli_arg(&c->args, "key-spec"),
        .key_usage = cli_arg(&c->args, "key-usage"),
        .origin = cli_arg(&c->args, "origin"),
    };
    char *description = NULL;
    cli_tags tags = {0};
    p11kms_key_metadata m;
    p11kms_err rc = P11KMS_OK;
    const char *d = cli_arg(&c->args, "description");
    if (d != NULL &&
        (rc = cli_text_param("--description", d, &in.description, &description, err)) != P11KMS_OK)
        return rc;
    size_t n;
    const char *const *values = cli_arg_list(&c->args, "tags", &n);
    if (n > 0 && (rc = cli_tags_param("--tags", values, n, &tags, err)) != P11KMS_OK)
        goto out;
    in.tags = tags.tags;
    in.tag_count = tags.count;
    if ((rc = cli_service(c, err)) != P11KMS_OK)
        goto out;
    if ((rc = p11kms_create_key(c->svc, c->who, &in, &m, err)) != P11KMS_OK)
        goto out;
    cli_key_metadata_json(c->out, cli_out_root(c->out), &m);
out:
    cli_tags_clear(&tags);
    free(description);
    return rc;
}

p11kms_err cli_cmd_describe_key(cli *c, p11kms_error *err)
{
    p11kms_key_metadata m;
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_describe_key(c->svc, c->who, cli_arg(&c->args, "key-id"), &m, err);
    if (rc == P11KMS_OK)
        cli_key_metadata_json(c->out, cli_out_root(c->out), &m);
    return rc;
}

typedef struct list_state {
    cli_out *out;
    json_object *array;
} list_state;

static int list_key(const char *key_id, const char *arn, void *arg)
{
    list_state *s = arg;
    json_object *k = cli_json_append_object(s->out, s->array);
    cli_json_string(s->out, k, "KeyId", key_id);
    cli_json_string(s->out, k, "KeyArn", arn);
    return 0;
}

p11kms_err cli_cmd_list_keys(cli *c, p11kms_error *err)
{
    list_state s = {c->out, cli_json_array(c->out, cli_out_root(c->out), "Keys")};
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc : p11kms_list_keys(c->svc, c->who, list_key, &s, err);
}

p11kms_err cli_cmd_enable_key(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc
                           : p11kms_enable_key(c->svc, c->who, cli_arg(&c->args, "key-id"), err);
}

p11kms_err cli_cmd_disable_key(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc
                           : p11kms_disable_key(c->svc, c->who, cli_arg(&c->args, "key-id"), err);
}

p11kms_err cli_cmd_schedule_key_deletion(cli *c, p11kms_error *err)
{
    unsigned long days = 0; /* 0: the library's default window (30 days) */
    const char *text = cli_arg(&c->args, "pending-window-in-days");
    p11kms_err rc = P11KMS_OK;
    /* 0 would silently mean "default" to the library: refuse it like any other bad window. */
    if (text != NULL && (rc = cli_parse_unsigned("pending-window-in-days", text, 1, UINT_MAX, &days,
                                                 err)) != P11KMS_OK)
        return rc;
    p11kms_key_metadata m;
    if ((rc = cli_service(c, err)) != P11KMS_OK)
        return rc;
    rc = p11kms_schedule_key_deletion(c->svc, c->who, cli_arg(&c->args, "key-id"), (unsigned)days,
                                      &m, err);
    if (rc != P11KMS_OK)
        return rc;
    json_object *root = cli_out_root(c->out);
    cli_json_string(c->out, root, "KeyId", m.arn);
    cli_json_int(c->out, root, "DeletionDate", m.deletion_date);
    cli_json_string(c->out, root, "KeyState", p11kms_key_state_name(m.state));
    cli_json_int(c->out, root, "PendingWindowInDays", m.pending_window_days);
    return P11KMS_OK;
}

p11kms_err cli_cmd_cancel_key_deletion(cli *c, p11kms_error *err)
{
    const char *key = cli_arg(&c->args, "key-id");
    p11kms_key_metadata m;
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_cancel_key_deletion(c->svc, c->who, key, err);
    /* CancelKeyDeletion answers with the key ARN. */
    if (rc == P11KMS_OK)
        rc = p11kms_describe_key(c->svc, c->who, key, &m, err);
    if (rc == P11KMS_OK)
        cli_json_string(c->out, cli_out_root(c->out), "KeyId", m.arn);
    return rc;
}

p11kms_err cli_cmd_update_key_description(cli *c, p11kms_error *err)
{
    const char *description;
    char *owned;
    p11kms_err rc = cli_text_param("--description", cli_arg(&c->args, "description"), &description,
                                   &owned, err);
    if (rc != P11KMS_OK)
        return rc;
    if ((rc = cli_service(c, err)) == P11KMS_OK)
        rc = p11kms_update_key_description(c->svc, c->who, cli_arg(&c->args, "key-id"), description,
                                           err);
    free(owned);
    return rc;
}
