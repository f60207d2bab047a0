#include "config.h"

/* Benchmark (not a test: `make bench-policy`): time per decision for a policy of 10 and of
 * 1,000 key statements of the same shape. The evaluator looks statements up by key, so the two
 * should cost about the same; the ratio is printed. Also times loading the larger policy.
 *
 * Then load times (parse, indexes and the separation-of-duties check) of policies of 1k, 4k and
 * 16k statements, half admin and half usage, each tenant's admins and users distinct (the goal
 * is close to linear: the ratios to 1k are printed), and of the worst files of about 1 MiB found
 * for the duties check: every admin and usage statement on keys '*' with principal patterns
 * that all begin with a wildcard, so no index can tell them apart (the most pairs the check has
 * to compare), with short and with long patterns; and the file of '?*?*...' patterns that took
 * 21 minutes before patterns were bounded (now refused at its first pattern). */

#include "policy/policy.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Load times are CPU time of this process: on a shared machine wall time mostly measures the
 * neighbours. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n usage statements on alias/key-N and key ids, plus the usual few patterns and denies. */
static char *make_policy(unsigned n, size_t *len)
{
    size_t cap = 4096 + (size_t)n * 400;
    char *text = malloc(cap);
    if (text == NULL)
        exit(99);
    size_t o = (size_t)snprintf(text, cap,
                                "version: 1\n"
                                "groups:\n"
                                "  admins: [unix:user:alice, unix:group:kms-admins]\n"
                                "statements:\n"
                                "  - {sid: admins, effect: allow, principals: [group:admins], "
                                "keys: ['*'], actions: [enable-key, disable-key, describe-key]}\n"
                                "  - {sid: rds, effect: allow, principals: [unix:user:rds], "
                                "keys: ['alias/rds-*'], actions: [encrypt, decrypt]}\n"
                                "  - {sid: revoked, effect: deny, principals: [unix:user:bad], "
                                "keys: ['*'], actions: ['*']}\n");
    for (unsigned i = 0; i < n; i++)
        o += (size_t)snprintf(text + o, cap - o,
                              "  - sid: app-%u\n"
                              "    effect: allow\n"
                              "    principals: [unix:user:app-%u, 'unix:uid:%u']\n"
                              "    keys: [alias/key-%u, %08x-0000-4000-8000-000000000000]\n"
                              "    actions: [encrypt, decrypt, generate-data-key]\n"
                              "    conditions:\n"
                              "      context-equals: {tenant: t%u}\n",
                              i, i, 10000 + i, i, i, i);
    *len = o;
    return text;
}

static double time_decisions(const policy *pol, unsigned n, unsigned rounds)
{
    char key_id[64], alias[64], user[64], tenant[32];
    const char *names[3] = {user, "unix:uid:5", "unix:group:staff"};
    const char *aliases[1] = {alias};
    policy_principals who = {names, 3};
    policy_context_pair pair = {"tenant", tenant};
    policy_context ctx = {&pair, 1};
    unsigned allowed = 0;
    double start = now();
    for (unsigned r = 0; r < rounds; r++) {
        unsigned i = (r * 7919u) % n;
        snprintf(key_id, sizeof(key_id), "%08x-0000-4000-8000-000000000000", i);
        snprintf(alias, sizeof(alias), "alias/key-%u", i);
        snprintf(user, sizeof(user), "unix:user:app-%u", i);
        snprintf(tenant, sizeof(tenant), "t%u", i);
        policy_decision d;
        if (policy_evaluate(pol, &who, POLICY_ACTION_ENCRYPT, key_id, aliases, 1, &ctx, NULL, &d,
                            NULL) == P11KMS_OK &&
            d.allowed)
            allowed++;
    }
    double per = (now() - start) / rounds;
    if (allowed != rounds) {
        fprintf(stderr, "policy-bench: only %u of %u requests allowed\n", allowed, rounds);
        exit(1);
    }
    return per;
}

/* Tenants: admin statement on the tenant's alias for admin-N, usage for app-N on the alias and a
 * key id. No two tenants share principals or keys, so the policy loads. */
static char *make_tenants(unsigned n, size_t *len)
{
    size_t cap = 256 + (size_t)n * 400;
    char *text = malloc(cap);
    if (text == NULL)
        exit(99);
    size_t o = (size_t)snprintf(text, cap, "version: 1\nstatements:\n");
    for (unsigned i = 0; i < n / 2; i++)
        o +=
            (size_t)snprintf(text + o, cap - o,
                             "- {sid: a%u, effect: allow, principals: [unix:user:a%u], keys: "
                             "[alias/t%u], actions: [disable-key]}\n"
                             "- {sid: u%u, effect: allow, principals: [unix:user:u%u], keys: "
                             "[alias/t%u, %08x-0000-4000-8000-000000000000], actions: [encrypt]}\n",
                             i, i, i, i, i, i, i);
    *len = o;
    return text;
}

/* About 1 MiB of statements on keys '*': admins "?*a<pad>", users "?*b<pad>" (pad pad_len '?'
 * characters: the suffixes differ, so nobody holds both duties, but every pattern starts with a
 * wildcard). */
static char *make_wild(size_t pad_len, unsigned wild_count, size_t *len)
{
    size_t cap = 1024 * 1024;
    char *text = malloc(cap + 2048);
    char *pad = malloc(pad_len + 1);
    if (text == NULL || pad == NULL)
        exit(99);
    memset(pad, '?', pad_len);
    pad[pad_len] = '\0';
    size_t o = (size_t)snprintf(text, cap, "version: 1\nstatements:\n");
    for (unsigned i = 0; o < cap - 200 - pad_len; i++) {
        if (wild_count != 0 && i >= wild_count) /* the rest: exact principals and keys */
            o += (size_t)snprintf(text + o, cap + 2048 - o,
                                  "- {sid: s%u, effect: allow, principals: [unix:user:x%u], keys: "
                                  "[alias/t%u], actions: [%s]}\n",
                                  i, i, i / 2, i % 2 ? "encrypt" : "enable-key");
        else
            o += (size_t)snprintf(text + o, cap + 2048 - o,
                                  "- {sid: s%u, effect: allow, principals: ['unix:user:?*%c%s'], "
                                  "keys: ['*'], actions: [%s]}\n",
                                  i, i % 2 ? 'b' : 'a', pad, i % 2 ? "encrypt" : "enable-key");
    }
    free(pad);
    *len = o;
    return text;
}

/* The file that took 21 minutes: 1 MiB of principal patterns "?*?*?*..." (now refused). */
static char *make_crafted(size_t *len)
{
    size_t cap = 1024 * 1024;
    char *text = malloc(cap + 2048);
    if (text == NULL)
        exit(99);
    char pattern[491]; /* a principal has at most 512 bytes */
    for (size_t i = 0; i < 490; i++)
        pattern[i] = i % 2 ? '*' : '?';
    pattern[490] = '\0';
    size_t o = (size_t)snprintf(text, cap, "version: 1\nstatements:\n");
    for (unsigned i = 0; o < cap - 1200; i++)
        o += (size_t)snprintf(text + o, cap + 2048 - o,
                              "- {sid: s%u, effect: allow, principals: ['unix:user:%s'], keys: "
                              "['*'], actions: [%s]}\n",
                              i, pattern, i % 2 ? "encrypt" : "enable-key");
    *len = o;
    return text;
}

static void ignore_line(const char *line, void *arg)
{
    (void)line;
    (void)arg;
}

/* One load in a fresh child process (so that earlier loads' heap does not weigh on it): its CPU
 * time in seconds, through a pipe; *loaded tells whether the policy was accepted. */
static double load_once(const char *text, size_t len, bool *loaded)
{
    int fds[2];
    if (pipe(fds) != 0)
        exit(99);
    pid_t pid = fork();
    if (pid < 0)
        exit(99);
    if (pid == 0) {
        close(fds[0]);
        policy *pol = NULL;
        p11kms_error err = {0};
        double t0 = cpu_now();
        p11kms_err rc = policy_load_buffer("bench.yaml", text, len, ignore_line, NULL, &pol, &err);
        double result[2] = {cpu_now() - t0, rc == P11KMS_OK};
        policy_free(pol);
        _exit(write(fds[1], result, sizeof(result)) == (ssize_t)sizeof(result) ? 0 : 1);
    }
    close(fds[1]);
    double result[2] = {0, 0};
    ssize_t got = read(fds[0], result, sizeof(result));
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof(result) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        exit(99);
    *loaded = result[1] != 0;
    return result[0];
}

/* Best of three loads, in seconds. */
static double time_load(const char *text, size_t len, bool *loaded)
{
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t = load_once(text, len, loaded);
        best = t < best ? t : best;
    }
    return best;
}

static int bench_loads(void)
{
    unsigned sizes[] = {1000, 2000, 4000, 8000};
    double first = 0;
    /* Up to 8k: 16k statements do not fit in the 1 MiB a policy file may have. */
    for (size_t s = 0; s < 4; s++) {
        size_t len;
        char *text = make_tenants(sizes[s], &len);
        bool loaded;
        double t = time_load(text, len, &loaded);
        free(text);
        if (!loaded) {
            fprintf(stderr, "policy-bench: the %u-statement policy did not load\n", sizes[s]);
            return 1;
        }
        first = s == 0 ? t : first;
        printf("load %5u statements (%4zu KiB): %8.2f ms  (x%.1f the 1k time for x%u the "
               "statements)\n",
               sizes[s], len / 1024, t * 1e3, t / first, sizes[s] / sizes[0]);
    }
    /* All wildcard statements exceed the check's work bound and are refused; the worst accepted
     * file found has as many as fit under it (the rest of the megabyte exact statements). */
    const struct {
        const char *what;
        size_t pad;
        unsigned wild;
    } wild[] = {{"worst accepted found", 0, 140},
                {"all wildcards, short", 0, 0},
                {"all wildcards, 500 B", 480, 0}};
    for (size_t w = 0; w < 3; w++) {
        size_t len;
        char *text = make_wild(wild[w].pad, wild[w].wild, &len);
        bool loaded;
        double t = time_load(text, len, &loaded);
        free(text);
        printf("load %-28s (%4zu KiB): %8.2f ms  (%s)\n", wild[w].what, len / 1024, t * 1e3,
               loaded ? "accepted" : "refused");
    }
    size_t len;
    char *text = make_crafted(&len);
    bool loaded;
    double t = time_load(text, len, &loaded);
    free(text);
    printf("load %-28s (%4zu KiB): %8.2f ms  (%s)\n", "1 MiB of '?*?*...' patterns", len / 1024,
           t * 1e3, loaded ? "accepted" : "refused");
    return 0;
}

int main(int argc, char **argv)
{
    unsigned rounds = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 500000;
    unsigned sizes[2] = {10, 1000};
    double per[2];
    for (int s = 0; s < 2; s++) {
        size_t len;
        char *text = make_policy(sizes[s], &len);
        policy *pol = NULL;
        p11kms_error err = {0};
        double t0 = now();
        if (policy_load_buffer("bench.yaml", text, len, NULL, NULL, &pol, &err) != P11KMS_OK) {
            fprintf(stderr, "policy-bench: %s\n", err.message);
            return 1;
        }
        double load = now() - t0;
        per[s] = time_decisions(pol, sizes[s], rounds);
        printf("%5u statements: load %.2f ms, %.0f ns per decision\n",
               policy_statement_count(pol) > 0 ? sizes[s] : 0, load * 1e3, per[s] * 1e9);
        policy_free(pol);
        free(text);
    }
    printf("ratio 1000/10: %.2f\n", per[1] / per[0]);
    return bench_loads();
}
