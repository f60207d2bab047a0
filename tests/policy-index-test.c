/* policy/index.c, the policy's name -> statement numbers index on common/hashmap: values in
 * insertion order past several growths of a key's list, keys compared by content and copied, the
 * zeroed (empty) index. Then every allocation of policy_index_add made to fail in turn (the map,
 * the key's list, the key's copy, a bigger table, a longer list): the add must report it and
 * leave what the index held unchanged, freeing the index must leave nothing behind, and lookups
 * must not allocate. The allocations fail through tests/lib/failalloc.c (not under
 * AddressSanitizer; not in MEMCHECK_TESTS: the test counts its own leaks). */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "failalloc.h"
#include "policy/index.h"

/* Whether key holds exactly values 0, step, 2*step... (count of them). */
static bool holds(const policy_index *idx, const char *key, size_t count, size_t step)
{
    size_t n = 99;
    const size_t *v = policy_index_find(idx, key, &n);
    if (count == 0)
        return v == NULL && n == 0;
    if (v == NULL || n != count)
        return false;
    for (size_t i = 0; i < count; i++)
        if (v[i] != i * step)
            return false;
    return true;
}

static void test_basics(void)
{
    policy_index idx = {0};
    CHECK(holds(&idx, "alias/a", 0, 1));
    size_t n = 99;
    CHECK(policy_index_find(&idx, NULL, &n) == NULL && n == 0);
    policy_index_free(&idx); /* an index never added to */

    char key[32];
    bool ok = true;
    /* key-i gets i values: lists grow past 2, 4, 8, 16 and 32 entries. */
    for (size_t i = 0; i < 40; i++)
        for (size_t j = 0; j < i; j++) {
            snprintf(key, sizeof(key), "key-%zu", i);
            ok &= policy_index_add(&idx, key, j * i);
        }
    CHECK(ok);
    /* The keys were copied: key[] now holds another text. */
    snprintf(key, sizeof(key), "nothing");
    ok = true;
    for (size_t i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "key-%zu", i);
        ok &= holds(&idx, key, i, i);
    }
    CHECK(ok);
    /* Content, not prefix: "key-1" is not "key-10". */
    CHECK(holds(&idx, "key-", 0, 1));
    CHECK(holds(&idx, "key-100", 0, 1));
    CHECK(policy_index_add(&idx, "", 7));
    n = 0;
    const size_t *v = policy_index_find(&idx, "", &n);
    CHECK(v != NULL && n == 1 && v[0] == 7);
    policy_index_free(&idx);
    CHECK(idx.map == NULL);
    CHECK(holds(&idx, "key-3", 0, 1));
}

#ifdef FAILALLOC_AVAILABLE
/* Adds value under key with each allocation failing in turn until it succeeds; every failed add
 * must leave the index as before (checked by the caller's expectation, before and after). Returns
 * how many allocations the add made. */
static long add_failing(policy_index *idx, const char *key, size_t value, size_t had)
{
    for (long n = 0;; n++) {
        failalloc_arm(n);
        bool added = policy_index_add(idx, key, value);
        long made = failalloc_attempts();
        failalloc_disarm();
        if (added) {
            CHECK(made == n);
            return made;
        }
        CHECK(made == n + 1);
        CHECK(holds(idx, key, had, 1));
        REQUIRE(n < 10);
    }
}

static void test_allocation_failures(void)
{
    char key[32];
    /* Counted across the whole life of the index: after policy_index_free nothing is left. */
    policy_index idx = {0};
    long first = -1, most = 0;
    for (size_t i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "principal-%zu", i);
        for (size_t j = 0; j < 9; j++) {
            long made = add_failing(&idx, key, j, j);
            if (first < 0)
                first = made;
            else if (made > most)
                most = made;
        }
    }
    /* The first add makes the map (2), the list and the key's copy; a later first add of a key
     * makes the list and the copy, and a bigger table at times (3); growing a list, one. */
    CHECK(first == 4);
    CHECK(most == 3);
    bool ok = true;
    for (size_t i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "principal-%zu", i);
        ok &= holds(&idx, key, 9, 1);
    }
    CHECK(ok);

    failalloc_arm(0); /* any allocation fails */
    size_t n;
    const size_t *v = policy_index_find(&idx, "principal-42", &n);
    const size_t *none = policy_index_find(&idx, "principal-100", &n);
    long made = failalloc_attempts();
    failalloc_disarm();
    CHECK(v != NULL && none == NULL && made == 0);

    /* The balance of the whole index, from its first allocation to its free. */
    policy_index_free(&idx);
    failalloc_arm(-1);
    for (size_t i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "sid-%zu", i);
        for (size_t j = 0; j < 5; j++)
            CHECK(policy_index_add(&idx, key, j));
    }
    policy_index_free(&idx);
    long live = failalloc_live();
    failalloc_disarm();
    CHECK(live == 0);
}
#endif

int main(void)
{
    test_basics();
#ifdef FAILALLOC_AVAILABLE
    test_allocation_failures();
#else
    fprintf(stderr, "policy-index-test: allocation failures not tested under AddressSanitizer\n");
#endif
    return check_finish("policy-index-test");
}
