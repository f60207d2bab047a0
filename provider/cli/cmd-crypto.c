#include "config.h"

#include <string.h>

#include "cmd-common.h"

#define ALGORITHM "SYMMETRIC_DEFAULT"

p11kms_err cli_cmd_encrypt(cli *c, p11kms_error *err)
{
    cli_bytes plaintext = {0};
    p11kms_context *ctx = NULL;
    p11kms_result r = {0};
    p11kms_err rc =
        cli_blob_param("--plaintext", cli_arg(&c->args, "plaintext"), true, &plaintext, err);
    if (rc == P11KMS_OK)
        rc = cli_context_param("--encryption-context", cli_arg(&c->args, "encryption-context"),
                               &ctx, err);
    if (rc == P11KMS_OK)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_encrypt(c->svc, c->who, cli_arg(&c->args, "key-id"), ctx, plaintext.data,
                            plaintext.len, &r, err);
    if (rc == P11KMS_OK) {
        json_object *root = cli_out_root(c->out);
        cli_json_base64(c->out, root, "CiphertextBlob", r.ciphertext, r.ciphertext_len);
        cli_json_string(c->out, root, "KeyId", r.key_id);
        cli_json_string(c->out, root, "EncryptionAlgorithm", ALGORITHM);
        cli_json_int(c->out, root, "KeyVersion", r.key_version);
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
    cli_bytes_clear(&plaintext);
    return rc;
}

p11kms_err cli_cmd_decrypt(cli *c, p11kms_error *err)
{
    cli_bytes blob = {0};
    p11kms_context *ctx = NULL;
    p11kms_result r = {0};
    p11kms_err rc = cli_blob_param("--ciphertext-blob", cli_arg(&c->args, "ciphertext-blob"), false,
                                   &blob, err);
    if (rc == P11KMS_OK)
        rc = cli_context_param("--encryption-context", cli_arg(&c->args, "encryption-context"),
                               &ctx, err);
    if (rc == P11KMS_OK)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_decrypt(c->svc, c->who, cli_arg(&c->args, "key-id"), ctx, blob.data, blob.len,
                            &r, err);
    if (rc == P11KMS_OK) {
        json_object *root = cli_out_root(c->out);
        cli_json_string(c->out, root, "KeyId", r.key_id);
        cli_json_secret(c->out, root, "Plaintext", r.plaintext, r.plaintext_len);
        cli_json_string(c->out, root, "EncryptionAlgorithm", ALGORITHM);
        cli_json_int(c->out, root, "KeyVersion", r.key_version);
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
    cli_bytes_clear(&blob);
    return rc;
}

p11kms_err cli_cmd_re_encrypt(cli *c, p11kms_error *err)
{
    cli_bytes blob = {0};
    p11kms_context *source_ctx = NULL;
    p11kms_context *dest_ctx = NULL;
    p11kms_result r = {0};
    p11kms_err rc = cli_blob_param("--ciphertext-blob", cli_arg(&c->args, "ciphertext-blob"), false,
                                   &blob, err);
    if (rc == P11KMS_OK)
        rc = cli_context_param("--source-encryption-context",
                               cli_arg(&c->args, "source-encryption-context"), &source_ctx, err);
    if (rc == P11KMS_OK)
        rc = cli_context_param("--destination-encryption-context",
                               cli_arg(&c->args, "destination-encryption-context"), &dest_ctx, err);
    if (rc == P11KMS_OK)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_re_encrypt(c->svc, c->who, cli_arg(&c->args, "source-key-id"), source_ctx,
                               blob.data, blob.len, cli_arg(&c->args, "destination-key-id"),
                               dest_ctx, &r, err);
    if (rc == P11KMS_OK) {
        json_object *root = cli_out_root(c->out);
        cli_json_base64(c->out, root, "CiphertextBlob", r.ciphertext, r.ciphertext_len);
        cli_json_string(c->out, root, "SourceKeyId", r.source_key_id);
        cli_json_string(c->out, root, "KeyId", r.key_id);
        cli_json_string(c->out, root, "SourceEncryptionAlgorithm", ALGORITHM);
        cli_json_string(c->out, root, "DestinationEncryptionAlgorithm", ALGORITHM);
        cli_json_int(c->out, root, "KeyVersion", r.key_version);
    }
    p11kms_result_free(&r);
    p11kms_context_free(dest_ctx);
    p11kms_context_free(source_ctx);
    cli_bytes_clear(&blob);
    return rc;
}

static p11kms_err data_key(cli *c, bool want_plaintext, p11kms_error *err)
{
    const char *spec = cli_arg(&c->args, "key-spec");
    const char *bytes_text = cli_arg(&c->args, "number-of-bytes");
    unsigned long bytes = 0;
    p11kms_err rc;
    if ((spec == NULL) == (bytes_text == NULL))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "%s: give exactly one of --key-spec and --number-of-bytes (see "
                            "'p11kms %s --help')",
                            c->command->name, c->command->name);
    if (bytes_text != NULL && (rc = cli_parse_unsigned("number-of-bytes", bytes_text, 1, ULONG_MAX,
                                                       &bytes, err)) != P11KMS_OK)
        return rc;
    p11kms_context *ctx = NULL;
    p11kms_result r = {0};
    rc = cli_context_param("--encryption-context", cli_arg(&c->args, "encryption-context"), &ctx,
                           err);
    if (rc == P11KMS_OK)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_generate_data_key(c->svc, c->who, cli_arg(&c->args, "key-id"), ctx, spec,
                                      (size_t)bytes, want_plaintext, &r, err);
    if (rc == P11KMS_OK) {
        json_object *root = cli_out_root(c->out);
        cli_json_base64(c->out, root, "CiphertextBlob", r.ciphertext, r.ciphertext_len);
        if (want_plaintext)
            cli_json_secret(c->out, root, "Plaintext", r.plaintext, r.plaintext_len);
        cli_json_string(c->out, root, "KeyId", r.key_id);
        cli_json_int(c->out, root, "KeyVersion", r.key_version);
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
    return rc;
}

p11kms_err cli_cmd_generate_data_key(cli *c, p11kms_error *err)
{
    return data_key(c, true, err);
}

p11kms_err cli_cmd_generate_data_key_without_plaintext(cli *c, p11kms_error *err)
{
    return data_key(c, false, err);
}

p11kms_err cli_cmd_generate_random(cli *c, p11kms_error *err)
{
    unsigned long bytes;
    p11kms_result r = {0};
    p11kms_err rc = cli_parse_unsigned("number-of-bytes", cli_arg(&c->args, "number-of-bytes"), 1,
                                       ULONG_MAX, &bytes, err);
    if (rc == P11KMS_OK)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK)
        rc = p11kms_generate_random(c->svc, c->who, (size_t)bytes, &r, err);
    if (rc == P11KMS_OK)
        cli_json_secret(c->out, cli_out_root(c->out), "Plaintext", r.plaintext, r.plaintext_len);
    p11kms_result_free(&r);
    return rc;
}
