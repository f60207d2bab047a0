/* The public operations before auditing: provider/audit-api.c defines each p11kms_* of them as
 * audit_begin, the kms_op_* below, audit_end. Internal to the provider. */
#ifndef P11KMS_PROVIDER_AUDIT_OPS_H
#define P11KMS_PROVIDER_AUDIT_OPS_H

#include "p11kms.h"

p11kms_err kms_op_encrypt(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                          const p11kms_context *ctx, const uint8_t *plaintext, size_t len,
                          p11kms_result *out, p11kms_error *err);
p11kms_err kms_op_decrypt(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                          const p11kms_context *ctx, const uint8_t *blob, size_t blob_len,
                          p11kms_result *out, p11kms_error *err);
p11kms_err kms_op_re_encrypt(p11kms *svc, const p11kms_principal *who, const char *source_key_ref,
                             const p11kms_context *source_ctx, const uint8_t *blob, size_t blob_len,
                             const char *dest_key_ref, const p11kms_context *dest_ctx,
                             p11kms_result *out, p11kms_error *err);
p11kms_err kms_op_generate_data_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                    const p11kms_context *ctx, const char *key_spec,
                                    size_t number_of_bytes, bool want_plaintext, p11kms_result *out,
                                    p11kms_error *err);
p11kms_err kms_op_generate_random(p11kms *svc, const p11kms_principal *who, size_t number_of_bytes,
                                  p11kms_result *out, p11kms_error *err);
p11kms_err kms_op_create_key(p11kms *svc, const p11kms_principal *who,
                             const p11kms_create_key_input *in, p11kms_key_metadata *out,
                             p11kms_error *err);
p11kms_err kms_op_enable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                             p11kms_error *err);
p11kms_err kms_op_disable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                              p11kms_error *err);
p11kms_err kms_op_schedule_key_deletion(p11kms *svc, const p11kms_principal *who,
                                        const char *key_ref, unsigned pending_window_days,
                                        p11kms_key_metadata *out, p11kms_error *err);
p11kms_err kms_op_cancel_key_deletion(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      p11kms_error *err);
p11kms_err kms_op_update_key_description(p11kms *svc, const p11kms_principal *who,
                                         const char *key_ref, const char *description,
                                         p11kms_error *err);
p11kms_err kms_op_tag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               const p11kms_tag *tags, size_t count, p11kms_error *err);
p11kms_err kms_op_untag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                 const char *const *tag_keys, size_t count, p11kms_error *err);
p11kms_err kms_op_rotate_key_on_demand(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_key_metadata *out,
                                       p11kms_error *err);
p11kms_err kms_op_enable_key_rotation(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      unsigned period_days, p11kms_error *err);
p11kms_err kms_op_disable_key_rotation(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_error *err);
p11kms_err kms_op_create_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err);
p11kms_err kms_op_update_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err);
p11kms_err kms_op_delete_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               p11kms_error *err);
p11kms_err kms_op_describe_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               p11kms_key_metadata *out, p11kms_error *err);
p11kms_err kms_op_list_keys(p11kms *svc, const p11kms_principal *who,
                            int (*fn)(const char *key_id, const char *arn, void *arg), void *arg,
                            p11kms_error *err);
p11kms_err kms_op_list_aliases(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               int (*fn)(const char *alias_name, const char *alias_arn,
                                         const char *target_key_id, void *arg),
                               void *arg, p11kms_error *err);
p11kms_err kms_op_list_resource_tags(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                     int (*fn)(const p11kms_tag *tag, void *arg), void *arg,
                                     p11kms_error *err);
p11kms_err kms_op_list_key_rotations(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                     int (*fn)(const p11kms_rotation *r, void *arg), void *arg,
                                     p11kms_error *err);
p11kms_err kms_op_open_key(p11kms *svc, const p11kms_principal *who, const p11kms_context *ctx,
                           const uint8_t *blob, size_t blob_len, p11kms_opened_key **out,
                           p11kms_error *err);
p11kms_err kms_op_maintain(p11kms *svc, const p11kms_principal *who,
                           void (*fn)(const char *line, void *arg), void *arg, p11kms_error *err);
p11kms_err kms_op_credentials_create(p11kms *svc, const p11kms_principal *who,
                                     const char *principal_name, p11kms_credential *out,
                                     char **secret, p11kms_error *err);
p11kms_err kms_op_credentials_delete(p11kms *svc, const p11kms_principal *who,
                                     const char *access_key_id, p11kms_error *err);
p11kms_err kms_op_store_migrate(p11kms *svc, void (*fn)(const char *line, void *arg), void *arg,
                                p11kms_error *err);

#endif
