/* The policy gate: every provider operation asks it before it touches the token. */
#ifndef P11KMS_PROVIDER_GATE_H
#define P11KMS_PROVIDER_GATE_H

#include "policy/policy.h"
#include "provider/service.h"

/* Loads the policy the configuration names ("policy: none" allows everything, loudly). */
P11KMS_MUST_CHECK p11kms_err gate_open(const service_config *cfg, struct policy_gate **out,
                                       p11kms_error *err);
void gate_close(struct policy_gate *gate);
/* Re-reads the policy file; on failure the old policy stays in force. */
p11kms_err gate_reload(struct policy_gate *gate, p11kms_error *err);

/* The provider names actions by their policy_action constants; only the public boundary (an
 * action name a caller of p11kms_policy_explain wrote) parses names. */

/* Decides action for who on a key. meta is NULL when key_ref names no existing key: the
 * principal then gets AccessDeniedException unless the policy would allow the action on such a
 * key, so a denied principal cannot learn whether a key exists. key_ref is the reference as the
 * caller wrote it (used in messages, never the resolved id). ctx2 is the destination context of
 * re-encrypt. */
P11KMS_MUST_CHECK p11kms_err gate_check(p11kms *svc, const p11kms_principal *who,
                                        policy_action action, const char *key_ref,
                                        const key_meta *meta, const p11kms_context *ctx,
                                        const p11kms_context *ctx2, p11kms_error *err);
/* Actions that are not about one key (create-key, list-keys, list-aliases, generate-random). */
P11KMS_MUST_CHECK p11kms_err gate_check_global(p11kms *svc, const p11kms_principal *who,
                                               policy_action action, p11kms_error *err);
/* The alias-name half of create-alias, update-alias and delete-alias. */
P11KMS_MUST_CHECK p11kms_err gate_check_alias(p11kms *svc, const p11kms_principal *who,
                                              policy_action action, const char *alias,
                                              p11kms_error *err);

/* create-key: the decision plus what the deciding statement gives new keys. The strings stay
 * valid until gate_create_end. */
typedef struct gate_create {
    struct policy *pol;
    const char *description; /* NULL: none */
    const p11kms_tag *tags;
    size_t tag_count;
    p11kms_tag *owned_tags;
} gate_create;
P11KMS_MUST_CHECK p11kms_err gate_check_create(p11kms *svc, const p11kms_principal *who,
                                               gate_create *out, p11kms_error *err);
void gate_create_end(gate_create *c);

/* For p11kms_policy_explain: the decision and its explanation, never raising AccessDenied. */
p11kms_err gate_explain(p11kms *svc, const p11kms_principal *who, policy_action action,
                        const char *key_ref, const key_meta *meta, const p11kms_context *ctx,
                        bool *allowed, char *text, size_t size, p11kms_error *err);
/* Decisions gate_check took from its cache (hits) and evaluated (misses) since gate_open. */
void gate_decision_stats(p11kms *svc, uint64_t *hits, uint64_t *misses);
/* Whether who may see key m in a listing (describe-key), without raising. */
bool gate_may_list(p11kms *svc, const p11kms_principal *who, const key_meta *m);

#endif
