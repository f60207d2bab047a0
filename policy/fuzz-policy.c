#include "config.h"

/* Fuzz target for the policy loader and evaluator.
 *
 * Built two ways (tests/fuzz/fuzz.h): with clang -fsanitize=fuzzer as a libFuzzer target
 * (`make fuzz`), and linked with tests/fuzz/driver.c as a plain program that `make check` runs
 * over the seed and crash corpus (tests/policy-fuzz-corpus/), so every seed keeps being checked
 * under ASan and valgrind. */

#include "policy/model.h"
#include "policy/policy.h"
#include "tests/fuzz/fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void count_line(const char *line, void *arg)
{
    size_t *n = arg;
    (*n)++;
    /* Every reported line is one printable line. */
    for (const char *p = line; *p != '\0'; p++)
        if (*p == '\n')
            abort();
}

static void count_conflict(void *arg, const statement *at, const char *message)
{
    size_t *n = arg;
    (*n)++;
    (void)at;
    (void)message;
}

/* A few requests that touch every path of the evaluator once a policy loads. */
static void exercise(const policy *pol)
{
    static const char *const names[] = {"unix:user:alice", "unix:uid:1000", "unix:group:kms-admins",
                                        "x509:CN=app*.example.com", "sigv4:AKIAEXAMPLE"};
    static const char *const aliases[] = {"alias/app", "alias/rds-main", "alias/x"};
    static const policy_context_pair pairs[] = {{"aws:rds:db-id", "db-1"}, {"Tenant", "acme"}};
    const policy_context ctx = {pairs, 2};
    const policy_principals who = {names, sizeof(names) / sizeof(names[0])};
    for (int a = 0; a < POLICY_ACTION__COUNT; a++) {
        policy_action action = (policy_action)a;
        policy_decision d;
        char line[POLICY_EXPLANATION_MAX + POLICY_WAIVER_MAX + 64];
        p11kms_err rc;
        if (!policy_action_is_key_bound(action))
            rc = policy_evaluate(pol, &who, action, NULL, NULL, 0, NULL, NULL, &d, NULL);
        else
            rc = policy_evaluate(pol, &who, action, "11111111-1111-4111-8111-111111111111", aliases,
                                 3, policy_action_takes_context(action) ? &ctx : NULL, NULL, &d,
                                 NULL);
        if (rc != P11KMS_OK || (d.allowed && d.explicit_deny))
            abort();
        policy_explain(&d, line, sizeof(line));
        policy_create_defaults def;
        if (action == POLICY_ACTION_CREATE_KEY && d.allowed &&
            policy_create_defaults_get(pol, &d, &def, NULL) != P11KMS_OK)
            abort();
    }
    policy_decision d;
    if (policy_evaluate_alias(pol, &who, POLICY_ACTION_CREATE_ALIAS, "alias/new", &d, NULL) !=
        P11KMS_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    policy *pol = NULL;
    p11kms_error err = {0};
    size_t lines = 0;
    p11kms_err rc =
        policy_load_buffer("fuzz.yaml", (const char *)data, size, count_line, &lines, &pol, &err);
    if (rc == P11KMS_OK) {
        if (pol == NULL || lines != 0)
            abort();
        exercise(pol);
        /* The indexed separation-of-duties check missed no conflict: comparing every pair
         * finds none either in a policy that loaded. */
        size_t conflicts = 0;
        FUZZ_ASSERT(policy_check_duties_every_pair(pol, count_conflict, &conflicts));
        FUZZ_ASSERT(conflicts == 0);
        policy_free(pol);
    } else if (pol != NULL || (rc == P11KMS_E_MALFORMED_POLICY && lines == 0)) {
        abort(); /* a refusal always says why */
    }
    return 0;
}

/* Inputs too big to keep in the repository, made at run time. */
void fuzz_generated_inputs(void)
{
    size_t len = 1024 * 1024 + 1;
    char *big = malloc(len);
    if (big == NULL)
        abort();
    /* Just over the size bound. */
    memset(big, '#', len);
    LLVMFuzzerTestOneInput((const uint8_t *)big, len);
    /* Deep nesting far past the depth bound. */
    memset(big, '[', len - 1);
    LLVMFuzzerTestOneInput((const uint8_t *)big, len - 1);
    /* Nearly 1 MiB of statements, all valid: exercises load and index sizes. */
    size_t o = (size_t)snprintf(big, len, "version: 1\nstatements:\n");
    for (unsigned i = 0; o + 200 < len - 1; i++)
        o += (size_t)snprintf(big + o, len - o,
                              "- {sid: s%u, effect: allow, principals: [unix:user:u%u], keys: "
                              "[alias/k%u], actions: [%s]}\n",
                              i, i % 977, i, i % 2 ? "encrypt" : "describe-key");
    LLVMFuzzerTestOneInput((const uint8_t *)big, o);
    free(big);
}
