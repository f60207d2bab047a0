/* Token randomness for keys in blocks per thread (pkcs11/random-pool.c), through the counting
 * shim (tests/pkcs11-shim.c): one C_GenerateRandom per P11_RANDOM_POOL_BYTES, every key handed
 * out differs, the block lives in the secure heap and is freed at thread exit, a failed refill
 * hands out nothing, a block drawn before a fork is not used by the child (which would otherwise
 * hand out the parent's next key), a block of one token is not used for another, larger requests
 * and token.rng: openssl go to their source directly. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pkcs11-testutil.h"

#define KEY_LEN 32
#define PER_BLOCK (P11_RANDOM_POOL_BYTES / KEY_LEN)
#define MANY (3 * PER_BLOCK + 4) /* four blocks, the last one partly used */

static p11kms_error e;

static struct {
    void (*fail)(const char *fn, CK_RV rv, int times);
    unsigned long (*count)(const char *fn);
} shim;

static void shim_bind(void)
{
    shim.fail = (void (*)(const char *, CK_RV, int))pt_shim_symbol("p11kms_shim_fail");
    shim.count = (unsigned long (*)(const char *))pt_shim_symbol("p11kms_shim_count");
}

static unsigned long draws(void)
{
    return shim.count("C_GenerateRandom");
}

static p11_token *open_shim(p11_rng_source rng)
{
    p11_token_config cfg = pt_config();
    cfg.module = pt_shim_path();
    cfg.rng = rng;
    cfg.skip_capability_check = true; /* its self-test draws random bytes too */
    return pt_open(&cfg);
}

static int all_different(uint8_t (*keys)[KEY_LEN], int n)
{
    static const uint8_t zero[KEY_LEN];
    for (int i = 0; i < n; i++) {
        if (memcmp(keys[i], zero, KEY_LEN) == 0)
            return 0;
        for (int j = i + 1; j < n; j++)
            if (memcmp(keys[i], keys[j], KEY_LEN) == 0)
                return 0;
    }
    return 1;
}

static void test_blocks(p11_token *t)
{
    fprintf(stderr,
            "== %d keys: %d calls of the token, all keys different, pool in the secure "
            "heap\n",
            MANY, 4);
    static uint8_t keys[MANY][KEY_LEN];
    size_t secure_before = CRYPTO_secure_used();
    unsigned long before = draws();
    for (int i = 0; i < MANY; i++)
        CHECK_OK(p11_token_random_key(t, keys[i], KEY_LEN, &e), &e);
    CHECK(draws() - before == 4);
    CHECK(all_different(keys, MANY));
    CHECK(CRYPTO_secure_used() >= secure_before + P11_RANDOM_POOL_BYTES);

    fprintf(stderr, "== a request longer than %d bytes goes to the token directly\n",
            P11_RANDOM_POOL_TAKE_MAX);
    uint8_t big[P11_RANDOM_POOL_TAKE_MAX + 1];
    before = draws();
    CHECK_OK(p11_token_random_key(t, big, sizeof(big), &e), &e);
    CHECK(draws() - before == 1);
    CHECK_ERR(p11_token_random_key(t, NULL, 8, &e), P11KMS_E_VALIDATION, &e);
    CHECK_OK(p11_token_random_key(t, big, 0, &e), &e);
}

static void test_failed_refill(p11_token *t)
{
    fprintf(stderr, "== a refill the token refuses hands out nothing; the next one works\n");
    uint8_t key[KEY_LEN];
    /* Use up the partly used block of test_blocks (4 keys taken from it). */
    for (int i = 4; i < PER_BLOCK; i++)
        CHECK_OK(p11_token_random_key(t, key, KEY_LEN, &e), &e);
    unsigned long before = draws();
    memset(key, 0xa5, sizeof(key));
    shim.fail("C_GenerateRandom", CKR_RANDOM_NO_RNG, 1);
    p11kms_error fe = {0};
    CHECK(p11_token_random_key(t, key, KEY_LEN, &fe) != P11KMS_OK);
    CHECK(fe.ckr == CKR_RANDOM_NO_RNG);
    uint8_t untouched[KEY_LEN];
    memset(untouched, 0xa5, sizeof(untouched));
    CHECK(memcmp(key, untouched, KEY_LEN) == 0);
    CHECK_OK(p11_token_random_key(t, key, KEY_LEN, &e), &e);
    CHECK(draws() - before == 2);
}

static void test_fork(p11_token *t)
{
    fprintf(stderr, "== after a fork, parent and child hand out different keys\n");
    uint8_t first[KEY_LEN], parent_key[KEY_LEN], child_key[KEY_LEN];
    CHECK_OK(p11_token_random_key(t, first, KEY_LEN, &e), &e); /* the block is partly used */
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        uint8_t key[KEY_LEN];
        p11kms_error ce = {0};
        int ok = p11_token_random_key(t, key, KEY_LEN, &ce) == P11KMS_OK &&
                 write(fds[1], key, sizeof(key)) == (ssize_t)sizeof(key);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    CHECK_OK(p11_token_random_key(t, parent_key, KEY_LEN, &e), &e);
    CHECK(read(fds[0], child_key, sizeof(child_key)) == (ssize_t)sizeof(child_key));
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(parent_key, child_key, KEY_LEN) != 0);
    CHECK(memcmp(first, parent_key, KEY_LEN) != 0);
}

/* A worker that draws from whichever token is current at each step, between barriers. */
static struct {
    pthread_barrier_t step;
    p11_token *token;
    unsigned long draws_second;
    size_t secure_held;
    int ok;
} worker;

static void *worker_main(void *arg)
{
    (void)arg;
    uint8_t key[KEY_LEN];
    p11kms_error we = {0};
    int ok = p11_token_random_key(worker.token, key, KEY_LEN, &we) == P11KMS_OK;
    worker.secure_held = CRYPTO_secure_used();
    pthread_barrier_wait(&worker.step); /* 1: main closes the first token, opens another */
    pthread_barrier_wait(&worker.step); /* 2 */
    unsigned long before = draws();
    ok = ok && p11_token_random_key(worker.token, key, KEY_LEN, &we) == P11KMS_OK;
    worker.draws_second = draws() - before;
    worker.ok = ok;
    return NULL;
}

static void test_threads_and_tokens(void)
{
    fprintf(stderr, "== a thread's block serves only the token it came from, and is freed when "
                    "the thread exits\n");
    p11_token *first = open_shim(P11_RNG_TOKEN);
    size_t secure_before = CRYPTO_secure_used();
    worker.token = first;
    REQUIRE(pthread_barrier_init(&worker.step, NULL, 2) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, worker_main, NULL) == 0);
    pthread_barrier_wait(&worker.step); /* 1: the worker holds a block of the first token */
    CHECK(worker.secure_held >= secure_before + P11_RANDOM_POOL_BYTES);
    p11_token_close(first);
    worker.token = open_shim(P11_RNG_TOKEN);
    pthread_barrier_wait(&worker.step); /* 2 */
    REQUIRE(pthread_join(th, NULL) == 0);
    pthread_barrier_destroy(&worker.step);
    CHECK(worker.ok);
    /* 31 bytes-worth of keys were left in the block of the closed token: not used for this one */
    CHECK(worker.draws_second == 1);
    CHECK(CRYPTO_secure_used() == secure_before); /* the worker's block went with the thread */
    p11_token_close(worker.token);
}

static void test_openssl_source(void)
{
    fprintf(stderr, "== token.rng: openssl draws nothing from the token\n");
    p11_token *t = open_shim(P11_RNG_OPENSSL);
    uint8_t keys[3][KEY_LEN];
    unsigned long before = draws();
    for (int i = 0; i < 3; i++)
        CHECK_OK(p11_token_random_key(t, keys[i], KEY_LEN, &e), &e);
    CHECK(draws() == before);
    CHECK(all_different(keys, 3));
    p11_token_close(t);
}

int main(void)
{
    REQUIRE(CRYPTO_secure_malloc_init(64 * 1024, 32) != 0);
    shim_bind();
    p11_token *t = open_shim(P11_RNG_TOKEN);
    test_blocks(t);
    test_failed_refill(t);
    test_fork(t);
    p11_token_close(t);
    test_threads_and_tokens();
    test_openssl_source();
    return check_finish("pkcs11-random-pool-test");
}
