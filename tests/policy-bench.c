#include "config.h"

/* Benchmark (not a test: `make bench-policy`): time per decision for a policy of 10 and of
 * 1,000 key statements of the same shape. The evaluator looks statements up by key, so the two
 * should cost about the same; the ratio is printed. Also times loading the larger policy. */

#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    return 0;
}
