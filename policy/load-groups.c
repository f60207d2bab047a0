#include "config.h"

/* Principals and groups of the policy: each principal written in the file is compiled once;
 * groups and statements hold sets of pointers to them, expanded through nested groups. */

#include "policy/load.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- principals and groups -------------------------------------------------------------- */

static principal_entry *new_principal(loader *ld, const yaml_doc_node *node, const char *via)
{
    const char *text = loader_string(ld, node, "a principal");
    if (text == NULL)
        return NULL;
    size_t scheme = 0;
    const char *why = policy_principal_problem(text, true, &scheme);
    if (why != NULL) {
        loader_error_at(ld, node, "invalid principal '%s': %s", policy_quote(text).text, why);
        return NULL;
    }
    principal_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        loader_no_memory(ld);
        return NULL;
    }
    policy_glob_status st = policy_glob_compile(text, &e->glob);
    if (st != POLICY_GLOB_OK) {
        free(e);
        if (st == POLICY_GLOB_NO_MEMORY)
            loader_no_memory(ld);
        else
            loader_error_at(ld, node, "invalid principal pattern '%s': %s", policy_quote(text).text,
                            policy_glob_status_text(st));
        return NULL;
    }
    e->text = strdup(text);
    if (e->text == NULL ||
        !loader_reserve(ld, &ld->pol->entries, ld->pol->entry_count, sizeof(e))) {
        policy_glob_free(&e->glob);
        free(e->text);
        free(e);
        if (!ld->no_memory)
            loader_no_memory(ld);
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
    if (!loader_reserve(ld, &set->items, set->count, sizeof(*set->items)))
        return;
    if (!policy_index_add(&set->seen, e->text, set->count)) {
        loader_no_memory(ld);
        return;
    }
    set->items[set->count++] = e;
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
        loader_error_at(ld, node, "unknown group '%s' (define it under 'groups')",
                        policy_quote(name).text);
        return false;
    }
    *out = found[0];
    return true;
}

void loader_parse_groups(loader *ld, const yaml_doc_node *node)
{
    if (!loader_expect(ld, node, YAML_DOC_MAP, "'groups'"))
        return;
    /* Names first, so members can refer to groups defined later in the file. */
    ld->groups = calloc(node->count > 0 ? node->count : 1, sizeof(group_def));
    ld->pol->group_names = calloc(node->count > 0 ? node->count : 1, sizeof(char *));
    if (ld->groups == NULL || ld->pol->group_names == NULL) {
        loader_no_memory(ld);
        return;
    }
    for (size_t i = 0; i < node->count; i++) {
        const yaml_doc_node *key = node->keys[i];
        if (!loader_name_ok(key->scalar)) {
            loader_error_at(
                ld, key,
                "invalid group name '%s' (1 to 64 letters, digits, '.', '_', '-'; write "
                "members as a list under it)",
                policy_quote(key->scalar).text);
            continue;
        }
        char *name = loader_dup(ld, key->scalar);
        if (name == NULL)
            return;
        ld->pol->group_names[ld->pol->group_count++] = name;
        group_def *g = &ld->groups[ld->group_count];
        g->name = name;
        g->node = key;
        if (!policy_index_add(&ld->group_index, name, ld->group_count)) {
            loader_no_memory(ld);
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
        if (!loader_items(ld, members, "a group's members", NULL, &items, &count))
            continue;
        policy_index written = {0};
        for (size_t m = 0; m < count; m++) {
            const yaml_doc_node *item = items[m];
            if (loader_string(ld, item, "a group member") == NULL)
                continue;
            if (loader_repeat(ld, &written, items, m, "member"))
                continue;
            if (is_group_ref(item->scalar)) {
                size_t target;
                if (!find_group(ld, item, &target) ||
                    !loader_reserve(ld, &g->refs, g->ref_count, sizeof(*g->refs)))
                    continue;
                g->refs[g->ref_count].group = target;
                g->refs[g->ref_count].node = item;
                g->ref_count++;
                continue;
            }
            principal_entry *e = new_principal(ld, item, g->name);
            if (e == NULL || !loader_reserve(ld, &g->direct, g->direct_count, sizeof(e)))
                continue;
            g->direct[g->direct_count++] = e;
        }
        policy_index_free(&written);
    }
}

/* Expands group gi into its set of principals (members of nested groups included), reporting
 * cycles and over-deep nesting at the reference that causes them. */
void loader_expand_group(loader *ld, size_t gi)
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
            loader_error_at(ld, g->refs[r].node, "group '%s' includes itself: %s", t->name, path);
            continue;
        }
        if (t->state == 0 && ld->expand_depth >= GROUP_MAX_NESTING) {
            loader_error_at(ld, g->refs[r].node, "groups are nested more than %d deep",
                            GROUP_MAX_NESTING);
            continue;
        }
        loader_expand_group(ld, target);
        for (size_t i = 0; i < t->expanded_count; i++)
            entry_set_add(ld, &set, t->expanded[i]);
    }
    policy_index_free(&set.seen);
    g->expanded = set.items;
    g->expanded_count = set.count;
    ld->expand_depth--;
    g->state = 2;
}

void loader_free_groups(loader *ld)
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

void loader_parse_principals(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const yaml_doc_node *const *items, *one;
    size_t count;
    if (!loader_items(ld, node, "'principals'", &one, &items, &count)) {
        *ok = false;
        return;
    }
    entry_set set = {0};
    policy_index written = {0};
    for (size_t i = 0; i < count; i++) {
        const yaml_doc_node *item = items[i];
        if (loader_string(ld, item, "a principal") == NULL ||
            loader_repeat(ld, &written, items, i, "principal")) {
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
                loader_no_memory(ld);
        } else {
            if (!loader_reserve(ld, &st->principal_patterns, st->pattern_count,
                                sizeof(*st->principal_patterns)))
                break;
            st->principal_patterns[st->pattern_count++] = e;
        }
    }
}
