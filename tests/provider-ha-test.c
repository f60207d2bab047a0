#include "config.h"

/* Several hosts sharing one token and one PostgreSQL database, each process with a lock file
 * of its own (standing in for two hosts: they share no local file).
 *
 * 1. A key disabled by one process is refused by the other within the bound of one NOTIFY
 *    delivery (doc/token-layout.md; asserted here under NOTIFY_BOUND_MS).
 * 2. Two writers run concurrent creates, rotations, alias changes over a small shared set of
 *    names, tag writes on one shared key and disable/enable for a bounded time, while one of
 *    them is killed (SIGKILL) at random points and restarted. Each logs a success after it was
 *    reported. Afterwards: no lost update (each writer's last logged tag value is in the shared
 *    key's record), no alias listed by two keys or pointing to a key that does not list it,
 *    every logged key exists, and maintain has nothing to repair besides destroying the version
 *    objects kills left unrecorded.
 *
 * Runs only against PostgreSQL (registered as tests/provider-ha-test.pgtest). */

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "lib/softhsm-guard.h"
#include "p11kms.h"

#define NOTIFY_BOUND_MS 1000
#define RUN_MS 12000
#define KILL_MIN_MS 100
#define KILL_MAX_MS 900
#define ALIASES 4

static p11kms_error e;
static char *config[2];
static char shared_key[P11KMS_KEY_ID_LEN + 1];

static unsigned next_random(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7fff;
}

static void log_line(int fd, const char *fmt, ...) P11KMS_PRINTF(2, 3);

static void log_line(int fd, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(line))
        (void)!write(fd, line, (size_t)n);
}

/* The test configuration with a lock file of this host's own and no orphan grace period. */
static char *host_config(const char *host)
{
    char *base = test_read_file(test_env("P11KMS_CONFIG"), NULL);
    char text[8192] = "", name[64];
    size_t used = 0;
    char *save = NULL;
    for (char *line = strtok_r(base, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "  lock-file:", 12) == 0)
            used += (size_t)snprintf(text + used, sizeof(text) - used,
                                     "  lock-file: %s/%s.lock\n  orphan-grace-seconds: 0\n",
                                     test_env("P11KMS_TEST_ROOT"), host);
        else
            used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\n", line);
        REQUIRE(used < sizeof(text));
    }
    free(base);
    snprintf(name, sizeof(name), "%s.yaml", host);
    return fx_write_file(name, text);
}

/* --- 1. notification bound ------------------------------------------------------------------- */

static void test_notification(const p11kms_principal *who)
{
    fx_say("a key disabled on one host is refused on the other within %d ms", NOTIFY_BOUND_MS);
    p11kms *a = fx_open(config[0]);
    p11kms *b = fx_open(config[1]);
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(a, who, "notify", id);
    static const uint8_t pt[] = "n";
    p11kms_result r;
    CHECK_OK(p11kms_encrypt(b, who, id, NULL, pt, sizeof(pt), &r, &e), &e);
    p11kms_result_free(&r);
    for (int round = 0; round < 5; round++) {
        CHECK_OK(p11kms_disable_key(a, who, id, &e), &e);
        int64_t t0 = fx_now_ms();
        p11kms_err rc;
        while ((rc = p11kms_encrypt(b, who, id, NULL, pt, sizeof(pt), &r, &e)) == P11KMS_OK &&
               fx_now_ms() - t0 < 5000) {
            p11kms_result_free(&r);
            fx_sleep_ms(1);
        }
        int64_t took = fx_now_ms() - t0;
        CHECK(rc == P11KMS_E_DISABLED);
        CHECK(took < NOTIFY_BOUND_MS);
        fprintf(stderr, "   round %d: refused on the other host after %lld ms\n", round,
                (long long)took);
        CHECK_OK(p11kms_enable_key(a, who, id, &e), &e);
        t0 = fx_now_ms();
        while ((rc = p11kms_encrypt(b, who, id, NULL, pt, sizeof(pt), &r, &e)) != P11KMS_OK &&
               fx_now_ms() - t0 < 5000)
            fx_sleep_ms(1);
        CHECK_OK(rc, &e);
        p11kms_result_free(&r);
    }
    p11kms_close(b);
    p11kms_close(a);
}

/* --- 2. concurrent writers with kills -------------------------------------------------------- */

/* Under contention and kills a refusal is expected; what counts is checked afterwards. */
static void tolerate(p11kms_err rc)
{
    (void)rc;
}

static void writer(int host, unsigned seed, int log_fd)
{
    p11kms *svc = fx_open(config[host]);
    p11kms_principal *who = fx_principal("unix:user:ha-writer");
    char mine[8][P11KMS_KEY_ID_LEN + 1];
    int have = 0;
    char tag_key[16];
    snprintf(tag_key, sizeof(tag_key), "writer-%d", host);
    /* Tag values count up across restarts: each incarnation starts at the wall clock in
     * microseconds, above every value an earlier one wrote (each tag takes far more than a
     * microsecond). Seconds * 1000 was not: a writer killed and restarted within the same second
     * started below the values its previous incarnation had logged. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    _Static_assert(sizeof(unsigned long) >= 8, "microseconds since 1970 need 64 bits");
    unsigned long n = (unsigned long)now.tv_sec * 1000000u + (unsigned long)now.tv_nsec / 1000u;
    for (;;) {
        unsigned op = next_random(&seed) % 6;
        p11kms_error we = {0};
        if (op == 0 || have == 0) {
            p11kms_key_metadata md;
            if (p11kms_create_key(svc, who, NULL, &md, &we) == P11KMS_OK) {
                memcpy(mine[have % 8], md.key_id, P11KMS_KEY_ID_LEN + 1);
                have++;
                log_line(log_fd, "key %s\n", md.key_id);
            }
        } else if (op == 1) {
            const char *k = mine[next_random(&seed) % (have < 8 ? have : 8)];
            tolerate(p11kms_rotate_key_on_demand(svc, who, k, NULL, &we));
        } else if (op == 2) {
            char alias[32];
            snprintf(alias, sizeof(alias), "alias/ha-%u", next_random(&seed) % ALIASES);
            const char *k = mine[next_random(&seed) % (have < 8 ? have : 8)];
            if (p11kms_create_alias(svc, who, alias, k, &we) != P11KMS_OK)
                tolerate(p11kms_update_alias(svc, who, alias, k, &we));
        } else if (op == 3) {
            char alias[32];
            snprintf(alias, sizeof(alias), "alias/ha-%u", next_random(&seed) % ALIASES);
            tolerate(p11kms_delete_alias(svc, who, alias, &we));
        } else if (op == 4) {
            n++;
            char value[32];
            snprintf(value, sizeof(value), "%lu", n);
            p11kms_tag tag = {tag_key, value};
            if (p11kms_tag_resource(svc, who, shared_key, &tag, 1, &we) == P11KMS_OK)
                log_line(log_fd, "tag %d %lu\n", host, n);
        } else {
            const char *k = mine[next_random(&seed) % (have < 8 ? have : 8)];
            tolerate(p11kms_disable_key(svc, who, k, &we));
            tolerate(p11kms_enable_key(svc, who, k, &we));
        }
    }
}

static pid_t start_writer(int host, unsigned seed, int log_fd)
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        writer(host, seed, log_fd);
        _exit(0);
    }
    return pid;
}

static int collect_tag(const p11kms_tag *tag, void *arg)
{
    fx_list_add(arg, tag->key);
    fx_list_add(arg, tag->value);
    return 0;
}

static void check_after(const p11kms_principal *who, const char *log_path)
{
    p11kms *svc = fx_open(config[0]);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    static const char *const repairs[] = {"has no object",   "objects in the token", "listed",
                                          "reconciled",      "pointed to deleted",   "unreadable",
                                          "no version claim"};
    for (size_t i = 0; i < lines.count; i++) {
        bool repair = false;
        for (size_t k = 0; k < sizeof(repairs) / sizeof(repairs[0]); k++)
            repair = repair || strstr(lines.items[i], repairs[k]) != NULL;
        CHECK(!repair);
    }
    fx_list_free(&lines);

    fx_say("every logged key exists; each writer's last logged tag is in the shared key");
    char *text = test_read_file(log_path, NULL);
    unsigned long last[2] = {0, 0};
    int keys = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char id[P11KMS_KEY_ID_LEN + 1];
        int host;
        unsigned long v;
        if (sscanf(line, "key %36s", id) == 1) {
            keys++;
            p11kms_key_metadata md;
            CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
        } else if (sscanf(line, "tag %d %lu", &host, &v) == 2 && host >= 0 && host < 2) {
            if (v > last[host])
                last[host] = v;
        }
    }
    free(text);
    fx_list tags = {0};
    CHECK_OK(p11kms_list_resource_tags(svc, who, shared_key, collect_tag, &tags, &e), &e);
    for (int host = 0; host < 2; host++) {
        char key[16];
        snprintf(key, sizeof(key), "writer-%d", host);
        unsigned long have = 0;
        for (size_t i = 0; i + 1 < tags.count; i += 2)
            if (strcmp(tags.items[i], key) == 0)
                have = strtoul(tags.items[i + 1], NULL, 10);
        /* A kill after the commit and before the log line leaves one more than logged. */
        CHECK(have >= last[host]);
        fprintf(stderr, "   writer %d: last logged tag %lu, in the record %lu\n", host, last[host],
                have);
    }
    fx_list_free(&tags);
    fprintf(stderr, "   %d keys logged\n", keys);

    fx_say("no alias is listed by two keys; every alias points to a key that lists it");
    fx_list all = {0};
    CHECK_OK(p11kms_list_aliases(svc, who, NULL, fx_collect_alias_target, &all, &e), &e);
    fx_list keys_all = {0};
    fx_list_keys(svc, who, &keys_all);
    for (size_t i = 0; i < all.count; i++) {
        char *eq = strchr(all.items[i], '=');
        REQUIRE(eq != NULL);
        *eq = '\0';
        int listed_by = 0;
        for (size_t k = 0; k < keys_all.count; k++) {
            fx_list of = {0};
            CHECK_OK(p11kms_list_aliases(svc, who, keys_all.items[k], fx_collect_alias, &of, &e),
                     &e);
            if (fx_list_has(&of, all.items[i])) {
                listed_by++;
                CHECK(strcmp(keys_all.items[k], eq + 1) == 0);
            }
            fx_list_free(&of);
        }
        CHECK(listed_by == 1);
        if (listed_by != 1)
            fprintf(stderr, "   %s is listed by %d keys\n", all.items[i], listed_by);
    }
    fx_list_free(&keys_all);
    fx_list_free(&all);

    fx_list again = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &again, &e), &e);
    CHECK(again.count == 0);
    fx_list_free(&again);
    p11kms_close(svc);
}

int main(void)
{
    const char *store = getenv("P11KMS_TEST_STORE");
    if (store == NULL || strcmp(store, "postgresql") != 0) {
        fprintf(stderr, "provider-ha-test needs PostgreSQL (run tests/provider-ha-test.pgtest)\n");
        return 77;
    }
    p11kms_principal *who = fx_principal("unix:user:ha-tester");
    /* Two "hosts": two lock files. Grace 0: maintain runs when every writer is dead. */
    config[0] = host_config("host-a");
    config[1] = host_config("host-b");
    test_notification(who);

    p11kms *svc = fx_open(config[0]);
    fx_create_key(svc, who, "shared", shared_key);
    p11kms_close(svc);
    softhsm_guard_arm();

    const char *seed_text = getenv("P11KMS_TEST_SEED");
    unsigned seed = seed_text ? (unsigned)strtoul(seed_text, NULL, 10)
                              : (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    fx_say("two writers on two lock files for %d ms, one killed at random (seed %u)", RUN_MS, seed);
    char log_path[4200];
    snprintf(log_path, sizeof(log_path), "%s/ha.log", test_env("P11KMS_TEST_ROOT"));
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    REQUIRE(log_fd >= 0);
    pid_t pids[2] = {start_writer(0, seed, log_fd), start_writer(1, seed * 31u + 7u, log_fd)};
    int64_t end = fx_now_ms() + RUN_MS;
    int kills = 0;
    unsigned state = seed;
    while (fx_now_ms() < end) {
        fx_sleep_ms(KILL_MIN_MS + next_random(&state) % (KILL_MAX_MS - KILL_MIN_MS));
        int victim = (int)(next_random(&state) % 2);
        kill(pids[victim], SIGKILL);
        REQUIRE(waitpid(pids[victim], NULL, 0) == pids[victim]);
        softhsm_guard_repair();
        kills++;
        pids[victim] = start_writer(victim, next_random(&state), log_fd);
    }
    for (int i = 0; i < 2; i++) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    softhsm_guard_repair();
    close(log_fd);
    fprintf(stderr, "   %d kills (%u of them emptied SoftHSM's token.object during C_Login)\n",
            kills, softhsm_guard_repairs());
    check_after(who, log_path);

    free(config[0]);
    free(config[1]);
    p11kms_principal_free(who);
    return check_finish("provider-ha-test");
}
