#include "config.h"

/* Crash safety: a child process mutates keys in a tight loop (create, rotate, aliases,
 * disable/enable, schedule/cancel deletion, encryptions; now and then it re-opens the service or
 * runs maintain) and is killed with SIGKILL at a random moment. The child logs each success to a
 * file after it was reported. After every kill the parent opens the service, runs
 * p11kms_maintain (grace period 0: the child is dead, so every version object no record names
 * was left by the kill) and checks that nothing half-made is visible: every key describes and
 * its versions exist, keys work according to their state, aliases and key records agree, no
 * key object lacks a record, no version claim is left unnamed, every key and ciphertext the log
 * reports still exists and decrypts, and a second maintain has nothing to repair.
 *
 * P11KMS_TEST_SEED=N replays a run (the seed is printed); P11KMS_CRASH_ROUNDS overrides the
 * number of rounds (30, or 5 under a test wrapper such as valgrind). */

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
#include "pkcs11/token.h"
#include "provider/keymeta.h"
#include "provider/keystore.h"
#include "provider/service.h"

#define DEFAULT_ROUNDS 30
#define WRAPPED_ROUNDS 5
#define KILL_MIN_MS 5
#define KILL_MAX_MS 200

static unsigned next_random(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7fff;
}

/* --- the child: mutations until killed ----------------------------------------------------- */

static void note(int *shown, const char *what, p11kms_err rc, const p11kms_error *e)
{
    if (rc == P11KMS_OK || *shown >= 5)
        return;
    (*shown)++;
    fprintf(stderr, "   child: %s: %s: %s\n", what, p11kms_error_class(rc), e->message);
}

/* Appends one line to the success log (O_APPEND: whole lines, never interleaved). */
static void log_success(int fd, const char *fmt, ...) P11KMS_PRINTF(2, 3);

static void log_success(int fd, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(line))
        (void)!write(fd, line, (size_t)n);
}

static void churn(int round, unsigned seed, int ready_fd, int log_fd)
{
    p11kms *svc = fx_open(NULL);
    p11kms_principal *who = fx_principal("unix:user:crash-child");
    char ready = 'r';
    fx_send(ready_fd, &ready, 1);
    close(ready_fd);
    p11kms_error e = {0};
    char prev[P11KMS_KEY_ID_LEN + 1] = "";
    char prev_alias[64] = "";
    int shown = 0;
    static const uint8_t pt[] = "crash";
    for (int i = 0;; i++) {
        p11kms_key_metadata md = {0};
        p11kms_create_key_input in = {.description = "crash test"};
        p11kms_err rc = p11kms_create_key(svc, who, &in, &md, &e);
        note(&shown, "create-key", rc, &e);
        if (rc != P11KMS_OK)
            continue;
        char id[P11KMS_KEY_ID_LEN + 1];
        memcpy(id, md.key_id, sizeof(id));
        log_success(log_fd, "key %s\n", id);
        char alias[64];
        snprintf(alias, sizeof(alias), "alias/crash-%d-%d", round, i);
        note(&shown, "create-alias", p11kms_create_alias(svc, who, alias, id, &e), &e);
        note(&shown, "rotate", p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), &e);
        if (prev_alias[0] != '\0')
            note(&shown, "update-alias", p11kms_update_alias(svc, who, prev_alias, id, &e), &e);
        note(&shown, "disable", p11kms_disable_key(svc, who, id, &e), &e);
        note(&shown, "enable", p11kms_enable_key(svc, who, id, &e), &e);
        switch (next_random(&seed) % 4) {
        case 0:
            note(&shown, "schedule", p11kms_schedule_key_deletion(svc, who, id, 7, NULL, &e), &e);
            note(&shown, "cancel", p11kms_cancel_key_deletion(svc, who, id, &e), &e);
            note(&shown, "enable", p11kms_enable_key(svc, who, id, &e), &e);
            break;
        case 1:
            note(&shown, "delete-alias", p11kms_delete_alias(svc, who, alias, &e), &e);
            alias[0] = '\0';
            break;
        case 2:
            if (prev[0] != '\0') {
                note(&shown, "rotate prev", p11kms_rotate_key_on_demand(svc, who, prev, NULL, &e),
                     &e);
                note(&shown, "disable prev", p11kms_disable_key(svc, who, prev, &e), &e);
            }
            break;
        default:
            note(&shown, "schedule", p11kms_schedule_key_deletion(svc, who, id, 7, NULL, &e), &e);
            break;
        }
        /* Load between the operations; whether it succeeds depends on the state just set. */
        p11kms_result r;
        if (p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &r, &e) == P11KMS_OK) {
            char hex[1024];
            size_t n = r.ciphertext_len < (sizeof(hex) - 1) / 2 ? r.ciphertext_len : 0;
            for (size_t k = 0; k < n; k++)
                snprintf(hex + 2 * k, 3, "%02x", r.ciphertext[k]);
            hex[2 * n] = '\0';
            if (n > 0)
                log_success(log_fd, "ct %s %s\n", id, hex);
        }
        p11kms_result_free(&r);
        /* Kills during start-up and during maintain too. */
        if (i % 7 == 6) {
            p11kms_close(svc);
            svc = fx_open(NULL);
        }
        if (i % 5 == 4)
            note(&shown, "maintain", p11kms_maintain(svc, who, NULL, NULL, &e), &e);
        memcpy(prev, id, sizeof(prev));
        snprintf(prev_alias, sizeof(prev_alias), "%s", alias);
    }
}

/* --- the parent: invariants after a crash -------------------------------------------------- */

static p11kms_error e;

typedef struct invariants {
    p11kms *svc;
    const p11kms_principal *who;
    fx_list *maintain_lines;
    int keys, enabled, disabled, pending, aliases, orphans;
} invariants;

static int collect_version(const p11kms_rotation *r, void *arg)
{
    char v[16];
    snprintf(v, sizeof(v), "%u", r->version);
    fx_list_add(arg, v);
    return 0;
}

static void check_versions(invariants *inv, const char *id, const p11kms_key_metadata *md)
{
    fx_list versions = {0};
    CHECK_OK(p11kms_list_key_rotations(inv->svc, inv->who, id, collect_version, &versions, &e), &e);
    CHECK(versions.count == md->version_count);
    uint8_t raw[KEY_UUID_LEN];
    REQUIRE(uuid_parse(id, raw));
    for (size_t i = 0; i < versions.count; i++) {
        uint32_t v = (uint32_t)strtoul(versions.items[i], NULL, 10);
        CHECK(v == i + 1);
        p11_key *key = NULL;
        p11kms_err rc = keystore_version_find(inv->svc, raw, v, &key, &e);
        CHECK_OK(rc, &e);
        if (rc != P11KMS_OK) {
            /* Data under this version would be lost. p11kms never modifies key objects (SoftHSM's
             * file store truncates and rewrites an object file on C_SetAttributeValue, and a
             * kill there leaves it empty), so this must not happen. */
            fprintf(stderr,
                    "   key %s (%s) version %u has no object in the token: data under it is "
                    "lost%s\n",
                    id, p11kms_key_state_name(md->state), v,
                    fx_list_find_sub(inv->maintain_lines, id) >= 0 ? " (maintain reported it)"
                                                                   : " (maintain did not say)");
            CHECK(fx_list_find_sub(inv->maintain_lines, id) >= 0);
            continue;
        }
        p11_key_attributes a;
        CHECK_OK(p11_key_get_attributes(inv->svc->token, key, &a, &e), &e);
        /* States live in the key record; the objects keep the attributes they were made with. */
        bool usable = true;
        CHECK(a.encrypt == usable && a.decrypt == usable);
        CHECK(a.sensitive && !a.extractable && a.never_extractable);
        if (a.encrypt != usable || a.decrypt != usable)
            fprintf(stderr, "   key %s (%s) version %u: CKA_ENCRYPT %d CKA_DECRYPT %d\n", id,
                    p11kms_key_state_name(md->state), v, a.encrypt, a.decrypt);
    }
    if (versions.count > 0)
        CHECK(strtoul(versions.items[versions.count - 1], NULL, 10) == md->current_version);
    fx_list_free(&versions);
}

static void check_round_trip(invariants *inv, const char *id, uint32_t current)
{
    static const uint8_t pt[] = "after the crash";
    p11kms_result ct, r;
    CHECK_OK(p11kms_encrypt(inv->svc, inv->who, id, NULL, pt, sizeof(pt), &ct, &e), &e);
    CHECK(ct.key_version == current);
    CHECK_OK(p11kms_decrypt(inv->svc, inv->who, id, NULL, ct.ciphertext, ct.ciphertext_len, &r, &e),
             &e);
    CHECK(fx_same(r.plaintext, r.plaintext_len, pt, sizeof(pt)));
    p11kms_result_free(&r);
    p11kms_result_free(&ct);
}

static void check_key(invariants *inv, const char *id)
{
    p11kms_key_metadata md = {0};
    p11kms_err rc = p11kms_describe_key(inv->svc, inv->who, id, &md, &e);
    CHECK_OK(rc, &e);
    if (rc != P11KMS_OK)
        return;
    inv->keys++;
    CHECK(md.version_count >= 1 && md.current_version == md.version_count);
    check_versions(inv, id, &md);
    p11kms_result r;
    switch (md.state) {
    case P11KMS_KEY_ENABLED:
        inv->enabled++;
        check_round_trip(inv, id, md.current_version);
        break;
    case P11KMS_KEY_DISABLED:
        inv->disabled++;
        CHECK_ERR(p11kms_encrypt(inv->svc, inv->who, id, NULL, (const uint8_t *)"x", 1, &r, &e),
                  P11KMS_E_DISABLED, &e);
        p11kms_result_free(&r);
        /* The key must be whole: enabling it gives a working key. */
        CHECK_OK(p11kms_enable_key(inv->svc, inv->who, id, &e), &e);
        check_round_trip(inv, id, md.current_version);
        CHECK_OK(p11kms_disable_key(inv->svc, inv->who, id, &e), &e);
        break;
    case P11KMS_KEY_PENDING_DELETION:
        inv->pending++;
        CHECK(md.deletion_date > time(NULL));
        CHECK_ERR(p11kms_encrypt(inv->svc, inv->who, id, NULL, (const uint8_t *)"x", 1, &r, &e),
                  P11KMS_E_INVALID_STATE, &e);
        p11kms_result_free(&r);
        break;
    default:
        CHECK(!"unexpected key state");
        fprintf(stderr, "   key %s is %s\n", id, p11kms_key_state_name(md.state));
        break;
    }

    /* Every alias the record lists points back to this key. */
    fx_list aliases = {0};
    CHECK_OK(p11kms_list_aliases(inv->svc, inv->who, id, fx_collect_alias, &aliases, &e), &e);
    for (size_t i = 0; i < aliases.count; i++) {
        p11kms_key_metadata amd = {0};
        rc = p11kms_describe_key(inv->svc, inv->who, aliases.items[i], &amd, &e);
        CHECK_OK(rc, &e);
        CHECK(rc == P11KMS_OK && strcmp(amd.key_id, id) == 0);
        if (rc == P11KMS_OK && strcmp(amd.key_id, id) != 0)
            fprintf(stderr, "   key %s lists %s, which points to %s\n", id, aliases.items[i],
                    amd.key_id);
    }
    fx_list_free(&aliases);
}

static void check_aliases(invariants *inv)
{
    fx_list all = {0};
    CHECK_OK(p11kms_list_aliases(inv->svc, inv->who, NULL, fx_collect_alias_target, &all, &e), &e);
    for (size_t i = 0; i < all.count; i++) {
        char *eq = strchr(all.items[i], '=');
        REQUIRE(eq != NULL);
        *eq = '\0';
        const char *alias = all.items[i], *target = eq + 1;
        inv->aliases++;
        p11kms_key_metadata md = {0};
        p11kms_err rc = p11kms_describe_key(inv->svc, inv->who, alias, &md, &e);
        CHECK_OK(rc, &e);
        CHECK(rc == P11KMS_OK && strcmp(md.key_id, target) == 0);
        fx_list of_key = {0};
        CHECK_OK(p11kms_list_aliases(inv->svc, inv->who, target, fx_collect_alias, &of_key, &e),
                 &e);
        CHECK(fx_list_has(&of_key, alias));
        if (!fx_list_has(&of_key, alias))
            fprintf(stderr, "   alias %s points to %s, whose record does not list it\n", alias,
                    target);
        fx_list_free(&of_key);
    }
    fx_list_free(&all);
}

static int check_object(const uint8_t id[KEY_UUID_LEN], uint32_t version, void *arg)
{
    invariants *inv = arg;
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uuid_format(id, id_text);
    key_meta *m = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_meta_read(inv->svc, id_text, &m, &probe);
    bool listed = rc == P11KMS_OK && keymeta_version(m, version) != NULL;
    keymeta_free(m);
    if (listed)
        return 0;
    inv->orphans++;
    char name[80];
    snprintf(name, sizeof(name), "p11kms/%s/v%u", id_text, version);
    bool reported = fx_list_find_sub(inv->maintain_lines, name) >= 0;
    CHECK(reported);
    if (!reported)
        fprintf(stderr, "   key object %s has no record and maintain did not report it\n", name);
    return 0;
}

typedef struct claim_count {
    p11kms *svc;
    int *unnamed;
} claim_count;

/* A claim whose version no record lists: an interrupted create or rotation. Its seal must
 * verify (the record that names a version clears the seal in the same transaction), or maintain
 * would never destroy its object. */
static int count_unnamed_claim(const char *id_text, uint32_t version, int64_t claimed,
                               keystore_claim_state state, void *arg)
{
    claim_count *c = arg;
    (void)claimed;
    key_meta *m = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_meta_read(c->svc, id_text, &m, &probe);
    if (rc != P11KMS_OK || keymeta_version(m, version) == NULL) {
        (*c->unnamed)++;
        CHECK(state == CLAIM_PENDING);
    }
    keymeta_free(m);
    return 0;
}

/* Every key and ciphertext the child logged after a success still exists and decrypts (the
 * key's state may have changed since: a disabled key is enabled for the check). */
static void check_log(p11kms *svc, const p11kms_principal *who, const char *log_path)
{
    char *text = test_read_file(log_path, NULL);
    int keys = 0, cts = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char id[P11KMS_KEY_ID_LEN + 1] = "", hex[1024] = "";
        if (sscanf(line, "key %36s", id) == 1) {
            keys++;
            p11kms_key_metadata md = {0};
            CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
        } else if (sscanf(line, "ct %36s %1023s", id, hex) == 2) {
            cts++;
            size_t n = strlen(hex) / 2;
            uint8_t *ct = malloc(n + 1);
            REQUIRE(ct != NULL);
            for (size_t k = 0; k < n; k++)
                ct[k] = (uint8_t)strtoul((char[3]){hex[2 * k], hex[2 * k + 1], 0}, NULL, 16);
            p11kms_key_metadata md = {0};
            CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
            bool disabled = md.state == P11KMS_KEY_DISABLED;
            if (disabled)
                CHECK_OK(p11kms_enable_key(svc, who, id, &e), &e);
            if (md.state == P11KMS_KEY_ENABLED || disabled) {
                p11kms_result r;
                CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, ct, n, &r, &e), &e);
                p11kms_result_free(&r);
            }
            if (disabled)
                CHECK_OK(p11kms_disable_key(svc, who, id, &e), &e);
            free(ct);
        }
    }
    free(text);
    fprintf(stderr, "   the log's %d keys and %d ciphertexts hold\n", keys, cts);
}

static void check_invariants(p11kms *svc, const p11kms_principal *who, fx_list *lines)
{
    invariants inv = {svc, who, lines, 0, 0, 0, 0, 0, 0};
    int unnamed = 0;
    CHECK_OK(keystore_claims_list(svc, count_unnamed_claim, &(claim_count){svc, &unnamed}, &e), &e);
    CHECK(unnamed == 0);
    if (unnamed != 0)
        fprintf(stderr, "   %d version claims no record names after maintain\n", unnamed);

    fx_list keys = {0};
    fx_list_keys(svc, who, &keys);
    for (size_t i = 0; i < keys.count; i++)
        check_key(&inv, keys.items[i]);
    fx_list_free(&keys);
    check_aliases(&inv);
    CHECK_OK(keystore_version_list(svc, check_object, &inv, &e), &e);
    /* With a grace period of 0 and the child dead, maintain destroyed every unnamed object. */
    CHECK(inv.orphans == 0);
    fprintf(stderr,
            "   %d keys (%d enabled, %d disabled, %d pending deletion), %d aliases, %d key "
            "objects without a record\n",
            inv.keys, inv.enabled, inv.disabled, inv.pending, inv.aliases, inv.orphans);
}

/* Kills that left a version claimed but named by no record (interrupted create or rotation). */
static int interrupted;

/* Returns false when the service cannot be opened any more (later rounds cannot run). */
static bool run_round(int round, unsigned seed, const p11kms_principal *who)
{
    unsigned state = seed;
    unsigned kill_ms = KILL_MIN_MS + next_random(&state) % (KILL_MAX_MS - KILL_MIN_MS + 1);
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    fflush(NULL);
    char log_path[4200];
    snprintf(log_path, sizeof(log_path), "%s/crash-round-%d.log", test_env("P11KMS_TEST_ROOT"),
             round);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    REQUIRE(log_fd >= 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(ready[0]);
        churn(round, state, ready[1], log_fd);
        _exit(0);
    }
    close(log_fd);
    close(ready[1]);
    char got = 0;
    ssize_t n = read(ready[0], &got, 1);
    close(ready[0]);
    CHECK(n == 1 && got == 'r');
    fx_sleep_ms(kill_ms);
    kill(child, SIGKILL);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    CHECK(killed);
    softhsm_guard_repair();
    fx_say("round %d: child killed after %u ms of mutations%s", round, kill_ms,
           killed ? "" : " (it had already died!)");

    p11kms *svc = NULL;
    p11kms_err rc = p11kms_open(NULL, &svc, &e);
    CHECK_OK(rc, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "   the service does not open after the crash\n");
        return false;
    }
    int unnamed = 0;
    CHECK_OK(keystore_claims_list(svc, count_unnamed_claim, &(claim_count){svc, &unnamed}, &e), &e);
    if (unnamed > 0) {
        interrupted++;
        fprintf(stderr, "   the kill interrupted a create or rotation (%d unnamed claims)\n",
                unnamed);
    }
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    check_invariants(svc, who, &lines);
    check_log(svc, who, log_path);

    fx_list again = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &again, &e), &e);
    for (size_t i = 0; i < again.count; i++) {
        bool leftover_only = strstr(again.items[i], "left in place") != NULL;
        CHECK(leftover_only);
        if (!leftover_only)
            fprintf(stderr, "   second maintain repaired again: %s\n", again.items[i]);
    }
    fx_list_free(&again);
    fx_list_free(&lines);
    p11kms_close(svc);
    return true;
}

int main(void)
{
    const char *seed_text = getenv("P11KMS_TEST_SEED");
    unsigned seed = seed_text ? (unsigned)strtoul(seed_text, NULL, 10)
                              : (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    const char *rounds_text = getenv("P11KMS_CRASH_ROUNDS");
    /* Under valgrind (make memcheck sets P11KMS_TEST_WRAPPER) every round costs seconds. */
    int rounds = rounds_text                             ? atoi(rounds_text)
                 : getenv("P11KMS_TEST_WRAPPER") != NULL ? WRAPPED_ROUNDS
                                                         : DEFAULT_ROUNDS;
    fx_say("seed %u (replay with P11KMS_TEST_SEED=%u), %d rounds", seed, seed, rounds);
    /* The child is dead when maintain runs: no create is in progress, so no grace is needed. */
    char *config = fx_config("crash.yaml", "orphan-grace-seconds: 0", NULL, NULL);
    REQUIRE(setenv("P11KMS_CONFIG", config, 1) == 0);
    free(config);
    p11kms_principal *who = fx_principal("unix:user:crash-parent");

    fx_say("p11kms_maintain on a clean token reports nothing");
    p11kms *svc = fx_open(NULL);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(lines.count == 0);
    char a[P11KMS_KEY_ID_LEN + 1], b[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "clean a", a);
    fx_create_key(svc, who, "clean b", b);
    CHECK_OK(p11kms_create_alias(svc, who, "alias/clean", a, &e), &e);
    CHECK_OK(p11kms_update_alias(svc, who, "alias/clean", b, &e), &e);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, a, NULL, &e), &e);
    CHECK_OK(p11kms_disable_key(svc, who, b, &e), &e);
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, a, 7, NULL, &e), &e);
    CHECK_OK(p11kms_cancel_key_deletion(svc, who, a, &e), &e);
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(lines.count == 0);
    check_invariants(svc, who, &lines);
    fx_list_free(&lines);
    p11kms_close(svc);

    softhsm_guard_arm();
    for (int round = 1; round <= rounds; round++) {
        if (!run_round(round, seed + (unsigned)round * 7919u, who))
            break;
    }
    fx_say("kills that interrupted a create or rotation between claim and record: %d", interrupted);
    fx_say("kills that emptied SoftHSM's token.object during C_Login: %u", softhsm_guard_repairs());

    p11kms_principal_free(who);
    return check_finish("provider-crash-test");
}
