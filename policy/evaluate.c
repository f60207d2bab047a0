#include "config.h"

/* Decides one request. The statements that can apply are found through the policy's indexes
 * (exact key ids and aliases hashed, patterns in a short list), never by scanning every
 * statement. Among them: an explicit deny wins; then a caller holding both duties on the key is
 * refused unless a waiver covers it; then the first allow in file order decides. */

#include "policy/model.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Candidate statement numbers: a small inline buffer, the heap beyond it. */
typedef struct candidates {
    size_t inline_items[32];
    size_t *items;
    size_t count, cap;
    bool no_memory;
} candidates;

static void cand_add(candidates *c, size_t s)
{
    if (c->count == c->cap) {
        size_t cap = c->cap * 2;
        size_t *grown = malloc(cap * sizeof(size_t));
        if (grown == NULL) {
            c->no_memory = true;
            return;
        }
        memcpy(grown, c->items, c->count * sizeof(size_t));
        if (c->items != c->inline_items)
            free(c->items);
        c->items = grown;
        c->cap = cap;
    }
    c->items[c->count++] = s;
}

static void cand_add_all(candidates *c, const size_t *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cand_add(c, values[i]);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* File order, each statement once (a key can reach one statement by id and by alias). */
static void cand_sort_unique(candidates *c)
{
    if (c->count < 2)
        return;
    qsort(c->items, c->count, sizeof(size_t), cmp_size);
    size_t o = 1;
    for (size_t i = 1; i < c->count; i++)
        if (c->items[i] != c->items[o - 1])
            c->items[o++] = c->items[i];
    c->count = o;
}

static void cand_free(candidates *c)
{
    if (c->items != c->inline_items)
        free(c->items);
}

static bool selector_selects(const key_selector *sel, const char *key_id,
                             const char *const *aliases, size_t alias_count)
{
    switch (sel->kind) {
    case SELECTOR_ALL:
        return true;
    case SELECTOR_ID:
        return key_id != NULL && policy_glob_match(&sel->glob, key_id);
    default:
        for (size_t i = 0; i < alias_count; i++)
            if (policy_glob_match(&sel->glob, aliases[i]))
                return true;
        return false;
    }
}

static void gather(const policy *pol, bool global, const char *key_id, const char *const *aliases,
                   size_t alias_count, candidates *c)
{
    if (global) {
        cand_add_all(c, pol->global, pol->global_count);
        return;
    }
    size_t n;
    const size_t *v;
    if (key_id != NULL && (v = policy_index_find(&pol->by_selector, key_id, &n)) != NULL)
        cand_add_all(c, v, n);
    for (size_t i = 0; i < alias_count; i++)
        if ((v = policy_index_find(&pol->by_selector, aliases[i], &n)) != NULL)
            cand_add_all(c, v, n);
    for (size_t p = 0; p < pol->pattern_count; p++) {
        const selector_ref *ref = &pol->patterns[p];
        /* A statement may list several patterns; adding it twice is undone by the sort. */
        if (selector_selects(ref->selector, key_id, aliases, alias_count))
            cand_add(c, ref->statement);
    }
    cand_sort_unique(c);
}

static bool principal_matches(const statement *st, const policy_principals *who)
{
    for (size_t i = 0; i < who->count; i++) {
        size_t n;
        if (policy_index_find(&st->exact_principals, who->names[i], &n) != NULL)
            return true;
        for (size_t p = 0; p < st->pattern_count; p++)
            if (policy_glob_match(&st->principal_patterns[p]->glob, who->names[i]))
                return true;
    }
    return false;
}

/* ---- conditions ------------------------------------------------------------------------- */

static const char *context_value(const policy_context *ctx, const char *key)
{
    for (size_t i = 0; ctx != NULL && i < ctx->count; i++)
        if (strcmp(ctx->pairs[i].key, key) == 0)
            return ctx->pairs[i].value;
    return NULL;
}

static bool key_listed(char *const *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

static bool context_satisfies(const conditions *c, const policy_context *ctx)
{
    for (size_t r = 0; r < c->equals_count; r++) {
        const char *v = context_value(ctx, c->equals[r].key);
        bool any = false;
        for (size_t i = 0; v != NULL && i < c->equals[r].count && !any; i++)
            any = strcmp(c->equals[r].values[i], v) == 0;
        if (!any)
            return false;
    }
    for (size_t r = 0; r < c->like_count; r++) {
        const char *v = context_value(ctx, c->like[r].key);
        bool any = false;
        for (size_t i = 0; v != NULL && i < c->like[r].count && !any; i++)
            any = policy_glob_match(&c->like[r].globs[i], v);
        if (!any)
            return false;
    }
    size_t n = ctx != NULL ? ctx->count : 0;
    if (c->keys_only != NULL)
        for (size_t i = 0; i < n; i++)
            if (!key_listed(c->keys_only, c->keys_only_count, ctx->pairs[i].key))
                return false;
    if (c->keys_any != NULL) {
        bool any = false;
        for (size_t i = 0; i < n && !any; i++)
            any = key_listed(c->keys_any, c->keys_any_count, ctx->pairs[i].key);
        if (!any)
            return false;
    }
    return true;
}

/* Conditions are applied to every context the request carries (both sides of a ReEncrypt): an
 * allow needs all of them to satisfy it, a deny strikes if any does. */
static bool conditions_apply(const statement *st, const policy_context *ctx,
                             const policy_context *ctx2, bool two_sided)
{
    if (!st->has_conditions)
        return true;
    bool first = context_satisfies(&st->cond, ctx);
    if (!two_sided)
        return first;
    bool second = context_satisfies(&st->cond, ctx2);
    return st->allow ? first && second : first || second;
}

/* ---- request validation ----------------------------------------------------------------- */

static const char *context_problem(const policy_context *ctx)
{
    if (ctx == NULL)
        return NULL;
    if (ctx->count > 0 && ctx->pairs == NULL)
        return "encryption context has pairs but no array";
    for (size_t i = 0; i < ctx->count; i++) {
        const policy_context_pair *p = &ctx->pairs[i];
        if (p->key == NULL || p->value == NULL)
            return "encryption context has a NULL key or value";
        if (!policy_utf8_valid(p->key, strlen(p->key)) ||
            !policy_utf8_valid(p->value, strlen(p->value)))
            return "encryption context is not valid UTF-8";
        /* Duplicates would let a condition see one value while the AAD binds another. */
        for (size_t j = 0; j < i; j++)
            if (strcmp(ctx->pairs[j].key, p->key) == 0)
                return "encryption context has a duplicate key";
    }
    return NULL;
}

static bool two_sided_action(policy_action action)
{
    return action == POLICY_ACTION_RE_ENCRYPT_FROM || action == POLICY_ACTION_RE_ENCRYPT_TO;
}

static const char *request_problem(const policy_principals *who, policy_action action,
                                   const char *key_id, const char *const *aliases,
                                   size_t alias_count, const policy_context *ctx,
                                   const policy_context *ctx2, bool alias_resource)
{
    if (policy_action_name(action) == NULL)
        return "unknown action";
    if (who == NULL || (who->count > 0 && who->names == NULL))
        return "no principal set";
    for (size_t i = 0; i < who->count; i++) {
        if (who->names[i] == NULL)
            return "a principal name is NULL";
        if (policy_principal_problem(who->names[i], false, NULL) != NULL)
            return "a principal name is not a valid principal";
    }
    bool key_bound = policy_action_is_key_bound(action);
    if (!key_bound && (key_id != NULL || alias_count > 0))
        return "this action is not bound to a key: pass no key id and no aliases";
    if (key_bound && !alias_resource &&
        (key_id == NULL || *key_id == '\0' || !policy_utf8_valid(key_id, strlen(key_id))))
        return "a key-bound action needs the resolved key id";
    if (alias_count > 0 && aliases == NULL)
        return "aliases has a count but no array";
    for (size_t i = 0; i < alias_count; i++)
        if (aliases[i] == NULL || strncmp(aliases[i], "alias/", 6) != 0 ||
            !policy_utf8_valid(aliases[i], strlen(aliases[i])))
            return "an alias is not \"alias/NAME\"";
    if (!policy_action_takes_context(action) && (ctx != NULL || ctx2 != NULL))
        return "this action takes no encryption context";
    if (ctx2 != NULL && !two_sided_action(action))
        return "only re-encrypt-from and re-encrypt-to take a second encryption context";
    const char *why = context_problem(ctx);
    return why != NULL ? why : context_problem(ctx2);
}

/* ---- decision --------------------------------------------------------------------------- */

static void decision_init(policy_decision *out, policy_action action)
{
    memset(out, 0, sizeof(*out));
    out->action = action;
    out->statement = -1;
}

static void set_statement(policy_decision *out, const policy *pol, size_t s)
{
    out->statement = (long)s;
    snprintf(out->sid, sizeof(out->sid), "%s", pol->statements[s].sid);
}

/* "principals: a, b (+2 more); key: ID (alias/x, alias/y)" for a decision nobody allowed. */
static void describe_request(const policy_principals *who, const char *key_id,
                             const char *const *aliases, size_t alias_count, char *buf, size_t size)
{
    size_t o = 0;
#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (o < size)                                                                              \
            o += (size_t)snprintf(buf + o, size - o, __VA_ARGS__);                                 \
    } while (0)
    APPEND("principals: ");
    if (who->count == 0)
        APPEND("none");
    for (size_t i = 0; i < who->count && i < 3; i++)
        APPEND("%s%s", i > 0 ? ", " : "", policy_quote(who->names[i]).text);
    if (who->count > 3)
        APPEND(" (+%zu more)", who->count - 3);
    if (key_id != NULL)
        APPEND("; key: %s", policy_quote(key_id).text);
    for (size_t i = 0; i < alias_count && i < 3; i++)
        APPEND("%s%s", i == 0 ? (key_id != NULL ? " (" : "; alias: ") : ", ",
               policy_quote(aliases[i]).text);
    if (alias_count > 3)
        APPEND(", +%zu more", alias_count - 3);
    if (alias_count > 0 && key_id != NULL)
        APPEND(")");
#undef APPEND
}

/* Statements among the candidates that grant the caller one duty on this key, for the run-time
 * duty check. */
typedef struct duties {
    size_t count, unwaived;
    long first_unwaived; /* for the explanation of a refusal */
    const char *waiver;  /* a waiver among them */
} duties;

static void duty_add(duties *d, const statement *st, size_t s)
{
    d->count++;
    if (st->waiver != NULL) {
        if (d->waiver == NULL)
            d->waiver = st->waiver;
        return;
    }
    if (d->unwaived++ == 0)
        d->first_unwaived = (long)s;
}

static p11kms_err evaluate(const policy *pol, const policy_principals *who, policy_action action,
                           const char *key_id, const char *const *aliases, size_t alias_count,
                           const policy_context *ctx, const policy_context *ctx2,
                           bool alias_resource, policy_decision *out, p11kms_error *err)
{
    decision_init(out, action);
    const char *why =
        request_problem(who, action, key_id, aliases, alias_count, ctx, ctx2, alias_resource);
    if (why != NULL) {
        snprintf(out->explanation, sizeof(out->explanation), "denied: invalid request: %s", why);
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "policy: invalid request: %s", why);
    }
    if (pol == NULL) {
        snprintf(out->explanation, sizeof(out->explanation), "denied: no policy is loaded");
        return P11KMS_OK;
    }
    bool global = !policy_action_is_key_bound(action);
    candidates c = {.items = NULL, .cap = 32};
    c.items = c.inline_items;
    gather(pol, global, key_id, aliases, alias_count, &c);
    if (c.no_memory) {
        cand_free(&c);
        snprintf(out->explanation, sizeof(out->explanation), "denied: out of memory");
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "policy: out of memory evaluating %s",
                            policy_action_name(action));
    }
    action_set admin = policy_class_actions(POLICY_CLASS_ADMIN);
    action_set usage = policy_class_actions(POLICY_CLASS_USAGE);
    duties as_admin = {.first_unwaived = -1}, as_user = {.first_unwaived = -1};
    long allow = -1, deny = -1;
    bool two_sided = two_sided_action(action);
    for (size_t i = 0; i < c.count && deny < 0; i++) {
        size_t s = c.items[i];
        const statement *st = &pol->statements[s];
        if (!principal_matches(st, who))
            continue;
        if (st->allow && !global) {
            if (st->actions & admin)
                duty_add(&as_admin, st, s);
            if (st->actions & usage)
                duty_add(&as_user, st, s);
        }
        if ((st->actions & ACTION_BIT(action)) == 0 || !conditions_apply(st, ctx, ctx2, two_sided))
            continue;
        if (!st->allow)
            deny = (long)s;
        else if (allow < 0)
            allow = (long)s;
    }
    cand_free(&c);

    if (deny >= 0) {
        set_statement(out, pol, (size_t)deny);
        out->explicit_deny = true;
        snprintf(out->explanation, sizeof(out->explanation),
                 "denied by statement '%s' (explicit deny)", out->sid);
        return P11KMS_OK;
    }
    if (allow < 0) {
        char request[300];
        describe_request(who, key_id, aliases, alias_count, request, sizeof(request));
        snprintf(out->explanation, sizeof(out->explanation), "denied: no statement allows %s (%s)",
                 policy_action_name(action), request);
        return P11KMS_OK;
    }
    const statement *st = &pol->statements[allow];
    bool both = as_admin.count > 0 && as_user.count > 0;
    bool read_only = policy_action_class_of(action) == POLICY_CLASS_READ;
    if (both && as_admin.unwaived > 0 && as_user.unwaived > 0 && !read_only) {
        set_statement(out, pol, (size_t)allow);
        out->duty_conflict = true;
        snprintf(out->explanation, sizeof(out->explanation),
                 "denied: separation of duties: statement '%s' grants this caller admin actions "
                 "and statement '%s' usage actions on this key (through different names of the "
                 "caller); remove one or add a waiver",
                 pol->statements[as_admin.first_unwaived].sid,
                 pol->statements[as_user.first_unwaived].sid);
        return P11KMS_OK;
    }
    set_statement(out, pol, (size_t)allow);
    out->allowed = true;
    const char *waiver = st->waiver;
    if (waiver == NULL && both)
        waiver = as_admin.unwaived == 0 ? as_admin.waiver : as_user.waiver;
    if (waiver != NULL) {
        out->waiver = true;
        snprintf(out->waiver_reason, sizeof(out->waiver_reason), "%s", waiver);
        snprintf(out->explanation, sizeof(out->explanation),
                 "allowed by statement '%s' under a separation-of-duties waiver: %s", out->sid,
                 policy_quote(waiver).text);
    } else {
        snprintf(out->explanation, sizeof(out->explanation), "allowed by statement '%s'", out->sid);
    }
    return P11KMS_OK;
}

p11kms_err policy_evaluate(const policy *pol, const policy_principals *who, policy_action action,
                           const char *key_id, const char *const *aliases, size_t alias_count,
                           const policy_context *context, const policy_context *context2,
                           policy_decision *out, p11kms_error *err)
{
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_evaluate: out is NULL");
    return evaluate(pol, who, action, key_id, aliases, alias_count, context, context2, false, out,
                    err);
}

p11kms_err policy_evaluate_alias(const policy *pol, const policy_principals *who,
                                 policy_action action, const char *alias_name, policy_decision *out,
                                 p11kms_error *err)
{
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_evaluate_alias: out is NULL");
    if (action != POLICY_ACTION_CREATE_ALIAS && action != POLICY_ACTION_UPDATE_ALIAS &&
        action != POLICY_ACTION_DELETE_ALIAS) {
        decision_init(out, action);
        snprintf(out->explanation, sizeof(out->explanation),
                 "denied: invalid request: only alias actions apply to an alias name");
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "policy: %s does not apply to an alias name",
                            policy_action_name(action) ? policy_action_name(action) : "?");
    }
    const char *aliases[1] = {alias_name};
    return evaluate(pol, who, action, NULL, aliases, alias_name != NULL ? 1 : 0, NULL, NULL, true,
                    out, err);
}

p11kms_err policy_decision_check(const policy_decision *d, p11kms_error *err)
{
    if (d != NULL && d->allowed)
        return P11KMS_OK;
    return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "%s: %s",
                        d != NULL && policy_action_name(d->action) ? policy_action_name(d->action)
                                                                   : "request",
                        d != NULL ? d->explanation : "no decision");
}

int policy_explain(const policy_decision *d, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return 0;
    if (d == NULL)
        return snprintf(buf, size, "DENY: no decision");
    const char *action = policy_action_name(d->action);
    int n = snprintf(buf, size, "%s %s: %s", d->allowed ? "ALLOW" : "DENY",
                     action != NULL ? action : "?", d->explanation);
    if (d->waiver && strstr(d->explanation, "waiver") == NULL && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " [waiver: %s]", d->waiver_reason);
    return n;
}

p11kms_err policy_create_defaults_get(const policy *pol, const policy_decision *d,
                                      policy_create_defaults *out, p11kms_error *err)
{
    if (pol == NULL || d == NULL || out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "policy_create_defaults_get: NULL argument");
    memset(out, 0, sizeof(*out));
    if (!d->allowed || d->action != POLICY_ACTION_CREATE_KEY || d->statement < 0 ||
        (size_t)d->statement >= pol->statement_count ||
        strcmp(pol->statements[d->statement].sid, d->sid) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "policy: create defaults need an allowed create-key decision made "
                            "with this policy");
    const statement *st = &pol->statements[d->statement];
    out->description = st->create_description;
    out->tags = st->create_tags;
    out->tag_count = st->create_tag_count;
    return P11KMS_OK;
}
