#include "config.h"

/* Figure 8: Encrypt 32 B with the audit trail on (one record per request, hash-chained, sealed
 * per batch with the token's HMAC key, fsync before the answer) against the same Encrypt with
 * the audit trail off, on the same token and key, 1 and --threads threads. */

#include <errno.h>
#include <fcntl.h>
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

/* The bare baseline of the log's durability, without p11kms: append one line of a record's size
 * to a file in the log's directory and fsync it, as the writer does once per batch. */
void op_write_fsync(void *arg)
{
    bare_sync *x = arg;
    if (write(x->fd, x->line, sizeof(x->line)) != (ssize_t)sizeof(x->line) || fsync(x->fd) != 0)
        bench_die("bare write+fsync: %s", strerror(errno));
}

/* The main configuration plus an audit section writing into the work directory. */
static void audit_config(const bench_env *env, bench_token *t)
{
    *t = env->main;
    snprintf(t->config, sizeof(t->config), "%s/main-audit.yaml", env->dir);
    /* BENCH_AUDIT_DIR puts the log elsewhere (e.g. a tmpfs, to separate the cost of fsync). */
    const char *dir = getenv("BENCH_AUDIT_DIR");
    char log[700];
    snprintf(log, sizeof(log), "%s/audit-%ld.log", dir ? dir : env->dir, (long)getpid());
    env_derive_config(env, t->config, NULL, log);
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
    /* 8c: what a single caller can reach at best when every answer waits for one fsync. */
    const char *dir = getenv("BENCH_AUDIT_DIR");
    char path[1100];
    snprintf(path, sizeof(path), "%s/bare-fsync-%ld.log", dir ? dir : env->dir, (long)getpid());
    bare_sync bare = {.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0600)};
    if (bare.fd < 0)
        bench_die("%s: %s", path, strerror(errno));
    memset(bare.line, 'x', sizeof(bare.line) - 1);
    bare.line[sizeof(bare.line) - 1] = '\n';
    bench_side c = {.label = "write 600 B + fsync, no p11kms", .op = op_write_fsync, .arg = &bare};
    figure *f = results_add(r, "8c");
    snprintf(f->title, sizeof(f->title), "bare baseline: write+fsync of the log's filesystem");
    snprintf(f->a_label, sizeof(f->a_label), "write 600 B + fsync in the audit log's directory");
    snprintf(f->b_label, sizeof(f->b_label), "p11kms_encrypt without audit section");
    f->goal = 0; /* report only: the ceiling of 8a on this filesystem */
    bench_compare(f, &c, &b, 1, o);
    close(bare.fd);
    unlink(path);
    p11kms_close(on.svc);
    p11kms_close(off.svc);
}
