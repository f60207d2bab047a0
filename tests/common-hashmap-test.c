/* common/hashmap: string and byte-string keys (NUL bytes inside, equal prefixes, the empty key),
 * replacement, removal and re-insertion, growth across many resizes, a map whose keys come and
 * go (it must not grow without bound), iteration and freeing. Then every allocation of
 * hashmap_new and hashmap_put made to fail in turn: the call must report the failure, leave the
 * map as it was and leak nothing; replacing, looking up and removing must not allocate at all.
 * The allocations fail through tests/lib/failalloc.c, so those checks are left out under
 * AddressSanitizer, and the test is not in MEMCHECK_TESTS: it counts its own leaks. */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/hashmap.h"
#include "failalloc.h"

static char values[4096]; /* distinct value pointers: &values[i] */
#define VAL(i) ((void *)&values[(i)])

/* A binary key of 8 bytes for i, most of them with NUL bytes. */
static void num_key(uint64_t i, unsigned char out[8])
{
    for (int b = 0; b < 8; b++)
        out[b] = (unsigned char)(i >> (8 * b));
}

static void test_strings(void)
{
    hashmap *m = hashmap_new();
    REQUIRE(m != NULL);
    void *old = VAL(1);
    CHECK(hashmap_put(m, "alpha", VAL(1), &old) && old == NULL);
    CHECK(hashmap_put(m, "beta", VAL(2), NULL));
    CHECK(hashmap_count(m) == 2);
    CHECK(hashmap_get(m, "alpha") == VAL(1));
    CHECK(hashmap_get(m, "beta") == VAL(2));
    CHECK(hashmap_get(m, "gamma") == NULL);
    /* Replacing returns the old value and keeps the count. */
    CHECK(hashmap_put(m, "alpha", VAL(3), &old) && old == VAL(1));
    CHECK(hashmap_get(m, "alpha") == VAL(3));
    CHECK(hashmap_count(m) == 2);
    /* The string functions and the byte functions name the same keys. */
    CHECK(hashmap_get_bytes(m, "beta", 4) == VAL(2));
    CHECK(hashmap_get_bytes(m, "beta", 5) == NULL); /* with its NUL: another key */
    CHECK(hashmap_remove(m, "beta") == VAL(2));
    CHECK(hashmap_remove(m, "beta") == NULL);
    CHECK(hashmap_count(m) == 1);
    /* Keys are copied: the caller's buffer may change. */
    char buf[] = "delta";
    CHECK(hashmap_put(m, buf, VAL(4), NULL));
    buf[0] = 'D';
    CHECK(hashmap_get(m, "delta") == VAL(4));
    CHECK(hashmap_get(m, buf) == NULL);
    hashmap_free(m, NULL);
}

static void test_bytes(void)
{
    hashmap *m = hashmap_new();
    REQUIRE(m != NULL);
    /* Keys that differ only after a NUL byte, or in how many NUL bytes end them. */
    static const struct {
        const char *key;
        size_t len;
    } keys[] = {
        {"a\0b", 3},
        {"a\0c", 3},
        {"a", 1},
        {"a\0", 2},
        {"a\0\0", 3},
        {"\0", 1},
        {"\0\0", 2},
        /* equal prefixes */
        {"key", 3},
        {"key1", 4},
        {"key12", 5},
        {"ke", 2},
        {"k", 1},
    };
    size_t n = sizeof(keys) / sizeof(keys[0]);
    for (size_t i = 0; i < n; i++)
        CHECK(hashmap_put_bytes(m, keys[i].key, keys[i].len, VAL(i), NULL));
    CHECK(hashmap_count(m) == n);
    for (size_t i = 0; i < n; i++)
        CHECK(hashmap_get_bytes(m, keys[i].key, keys[i].len) == VAL(i));
    CHECK(hashmap_get_bytes(m, "a\0d", 3) == NULL);
    CHECK(hashmap_get_bytes(m, "key123", 6) == NULL);
    CHECK(hashmap_get(m, "a") == VAL(2));
    CHECK(hashmap_get(m, "key1") == VAL(8));
    /* The empty key: (NULL, 0), (anything, 0) and "" are the same key. */
    CHECK(hashmap_get_bytes(m, NULL, 0) == NULL);
    CHECK(hashmap_put_bytes(m, NULL, 0, VAL(100), NULL));
    CHECK(hashmap_get(m, "") == VAL(100));
    CHECK(hashmap_get_bytes(m, "x", 0) == VAL(100));
    CHECK(hashmap_remove_bytes(m, "a\0b", 3) == VAL(0));
    CHECK(hashmap_get_bytes(m, "a\0c", 3) == VAL(1));
    CHECK(hashmap_get_bytes(m, "a\0b", 3) == NULL);
    CHECK(hashmap_remove(m, "") == VAL(100));
    CHECK(hashmap_count(m) == n - 1);
    hashmap_free(m, NULL);
}

/* Growth past many resizes, checking every key at each power of two; then removal of every
 * other key and re-insertion with new values. */
static void test_growth_and_reinsert(void)
{
    enum { N = 20000 };
    hashmap *m = hashmap_new();
    REQUIRE(m != NULL);
    unsigned char k[8];
    bool all = true;
    for (uint64_t i = 0; i < N; i++) {
        num_key(i, k);
        all &= hashmap_put_bytes(m, k, sizeof(k), VAL(i % 4096), NULL);
        if ((i & (i + 1)) == 0) /* i + 1 is a power of two */
            for (uint64_t j = 0; j <= i; j++) {
                num_key(j, k);
                all &= hashmap_get_bytes(m, k, sizeof(k)) == VAL(j % 4096);
            }
    }
    CHECK(all);
    CHECK(hashmap_count(m) == N);
    all = true;
    for (uint64_t i = 1; i < N; i += 2) {
        num_key(i, k);
        all &= hashmap_remove_bytes(m, k, sizeof(k)) == VAL(i % 4096);
        all &= hashmap_remove_bytes(m, k, sizeof(k)) == NULL;
    }
    CHECK(all);
    CHECK(hashmap_count(m) == N / 2);
    all = true;
    for (uint64_t i = 0; i < N; i++) {
        num_key(i, k);
        all &= hashmap_get_bytes(m, k, sizeof(k)) == (i % 2 ? NULL : VAL(i % 4096));
    }
    CHECK(all);
    all = true;
    for (uint64_t i = 1; i < N; i += 2) {
        num_key(i, k);
        void *old = VAL(0);
        all &= hashmap_put_bytes(m, k, sizeof(k), VAL((i + 7) % 4096), &old) && old == NULL;
    }
    CHECK(all);
    CHECK(hashmap_count(m) == N);
    all = true;
    for (uint64_t i = 0; i < N; i++) {
        num_key(i, k);
        all &= hashmap_get_bytes(m, k, sizeof(k)) == VAL((i % 2 ? i + 7 : i) % 4096);
    }
    CHECK(all);
    hashmap_free(m, NULL);
}

struct each_state {
    unsigned seen[8];
    int visits;
    int stop_after;
};

static int visit(const char *key, void *value, void *arg)
{
    struct each_state *st = arg;
    size_t i = (size_t)((char *)value - values);
    if (i < 8 && key[0] == (char)('0' + i) && key[1] == '\0')
        st->seen[i]++;
    return ++st->visits == st->stop_after ? 42 : 0;
}

static int freed;
static void count_free(void *value)
{
    (void)value;
    freed++;
}

static void test_each_and_free(void)
{
    hashmap *m = hashmap_new();
    REQUIRE(m != NULL);
    for (int i = 0; i < 8; i++) {
        char key[2] = {(char)('0' + i), '\0'};
        CHECK(hashmap_put(m, key, VAL(i), NULL));
    }
    CHECK(hashmap_remove(m, "3") == VAL(3));
    struct each_state st = {{0}, 0, 0};
    CHECK(hashmap_each(m, visit, &st) == 0);
    CHECK(st.visits == 7);
    for (int i = 0; i < 8; i++)
        CHECK(st.seen[i] == (i == 3 ? 0u : 1u));
    struct each_state stop = {{0}, 0, 2};
    CHECK(hashmap_each(m, visit, &stop) == 42);
    CHECK(stop.visits == 2);
    freed = 0;
    hashmap_free(m, count_free);
    CHECK(freed == 7);
    hashmap_free(NULL, count_free);
    CHECK(freed == 7);
}

/* A borrowing map keeps the caller's key pointers: lookups compare against the caller's memory
 * (a changed key is found under its new bytes only: the hash placed it under the old ones, so
 * nothing finds it, which is why keys must not change), and neither removal nor freeing frees
 * a key (ASan and valgrind would report the invalid free of these stack and value keys). */
struct named {
    char name[8];
};

static void free_named(void *value)
{
    free(value);
}

static void test_borrowing(void)
{
    hashmap *m = hashmap_new_borrowing();
    REQUIRE(m != NULL);
    char buf[] = "delta";
    CHECK(hashmap_put(m, buf, VAL(4), NULL));
    CHECK(hashmap_get(m, "delta") == VAL(4));
    buf[0] = 'D';
    CHECK(hashmap_get(m, "delta") == NULL);
    CHECK(hashmap_get(m, "Delta") == NULL);
    buf[0] = 'd';
    CHECK(hashmap_remove(m, "delta") == VAL(4));
    CHECK(hashmap_count(m) == 0);
    /* Keys inside their values, through growth, then freed with them. */
    bool ok = true;
    for (int i = 0; i < 100; i++) {
        struct named *v = malloc(sizeof(*v));
        REQUIRE(v != NULL);
        snprintf(v->name, sizeof(v->name), "k%d", i);
        ok &= hashmap_put(m, v->name, v, NULL);
    }
    for (int i = 0; i < 100; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        struct named *v = hashmap_get(m, k);
        ok &= v != NULL && strcmp(v->name, k) == 0 && (void *)v->name != (void *)k;
    }
    CHECK(ok);
    CHECK(hashmap_count(m) == 100);
    hashmap_free(m, free_named);
}

#ifdef FAILALLOC_AVAILABLE
static void test_allocation_failures(void)
{
    /* hashmap_new: each of its allocations fails in turn. */
    long n;
    for (n = 0;; n++) {
        failalloc_arm(n);
        hashmap *m = hashmap_new();
        bool failed = failalloc_attempts() > n;
        if (m != NULL) {
            hashmap_free(m, NULL);
            failalloc_disarm();
            CHECK(!failed);
            CHECK(failalloc_live() == 0);
            break;
        }
        failalloc_disarm();
        CHECK(failed);
        CHECK(failalloc_live() == 0);
        REQUIRE(n < 10);
    }
    CHECK(n == 2); /* the map and its slots */

    /* hashmap_put of new keys up to well past the first resizes, each key with every one of
     * its allocations failing in turn (the key's copy; then the bigger table, when the key
     * makes the map grow). A failure leaves the map as it was, the key absent and no memory
     * held. */
    hashmap *m = hashmap_new();
    REQUIRE(m != NULL);
    unsigned char k[8];
    long resizes = 0;
    bool ok = true;
    for (uint64_t i = 0; i < 200; i++) {
        num_key(i, k);
        for (n = 0;; n++) {
            failalloc_arm(n);
            bool put = hashmap_put_bytes(m, k, sizeof(k), VAL(i), NULL);
            long made = failalloc_attempts(), held = failalloc_live();
            failalloc_disarm();
            if (put) {
                ok &= made == n && (held == 1);
                break;
            }
            ok &= made == n + 1 && held == 0;
            ok &= hashmap_count(m) == i && hashmap_get_bytes(m, k, sizeof(k)) == NULL;
            REQUIRE(n < 10);
        }
        if (n == 2)
            resizes++;
        ok &= hashmap_count(m) == i + 1;
    }
    CHECK(ok);
    CHECK(resizes >= 4); /* 16 -> 32 -> 64 -> 128 -> 256 slots */
    ok = true;
    for (uint64_t i = 0; i < 200; i++) {
        num_key(i, k);
        ok &= hashmap_get_bytes(m, k, sizeof(k)) == VAL(i);
    }
    CHECK(ok);

    /* Replacing, looking up and removing allocate nothing, so they cannot fail: every
     * allocation would fail here. */
    failalloc_arm(0);
    void *old = NULL;
    num_key(5, k);
    bool replaced = hashmap_put_bytes(m, k, sizeof(k), VAL(500), &old);
    void *got = hashmap_get_bytes(m, k, sizeof(k));
    void *removed = hashmap_remove_bytes(m, k, sizeof(k));
    long made = failalloc_attempts(), held = failalloc_live();
    failalloc_disarm();
    CHECK(replaced && old == VAL(5) && got == VAL(500) && removed == VAL(500));
    CHECK(made == 0);
    CHECK(held == -1); /* the removed key's copy */
    hashmap_free(m, NULL);

    /* A map whose keys come and go keeps its size: 100,000 distinct keys, at most 8 live. */
    m = hashmap_new();
    REQUIRE(m != NULL);
    failalloc_arm(-1);
    ok = true;
    for (uint64_t i = 0; i < 100000; i++) {
        num_key(i, k);
        ok &= hashmap_put_bytes(m, k, sizeof(k), VAL(i % 4096), NULL);
        if (i >= 8) {
            num_key(i - 8, k);
            ok &= hashmap_remove_bytes(m, k, sizeof(k)) == VAL((i - 8) % 4096);
        }
    }
    size_t biggest = failalloc_largest();
    failalloc_disarm();
    CHECK(ok);
    CHECK(hashmap_count(m) == 8);
    /* Tombstones are dropped without doubling: the table settles at 32 slots of 4 words (9
     * keys live at most; it doubles while more than half would be live). Doubling at each
     * round of tombstones, it would have reached tens of thousands of slots. */
    CHECK(biggest <= 32 * 4 * sizeof(void *));
    hashmap_free(m, NULL);
}
#endif

int main(void)
{
    test_strings();
    test_bytes();
    test_growth_and_reinsert();
    test_each_and_free();
    test_borrowing();
#ifdef FAILALLOC_AVAILABLE
    test_allocation_failures();
#else
    fprintf(stderr, "common-hashmap-test: allocation failures not tested under AddressSanitizer\n");
#endif
    return check_finish("common-hashmap-test");
}
