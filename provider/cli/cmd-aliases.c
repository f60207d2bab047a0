#include "config.h"

#include "cmd-common.h"

p11kms_err cli_cmd_create_alias(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc
                           : p11kms_create_alias(c->svc, c->who, cli_arg(&c->args, "alias-name"),
                                                 cli_arg(&c->args, "target-key-id"), err);
}

p11kms_err cli_cmd_update_alias(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc
                           : p11kms_update_alias(c->svc, c->who, cli_arg(&c->args, "alias-name"),
                                                 cli_arg(&c->args, "target-key-id"), err);
}

p11kms_err cli_cmd_delete_alias(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK
               ? rc
               : p11kms_delete_alias(c->svc, c->who, cli_arg(&c->args, "alias-name"), err);
}

typedef struct alias_list {
    cli_out *out;
    json_object *array;
} alias_list;

static int add_alias(const char *alias_name, const char *alias_arn, const char *target_key_id,
                     void *arg)
{
    alias_list *l = arg;
    json_object *e = cli_json_append_object(l->out, l->array);
    cli_json_string(l->out, e, "AliasName", alias_name);
    cli_json_string(l->out, e, "AliasArn", alias_arn);
    if (target_key_id != NULL && target_key_id[0] != '\0')
        cli_json_string(l->out, e, "TargetKeyId", target_key_id);
    return 0;
}

p11kms_err cli_cmd_list_aliases(cli *c, p11kms_error *err)
{
    alias_list l = {c->out, cli_json_array(c->out, cli_out_root(c->out), "Aliases")};
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc
                           : p11kms_list_aliases(c->svc, c->who, cli_arg(&c->args, "key-id"),
                                                 add_alias, &l, err);
}

p11kms_err cli_cmd_tag_resource(cli *c, p11kms_error *err)
{
    size_t n;
    const char *const *values = cli_arg_list(&c->args, "tags", &n);
    cli_tags tags;
    p11kms_err rc = cli_tags_param("--tags", values, n, &tags, err);
    if (rc != P11KMS_OK)
        return rc;
    if ((rc = cli_service(c, err)) == P11KMS_OK)
        rc = p11kms_tag_resource(c->svc, c->who, cli_arg(&c->args, "key-id"), tags.tags, tags.count,
                                 err);
    cli_tags_clear(&tags);
    return rc;
}

p11kms_err cli_cmd_untag_resource(cli *c, p11kms_error *err)
{
    size_t n;
    const char *const *values = cli_arg_list(&c->args, "tag-keys", &n);
    cli_strings keys;
    p11kms_err rc = cli_tag_keys_param("--tag-keys", values, n, &keys, err);
    if (rc != P11KMS_OK)
        return rc;
    if ((rc = cli_service(c, err)) == P11KMS_OK)
        rc = p11kms_untag_resource(c->svc, c->who, cli_arg(&c->args, "key-id"),
                                   (const char *const *)keys.items, keys.count, err);
    cli_strings_clear(&keys);
    return rc;
}

typedef struct tag_list {
    cli_out *out;
    json_object *array;
} tag_list;

static int add_tag(const p11kms_tag *tag, void *arg)
{
    tag_list *l = arg;
    json_object *e = cli_json_append_object(l->out, l->array);
    cli_json_string(l->out, e, "TagKey", tag->key);
    cli_json_string(l->out, e, "TagValue", tag->value);
    return 0;
}

p11kms_err cli_cmd_list_resource_tags(cli *c, p11kms_error *err)
{
    tag_list l = {c->out, cli_json_array(c->out, cli_out_root(c->out), "Tags")};
    p11kms_err rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_list_resource_tags(c->svc, c->who, cli_arg(&c->args, "key-id"), add_tag, &l,
                                       err);
    if (rc == P11KMS_OK)
        cli_json_bool(c->out, cli_out_root(c->out), "Truncated", false);
    return rc;
}
