#include "config.h"

/* The policy decision cache of the hot path (provider/decision-cache.c): a repeated request is
 * decided from the cache, and the cache never answers for a request it did not decide: a policy
 * reload (a new generation), another encryption context, another principal or another key each
 * miss, and the answer is the new policy's. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/decision-cache.h"
#include "provider/gate.h"

static p11kms *svc;
static p11kms_error e;

/* app1 may encrypt under key one only with tenant t1 (and, with allow_t2, t2 too). */
static char *write_policy(bool allow_app1, bool allow_t2)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "version: 1\n"
             "global:\n"
             "  - sid: admin-global\n"
             "    effect: allow\n"
             "    principals: [unix:user:admin1]\n"
             "    actions: [create-key, list-keys, list-aliases, maintain]\n"
             "statements:\n"
             "  - sid: admin-manage\n"
             "    effect: allow\n"
             "    principals: [unix:user:admin1]\n"
             "    keys: [\"*\"]\n"
             "    actions: [describe-key, create-alias]\n"
             "  - sid: apps-use\n"
             "    effect: allow\n"
             "    principals: [%s]\n"
             "    keys: [\"alias/app-one\"]\n"
             "    actions: [encrypt, decrypt]\n"
             "    conditions:\n"
             "      context-like:\n"
             "        tenant: \"%s\"\n",
             allow_app1 ? "unix:user:app1" : "unix:user:app9", allow_t2 ? "t?" : "t1");
    return fx_write_file("policy.yaml", text);
}

static p11kms_err encrypt_as(const p11kms_principal *who, const char *ref,
                             const p11kms_context *ctx)
{
    static const uint8_t pt[] = "decision cache";
    p11kms_result r;
    p11kms_err rc = p11kms_encrypt(svc, who, ref, ctx, pt, sizeof(pt), &r, &e);
    p11kms_result_free(&r);
    return rc;
}

static uint64_t hits(void)
{
    uint64_t h, m;
    gate_decision_stats(svc, &h, &m);
    return h;
}

static uint64_t misses(void)
{
    uint64_t h, m;
    gate_decision_stats(svc, &h, &m);
    return m;
}

/* The cache alone: keys differ when anything the policy reads differs. */
static void key_unit_checks(void)
{
    fx_say("decision keys: every input of the decision is part of the key");
    const char *names[] = {"unix:user:app1"}, *names2[] = {"unix:user:app1", "unix:user:x"};
    policy_principals who = {names, 1}, who2 = {names2, 2};
    policy_context_pair p1[] = {{"tenant", "t1"}}, p2[] = {{"tenant", "t2"}},
                        p3[] = {{"tenant", "t"}, {"1", ""}};
    policy_context c1 = {p1, 1}, c2 = {p2, 1}, c3 = {p3, 2};
    const char *id = "11111111-2222-3333-4444-555555555555";
    decision_key a, b;
    decision_key_build(&a, POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, &c1, NULL);
    decision_key_build(&b, POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, &c1, NULL);
    CHECK(a.usable && a.len == b.len && memcmp(a.bytes, b.bytes, a.len) == 0);
    decision_cache *c = decision_cache_new(0);
    REQUIRE(c != NULL);
    policy_decision d = {.allowed = true, .statement = 3, .sid = "apps-use"}, out;
    decision_cache_put(c, 7, &a, &d);
    CHECK(decision_cache_get(c, 7, &b, &out) && out.allowed && out.statement == 3 &&
          out.sid[0] == '\0');                  /* the gate names the statement from its policy */
    CHECK(!decision_cache_get(c, 8, &b, &out)); /* another policy generation */
    const decision_key *differ[6];
    decision_key k[6];
    decision_key_build(&k[0], POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, &c2, NULL);
    decision_key_build(&k[1], POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, &c3, NULL);
    decision_key_build(&k[2], POLICY_ACTION_DECRYPT, &who, id, NULL, 0, &c1, NULL);
    decision_key_build(&k[3], POLICY_ACTION_ENCRYPT, &who2, id, NULL, 0, &c1, NULL);
    const char *alias[] = {"alias/app-one"};
    decision_key_build(&k[4], POLICY_ACTION_ENCRYPT, &who, id, alias, 1, &c1, NULL);
    decision_key_build(&k[5], POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, &c1, &c1);
    for (int i = 0; i < 6; i++) {
        differ[i] = &k[i];
        CHECK(differ[i]->usable);
        CHECK(!decision_cache_get(c, 7, differ[i], &out));
    }
    /* The hash only indexes: a request that shares a kept request's hash but not its bytes
     * finds nothing (forged here, as a 64-bit collision cannot be searched for in a test). */
    decision_key forged = k[0];
    forged.hash = a.hash;
    CHECK(!decision_cache_get(c, 7, &forged, &out));
    policy_decision waived = {.allowed = true, .waiver = true};
    decision_cache_put(c, 7, &k[0], &waived);
    CHECK(!decision_cache_get(c, 7, &k[0], &out)); /* waivers are decided every time */
    decision_cache_free(c);
}

/* Requests that share a set: as many as it has ways are all kept; one more replaces the least
 * recently used, never another. */
static void set_unit_checks(void)
{
    fx_say("%d requests in one set are all kept; one more replaces the least recently used",
           DECISION_CACHE_WAYS);
    const char *names[] = {"unix:user:app1"};
    policy_principals who = {names, 1};
    const char *id = "11111111-2222-3333-4444-555555555555";
    enum { N = DECISION_CACHE_WAYS + 1 };
    decision_key k[N];
    char value[N][16];
    policy_context_pair pair[N];
    policy_context ctx[N];
    decision_cache *c = decision_cache_new(0);
    REQUIRE(c != NULL);
    size_t want = SIZE_MAX;
    int found = 0;
    for (int t = 0; found < N && t < 1000000; t++) {
        snprintf(value[found], sizeof(value[found]), "t%d", t);
        pair[found] = (policy_context_pair){"tenant", value[found]};
        ctx[found] = (policy_context){&pair[found], 1};
        decision_key_build(&k[found], POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, &ctx[found], NULL);
        size_t set = decision_cache_set_of(c, &k[found]);
        if (want == SIZE_MAX)
            want = set;
        if (set == want)
            found++;
    }
    REQUIRE(found == N);
    policy_decision d = {.allowed = true, .statement = 1, .sid = "s"}, out;
    for (int i = 0; i < N - 1; i++)
        decision_cache_put(c, 7, &k[i], &d);
    for (int i = 0; i < N - 1; i++)
        CHECK(decision_cache_get(c, 7, &k[i], &out) && out.allowed);
    /* Used again in the order 1, 2, ..., 0: request 1 is now the least recently used. */
    for (int i = 1; i <= N - 1; i++)
        CHECK(decision_cache_get(c, 7, &k[i % (N - 1)], &out));
    decision_cache_put(c, 7, &k[N - 1], &d);
    CHECK(decision_cache_get(c, 7, &k[N - 1], &out));
    CHECK(!decision_cache_get(c, 7, &k[1], &out));
    for (int i = 0; i < N - 1; i++)
        if (i != 1)
            CHECK(decision_cache_get(c, 7, &k[i], &out));
    decision_cache_free(c);
}

/* Requests numbered 0..n-1 (the key id varies, as with many keys used at random). */
static void numbered_key(decision_key *k, unsigned i)
{
    static const char *names[] = {"unix:user:app1"};
    policy_principals who = {names, 1};
    char id[P11KMS_KEY_ID_LEN + 1];
    snprintf(id, sizeof(id), "00000000-0000-0000-0000-%012u", i);
    decision_key_build(k, POLICY_ACTION_ENCRYPT, &who, id, NULL, 0, NULL, NULL);
}

static unsigned hits_of_numbered(decision_cache *c, unsigned n)
{
    policy_decision d = {.allowed = true, .statement = 1, .sid = "s"}, out;
    decision_key k;
    for (unsigned i = 0; i < n; i++) {
        numbered_key(&k, i);
        decision_cache_put(c, 7, &k, &d);
    }
    unsigned kept = 0;
    for (unsigned i = 0; i < n; i++) {
        numbered_key(&k, i);
        kept += decision_cache_get(c, 7, &k, &out) && out.allowed;
    }
    return kept;
}

/* The size follows what the caller expects to keep hot, within bounds. */
static void size_unit_checks(void)
{
    fx_say("the cache is sized for the hot keys it is asked for: 3,000 requests fit in 4,096 "
           "entries, not in 1,024");
    CHECK(decision_cache_slots_for(0) == DECISION_CACHE_MIN_SLOTS);
    CHECK(decision_cache_slots_for(3000) == 4096);
    CHECK(decision_cache_slots_for(4096) == 4096);
    CHECK(decision_cache_slots_for((size_t)1 << 40) == DECISION_CACHE_MAX_SLOTS);
    decision_cache *big = decision_cache_new(3000), *small = decision_cache_new(0);
    REQUIRE(big != NULL && small != NULL);
    CHECK(decision_cache_slots(big) == 4096 && decision_cache_slots(small) == 1024);
    unsigned big_kept = hits_of_numbered(big, 3000), small_kept = hits_of_numbered(small, 3000);
    fx_say("kept of 3,000: %u in 4,096 entries, %u in 1,024", big_kept, small_kept);
    /* Sets receive ~2.9 requests each, Poisson-distributed: a set holds four, so about 300 of
     * 3,000 fall out (expected 2,698 kept); 2,600 leaves room for chance. */
    CHECK(big_kept >= 2600);
    CHECK(small_kept <= 1024);
    decision_cache_free(big);
    decision_cache_free(small);
}

int main(void)
{
    key_unit_checks();
    set_unit_checks();
    size_unit_checks();

    char *policy_path = write_policy(true, false);
    char *cfg = fx_config("decision-cache.yaml", NULL, NULL, policy_path);
    svc = fx_open(cfg);
    p11kms_principal *admin = fx_principal("unix:user:admin1");
    p11kms_principal *app1 = fx_principal("unix:user:app1");
    p11kms_principal *app2 = fx_principal("unix:user:app2");
    p11kms_context *t1 = fx_ctx("tenant", "t1", NULL);
    p11kms_context *t2 = fx_ctx("tenant", "t2", NULL);
    char one[P11KMS_KEY_ID_LEN + 1], two[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, admin, NULL, one);
    fx_create_key(svc, admin, NULL, two);
    CHECK_OK(p11kms_create_alias(svc, admin, "alias/app-one", one, &e), &e);

    fx_say("the same request twice: the second decision comes from the cache");
    CHECK_OK(encrypt_as(app1, one, t1), &e);
    uint64_t h0 = hits(), m0 = misses();
    CHECK_OK(encrypt_as(app1, one, t1), &e);
    CHECK(hits() == h0 + 1 && misses() == m0);

    fx_say("another context misses the cache, and is denied as the policy says");
    CHECK_ERR(encrypt_as(app1, one, t2), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(misses() == m0 + 1);
    CHECK_ERR(encrypt_as(app1, one, t2), P11KMS_E_ACCESS_DENIED, &e); /* a cached denial */
    CHECK(hits() == h0 + 2);

    fx_say("another principal and another key miss the cache too");
    uint64_t m1 = misses();
    CHECK_ERR(encrypt_as(app2, one, t1), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(encrypt_as(app1, two, t1), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(misses() == m1 + 2);

    fx_say("a reload that allows t2: the cached denial is not used");
    free(write_policy(true, true));
    CHECK_OK(p11kms_reload_policy(svc, &e), &e);
    uint64_t m2 = misses();
    CHECK_OK(encrypt_as(app1, one, t2), &e);
    CHECK(misses() == m2 + 1);

    fx_say("a reload that no longer allows app1: the cached allow is not used");
    free(write_policy(false, true));
    CHECK_OK(p11kms_reload_policy(svc, &e), &e);
    CHECK_ERR(encrypt_as(app1, one, t1), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(encrypt_as(app1, one, t2), P11KMS_E_ACCESS_DENIED, &e);

    fx_say("a failed reload keeps the policy and its cached decisions");
    free(fx_write_file("policy.yaml", "version: 1\nstatements: [\n"));
    CHECK(p11kms_reload_policy(svc, &e) != P11KMS_OK);
    uint64_t h3 = hits();
    CHECK_ERR(encrypt_as(app1, one, t1), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(hits() == h3 + 1);

    p11kms_context_free(t1);
    p11kms_context_free(t2);
    p11kms_principal_free(admin);
    p11kms_principal_free(app1);
    p11kms_principal_free(app2);
    p11kms_close(svc);
    free(cfg);
    free(policy_path);
    return check_finish("provider-decision-cache-test");
}
