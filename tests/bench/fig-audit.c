#include "config.h"

/* Figure 8: Encrypt 32 B with the audit trail on (one record per request, hash-chained, sealed
 * per batch with the token's HMAC key, fsync before the answer) against the same Encrypt with
 * the audit trail off, on the same token and key, 1 and --threads threads. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "bench.h"

#define PT_LEN 32

typedef struct audit_fix {
    bench_env *env;
    p11kms *svc;
    uint8_t pt[PT_LEN];
} audit_fix;

static void op_encrypt(void *arg)
{
    audit_fix *x = arg;
    p11kms_result r;
    p11kms_error e = {0};
    p11kms_err rc;
    do
        rc = p11kms_encrypt(x->svc, x->env->user, x->env->main_id, x->env->ctx, x->pt, PT_LEN, &r,
                            &e);
    while (bench_retry(rc, &e));
    bench_check(rc, &e, "p11kms_encrypt");
    p11kms_result_free(&r);
}

/* The main configuration plus an audit section writing into the work directory. */
static void audit_config(const bench_env *env, bench_token *t)
{
    *t = env->main;
    snprintf(t->config, sizeof(t->config), "%s/main-audit.yaml", env->dir);
    FILE *in = fopen(env->main.config, "r"), *out = fopen(t->config, "w");
    if (in == NULL || out == NULL)
        bench_die("cannot write %s", t->config);
    char line[1024];
    while (fgets(line, sizeof(line), in) != NULL)
        fputs(line, out);
    /* BENCH_AUDIT_DIR puts the log elsewhere (e.g. a tmpfs, to separate the cost of fsync). */
    const char *dir = getenv("BENCH_AUDIT_DIR");
    fprintf(out, "audit:\n  file: %s/audit-%ld.log\n  max-size: 0\n", dir ? dir : env->dir,
            (long)getpid());
    fclose(in);
    if (fclose(out) != 0)
        bench_die("cannot write %s", t->config);
}

void figure_audit(bench_env *env, const bench_opts *o, bench_results *r)
{
    if (!bench_selected(o, "8"))
        return;
    audit_fix off = {.env = env, .svc = env_open(&env->main)};
    env_main_key(env, off.svc);
    bench_token audited;
    audit_config(env, &audited);
    audit_fix on = {.env = env, .svc = env_open(&audited)};
    if (RAND_bytes(off.pt, PT_LEN) != 1)
        bench_die("RAND_bytes failed");
    memcpy(on.pt, off.pt, PT_LEN);

    bench_side a = {.label = "p11kms_encrypt, audit on", .op = op_encrypt, .arg = &on};
    bench_side b = {.label = "p11kms_encrypt, audit off", .op = op_encrypt, .arg = &off};
    unsigned counts[2] = {1, o->threads};
    for (int i = 0; i < (o->threads > 1 ? 2 : 1); i++) {
        figure *f = results_add(r, i == 0 ? "8a" : "8b");
        snprintf(f->title, sizeof(f->title), "Encrypt 32 B, audit trail on vs off");
        snprintf(f->a_label, sizeof(f->a_label),
                 "p11kms_encrypt with audit.file (record, chain, HMAC seal per batch, fsync)");
        snprintf(f->b_label, sizeof(f->b_label), "p11kms_encrypt without audit section");
        f->goal = 0.9;
        bench_compare(f, &a, &b, counts[i], o);
    }
    p11kms_close(on.svc);
    p11kms_close(off.svc);
}
