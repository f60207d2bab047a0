#include "config.h"

#include "provider/gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "provider/audit.h"
#include "provider/context-api.h"
#include "provider/decision-cache.h"
#include "provider/keyref.h"

/* Contexts up to this many pairs are converted on the stack (the hot path). */
#define STACK_PAIRS 16
/* Decisions kept per hot key (token.session-keys sizes both): an application commonly encrypts,
 * decrypts and makes data keys under one key, each its own decision. */
#define DECISIONS_PER_HOT_KEY 4
/* Stands for "no such key" when a reference resolves to nothing: the policy still decides, so
 * a denied principal gets AccessDenied whether or not the key exists. */
#define NO_KEY_ID "00000000-0000-0000-0000-000000000000"

/* Which policy is in force, and its generation, is the policy layer's policy_store; the gate
 * adds what the provider needs around it: the file to reload from, the decision cache (keyed on
 * the store's generation, so a reload makes every cached decision a miss) and the conversions of
 * requests. */
struct policy_gate {
    char *path;                /* NULL: "policy: none" */
    policy_store *store;       /* NULL with "policy: none" */
    decision_cache *decisions; /* NULL with "policy: none" */
};

p11kms_err gate_open(const service_config *cfg, struct policy_gate **out, p11kms_error *err)
{
    *out = NULL;
    struct policy_gate *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (cfg->policy_none) {
        fprintf(stderr,
                "p11kms: WARNING: %s says \"policy: none\": every caller may manage and "
                "use every key. Development only.\n",
                cfg->path);
        *out = g;
        return P11KMS_OK;
    }
    g->path = strdup(cfg->policy_path);
    g->decisions = decision_cache_new((size_t)cfg->session_keys * DECISIONS_PER_HOT_KEY);
    policy *initial = NULL;
    p11kms_err rc = g->path && g->decisions
                        ? policy_load_file(g->path, NULL, NULL, &initial, err)
                        : P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK)
        rc = policy_store_new(initial, &g->store, err); /* takes initial, even on failure */
    if (rc != P11KMS_OK) {
        gate_close(g);
        return rc;
    }
    *out = g;
    return P11KMS_OK;
}

void gate_close(struct policy_gate *g)
{
    if (g == NULL)
        return;
    policy_store_free(g->store);
    decision_cache_free(g->decisions);
    free(g->path);
    free(g);
}

p11kms_err gate_reload(struct policy_gate *g, p11kms_error *err)
{
    if (g->path == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "no policy file is configured (policy: none): nothing to reload");
    p11kms_err rc = policy_store_reload(g->store, g->path, NULL, NULL, err);
    if (rc != P11KMS_OK)
        return P11KMS_RAISE(err, rc, "policy reload failed, the previous policy stays in force: %s",
                            err ? err->message : "");
    return P11KMS_OK;
}

void gate_decision_stats(p11kms *svc, uint64_t *hits, uint64_t *misses)
{
    decision_cache_stats(svc->gate->decisions, hits, misses);
}

/* The request as the policy layer takes it. */
typedef struct request {
    policy_principals who;
    policy_context ctx, ctx2;
    policy_context_pair stack[2][STACK_PAIRS];
    policy_context_pair *heap[2];
} request;

static p11kms_err convert_context(const p11kms_context *in, policy_context *out,
                                  policy_context_pair *stack, policy_context_pair **heap,
                                  p11kms_error *err)
{
    const enc_context *pairs = context_pairs(in);
    size_t n = enc_context_count(pairs);
    out->count = n;
    out->pairs = stack;
    if (n == 0)
        return P11KMS_OK;
    policy_context_pair *dst = stack;
    if (n > STACK_PAIRS && (dst = *heap = calloc(n, sizeof(*dst))) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    const enc_context_pair *src = enc_context_pairs(pairs);
    for (size_t i = 0; i < n; i++)
        dst[i] = (policy_context_pair){src[i].key, src[i].value};
    out->pairs = dst;
    return P11KMS_OK;
}

static p11kms_err request_init(request *r, const p11kms_principal *who, const p11kms_context *ctx,
                               const p11kms_context *ctx2, p11kms_error *err)
{
    memset(r, 0, sizeof(*r));
    if (who == NULL || who->count == 0)
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "no principal: the caller is unknown");
    r->who.names = (const char *const *)who->names;
    r->who.count = who->count;
    p11kms_err rc = convert_context(ctx, &r->ctx, r->stack[0], &r->heap[0], err);
    if (rc == P11KMS_OK)
        rc = convert_context(ctx2, &r->ctx2, r->stack[1], &r->heap[1], err);
    return rc;
}

static void request_end(request *r)
{
    free(r->heap[0]);
    free(r->heap[1]);
}

/* A caller without rights learns nothing: the message names only what the caller wrote, never
 * the resolved key, its aliases or the policy's reasoning (which differ between an existing and
 * a missing key). Why is for `p11kms policy explain` and the audit trail. */
static p11kms_err deny(const p11kms_principal *who, policy_action action, const char *key_ref,
                       const policy_decision *d, p11kms_error *err)
{
    (void)d;
    if (key_ref == NULL)
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "%s is not allowed to %s", who->names[0],
                            policy_action_name(action));
    return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "%s is not allowed to %s %s", who->names[0],
                        policy_action_name(action), key_ref);
}

/* The audit record of the request in progress learns every decision the gate makes for it. */
static void audit_decision(policy_action action, const policy_decision *d, const char *key_id)
{
    audit_note_decision(action == POLICY_ACTION_RE_ENCRYPT_TO, d->allowed, d->sid, d->waiver,
                        d->waiver_reason, key_id);
}

/* The actions are the provider's own constants: a value outside the enum is a bug of the
 * caller, refused (fail closed) even under "policy: none". */
static p11kms_err known_action(policy_action act, p11kms_error *err)
{
    if (policy_action_name(act) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "the gate was asked about no action (%d)",
                            (int)act);
    return P11KMS_OK;
}

/* Evaluates one request under pol (NULL: "policy: none"), which the caller acquired with its
 * generation; the decision is always filled (deny when it could not be made). With cached, a
 * decision already made under the same policy generation for the same request is reused (its
 * explanation is then empty: callers that show it pass false). */
static p11kms_err decide_under(p11kms *svc, const policy *pol, uint64_t generation,
                               const p11kms_principal *who, policy_action act, const char *key_ref,
                               const key_meta *meta, const p11kms_context *ctx,
                               const p11kms_context *ctx2, bool cached, policy_decision *d,
                               p11kms_error *err)
{
    memset(d, 0, sizeof(*d));
    p11kms_err rc = known_action(act, err);
    if (rc != P11KMS_OK)
        return rc;
    if (pol == NULL) { /* policy: none */
        d->allowed = true;
        d->action = act;
        snprintf(d->explanation, sizeof(d->explanation), "no policy is configured (policy: none)");
        return P11KMS_OK;
    }
    request r;
    rc = request_init(&r, who, policy_action_takes_context(act) ? ctx : NULL,
                      policy_action_takes_context(act) ? ctx2 : NULL, err);
    if (rc == P11KMS_OK) {
        const char *key_id = NULL;
        const char *const *aliases = NULL;
        size_t alias_count = 0;
        char parsed[P11KMS_ALIAS_MAX];
        const char *lone_alias[1];
        if (meta != NULL) {
            key_id = meta->id_text;
            aliases = (const char *const *)meta->aliases;
            alias_count = meta->alias_count;
        } else if (policy_action_is_key_bound(act)) {
            keyref_kind kind;
            p11kms_error ignored = {0};
            key_id = NO_KEY_ID;
            if (key_ref != NULL &&
                keyref_parse(svc->cfg, key_ref, &kind, parsed, &ignored) == P11KMS_OK) {
                if (kind == KEYREF_ID) {
                    key_id = parsed;
                } else {
                    lone_alias[0] = parsed;
                    aliases = lone_alias;
                    alias_count = 1;
                }
            }
        }
        const policy_context *c1 = r.ctx.count ? &r.ctx : NULL;
        const policy_context *c2 = r.ctx2.count ? &r.ctx2 : NULL;
        decision_key k;
        if (cached)
            decision_key_build(&k, act, &r.who, key_id, aliases, alias_count, c1, c2);
        if (cached && decision_cache_get(svc->gate->decisions, generation, &k, d)) {
            d->action = act;
            /* A bounded copy, not snprintf: this is the hot path of every cached decision. */
            const char *sid = policy_statement_sid(pol, d->statement);
            size_t sid_len = strnlen(sid, sizeof(d->sid) - 1);
            memcpy(d->sid, sid, sid_len);
            d->sid[sid_len] = '\0';
        } else {
            p11kms_error why = {0};
            rc = policy_evaluate(pol, &r.who, act, key_id, aliases, alias_count, c1, c2, d, &why);
            if (rc == P11KMS_OK && cached)
                decision_cache_put(svc->gate->decisions, generation, &k, d);
            if (rc != P11KMS_OK) {
                d->allowed = false;
                snprintf(d->explanation, sizeof(d->explanation),
                         "request refused by the policy: %.400s", why.message);
                rc = P11KMS_OK;
            }
        }
    }
    request_end(&r);
    return rc;
}

/* One request decided under the policy in force, which it holds for the whole decision. */
static p11kms_err decide(p11kms *svc, const p11kms_principal *who, policy_action act,
                         const char *key_ref, const key_meta *meta, const p11kms_context *ctx,
                         const p11kms_context *ctx2, bool cached, policy_decision *d,
                         p11kms_error *err)
{
    uint64_t generation;
    policy *pol = policy_store_acquire(svc->gate->store, &generation);
    p11kms_err rc =
        decide_under(svc, pol, generation, who, act, key_ref, meta, ctx, ctx2, cached, d, err);
    policy_free(pol);
    return rc;
}

p11kms_err gate_check(p11kms *svc, const p11kms_principal *who, policy_action action,
                      const char *key_ref, const key_meta *meta, const p11kms_context *ctx,
                      const p11kms_context *ctx2, p11kms_error *err)
{
    policy_decision d;
    p11kms_err rc = decide(svc, who, action, key_ref, meta, ctx, ctx2, true, &d, err);
    if (rc != P11KMS_OK)
        return rc;
    audit_decision(action, &d, meta != NULL ? meta->id_text : NULL);
    return d.allowed ? P11KMS_OK : deny(who, action, key_ref, &d, err);
}

p11kms_err gate_check_global(p11kms *svc, const p11kms_principal *who, policy_action action,
                             p11kms_error *err)
{
    return gate_check(svc, who, action, NULL, NULL, NULL, NULL, err);
}

p11kms_err gate_check_alias(p11kms *svc, const p11kms_principal *who, policy_action action,
                            const char *alias, p11kms_error *err)
{
    p11kms_err rc = known_action(action, err);
    if (rc != P11KMS_OK)
        return rc;
    policy *pol = policy_store_acquire(svc->gate->store, NULL);
    if (pol == NULL) {
        audit_note_decision(false, true, NULL, false, NULL, NULL);
        return P11KMS_OK;
    }
    policy_decision d;
    request r;
    rc = request_init(&r, who, NULL, NULL, err);
    if (rc == P11KMS_OK) {
        p11kms_error why = {0};
        if (policy_evaluate_alias(pol, &r.who, action, alias, &d, &why) != P11KMS_OK)
            d.allowed = false;
        audit_decision(action, &d, NULL);
        if (!d.allowed)
            rc = deny(who, action, alias, &d, err);
    }
    request_end(&r);
    policy_free(pol);
    return rc;
}

bool gate_may_list(p11kms *svc, const p11kms_principal *who, const key_meta *m)
{
    policy_decision d;
    p11kms_error ignored = {0};
    return decide(svc, who, POLICY_ACTION_DESCRIBE_KEY, m->id_text, m, NULL, NULL, false, &d,
                  &ignored) == P11KMS_OK &&
           d.allowed;
}

p11kms_err gate_check_create(p11kms *svc, const p11kms_principal *who, gate_create *out,
                             p11kms_error *err)
{
    memset(out, 0, sizeof(*out));
    /* The decision and the defaults of its deciding statement come from the same policy: a
     * reload in between must not pair a statement index with another policy's statements. */
    uint64_t generation;
    policy *pol = policy_store_acquire(svc->gate->store, &generation);
    policy_decision d;
    p11kms_err rc = decide_under(svc, pol, generation, who, POLICY_ACTION_CREATE_KEY, NULL, NULL,
                                 NULL, NULL, false, &d, err);
    if (rc == P11KMS_OK) {
        audit_decision(POLICY_ACTION_CREATE_KEY, &d, NULL);
        if (!d.allowed)
            rc = deny(who, POLICY_ACTION_CREATE_KEY, NULL, &d, err);
    }
    if (rc != P11KMS_OK) {
        policy_free(pol);
        return rc;
    }
    out->pol = pol;
    if (out->pol == NULL)
        return P11KMS_OK;
    policy_create_defaults defaults;
    rc = policy_create_defaults_get(out->pol, &d, &defaults, err);
    if (rc == P11KMS_OK && defaults.tag_count > 0) {
        out->owned_tags = calloc(defaults.tag_count, sizeof(*out->owned_tags));
        if (out->owned_tags == NULL)
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        for (size_t i = 0; rc == P11KMS_OK && i < defaults.tag_count; i++)
            out->owned_tags[i] = (p11kms_tag){defaults.tags[i].key, defaults.tags[i].value};
    }
    if (rc != P11KMS_OK) {
        gate_create_end(out);
        return rc;
    }
    out->description = defaults.description;
    out->tags = out->owned_tags;
    out->tag_count = defaults.tag_count;
    return P11KMS_OK;
}

void gate_create_end(gate_create *c)
{
    free(c->owned_tags);
    if (c->pol != NULL)
        policy_free(c->pol);
    memset(c, 0, sizeof(*c));
}

p11kms_err gate_explain(p11kms *svc, const p11kms_principal *who, policy_action action,
                        const char *key_ref, const key_meta *meta, const p11kms_context *ctx,
                        bool *allowed, char *text, size_t size, p11kms_error *err)
{
    policy_decision d;
    p11kms_err rc = decide(svc, who, action, key_ref, meta, ctx, NULL, false, &d, err);
    if (rc != P11KMS_OK)
        return rc;
    *allowed = d.allowed;
    if (svc->gate->path == NULL)
        snprintf(text, size, "ALLOW %s: %s", policy_action_name(action), d.explanation);
    else
        policy_explain(&d, text, size);
    return P11KMS_OK;
}
