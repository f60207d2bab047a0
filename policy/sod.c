#include "config.h"

/* Separation of duties, checked when a policy loads: no principal may hold admin (manage) and
 * usage actions on the same key. Statements are compared pairwise; two statements conflict when
 * some principal can match both (same scheme and intersecting patterns) and some key can be
 * selected by both. A key has an id and any aliases its admins give it, so an id selector and an
 * alias selector always may select the same key; two selectors of one kind overlap when their
 * patterns intersect. Unix groups and uids cannot be resolved here; the evaluator repeats the
 * check for the caller's actual principal set. */

#include "policy/model.h"
#include "common/utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Work the check may do for one policy, in comparison steps (about a nanosecond each): the
 * comparisons that the indexes cannot rule out, each weighted by what its pattern intersection
 * may cost. Beyond it the policy is refused as too complex rather than loaded in seconds; real
 * policies stay far below (doc/p11kms-policy.5). */
#define SOD_MAX_WORK (UINT64_C(32) << 20)
#define SOD_PAIR_WORK 16 /* one statement pair, before any pattern is compared */

typedef struct sod_budget {
    uint64_t used;
    bool exceeded;
} sod_budget;

/* Whether two patterns meet, counting the steps it took. */
static bool intersect(sod_budget *b, const policy_glob *x, const policy_glob *y)
{
    return policy_glob_intersect_counted(x, y, &b->used);
}

action_set policy_class_actions(policy_action_class klass)
{
    action_set s = 0;
    for (int a = 0; a < POLICY_ACTION__COUNT; a++)
        if (policy_action_class_of((policy_action)a) == klass)
            s |= ACTION_BIT(a);
    return s;
}

static bool selectors_overlap(const key_selector *x, const key_selector *y, sod_budget *b)
{
    if (x->kind == SELECTOR_ALL || y->kind == SELECTOR_ALL || x->kind != y->kind)
        return true;
    return intersect(b, &x->glob, &y->glob);
}

static bool entries_overlap(const principal_entry *p, const principal_entry *q, sod_budget *b)
{
    /* Scheme prefixes have distinct lengths, so equal length and bytes mean the same scheme. */
    if (p->scheme != q->scheme || strncmp(p->text, q->text, p->scheme) != 0)
        return false;
    return intersect(b, &p->glob, &q->glob);
}

static bool find_key_overlap(const statement *a, const statement *b, const key_selector **ka,
                             const key_selector **kb, sod_budget *budget)
{
    for (size_t i = 0; i < a->key_count; i++) {
        for (size_t j = 0; j < b->key_count; j++) {
            if (selectors_overlap(&a->keys[i], &b->keys[j], budget)) {
                *ka = &a->keys[i];
                *kb = &b->keys[j];
                return true;
            }
        }
    }
    return false;
}

static bool find_principal_overlap(const statement *a, const statement *b,
                                   const principal_entry **pa, const principal_entry **pb,
                                   sod_budget *budget)
{
    for (size_t i = 0; i < a->principal_count; i++) {
        for (size_t j = 0; j < b->principal_count; j++) {
            if (entries_overlap(a->principals[i], b->principals[j], budget)) {
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
                       sod_report_fn report, void *arg, sod_budget *b)
{
    const key_selector *ka, *ku;
    const principal_entry *pa, *pu;
    b->used += SOD_PAIR_WORK;
    if (!find_key_overlap(a, u, &ka, &ku, b) || !find_principal_overlap(a, u, &pa, &pu, b))
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
static bool check_creator(const statement *c, const statement *u, sod_report_fn report, void *arg,
                          sod_budget *b)
{
    b->used += SOD_PAIR_WORK;
    const key_selector *open = NULL;
    for (size_t k = 0; k < u->key_count && open == NULL; k++)
        if (u->keys[k].kind == SELECTOR_ALL ||
            (u->keys[k].kind == SELECTOR_ID && !u->keys[k].glob.exact))
            open = &u->keys[k];
    const principal_entry *pc, *pu;
    if (open == NULL || !find_principal_overlap(c, u, &pc, &pu, b))
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

/* ---- which statements to compare ---------------------------------------------------------
 *
 * Comparing every admin statement with every usage statement costs n^2 pattern intersections,
 * minutes for a large policy. Instead the usage statements are indexed by what they select and
 * by whom they name, and each admin statement is compared only with the candidates of whichever
 * side gives fewer: statements that may select one of its keys, or statements that may name one
 * of its principals. The candidate sets are supersets (check_pair still decides), so the reports
 * are the same as comparing all pairs; they come in the same order (by statement). */

typedef struct text_ref {
    const char *text;
    size_t stmt;
} text_ref;

typedef struct num_ref {
    uint64_t key;
    size_t stmt;
} num_ref;

typedef struct ref_list {
    void *items; /* text_ref or num_ref */
    size_t count, cap;
} ref_list;

typedef struct stmt_list {
    size_t *items;
    size_t count, cap;
} stmt_list;

/* The first code point after a principal's scheme, or one of these. */
#define HEAD_WILD UINT32_C(0xFFFFFFFF) /* '*' or '?' */
#define HEAD_END UINT32_C(0xFFFFFFFD)  /* nothing after the scheme */

typedef struct usage_index {
    ref_list key_text;       /* exact key id or alias -> statement */
    stmt_list key_open;      /* statements with '*' or a wildcard selector */
    stmt_list key_alias;     /* statements with any alias selector */
    stmt_list key_id;        /* statements with any key id selector */
    ref_list who_text;       /* exact principal -> statement */
    ref_list who_exact_head; /* (scheme, head) of exact principals -> statement */
    ref_list who_wild_head;  /* (scheme, head or HEAD_WILD) of principal patterns -> statement */
    ref_list who_scheme;     /* scheme -> statement, for every principal */
    bool failed;             /* out of memory: compare all pairs */
} usage_index;

static void *grow(void *items, size_t *cap, size_t count, size_t size, bool *failed)
{
    if (count < *cap)
        return items;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(items, n * size);
    if (p == NULL) {
        *failed = true;
        return NULL;
    }
    *cap = n;
    return p;
}

static void add_stmt(stmt_list *l, size_t stmt, bool *failed)
{
    if (l->count > 0 && l->items[l->count - 1] == stmt)
        return; /* statements are added in order: a repeat is always the last one */
    size_t *p = grow(l->items, &l->cap, l->count, sizeof(size_t), failed);
    if (p == NULL)
        return;
    l->items = p;
    l->items[l->count++] = stmt;
}

static void add_text(ref_list *l, const char *text, size_t stmt, bool *failed)
{
    text_ref *p = grow(l->items, &l->cap, l->count, sizeof(text_ref), failed);
    if (p == NULL)
        return;
    l->items = p;
    p[l->count++] = (text_ref){text, stmt};
}

static void add_num(ref_list *l, uint64_t key, size_t stmt, bool *failed)
{
    num_ref *p = grow(l->items, &l->cap, l->count, sizeof(num_ref), failed);
    if (p == NULL)
        return;
    l->items = p;
    p[l->count++] = (num_ref){key, stmt};
}

static int cmp_text(const void *x, const void *y)
{
    const text_ref *a = x, *b = y;
    int c = strcmp(a->text, b->text);
    return c != 0 ? c : (a->stmt > b->stmt) - (a->stmt < b->stmt);
}

static int cmp_num(const void *x, const void *y)
{
    const num_ref *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->stmt > b->stmt) - (a->stmt < b->stmt);
}

static uint32_t principal_head(const principal_entry *e)
{
    if (e->glob.count <= e->scheme)
        return HEAD_END;
    uint32_t t = e->glob.tokens[e->scheme]; /* schemes are ASCII: one token per byte */
    return t == POLICY_GLOB_STAR || t == POLICY_GLOB_ONE ? HEAD_WILD : t;
}

static uint64_t head_key(size_t scheme, uint32_t head)
{
    return (uint64_t)scheme << 32 | head;
}

static bool is_usage(const statement *u, action_set usage)
{
    return u->allow && !u->global && (u->actions & usage) != 0;
}

static void build_index(const policy *pol, action_set usage, usage_index *ix)
{
    bool *failed = &ix->failed;
    for (size_t s = 0; s < pol->statement_count; s++) {
        const statement *u = &pol->statements[s];
        if (!is_usage(u, usage))
            continue;
        for (size_t k = 0; k < u->key_count; k++) {
            const key_selector *sel = &u->keys[k];
            if (sel->kind == SELECTOR_ALL || !sel->glob.exact)
                add_stmt(&ix->key_open, s, failed);
            else
                add_text(&ix->key_text, sel->glob.literal, s, failed);
            if (sel->kind == SELECTOR_ALIAS)
                add_stmt(&ix->key_alias, s, failed);
            if (sel->kind == SELECTOR_ID)
                add_stmt(&ix->key_id, s, failed);
        }
        for (size_t p = 0; p < u->principal_count; p++) {
            const principal_entry *e = u->principals[p];
            uint64_t head = head_key(e->scheme, principal_head(e));
            if (e->glob.exact) {
                add_text(&ix->who_text, e->glob.literal, s, failed);
                add_num(&ix->who_exact_head, head, s, failed);
            } else {
                add_num(&ix->who_wild_head, head, s, failed);
            }
            add_num(&ix->who_scheme, head_key(e->scheme, 0), s, failed);
        }
    }
    ref_list *texts[] = {&ix->key_text, &ix->who_text};
    for (size_t i = 0; i < 2; i++)
        if (texts[i]->count > 1)
            qsort(texts[i]->items, texts[i]->count, sizeof(text_ref), cmp_text);
    ref_list *nums[] = {&ix->who_exact_head, &ix->who_wild_head, &ix->who_scheme};
    for (size_t i = 0; i < 3; i++)
        if (nums[i]->count > 1)
            qsort(nums[i]->items, nums[i]->count, sizeof(num_ref), cmp_num);
}

static void free_index(usage_index *ix)
{
    free(ix->key_text.items);
    free(ix->key_open.items);
    free(ix->key_alias.items);
    free(ix->key_id.items);
    free(ix->who_text.items);
    free(ix->who_exact_head.items);
    free(ix->who_wild_head.items);
    free(ix->who_scheme.items);
}

/* The run of entries equal to text (or key): first index and count. */
static size_t text_range(const ref_list *l, const char *text, size_t *first)
{
    const text_ref *r = l->items;
    size_t lo = 0, hi = l->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r[mid].text, text) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < l->count && strcmp(r[end].text, text) == 0)
        end++;
    *first = lo;
    return end - lo;
}

static size_t num_range(const ref_list *l, uint64_t key, size_t *first)
{
    const num_ref *r = l->items;
    size_t lo = 0, hi = l->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < l->count && r[end].key == key)
        end++;
    *first = lo;
    return end - lo;
}

/* Candidates collected for one admin statement: each usage statement once (stamp), then sorted
 * so that conflicts are reported in statement order. */
typedef struct candidates {
    size_t *stamp; /* per statement: 1 + the admin statement that last collected it */
    size_t round;
    stmt_list found;
    bool failed;
} candidates;

static void collect(candidates *c, size_t stmt)
{
    if (c->stamp[stmt] == c->round)
        return;
    c->stamp[stmt] = c->round;
    size_t *p = grow(c->found.items, &c->found.cap, c->found.count, sizeof(size_t), &c->failed);
    if (p == NULL)
        return;
    c->found.items = p;
    c->found.items[c->found.count++] = stmt;
}

static void collect_list(candidates *c, const stmt_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        collect(c, l->items[i]);
}

static void collect_text(candidates *c, const ref_list *l, const char *text)
{
    size_t first, n = text_range(l, text, &first);
    for (size_t i = 0; i < n; i++)
        collect(c, ((const text_ref *)l->items)[first + i].stmt);
}

static void collect_num(candidates *c, const ref_list *l, uint64_t key)
{
    size_t first, n = num_range(l, key, &first);
    for (size_t i = 0; i < n; i++)
        collect(c, ((const num_ref *)l->items)[first + i].stmt);
}

/* How many references the key side would visit, SIZE_MAX when it cannot narrow (a selector
 * "*" or a wildcard selector may select any key). With collect, gathers them. */
static size_t key_side(const statement *a, const usage_index *ix, candidates *c)
{
    size_t total = 0, first;
    for (size_t k = 0; k < a->key_count; k++) {
        const key_selector *sel = &a->keys[k];
        if (sel->kind == SELECTOR_ALL || !sel->glob.exact)
            return SIZE_MAX;
        /* A key has an id and aliases: an exact id may be a key some alias selects. */
        const stmt_list *other = sel->kind == SELECTOR_ID ? &ix->key_alias : &ix->key_id;
        total += text_range(&ix->key_text, sel->glob.literal, &first) + ix->key_open.count +
                 other->count;
        if (c != NULL) {
            collect_text(c, &ix->key_text, sel->glob.literal);
            collect_list(c, &ix->key_open);
            collect_list(c, other);
        }
    }
    return total;
}

/* The same for the principal side: statements naming a principal that may be one of a's. Two
 * principals can meet only within a scheme, and only when their first characters after it are
 * compatible (equal, or either a wildcard). */
static size_t principal_side(const statement *a, const usage_index *ix, candidates *c)
{
    size_t total = 0, first;
    for (size_t p = 0; p < a->principal_count; p++) {
        const principal_entry *e = a->principals[p];
        uint32_t head = principal_head(e);
        uint64_t wild = head_key(e->scheme, HEAD_WILD);
        if (head == HEAD_WILD) {
            total += num_range(&ix->who_scheme, head_key(e->scheme, 0), &first);
            if (c != NULL)
                collect_num(c, &ix->who_scheme, head_key(e->scheme, 0));
            continue;
        }
        uint64_t key = head_key(e->scheme, head);
        if (e->glob.exact)
            total += text_range(&ix->who_text, e->glob.literal, &first);
        else
            total += num_range(&ix->who_exact_head, key, &first);
        total += num_range(&ix->who_wild_head, key, &first) +
                 num_range(&ix->who_wild_head, wild, &first);
        if (c != NULL) {
            if (e->glob.exact)
                collect_text(c, &ix->who_text, e->glob.literal);
            else
                collect_num(c, &ix->who_exact_head, key);
            collect_num(c, &ix->who_wild_head, key);
            collect_num(c, &ix->who_wild_head, wild);
        }
    }
    return total;
}

static int cmp_size(const void *x, const void *y)
{
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return (a > b) - (a < b);
}

/* Fills c->found with the usage statements to compare with admin statement i. */
static void gather(const policy *pol, size_t i, const usage_index *ix, candidates *c)
{
    const statement *a = &pol->statements[i];
    c->round = i + 1;
    c->found.count = 0;
    size_t by_key = a->global ? ix->key_open.count : key_side(a, ix, NULL);
    size_t by_who = principal_side(a, ix, NULL);
    if (by_who <= by_key)
        principal_side(a, ix, c);
    else if (a->global)
        collect_list(c, &ix->key_open); /* a creator meets only usage on open selectors */
    else
        key_side(a, ix, c);
    if (c->found.count > 1)
        qsort(c->found.items, c->found.count, sizeof(size_t), cmp_size);
}

static bool check_duties(const policy *pol, sod_report_fn report, void *arg, bool every_pair)
{
    action_set admin = policy_class_actions(POLICY_CLASS_ADMIN);
    action_set usage = policy_class_actions(POLICY_CLASS_USAGE);
    bool conflict = false;
    usage_index ix = {0};
    candidates c = {0};
    sod_budget budget = {0};
    build_index(pol, usage, &ix);
    c.stamp = calloc(pol->statement_count + 1, sizeof(size_t));
    bool all_pairs = every_pair || ix.failed || c.stamp == NULL;
    for (size_t i = 0; i < pol->statement_count; i++) {
        const statement *a = &pol->statements[i];
        if (!a->allow || (a->actions & admin) == 0)
            continue;
        if (a->global && (a->actions & ACTION_BIT(POLICY_ACTION_CREATE_KEY)) == 0)
            continue;
        if (!a->global && a->waiver != NULL)
            continue;
        size_t n = pol->statement_count;
        if (!all_pairs) {
            gather(pol, i, &ix, &c);
            all_pairs = c.failed; /* out of memory: fall back to every pair, from here on */
            n = all_pairs ? pol->statement_count : c.found.count;
        }
        for (size_t k = 0; k < n; k++) {
            size_t j = all_pairs ? k : c.found.items[k];
            const statement *u = &pol->statements[j];
            if (!is_usage(u, usage))
                continue;
            if (a->global) {
                conflict |= check_creator(a, u, report, arg, &budget);
                continue;
            }
            /* A waiver on either statement accepts their overlap; the evaluator flags every
             * decision made where the caller actually holds both. */
            if (u->waiver != NULL)
                continue;
            /* Overlap is symmetric: when both statements mix duties, report the pair once. */
            if (j < i && (u->actions & admin) != 0 && (a->actions & usage) != 0)
                continue;
            conflict |= check_pair(a, u, admin, usage, report, arg, &budget);
        }
        if (budget.used > SOD_MAX_WORK && !every_pair) {
            char msg[300];
            snprintf(msg, sizeof(msg),
                     "separation of duties: the policy is too complex to check (its admin and "
                     "usage statements need more than %llu comparison steps, reached at statement "
                     "'%s'); give statements exact principals or key selectors, or fewer "
                     "wildcard patterns",
                     (unsigned long long)SOD_MAX_WORK, a->sid);
            report(arg, a, msg);
            conflict = true;
            break;
        }
    }
    free(c.stamp);
    free(c.found.items);
    free_index(&ix);
    return !conflict;
}

bool policy_check_duties(const policy *pol, sod_report_fn report, void *arg)
{
    return check_duties(pol, report, arg, false);
}

bool policy_check_duties_every_pair(const policy *pol, sod_report_fn report, void *arg)
{
    return check_duties(pol, report, arg, true);
}
