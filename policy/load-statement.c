#include "config.h"

/* One statement of the policy: its fields, their cross-field rules, and its cleanup. */

#include "policy/load.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTEXT_TEXT_MAX 1024
#define TAG_KEY_MAX 128
#define TAG_VALUE_MAX 256
#define TAGS_MAX 50
#define DESCRIPTION_MAX 8192

/* ---- statements ------------------------------------------------------------------------- */

static bool sid_ok(const char *s)
{
    return loader_name_ok(s); /* same alphabet and bound (POLICY_SID_MAX) */
}

static void parse_sid(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const char *sid = loader_string(ld, node, "'sid'");
    if (sid == NULL) {
        *ok = false;
        return;
    }
    if (!sid_ok(sid)) {
        loader_error_at(ld, node, "invalid sid '%s' (1 to %d letters, digits, '.', '_', '-')",
                        policy_quote(sid).text, POLICY_SID_MAX);
        *ok = false;
        return;
    }
    size_t n;
    const size_t *prev = policy_index_find(&ld->sid_seen, sid, &n);
    if (prev != NULL) {
        const yaml_doc_node *first = ld->sid_nodes[prev[0]];
        loader_error_at(ld, node, "duplicate sid '%s' (first at line %u, column %u)", sid,
                        first->line, first->column);
        *ok = false;
        return;
    }
    if (!loader_reserve(ld, &ld->sid_nodes, ld->sid_count, sizeof(*ld->sid_nodes)) ||
        !policy_index_add(&ld->sid_seen, sid, ld->sid_count)) {
        loader_no_memory(ld);
        *ok = false;
        return;
    }
    ld->sid_nodes[ld->sid_count++] = node;
    snprintf(st->sid, sizeof(st->sid), "%s", sid);
}

static void parse_effect(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const char *effect = loader_string(ld, node, "'effect'");
    if (effect != NULL && strcmp(effect, "allow") == 0) {
        st->allow = true;
    } else if (effect != NULL && strcmp(effect, "deny") == 0) {
        st->allow = false;
    } else {
        if (effect != NULL)
            loader_error_at(ld, node, "effect must be 'allow' or 'deny', not '%s'",
                            policy_quote(effect).text);
        *ok = false;
    }
}

static void parse_actions(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const yaml_doc_node *const *items, *one;
    size_t count;
    if (!loader_items(ld, node, "'actions'", &one, &items, &count)) {
        *ok = false;
        return;
    }
    action_set seen = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = loader_string(ld, items[i], "an action");
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
                loader_error_at(ld, items[i], "unknown action '%s'", policy_quote(name).text);
                *ok = false;
                continue;
            }
            if (policy_action_is_key_bound(a) == st->global) {
                loader_error_at(ld, items[i],
                                st->global
                                    ? "action '%s' acts on a key: put it in a statement under "
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
            loader_error_at(ld, items[i], "action '%s' is listed twice", name);
            *ok = false;
        }
        seen |= add;
    }
    st->actions = seen;
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
    if (!loader_items(ld, node, "'keys'", &one, &items, &count)) {
        *ok = false;
        return;
    }
    st->keys = calloc(count, sizeof(*st->keys));
    if (st->keys == NULL) {
        loader_no_memory(ld);
        *ok = false;
        return;
    }
    policy_index written = {0};
    for (size_t i = 0; i < count; i++) {
        const yaml_doc_node *item = items[i];
        const char *text = loader_string(ld, item, "a key selector");
        if (text == NULL || loader_repeat(ld, &written, items, i, "key selector")) {
            *ok = false;
            continue;
        }
        key_selector *sel = &st->keys[st->key_count];
        const char *why = selector_problem(text, &sel->kind);
        if (why != NULL) {
            loader_error_at(ld, item, "invalid key selector '%s': %s", policy_quote(text).text,
                            why);
            *ok = false;
            continue;
        }
        policy_glob_status gs = policy_glob_compile(text, &sel->glob);
        sel->text = strdup(text);
        if (gs != POLICY_GLOB_OK || sel->text == NULL) {
            policy_glob_free(&sel->glob);
            free(sel->text);
            sel->text = NULL;
            /* Once selector_problem passed, only memory or the pattern bound can fail. */
            if (gs == POLICY_GLOB_OK || gs == POLICY_GLOB_NO_MEMORY)
                loader_no_memory(ld);
            else
                loader_error_at(ld, item, "invalid key selector '%s': %s", policy_quote(text).text,
                                policy_glob_status_text(gs));
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
        loader_error_at(ld, node, "%s is empty", what);
        return false;
    }
    if (len > CONTEXT_TEXT_MAX) {
        loader_error_at(ld, node, "%s is longer than %d bytes", what, CONTEXT_TEXT_MAX);
        return false;
    }
    return true;
}

/* context-equals / context-like: a mapping from context key to one value or a list of them. */
static void parse_context_rules(loader *ld, const yaml_doc_node *node, bool like,
                                context_rule **out, size_t *out_count, bool *ok)
{
    const char *what = like ? "'context-like'" : "'context-equals'";
    if (!loader_expect(ld, node, YAML_DOC_MAP, what) || node->count == 0) {
        if (node->kind == YAML_DOC_MAP)
            loader_error_at(ld, node, "%s is empty", what);
        *ok = false;
        return;
    }
    context_rule *rules = calloc(node->count, sizeof(*rules));
    if (rules == NULL) {
        loader_no_memory(ld);
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
        } else if (!loader_items(ld, value, "a context condition value", &one, &items, &count)) {
            *ok = false;
            continue;
        }
        context_rule *r = &rules[*out_count];
        r->key = strdup(key->scalar);
        r->values = like ? NULL : calloc(count, sizeof(char *));
        r->globs = like ? calloc(count, sizeof(policy_glob)) : NULL;
        if (r->key == NULL || (like ? r->globs == NULL : r->values == NULL)) {
            loader_no_memory(ld);
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
                loader_string(ld, item, "a context value") == NULL) {
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
                    loader_no_memory(ld);
                    *ok = false;
                    continue;
                }
                r->count++;
                continue;
            }
            policy_glob_status gs = policy_glob_compile(item->scalar, &r->globs[r->count]);
            if (gs != POLICY_GLOB_OK) {
                if (gs == POLICY_GLOB_NO_MEMORY)
                    loader_no_memory(ld);
                else
                    loader_error_at(ld, item, "invalid pattern '%s': %s",
                                    policy_quote(item->scalar).text, policy_glob_status_text(gs));
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
    if (!loader_items(ld, node, what, &one, &items, &count)) {
        *ok = false;
        return;
    }
    *out = calloc(count, sizeof(char *));
    if (*out == NULL) {
        loader_no_memory(ld);
        *ok = false;
        return;
    }
    policy_index written = {0};
    for (size_t i = 0; i < count; i++) {
        const char *k = loader_string(ld, items[i], "a context key");
        if (k == NULL || loader_repeat(ld, &written, items, i, "context key") ||
            !context_text_ok(ld, items[i], k, false, "a context key")) {
            *ok = false;
            continue;
        }
        (*out)[*out_count] = strdup(k);
        if ((*out)[*out_count] == NULL) {
            loader_no_memory(ld);
            *ok = false;
            continue;
        }
        (*out_count)++;
    }
    policy_index_free(&written);
}

static void parse_conditions(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    if (!loader_expect(ld, node, YAML_DOC_MAP, "'conditions'")) {
        *ok = false;
        return;
    }
    if (node->count == 0) {
        loader_error_at(ld, node, "'conditions' is empty");
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
            loader_error_at(
                ld, node->keys[i],
                "unknown condition '%s' (context-equals, context-like, context-keys-only, "
                "context-keys-any)",
                policy_quote(field).text);
            *ok = false;
        }
    }
}

static void parse_waiver(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    const char *reason = loader_string(ld, node, "'waiver'");
    if (reason == NULL) {
        *ok = false;
        return;
    }
    bool blank = true;
    for (const char *p = reason; *p != '\0' && blank; p++)
        blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
    if (blank) {
        loader_error_at(ld, node, "a waiver needs a written reason");
        *ok = false;
        return;
    }
    if (strlen(reason) > POLICY_WAIVER_MAX) {
        loader_error_at(ld, node, "waiver reason is longer than %d bytes", POLICY_WAIVER_MAX);
        *ok = false;
        return;
    }
    st->waiver = loader_dup(ld, reason);
    if (st->waiver == NULL)
        *ok = false;
}

static void parse_create(loader *ld, const yaml_doc_node *node, statement *st, bool *ok)
{
    if (!loader_expect(ld, node, YAML_DOC_MAP, "'create'")) {
        *ok = false;
        return;
    }
    st->has_create = true;
    for (size_t i = 0; i < node->count; i++) {
        const char *field = node->keys[i]->scalar;
        const yaml_doc_node *value = node->children[i];
        if (strcmp(field, "description") == 0) {
            const char *d = loader_string(ld, value, "'description'");
            if (d != NULL && strlen(d) > DESCRIPTION_MAX) {
                loader_error_at(ld, value, "description is longer than %d bytes", DESCRIPTION_MAX);
                d = NULL;
            }
            if (d == NULL || (st->create_description = loader_dup(ld, d)) == NULL)
                *ok = false;
        } else if (strcmp(field, "tags") == 0) {
            if (!loader_expect(ld, value, YAML_DOC_MAP, "'tags'")) {
                *ok = false;
                continue;
            }
            if (value->count > TAGS_MAX) {
                loader_error_at(ld, value, "more than %d tags", TAGS_MAX);
                *ok = false;
                continue;
            }
            st->create_tags = calloc(value->count > 0 ? value->count : 1, sizeof(policy_tag));
            if (st->create_tags == NULL) {
                loader_no_memory(ld);
                *ok = false;
                continue;
            }
            for (size_t t = 0; t < value->count; t++) {
                const yaml_doc_node *k = value->keys[t];
                const yaml_doc_node *v = value->children[t];
                const char *tv = v->kind == YAML_DOC_SCALAR && v->quoted
                                     ? v->scalar
                                     : loader_string(ld, v, "a tag value");
                size_t klen = strlen(k->scalar);
                if (klen == 0 || klen > TAG_KEY_MAX || strncmp(k->scalar, "aws:", 4) == 0) {
                    loader_error_at(ld, k,
                                    "tag key '%s' must have 1 to %d bytes and not start with "
                                    "'aws:'",
                                    policy_quote(k->scalar).text, TAG_KEY_MAX);
                    *ok = false;
                    continue;
                }
                if (tv == NULL || strlen(tv) > TAG_VALUE_MAX) {
                    if (tv != NULL)
                        loader_error_at(ld, v, "tag value is longer than %d bytes", TAG_VALUE_MAX);
                    *ok = false;
                    continue;
                }
                policy_tag *tag = &st->create_tags[st->create_tag_count];
                tag->key = strdup(k->scalar);
                tag->value = strdup(tv);
                st->create_tag_count++; /* counted before the check: freed with the rest */
                if (tag->key == NULL || tag->value == NULL) {
                    loader_no_memory(ld);
                    *ok = false;
                }
            }
        } else {
            loader_error_at(ld, node->keys[i], "unknown field '%s' in 'create' (description, tags)",
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

void loader_free_statement(statement *st)
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
        loader_error_at(ld, cond_node,
                        "conditions apply to the encryption context, so every action of statement "
                        "'%s' must take one (encrypt, decrypt, re-encrypt-from, re-encrypt-to, "
                        "generate-data-key, generate-data-key-without-plaintext)",
                        st->sid);
        *ok = false;
    }
    if (waiver_node != NULL && effect_known && !st->allow) {
        loader_error_at(ld, waiver_node, "a waiver belongs on an allow statement");
        *ok = false;
    }
    if (waiver_node != NULL) {
        for (size_t i = 0; i < st->key_count; i++) {
            if (!st->keys[i].glob.exact) {
                loader_error_at(
                    ld, waiver_node,
                    "a waiver names its keys: statement '%s' selects keys by pattern '%s'", st->sid,
                    policy_quote(st->keys[i].text).text);
                *ok = false;
                break;
            }
        }
    }
    if (create_node != NULL && effect_known &&
        (!st->allow || (st->actions & ACTION_BIT(POLICY_ACTION_CREATE_KEY)) == 0)) {
        loader_error_at(ld, create_node, "'create' belongs on an allow statement with create-key");
        *ok = false;
    }
}

static void parse_statement(loader *ld, const yaml_doc_node *node, bool global)
{
    if (!loader_expect(ld, node, YAML_DOC_MAP, "a statement"))
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
            loader_error_at(ld, node->keys[i],
                            global ? "unknown field '%s' in a global statement (sid, effect, "
                                     "principals, actions, create)"
                                   : "unknown field '%s' in a statement (sid, effect, principals, "
                                     "keys, actions, conditions, waiver)",
                            policy_quote(f).text);
            ok = false;
        }
    }
    const char *what = global ? "global statement" : "statement";
    ok &= loader_require(ld, node, sid, what, "sid");
    ok &= loader_require(ld, node, effect, what, "effect");
    ok &= loader_require(ld, node, principals, what, "principals");
    ok &= loader_require(ld, node, actions, what, "actions");
    if (!global)
        ok &= loader_require(ld, node, keys, what, "keys");
    if (sid != NULL)
        parse_sid(ld, sid, &st, &ok);
    bool effect_known = effect != NULL;
    if (effect != NULL)
        parse_effect(ld, effect, &st, &effect_known);
    ok &= effect_known;
    if (principals != NULL)
        loader_parse_principals(ld, principals, &st, &ok);
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
        !loader_reserve(ld, &pol->statements, pol->statement_count, sizeof(statement))) {
        loader_free_statement(&st);
        return;
    }
    pol->statements[pol->statement_count++] = st;
}

void loader_parse_statements(loader *ld, const yaml_doc_node *node, bool global)
{
    if (!loader_expect(ld, node, YAML_DOC_SEQ, global ? "'global'" : "'statements'"))
        return;
    for (size_t i = 0; i < node->count; i++)
        parse_statement(ld, node->children[i], global);
}
