#include "config.h"

/* Figure 6: one policy decision with a 1,000-statement policy against the same decision with a
 * 10-statement policy. Both policies have the same few pattern statements; the rest each select
 * one key, by id or by alias. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "policy/policy.h"

#define FIXED_STATEMENTS 5 /* one global statement and four patterns */
#define SMALL 10
#define LARGE 1000
#define DECIDING 4 /* the statement (present in both) that allows the measured request */
#define POLICY_BATCH 256

static void key_id_of(unsigned i, char out[37])
{
    snprintf(out, 37, "%08x-0000-4000-8000-%012x", i, i);
}

typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) P11KMS_PRINTF(2, 3);

static void put(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            bench_die("formatting the policy failed");
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *grown = realloc(t->s, cap);
        if (grown == NULL)
            bench_die("out of memory");
        t->s = grown;
        t->cap = cap;
    }
}

/* statements: the total count, FIXED_STATEMENTS of which are the same in every policy. */
static char *policy_text(unsigned statements, size_t *len)
{
    text t = {malloc(4096), 0, 4096};
    if (t.s == NULL)
        bench_die("out of memory");
    put(&t, "version: 1\n"
            "groups:\n"
            "  key-admins: [unix:user:admin-0, unix:user:admin-1, unix:group:kms-admins]\n"
            "  revoked: [\"unix:user:revoked-*\"]\n"
            "global:\n"
            "  - sid: admins-create\n"
            "    effect: allow\n"
            "    principals: [group:key-admins]\n"
            "    actions: [create-key, list-keys, list-aliases]\n"
            "statements:\n"
            "  - sid: admins-manage\n"
            "    effect: allow\n"
            "    principals: [group:key-admins]\n"
            "    keys: [\"*\"]\n"
            "    actions: [describe-key, enable-key, disable-key, schedule-key-deletion]\n"
            "  - sid: revoked-deny\n"
            "    effect: deny\n"
            "    principals: [group:revoked]\n"
            "    keys: [\"*\"]\n"
            "    actions: [\"*\"]\n"
            "  - sid: teams\n"
            "    effect: allow\n"
            "    principals: [\"unix:user:team-*\"]\n"
            "    keys: [\"alias/team-*\"]\n"
            "    actions: [encrypt, decrypt]\n"
            "  - sid: etl\n"
            "    effect: allow\n"
            "    principals: [unix:group:etl]\n"
            "    keys: [\"alias/etl/*\"]\n"
            "    actions: [encrypt, decrypt, generate-data-key]\n"
            "    conditions:\n"
            "      context-keys-any: [job, pipeline]\n");
    for (unsigned i = 0; i + FIXED_STATEMENTS < statements; i++) {
        char id[37];
        key_id_of(i, id);
        put(&t,
            "  - sid: app-%u\n"
            "    effect: allow\n"
            "    principals: [unix:user:app-%u]\n",
            i, i);
        if (i % 2 == 0)
            put(&t, "    keys: [%s]\n", id);
        else
            put(&t, "    keys: [alias/app-%u]\n", i);
        put(&t, "    actions: [encrypt, decrypt, generate-data-key]\n"
                "    conditions:\n"
                "      context-keys-only: [aws:redshift:arn, aws:redshift:createtime]\n");
    }
    *len = t.len;
    return t.s;
}

static void print_error(const char *line, void *arg)
{
    (void)arg;
    fprintf(stderr, "  %s\n", line);
}

typedef struct policy_fix {
    policy *pol;
    policy_principals who;
    char key_id[37];
    const char *aliases[1];
    policy_context ctx;
} policy_fix;

static const char *const who_names[] = {"unix:user:app-4", "unix:uid:1004", "unix:group:staff"};
static const policy_context_pair ctx_pairs[] = {
    {"aws:redshift:arn", "arn:aws:redshift:us-east-1:123456789012:cluster:bench-cluster"},
    {"aws:redshift:createtime", "20240115T093000Z"}};

static void op_evaluate(void *arg)
{
    policy_fix *x = arg;
    policy_decision d;
    p11kms_error e = {0};
    bench_check(policy_evaluate(x->pol, &x->who, POLICY_ACTION_ENCRYPT, x->key_id, x->aliases, 1,
                                &x->ctx, NULL, &d, &e),
                &e, "policy_evaluate");
    if (!d.allowed)
        bench_die("policy_evaluate denied the benchmark request: %s", d.explanation);
}

static double load(policy_fix *x, unsigned statements)
{
    size_t len;
    char *yaml = policy_text(statements, &len);
    char name[64];
    snprintf(name, sizeof(name), "bench-policy-%u.yaml", statements);
    p11kms_error e = {0};
    double start = bench_now();
    bench_check(policy_load_buffer(name, yaml, len, print_error, NULL, &x->pol, &e), &e,
                "policy_load_buffer");
    double seconds = bench_now() - start;
    free(yaml);
    if (policy_statement_count(x->pol) != statements)
        bench_die("the generated policy has %zu statements, expected %u",
                  policy_statement_count(x->pol), statements);
    x->who = (policy_principals){who_names, 3};
    key_id_of(DECIDING, x->key_id);
    x->aliases[0] = "alias/orders";
    x->ctx = (policy_context){ctx_pairs, 2};
    return seconds;
}

void figure_policy(const bench_opts *o, bench_results *r)
{
    if (!bench_selected(o, "6"))
        return;
    policy_fix large, small;
    double t_large = load(&large, LARGE), t_small = load(&small, SMALL);
    figure *f = results_add(r, "6");
    f->kind = RATIO_TIME;
    f->goal = 2.0;
    snprintf(f->title, sizeof(f->title), "Policy decision: %d statements vs %d", LARGE, SMALL);
    snprintf(f->a_label, sizeof(f->a_label), "policy_evaluate, %d statements", LARGE);
    snprintf(f->b_label, sizeof(f->b_label), "policy_evaluate, %d statements", SMALL);
    snprintf(f->note, sizeof(f->note),
             "policy_load_buffer: %.1f ms for %d statements, %.2f ms for %d", t_large * 1e3, LARGE,
             t_small * 1e3, SMALL);
    bench_side a = {.label = "large", .op = op_evaluate, .arg = &large, .batch = POLICY_BATCH};
    bench_side b = {.label = "small", .op = op_evaluate, .arg = &small, .batch = POLICY_BATCH};
    bench_compare(f, &a, &b, 1, o);
    policy_free(large.pol);
    policy_free(small.pol);
}
