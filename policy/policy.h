/* The key policy: who may manage keys, who may use them, under which encryption context.
 *
 * A policy is loaded from a YAML file (format: p11kms-policy(5)) into an immutable, reference
 * counted object that any number of threads may evaluate at once. Loading refuses anything
 * ambiguous and, above all, any policy that lets one principal both manage and use the same key
 * (separation of duties) unless that statement carries a written waiver. A policy_store holds the
 * policy in force and swaps it atomically on reload; a reload from a broken file keeps the old
 * one.
 *
 * Evaluation contract with the caller (the provider):
 * - Default deny. An explicit deny anywhere wins over any allow.
 * - Key-bound actions take the key's resolved id AND all its current aliases ("alias/NAME"). The
 *   caller resolves an alias or ARN to the key first, so a statement that selects a key by alias
 *   applies whether the request named the key by id, alias or ARN, and vice versa.
 * - create-alias, update-alias and delete-alias change which statements select a key, so they
 *   must be allowed on every resource they touch: call policy_evaluate once for each key involved
 *   (id and current aliases) and once for the alias name itself (policy_evaluate_alias); all must
 *   allow.
 * - Account-level actions (create-key, list-keys, list-aliases, generate-random) take no key:
 *   key_id NULL, no aliases. policy_action_is_key_bound() tells which is which.
 * - Actions that carry an encryption context (encrypt, decrypt, re-encrypt-from, re-encrypt-to,
 *   generate-data-key, generate-data-key-without-plaintext) take it as context (NULL means empty).
 *   ReEncrypt is two decisions: re-encrypt-from on the source key and re-encrypt-to on the
 *   destination key; pass the side's own context as context and the other side's as context2,
 *   and every condition is applied to both. Other actions take no context.
 * - The principal set is every name the caller is known by (e.g. "unix:user:alice",
 *   "unix:uid:1000", "unix:group:staff"); a statement applies if it names any of them. At run
 *   time a principal set granted both admin and usage actions on one key (e.g. by user name and
 *   by Unix group, which loading cannot see) is denied everything but read-only actions there.
 *
 * Every function fails closed: a decision that could not be made is a deny. */
#ifndef P11KMS_POLICY_POLICY_H
#define P11KMS_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p11kms-error.h"

#define POLICY_SID_MAX 64     /* statement id: letters, digits, '.', '_', '-' */
#define POLICY_WAIVER_MAX 512 /* bytes of a waiver reason */
#define POLICY_EXPLANATION_MAX 512

/* Action names are exactly the strings of policy_action_name(). */
typedef enum policy_action {
    /* admin: manage, never use */
    POLICY_ACTION_CREATE_KEY,
    POLICY_ACTION_ENABLE_KEY,
    POLICY_ACTION_DISABLE_KEY,
    POLICY_ACTION_SCHEDULE_KEY_DELETION,
    POLICY_ACTION_CANCEL_KEY_DELETION,
    POLICY_ACTION_ROTATE_KEY_ON_DEMAND,
    POLICY_ACTION_ENABLE_KEY_ROTATION,
    POLICY_ACTION_DISABLE_KEY_ROTATION,
    POLICY_ACTION_CREATE_ALIAS,
    POLICY_ACTION_DELETE_ALIAS,
    POLICY_ACTION_UPDATE_ALIAS,
    POLICY_ACTION_TAG_RESOURCE,
    POLICY_ACTION_UNTAG_RESOURCE,
    POLICY_ACTION_UPDATE_KEY_DESCRIPTION,
    POLICY_ACTION_GET_PARAMETERS_FOR_IMPORT,
    POLICY_ACTION_IMPORT_KEY_MATERIAL,
    POLICY_ACTION_DELETE_IMPORTED_KEY_MATERIAL,
    /* usage: use, never manage */
    POLICY_ACTION_ENCRYPT,
    POLICY_ACTION_DECRYPT,
    POLICY_ACTION_RE_ENCRYPT_FROM,
    POLICY_ACTION_RE_ENCRYPT_TO,
    POLICY_ACTION_GENERATE_DATA_KEY,
    POLICY_ACTION_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT,
    /* read-only metadata: allowed to admins and users alike */
    POLICY_ACTION_DESCRIBE_KEY,
    POLICY_ACTION_LIST_KEYS,
    POLICY_ACTION_LIST_ALIASES,
    POLICY_ACTION_LIST_RESOURCE_TAGS,
    POLICY_ACTION_LIST_KEY_ROTATIONS,
    POLICY_ACTION_GET_KEY_ROTATION_STATUS,
    /* neither: random bytes from the token, bound to no key */
    POLICY_ACTION_GENERATE_RANDOM,
    /* SigV4 credentials of p11kmsd callers (account level): managing them is administration,
     * listing them (ids and names, never secrets) is read-only */
    POLICY_ACTION_CREATE_CREDENTIALS,
    POLICY_ACTION_DELETE_CREDENTIALS,
    POLICY_ACTION_LIST_CREDENTIALS,
    /* p11kms maintain: destroys key material whose deletion is due or that crashes left behind,
     * rotates due keys (account level administration) */
    POLICY_ACTION_MAINTAIN,
    /* p11kms policy explain about another principal: learns what others may do (account level
     * administration; anyone may ask about itself) */
    POLICY_ACTION_EXPLAIN_POLICY,
    POLICY_ACTION__COUNT
} policy_action;

typedef enum policy_action_class {
    POLICY_CLASS_ADMIN,
    POLICY_CLASS_USAGE,
    POLICY_CLASS_READ,
    POLICY_CLASS_OTHER
} policy_action_class;

/* "create-key", ...; NULL for a value outside the enum. */
const char *policy_action_name(policy_action action);
/* Exact, case-sensitive name; P11KMS_E_VALIDATION for an unknown name. */
p11kms_err policy_action_parse(const char *name, policy_action *out, p11kms_error *err);
policy_action_class policy_action_class_of(policy_action action);
bool policy_action_is_key_bound(policy_action action);
bool policy_action_takes_context(policy_action action);

typedef struct policy policy;

/* The caller's names; any of them may match a statement. UTF-8, forms of p11kms-policy(5). */
typedef struct policy_principals {
    const char *const *names;
    size_t count;
} policy_principals;

typedef struct policy_context_pair {
    const char *key; /* UTF-8 */
    const char *value;
} policy_context_pair;

/* An encryption context: unique keys, any order. */
typedef struct policy_context {
    const policy_context_pair *pairs;
    size_t count;
} policy_context;

typedef struct policy_decision {
    bool allowed;
    bool explicit_deny; /* a deny statement matched (sid names it) */
    bool duty_conflict; /* denied: principal set holds admin and usage on this key */
    bool waiver;        /* allowed under a separation-of-duties waiver */
    policy_action action;
    /* The deciding statement: the deny that matched, the allow that decided, or (duty_conflict)
     * the allow that was refused; -1 and "" when no statement allowed the request. */
    long statement; /* index in its policy */
    char sid[POLICY_SID_MAX + 1];
    char waiver_reason[POLICY_WAIVER_MAX + 1]; /* set when waiver */
    char explanation[POLICY_EXPLANATION_MAX];  /* one line, for logs and the CLI */
} policy_decision;

/* Receives every error of a load as "file:line:column: message" (no newline). */
typedef void (*policy_error_fn)(const char *line, void *arg);

/* Loads and validates a policy. Every error found is passed to on_error (may be NULL); on
 * failure *out is NULL and err holds the first error and the count (P11KMS_E_MALFORMED_POLICY, or
 * P11KMS_E_NO_MEMORY). The result has one reference. */
P11KMS_MUST_CHECK p11kms_err policy_load_file(const char *path, policy_error_fn on_error, void *arg,
                                              policy **out, p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err policy_load_buffer(const char *name, const char *data, size_t len,
                                                policy_error_fn on_error, void *arg, policy **out,
                                                p11kms_error *err);
/* `p11kms policy check FILE`: loads and discards. P11KMS_OK only for a valid policy. */
p11kms_err policy_check_file(const char *path, policy_error_fn on_error, void *arg,
                             p11kms_error *err);

/* Adds a reference (returns pol); policy_free drops one and frees the policy with the last. */
policy *policy_ref(policy *pol);
void policy_free(policy *pol);

/* The file (or buffer name) the policy was loaded from, and its number of statements. */
const char *policy_source(const policy *pol);
size_t policy_statement_count(const policy *pol);
/* The sid of the statement at index ("" when there is no such statement, -1 included): what
 * policy_evaluate writes into a decision's sid for its deciding statement. */
const char *policy_statement_sid(const policy *pol, long index);

/* Decides one request (see the contract at the top). out is always filled; out->allowed is the
 * answer. Returns P11KMS_OK when a decision was made (allow or deny), P11KMS_E_VALIDATION for a
 * malformed request (invalid principal, bad UTF-8, duplicate context key, context on an action
 * that takes none, missing key id), which is also a deny. */
P11KMS_MUST_CHECK p11kms_err policy_evaluate(const policy *pol, const policy_principals *who,
                                             policy_action action, const char *key_id,
                                             const char *const *aliases, size_t alias_count,
                                             const policy_context *context,
                                             const policy_context *context2, policy_decision *out,
                                             p11kms_error *err);
/* The alias-name half of create-alias / update-alias / delete-alias: the alias "alias/NAME" as a
 * resource of its own (only alias selectors and "*" can match it). */
P11KMS_MUST_CHECK p11kms_err policy_evaluate_alias(const policy *pol, const policy_principals *who,
                                                   policy_action action, const char *alias_name,
                                                   policy_decision *out, p11kms_error *err);

/* P11KMS_OK if d allows; otherwise raises P11KMS_E_ACCESS_DENIED with d's explanation. */
p11kms_err policy_decision_check(const policy_decision *d, p11kms_error *err);
/* Formats "ALLOW|DENY action: explanation" plus the statement and any waiver into buf (always
 * NUL-terminated); returns the length snprintf would. */
int policy_explain(const policy_decision *d, char *buf, size_t size);

/* What a key created under an allowed create-key decision gets (from the deciding statement's
 * `create:` block). The provider applies description when the caller gave none, and sets tags
 * after the caller's, so the policy's tags win. Strings belong to pol. */
typedef struct policy_tag {
    const char *key;
    const char *value;
} policy_tag;

typedef struct policy_create_defaults {
    const char *description; /* NULL: none */
    const policy_tag *tags;
    size_t tag_count;
} policy_create_defaults;

p11kms_err policy_create_defaults_get(const policy *pol, const policy_decision *d,
                                      policy_create_defaults *out, p11kms_error *err);

/* Holder of the policy in force. */
typedef struct policy_store policy_store;

/* Takes ownership of initial (may be NULL: every request is denied until a policy is set). */
P11KMS_MUST_CHECK p11kms_err policy_store_new(policy *initial, policy_store **out,
                                              p11kms_error *err);
void policy_store_free(policy_store *store);
/* A new reference to the policy in force (NULL if none); release it with policy_free. Holding it
 * keeps that policy alive across a reload, so one request sees one policy. generation (may be
 * NULL) receives, read together with the policy, the number of policies the store has put in
 * force: 1 for the initial one, one more for every replace and successful reload, never 0 for a
 * store (0 for a NULL store). A cache of decisions keyed on it misses after a reload. */
policy *policy_store_acquire(policy_store *store, uint64_t *generation);
/* Puts pol in force, taking ownership, and starts a new generation; the previous policy is
 * released. */
void policy_store_replace(policy_store *store, policy *pol);
/* Loads path and puts it in force. On any error the policy in force and the generation are
 * unchanged, on_error gets every error line and err says why. */
p11kms_err policy_store_reload(policy_store *store, const char *path, policy_error_fn on_error,
                               void *arg, p11kms_error *err);

#endif
