#include "config.h"

/* Separation of duties, checked when a policy loads: no principal may hold admin (manage) and
 * usage actions on the same key. Statements are compared pairwise; two statements conflict when
 * some principal can match both (same scheme and intersecting patterns) and some key can be
 * selected by both. A key has an id and any aliases its admins give it, so an id selector and an
 * alias selector always may select the same key; two selectors of one kind overlap when their
 * patterns intersect. Unix groups and uids cannot be resolved here; the evaluator repeats the
 * check for the caller's actual principal set. */

#include "policy/model.h"
#include "policy/utf8.h"

#include <stdio.h>
#include <string.h>

action_set policy_class_actions(policy_action_class klass)
{
    action_set s = 0;
    for (int a = 0; a < POLICY_ACTION__COUNT; a++)
        if (policy_action_class_of((policy_action)a) == klass)
            s |= ACTION_BIT(a);
    return s;
}

static bool selectors_overlap(const key_selector *x, const key_selector *y)
{
    if (x->kind == SELECTOR_ALL || y->kind == SELECTOR_ALL || x->kind != y->kind)
        return true;
    return policy_glob_intersect(&x->glob, &y->glob);
}

static bool entries_overlap(const principal_entry *p, const principal_entry *q)
{
    /* Scheme prefixes have distinct lengths, so equal length and bytes mean the same scheme. */
    if (p->scheme != q->scheme || strncmp(p->text, q->text, p->scheme) != 0)
        return false;
    return policy_glob_intersect(&p->glob, &q->glob);
}

static bool find_key_overlap(const statement *a, const statement *b, const key_selector **ka,
                             const key_selector **kb)
{
    for (size_t i = 0; i < a->key_count; i++) {
        for (size_t j = 0; j < b->key_count; j++) {
            if (selectors_overlap(&a->keys[i], &b->keys[j])) {
                *ka = &a->keys[i];
                *kb = &b->keys[j];
                return true;
            }
        }
    }
    return false;
}

static bool find_principal_overlap(const statement *a, const statement *b,
                                   const principal_entry **pa, const principal_entry **pb)
{
    for (size_t i = 0; i < a->principal_count; i++) {
        for (size_t j = 0; j < b->principal_count; j++) {
            if (entries_overlap(a->principals[i], b->principals[j])) {
                *pa = a->principals[i];
                *pb = b->principals[j];
                return true;
            }
        }
    }
    return false;
}

static const char *first_action(action_set set)
{
    for (int a = 0; a < POLICY_ACTION__COUNT; a++)
        if (set & ACTION_BIT(a))
            return policy_action_name((policy_action)a);
    return "?";
}

/* "'unix:user:x'" or "'unix:user:x' (group key-admins)". */
static void describe_entry(const principal_entry *e, char *buf, size_t size)
{
    if (e->via != NULL)
        snprintf(buf, size, "'%s' (group %s)", policy_quote(e->text).text, e->via);
    else
        snprintf(buf, size, "'%s'", policy_quote(e->text).text);
}

static const statement *later(const statement *a, const statement *b)
{
    return (b->line > a->line || (b->line == a->line && b->column > a->column)) ? b : a;
}

static bool check_pair(const statement *a, const statement *u, action_set admin, action_set usage,
                       sod_report_fn report, void *arg)
{
    const key_selector *ka, *ku;
    const principal_entry *pa, *pu;
    if (!find_key_overlap(a, u, &ka, &ku) || !find_principal_overlap(a, u, &pa, &pu))
        return false;
    char who_a[160], who_u[160], msg[1200];
    describe_entry(pa, who_a, sizeof(who_a));
    describe_entry(pu, who_u, sizeof(who_u));
    if (a == u)
        snprintf(msg, sizeof(msg),
                 "separation of duties: statement '%s' grants both admin (%s) and usage (%s) "
                 "actions to %s on keys '%s'; split it, or add a waiver with a reason",
                 a->sid, first_action(a->actions & admin), first_action(u->actions & usage), who_a,
                 policy_quote(ka->text).text);
    else
        snprintf(msg, sizeof(msg),
                 "separation of duties: statement '%s' (line %u) grants admin (%s) to %s on "
                 "keys '%s' and statement '%s' (line %u) grants usage (%s) to %s on keys '%s': "
                 "the principals and keys overlap; separate them, or add a waiver with a reason",
                 a->sid, a->line, first_action(a->actions & admin), who_a,
                 policy_quote(ka->text).text, u->sid, u->line, first_action(u->actions & usage),
                 who_u, policy_quote(ku->text).text);
    report(arg, later(a, u), msg);
    return true;
}

/* A creator gets no admin rights on the new key from creating it, but a usage statement that
 * selects keys by "*" or by key-id pattern already covers the key before anyone names it. */
static bool check_creator(const statement *c, const statement *u, sod_report_fn report, void *arg)
{
    const key_selector *open = NULL;
    for (size_t k = 0; k < u->key_count && open == NULL; k++)
        if (u->keys[k].kind == SELECTOR_ALL ||
            (u->keys[k].kind == SELECTOR_ID && !u->keys[k].glob.exact))
            open = &u->keys[k];
    const principal_entry *pc, *pu;
    if (open == NULL || !find_principal_overlap(c, u, &pc, &pu))
        return false;
    char who_c[160], who_u[160], msg[1200];
    describe_entry(pc, who_c, sizeof(who_c));
    describe_entry(pu, who_u, sizeof(who_u));
    snprintf(msg, sizeof(msg),
             "separation of duties: global statement '%s' (line %u) lets %s create keys and "
             "statement '%s' (line %u) grants usage to %s on keys '%s', which includes every new "
             "key; select usage keys by alias or exact key id",
             c->sid, c->line, who_c, u->sid, u->line, who_u, policy_quote(open->text).text);
    report(arg, later(c, u), msg);
    return true;
}

bool policy_check_duties(const policy *pol, sod_report_fn report, void *arg)
{
    action_set admin = policy_class_actions(POLICY_CLASS_ADMIN);
    action_set usage = policy_class_actions(POLICY_CLASS_USAGE);
    bool conflict = false;
    for (size_t i = 0; i < pol->statement_count; i++) {
        const statement *a = &pol->statements[i];
        if (!a->allow || (a->actions & admin) == 0)
            continue;
        for (size_t j = 0; j < pol->statement_count; j++) {
            const statement *u = &pol->statements[j];
            if (!u->allow || u->global || (u->actions & usage) == 0)
                continue;
            if (a->global) {
                if ((a->actions & ACTION_BIT(POLICY_ACTION_CREATE_KEY)) != 0)
                    conflict |= check_creator(a, u, report, arg);
                continue;
            }
            /* A waiver on either statement accepts their overlap; the evaluator flags every
             * decision made where the caller actually holds both. */
            if (a->waiver != NULL || u->waiver != NULL)
                continue;
            /* Overlap is symmetric: when both statements mix duties, report the pair once. */
            if (j < i && (u->actions & admin) != 0 && (a->actions & usage) != 0)
                continue;
            conflict |= check_pair(a, u, admin, usage, report, arg);
        }
    }
    return !conflict;
}
