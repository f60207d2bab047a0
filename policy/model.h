/* In-memory form of a loaded policy, shared by the loader, the separation-of-duties check and
 * the evaluator. Immutable once loaded (only the reference count changes). */
#ifndef P11KMS_POLICY_MODEL_H
#define P11KMS_POLICY_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/glob.h"
#include "policy/index.h"
#include "policy/policy.h"

typedef uint64_t action_set; /* bit (1 << policy_action) */

#define ACTION_BIT(a) ((action_set)1 << (a))

/* Which strings a key selector is matched against. */
typedef enum selector_kind {
    SELECTOR_ALL,   /* "*": every key */
    SELECTOR_ID,    /* the key id */
    SELECTOR_ALIAS, /* each of the key's aliases ("alias/...") */
} selector_kind;

typedef struct key_selector {
    selector_kind kind;
    policy_glob glob;
    char *text; /* as written */
    unsigned line, column;
} key_selector;

/* One principal or principal pattern, written in a group or a statement. */
typedef struct principal_entry {
    policy_glob glob;
    char *text;      /* as written */
    size_t scheme;   /* length of the literal scheme prefix, e.g. 10 for "unix:user:" */
    const char *via; /* group that lists it (a group name owned by the policy), or NULL */
    unsigned line, column;
} principal_entry;

/* context-equals / context-like: key must be present with one of the values. */
typedef struct context_rule {
    char *key;
    char **values;      /* context-equals */
    policy_glob *globs; /* context-like */
    size_t count;
} context_rule;

typedef struct conditions {
    context_rule *equals;
    size_t equals_count;
    context_rule *like;
    size_t like_count;
    char **keys_only; /* NULL: no such condition */
    size_t keys_only_count;
    char **keys_any;
    size_t keys_any_count;
} conditions;

typedef struct statement {
    char sid[POLICY_SID_MAX + 1];
    bool allow;
    bool global; /* account-level (section "global"), takes no key */
    action_set actions;
    /* Principals after group expansion, without duplicates; entries belong to the policy. */
    const principal_entry **principals;
    size_t principal_count;
    policy_index exact_principals; /* literal -> index into principals */
    const principal_entry **principal_patterns;
    size_t pattern_count;
    key_selector *keys;
    size_t key_count;
    bool has_conditions;
    conditions cond;
    char *waiver; /* reason, NULL when none */
    bool has_create;
    char *create_description;
    policy_tag *create_tags;
    size_t create_tag_count;
    unsigned line, column;
} statement;

typedef struct selector_ref {
    const key_selector *selector;
    size_t statement;
} selector_ref;

struct policy {
    atomic_uint refs;
    char *source;
    statement *statements; /* file order: section "global" first, then "statements" */
    size_t statement_count;
    principal_entry **entries; /* every principal written anywhere */
    size_t entry_count;
    char **group_names;
    size_t group_count;
    policy_index by_selector; /* exact key id or alias -> key statements */
    selector_ref *patterns;   /* "*" and wildcard selectors of key statements */
    size_t pattern_count;
    size_t *global; /* account-level statements */
    size_t global_count;
    policy_index by_sid;
};

/* Action sets. */
action_set policy_class_actions(policy_action_class klass);

/* Principal validation shared by the loader (patterns allowed) and requests (literal names).
 * Returns NULL when valid, else why not; *scheme_len receives the scheme prefix length. */
const char *policy_principal_problem(const char *text, bool pattern, size_t *scheme_len);

/* Separation-of-duties check over a loaded policy; reports each conflict through report. */
typedef void (*sod_report_fn)(void *arg, const statement *at, const char *message);
bool policy_check_duties(const policy *pol, sod_report_fn report, void *arg);
/* The same comparing every admin statement with every usage statement, without the indexes that
 * narrow the comparisons: the reference the fuzz target checks policy_check_duties against. */
bool policy_check_duties_every_pair(const policy *pol, sod_report_fn report, void *arg);

void policy_destroy(policy *pol);

#endif
