#include "config.h"

/* p11kms-bench: command line, then the figures in an order that never has two services on one
 * module at once: the main token (1-4), the large token (5), no token (6), start-up (7). */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: p11kms-bench [OPTIONS]\n"
        "\n"
        "Measures p11kms against the bare PKCS#11 token and bare OpenSSL, side by side in one\n"
        "run: each figure is the median over rounds of the per-round ratio A/B, with A\n"
        "(p11kms) and B (baseline) interleaved. Sets up its own SoftHSM tokens under the build\n"
        "directory (or uses the token of tests/lib/with-token.sh when run under it).\n"
        "\n"
        "Figures:\n"
        "  1  p11kms_encrypt (32 B, 2-pair context, policy on) vs C_EncryptInit+C_Encrypt,\n"
        "     with 1 thread (1a) and --threads threads (1b)      goal >= 0.95x\n"
        "  2  p11kms_generate_data_key AES_256 vs GCM encrypt+decrypt  goal >= 0.95x\n"
        "  3  p11kms_decrypt vs C_DecryptInit+C_Decrypt          goal >= 0.95x\n"
        "  4  p11kms_generate_child_key vs OpenSSL EVP AES-256-GCM  goal >= 0.9x\n"
        "  5  p11kms_encrypt, random key of --keys vs one key    goal >= 0.95x\n"
        "  6  policy_evaluate, 1000 statements vs 10            goal <= 2x time\n"
        "  7  p11kms_open+p11kms_close, --keys keys vs 1 key     reported\n"
        "  9  first p11kms_encrypt on a cold key (record read, session copy, first\n"
        "     reservation) vs bare C_FindObjects+C_CopyObject+C_Encrypt  goal A < 2 ms\n"
        "  1a-t, 1b-t, 2-t, 3-t: figures 1-3 against the bare loop on the token object\n"
        "     in the same rounds (figures 1-3 compare with the object form p11kms uses)\n"
        "     goal on SoftHSM with session copies >= 2.5x (1b-t: 1.3x)\n"
        "\n"
        "Options:\n"
        "  --duration SECONDS  time per side per round (default 0.5)\n"
        "  --rounds N          rounds per figure, the median is reported (default 5)\n"
        "  --threads N         threads of figure 1b (default 2)\n"
        "  --keys N            keys in the large token, figures 5 and 7 (default 10000)\n"
        "  --create-budget S   stop creating keys after S seconds and run figures 5 and 7\n"
        "                      with the keys made so far, saying so (default 60)\n"
        "  --only LIST         run only these figures, e.g. 1,3,6\n"
        "  --json FILE         also write the results as JSON\n"
        "  --rng token|openssl set token.rng in p11kms's configuration (default: the\n"
        "                      library's default), to measure its effect\n"
        "  --count-batch N     set keys.count-batch likewise\n"
        "  --key-cache MODE    set token.key-cache (session-copy or token-object) likewise\n"
        "  --session-keys N    set token.session-keys likewise (figure 5 with more keys\n"
        "                      than that measures copies being remade)\n"
        "  --scale N           instead of figures 1-8, the scale figures with N keys on\n"
        "                      fresh tokens: create-key vs bare C_GenerateKey at the same\n"
        "                      object count, maintain at N/4, N/2, N, p11kms_open vs bare\n"
        "                      C_Initialize+C_Login, list-keys, first use of a key, encrypt\n"
        "                      with a random key of N vs one; SQLite, and PostgreSQL with --pg\n"
        "  --pg CONNINFO       the PostgreSQL database of the scale figures (an empty one)\n"
        "  --scale-stores LIST sqlite, postgresql or both (default: both, PostgreSQL only\n"
        "                      with --pg)\n"
        "  --token KIND        the scale figures' tokens: softhsm (default) or nss (fresh\n"
        "                      NSS softokn databases made with certutil -N)\n"
        "  --daemon            instead of figures 1-8, Encrypt 32 B through p11kmsd over its\n"
        "                      Unix socket with 1, 4 and 16 keep-alive connections vs\n"
        "                      p11kms_encrypt in-process with as many threads and vs a\n"
        "                      bare socket server (the transport's ceiling); then p11kmsd\n"
        "                      with an audit section vs without, 4 connections\n"
        "  --smoke             a few operations per side (a test that the tool works;\n"
        "                      implies --rounds 1 --keys 4 unless given)\n"
        "  --module PATH       PKCS#11 module (default %s)\n"
        "  --workdir DIR       where the tokens and configurations go (default: a fresh\n"
        "                      directory under the build directory, removed at the end)\n"
        "  --keep              keep the work directory\n"
        "  --check-json FILE   check that FILE is a complete result file and exit\n"
        "  --help              this text\n",
        BENCH_SOFTHSM_MODULE);
}

static double number(const char *opt, const char *text, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= min && v <= max))
        bench_die("%s: '%s' is not a number from %g to %g", opt, text, min, max);
    return v;
}

bool bench_selected(const bench_opts *o, const char *n)
{
    if (o->only == NULL)
        return true;
    size_t len = strlen(n);
    for (const char *p = o->only; *p != '\0';) {
        size_t item = strcspn(p, ",");
        if (item == len && strncmp(p, n, len) == 0)
            return true;
        p += item;
        if (*p == ',')
            p++;
    }
    return false;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : fallback;
}

int main(int argc, char **argv)
{
    bench_opts o = {
        .duration = 0.5,
        .rounds = 5,
        .threads = 2,
        .keys = 10000,
        .create_budget = 60,
        .smoke_ops = 4,
        .module = env_or("SOFTHSM_MODULE", BENCH_SOFTHSM_MODULE),
        .softhsm_util = env_or("SOFTHSM2_UTIL", BENCH_SOFTHSM2_UTIL),
        .nss_softokn = env_or("NSS_SOFTOKN", BENCH_NSS_SOFTOKN),
        .certutil = env_or("NSS_CERTUTIL", BENCH_NSS_CERTUTIL),
    };
    bool rounds_given = false, keys_given = false;
    enum {
        OPT_DURATION = 256,
        OPT_ROUNDS,
        OPT_THREADS,
        OPT_BUDGET,
        OPT_RNG,
        OPT_COUNT_BATCH,
        OPT_KEY_CACHE,
        OPT_SESSION_KEYS,
        OPT_KEYS,
        OPT_ONLY,
        OPT_JSON,
        OPT_SMOKE,
        OPT_MODULE,
        OPT_WORKDIR,
        OPT_KEEP,
        OPT_CHECK,
        OPT_HELP,
        OPT_SCALE,
        OPT_PG,
        OPT_SCALE_STORES,
        OPT_DAEMON,
        OPT_TOKEN
    };
    static const struct option longs[] = {
        {"duration", required_argument, NULL, OPT_DURATION},
        {"rounds", required_argument, NULL, OPT_ROUNDS},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"create-budget", required_argument, NULL, OPT_BUDGET},
        {"only", required_argument, NULL, OPT_ONLY},
        {"rng", required_argument, NULL, OPT_RNG},
        {"count-batch", required_argument, NULL, OPT_COUNT_BATCH},
        {"key-cache", required_argument, NULL, OPT_KEY_CACHE},
        {"session-keys", required_argument, NULL, OPT_SESSION_KEYS},
        {"json", required_argument, NULL, OPT_JSON},
        {"smoke", no_argument, NULL, OPT_SMOKE},
        {"module", required_argument, NULL, OPT_MODULE},
        {"workdir", required_argument, NULL, OPT_WORKDIR},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"check-json", required_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, OPT_HELP},
        {"scale", required_argument, NULL, OPT_SCALE},
        {"pg", required_argument, NULL, OPT_PG},
        {"scale-stores", required_argument, NULL, OPT_SCALE_STORES},
        {"daemon", no_argument, NULL, OPT_DAEMON},
        {"token", required_argument, NULL, OPT_TOKEN},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case OPT_DURATION:
            o.duration = number("--duration", optarg, 0.001, 3600);
            break;
        case OPT_ROUNDS:
            o.rounds = (unsigned)number("--rounds", optarg, 1, BENCH_MAX_ROUNDS);
            rounds_given = true;
            break;
        case OPT_THREADS:
            o.threads = (unsigned)number("--threads", optarg, 1, BENCH_MAX_THREADS);
            break;
        case OPT_KEYS:
            o.keys = (unsigned)number("--keys", optarg, 1, 1000000);
            keys_given = true;
            break;
        case OPT_BUDGET:
            o.create_budget = number("--create-budget", optarg, 1, 1e6);
            break;
        case OPT_RNG:
            if (strcmp(optarg, "token") != 0 && strcmp(optarg, "openssl") != 0)
                bench_die("--rng: '%s' is not token or openssl", optarg);
            o.rng = optarg;
            break;
        case OPT_COUNT_BATCH:
            o.count_batch = (unsigned)number("--count-batch", optarg, 1, 1u << 20);
            break;
        case OPT_KEY_CACHE:
            if (strcmp(optarg, "session-copy") != 0 && strcmp(optarg, "token-object") != 0)
                bench_die("--key-cache: '%s' is not session-copy or token-object", optarg);
            o.key_cache = optarg;
            break;
        case OPT_SESSION_KEYS:
            o.session_keys = (unsigned)number("--session-keys", optarg, 1, 1000000);
            break;
        case OPT_ONLY:
            o.only = optarg;
            break;
        case OPT_JSON:
            o.json_path = optarg;
            break;
        case OPT_SMOKE:
            o.smoke = true;
            break;
        case OPT_MODULE:
            o.module = optarg;
            break;
        case OPT_WORKDIR:
            o.workdir = optarg;
            break;
        case OPT_KEEP:
            o.keep = true;
            break;
        case OPT_CHECK:
            return report_check_json(optarg) == 0 ? 0 : 1;
        case OPT_SCALE:
            o.scale = (unsigned)number("--scale", optarg, 4, 1000000);
            break;
        case OPT_PG:
            o.pg_store = optarg;
            break;
        case OPT_SCALE_STORES:
            if (strstr(optarg, "sqlite") == NULL && strstr(optarg, "postgresql") == NULL)
                bench_die("--scale-stores: '%s' names neither sqlite nor postgresql", optarg);
            o.scale_stores = optarg;
            break;
        case OPT_DAEMON:
            o.daemon = true;
            break;
        case OPT_TOKEN:
            if (strcmp(optarg, "nss") != 0 && strcmp(optarg, "softhsm") != 0)
                bench_die("--token: '%s' is not softhsm or nss", optarg);
            o.nss = strcmp(optarg, "nss") == 0;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "p11kms-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (o.nss && o.scale == 0)
        bench_die("--token nss: only the scale figures (--scale N) run on NSS softokn");
    if (o.nss && (o.nss_softokn[0] == '\0' || o.certutil[0] == '\0'))
        bench_die("--token nss: NSS softokn or certutil not found (apt-get install libnss3 "
                  "libnss3-tools, then re-run configure; or set NSS_SOFTOKN and NSS_CERTUTIL)");
    if (o.smoke) {
        if (!rounds_given)
            o.rounds = 1;
        if (!keys_given)
            o.keys = 4;
    }
    if (!o.smoke && o.rounds < 5)
        fprintf(stderr, "p11kms-bench: note: fewer than 5 rounds; medians are less stable\n");

    /* Results are large (every round of every figure): keep them off the stack. */
    static bench_results r;
    bench_env env;
    env_setup(&env, &o);
    if (o.daemon) {
        figure_daemon(&env, &o);
        env_teardown(&env, o.keep);
        return 0;
    }
    if (o.scale != 0) {
        figure_scale(&env, &o);
        env_teardown(&env, o.keep);
        return 0;
    }
    figures_token(&env, &o, &r);
    figure_many_keys(&env, &o, &r);
    figure_policy(&o, &r);
    figure_startup(&env, &o, &r);
    figure_audit(&env, &o, &r);
    if (r.token.token_label[0] == '\0') {
        /* Figures 1-4 did not run: describe the token anyway. */
        p11kms *svc = env_open(&env.main);
        p11kms_error e = {0};
        bench_check(p11kms_token_info(svc, &r.token, &e), &e, "p11kms_token_info");
        p11kms_close(svc);
    }
    report_table(&r, &o);
    if (o.json_path != NULL)
        report_json(&r, &o, o.json_path);
    env_teardown(&env, o.keep);
    return 0;
}
