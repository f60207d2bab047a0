#include "config.h"

/* Reads a policy file into the model. Every problem is reported with its file:line:column and
 * loading goes on, so `p11kms policy check` shows all of them at once; a statement or group
 * member with an error is left out, so one mistake does not cascade into others. */

#include "policy/model.h"
#include "policy/utf8.h"
#include "policy/yaml-doc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORTED_ERRORS 1000
#define GROUP_MAX_NESTING 16
#define CONTEXT_TEXT_MAX 1024
#define TAG_KEY_MAX 128
#define TAG_VALUE_MAX 256
#define TAGS_MAX 50
#define DESCRIPTION_MAX 8192

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

/* ---- error reporting -------------------------------------------------------------------- */

/* Errors are kept and reported at the end in file order: fields are checked in a fixed order,
 * which is not always the order they were written in. */
static void report_line(loader *ld, unsigned line, unsigned column, const char *text)
{
    ld->errors++;
    if (ld->stored_count > MAX_REPORTED_ERRORS)
        return;
    load_error *grown = realloc(ld->stored, (ld->stored_count + 1) * sizeof(*grown));
    char *copy = strdup(text);
    if (grown == NULL || copy == NULL) {
        if (grown != NULL)
            ld->stored = grown;
        free(copy);
        ld->no_memory = true;
        return;
    }
    ld->stored = grown;
    ld->stored[ld->stored_count].line = line;
    ld->stored[ld->stored_count].column = column;
    ld->stored[ld->stored_count].seq = ld->stored_count;
    ld->stored[ld->stored_count].text = copy;
    ld->stored_count++;
}

static int cmp_error(const void *a, const void *b)
{
    const load_error *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts, passes each line to on_error and frees them; returns the first in *first. */
static void flush_errors(loader *ld, policy_error_fn on_error, void *arg, char *first,
                         size_t first_size)
{
    qsort(ld->stored, ld->stored_count, sizeof(*ld->stored), cmp_error);
    first[0] = '\0';
    for (size_t i = 0; i < ld->stored_count; i++) {
        if (i == 0)
            snprintf(first, first_size, "%s", ld->stored[i].text);
        if (on_error != NULL && i < MAX_REPORTED_ERRORS)
            on_error(ld->stored[i].text, arg);
        free(ld->stored[i].text);
    }
    if (on_error != NULL && ld->errors > MAX_REPORTED_ERRORS)
        on_error("too many errors; the rest are not shown", arg);
    if (on_error != NULL && ld->no_memory)
        on_error("out of memory while loading the policy", arg);
    free(ld->stored);
    ld->stored = NULL;
    ld->stored_count = 0;
}

P11KMS_PRINTF(3, 4)
static void error_at(loader *ld, const yaml_doc_node *node, const char *fmt, ...)
{
    char what[600], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (node != NULL)
        snprintf(line, sizeof(line), "%s:%u:%u: %s", ld->doc->file, node->line, node->column, what);
    else
        snprintf(line, sizeof(line), "%s: %s", ld->doc->file, what);
    report_line(ld, node != NULL ? node->line : 0, node != NULL ? node->column : 0, line);
}

static void out_of_memory(loader *ld)
{
    if (!ld->no_memory)
        ld->errors++;
    ld->no_memory = true;
}

/* Grows *array (of elem bytes) to hold count + 1 elements. */
static bool reserve(loader *ld, void *array, size_t count, size_t elem)
{
    void **p = array;
    if (count + 1 > SIZE_MAX / elem) {
        out_of_memory(ld);
        return false;
    }
    void *grown = realloc(*p, (count + 1) * elem);
    if (grown == NULL) {
        out_of_memory(ld);
        return false;
    }
    *p = grown;
    return true;
}

static char *dup_text(loader *ld, const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        out_of_memory(ld);
    return d;
}

/* ---- typed access ----------------------------------------------------------------------- */

static bool is_null_scalar(const yaml_doc_node *node)
{
    if (node->kind != YAML_DOC_SCALAR || node->quoted)
        return false;
    const char *s = node->scalar;
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static const char *kind_text(yaml_doc_kind kind)
{
    return kind == YAML_DOC_SCALAR ? "a scalar" : kind == YAML_DOC_MAP ? "a mapping" : "a list";
}

static bool expect_kind(loader *ld, const yaml_doc_node *node, yaml_doc_kind kind, const char *what)
{
    if (node->kind == kind && !(kind == YAML_DOC_SCALAR && is_null_scalar(node)))
        return true;
    if (node->kind == YAML_DOC_SCALAR && is_null_scalar(node))
        error_at(ld, node, "%s has no value (expected %s)", what, kind_text(kind));
    else
        error_at(ld, node, "%s must be %s, not %s", what, kind_text(kind), kind_text(node->kind));
    return false;
}

/* A string value: any non-null scalar (a plain 123 or true is taken as text). */
static const char *string_of(loader *ld, const yaml_doc_node *node, const char *what)
{
    return expect_kind(ld, node, YAML_DOC_SCALAR, what) ? node->scalar : NULL;
}

/* A list, or (when allowed) a single scalar standing for a list of one, which *one holds. */
static bool items_of(loader *ld, const yaml_doc_node *node, const char *what,
                     const yaml_doc_node **one, const yaml_doc_node *const **items, size_t *count)
{
    if (one != NULL && node->kind == YAML_DOC_SCALAR && !is_null_scalar(node)) {
        *one = node;
        *items = one;
        *count = 1;
        return true;
    }
    if (!expect_kind(ld, node, YAML_DOC_SEQ, what))
        return false;
    if (node->count == 0) {
        error_at(ld, node, "%s is empty", what);
        return false;
    }
    *items = (const yaml_doc_node *const *)node->children;
    *count = node->count;
    return true;
}

/* Reports a required field absent from map. */
static bool require(loader *ld, const yaml_doc_node *map, const yaml_doc_node *value,
                    const char *what, const char *field)
{
    if (value != NULL)
        return true;
    error_at(ld, map, "%s has no '%s'", what, field);
    return false;
}

/* ---- principals and groups -------------------------------------------------------------- */

static principal_entry *new_principal(loader *ld, const yaml_doc_node *node, const char *via)
{
    const char *text = string_of(ld, node, "a principal");
    if (text == NULL)
        return NULL;
    size_t scheme = 0;
    const char *why = policy_principal_problem(text, true, &scheme);
    if (why != NULL) {
        error_at(ld, node, "invalid principal '%s': %s", policy_quote(text).text, why);
        return NULL;
    }
    principal_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        out_of_memory(ld);
        return NULL;
    }
    policy_glob_status st = policy_glob_compile(text, &e->glob);
    if (st != POLICY_GLOB_OK) {
        free(e);
        if (st == POLICY_GLOB_NO_MEMORY)
            out_of_memory(ld);
        else
            error_at(ld, node, "invalid principal pattern '%s': %s", policy_quote(text).text,
                     policy_glob_status_text(st));
        return NULL;
    }
    e->text = strdup(text);
    if (e->text == NULL || !reserve(ld, &ld->pol->entries, ld->pol->entry_count, sizeof(e))) {
        policy_glob_free(&e->glob);
        free(e->text);
        free(e);
        if (!ld->no_memory)
            out_of_memory(ld);
        return NULL;
    }
    e->scheme = scheme;
    e->via = via;
    e->line = node->line;
    e->column = node->column;
    ld->pol->entries[ld->pol->entry_count++] = e;
    return e;
}

/* A set of principal entries without duplicates (same text = same principal). */
typedef struct entry_set {
    const principal_entry **items;
    size_t count;
    policy_index seen;
} entry_set;

static void entry_set_add(loader *ld, entry_set *set, const principal_entry *e)
{
    size_t n;
    if (policy_index_find(&set->seen, e->text, &n) != NULL)
        return;
    if (!reserve(ld, &set->items, set->count, sizeof(*set->items)))
        return;
    if (!policy_index_add(&set->seen, e->text, set->count)) {
        out_of_memory(ld);
        return;
    }
    set->items[set->count++] = e;
}

static bool group_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static const char GROUP_PREFIX[] = "group:";

static bool is_group_ref(const char *s)
{
    return strncmp(s, GROUP_PREFIX, sizeof(GROUP_PREFIX) - 1) == 0;
}

/* Looks up "group:NAME"; reports an unknown group. */
static bool find_group(loader *ld, const yaml_doc_node *node, size_t *out)
{
    const char *name = node->scalar + sizeof(GROUP_PREFIX) - 1;
    size_t n;
    const size_t *found = policy_index_find(&ld->group_index, name, &n);
    if (found == NULL) {
        error_at(ld, node, "unknown group '%s' (define it under 'groups')",
                 policy_quote(name).text);
        return false;
    }
    *out = found[0];
    return true;
}

/* Whether items[i] repeats an earlier item of the same list (reported at the repeat). */
static bool item_is_repeat(loader *ld, policy_index *written, const yaml_doc_node *const *items,
                           size_t i, const char *what)
{
    size_t n;
    const char *text = items[i]->scalar;
    const size_t *prev = policy_index_find(written, text, &n);
    if (prev != NULL) {
        error_at(ld, items[i], "%s '%s' is listed twice (first at line %u, column %u)", what,
                 policy_quote(text).text, items[prev[0]]->line, items[prev[0]]->column);
        return true;
    }
    if (!policy_index_add(written, text, i))
        out_of_memory(ld);
    return false;
}

static void parse_groups(loader *ld, const yaml_doc_node *node)
{
    if (!expect_kind(ld, node, YAML_DOC_MAP, "'groups'"))
        return;
    /* Names first, so members can refer to groups defined later in the file. */
    ld->groups = calloc(node->count > 0 ? node->count : 1, sizeof(group_def));
    ld->pol->group_names = calloc(node->count > 0 ? node->count : 1, sizeof(char *));
    if (ld->groups == NULL || ld->pol->group_names == NULL) {
        out_of_memory(ld);
        return;
    }
    for (size_t i = 0; i < node->count; i++) {
        const yaml_doc_node *key = node->keys[i];
        if (!group_name_ok(key->scalar)) {
            error_at(ld, key,
                     "invalid group name '%s' (1 to 64 letters, digits, '.', '_', '-'; write "
                     "members as a list under it)",
                     policy_quote(key->scalar).text);
            continue;
        }
        char *name = dup_text(ld, key->scalar);
        if (name == NULL)
            return;
        ld->pol->group_names[ld->pol->group_count++] = name;
        group_def *g = &ld->groups[ld->group_count];
        g->name = name;
        g->node = key;
        if (!policy_index_add(&ld->group_index, name, ld->group_count)) {
            out_of_memory(ld);
            return;
        }
        ld->group_count++;
    }
    size_t gi = 0;
    for (size_t i = 0; i < node->count; i++) {
        const yaml_doc_node *key = node->keys[i];
        if (gi >= ld->group_count || ld->groups[gi].node != key)
            continue; /* name was invalid */
        group_def *g = &ld->groups[gi++];
        const yaml_doc_node *members = node->children[i];
        /* An empty group is allowed: e.g. a break-glass group filled only during an incident. */
        if (members->kind == YAML_DOC_SEQ && members->count == 0)
            continue;
        const yaml_doc_node *const *items;
        size_t count;
        if (!items_of(ld, members, "a group's members", NULL, &items, &count))
            continue;
        policy_index written = {0};
        for (size_t m = 0; m < count; m++) {
            const yaml_doc_node *item = items[m];
            if (string_of(ld, item, "a group member") == NULL)
                continue;
            if (item_is_repeat(ld, &written, items, m, "member"))
                continue;
            if (is_group_ref(item->scalar)) {
                size_t target;
                if (!find_group(ld, item, &target) ||
                    !reserve(ld, &g->refs, g->ref_count, sizeof(*g->refs)))
                    continue;
                g->refs[g->ref_count].group = target;
                g->refs[g->ref_count].node = item;
                g->ref_count++;
                continue;
            }
            principal_entry *e = new_principal(ld, item, g->name);
            if (e == NULL || !reserve(ld, &g->direct, g->direct_count, sizeof(e)))
                continue;
            g->direct[g->direct_count++] = e;
        }
        policy_index_free(&written);
    }
}

/* Expands group gi into its set of principals (members of nested groups included), reporting
 * cycles and over-deep nesting at the reference that causes them. */
static void expand_group(loader *ld, size_t gi)
{
    group_def *g = &ld->groups[gi];
    if (g->state != 0)
        return;
    g->state = 1;
    ld->expand_stack[ld->expand_depth++] = gi;
    entry_set set = {0};
    for (size_t i = 0; i < g->direct_count; i++)
        entry_set_add(ld, &set, g->direct[i]);
    for (size_t r = 0; r < g->ref_count; r++) {
        size_t target = g->refs[r].group;
        group_def *t = &ld->groups[target];
        if (t->state == 1) {
            char path[400];
            size_t o = 0;
            size_t start = 0;
            while (ld->expand_stack[start] != target)
                start++;
            for (size_t s = start; s < ld->expand_depth && o < sizeof(path); s++)
                o += (size_t)snprintf(path + o, sizeof(path) - o, "%s -> ",
                                      ld->groups[ld->expand_stack[s]].name);
            if (o < sizeof(path))
                snprintf(path + o, sizeof(path) - o, "%s", t->name);
            error_at(ld, g->refs[r].node, "group '%s' includes itself: %s", t->name, path);
            continue;
        }
        if (t->state == 0 && ld->expand_depth >= GROUP_MAX_NESTING) {
            error_at(ld, g->refs[r].node, "groups are nested more than %d deep", GROUP_MAX_NESTING);
            continue;
        }
        expand_group(ld, target);
        for (size_t i = 0; i < t->expanded_count; i++)
            entry_set_add(ld, &set, t->expanded[i]);
    }
    policy_index_free(&set.seen);
    g->expanded = set.items;
    g->expanded_count = set.count;
    ld->expand_depth--;
    g->state = 2;
}

static void free_groups(loader *ld)
{
    for (size_t i = 0; i < ld->group_count; i++) {
        free(ld->groups[i].direct);
        free(ld->groups[i].refs);
        free(ld->groups[i].expanded);
    }
    free(ld->groups);
    ld->groups = NULL;
    policy_index_free(&ld->group_index);
}

/* ---- statements ------------------------------------------------------------------------- */

static bool sid_ok(const char *s)
{
    return group_name_ok(s); /* same alphabet and bound (POLICY_SID_MAX) */
}

static void parse_sid(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const char *sid = string_of(ld, node, "'sid'");
    if (sid == NULL) {
        *ok = false;
        return;
    }
    if (!sid_ok(sid)) {
        error_at(ld, node, "invalid sid '%s' (1 to %d letters, digits, '.', '_', '-')",
                 policy_quote(sid).text, POLICY_SID_MAX);
        *ok = false;
        return;
    }
    size_t n;
    const size_t *prev = policy_index_find(&ld->sid_seen, sid, &n);
    if (prev != NULL) {
        const yaml_doc_node *first = ld->sid_nodes[prev[0]];
        error_at(ld, node, "duplicate sid '%s' (first at line %u, column %u)", sid, first->line,
                 first->column);
        *ok = false;
        return;
    }
    if (!reserve(ld, &ld->sid_nodes, ld->sid_count, sizeof(*ld->sid_nodes)) ||
        !policy_index_add(&ld->sid_seen, sid, ld->sid_count)) {
        out_of_memory(ld);
        *ok = false;
        return;
    }
    ld->sid_nodes[ld->sid_count++] = node;
    snprintf(st->sid, sizeof(st->sid), "%s", sid);
}

static void parse_effect(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const char *effect = string_of(ld, node, "'effect'");
    if (effect != NULL && strcmp(effect, "allow") == 0) {
        st->allow = true;
    } else if (effect != NULL && strcmp(effect, "deny") == 0) {
        st->allow = false;
    } else {
        if (effect != NULL)
            error_at(ld, node, "effect must be 'allow' or 'deny', not '%s'",
                     policy_quote(effect).text);
        *ok = false;
    }
}

static void parse_actions(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const yaml_doc_node *const *items, *one;
    size_t count;
    if (!items_of(ld, node, "'actions'", &one, &items, &count)) {
        *ok = false;
        return;
    }
    action_set seen = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = string_of(ld, items[i], "an action");
        if (name == NULL) {
            *ok = false;
            continue;
        }
        action_set add = 0;
        if (strcmp(name, "*") == 0) {
            for (int a = 0; a < POLICY_ACTION__COUNT; a++)
                if (policy_action_is_key_bound((policy_action)a) != st->global)
                    add |= ACTION_BIT(a);
        } else {
            policy_action a;
            if (policy_action_parse(name, &a, NULL) != P11KMS_OK) {
                error_at(ld, items[i], "unknown action '%s'", policy_quote(name).text);
                *ok = false;
                continue;
            }
            if (policy_action_is_key_bound(a) == st->global) {
                error_at(ld, items[i],
                         st->global ? "action '%s' acts on a key: put it in a statement under "
                                      "'statements', with 'keys'"
                                    : "action '%s' is not bound to a key: put it in a statement "
                                      "under 'global'",
                         name);
                *ok = false;
                continue;
            }
            add = ACTION_BIT(a);
        }
        if ((seen & add) != 0 && strcmp(name, "*") != 0) {
            error_at(ld, items[i], "action '%s' is listed twice", name);
            *ok = false;
        }
        seen |= add;
    }
    st->actions = seen;
}

static void parse_principals(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const yaml_doc_node *const *items, *one;
    size_t count;
    if (!items_of(ld, node, "'principals'", &one, &items, &count)) {
        *ok = false;
        return;
    }
    entry_set set = {0};
    policy_index written = {0};
    for (size_t i = 0; i < count; i++) {
        const yaml_doc_node *item = items[i];
        if (string_of(ld, item, "a principal") == NULL ||
            item_is_repeat(ld, &written, items, i, "principal")) {
            *ok = false;
            continue;
        }
        if (is_group_ref(item->scalar)) {
            size_t gi;
            if (!find_group(ld, item, &gi)) {
                *ok = false;
                continue;
            }
            for (size_t k = 0; k < ld->groups[gi].expanded_count; k++)
                entry_set_add(ld, &set, ld->groups[gi].expanded[k]);
            continue;
        }
        principal_entry *e = new_principal(ld, item, NULL);
        if (e == NULL) {
            *ok = false;
            continue;
        }
        entry_set_add(ld, &set, e);
    }
    policy_index_free(&written);
    policy_index_free(&set.seen);
    st->principals = set.items;
    st->principal_count = set.count;
    /* An empty group gives a statement nobody matches: legal (break-glass groups). */
    for (size_t i = 0; i < st->principal_count; i++) {
        const principal_entry *e = st->principals[i];
        if (e->glob.exact) {
            if (!policy_index_add(&st->exact_principals, e->glob.literal, i))
                out_of_memory(ld);
        } else {
            if (!reserve(ld, &st->principal_patterns, st->pattern_count,
                         sizeof(*st->principal_patterns)))
                break;
            st->principal_patterns[st->pattern_count++] = e;
        }
    }
}

static bool alias_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '_' || c == '-';
}

static bool id_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
}

static bool uuid_ok(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !(id_char((unsigned char)s[i]) && s[i] != '-'))
            return false;
    }
    return true;
}

/* Why a key selector is invalid, or NULL. Sets *kind. */
static const char *selector_problem(const char *s, selector_kind *kind)
{
    static const char alias_prefix[] = "alias/";
    if (strcmp(s, "*") == 0) {
        *kind = SELECTOR_ALL;
        return NULL;
    }
    if (strncmp(s, "arn:", 4) == 0)
        return "select keys by key id or alias, not by ARN (the caller resolves ARNs)";
    bool alias = strncmp(s, alias_prefix, sizeof(alias_prefix) - 1) == 0;
    *kind = alias ? SELECTOR_ALIAS : SELECTOR_ID;
    const char *p = alias ? s + sizeof(alias_prefix) - 1 : s;
    if (*p == '\0')
        return "alias name is empty";
    if (strlen(s) > 255)
        return "longer than 255 bytes";
    bool wild = false;
    for (; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '*' || c == '?') {
            wild = true;
            continue;
        }
        if (c == '\\')
            return "key ids and aliases have no characters to escape";
        if (alias ? !alias_char(c) : !id_char(c))
            return alias ? "an alias name has only letters, digits, '/', '_' and '-'"
                         : "not '*', 'alias/NAME' or a key id (a lowercase UUID)";
    }
    if (!alias && !wild && !uuid_ok(s))
        return "a key id is a lowercase UUID (8-4-4-4-12 hex digits)";
    return NULL;
}

static void parse_keys(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const yaml_doc_node *const *items, *one;
    size_t count;
    if (!items_of(ld, node, "'keys'", &one, &items, &count)) {
        *ok = false;
        return;
    }
    st->keys = calloc(count, sizeof(*st->keys));
    if (st->keys == NULL) {
        out_of_memory(ld);
        *ok = false;
        return;
    }
    policy_index written = {0};
    for (size_t i = 0; i < count; i++) {
        const yaml_doc_node *item = items[i];
        const char *text = string_of(ld, item, "a key selector");
        if (text == NULL || item_is_repeat(ld, &written, items, i, "key selector")) {
            *ok = false;
            continue;
        }
        key_selector *sel = &st->keys[st->key_count];
        const char *why = selector_problem(text, &sel->kind);
        if (why != NULL) {
            error_at(ld, item, "invalid key selector '%s': %s", policy_quote(text).text, why);
            *ok = false;
            continue;
        }
        policy_glob_status gs = policy_glob_compile(text, &sel->glob);
        sel->text = strdup(text);
        if (gs != POLICY_GLOB_OK || sel->text == NULL) {
            policy_glob_free(&sel->glob);
            free(sel->text);
            sel->text = NULL;
            out_of_memory(ld); /* the only failure left once selector_problem passed */
            *ok = false;
            continue;
        }
        sel->line = item->line;
        sel->column = item->column;
        st->key_count++;
    }
    policy_index_free(&written);
}

static bool context_text_ok(loader *ld, const yaml_doc_node *node, const char *text,
                            bool allow_empty, const char *what)
{
    size_t len = strlen(text);
    if (len == 0 && !allow_empty) {
        error_at(ld, node, "%s is empty", what);
        return false;
    }
    if (len > CONTEXT_TEXT_MAX) {
        error_at(ld, node, "%s is longer than %d bytes", what, CONTEXT_TEXT_MAX);
        return false;
    }
    return true;
}

/* context-equals / context-like: a mapping from context key to one value or a list of them. */
static void parse_context_rules(loader *ld, const yaml_doc_node *node, bool like,
                                context_rule **out, size_t *out_count, bool *ok)
{
    const char *what = like ? "'context-like'" : "'context-equals'";
    if (!expect_kind(ld, node, YAML_DOC_MAP, what) || node->count == 0) {
        if (node->kind == YAML_DOC_MAP)
            error_at(ld, node, "%s is empty", what);
        *ok = false;
        return;
    }
    context_rule *rules = calloc(node->count, sizeof(*rules));
    if (rules == NULL) {
        out_of_memory(ld);
        *ok = false;
        return;
    }
    *out = rules;
    for (size_t i = 0; i < node->count; i++) {
        const yaml_doc_node *key = node->keys[i];
        if (!context_text_ok(ld, key, key->scalar, false, "a context key")) {
            *ok = false;
            continue;
        }
        const yaml_doc_node *const *items, *one;
        size_t count;
        const yaml_doc_node *value = node->children[i];
        /* A quoted "" is a legal value; a plain empty one is YAML null. */
        if (value->kind == YAML_DOC_SCALAR && value->quoted) {
            items = (const yaml_doc_node *const *)&node->children[i];
            count = 1;
        } else if (!items_of(ld, value, "a context condition value", &one, &items, &count)) {
            *ok = false;
            continue;
        }
        context_rule *r = &rules[*out_count];
        r->key = strdup(key->scalar);
        r->values = like ? NULL : calloc(count, sizeof(char *));
        r->globs = like ? calloc(count, sizeof(policy_glob)) : NULL;
        if (r->key == NULL || (like ? r->globs == NULL : r->values == NULL)) {
            out_of_memory(ld);
            *ok = false;
            free(r->key);
            free(r->values);
            free(r->globs);
            memset(r, 0, sizeof(*r));
            continue;
        }
        (*out_count)++;
        for (size_t v = 0; v < count; v++) {
            const yaml_doc_node *item = items[v];
            if (!(item->kind == YAML_DOC_SCALAR && item->quoted) &&
                string_of(ld, item, "a context value") == NULL) {
                *ok = false;
                continue;
            }
            if (!context_text_ok(ld, item, item->scalar, true, "a context value")) {
                *ok = false;
                continue;
            }
            if (!like) {
                r->values[r->count] = strdup(item->scalar);
                if (r->values[r->count] == NULL) {
                    out_of_memory(ld);
                    *ok = false;
                    continue;
                }
                r->count++;
                continue;
            }
            policy_glob_status gs = policy_glob_compile(item->scalar, &r->globs[r->count]);
            if (gs != POLICY_GLOB_OK) {
                if (gs == POLICY_GLOB_NO_MEMORY)
                    out_of_memory(ld);
                else
                    error_at(ld, item, "invalid pattern '%s': %s", policy_quote(item->scalar).text,
                             policy_glob_status_text(gs));
                *ok = false;
                continue;
            }
            r->count++;
        }
    }
}

static void parse_key_list(loader *ld, const yaml_doc_node *node, const char *what, char ***out,
                           size_t *out_count, bool *ok)
{
    const yaml_doc_node *const *items, *one;
    size_t count;
    if (!items_of(ld, node, what, &one, &items, &count)) {
        *ok = false;
        return;
    }
    *out = calloc(count, sizeof(char *));
    if (*out == NULL) {
        out_of_memory(ld);
        *ok = false;
        return;
    }
    policy_index written = {0};
    for (size_t i = 0; i < count; i++) {
        const char *k = string_of(ld, items[i], "a context key");
        if (k == NULL || item_is_repeat(ld, &written, items, i, "context key") ||
            !context_text_ok(ld, items[i], k, false, "a context key")) {
            *ok = false;
            continue;
        }
        (*out)[*out_count] = strdup(k);
        if ((*out)[*out_count] == NULL) {
            out_of_memory(ld);
            *ok = false;
            continue;
        }
        (*out_count)++;
    }
    policy_index_free(&written);
}

static void parse_conditions(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    if (!expect_kind(ld, node, YAML_DOC_MAP, "'conditions'")) {
        *ok = false;
        return;
    }
    if (node->count == 0) {
        error_at(ld, node, "'conditions' is empty");
        *ok = false;
        return;
    }
    st->has_conditions = true;
    conditions *c = &st->cond;
    for (size_t i = 0; i < node->count; i++) {
        const char *field = node->keys[i]->scalar;
        const yaml_doc_node *value = node->children[i];
        if (strcmp(field, "context-equals") == 0) {
            parse_context_rules(ld, value, false, &c->equals, &c->equals_count, ok);
        } else if (strcmp(field, "context-like") == 0) {
            parse_context_rules(ld, value, true, &c->like, &c->like_count, ok);
        } else if (strcmp(field, "context-keys-only") == 0) {
            parse_key_list(ld, value, "'context-keys-only'", &c->keys_only, &c->keys_only_count,
                           ok);
        } else if (strcmp(field, "context-keys-any") == 0) {
            parse_key_list(ld, value, "'context-keys-any'", &c->keys_any, &c->keys_any_count, ok);
        } else {
            error_at(ld, node->keys[i],
                     "unknown condition '%s' (context-equals, context-like, context-keys-only, "
                     "context-keys-any)",
                     policy_quote(field).text);
            *ok = false;
        }
    }
}

static void parse_waiver(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const char *reason = string_of(ld, node, "'waiver'");
    if (reason == NULL) {
        *ok = false;
        return;
    }
    bool blank = true;
    for (const char *p = reason; *p != '\0' && blank; p++)
        blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
    if (blank) {
        error_at(ld, node, "a waiver needs a written reason");
        *ok = false;
        return;
    }
    if (strlen(reason) > POLICY_WAIVER_MAX) {
        error_at(ld, node, "waiver reason is longer than %d bytes", POLICY_WAIVER_MAX);
        *ok = false;
        return;
    }
    st->waiver = dup_text(ld, reason);
    if (st->waiver == NULL)
        *ok = false;
}

static void parse_create(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    if (!expect_kind(ld, node, YAML_DOC_MAP, "'create'")) {
        *ok = false;
        return;
    }
    st->has_create = true;
    for (size_t i = 0; i < node->count; i++) {
        const char *field = node->keys[i]->scalar;
        const yaml_doc_node *value = node->children[i];
        if (strcmp(field, "description") == 0) {
            const char *d = string_of(ld, value, "'description'");
            if (d != NULL && strlen(d) > DESCRIPTION_MAX) {
                error_at(ld, value, "description is longer than %d bytes", DESCRIPTION_MAX);
                d = NULL;
            }
            if (d == NULL || (st->create_description = dup_text(ld, d)) == NULL)
                *ok = false;
        } else if (strcmp(field, "tags") == 0) {
            if (!expect_kind(ld, value, YAML_DOC_MAP, "'tags'")) {
                *ok = false;
                continue;
            }
            if (value->count > TAGS_MAX) {
                error_at(ld, value, "more than %d tags", TAGS_MAX);
                *ok = false;
                continue;
            }
            st->create_tags = calloc(value->count > 0 ? value->count : 1, sizeof(policy_tag));
            if (st->create_tags == NULL) {
                out_of_memory(ld);
                *ok = false;
                continue;
            }
            for (size_t t = 0; t < value->count; t++) {
                const yaml_doc_node *k = value->keys[t];
                const yaml_doc_node *v = value->children[t];
                const char *tv = v->kind == YAML_DOC_SCALAR && v->quoted
                                     ? v->scalar
                                     : string_of(ld, v, "a tag value");
                size_t klen = strlen(k->scalar);
                if (klen == 0 || klen > TAG_KEY_MAX || strncmp(k->scalar, "aws:", 4) == 0) {
                    error_at(ld, k,
                             "tag key '%s' must have 1 to %d bytes and not start with "
                             "'aws:'",
                             policy_quote(k->scalar).text, TAG_KEY_MAX);
                    *ok = false;
                    continue;
                }
                if (tv == NULL || strlen(tv) > TAG_VALUE_MAX) {
                    if (tv != NULL)
                        error_at(ld, v, "tag value is longer than %d bytes", TAG_VALUE_MAX);
                    *ok = false;
                    continue;
                }
                policy_tag *tag = &st->create_tags[st->create_tag_count];
                tag->key = strdup(k->scalar);
                tag->value = strdup(tv);
                st->create_tag_count++; /* counted before the check: freed with the rest */
                if (tag->key == NULL || tag->value == NULL) {
                    out_of_memory(ld);
                    *ok = false;
                }
            }
        } else {
            error_at(ld, node->keys[i], "unknown field '%s' in 'create' (description, tags)",
                     policy_quote(field).text);
            *ok = false;
        }
    }
}

static void free_conditions(conditions *c)
{
    for (size_t i = 0; i < c->equals_count; i++) {
        for (size_t v = 0; v < c->equals[i].count; v++)
            free(c->equals[i].values[v]);
        free(c->equals[i].values);
        free(c->equals[i].key);
    }
    free(c->equals);
    for (size_t i = 0; i < c->like_count; i++) {
        for (size_t v = 0; v < c->like[i].count; v++)
            policy_glob_free(&c->like[i].globs[v]);
        free(c->like[i].globs);
        free(c->like[i].key);
    }
    free(c->like);
    for (size_t i = 0; i < c->keys_only_count; i++)
        free(c->keys_only[i]);
    free(c->keys_only);
    for (size_t i = 0; i < c->keys_any_count; i++)
        free(c->keys_any[i]);
    free(c->keys_any);
}

static void free_statement(statement *st)
{
    free(st->principals);
    free(st->principal_patterns);
    policy_index_free(&st->exact_principals);
    for (size_t i = 0; i < st->key_count; i++) {
        policy_glob_free(&st->keys[i].glob);
        free(st->keys[i].text);
    }
    free(st->keys);
    free_conditions(&st->cond);
    free(st->waiver);
    free(st->create_description);
    for (size_t i = 0; i < st->create_tag_count; i++) {
        free((char *)st->create_tags[i].key);
        free((char *)st->create_tags[i].value);
    }
    free(st->create_tags);
}

static action_set all_of(bool (*pred)(policy_action))
{
    action_set s = 0;
    for (int a = 0; a < POLICY_ACTION__COUNT; a++)
        if (pred((policy_action)a))
            s |= ACTION_BIT(a);
    return s;
}

/* Rules that tie fields of one statement together. */
static void check_statement(loader *ld, statement *st, bool effect_known,
                            const yaml_doc_node *cond_node, const yaml_doc_node *waiver_node,
                            const yaml_doc_node *create_node, bool *ok)
{
    if (st->has_conditions && (st->actions & ~all_of(policy_action_takes_context)) != 0) {
        error_at(ld, cond_node,
                 "conditions apply to the encryption context, so every action of statement "
                 "'%s' must take one (encrypt, decrypt, re-encrypt-from, re-encrypt-to, "
                 "generate-data-key, generate-data-key-without-plaintext)",
                 st->sid);
        *ok = false;
    }
    if (waiver_node != NULL && effect_known && !st->allow) {
        error_at(ld, waiver_node, "a waiver belongs on an allow statement");
        *ok = false;
    }
    if (waiver_node != NULL) {
        for (size_t i = 0; i < st->key_count; i++) {
            if (!st->keys[i].glob.exact) {
                error_at(ld, waiver_node,
                         "a waiver names its keys: statement '%s' selects keys by pattern '%s'",
                         st->sid, policy_quote(st->keys[i].text).text);
                *ok = false;
                break;
            }
        }
    }
    if (create_node != NULL && effect_known &&
        (!st->allow || (st->actions & ACTION_BIT(POLICY_ACTION_CREATE_KEY)) == 0)) {
        error_at(ld, create_node, "'create' belongs on an allow statement with create-key");
        *ok = false;
    }
}

static void parse_statement(loader *ld, const yaml_doc_node *node, bool global)
{
    if (!expect_kind(ld, node, YAML_DOC_MAP, "a statement"))
        return;
    statement st = {0};
    st.global = global;
    st.line = node->line;
    st.column = node->column;
    bool ok = true;
    const yaml_doc_node *sid = NULL, *effect = NULL, *principals = NULL, *actions = NULL,
                        *keys = NULL, *cond = NULL, *waiver = NULL, *create = NULL;
    for (size_t i = 0; i < node->count; i++) {
        const char *f = node->keys[i]->scalar;
        const yaml_doc_node *v = node->children[i];
        if (strcmp(f, "sid") == 0)
            sid = v;
        else if (strcmp(f, "effect") == 0)
            effect = v;
        else if (strcmp(f, "principals") == 0)
            principals = v;
        else if (strcmp(f, "actions") == 0)
            actions = v;
        else if (strcmp(f, "keys") == 0 && !global)
            keys = v;
        else if (strcmp(f, "conditions") == 0 && !global)
            cond = v;
        else if (strcmp(f, "waiver") == 0 && !global)
            waiver = v;
        else if (strcmp(f, "create") == 0 && global)
            create = v;
        else {
            error_at(ld, node->keys[i],
                     global ? "unknown field '%s' in a global statement (sid, effect, "
                              "principals, actions, create)"
                            : "unknown field '%s' in a statement (sid, effect, principals, "
                              "keys, actions, conditions, waiver)",
                     policy_quote(f).text);
            ok = false;
        }
    }
    const char *what = global ? "global statement" : "statement";
    ok &= require(ld, node, sid, what, "sid");
    ok &= require(ld, node, effect, what, "effect");
    ok &= require(ld, node, principals, what, "principals");
    ok &= require(ld, node, actions, what, "actions");
    if (!global)
        ok &= require(ld, node, keys, what, "keys");
    if (sid != NULL)
        parse_sid(ld, sid, &st, &ok);
    bool effect_known = effect != NULL;
    if (effect != NULL)
        parse_effect(ld, effect, &st, &effect_known);
    ok &= effect_known;
    if (principals != NULL)
        parse_principals(ld, principals, &st, &ok);
    if (actions != NULL)
        parse_actions(ld, actions, &st, &ok);
    if (keys != NULL)
        parse_keys(ld, keys, &st, &ok);
    if (cond != NULL)
        parse_conditions(ld, cond, &st, &ok);
    if (waiver != NULL)
        parse_waiver(ld, waiver, &st, &ok);
    if (create != NULL)
        parse_create(ld, create, &st, &ok);
    check_statement(ld, &st, effect_known, cond, waiver, create, &ok);
    policy *pol = ld->pol;
    if (!ok || ld->no_memory ||
        !reserve(ld, &pol->statements, pol->statement_count, sizeof(statement))) {
        free_statement(&st);
        return;
    }
    pol->statements[pol->statement_count++] = st;
}

static void parse_statement_list(loader *ld, const yaml_doc_node *node, bool global)
{
    if (!expect_kind(ld, node, YAML_DOC_SEQ, global ? "'global'" : "'statements'"))
        return;
    for (size_t i = 0; i < node->count; i++)
        parse_statement(ld, node->children[i], global);
}

/* ---- indexes ---------------------------------------------------------------------------- */

static void build_indexes(loader *ld)
{
    policy *pol = ld->pol;
    for (size_t s = 0; s < pol->statement_count; s++) {
        statement *st = &pol->statements[s];
        if (!policy_index_add(&pol->by_sid, st->sid, s)) {
            out_of_memory(ld);
            return;
        }
        if (st->global) {
            if (!reserve(ld, &pol->global, pol->global_count, sizeof(size_t)))
                return;
            pol->global[pol->global_count++] = s;
            continue;
        }
        for (size_t k = 0; k < st->key_count; k++) {
            const key_selector *sel = &st->keys[k];
            if (sel->glob.exact) {
                if (!policy_index_add(&pol->by_selector, sel->glob.literal, s)) {
                    out_of_memory(ld);
                    return;
                }
                continue;
            }
            if (!reserve(ld, &pol->patterns, pol->pattern_count, sizeof(selector_ref)))
                return;
            pol->patterns[pol->pattern_count].selector = sel;
            pol->patterns[pol->pattern_count].statement = s;
            pol->pattern_count++;
        }
    }
}

static void report_conflict(void *arg, const statement *at, const char *message)
{
    loader *ld = arg;
    char line[1600];
    snprintf(line, sizeof(line), "%s:%u:%u: %s", ld->doc->file, at->line, at->column, message);
    report_line(ld, at->line, at->column, line);
}

/* ---- top level -------------------------------------------------------------------------- */

void policy_destroy(policy *pol)
{
    if (pol == NULL)
        return;
    for (size_t i = 0; i < pol->statement_count; i++)
        free_statement(&pol->statements[i]);
    free(pol->statements);
    for (size_t i = 0; i < pol->entry_count; i++) {
        policy_glob_free(&pol->entries[i]->glob);
        free(pol->entries[i]->text);
        free(pol->entries[i]);
    }
    free(pol->entries);
    for (size_t i = 0; i < pol->group_count; i++)
        free(pol->group_names[i]);
    free(pol->group_names);
    policy_index_free(&pol->by_selector);
    policy_index_free(&pol->by_sid);
    free(pol->patterns);
    free(pol->global);
    free(pol->source);
    free(pol);
}

static void parse_root(loader *ld, const yaml_doc_node *root)
{
    if (root == NULL) {
        error_at(ld, NULL, "the policy is empty (it needs at least 'version: 1')");
        return;
    }
    if (!expect_kind(ld, root, YAML_DOC_MAP, "the policy"))
        return;
    const yaml_doc_node *version = NULL, *groups = NULL, *global = NULL, *statements = NULL;
    for (size_t i = 0; i < root->count; i++) {
        const char *f = root->keys[i]->scalar;
        if (strcmp(f, "version") == 0)
            version = root->children[i];
        else if (strcmp(f, "groups") == 0)
            groups = root->children[i];
        else if (strcmp(f, "global") == 0)
            global = root->children[i];
        else if (strcmp(f, "statements") == 0)
            statements = root->children[i];
        else
            error_at(ld, root->keys[i], "unknown field '%s' (version, groups, global, statements)",
                     policy_quote(f).text);
    }
    if (require(ld, root, version, "the policy", "version")) {
        unsigned long v = 0;
        p11kms_error e = {0};
        if (yaml_doc_get_uint(ld->doc, version, 0, 1000, &v, P11KMS_E_MALFORMED_POLICY, &e) !=
            P11KMS_OK)
            report_line(ld, version->line, version->column, e.message);
        else if (v != 1)
            error_at(ld, version, "unsupported policy version %lu (this p11kms reads 1)", v);
    }
    if (groups != NULL) {
        parse_groups(ld, groups);
        for (size_t g = 0; g < ld->group_count && !ld->no_memory; g++)
            expand_group(ld, g);
    }
    if (global != NULL)
        parse_statement_list(ld, global, true);
    if (statements != NULL)
        parse_statement_list(ld, statements, false);
}

static p11kms_err load_doc(const yaml_doc *doc, policy_error_fn on_error, void *arg, policy **out,
                           p11kms_error *err)
{
    loader ld = {.doc = doc};
    ld.pol = calloc(1, sizeof(policy));
    if (ld.pol == NULL || (ld.pol->source = strdup(doc->file)) == NULL) {
        free(ld.pol);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory loading the policy",
                            doc->file);
    }
    atomic_init(&ld.pol->refs, 1);
    parse_root(&ld, doc->root);
    free_groups(&ld);
    policy_index_free(&ld.sid_seen);
    free(ld.sid_nodes);
    if (!ld.no_memory)
        build_indexes(&ld);
    /* Duties are checked on the statements that loaded, so one error elsewhere does not hide a
     * conflict (and a broken statement does not invent one). */
    if (!ld.no_memory)
        policy_check_duties(ld.pol, report_conflict, &ld);
    if (ld.errors == 0) {
        *out = ld.pol;
        return P11KMS_OK;
    }
    char first[512];
    flush_errors(&ld, on_error, arg, first, sizeof(first));
    policy_destroy(ld.pol);
    if (ld.no_memory)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory loading the policy",
                            doc->file);
    if (ld.errors == 1)
        return P11KMS_RAISE(err, P11KMS_E_MALFORMED_POLICY, "%s", first);
    return P11KMS_RAISE(err, P11KMS_E_MALFORMED_POLICY, "%.400s (and %zu more errors)", first,
                        ld.errors - 1);
}

static p11kms_err finish_doc(p11kms_err rc, yaml_doc *doc, policy_error_fn on_error, void *arg,
                             policy **out, p11kms_error *err)
{
    if (rc != P11KMS_OK) {
        /* The YAML layer stops at its first error; it is still one line of the report. */
        if (on_error != NULL && err != NULL && rc == P11KMS_E_MALFORMED_POLICY)
            on_error(err->message, arg);
        return rc;
    }
    rc = load_doc(doc, on_error, arg, out, err);
    yaml_doc_free(doc);
    return rc;
}

p11kms_err policy_load_buffer(const char *name, const char *data, size_t len,
                              policy_error_fn on_error, void *arg, policy **out, p11kms_error *err)
{
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_load_buffer: out is NULL");
    *out = NULL;
    yaml_doc *doc = NULL;
    p11kms_error local = {0};
    p11kms_error *e = err != NULL ? err : &local;
    p11kms_err rc = yaml_doc_load_buffer(name, data, len, P11KMS_E_MALFORMED_POLICY, &doc, e);
    return finish_doc(rc, doc, on_error, arg, out, e);
}

p11kms_err policy_load_file(const char *path, policy_error_fn on_error, void *arg, policy **out,
                            p11kms_error *err)
{
    if (out == NULL || path == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_load_file: NULL argument");
    *out = NULL;
    yaml_doc *doc = NULL;
    p11kms_error local = {0};
    p11kms_error *e = err != NULL ? err : &local;
    p11kms_err rc = yaml_doc_load_file(path, P11KMS_E_MALFORMED_POLICY, &doc, e);
    return finish_doc(rc, doc, on_error, arg, out, e);
}

p11kms_err policy_check_file(const char *path, policy_error_fn on_error, void *arg,
                             p11kms_error *err)
{
    policy *pol = NULL;
    p11kms_err rc = policy_load_file(path, on_error, arg, &pol, err);
    policy_free(pol);
    return rc;
}

policy *policy_ref(policy *pol)
{
    if (pol != NULL)
        atomic_fetch_add_explicit(&pol->refs, 1, memory_order_relaxed);
    return pol;
}

void policy_free(policy *pol)
{
    if (pol == NULL)
        return;
    /* acq_rel: the last owner must see every other owner's reads finished before freeing. */
    if (atomic_fetch_sub_explicit(&pol->refs, 1, memory_order_acq_rel) == 1)
        policy_destroy(pol);
}

const char *policy_source(const policy *pol)
{
    return pol != NULL ? pol->source : NULL;
}

size_t policy_statement_count(const policy *pol)
{
    return pol != NULL ? pol->statement_count : 0;
}
