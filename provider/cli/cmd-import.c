/* Imported key material, shaped like "aws kms get-parameters-for-import",
 * "import-key-material" and "delete-imported-key-material". */
#define _GNU_SOURCE /* timegm */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cmd-common.h"

p11kms_err cli_cmd_get_parameters_for_import(cli *c, p11kms_error *err)
{
    p11kms_import_parameters p;
    p11kms_err rc = cli_service(c, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = p11kms_get_parameters_for_import(c->svc, c->who, cli_arg(&c->args, "key-id"),
                                          cli_arg(&c->args, "wrapping-algorithm"),
                                          cli_arg(&c->args, "wrapping-key-spec"), &p, err);
    if (rc != P11KMS_OK)
        return rc;
    json_object *root = cli_out_root(c->out);
    cli_json_string(c->out, root, "KeyId", p.key_id);
    cli_json_base64(c->out, root, "ImportToken", p.import_token, p.import_token_len);
    cli_json_base64(c->out, root, "PublicKey", p.public_key, p.public_key_len);
    cli_json_int(c->out, root, "ParametersValidTo", p.parameters_valid_to);
    p11kms_import_parameters_free(&p);
    return P11KMS_OK;
}

/* --valid-to: seconds since the epoch, or ISO 8601 UTC ("2027-01-31T12:00:00Z", or a date). */
static p11kms_err parse_valid_to(const char *text, int64_t *out, p11kms_error *err)
{
    char *end = NULL;
    errno = 0;
    long long secs = strtoll(text, &end, 10);
    if (end != text && *end == '\0' && errno == 0 && secs > 0) {
        *out = secs;
        return P11KMS_OK;
    }
    static const char *const formats[] = {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *rest = strptime(text, formats[i], &tm);
        if (rest != NULL && *rest == '\0') {
            *out = (int64_t)timegm(&tm);
            return P11KMS_OK;
        }
    }
    return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                        "--valid-to: %.64s is neither seconds since the epoch nor an ISO 8601 "
                        "UTC time (2027-01-31T12:00:00Z)",
                        text);
}

p11kms_err cli_cmd_import_key_material(cli *c, p11kms_error *err)
{
    cli_bytes material = {0}, token = {0};
    p11kms_import_input in = {.expiration_model = cli_arg(&c->args, "expiration-model")};
    const char *valid_to = cli_arg(&c->args, "valid-to");
    p11kms_err rc = P11KMS_OK;
    if (valid_to != NULL && (rc = parse_valid_to(valid_to, &in.valid_to, err)) != P11KMS_OK)
        return rc;
    /* Wrapped material is not a secret (only the token can unwrap it). */
    if ((rc = cli_blob_param("--encrypted-key-material",
                             cli_arg(&c->args, "encrypted-key-material"), false, &material, err)) !=
            P11KMS_OK ||
        (rc = cli_blob_param("--import-token", cli_arg(&c->args, "import-token"), false, &token,
                             err)) != P11KMS_OK)
        goto out;
    in.encrypted_key_material = material.data;
    in.encrypted_key_material_len = material.len;
    in.import_token = token.data;
    in.import_token_len = token.len;
    if ((rc = cli_service(c, err)) != P11KMS_OK)
        goto out;
    rc = p11kms_import_key_material(c->svc, c->who, cli_arg(&c->args, "key-id"), &in, err);
out:
    cli_bytes_clear(&material);
    cli_bytes_clear(&token);
    return rc;
}

p11kms_err cli_cmd_delete_imported_key_material(cli *c, p11kms_error *err)
{
    p11kms_err rc = cli_service(c, err);
    if (rc != P11KMS_OK)
        return rc;
    return p11kms_delete_imported_key_material(c->svc, c->who, cli_arg(&c->args, "key-id"), err);
}
