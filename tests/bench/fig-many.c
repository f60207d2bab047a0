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

/* Figure 9: the first operation on a cold key, in rounds: side A is p11kms_encrypt on keys this
 * process never used (the record read, the session copy, the first reservation of encryptions),
 * side B the first use of other cold keys by a bare application that keeps session copies
 * (C_FindObjects by CKA_ID, C_CopyObject, C_EncryptInit + C_Encrypt). Keys [0, *used) are spent:
 * even ones by A, odd ones by B. */
static void figure_cold_key(bench_env *env, const bench_opts *o, bench_results *r, many_fix *x,
                            unsigned *used)
{
    unsigned n = env->many_count, rounds = o->rounds;
    if (2 * rounds > n)
        rounds = n / 2;
    *used = 0;
    if (rounds == 0)
        return;
    unsigned per = n / (2 * rounds);
    if (per > 20)
        per = 20;
    figure *f = results_add(r, "9");
    f->kind = RATIO_TIME;
    f->max_a_ms = 2;
    snprintf(f->title, sizeof(f->title), "First Encrypt on a cold key, %u keys in the token", n);
    snprintf(f->a_label, sizeof(f->a_label),
             "p11kms_encrypt 32 B on a key not used yet by the process (%u keys per round)", per);
    snprintf(f->b_label, sizeof(f->b_label),
             "bare C_FindObjects by CKA_ID + C_CopyObject (CKA_TOKEN=FALSE) + C_EncryptInit + "
             "C_Encrypt, other cold keys");
    fprintf(stderr, "figure 9: %s (%u rounds of %u keys per side)\n", f->title, rounds, per);
    bare_token *bare = bare_login(env->module, env->many.label, env->pin);
    bare_session *s = bare_session_open(bare);
    const char *const k[] = {"aws:redshift:arn", "aws:redshift:createtime"};
    const char *const v[] = {"arn:aws:redshift:us-east-1:123456789012:cluster:bench-cluster",
                             "20240115T093000Z"};
    uint8_t header[23] = {0x01}, aad[512], iv[12] = {0x9c}, out[48];
    size_t aad_len = bench_aad(header, sizeof(header), k, v, 2, aad, sizeof(aad));
    for (unsigned round = 0; round < rounds; round++) {
        unsigned first = round * 2 * per;
        double c0 = bench_thread_cpu(), t0 = bench_now();
        for (unsigned i = 0; i < per; i++)
            encrypt_with(x, env->many_ids[first + 2 * i]);
        double c1 = bench_thread_cpu(), t1 = bench_now();
        for (unsigned i = 0; i < per; i++) {
            iv[11]++;
            bare_cold_encrypt(s, env->many_ids[first + 2 * i + 1], iv, aad, aad_len, x->pt,
                              sizeof(x->pt), out);
        }
        double c2 = bench_thread_cpu(), t2 = bench_now();
        bench_set_round(f, round, t1 - t0, c1 - c0, t2 - t1, c2 - c1, per);
    }
    *used = rounds * 2 * per;
    snprintf(f->note, sizeof(f->note),
             "A %.2f ms per cold key (goal under 2 ms on SoftHSM), B %.2f ms; medians of %u "
             "rounds of %u keys each",
             1e3 / f->median_a, 1e3 / f->median_b, rounds, per);
    bare_session_close(s);
    bare_close(bare);
}

/* Figure 5-b, the bare ceiling of figure 5: the same random-key-of-N against one-key loop without
 * p11kms, on session copies of the token's keys (what p11kms uses with session copies). */
typedef struct bare_many {
    bare_token *t;
    unsigned n;
    uint8_t aad[512];
    size_t aad_len;
} bare_many;

typedef struct bare_many_worker {
    bare_many *m;
    bare_session *s;
    uint64_t rng;
    unsigned n;
    uint8_t iv[12], pt[32], out[48];
} bare_many_worker;

static void *bare_many_setup(bare_many *m, unsigned thread, unsigned n)
{
    bare_many_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        bench_die("out of memory");
    w->m = m;
    w->s = bare_session_open(m->t);
    w->rng = 0x9e3779b97f4a7c15ull * (thread + 1);
    w->n = n;
    w->iv[0] = (uint8_t)thread;
    w->iv[1] = n > 1 ? 0x5b : 0x51;
    return w;
}

static void *bare_setup_many(void *arg, unsigned thread)
{
    bare_many *m = arg;
    return bare_many_setup(m, thread, m->n);
}

static void *bare_setup_one(void *arg, unsigned thread)
{
    return bare_many_setup(arg, thread, 1);
}

static void bare_many_teardown(void *state)
{
    bare_many_worker *w = state;
    bare_session_close(w->s);
    free(w);
}

static void op_bare_many(void *state)
{
    bare_many_worker *w = state;
    unsigned i = w->n > 1 ? (unsigned)(xorshift(&w->rng) % w->n) : 0;
    for (int b = 11; b >= 4; b--)
        if (++w->iv[b] != 0)
            break;
    bare_encrypt_copy(w->s, i, w->iv, w->m->aad, w->m->aad_len, w->pt, sizeof(w->pt), w->out);
}

unsigned bench_bare_random_copy(bare_token *t, unsigned max, const bench_opts *o, figure *f)
{
    bare_many m = {.t = t};
    m.n = bare_copy_all(m.t, max);
    if (m.n == 0)
        bench_die("bare token: no AES key to copy");
    const char *const k[] = {"aws:redshift:arn", "aws:redshift:createtime"};
    const char *const v[] = {"arn:aws:redshift:us-east-1:123456789012:cluster:bench-cluster",
                             "20240115T093000Z"};
    uint8_t header[23] = {0x01};
    m.aad_len = bench_aad(header, sizeof(header), k, v, 2, m.aad, sizeof(m.aad));
    snprintf(f->title, sizeof(f->title), "bare: random session copy of %u vs one", m.n);
    snprintf(f->a_label, sizeof(f->a_label),
             "bare C_EncryptInit + C_Encrypt 32 B, a random session copy of %u token keys", m.n);
    snprintf(f->b_label, sizeof(f->b_label), "the same, always the same session copy");
    bench_side a = {.label = "bare many",
                    .setup = bare_setup_many,
                    .op = op_bare_many,
                    .teardown = bare_many_teardown,
                    .arg = &m};
    bench_side b = a;
    b.label = "bare one";
    b.setup = bare_setup_one;
    bench_compare(f, &a, &b, 1, o);
    return m.n;
}

static void figure_many_bare(bench_env *env, const bench_opts *o, bench_results *r)
{
    bare_token *t = bare_login(env->module, env->many.label, env->pin);
    figure *f = results_add(r, "5-b");
    f->goal = 0; /* the ceiling of figure 5 on this token, reported */
    bench_bare_random_copy(t, env->many_count, o, f);
    bare_close(t);
}

void figure_many_keys(bench_env *env, const bench_opts *o, bench_results *r)
{
    bool want5 = bench_selected(o, "5"), want9 = bench_selected(o, "9");
    if (!want5 && !want9)
        return;
    many_fix x = {.env = env, .svc = env_open(&env->many)};
    memset(x.pt, 0x5a, sizeof(x.pt));
    env_fill_many(env, o, r, x.svc);
    unsigned used = 0;
    if (want9)
        figure_cold_key(env, o, r, &x, &used);
    if (!want5) {
        p11kms_close(x.svc);
        return;
    }

    /* First use of each key reserves a batch of encryptions in its record (a token write); the
     * figure is about the steady state, so that cost is paid here, once per key (and timed on
     * the keys figure 9 did not use). */
    for (unsigned i = 1; i < used; i += 2)
        encrypt_with(&x, env->many_ids[i]);
    double start = bench_now();
    for (unsigned i = used; i < env->many_count; i++)
        encrypt_with(&x, env->many_ids[i]);
    if (used < env->many_count) {
        r->warm_seconds = bench_now() - start;
        r->warm_keys = env->many_count - used;
        fprintf(stderr, "first use of %u keys: %.2f s\n", env->many_count - used, r->warm_seconds);
    }

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
             "after one warm-up encryption per key, side A made %.1f encryptions per key", per_key);
    p11kms_close(x.svc);
    figure_many_bare(env, o, r);
}
