#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

_Noreturn void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("p11kms-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void bench_check(p11kms_err rc, const p11kms_error *e, const char *what)
{
    if (rc != P11KMS_OK)
        bench_die("%s failed: %s: %s (raised at %s:%d)", what, p11kms_error_class(rc), e->message,
                  e->file ? e->file : "?", e->line);
}

static atomic_ulong retries;

bool bench_retry(p11kms_err rc, const p11kms_error *e)
{
    if (rc != P11KMS_E_INTERNAL || strstr(e->message, "contention") == NULL)
        return false;
    atomic_fetch_add(&retries, 1);
    return true;
}

unsigned long bench_retries(void)
{
    return atomic_load(&retries);
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What every worker of one side run shares. */
typedef struct run_shared {
    const bench_side *side;
    pthread_barrier_t start;
    double deadline; /* written before the barrier, read after it */
    uint64_t max_ops;
} run_shared;

typedef struct worker {
    run_shared *shared;
    unsigned index;
    pthread_t thread;
    uint64_t ops;
    double end;
    double cpu;
} worker;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_thread_cpu(void)
{
    return thread_cpu();
}

static void *work(void *arg)
{
    worker *w = arg;
    run_shared *sh = w->shared;
    const bench_side *side = sh->side;
    void *state = side->setup ? side->setup(side->arg, w->index) : side->arg;
    pthread_barrier_wait(&sh->start);
    pthread_barrier_wait(&sh->start); /* the main thread set the deadline in between */
    uint64_t ops = 0;
    double cpu_start = thread_cpu();
    if (sh->max_ops > 0) {
        while (ops < sh->max_ops) {
            side->op(state);
            ops++;
        }
    } else {
        unsigned batch = side->batch ? side->batch : 1;
        do {
            for (unsigned i = 0; i < batch; i++)
                side->op(state);
            ops += batch;
        } while (bench_now() < sh->deadline);
    }
    w->end = bench_now();
    w->cpu = thread_cpu() - cpu_start;
    w->ops = ops;
    if (side->teardown)
        side->teardown(state);
    return NULL;
}

/* The CPU a side with one thread runs on: the highest CPU this process may use, or -1 with
 * only one. Measured on this 2-vCPU VM, a single thread's operation costs 15 us on one run of
 * a figure and 22 us on the next, depending on where the scheduler put it (rounds alternated
 * between the two, and so did their ratios: 0.59 and 1.25 for the same code); with both sides on
 * the same CPU the ratio is the same in every round. */
int bench_single_thread_cpu(void)
{
    static int cpu = -2;
    if (cpu == -2) {
        cpu_set_t set;
        cpu = -1;
        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 1)
            for (int i = CPU_SETSIZE - 1; i >= 0; i--)
                if (CPU_ISSET(i, &set)) {
                    cpu = i;
                    break;
                }
    }
    return cpu;
}

side_run bench_run_side(const bench_side *side, unsigned threads, double duration, uint64_t max_ops)
{
    run_shared sh = {.side = side, .max_ops = max_ops};
    worker w[BENCH_MAX_THREADS];
    if (threads < 1 || threads > BENCH_MAX_THREADS)
        bench_die("thread count %u out of range 1..%d", threads, BENCH_MAX_THREADS);
    pthread_barrier_init(&sh.start, NULL, threads + 1);
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (worker){.shared = &sh, .index = i};
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        int cpu = threads == 1 ? bench_single_thread_cpu() : -1;
        if (cpu >= 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
        }
        if (pthread_create(&w[i].thread, &attr, work, &w[i]) != 0)
            bench_die("cannot start a worker thread");
        pthread_attr_destroy(&attr);
    }
    pthread_barrier_wait(&sh.start); /* every worker finished its setup */
    double start = bench_now();
    sh.deadline = start + duration;
    pthread_barrier_wait(&sh.start);
    side_run r = {0, 0, 0};
    double end = start;
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(w[i].thread, NULL);
        r.ops += w[i].ops;
        r.cpu_seconds += w[i].cpu;
        if (w[i].end > end)
            end = w[i].end;
    }
    pthread_barrier_destroy(&sh.start);
    r.seconds = end - start;
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *v, unsigned n)
{
    double s[BENCH_MAX_ROUNDS];
    if (n == 0)
        return 0;
    memcpy(s, v, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double ops_per_s(side_run r)
{
    return r.seconds > 0 ? (double)r.ops / r.seconds : 0;
}

/* Round i of f from the runs of its two sides. */
static void record_round(figure *f, unsigned i, side_run ra, side_run rb)
{
    f->a_ops[i] = ops_per_s(ra);
    f->b_ops[i] = ops_per_s(rb);
    /* Both kinds compare time per operation; throughput is its inverse. */
    double ta = 1.0 / f->a_ops[i], tb = 1.0 / f->b_ops[i];
    f->ratio[i] = f->kind == RATIO_THROUGHPUT ? tb / ta : ta / tb;
    f->a_cpu_us[i] = ra.cpu_seconds * 1e6 / (double)ra.ops;
    f->b_cpu_us[i] = rb.cpu_seconds * 1e6 / (double)rb.ops;
    f->cpu_ratio[i] = f->kind == RATIO_THROUGHPUT ? f->b_cpu_us[i] / f->a_cpu_us[i]
                                                  : f->a_cpu_us[i] / f->b_cpu_us[i];
    fprintf(stderr,
            "  %s round %u: A %.0f ops/s (%llu ops, %.2f us CPU/op), B %.0f ops/s (%llu ops, "
            "%.2f us CPU/op), ratio %.3f (CPU %.3f)\n",
            f->id, i + 1, f->a_ops[i], (unsigned long long)ra.ops, f->a_cpu_us[i], f->b_ops[i],
            (unsigned long long)rb.ops, f->b_cpu_us[i], f->ratio[i], f->cpu_ratio[i]);
}

static void finish(figure *f)
{
    f->median_ratio = bench_median(f->ratio, f->rounds);
    f->median_a = bench_median(f->a_ops, f->rounds);
    f->median_b = bench_median(f->b_ops, f->rounds);
    f->median_cpu_ratio = bench_median(f->cpu_ratio, f->rounds);
    f->median_a_cpu_us = bench_median(f->a_cpu_us, f->rounds);
    f->median_b_cpu_us = bench_median(f->b_cpu_us, f->rounds);
}

void bench_compare(figure *f, const bench_side *a, const bench_side *b, unsigned threads,
                   const bench_opts *o)
{
    bench_compare2(f, NULL, a, b, NULL, threads, o);
}

void bench_compare2(figure *f, figure *g, const bench_side *a, const bench_side *b,
                    const bench_side *c, unsigned threads, const bench_opts *o)
{
    uint64_t max_ops = o->smoke ? o->smoke_ops : 0;
    figure *fig[2] = {f, g};
    for (int k = 0; k < (g != NULL ? 2 : 1); k++) {
        fig[k]->threads = threads;
        fig[k]->rounds = o->rounds;
        fprintf(stderr, "figure %s: %s (%u thread%s)\n", fig[k]->id, fig[k]->title, threads,
                threads > 1 ? "s" : "");
    }
    for (unsigned i = 0; i < o->rounds; i++) {
        side_run ra = bench_run_side(a, threads, o->duration, max_ops);
        side_run rb = bench_run_side(b, threads, o->duration, max_ops);
        record_round(f, i, ra, rb);
        if (g != NULL)
            record_round(g, i, ra, bench_run_side(c, threads, o->duration, max_ops));
    }
    finish(f);
    if (g != NULL)
        finish(g);
}

void bench_set_round(figure *f, unsigned i, double a_seconds, double a_cpu, double b_seconds,
                     double b_cpu, uint64_t ops)
{
    if (i >= BENCH_MAX_ROUNDS)
        bench_die("round %u out of range", i);
    record_round(f, i, (side_run){ops, a_seconds, a_cpu}, (side_run){ops, b_seconds, b_cpu});
    f->rounds = i + 1;
    finish(f);
}

bool figure_met(const figure *f)
{
    if (f->max_a_ms > 0)
        return f->median_a > 0 && 1e3 / f->median_a <= f->max_a_ms;
    if (f->goal <= 0)
        return true;
    return f->kind == RATIO_THROUGHPUT ? f->median_ratio >= f->goal : f->median_ratio <= f->goal;
}

figure *results_add(bench_results *r, const char *id)
{
    if (r->count >= BENCH_MAX_FIGURES)
        bench_die("too many figures");
    figure *f = &r->figures[r->count++];
    memset(f, 0, sizeof(*f));
    snprintf(f->id, sizeof(f->id), "%s", id);
    f->kind = RATIO_THROUGHPUT;
    return f;
}
