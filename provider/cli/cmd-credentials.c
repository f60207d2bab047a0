/* SigV4 credentials of p11kmsd callers: create (the secret is shown once), list, delete. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cmd-common.h"

p11kms_err cli_cmd_credentials_create(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    if (rc != P11KMS_OK)
        return rc;
    p11kms_credential cred;
    char *secret = NULL;
    rc = p11kms_credentials_create(c->svc, c->who, cli_arg(&c->args, "principal-name"), &cred,
                                   &secret, err);
    if (rc != P11KMS_OK)
        return rc;
    /* As aws iam create-access-key prints it. The secret enters neither json-c nor stdio: it is
     * spliced into the output written to fd 1, then wiped (cli_out_free, p11kms_secret_free). */
    json_object *key = cli_json_object(c->out, cli_out_root(c->out), "AccessKey");
    cli_json_string(c->out, key, "UserName", cred.principal_name);
    cli_json_string(c->out, key, "AccessKeyId", cred.access_key_id);
    cli_json_string(c->out, key, "Status", "Active");
    cli_json_secret_text(c->out, key, "SecretAccessKey", secret);
    char principal[8 + P11KMS_ACCESS_KEY_ID_LEN];
    snprintf(principal, sizeof(principal), "sigv4:%s", cred.access_key_id);
    cli_json_string(c->out, key, "PolicyPrincipal", principal);
    p11kms_secret_free(secret);
    return P11KMS_OK;
}

typedef struct list_state {
    cli_out *out;
    json_object *array;
} list_state;

static int list_one(const p11kms_credential *cred, void *arg)
{
    list_state *s = arg;
    json_object *e = cli_json_append_object(s->out, s->array);
    cli_json_string(s->out, e, "UserName", cred->principal_name);
    cli_json_string(s->out, e, "AccessKeyId", cred->access_key_id);
    cli_json_string(s->out, e, "Status", "Active");
    return 0;
}

p11kms_err cli_cmd_credentials_list(cli *c, p11kms_error *err)
{
    list_state s = {c->out, cli_json_array(c->out, cli_out_root(c->out), "AccessKeyMetadata")};
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK ? rc : p11kms_credentials_list(c->svc, c->who, list_one, &s, err);
}

p11kms_err cli_cmd_credentials_delete(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    return rc != P11KMS_OK
               ? rc
               : p11kms_credentials_delete(c->svc, c->who, cli_arg(&c->args, "access-key-id"), err);
}
