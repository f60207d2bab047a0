#include "config.h"

#include "cmd-common.h"

p11kms_err cli_cmd_rotate_key_on_demand(cli *c, p11kms_error *err)
{
    p11kms_key_metadata m;
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_rotate_key_on_demand(c->svc, c->who, cli_arg(&c->args, "key-id"), &m, err);
    if (rc == P11KMS_OK) {
        cli_json_string(c->out, cli_out_root(c->out), "KeyId", m.key_id);
        cli_json_int(c->out, cli_out_root(c->out), "CurrentKeyVersion", m.current_version);
    }
    return rc;
}

p11kms_err cli_cmd_enable_key_rotation(cli *c, p11kms_error *err)
{
    unsigned long days = 0; /* 0: the library's default period (365 days) */
    const char *text = cli_arg(&c->args, "rotation-period-in-days");
    p11kms_err rc = P11KMS_OK;
    if (text != NULL && (rc = cli_parse_unsigned("rotation-period-in-days", text, 1, UINT_MAX,
                                                 &days, err)) != P11KMS_OK)
        return rc;
    if ((rc = cli_service(c, err)) != P11KMS_OK)
        return rc;
    return p11kms_enable_key_rotation(c->svc, c->who, cli_arg(&c->args, "key-id"), (unsigned)days,
                                      err);
}

p11kms_err cli_cmd_disable_key_rotation(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK
               ? rc
               : p11kms_disable_key_rotation(c->svc, c->who, cli_arg(&c->args, "key-id"), err);
}

p11kms_err cli_cmd_get_key_rotation_status(cli *c, p11kms_error *err)
{
    p11kms_key_metadata m;
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_describe_key(c->svc, c->who, cli_arg(&c->args, "key-id"), &m, err);
    if (rc != P11KMS_OK)
        return rc;
    json_object *root = cli_out_root(c->out);
    cli_json_bool(c->out, root, "KeyRotationEnabled", m.rotation_enabled);
    cli_json_string(c->out, root, "KeyId", m.arn);
    if (m.rotation_enabled) {
        cli_json_int(c->out, root, "RotationPeriodInDays", m.rotation_period_days);
        cli_json_int(c->out, root, "NextRotationDate", m.next_rotation_date);
    }
    return P11KMS_OK;
}

typedef struct rotation_list {
    cli_out *out;
    json_object *array;
    const char *key_id;
} rotation_list;

static int add_rotation(const p11kms_rotation *r, void *arg)
{
    rotation_list *l = arg;
    json_object *e = cli_json_append_object(l->out, l->array);
    cli_json_string(l->out, e, "KeyId", l->key_id);
    cli_json_int(l->out, e, "RotationDate", r->rotation_date);
    cli_json_string(l->out, e, "RotationType", r->rotation_type);
    cli_json_int(l->out, e, "KeyVersion", r->version);
    return 0;
}

p11kms_err cli_cmd_list_key_rotations(cli *c, p11kms_error *err)
{
    const char *key = cli_arg(&c->args, "key-id");
    p11kms_key_metadata m;
    p11kms_err rc = cli_service(c, err);
    /* Rotations name the key by its id, whatever reference the caller used. */
    if (rc == P11KMS_OK)
        rc = p11kms_describe_key(c->svc, c->who, key, &m, err);
    if (rc != P11KMS_OK)
        return rc;
    rotation_list l = {c->out, cli_json_array(c->out, cli_out_root(c->out), "Rotations"), m.key_id};
    rc = p11kms_list_key_rotations(c->svc, c->who, key, add_rotation, &l, err);
    if (rc == P11KMS_OK)
        cli_json_bool(c->out, cli_out_root(c->out), "Truncated", false);
    return rc;
}
