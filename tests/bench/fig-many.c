#include "config.h"

/* Figure 5: p11kms_encrypt with a random key out of many against the same with one key, both on
 * the large token in one service. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void env_fill_many(bench_env *env, const bench_opts *o, bench_results *r, p11kms *svc)
{
    if (env->many_ids != NULL)
        return;
    p11kms *own = svc != NULL ? NULL : env_open(&env->many);
    p11kms *s = svc != NULL ? svc : own;
    env->many_ids = calloc(o->keys, sizeof(*env->many_ids));
    if (env->many_ids == NULL)
        bench_die("out of memory");
    fprintf(stderr, "creating %u keys in token %s (budget %.0f s)\n", o->keys, env->many.label,
            o->create_budget);
    double *done = calloc(o->keys, sizeof(*done)); /* when each key was created */
    if (done == NULL)
        bench_die("out of memory");
    double start = bench_now(), now = start;
    for (unsigned i = 0; i < o->keys; i++) {
        env_create_key(s, env, env->many_ids[i]);
        env->many_count = i + 1;
        done[i] = now = bench_now();
        if (env->many_count % 250 == 0)
            fprintf(stderr, "  %u keys, %.1f s\n", env->many_count, now - start);
        if (now - start > o->create_budget && env->many_count < o->keys) {
            r->create_budget_hit = true;
            fprintf(stderr, "  creation budget of %.0f s spent: continuing with %u keys, not %u\n",
                    o->create_budget, env->many_count, o->keys);
            break;
        }
    }
    /* Cost per key at the start and at the end: growth with the token's size shows here. */
    unsigned n = env->many_count, tenth = n >= 10 ? n / 10 : 1;
    r->create_ms_first = (done[tenth - 1] - start) * 1e3 / tenth;
    r->create_ms_last = (done[n - 1] - (n > tenth ? done[n - 1 - tenth] : start)) * 1e3 / tenth;
    free(done);
    r->create_seconds = now - start;
    r->keys_created = env->many_count;
    fprintf(stderr, "  %u keys created in %.1f s\n", env->many_count, r->create_seconds);
    p11kms_close(own);
}

typedef struct many_fix {
    bench_env *env;
    p11kms *svc;
    uint8_t pt[32];
} many_fix;

typedef struct many_worker {
    many_fix *x;
    uint64_t rng;
    unsigned n; /* keys to pick from */
} many_worker;

static void *setup(many_fix *x, unsigned thread, unsigned n)
{
    many_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        bench_die("out of memory");
    w->x = x;
    w->rng = 0x9e3779b97f4a7c15ull * (thread + 1);
    w->n = n;
    return w;
}

static void *setup_many(void *arg, unsigned thread)
{
    many_fix *x = arg;
    return setup(x, thread, x->env->many_count);
}

static void *setup_one(void *arg, unsigned thread)
{
    return setup(arg, thread, 1);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void encrypt_with(many_fix *x, const char *key_id)
{
    p11kms_result r;
    p11kms_error e = {0};
    p11kms_err rc;
    do
        rc =
            p11kms_encrypt(x->svc, x->env->user, key_id, x->env->ctx, x->pt, sizeof(x->pt), &r, &e);
    while (bench_retry(rc, &e));
    bench_check(rc, &e, "p11kms_encrypt");
    p11kms_result_free(&r);
}

static void op_encrypt(void *state)
{
    many_worker *w = state;
    unsigned i = w->n > 1 ? (unsigned)(xorshift(&w->rng) % w->n) : 0;
    encrypt_with(w->x, w->x->env->many_ids[i]);
}

void figure_many_keys(bench_env *env, const bench_opts *o, bench_results *r)
{
    if (!bench_selected(o, "5"))
        return;
    many_fix x = {.env = env, .svc = env_open(&env->many)};
    memset(x.pt, 0x5a, sizeof(x.pt));
    env_fill_many(env, o, r, x.svc);

    /* First use of each key reserves a batch of encryptions in its record (a token write); the
     * figure is about the steady state, so that cost is measured here, once per key. */
    double start = bench_now();
    for (unsigned i = 0; i < env->many_count; i++)
        encrypt_with(&x, env->many_ids[i]);
    r->warm_seconds = bench_now() - start;
    fprintf(stderr, "first use of %u keys: %.2f s\n", env->many_count, r->warm_seconds);

    figure *f = results_add(r, "5");
    snprintf(f->title, sizeof(f->title), "Encrypt 32 B with %u keys in the token%s",
             env->many_count, r->create_budget_hit ? " (BUDGET HIT)" : "");
    snprintf(f->a_label, sizeof(f->a_label), "p11kms_encrypt, a random key of %u per operation",
             env->many_count);
    snprintf(f->b_label, sizeof(f->b_label), "p11kms_encrypt, always the same key (same service)");
    f->goal = 0.95;
    bench_side a = {
        .label = "many keys", .setup = setup_many, .op = op_encrypt, .teardown = free, .arg = &x};
    bench_side b = {
        .label = "one key", .setup = setup_one, .op = op_encrypt, .teardown = free, .arg = &x};
    bench_compare(f, &a, &b, 1, o);
    double per_key = 0;
    for (unsigned i = 0; i < f->rounds; i++)
        per_key += f->a_ops[i] * o->duration / env->many_count;
    /* p11kms reserves encryptions per key in batches (64 first, then keys.count-batch), each
     * reservation a write of the key's record to the token. */
    snprintf(f->note, sizeof(f->note),
             "after one warm-up encryption per key, side A made %.1f encryptions per key; first "
             "use cost %.2f ms per key",
             per_key, r->warm_seconds * 1e3 / env->many_count);
    p11kms_close(x.svc);
}
