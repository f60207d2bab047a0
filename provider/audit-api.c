/* The public operations: each one is exactly one audit record around its kms_op_* (which asks
 * the gate, and the gate reports its decisions into the record). Outputs of an operation whose
 * record cannot be written are discarded when audit.on-failure is refuse. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/audit.h"
#include "provider/context-api.h"

/* --- for front ends ------------------------------------------------------------------------- */

static p11kms_err set_text(char **slot, const char *value, size_t max, const char *what,
                           p11kms_error *err)
{
    if (value == NULL || value[0] == '\0' || strlen(value) > max)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s must have 1..%zu bytes", what, max);
    char *copy = strdup(value);
    if (copy == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    free(*slot);
    *slot = copy;
    return P11KMS_OK;
}

p11kms_err p11kms_principal_set_source(p11kms_principal *p, const char *source, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return set_text(&p->source, source, 256, "a request source", err);
}

p11kms_err p11kms_principal_set_request_id(p11kms_principal *p, const char *request_id,
                                           p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return set_text(&p->request_id, request_id, 128, "a request id", err);
}

/* --- cryptographic operations --------------------------------------------------------------- */

/* A refused answer gives nothing back: outputs that were made are wiped. */
static p11kms_err finish_result(audit_req *a, p11kms_err rc, p11kms_result *out, p11kms_error *err)
{
    if (rc == P11KMS_OK)
        a->key_version = out->key_version;
    p11kms_err answer = audit_end(a, rc, err);
    if (audit_refused(rc, answer))
        p11kms_result_free(out);
    return answer;
}

p11kms_err p11kms_encrypt(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                          const p11kms_context *ctx, const uint8_t *plaintext, size_t len,
                          p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "Encrypt", who, key_ref, ctx);
    p11kms_err rc = kms_op_encrypt(svc, who, key_ref, ctx, plaintext, len, out, err);
    return finish_result(&a, rc, out, err);
}

p11kms_err p11kms_decrypt(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                          const p11kms_context *ctx, const uint8_t *blob, size_t blob_len,
                          p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "Decrypt", who, key_ref, ctx);
    p11kms_err rc = kms_op_decrypt(svc, who, key_ref, ctx, blob, blob_len, out, err);
    return finish_result(&a, rc, out, err);
}

p11kms_err p11kms_re_encrypt(p11kms *svc, const p11kms_principal *who, const char *source_key_ref,
                             const p11kms_context *source_ctx, const uint8_t *blob, size_t blob_len,
                             const char *dest_key_ref, const p11kms_context *dest_ctx,
                             p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "ReEncrypt", who, source_key_ref, source_ctx);
    a.dest_key_ref = dest_key_ref;
    a.dest_ctx = dest_ctx;
    p11kms_err rc = kms_op_re_encrypt(svc, who, source_key_ref, source_ctx, blob, blob_len,
                                      dest_key_ref, dest_ctx, out, err);
    return finish_result(&a, rc, out, err);
}

p11kms_err p11kms_generate_data_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                    const p11kms_context *ctx, const char *key_spec,
                                    size_t number_of_bytes, bool want_plaintext, p11kms_result *out,
                                    p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, want_plaintext ? "GenerateDataKey" : "GenerateDataKeyWithoutPlaintext",
                who, key_ref, ctx);
    p11kms_err rc = kms_op_generate_data_key(svc, who, key_ref, ctx, key_spec, number_of_bytes,
                                             want_plaintext, out, err);
    return finish_result(&a, rc, out, err);
}

p11kms_err p11kms_generate_random(p11kms *svc, const p11kms_principal *who, size_t number_of_bytes,
                                  p11kms_result *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "GenerateRandom", who, NULL, NULL);
    p11kms_err rc = kms_op_generate_random(svc, who, number_of_bytes, out, err);
    return finish_result(&a, rc, out, err);
}

p11kms_err p11kms_open_key(p11kms *svc, const p11kms_principal *who, const p11kms_context *ctx,
                           const uint8_t *blob, size_t blob_len, p11kms_opened_key **out,
                           p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "OpenKey", who, NULL, ctx);
    p11kms_err rc = kms_op_open_key(svc, who, ctx, blob, blob_len, out, err);
    p11kms_err answer = audit_end(&a, rc, err);
    if (audit_refused(rc, answer)) {
        p11kms_opened_key_close(*out);
        *out = NULL;
    }
    return answer;
}

/* --- everything else: the record, then the answer ------------------------------------------- */

#define AUDITED(event, key_ref, call)                                                              \
    do {                                                                                           \
        audit_req a_;                                                                              \
        audit_begin(&a_, svc, (event), who, (key_ref), NULL);                                      \
        p11kms_err rc_ = (call);                                                                   \
        return audit_end(&a_, rc_, err);                                                           \
    } while (0)

p11kms_err p11kms_create_key(p11kms *svc, const p11kms_principal *who,
                             const p11kms_create_key_input *in, p11kms_key_metadata *out,
                             p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "CreateKey", who, NULL, NULL);
    p11kms_err rc = kms_op_create_key(svc, who, in, out, err);
    if (rc == P11KMS_OK)
        snprintf(a.created_key_id, sizeof(a.created_key_id), "%s", out->key_id);
    return audit_end(&a, rc, err);
}

p11kms_err p11kms_describe_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               p11kms_key_metadata *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("DescribeKey", key_ref, kms_op_describe_key(svc, who, key_ref, out, err));
}

p11kms_err p11kms_list_keys(p11kms *svc, const p11kms_principal *who,
                            int (*fn)(const char *key_id, const char *arn, void *arg), void *arg,
                            p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("ListKeys", NULL, kms_op_list_keys(svc, who, fn, arg, err));
}

p11kms_err p11kms_enable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                             p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("EnableKey", key_ref, kms_op_enable_key(svc, who, key_ref, err));
}

p11kms_err p11kms_disable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                              p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("DisableKey", key_ref, kms_op_disable_key(svc, who, key_ref, err));
}

p11kms_err p11kms_schedule_key_deletion(p11kms *svc, const p11kms_principal *who,
                                        const char *key_ref, unsigned pending_window_days,
                                        p11kms_key_metadata *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("ScheduleKeyDeletion", key_ref,
            kms_op_schedule_key_deletion(svc, who, key_ref, pending_window_days, out, err));
}

p11kms_err p11kms_cancel_key_deletion(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("CancelKeyDeletion", key_ref, kms_op_cancel_key_deletion(svc, who, key_ref, err));
}

p11kms_err p11kms_update_key_description(p11kms *svc, const p11kms_principal *who,
                                         const char *key_ref, const char *description,
                                         p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("UpdateKeyDescription", key_ref,
            kms_op_update_key_description(svc, who, key_ref, description, err));
}

p11kms_err p11kms_rotate_key_on_demand(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_key_metadata *out,
                                       p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("RotateKeyOnDemand", key_ref, kms_op_rotate_key_on_demand(svc, who, key_ref, out, err));
}

p11kms_err p11kms_enable_key_rotation(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      unsigned period_days, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("EnableKeyRotation", key_ref,
            kms_op_enable_key_rotation(svc, who, key_ref, period_days, err));
}

p11kms_err p11kms_disable_key_rotation(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("DisableKeyRotation", key_ref, kms_op_disable_key_rotation(svc, who, key_ref, err));
}

p11kms_err p11kms_list_key_rotations(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                     int (*fn)(const p11kms_rotation *r, void *arg), void *arg,
                                     p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("ListKeyRotations", key_ref,
            kms_op_list_key_rotations(svc, who, key_ref, fn, arg, err));
}

p11kms_err p11kms_tag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               const p11kms_tag *tags, size_t count, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("TagResource", key_ref, kms_op_tag_resource(svc, who, key_ref, tags, count, err));
}

p11kms_err p11kms_untag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                 const char *const *tag_keys, size_t count, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("UntagResource", key_ref,
            kms_op_untag_resource(svc, who, key_ref, tag_keys, count, err));
}

p11kms_err p11kms_list_resource_tags(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                     int (*fn)(const p11kms_tag *tag, void *arg), void *arg,
                                     p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("ListResourceTags", key_ref,
            kms_op_list_resource_tags(svc, who, key_ref, fn, arg, err));
}

static p11kms_err alias_op(const char *event, p11kms *svc, const p11kms_principal *who,
                           const char *alias_name, const char *target_key_ref,
                           p11kms_err (*op)(p11kms *, const p11kms_principal *, const char *,
                                            const char *, p11kms_error *),
                           p11kms_error *err)
{
    audit_req a;
    audit_begin(&a, svc, event, who, alias_name, NULL);
    a.dest_key_ref = target_key_ref;
    p11kms_err rc = op(svc, who, alias_name, target_key_ref, err);
    return audit_end(&a, rc, err);
}

p11kms_err p11kms_create_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return alias_op("CreateAlias", svc, who, alias_name, target_key_ref, kms_op_create_alias, err);
}

p11kms_err p11kms_update_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return alias_op("UpdateAlias", svc, who, alias_name, target_key_ref, kms_op_update_alias, err);
}

p11kms_err p11kms_delete_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("DeleteAlias", alias_name, kms_op_delete_alias(svc, who, alias_name, err));
}

p11kms_err p11kms_list_aliases(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               int (*fn)(const char *alias_name, const char *alias_arn,
                                         const char *target_key_id, void *arg),
                               void *arg, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("ListAliases", key_ref, kms_op_list_aliases(svc, who, key_ref, fn, arg, err));
}

p11kms_err p11kms_maintain(p11kms *svc, const p11kms_principal *who,
                           void (*fn)(const char *line, void *arg), void *arg, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("Maintain", NULL, kms_op_maintain(svc, who, fn, arg, err));
}

/* --- credentials and the store -------------------------------------------------------------- */

p11kms_err p11kms_credentials_create(p11kms *svc, const p11kms_principal *who,
                                     const char *principal_name, p11kms_credential *out,
                                     char **secret, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    audit_req a;
    audit_begin(&a, svc, "CreateCredentials", who, NULL, NULL);
    p11kms_err rc = kms_op_credentials_create(svc, who, principal_name, out, secret, err);
    p11kms_err answer = audit_end(&a, rc, err);
    /* the secret is an output like a plaintext: refused, it is not shown */
    if (audit_refused(rc, answer)) {
        p11kms_secret_free(*secret);
        *secret = NULL;
        memset(out, 0, sizeof(*out));
    }
    return answer;
}

p11kms_err p11kms_credentials_delete(p11kms *svc, const p11kms_principal *who,
                                     const char *access_key_id, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    AUDITED("DeleteCredentials", NULL, kms_op_credentials_delete(svc, who, access_key_id, err));
}

p11kms_err p11kms_store_migrate(p11kms *svc, void (*fn)(const char *line, void *arg), void *arg,
                                p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    const p11kms_principal *who = NULL; /* an administrator's tool: no principal */
    AUDITED("MigrateStore", NULL, kms_op_store_migrate(svc, fn, arg, err));
}
