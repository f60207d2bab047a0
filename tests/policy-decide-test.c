#include "config.h"

/* Key policy decisions: a table of requests against tests/policy-data/decide.yaml (principal x
 * action x key x aliases x context -> decision + deciding statement), then the load-time
 * refusals (separation of duties, strictness) with their exact positions, waivers, create
 * defaults and the policy store's reload. */

#include "policy/policy.h"
#include "tests/lib/check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_APP "11111111-1111-4111-8111-111111111111"
#define KEY_OTHER "33333333-3333-4333-8333-333333333333"
#define KEY_PREFIXED "22222222-0000-4000-8000-000000000000"

enum {
    ALLOW = 1,
    DENY = 0,
};

enum {
    EXPLICIT = 1 << 0, /* explicit deny */
    CONFLICT = 1 << 1, /* duty conflict */
    WAIVER = 1 << 2,
    EMPTY_CTX = 1 << 3,  /* pass an empty (not NULL) context */
    EMPTY_CTX2 = 1 << 4, /* pass an empty (not NULL) second context */
};

typedef struct decide_case {
    const char *name;
    const char *who[4]; /* NULL-terminated */
    const char *action;
    const char *key_id;
    const char *aliases[3];
    const char *ctx[9];  /* key, value, ..., NULL; all NULL: no context (unless EMPTY_CTX) */
    const char *ctx2[9]; /* the other side of a re-encrypt */
    p11kms_err rc;
    int allowed;
    const char *sid; /* "" when no statement decided */
    int flags;
} decide_case;

static const decide_case cases[] = {
    /* --- principals: exact, case-sensitive, through groups and nested groups --- */
    {"admin by name",
     {"unix:user:alice"},
     "enable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "admin-all",
     0},
    {"admin name is case-sensitive",
     {"unix:user:Alice"},
     "enable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"admin by pattern",
     {"unix:user:adm-7"},
     "disable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "admin-all",
     0},
    {"star matches the empty suffix",
     {"unix:user:adm-"},
     "disable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "admin-all",
     0},
    {"admin through nested group",
     {"unix:user:zed", "unix:group:kms-admins"},
     "enable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "admin-all",
     0},
    {"group scheme is not user scheme",
     {"unix:user:kms-admins"},
     "enable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"admin cannot use",
     {"unix:user:alice"},
     "encrypt",
     KEY_APP,
     {"alias/app"},
     {"Tenant", "acme"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"no principal at all", {NULL}, "describe-key", KEY_APP, {0}, {0}, {0}, P11KMS_OK, DENY, "", 0},

    /* --- key references: id and aliases are one key --- */
    {"by id",
     {"unix:user:app"},
     "encrypt",
     KEY_APP,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-id",
     0},
    {"id statement applies when called through an alias",
     {"unix:user:app"},
     "decrypt",
     KEY_APP,
     {"alias/whatever"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-id",
     0},
    {"alias statement applies when called by id",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-alias",
     0},
    {"alias statement needs the alias",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {0},
     {"Tenant", "acme"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"second alias counts too",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/first", "alias/app"},
     {"Tenant", "acme"},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-alias",
     0},
    {"deny by alias cannot be bypassed by id",
     {"unix:user:app"},
     "encrypt",
     KEY_APP,
     {"alias/blocked"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "app-blocked",
     EXPLICIT},
    {"alias is case-sensitive",
     {"unix:user:app"},
     "encrypt",
     KEY_APP,
     {"alias/Blocked"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-id",
     0},
    {"key id pattern",
     {"unix:user:prefix"},
     "decrypt",
     KEY_PREFIXED,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "id-prefix",
     0},
    {"key id pattern does not match aliases",
     {"unix:user:prefix"},
     "decrypt",
     KEY_OTHER,
     {"alias/22222222-x"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},

    /* --- explicit deny wins, also through a group --- */
    {"deny through group beats alias allow",
     {"unix:user:app"},
     "re-encrypt-from",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {"Tenant", "acme"},
     P11KMS_OK,
     DENY,
     "suspended-reencrypt",
     EXPLICIT},
    {"deny does not spill to other principals",
     {"unix:user:Bob"},
     "re-encrypt-from",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {"Tenant", "acme"},
     P11KMS_OK,
     ALLOW,
     "app-by-alias",
     0},
    {"deny matches any of the caller's names",
     {"unix:user:Bob", "unix:user:app"},
     "re-encrypt-from",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {"Tenant", "acme"},
     P11KMS_OK,
     DENY,
     "suspended-reencrypt",
     EXPLICIT},

    /* --- encryption context conditions --- */
    {"context equals",
     {"unix:user:Bob"},
     "generate-data-key",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-alias",
     0},
    {"context key is case-sensitive",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"tenant", "acme"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"context value is case-sensitive",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "ACME"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"context equals is not a prefix match",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme2"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"no context fails context-equals",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"empty context fails context-equals",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     EMPTY_CTX},
    {"extra keys are fine without keys-only",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme", "extra", "1"},
     {0},
     P11KMS_OK,
     ALLOW,
     "app-by-alias",
     0},
    {"re-encrypt: both sides must satisfy",
     {"unix:user:Bob"},
     "re-encrypt-to",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {"Tenant", "other"},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"re-encrypt: missing other side is empty",
     {"unix:user:Bob"},
     "re-encrypt-to",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"re-encrypt: both sides satisfy",
     {"unix:user:Bob"},
     "re-encrypt-to",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme"},
     {"Tenant", "acme", "more", "x"},
     P11KMS_OK,
     ALLOW,
     "app-by-alias",
     0},
    {"context like",
     {"unix:user:rds"},
     "encrypt",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "db-1234"},
     {0},
     P11KMS_OK,
     ALLOW,
     "rds",
     0},
    {"context like: star may be empty",
     {"unix:user:rds"},
     "encrypt",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "db-"},
     {0},
     P11KMS_OK,
     ALLOW,
     "rds",
     0},
    {"context like: prefix is literal",
     {"unix:user:rds"},
     "encrypt",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "DB-1"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"keys-only refuses an extra key",
     {"unix:user:rds"},
     "encrypt",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "db-1", "x", "y"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"deny condition strikes",
     {"unix:user:rds"},
     "decrypt",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "db-locked"},
     {0},
     P11KMS_OK,
     DENY,
     "rds-locked",
     EXPLICIT},
    {"deny condition strikes on either re-encrypt side",
     {"unix:user:rds"},
     "re-encrypt-from",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "db-1"},
     {"db-id", "db-locked"},
     P11KMS_OK,
     DENY,
     "rds-locked",
     EXPLICIT},
    {"deny condition not met: allow stands",
     {"unix:user:rds"},
     "re-encrypt-from",
     KEY_OTHER,
     {"alias/rds-main"},
     {"db-id", "db-1"},
     {"db-id", "db-2"},
     P11KMS_OK,
     ALLOW,
     "rds",
     0},
    {"alias pattern needs an alias",
     {"unix:user:rds"},
     "encrypt",
     KEY_OTHER,
     {"alias/rds"},
     {"db-id", "db-1"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"keys-any",
     {"unix:user:etl"},
     "encrypt",
     KEY_OTHER,
     {"alias/etl"},
     {"other", "1", "pipeline", "p"},
     {0},
     P11KMS_OK,
     ALLOW,
     "etl-any",
     0},
    {"keys-any: none present",
     {"unix:user:etl"},
     "encrypt",
     KEY_OTHER,
     {"alias/etl"},
     {"Job", "1"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"keys-any: empty context",
     {"unix:user:etl"},
     "encrypt",
     KEY_OTHER,
     {"alias/etl"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     EMPTY_CTX},
    {"keys-only: empty context is allowed",
     {"unix:user:etl"},
     "encrypt",
     KEY_OTHER,
     {"alias/etl-strict"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "etl-only",
     EMPTY_CTX},
    {"keys-only: listed key",
     {"unix:user:etl"},
     "encrypt",
     KEY_OTHER,
     {"alias/etl-strict"},
     {"job", "j"},
     {0},
     P11KMS_OK,
     ALLOW,
     "etl-only",
     0},
    {"keys-only: unlisted key",
     {"unix:user:etl"},
     "encrypt",
     KEY_OTHER,
     {"alias/etl-strict"},
     {"job", "j", "jobs", "k"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"equals empty string",
     {"unix:user:etl"},
     "decrypt",
     KEY_OTHER,
     {"alias/etl-empty"},
     {"job", ""},
     {0},
     P11KMS_OK,
     ALLOW,
     "empty-value",
     0},
    {"equals empty string needs the key",
     {"unix:user:etl"},
     "decrypt",
     KEY_OTHER,
     {"alias/etl-empty"},
     {"jo", ""},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"non-ASCII principal and context",
     {"unix:user:jürgen"},
     "encrypt",
     KEY_OTHER,
     {"alias/uni"},
     {"ключ", "второй"},
     {0},
     P11KMS_OK,
     ALLOW,
     "intl",
     0},
    {"non-ASCII: decomposed form is another name",
     {"unix:user:ju\xcc\x88rgen"},
     "encrypt",
     KEY_OTHER,
     {"alias/uni"},
     {"ключ", "второй"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"non-ASCII: ? is one character, not one byte",
     {"unix:user:名前-字"},
     "encrypt",
     KEY_OTHER,
     {"alias/uni"},
     {"ключ", "значение"},
     {0},
     P11KMS_OK,
     ALLOW,
     "intl",
     0},
    {"non-ASCII: wrong value",
     {"unix:user:名前-字"},
     "encrypt",
     KEY_OTHER,
     {"alias/uni"},
     {"ключ", "значени"},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},

    /* --- glob edge cases --- */
    {"? needs exactly one character",
     {"unix:uid:1001"},
     "encrypt",
     KEY_OTHER,
     {"alias/q-x"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "one-char",
     0},
    {"? is not empty",
     {"unix:uid:100"},
     "encrypt",
     KEY_OTHER,
     {"alias/q-x"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"? is not two",
     {"unix:uid:1001"},
     "encrypt",
     KEY_OTHER,
     {"alias/q-xy"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"? at the end of the key pattern",
     {"unix:uid:1001"},
     "encrypt",
     KEY_OTHER,
     {"alias/q-"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"escaped star is literal",
     {"x509:CN=app*.example.com"},
     "encrypt",
     KEY_OTHER,
     {"alias/x509"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "literal-star",
     0},
    {"escaped star is not a wildcard",
     {"x509:CN=app1.example.com"},
     "encrypt",
     KEY_OTHER,
     {"alias/x509"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"prefix pattern",
     {"unix:user:svc-a"},
     "encrypt",
     KEY_OTHER,
     {"alias/svc"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "svc-prefix",
     0},
    {"prefix pattern is anchored",
     {"unix:user:xsvc-a"},
     "encrypt",
     KEY_OTHER,
     {"alias/svc"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},

    /* --- separation of duties at run time: names the loader could not relate --- */
    {"user also in admin unix group: use refused",
     {"unix:user:svc-shared", "unix:group:kms-admins"},
     "encrypt",
     KEY_OTHER,
     {"alias/shared"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "shared-use",
     CONFLICT},
    {"user also in admin unix group: manage refused",
     {"unix:user:svc-shared", "unix:group:kms-admins"},
     "disable-key",
     KEY_OTHER,
     {"alias/shared"},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "admin-all",
     CONFLICT},
    {"user also in admin unix group: read allowed",
     {"unix:user:svc-shared", "unix:group:kms-admins"},
     "describe-key",
     KEY_OTHER,
     {"alias/shared"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "admin-all",
     0},
    {"same names on another key: no conflict",
     {"unix:user:svc-shared", "unix:group:kms-admins"},
     "disable-key",
     KEY_OTHER,
     {"alias/elsewhere"},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "admin-all",
     0},

    /* --- account-level actions --- */
    {"create key",
     {"unix:user:alice"},
     "create-key",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "create",
     0},
    {"create key refused",
     {"unix:user:app"},
     "create-key",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"list keys",
     {"unix:group:kms-admins"},
     "list-keys",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "create",
     0},
    {"random for users",
     {"unix:user:app"},
     "generate-random",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     ALLOW,
     "random-all",
     0},
    {"random denied to guest",
     {"unix:user:guest"},
     "generate-random",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "no-random-guest",
     EXPLICIT},
    {"random not for uids",
     {"unix:uid:0"},
     "generate-random",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},
    {"key statements do not grant account actions",
     {"unix:user:app"},
     "list-aliases",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_OK,
     DENY,
     "",
     0},

    /* --- malformed requests are denied with a validation error --- */
    {"context on an action without one",
     {"unix:user:alice"},
     "describe-key",
     KEY_OTHER,
     {0},
     {"a", "b"},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"second context outside re-encrypt",
     {"unix:user:app"},
     "encrypt",
     KEY_APP,
     {0},
     {"a", "b"},
     {"a", "b"},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"duplicate context key",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "acme", "Tenant", "evil"},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"invalid UTF-8 in context",
     {"unix:user:Bob"},
     "encrypt",
     KEY_OTHER,
     {"alias/app"},
     {"Tenant", "ac\xffme"},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"invalid principal scheme",
     {"Unix:user:alice"},
     "enable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"empty principal name",
     {"unix:user:"},
     "enable-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"key-bound action without a key",
     {"unix:user:alice"},
     "enable-key",
     NULL,
     {0},
     {0},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"account action with a key",
     {"unix:user:alice"},
     "create-key",
     KEY_OTHER,
     {0},
     {0},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
    {"alias without prefix",
     {"unix:user:app"},
     "encrypt",
     KEY_APP,
     {"app"},
     {0},
     {0},
     P11KMS_E_VALIDATION,
     DENY,
     "",
     0},
};

static size_t count_strings(const char *const *v, size_t max)
{
    size_t n = 0;
    while (n < max && v[n] != NULL)
        n++;
    return n;
}

static void to_context(const char *const *kv, policy_context_pair *pairs, policy_context *ctx)
{
    size_t n = count_strings(kv, 8) / 2;
    for (size_t i = 0; i < n; i++) {
        pairs[i].key = kv[2 * i];
        pairs[i].value = kv[2 * i + 1];
    }
    ctx->pairs = pairs;
    ctx->count = n;
}

static void run_case(const policy *pol, const decide_case *c)
{
    policy_action action;
    p11kms_error err = {0};
    REQUIRE(policy_action_parse(c->action, &action, &err) == P11KMS_OK);
    policy_principals who = {c->who, count_strings(c->who, 4)};
    policy_context_pair p1[4], p2[4];
    policy_context ctx, ctx2;
    to_context(c->ctx, p1, &ctx);
    to_context(c->ctx2, p2, &ctx2);
    const policy_context *pc = ctx.count > 0 || (c->flags & EMPTY_CTX) ? &ctx : NULL;
    const policy_context *pc2 = ctx2.count > 0 || (c->flags & EMPTY_CTX2) ? &ctx2 : NULL;
    policy_decision d;
    memset(&d, 0xA5, sizeof(d)); /* every field must be written */
    p11kms_err rc = policy_evaluate(pol, &who, action, c->key_id, c->aliases,
                                    count_strings(c->aliases, 3), pc, pc2, &d, &err);
    bool ok = rc == c->rc && d.allowed == (c->allowed == ALLOW) && strcmp(d.sid, c->sid) == 0 &&
              d.explicit_deny == ((c->flags & EXPLICIT) != 0) &&
              d.duty_conflict == ((c->flags & CONFLICT) != 0) &&
              d.waiver == ((c->flags & WAIVER) != 0) && d.action == action &&
              (d.sid[0] == '\0') == (d.statement < 0) && d.explanation[0] != '\0';
    CHECK(ok);
    if (!ok)
        fprintf(stderr,
                "  case '%s': want rc=%d %s sid='%s' flags=%d, got rc=%d %s sid='%s' explicit=%d "
                "conflict=%d waiver=%d: %s\n",
                c->name, c->rc, c->allowed ? "ALLOW" : "DENY", c->sid, c->flags, rc,
                d.allowed ? "ALLOW" : "DENY", d.sid, d.explicit_deny, d.duty_conflict, d.waiver,
                d.explanation);
    /* The error path and policy_decision_check agree with the decision. */
    p11kms_error e2 = {0};
    CHECK(policy_decision_check(&d, &e2) == (d.allowed ? P11KMS_OK : P11KMS_E_ACCESS_DENIED));
}

static policy *load_data(const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/policy-data/%s", test_env("P11KMS_SRCDIR"), file);
    policy *pol = NULL;
    p11kms_error err = {0};
    CHECK_OK(policy_load_file(path, NULL, NULL, &pol, &err), &err);
    REQUIRE(pol != NULL);
    return pol;
}

static void check_explanations(const policy *pol)
{
    const char *who_names[] = {"unix:user:nobody"};
    policy_principals who = {who_names, 1};
    const char *aliases[] = {"alias/x"};
    policy_decision d;
    p11kms_error err = {0};
    CHECK_OK(policy_evaluate(pol, &who, POLICY_ACTION_DECRYPT, KEY_OTHER, aliases, 1, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(!d.allowed && d.statement == -1);
    CHECK(strstr(d.explanation, "no statement allows decrypt") != NULL);
    CHECK(strstr(d.explanation, "unix:user:nobody") != NULL);
    CHECK(strstr(d.explanation, KEY_OTHER) != NULL && strstr(d.explanation, "alias/x") != NULL);
    char line[600];
    policy_explain(&d, line, sizeof(line));
    CHECK(strncmp(line, "DENY decrypt: denied: no statement allows", 41) == 0);
    CHECK_ERR(policy_decision_check(&d, &err), P11KMS_E_ACCESS_DENIED, &err);
    CHECK(strstr(err.message, "no statement allows decrypt") != NULL);

    const char *alice[] = {"unix:user:alice"};
    policy_principals admin = {alice, 1};
    CHECK_OK(policy_evaluate(pol, &admin, POLICY_ACTION_ENABLE_KEY, KEY_OTHER, NULL, 0, NULL, NULL,
                             &d, &err),
             &err);
    policy_explain(&d, line, sizeof(line));
    CHECK(strcmp(line, "ALLOW enable-key: allowed by statement 'admin-all'") == 0);
    /* A tiny buffer is still terminated. */
    char tiny[8];
    policy_explain(&d, tiny, sizeof(tiny));
    CHECK(strcmp(tiny, "ALLOW e") == 0);

    /* No policy loaded: deny. */
    CHECK_OK(policy_evaluate(NULL, &admin, POLICY_ACTION_ENABLE_KEY, KEY_OTHER, NULL, 0, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(!d.allowed && strstr(d.explanation, "no policy") != NULL);
}

/* The alias name is a resource of its own for alias actions. */
static void check_alias_resource(const policy *pol)
{
    const char *alice[] = {"unix:user:alice"};
    policy_principals admin = {alice, 1};
    const char *app[] = {"unix:user:app"};
    policy_principals user = {app, 1};
    policy_decision d;
    p11kms_error err = {0};
    CHECK_OK(policy_evaluate_alias(pol, &admin, POLICY_ACTION_CREATE_ALIAS, "alias/new", &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "admin-all") == 0);
    CHECK_OK(policy_evaluate_alias(pol, &user, POLICY_ACTION_CREATE_ALIAS, "alias/app", &d, &err),
             &err);
    CHECK(!d.allowed);
    CHECK_ERR(policy_evaluate_alias(pol, &admin, POLICY_ACTION_ENCRYPT, "alias/app", &d, &err),
              P11KMS_E_VALIDATION, &err);
    CHECK(!d.allowed);
    CHECK_ERR(policy_evaluate_alias(pol, &admin, POLICY_ACTION_DELETE_ALIAS, "notalias", &d, &err),
              P11KMS_E_VALIDATION, &err);
    CHECK(!d.allowed);
    /* An id pattern never matches an alias name. */
    const char *prefix[] = {"unix:user:prefix"};
    policy_principals pre = {prefix, 1};
    CHECK_OK(
        policy_evaluate_alias(pol, &pre, POLICY_ACTION_DELETE_ALIAS, "alias/22222222-1", &d, &err),
        &err);
    CHECK(!d.allowed);
}

static void check_create_defaults(const policy *pol)
{
    const char *alice[] = {"unix:user:alice"};
    policy_principals admin = {alice, 1};
    policy_decision d;
    p11kms_error err = {0};
    policy_create_defaults def;
    CHECK_OK(
        policy_evaluate(pol, &admin, POLICY_ACTION_CREATE_KEY, NULL, NULL, 0, NULL, NULL, &d, &err),
        &err);
    CHECK_OK(policy_create_defaults_get(pol, &d, &def, &err), &err);
    CHECK(def.description != NULL && strcmp(def.description, "made by an admin") == 0);
    REQUIRE(def.tag_count == 2);
    CHECK(strcmp(def.tags[0].key, "team") == 0 && strcmp(def.tags[0].value, "security") == 0);
    CHECK(strcmp(def.tags[1].key, "managed-by") == 0 && strcmp(def.tags[1].value, "p11kms") == 0);

    const char *builder[] = {"unix:user:builder"};
    policy_principals b = {builder, 1};
    CHECK_OK(
        policy_evaluate(pol, &b, POLICY_ACTION_CREATE_KEY, NULL, NULL, 0, NULL, NULL, &d, &err),
        &err);
    CHECK(d.allowed && strcmp(d.sid, "create-bare") == 0);
    CHECK_OK(policy_create_defaults_get(pol, &d, &def, &err), &err);
    CHECK(def.description == NULL && def.tag_count == 0);

    /* Only an allowed create-key decision has defaults. */
    CHECK_OK(policy_evaluate(pol, &admin, POLICY_ACTION_ENABLE_KEY, KEY_OTHER, NULL, 0, NULL, NULL,
                             &d, &err),
             &err);
    CHECK_ERR(policy_create_defaults_get(pol, &d, &def, &err), P11KMS_E_INTERNAL, &err);
    const char *app[] = {"unix:user:app"};
    policy_principals user = {app, 1};
    CHECK_OK(
        policy_evaluate(pol, &user, POLICY_ACTION_CREATE_KEY, NULL, NULL, 0, NULL, NULL, &d, &err),
        &err);
    CHECK_ERR(policy_create_defaults_get(pol, &d, &def, &err), P11KMS_E_INTERNAL, &err);
}

/* ---- load-time refusals ---------------------------------------------------------------- */

typedef struct lines {
    char *items[64];
    size_t count;
} lines;

static void collect(const char *line, void *arg)
{
    lines *l = arg;
    if (l->count < 64)
        l->items[l->count++] = strdup(line);
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    l->count = 0;
}

typedef struct load_case {
    const char *file;
    const char *want[24]; /* "line:column: substring", in order; NULL-terminated */
} load_case;

static const load_case load_cases[] = {
    {"err-unknown-action.yaml", {"7:24: unknown action 'Decrypt'", "7:33: unknown action 'sign'"}},
    {"err-unknown-field.yaml",
     {"2:1: unknown field 'statment'", "7:5: unknown field 'principal' in a statement",
      "11:5: unknown field 'condition' in a statement"}},
    {"err-unknown-group.yaml", {"3:29: unknown group 'ops'", "7:32: unknown group 'nobody'"}},
    {"err-duplicate-key.yaml", {"8:5: duplicate mapping key 'effect' (first at line 4, column 5)"}},
    {"err-sid.yaml",
     {"8:10: duplicate sid 'same' (first at line 3, column 10)", "13:10: invalid sid ''",
      "18:9: 'sid' has no value", "23:5: statement has no 'sid'", "27:10: invalid sid 'bad sid!'"}},
    {"err-cycle.yaml",
     {"5:7: group 'a' includes itself: a -> b -> c -> a",
      "6:10: group 'self' includes itself: self -> self"}},
    {"err-types.yaml",
     {"1:10: expected an unquoted decimal integer, found '1'",
      "3:3: 'groups' must be a mapping, not a list",
      "5:3: 'global' must be a list, not a mapping",
      "8:13: effect must be 'allow' or 'deny', not 'maybe'",
      "10:11: 'keys' must be a list, not a mapping",
      "11:14: 'actions' is empty",
      "14:18: invalid principal 'UNIX:user:app': unknown principal scheme",
      "14:33: invalid principal 'unix:uid:007': a uid has no leading zero",
      "14:49: invalid principal 'unix:user:': the name after the scheme is empty",
      "14:63: invalid principal 'sigv4:AKIA-1'",
      "14:79: invalid principal pattern 'unix:user:a\\b'",
      "14:96: a principal must be a scalar, not a mapping",
      "15:12: invalid key selector 'arn:aws:kms:us-east-1:1:key/x'",
      "15:43: invalid key selector 'alias/has space'",
      "15:60: invalid key selector 'ABCDEF01-0000-0000-0000-000000000000'",
      "15:98: invalid key selector '1234'",
      "15:104: invalid key selector 'alias/': alias name is",
      "16:24: action 'encrypt' is listed twice",
      "16:33: action 'create-key' is not bound to a key",
      "23:7: conditions apply to the encryption context, so every action of statement 's3'",
      "24:7: unknown condition 'context-maybe'",
      "30:13: a waiver belongs on an allow statement",
      "30:13: a waiver names its keys: statement 's4' selects keys by pattern 'alias/x-*'"}},
    {"err-empty.yaml", {"the policy is empty"}},
    {"err-version.yaml", {"1:10: unsupported policy version 2"}},
    {"sod-group.yaml",
     {"12:5: separation of duties: statement 'manage' (line 7) grants admin (enable-key) to "
      "'unix:user:carol' (group oncall) on keys 'alias/payments' and statement 'use' (line 12) "
      "grants usage (decrypt) to 'unix:user:carol' on keys 'alias/payments'"}},
    {"sod-pattern.yaml",
     {"9:5: separation of duties: statement 'ops-manage' (line 4) grants admin "
      "(schedule-key-deletion) to 'unix:user:ops-*' on keys 'alias/db-*-prod' and statement "
      "'svc-use' (line 9) grants usage (encrypt) to 'unix:user:*-svc' on keys "
      "'alias/db-billing-*'"}},
    {"sod-same-statement.yaml",
     {"3:5: separation of duties: statement 'everything' grants both admin"}},
    {"sod-id-vs-alias.yaml",
     {"9:5: separation of duties: statement 'manage-by-id' (line 4) grants admin (create-alias) "
      "to 'unix:uid:1000'"}},
    {"sod-creator.yaml",
     {"9:5: separation of duties: global statement 'create' (line 4) lets 'x509:CN=builder,*' "
      "create keys and statement 'use-any' (line 9) grants usage to 'x509:CN=builder,O=Example' "
      "on keys '*'"}},
    {"sod-many.yaml",
     {"11:5: separation of duties: statement 'a1' (line 6)", "16:5: separation of duties: "
                                                             "statement 'a1' (line 6)"}},
    {"err-stars.yaml",
     {"11:18: invalid principal pattern 'unix:user:?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*': pattern "
      "has more than 16 '*' wildcards",
      "12:12: invalid key selector 'alias/*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*': pattern has more "
      "than 16 '*' wildcards",
      "15:31: invalid pattern '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a': pattern has more than 16 "
      "'*' wildcards"}},
    {"waiver-blank.yaml", {"8:13: a waiver needs a written reason"}},
    {"waiver-pattern.yaml", {"8:13: a waiver names its keys"}},
};

static void check_load_case(const load_case *c)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/policy-data/%s", test_env("P11KMS_SRCDIR"), c->file);
    lines got = {0};
    policy *pol = (policy *)1;
    p11kms_error err = {0};
    p11kms_err rc = policy_load_file(path, collect, &got, &pol, &err);
    CHECK(rc == P11KMS_E_MALFORMED_POLICY && pol == NULL);
    size_t want_count = count_strings(c->want, 24);
    bool ok = got.count == want_count;
    for (size_t i = 0; ok && i < want_count; i++) {
        /* Each line is "PATH:line:column: message"; compare what follows the path. */
        size_t plen = strlen(path);
        ok = strncmp(got.items[i], path, plen) == 0 && got.items[i][plen] == ':' &&
             strncmp(got.items[i] + plen + 1, c->want[i], strlen(c->want[i])) == 0;
        if (!ok && strchr(c->want[i], ':') == NULL) /* a whole-file error has no position */
            ok = strstr(got.items[i], c->want[i]) != NULL;
    }
    /* The error summary starts with the first line. */
    size_t first_len = got.count > 0 ? strlen(got.items[0]) : 0;
    ok = ok && got.count > 0 &&
         strncmp(err.message, got.items[0], first_len < 300 ? first_len : 300) == 0;
    CHECK(ok);
    if (!ok) {
        fprintf(stderr, "  %s: want %zu errors, got %zu (rc %d):\n", c->file, want_count, got.count,
                rc);
        for (size_t i = 0; i < got.count; i++)
            fprintf(stderr, "    got  %s\n", got.items[i]);
        for (size_t i = 0; i < want_count; i++)
            fprintf(stderr, "    want %s\n", c->want[i]);
    }
    lines_free(&got);
    /* policy check gives the same lines. */
    CHECK(policy_check_file(path, collect, &got, &err) == P11KMS_E_MALFORMED_POLICY);
    CHECK(got.count == want_count);
    lines_free(&got);
}

static void check_good_files(void)
{
    const char *good[] = {"decide.yaml", "sod-disjoint.yaml", "waiver.yaml"};
    char path[4096];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(path, sizeof(path), "%s/tests/policy-data/%s", test_env("P11KMS_SRCDIR"), good[i]);
        lines got = {0};
        p11kms_error err = {0};
        CHECK_OK(policy_check_file(path, collect, &got, &err), &err);
        CHECK(got.count == 0);
        lines_free(&got);
    }
    /* The shipped example policy loads. */
    snprintf(path, sizeof(path), "%s/conf/policy.yaml", test_env("P11KMS_SRCDIR"));
    policy *pol = NULL;
    lines got = {0};
    p11kms_error err = {0};
    CHECK_OK(policy_load_file(path, collect, &got, &pol, &err), &err);
    CHECK(got.count == 0);
    for (size_t i = 0; i < got.count; i++)
        fprintf(stderr, "  conf/policy.yaml: %s\n", got.items[i]);
    lines_free(&got);
    REQUIRE(pol != NULL);
    CHECK(strcmp(policy_source(pol), path) == 0);
    /* A few decisions the example promises. */
    const char *rds_names[] = {"unix:user:rds-svc", "unix:uid:990", "unix:group:rds"};
    policy_principals rds = {rds_names, 3};
    const char *rds_alias[] = {"alias/rds-orders"};
    policy_context_pair pairs[] = {{"aws:rds:db-id", "db-ORDERS1"}};
    policy_context ctx = {pairs, 1};
    policy_decision d;
    CHECK_OK(policy_evaluate(pol, &rds, POLICY_ACTION_GENERATE_DATA_KEY, KEY_OTHER, rds_alias, 1,
                             &ctx, NULL, &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "rds-use") == 0);
    const char *other_alias[] = {"alias/redshift-main"};
    CHECK_OK(policy_evaluate(pol, &rds, POLICY_ACTION_GENERATE_DATA_KEY, KEY_OTHER, other_alias, 1,
                             &ctx, NULL, &d, &err),
             &err);
    CHECK(!d.allowed);
    const char *rs_names[] = {"unix:user:redshift-svc"};
    policy_principals rs = {rs_names, 1};
    policy_context_pair rs_pairs[] = {
        {"aws:redshift:arn", "arn:aws:redshift:us-east-1:123456789012:cluster:main"},
        {"aws:redshift:createtime", "20240101T000000Z"}};
    policy_context rs_ctx = {rs_pairs, 2};
    CHECK_OK(policy_evaluate(pol, &rs, POLICY_ACTION_DECRYPT, KEY_OTHER, other_alias, 1, &rs_ctx,
                             NULL, &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "redshift-use") == 0);
    const char *legacy_names[] = {"unix:user:etl-legacy"};
    policy_principals legacy = {legacy_names, 1};
    const char *etl_alias[] = {"alias/etl/nightly"};
    policy_context_pair job[] = {{"job", "nightly"}};
    policy_context job_ctx = {job, 1};
    CHECK_OK(policy_evaluate(pol, &legacy, POLICY_ACTION_ENCRYPT, KEY_OTHER, etl_alias, 1, &job_ctx,
                             NULL, &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "etl-use") == 0);
    CHECK_OK(policy_evaluate(pol, &legacy, POLICY_ACTION_DECRYPT, KEY_OTHER, etl_alias, 1, &job_ctx,
                             NULL, &d, &err),
             &err);
    CHECK(!d.allowed && d.explicit_deny && strcmp(d.sid, "suspended-no-decrypt") == 0);
    const char *alice_names[] = {"unix:user:alice"};
    policy_principals alice = {alice_names, 1};
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_DECRYPT, KEY_OTHER, rds_alias, 1, &ctx,
                             NULL, &d, &err),
             &err);
    CHECK(!d.allowed);
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_SCHEDULE_KEY_DELETION, KEY_OTHER, rds_alias,
                             1, NULL, NULL, &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "admins-manage") == 0);
    /* Explaining for others is the administrators' alone. */
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_EXPLAIN_POLICY, NULL, NULL, 0, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "admins-create-keys") == 0);
    CHECK_OK(policy_evaluate(pol, &rds, POLICY_ACTION_EXPLAIN_POLICY, NULL, NULL, 0, NULL, NULL, &d,
                             &err),
             &err);
    CHECK(!d.allowed);
    policy_free(pol);
}

static void check_waiver(void)
{
    policy *pol = load_data("waiver.yaml");
    const char *alias[] = {"alias/legacy"};
    policy_decision d;
    p11kms_error err = {0};
    /* The waived statement's own user. */
    const char *legacy_names[] = {"unix:user:legacy"};
    policy_principals legacy = {legacy_names, 1};
    CHECK_OK(policy_evaluate(pol, &legacy, POLICY_ACTION_ENCRYPT, KEY_OTHER, alias, 1, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(d.allowed && d.waiver && strcmp(d.sid, "legacy") == 0);
    CHECK(strstr(d.waiver_reason, "SEC-42") != NULL);
    CHECK(strstr(d.explanation, "waiver") != NULL);
    /* alice holds both duties on the waived key: her admin decision made by the unwaived
     * statement is still made under the waiver, and says so. */
    const char *alice_names[] = {"unix:user:alice"};
    policy_principals alice = {alice_names, 1};
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_DISABLE_KEY, KEY_OTHER, alias, 1, NULL,
                             NULL, &d, &err),
             &err);
    CHECK(d.allowed && d.waiver && strcmp(d.sid, "manage") == 0);
    CHECK(strstr(d.waiver_reason, "SEC-42") != NULL);
    char line[800];
    policy_explain(&d, line, sizeof(line));
    CHECK(strstr(line, "ALLOW disable-key: allowed by statement 'manage' under a "
                       "separation-of-duties waiver") == line);
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_DECRYPT, KEY_OTHER, alias, 1, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(d.allowed && d.waiver && strcmp(d.sid, "legacy") == 0);
    /* Elsewhere alice is a plain admin: no waiver involved. */
    const char *other[] = {"alias/other"};
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_DISABLE_KEY, KEY_OTHER, other, 1, NULL,
                             NULL, &d, &err),
             &err);
    CHECK(d.allowed && !d.waiver && d.waiver_reason[0] == '\0');
    /* The waiver names its keys: it covers the key id too, and nothing else. */
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_ENCRYPT,
                             "0b1c2d3e-0000-4000-8000-00000000beef", NULL, 0, NULL, NULL, &d, &err),
             &err);
    CHECK(d.allowed && d.waiver);
    CHECK_OK(policy_evaluate(pol, &alice, POLICY_ACTION_ENCRYPT, KEY_OTHER, other, 1, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(!d.allowed);
    policy_free(pol);
}

/* ---- store and reload -------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    REQUIRE(fputs(text, f) >= 0);
    REQUIRE(fclose(f) == 0);
}

static bool store_allows(policy_store *store, const char *principal, policy_action action)
{
    policy *pol = policy_store_acquire(store, NULL);
    const char *names[] = {principal};
    policy_principals who = {names, 1};
    policy_decision d;
    p11kms_error err = {0};
    p11kms_err rc = policy_evaluate(pol, &who, action, KEY_OTHER, NULL, 0, NULL, NULL, &d, &err);
    policy_free(pol);
    return rc == P11KMS_OK && d.allowed;
}

static void check_store(void)
{
    const char *v1 = "version: 1\n"
                     "statements:\n"
                     "  - sid: v1\n"
                     "    effect: allow\n"
                     "    principals: [unix:user:alice]\n"
                     "    keys: ['*']\n"
                     "    actions: [enable-key]\n";
    const char *v2 = "version: 1\n"
                     "statements:\n"
                     "  - sid: v2\n"
                     "    effect: allow\n"
                     "    principals: [unix:user:bob]\n"
                     "    keys: ['*']\n"
                     "    actions: [enable-key]\n";
    const char *broken = "version: 1\n"
                         "statements:\n"
                         "  - sid: v3\n"
                         "    effect: allow\n"
                         "    principals: [unix:user:carol]\n"
                         "    keys: ['*']\n"
                         "    actions: [enable-key, encrypt]\n";
    write_file("policy.yaml", v1);
    policy *pol = NULL;
    p11kms_error err = {0};
    CHECK_OK(policy_load_file("policy.yaml", NULL, NULL, &pol, &err), &err);
    policy_store *store = NULL;
    CHECK_OK(policy_store_new(pol, &store, &err), &err);
    REQUIRE(store != NULL);
    CHECK(store_allows(store, "unix:user:alice", POLICY_ACTION_ENABLE_KEY));
    /* The generation comes with the policy: the initial one is 1 (0 would mean "no
     * generation" to a decision cache) and every policy put in force makes a new one. */
    uint64_t gen = 0, held_gen = 0;
    policy *again = policy_store_acquire(store, &gen);
    CHECK(again != NULL && gen == 1);
    policy_free(again);

    /* A request holding the old policy keeps it through a reload. */
    policy *held = policy_store_acquire(store, &held_gen);
    write_file("policy.yaml", v2);
    CHECK_OK(policy_store_reload(store, "policy.yaml", NULL, NULL, &err), &err);
    again = policy_store_acquire(store, &gen);
    CHECK(again != NULL && again != held && gen == held_gen + 1);
    policy_free(again);
    CHECK(!store_allows(store, "unix:user:alice", POLICY_ACTION_ENABLE_KEY));
    CHECK(store_allows(store, "unix:user:bob", POLICY_ACTION_ENABLE_KEY));
    CHECK(policy_statement_count(held) == 1);
    const char *alice[] = {"unix:user:alice"};
    policy_principals who = {alice, 1};
    policy_decision d;
    CHECK_OK(policy_evaluate(held, &who, POLICY_ACTION_ENABLE_KEY, KEY_OTHER, NULL, 0, NULL, NULL,
                             &d, &err),
             &err);
    CHECK(d.allowed && strcmp(d.sid, "v1") == 0);
    policy_free(held);

    /* A broken file leaves the policy in force and says why. */
    write_file("policy.yaml", broken);
    lines got = {0};
    CHECK_ERR(policy_store_reload(store, "policy.yaml", collect, &got, &err),
              P11KMS_E_MALFORMED_POLICY, &err);
    CHECK(strstr(err.message, "policy.yaml:3:5: separation of duties") == err.message);
    CHECK(got.count == 1);
    lines_free(&got);
    CHECK(store_allows(store, "unix:user:bob", POLICY_ACTION_ENABLE_KEY));
    CHECK(!store_allows(store, "unix:user:carol", POLICY_ACTION_ENABLE_KEY));
    /* So does a missing file and a YAML syntax error. */
    CHECK_ERR(policy_store_reload(store, "missing.yaml", collect, &got, &err),
              P11KMS_E_MALFORMED_POLICY, &err);
    CHECK(strstr(err.message, "missing.yaml: cannot open") == err.message);
    lines_free(&got);
    write_file("policy.yaml", "version: 1\nstatements: [\n");
    CHECK_ERR(policy_store_reload(store, "policy.yaml", collect, &got, &err),
              P11KMS_E_MALFORMED_POLICY, &err);
    CHECK(got.count == 1 && strncmp(got.items[0], "policy.yaml:3:1: YAML", 21) == 0);
    lines_free(&got);
    CHECK(store_allows(store, "unix:user:bob", POLICY_ACTION_ENABLE_KEY));
    /* Failed reloads start no generation: decisions cached under the policy in force stay
     * valid. */
    uint64_t after_failures = 0;
    policy_free(policy_store_acquire(store, &after_failures));
    CHECK(after_failures == held_gen + 1);

    /* Replace with nothing: everything denied, under a generation of its own. */
    policy_store_replace(store, NULL);
    CHECK(policy_store_acquire(store, &gen) == NULL);
    CHECK(gen == after_failures + 1);
    CHECK(!store_allows(store, "unix:user:bob", POLICY_ACTION_ENABLE_KEY));
    policy_store_free(store);

    /* An empty store, no store, and freeing NULLs. */
    CHECK_OK(policy_store_new(NULL, &store, &err), &err);
    CHECK(policy_store_acquire(store, &gen) == NULL && gen == 1);
    policy_store_free(store);
    gen = 7;
    CHECK(policy_store_acquire(NULL, &gen) == NULL && gen == 0);
    policy_store_free(NULL);
    policy_free(NULL);
}

/* Readers evaluate while the main thread reloads: each reader must always see one whole policy
 * (v1 allows alice, v2 allows bob, never both or neither), and nothing may be freed under it.
 * The generation must be the policy's own: the odd ones are v1 (1 is the initial policy, and
 * every round puts the other version in force), so a decision cache keyed on it never pairs a
 * decision with another policy. */
typedef struct reader_state {
    policy_store *store;
    atomic_int stop;
    atomic_long decisions;
    atomic_int inconsistent;
} reader_state;

static void *reader(void *arg)
{
    reader_state *rs = arg;
    const char *alice[] = {"unix:user:alice"}, *bob[] = {"unix:user:bob"};
    policy_principals a = {alice, 1}, b = {bob, 1};
    while (!atomic_load(&rs->stop)) {
        uint64_t gen = 0;
        policy *pol = policy_store_acquire(rs->store, &gen);
        policy_decision da, db;
        p11kms_error err = {0};
        if (policy_evaluate(pol, &a, POLICY_ACTION_ENABLE_KEY, KEY_OTHER, NULL, 0, NULL, NULL, &da,
                            &err) != P11KMS_OK ||
            policy_evaluate(pol, &b, POLICY_ACTION_ENABLE_KEY, KEY_OTHER, NULL, 0, NULL, NULL, &db,
                            &err) != P11KMS_OK ||
            da.allowed == db.allowed || da.allowed != (gen % 2 == 1))
            atomic_store(&rs->inconsistent, 1);
        policy_free(pol);
        atomic_fetch_add(&rs->decisions, 1);
    }
    return NULL;
}

static void check_store_threads(void)
{
    const char *versions[2] = {"version: 1\n"
                               "statements:\n"
                               "  - {sid: v1, effect: allow, principals: [unix:user:alice], keys: "
                               "['*'], actions: [enable-key]}\n",
                               "version: 1\n"
                               "statements:\n"
                               "  - {sid: v2, effect: allow, principals: [unix:user:bob], keys: "
                               "['*'], actions: [enable-key]}\n"};
    write_file("threads.yaml", versions[0]);
    policy *pol = NULL;
    p11kms_error err = {0};
    CHECK_OK(policy_load_file("threads.yaml", NULL, NULL, &pol, &err), &err);
    reader_state rs = {0};
    CHECK_OK(policy_store_new(pol, &rs.store, &err), &err);
    REQUIRE(rs.store != NULL);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&threads[i], NULL, reader, &rs) == 0);
    for (int round = 1; round <= 40; round++) {
        write_file("threads.yaml", versions[round % 2]);
        CHECK_OK(policy_store_reload(rs.store, "threads.yaml", NULL, NULL, &err), &err);
        /* A broken file in between changes nothing. */
        write_file("threads.yaml", "version: 1\nstatements: {}\n");
        CHECK_ERR(policy_store_reload(rs.store, "threads.yaml", NULL, NULL, &err),
                  P11KMS_E_MALFORMED_POLICY, &err);
    }
    /* Let the readers make progress before stopping them (a count, not a time). */
    while (atomic_load(&rs.decisions) < 1000)
        ;
    atomic_store(&rs.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    CHECK(atomic_load(&rs.inconsistent) == 0);
    CHECK(store_allows(rs.store, "unix:user:alice", POLICY_ACTION_ENABLE_KEY));
    policy_store_free(rs.store);
}

static void check_actions(void)
{
    policy_action a;
    p11kms_error err = {0};
    int admin = 0, usage = 0, read = 0, other = 0;
    for (int i = 0; i < POLICY_ACTION__COUNT; i++) {
        const char *name = policy_action_name((policy_action)i);
        REQUIRE(name != NULL);
        CHECK_OK(policy_action_parse(name, &a, &err), &err);
        CHECK(a == (policy_action)i);
        switch (policy_action_class_of((policy_action)i)) {
        case POLICY_CLASS_ADMIN:
            admin++;
            break;
        case POLICY_CLASS_USAGE:
            usage++;
            break;
        case POLICY_CLASS_READ:
            read++;
            break;
        default:
            other++;
        }
    }
    CHECK(admin == 21 && usage == 6 && read == 7 && other == 1);
    CHECK_ERR(policy_action_parse("Encrypt", &a, &err), P11KMS_E_VALIDATION, &err);
    CHECK_ERR(policy_action_parse("", &a, &err), P11KMS_E_VALIDATION, &err);
    CHECK_ERR(policy_action_parse(NULL, &a, &err), P11KMS_E_VALIDATION, &err);
    CHECK(policy_action_name(POLICY_ACTION__COUNT) == NULL);
    CHECK(!policy_action_is_key_bound(POLICY_ACTION_CREATE_KEY));
    CHECK(!policy_action_is_key_bound(POLICY_ACTION_GENERATE_RANDOM));
    CHECK(!policy_action_is_key_bound(POLICY_ACTION_LIST_ALIASES));
    CHECK(!policy_action_is_key_bound(POLICY_ACTION_CREATE_CREDENTIALS));
    CHECK(policy_action_class_of(POLICY_ACTION_DELETE_CREDENTIALS) == POLICY_CLASS_ADMIN);
    CHECK(policy_action_class_of(POLICY_ACTION_LIST_CREDENTIALS) == POLICY_CLASS_READ);
    CHECK(policy_action_class_of(POLICY_ACTION_MAINTAIN) == POLICY_CLASS_ADMIN);
    CHECK(!policy_action_is_key_bound(POLICY_ACTION_MAINTAIN));
    CHECK(policy_action_class_of(POLICY_ACTION_EXPLAIN_POLICY) == POLICY_CLASS_ADMIN);
    CHECK(!policy_action_is_key_bound(POLICY_ACTION_EXPLAIN_POLICY));
    CHECK(!policy_action_takes_context(POLICY_ACTION_EXPLAIN_POLICY));
    CHECK(policy_action_is_key_bound(POLICY_ACTION_DESCRIBE_KEY));
    CHECK(policy_action_takes_context(POLICY_ACTION_RE_ENCRYPT_TO));
    CHECK(!policy_action_takes_context(POLICY_ACTION_DESCRIBE_KEY));
}

/* About 1 MiB of statements on keys '*'. The first `wild` have principal patterns that begin
 * with a wildcard (admins "?*a", users "?*b": nobody holds both duties, but no index tells them
 * apart); the rest exact principals and keys. star_pattern: instead, every principal is the
 * 490-byte "?*?*..." pattern that once took 21 minutes to load. */
static char *big_policy(unsigned wild, bool star_pattern, size_t *len)
{
    size_t cap = 1024 * 1024;
    char *text = malloc(cap + 2048);
    REQUIRE(text != NULL);
    char stars[491];
    for (size_t i = 0; i < 490; i++)
        stars[i] = i % 2 ? '*' : '?';
    stars[490] = '\0';
    size_t o = (size_t)snprintf(text, cap, "version: 1\nstatements:\n");
    for (unsigned i = 0; o < cap - 1200; i++) {
        const char *actions = i % 2 ? "encrypt" : "enable-key";
        if (star_pattern)
            o += (size_t)snprintf(text + o, cap + 2048 - o,
                                  "- {sid: s%u, effect: allow, principals: ['unix:user:%s'], "
                                  "keys: ['*'], actions: [%s]}\n",
                                  i, stars, actions);
        else if (i < wild)
            o += (size_t)snprintf(text + o, cap + 2048 - o,
                                  "- {sid: s%u, effect: allow, principals: ['unix:user:?*%c'], "
                                  "keys: ['*'], actions: [%s]}\n",
                                  i, i % 2 ? 'b' : 'a', actions);
        else
            o += (size_t)snprintf(text + o, cap + 2048 - o,
                                  "- {sid: s%u, effect: allow, principals: [unix:user:x%u], keys: "
                                  "[alias/t%u], actions: [%s]}\n",
                                  i, i, i / 2, actions);
    }
    *len = o;
    return text;
}

/* Any accepted policy loads in bounded time (doc/p11kms-policy.5): patterns have at most 16 '*',
 * and the separation-of-duties check refuses a policy that needs too many comparisons. These
 * files are the worst found (tests/policy-bench.c times them); this test checks only what is
 * accepted and what is refused, and why. */
static void check_bounded_load(void)
{
    struct {
        unsigned wild;
        bool star_pattern;
        const char *want; /* NULL: loads */
    } files[] = {
        {0, true, "bench.yaml:3:41: invalid principal pattern 'unix:user:?*?*"},
        {0, false, NULL},
        {140, false, NULL},
        {100000, false, "separation of duties: the policy is too complex to check"},
    };
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len;
        char *text = big_policy(files[f].wild, files[f].star_pattern, &len);
        CHECK(len > 1000 * 1000 && len <= 1024 * 1024);
        lines got = {0};
        policy *pol = NULL;
        p11kms_error err = {0};
        p11kms_err rc = policy_load_buffer("bench.yaml", text, len, collect, &got, &pol, &err);
        bool ok = files[f].want == NULL ? rc == P11KMS_OK && pol != NULL
                                        : rc == P11KMS_E_MALFORMED_POLICY && got.count > 0 &&
                                              strstr(got.items[0], files[f].want) != NULL;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  big policy %zu: rc %d, first line %s\n", f, rc,
                    got.count > 0 ? got.items[0] : err.message);
        if (files[f].star_pattern)
            CHECK(got.count > 0 && strstr(got.items[0], "more than 16 '*' wildcards") != NULL);
        policy_free(pol);
        lines_free(&got);
        free(text);
    }
}

int main(void)
{
    check_actions();
    policy *pol = load_data("decide.yaml");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(pol, &cases[i]);
    check_explanations(pol);
    check_alias_resource(pol);
    check_create_defaults(pol);
    policy_free(policy_ref(pol)); /* one extra reference, dropped */
    policy_free(pol);
    for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++)
        check_load_case(&load_cases[i]);
    check_good_files();
    check_bounded_load();
    check_waiver();
    check_store();
    check_store_threads();
    return check_finish("policy-decide-test");
}
