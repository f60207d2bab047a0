#include "config.h"

/* The scale figures (issue 9), per store: each on a fresh token of its own, p11kms against the
 * bare token at the same object count, in one run.
 *   create   p11kms_create_key per key vs bare C_GenerateKey of a key version's attributes,
 *            interleaved in blocks so both sides see the same number of objects
 *   maintain p11kms_maintain at a quarter, half and all of the keys: time per key
 *   open     p11kms_open + p11kms_close vs p11-kit load + C_Initialize + C_Login + C_Finalize
 *   list     p11kms_list_keys of all keys
 *   first    first use of every key (p11kms_encrypt) vs bare C_FindObjects by CKA_ID
 *   encrypt  p11kms_encrypt with a random key of all vs always one key */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct scale_fix {
    bench_env *env;
    p11kms *svc;
    char (*ids)[P11KMS_KEY_ID_LEN + 1];
    unsigned n;
    uint64_t rng;
    uint8_t pt[32];
} scale_fix;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void encrypt_key(scale_fix *x, const char *id)
{
    p11kms_result r;
    p11kms_error e = {0};
    p11kms_err rc;
    do
        rc = p11kms_encrypt(x->svc, x->env->user, id, x->env->ctx, x->pt, sizeof(x->pt), &r, &e);
    while (bench_retry(rc, &e));
    bench_check(rc, &e, "p11kms_encrypt");
    p11kms_result_free(&r);
}

static void op_random(void *arg)
{
    scale_fix *x = arg;
    encrypt_key(x, x->ids[next_rand(&x->rng) % x->n]);
}

static void op_one(void *arg)
{
    scale_fix *x = arg;
    encrypt_key(x, x->ids[0]);
}

static int count_key(const char *key_id, const char *arn, void *arg)
{
    (void)key_id;
    (void)arn;
    (*(unsigned *)arg)++;
    return 0;
}

static void count_line(const char *line, void *arg)
{
    (void)line;
    (*(unsigned *)arg)++;
}

static bare_token *login_bare(const bench_token *t, const bench_env *env)
{
    return bare_login_args(t->module, t->module_args[0] != '\0' ? t->module_args : NULL,
                           t->token_label, env->pin);
}

static double ms(double seconds)
{
    return seconds * 1e3;
}

static void scale_store(bench_env *env, const bench_opts *o, const char *name, const char *store)
{
    bench_token t;
    char label[33];
    snprintf(label, sizeof(label), "p11kms-scale-%s", name);
    env_add_token(env, o, &t, label, store);
    unsigned n = o->scale;
    scale_fix x = {.env = env, .n = n, .rng = 0x9e3779b97f4a7c15ull};
    memset(x.pt, 0x5a, sizeof(x.pt));
    x.ids = calloc(n, sizeof(*x.ids));
    if (x.ids == NULL)
        bench_die("out of memory");
    printf("\nscale, store %s, %u keys, token %s (%s)\n", name, n, label,
           o->nss ? "NSS softokn" : "SoftHSM");
    fflush(stdout);

    x.svc = env_open(&t);
    bare_token *bare = login_bare(&t, env);
    unsigned block = n >= 20 ? n / 20 : 1;
    unsigned checkpoints[3] = {n / 4, n / 2, n};
    unsigned made = 0;
    printf("  %-10s %12s %14s %8s   %s\n", "keys", "create-key", "C_GenerateKey", "ratio",
           "(ms per key in the block; ratio = bare time / p11kms time, goal >= 0.90)");
    while (made < n) {
        unsigned count = n - made < block ? n - made : block;
        unsigned from = made;
        double start = bench_now();
        for (unsigned i = 0; i < count; i++)
            env_create_key(x.svc, env, x.ids[made++]);
        double a = bench_now() - start;
        double b = bare_generate_keys(bare, count);
        printf("  %4u-%-5u %9.2f ms %11.2f ms %7.3fx\n", from + 1, made, ms(a) / count,
               ms(b) / count, b / a);
        for (unsigned c = 0; c < 3; c++) {
            if (checkpoints[c] == 0 || made != checkpoints[c] ||
                (c > 0 && checkpoints[c - 1] == made))
                continue;
            unsigned lines = 0;
            p11kms_error e = {0};
            double m0 = bench_now();
            bench_check(p11kms_maintain(x.svc, env->admin, count_line, &lines, &e), &e,
                        "p11kms_maintain");
            double m = bench_now() - m0;
            printf("  maintain at %u keys: %.2f s, %.3f ms per key (%u lines reported)\n", made, m,
                   ms(m) / made, lines);
        }
        fflush(stdout);
    }

    /* Start-up: nothing else holds the module, so both sides pay C_Initialize. */
    p11kms_close(x.svc);
    bare_close(bare);
    double open_a[BENCH_MAX_ROUNDS], open_b[BENCH_MAX_ROUNDS];
    unsigned rounds = o->rounds;
    for (unsigned r = 0; r < rounds; r++) {
        double s0 = bench_now();
        p11kms_close(env_open(&t));
        open_a[r] = bench_now() - s0;
        s0 = bench_now();
        bare_close(login_bare(&t, env));
        open_b[r] = bench_now() - s0;
    }
    double oa = bench_median(open_a, rounds), ob = bench_median(open_b, rounds);
    printf("  open: p11kms_open+close %.2f ms, bare load+C_Initialize+C_Login+C_Finalize %.2f ms:"
           " %.2fx the time (goal <= 1.20x; median of %u)\n",
           ms(oa), ms(ob), oa / ob, rounds);

    x.svc = env_open(&t);
    bare = login_bare(&t, env);
    unsigned listed = 0;
    p11kms_error e = {0};
    double s0 = bench_now();
    bench_check(p11kms_list_keys(x.svc, env->admin, count_key, &listed, &e), &e,
                "p11kms_list_keys");
    double list = bench_now() - s0;
    if (listed != n)
        bench_die("list-keys listed %u keys, %u were created", listed, n);
    printf("  list-keys of %u keys: %.1f ms (%.3f ms per key)\n", n, ms(list), ms(list) / n);

    s0 = bench_now();
    for (unsigned i = 0; i < n; i++)
        encrypt_key(&x, x.ids[i]);
    double first = (bench_now() - s0) / n;
    unsigned sample = n < 20 ? n : 20;
    s0 = bench_now();
    for (unsigned i = 0; i < sample; i++)
        bare_find_key(bare, x.ids[(i * 7919u) % n]);
    double find = (bench_now() - s0) / sample;
    printf("  first use of each key (encrypt): %.2f ms per key; bare C_FindObjects by CKA_ID "
           "among %u keys: %.2f ms\n",
           ms(first), n, ms(find));
    bare_close(bare);

    double ratio[BENCH_MAX_ROUNDS], ra[BENCH_MAX_ROUNDS], rb[BENCH_MAX_ROUNDS];
    bench_side a = {.label = "random key", .op = op_random, .arg = &x};
    bench_side b = {.label = "one key", .op = op_one, .arg = &x};
    uint64_t max_ops = o->smoke ? o->smoke_ops : 0;
    for (unsigned r = 0; r < rounds; r++) {
        side_run sa = bench_run_side(&a, 1, o->duration, max_ops);
        side_run sb = bench_run_side(&b, 1, o->duration, max_ops);
        ra[r] = sa.ops / sa.seconds;
        rb[r] = sb.ops / sb.seconds;
        ratio[r] = ra[r] / rb[r];
    }
    printf("  encrypt 32 B, random key of %u: %.0f/s, one key: %.0f/s: %.3fx (goal >= 0.95x; "
           "median of %u)\n",
           n, bench_median(ra, rounds), bench_median(rb, rounds), bench_median(ratio, rounds),
           rounds);
    /* The token's own ceiling for that ratio: the same with bare session copies. */
    static figure ceiling;
    memset(&ceiling, 0, sizeof(ceiling));
    snprintf(ceiling.id, sizeof(ceiling.id), "scale-b");
    bare = login_bare(&t, env);
    unsigned copied = bench_bare_random_copy(bare, n, o, &ceiling);
    bare_close(bare);
    printf("  bare ceiling: C_EncryptInit+C_Encrypt 32 B, a random session copy of %u: %.0f/s, "
           "always one: %.0f/s: %.3fx (median of %u)\n",
           copied, ceiling.median_a, ceiling.median_b, ceiling.median_ratio, ceiling.rounds);
    p11kms_close(x.svc);
    free(x.ids);
    fflush(stdout);
}

void figure_scale(bench_env *env, const bench_opts *o)
{
    const char *stores = o->scale_stores != NULL ? o->scale_stores : "sqlite,postgresql";
    if (strstr(stores, "sqlite") != NULL)
        scale_store(env, o, "sqlite", NULL);
    if (strstr(stores, "postgresql") == NULL)
        return;
    if (o->pg_store != NULL)
        scale_store(env, o, "postgresql", o->pg_store);
    else if (o->scale_stores != NULL)
        bench_die("--scale-stores names postgresql: give its database with --pg CONNINFO");
    else
        printf("\nscale, store postgresql: not measured (no --pg CONNINFO)\n");
}
