/* The policy loader's shared state and helpers (internal to policy/load*.c).
 *
 * Loading reports every problem with its file:line:column and goes on, so `p11kms policy check`
 * shows all of them at once; a statement or group member with an error is left out, so one
 * mistake does not cascade into others. */
#ifndef P11KMS_POLICY_LOAD_H
#define P11KMS_POLICY_LOAD_H

#include "policy/model.h"
#include "common/yaml-doc.h"

#define MAX_REPORTED_ERRORS 1000
#define GROUP_MAX_NESTING 16

typedef struct group_ref {
    size_t group;
    const yaml_doc_node *node;
} group_ref;

typedef struct group_def {
    const char *name; /* owned by pol->group_names */
    const yaml_doc_node *node;
    principal_entry **direct;
    size_t direct_count;
    group_ref *refs;
    size_t ref_count;
    int state; /* 0 not expanded, 1 being expanded, 2 expanded */
    const principal_entry **expanded;
    size_t expanded_count;
} group_def;

typedef struct load_error {
    unsigned line, column;
    size_t seq;
    char *text;
} load_error;

typedef struct loader {
    const yaml_doc *doc;
    policy *pol;
    size_t errors; /* found, including those not stored */
    load_error *stored;
    size_t stored_count;
    bool no_memory;
    group_def *groups;
    size_t group_count;
    policy_index group_index;
    policy_index sid_seen; /* sid -> index into sid_nodes */
    const yaml_doc_node **sid_nodes;
    size_t sid_count;
    size_t expand_stack[GROUP_MAX_NESTING + 1];
    size_t expand_depth;
} loader;

/* ---- errors (load-util.c) ---- */

/* Records one error line at line:column (0:0 for the whole file). */
void loader_report(loader *ld, unsigned line, unsigned column, const char *text);
void loader_error_at(loader *ld, const yaml_doc_node *node, const char *fmt, ...)
    P11KMS_PRINTF(3, 4);
void loader_no_memory(loader *ld);
/* Sorts the errors into file order, passes each to on_error, frees them; *first gets the first. */
void loader_flush_errors(loader *ld, policy_error_fn on_error, void *arg, char *first,
                         size_t first_size);

/* ---- typed access (load-util.c); each reports what is wrong and returns false/NULL ---- */

/* Grows *array (of elem bytes) to hold count + 1 elements. */
bool loader_reserve(loader *ld, void *array, size_t count, size_t elem);
char *loader_dup(loader *ld, const char *s);
bool loader_expect(loader *ld, const yaml_doc_node *node, yaml_doc_kind kind, const char *what);
/* A string value: any non-null scalar (a plain 123 or true is taken as text). */
const char *loader_string(loader *ld, const yaml_doc_node *node, const char *what);
/* A non-empty list, or (when one is not NULL) a single scalar standing for a list of one. */
bool loader_items(loader *ld, const yaml_doc_node *node, const char *what,
                  const yaml_doc_node **one, const yaml_doc_node *const **items, size_t *count);
/* Reports a required field absent from map. */
bool loader_require(loader *ld, const yaml_doc_node *map, const yaml_doc_node *value,
                    const char *what, const char *field);
/* Whether items[i] repeats an earlier item of the same list (reported at the repeat). */
bool loader_repeat(loader *ld, policy_index *written, const yaml_doc_node *const *items, size_t i,
                   const char *what);
/* Sids and group names: 1 to 64 of A-Z a-z 0-9 . _ - */
bool loader_name_ok(const char *s);

/* ---- groups and principals (load-groups.c) ---- */

void loader_parse_groups(loader *ld, const yaml_doc_node *node);
void loader_expand_group(loader *ld, size_t gi);
void loader_free_groups(loader *ld);
/* A statement's principals: names, patterns and groups, expanded without duplicates. */
void loader_parse_principals(loader *ld, const yaml_doc_node *node, statement *st, bool *ok);

/* ---- statements (load-statement.c) ---- */

void loader_parse_statements(loader *ld, const yaml_doc_node *node, bool global);
void loader_free_statement(statement *st);

#endif
