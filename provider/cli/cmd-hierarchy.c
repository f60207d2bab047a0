/* The key hierarchy below a master key (doc/design.md §1). A chain is named from the top with
 * repeated
 * --parent options, each "BLOB[@CONTEXT]": the first blob was made by the service
 * (generate-data-key*), every later one by generate-child-key under the parent before it. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cmd-common.h"
#include "common/hex.h"

#define MAX_CHAIN 16

typedef struct chain {
    p11kms_opened_key *keys[MAX_CHAIN];
    size_t count;
} chain;

static void chain_close(chain *ch)
{
    while (ch->count > 0)
        p11kms_opened_key_close(ch->keys[--ch->count]);
}

/* Re-raises err with the parent's position in front, keeping its class. */
static p11kms_err name_parent(p11kms_err rc, size_t index, p11kms_error *err)
{
    char msg[sizeof(err->message)];
    snprintf(msg, sizeof(msg), "%s", err->message);
    return P11KMS_RAISE(err, rc, "--parent #%zu: %s", index + 1, msg);
}

static p11kms_err open_parent(cli *c, chain *ch, const char *spec, p11kms_error *err)
{
    size_t index = ch->count;
    /* The blob part never holds '@' (base64 cannot, and paths with '@' are documented as
     * unsupported), so the first '@' starts the context, which may hold more of them. */
    const char *at = strchr(spec, '@');
    size_t blob_len = at != NULL ? (size_t)(at - spec) : strlen(spec);
    char *blob_spec = strndup(spec, blob_len);
    if (blob_spec == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    cli_bytes blob = {0};
    p11kms_context *ctx = NULL;
    p11kms_err rc = cli_blob_param("--parent", blob_spec, false, &blob, err);
    if (rc == P11KMS_OK && at != NULL)
        rc = cli_context_param("--parent context", at + 1, &ctx, err);
    if (rc == P11KMS_OK && index == 0)
        rc = cli_service(c, err);
    if (rc == P11KMS_OK) {
        p11kms_opened_key *key = NULL;
        if (index == 0)
            rc = p11kms_open_key(c->svc, c->who, ctx, blob.data, blob.len, &key, err);
        else
            rc = p11kms_open_child_key(ch->keys[index - 1], ctx, blob.data, blob.len, &key, err);
        if (rc == P11KMS_OK)
            ch->keys[ch->count++] = key;
    }
    if (rc != P11KMS_OK)
        rc = name_parent(rc, index, err);
    p11kms_context_free(ctx);
    cli_bytes_clear(&blob);
    free(blob_spec);
    return rc;
}

static p11kms_err open_chain(cli *c, chain *ch, p11kms_error *err)
{
    size_t n;
    const char *const *parents = cli_arg_list(&c->args, "parent", &n);
    if (n > MAX_CHAIN)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "at most %d --parent options", MAX_CHAIN);
    for (size_t i = 0; i < n; i++) {
        p11kms_err rc = open_parent(c, ch, parents[i], err);
        if (rc != P11KMS_OK)
            return rc;
    }
    return P11KMS_OK;
}

static void parent_check_value(cli *c, const p11kms_opened_key *parent)
{
    uint8_t kcv[8];
    char hex[2 * sizeof(kcv) + 1];
    p11kms_opened_key_check_value(parent, kcv);
    hex_encode(kcv, sizeof(kcv), hex);
    cli_json_string(c->out, cli_out_root(c->out), "ParentKeyCheckValue", hex);
}

p11kms_err cli_cmd_generate_child_key(cli *c, p11kms_error *err)
{
    unsigned long key_len = 32;
    const char *len_text = cli_arg(&c->args, "key-length");
    bool want_plaintext = !cli_arg_flag(&c->args, "without-plaintext");
    p11kms_err rc = P11KMS_OK;
    if (len_text != NULL &&
        (rc = cli_parse_unsigned("key-length", len_text, 1, ULONG_MAX, &key_len, err)) != P11KMS_OK)
        return rc;
    p11kms_context *ctx = NULL;
    p11kms_result r = {0};
    chain ch = {0};
    rc = cli_context_param("--encryption-context", cli_arg(&c->args, "encryption-context"), &ctx,
                           err);
    if (rc == P11KMS_OK)
        rc = open_chain(c, &ch, err);
    if (rc == P11KMS_OK)
        rc = p11kms_generate_child_key(ch.keys[ch.count - 1], ctx, (size_t)key_len, want_plaintext,
                                       &r, err);
    if (rc == P11KMS_OK) {
        json_object *root = cli_out_root(c->out);
        cli_json_base64(c->out, root, "CiphertextBlob", r.ciphertext, r.ciphertext_len);
        if (want_plaintext)
            cli_json_secret(c->out, root, "Plaintext", r.plaintext, r.plaintext_len);
        parent_check_value(c, ch.keys[ch.count - 1]);
    }
    p11kms_result_free(&r);
    chain_close(&ch);
    p11kms_context_free(ctx);
    return rc;
}

p11kms_err cli_cmd_unwrap_child_key(cli *c, p11kms_error *err)
{
    cli_bytes blob = {0};
    p11kms_context *ctx = NULL;
    p11kms_result r = {0};
    chain ch = {0};
    p11kms_err rc =
        cli_blob_param("--child-blob", cli_arg(&c->args, "child-blob"), false, &blob, err);
    if (rc == P11KMS_OK)
        rc = cli_context_param("--encryption-context", cli_arg(&c->args, "encryption-context"),
                               &ctx, err);
    if (rc == P11KMS_OK)
        rc = open_chain(c, &ch, err);
    if (rc == P11KMS_OK)
        rc = p11kms_unwrap_child_key(ch.keys[ch.count - 1], ctx, blob.data, blob.len, &r, err);
    if (rc == P11KMS_OK) {
        cli_json_secret(c->out, cli_out_root(c->out), "Plaintext", r.plaintext, r.plaintext_len);
        parent_check_value(c, ch.keys[ch.count - 1]);
    }
    p11kms_result_free(&r);
    chain_close(&ch);
    p11kms_context_free(ctx);
    cli_bytes_clear(&blob);
    return rc;
}
