/* The session pool under many threads, recovery after the token dropped every session (which
 * also logs out), fork() (the child re-initializes before first use, the parent carries on), and
 * changes made by another process (deleted and re-created data objects, a key disabled
 * elsewhere). */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pkcs11-testutil.h"

#define THREADS 16
#define ROUNDS 200
#define POOL 4

static p11kms_error e;
/* The token stores CKO_DATA objects (pt_token_stores_data): only then are they checked too. */
static int data_objects;

struct worker {
    p11_token *t;
    p11_key *k;
    int id;
    int rounds;
    int ok;
    int wrong;       /* a wrong answer: never allowed */
    int unavailable; /* KEY_UNAVAILABLE: allowed only while sessions are being torn down */
    int other;
    _Atomic int *stop;
    _Atomic int *started; /* counts workers past their first round trip */
};

/* One encrypt + decrypt round trip with a unique IV; returns 0 on success. */
static int round_trip(struct worker *w, int round)
{
    p11kms_error err = {0};
    uint8_t iv[12] = {0}, pt[300], ct[316], back[300], aad[32];
    iv[0] = (uint8_t)w->id;
    iv[1] = (uint8_t)(w->id >> 8);
    memcpy(iv + 4, &round, sizeof(round));
    iv[11] = 0x77;
    size_t len = (size_t)(w->id * 31 + round) % sizeof(pt);
    for (size_t i = 0; i < len; i++)
        pt[i] = (uint8_t)(i ^ (size_t)w->id ^ (size_t)round);
    int aad_len = snprintf((char *)aad, sizeof(aad), "w%d-r%d", w->id, round);
    p11kms_err rc =
        p11_gcm_encrypt(w->t, w->k, iv, 12, aad, (size_t)aad_len, pt, len, ct, 16, &err);
    if (rc == P11KMS_OK) {
        memset(back, 0, sizeof(back));
        rc =
            p11_gcm_decrypt(w->t, w->k, iv, 12, aad, (size_t)aad_len, ct, len + 16, 16, back, &err);
        if (rc == P11KMS_OK && memcmp(back, pt, len) != 0) {
            w->wrong++;
            return -1;
        }
    }
    if (rc == P11KMS_OK && round % 50 == 0) {
        /* a tampered tag is still refused under load */
        ct[len] ^= 1;
        p11kms_err bad =
            p11_gcm_decrypt(w->t, w->k, iv, 12, aad, (size_t)aad_len, ct, len + 16, 16, back, &err);
        if (bad != P11KMS_E_INVALID_CIPHERTEXT && bad != P11KMS_E_KEY_UNAVAILABLE) {
            w->wrong++;
            return -1;
        }
    }
    if (rc == P11KMS_OK) {
        w->ok++;
        return 0;
    }
    if (rc == P11KMS_E_KEY_UNAVAILABLE)
        w->unavailable++;
    else {
        w->other++;
        fprintf(stderr, "worker %d round %d: %s: %s\n", w->id, round, p11kms_error_class(rc),
                err.message);
    }
    return -1;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->rounds || (w->stop != NULL && !atomic_load(w->stop)); i++) {
        round_trip(w, i);
        if (i == 0 && w->started != NULL)
            atomic_fetch_add(w->started, 1);
    }
    return NULL;
}

static void test_threads(p11_token *t, p11_key *k)
{
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.t = t, .k = k, .id = i, .rounds = ROUNDS};
        REQUIRE(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        bad += w[i].wrong + w[i].unavailable + w[i].other;
    }
    fprintf(stderr, "threads: %d round trips verified, %d failed\n", ok, bad);
    CHECK(ok == THREADS * ROUNDS);
    CHECK(bad == 0);
}

static void check_everything_works(p11_token *t, p11_key *k, const char *when)
{
    struct worker w = {.t = t, .k = k, .id = 99};
    CHECK(round_trip(&w, 1) == 0);
    if (data_objects) {
        uint8_t *v = NULL;
        size_t len = 0;
        CHECK_OK(p11_data_read(t, "p11kms-test/pool", &v, &len, &e), &e);
        CHECK(len == 4 && v != NULL && memcmp(v, "pool", 4) == 0);
        free(v);
    }
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, k, &a, &e), &e);
    uint8_t r[16];
    CHECK_OK(p11_token_random(t, r, sizeof(r), &e), &e);
    if (check_failures > 0)
        fprintf(stderr, "  (failures so far, checked %s)\n", when);
}

static void test_recovery(p11_token *t, p11_key *k)
{
    /* Closing every session also logs the application out: the next operation must open a new
     * session, log in again and find the (private) key again. */
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e);
    check_everything_works(t, k, "after closing all sessions");
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e);
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e);
    check_everything_works(t, k, "after closing all sessions twice");

    /* The same while threads are busy: answers must stay right; an operation may give up with
     * KEY_UNAVAILABLE if its sessions vanish more often than the bounded retries allow. */
    _Atomic int stop = 0;
    pthread_t th[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){.t = t, .k = k, .id = 100 + i, .rounds = 20, .stop = &stop};
        REQUIRE(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < 10; i++) {
        p11kms_error err = {0};
        p11kms_err rc = p11_token_test_close_all_sessions(t, &err);
        CHECK(rc == P11KMS_OK || rc == P11KMS_E_KEY_UNAVAILABLE);
        usleep(20000);
    }
    atomic_store(&stop, 1);
    int ok = 0, wrong = 0, unavailable = 0, other = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        wrong += w[i].wrong;
        unavailable += w[i].unavailable;
        other += w[i].other;
    }
    fprintf(stderr, "sessions closed under load: %d ok, %d unavailable, %d other, %d wrong\n", ok,
            unavailable, other, wrong);
    CHECK(wrong == 0);
    CHECK(other == 0);
    CHECK(ok > 0);
    check_everything_works(t, k, "after closing sessions under load");
}

/* Runs in a forked child: uses the inherited token, which must re-initialize first. */
static int child_uses_token(p11_token *t, p11_key *k, const uint8_t *ct, size_t ct_len,
                            const uint8_t *iv, const uint8_t *pt)
{
    check_failures = 0;
    uint8_t back[64];
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, ct_len, 16, back, &e), &e);
    CHECK(memcmp(back, pt, ct_len - 16) == 0);
    check_everything_works(t, k, "in a forked child");
    return check_failures == 0 ? 0 : 1;
}

static void wait_child(pid_t pid, const char *what)
{
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "  child (%s) failed, status 0x%x\n", what, status);
}

static void test_fork(p11_token *t, p11_key *k)
{
    uint8_t iv[12] = {0xf0, 0x0d}, pt[40] = "encrypted by the parent", ct[56];
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), &e);

    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int rc = child_uses_token(t, k, ct, sizeof(ct), iv, pt);
        p11_token_close(t);
        _exit(rc);
    }
    wait_child(pid, "plain fork");
    check_everything_works(t, k, "in the parent after fork");

    /* fork while other threads hold sessions: the child must not wait for them */
    _Atomic int stop = 0, started = 0;
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){
            .t = t, .k = k, .id = 200 + i, .rounds = 10, .stop = &stop, .started = &started};
        REQUIRE(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    /* Fork only once every worker is past thread start-up: a thread that is still being set up
     * may hold the C library's (or ASan's) allocator lock, which the child would inherit. In
     * steady state the workers allocate nothing outside the module, and the layer keeps them out
     * of the module while fork() runs. */
    while (atomic_load(&started) < 4)
        usleep(1000);
    for (int n = 0; n < 3; n++) {
        fflush(NULL);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int rc = child_uses_token(t, k, ct, sizeof(ct), iv, pt);
            _exit(rc); /* without close: a child may also just exit */
        }
        wait_child(pid, "fork under load");
    }
    atomic_store(&stop, 1);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].wrong + w[i].unavailable + w[i].other;
    }
    CHECK(bad == 0);
    check_everything_works(t, k, "in the parent after forks under load");
}

/* Another process changes objects the parent has cached handles for. */
static void test_other_process(p11_token *t, p11_key *k)
{
    uint8_t *v = NULL;
    size_t len = 0;
    if (data_objects) {
        CHECK_OK(p11_data_create(t, "p11kms-test/shared", (const uint8_t *)"old", 3, &e), &e);
        CHECK_OK(p11_data_read(t, "p11kms-test/shared", &v, &len, &e), &e);
        free(v);
    }

    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        p11kms_error ce = {0};
        int rc = 0;
        if (data_objects) {
            rc |= p11_data_delete(t, "p11kms-test/shared", &ce) != P11KMS_OK;
            rc |= p11_data_create(t, "p11kms-test/shared", (const uint8_t *)"recreated", 9, &ce) !=
                  P11KMS_OK;
        }
        rc |= p11_key_set_usage(t, k, false, &ce) != P11KMS_OK;
        const uint8_t id[] = "made-by-child";
        p11_key *ck = NULL;
        rc |= p11_key_generate(t, id, sizeof(id) - 1, "p11kms-test/child", &ck, &ce) != P11KMS_OK;
        if (rc)
            fprintf(stderr, "child: %s\n", ce.message);
        p11_token_close(t);
        _exit(rc);
    }
    wait_child(pid, "changes objects");

    /* the cached handle points to the deleted object: found again by label */
    if (data_objects) {
        CHECK_OK(p11_data_read(t, "p11kms-test/shared", &v, &len, &e), &e);
        CHECK(len == 9 && v != NULL && memcmp(v, "recreated", 9) == 0);
        free(v);
    }
    /* the key was disabled elsewhere: the cached handle sees it at once */
    uint8_t iv[12] = {5}, pt[8] = "x", ct[24];
    p11kms_error_clear(&e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), P11KMS_E_TOKEN,
              &e);
    /* SoftHSM answers CKR_KEY_FUNCTION_NOT_PERMITTED, NSS softokn CKR_KEY_TYPE_INCONSISTENT */
    CHECK(e.ckr == CKR_KEY_FUNCTION_NOT_PERMITTED || e.ckr == CKR_KEY_TYPE_INCONSISTENT);
    CHECK_OK(p11_key_set_usage(t, k, true, &e), &e);
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), &e);
    const uint8_t id[] = "made-by-child";
    p11_key *ck = NULL;
    CHECK_OK(p11_key_find(t, id, sizeof(id) - 1, &ck, &e), &e);
    if (ck != NULL) {
        CHECK_OK(p11_gcm_encrypt(t, ck, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), &e);
        CHECK_OK(p11_key_destroy(t, ck, &e), &e);
    }
}

int main(void)
{
    p11_token_config cfg = pt_config();
    cfg.pool_size = POOL;
    p11_token *t = pt_open(&cfg);
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(info.pool_size == POOL);
    const uint8_t id[] = "pool-key";
    p11_key *k = NULL;
    CHECK_OK(p11_key_generate(t, id, sizeof(id) - 1, "p11kms-test/pool-key", &k, &e), &e);
    REQUIRE(k != NULL);
    data_objects = pt_token_stores_data(t, "the data object checks (reads under load and "
                                           "after recovery, one re-created by another process)");
    if (data_objects)
        CHECK_OK(p11_data_create(t, "p11kms-test/pool", (const uint8_t *)"pool", 4, &e), &e);

    test_threads(t, k);
    test_recovery(t, k);
    test_fork(t, k);
    test_other_process(t, k);
    p11_token_close(t);
    return check_finish("pkcs11-pool-test");
}
