#include "config.h"

/* Figure 7: what a process pays to start: p11kms_open (configuration, module, token login,
 * policy load, journal recovery) and p11kms_close, with many keys in the token against one. */

#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

static void op_open_close(void *arg)
{
    p11kms_close(env_open(arg));
}

void figure_startup(bench_env *env, const bench_opts *o, bench_results *r)
{
    if (!bench_selected(o, "7"))
        return;
    env_main_key(env, NULL);
    env_fill_many(env, o, r, NULL);
    figure *f = results_add(r, "7");
    f->kind = RATIO_TIME;
    f->goal = 0; /* report only */
    snprintf(f->title, sizeof(f->title), "Start-up: p11kms_open + p11kms_close, %u keys vs 1",
             env->many_count);
    snprintf(f->a_label, sizeof(f->a_label), "open + close, token with %u keys", env->many_count);
    snprintf(f->b_label, sizeof(f->b_label), "open + close, token with 1 key");
    bench_side a = {.label = "many", .op = op_open_close, .arg = &env->many};
    bench_side b = {.label = "one", .op = op_open_close, .arg = &env->main};
    bench_compare(f, &a, &b, 1, o);
    r->open_many_ms = 1e3 / f->median_a;
    r->open_one_ms = 1e3 / f->median_b;
}
