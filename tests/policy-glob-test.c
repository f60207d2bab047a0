#include "config.h"

/* Policy globs: matching, compile errors, and the intersection test the separation-of-duties
 * check relies on, cross-checked against brute force over a small alphabet. */

#include "policy/glob.h"
#include "tests/lib/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct match_case {
    const char *pattern;
    const char *subject;
    bool match;
} match_case;

static const match_case match_cases[] = {
    {"*", "", true},
    {"*", "anything at all", true},
    {"", "", true},
    {"", "a", false},
    {"a", "a", true},
    {"a", "A", false},
    {"a", "", false},
    {"a*", "a", true},
    {"a*", "ab", true},
    {"a*", "ba", false},
    {"*a", "ba", true},
    {"*a", "ab", false},
    {"a*b", "ab", true},
    {"a*b", "axxb", true},
    {"a*b", "axxbx", false},
    {"a*b*c", "abbbcbc", true},
    {"a*b*c", "abbbcb", false},
    {"?", "", false},
    {"?", "a", true},
    {"?", "ab", false},
    {"??", "ab", true},
    {"a?", "a", false},
    {"a?c", "abc", true},
    {"a?c", "ac", false},
    {"*?", "", false},
    {"*?", "x", true},
    {"?*?", "x", false},
    {"?*?", "xy", true},
    {"**", "", true},
    {"a**b", "ab", true},
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"\\?", "?", true},
    {"\\?", "a", false},
    {"\\\\", "\\", true},
    {"a\\*b*", "a*bcd", true},
    {"a\\*b*", "axbcd", false},
    {"x509:CN=\\*.example.com", "x509:CN=*.example.com", true},
    {"x509:CN=\\*.example.com", "x509:CN=www.example.com", false},
    /* code points, not bytes */
    {"?", "\xc3\xa9", true}, /* é: one character, two bytes */
    {"??", "\xc3\xa9", false},
    {"?", "\xf0\x9f\x94\x91", true}, /* U+1F511: four bytes */
    {"caf?", "caf\xc3\xa9", true},
    {"*\xc3\xa9", "caf\xc3\xa9", true},
    {"*\xc3\xa9", "cafe\xcc\x81", false}, /* decomposed é is another string */
    {"\xe5\x90\x8d*", "\xe5\x90\x8d\xe5\x89\x8d", true},
    /* backtracking */
    {"*aab", "aaaab", true},
    {"*ab*ab", "abxabyab", true},
    {"a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
};

typedef struct isect_case {
    const char *a, *b;
    bool intersect;
} isect_case;

static const isect_case isect_cases[] = {
    {"*", "*", true},
    {"*", "", true},
    {"", "", true},
    {"a", "b", false},
    {"a", "a", true},
    {"a*", "*b", true},
    {"a*", "b*", false},
    {"*a", "*b", false},
    {"a*c", "ab*", true},
    {"unix:user:ops-*", "unix:user:*-svc", true},
    {"unix:user:adm-*", "unix:user:svc-*", false},
    {"alias/db-*-prod", "alias/db-billing-*", true},
    {"alias/a-*", "alias/b-*", false},
    {"alias/shared-?", "alias/shared-??", false},
    {"alias/shared-?", "alias/shared-*", true},
    {"alias/shared-?", "alias/shared-", false},
    {"?", "", false},
    {"?", "*", true},
    {"??", "?", false},
    {"a?", "?b", true},
    {"a?", "b?", false},
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"\\*", "?", true},
    {"a\\*", "a?", true},
    {"a\\*", "ab", false},
    {"*a*", "*b*", true},
    {"a*a", "b*", false},
    {"x*y*z", "*q*", true},
    {"abc", "a*c", true},
    {"abc", "a?d", false},
    {"\xc3\xa9*", "?x", true},
    {"\xc3\xa9", "??", false},
};

static bool compile(const char *text, policy_glob *g)
{
    policy_glob_status st = policy_glob_compile(text, g);
    if (st != POLICY_GLOB_OK)
        fprintf(stderr, "cannot compile '%s': %s\n", text, policy_glob_status_text(st));
    return st == POLICY_GLOB_OK;
}

static void check_matches(void)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const match_case *c = &match_cases[i];
        policy_glob g;
        REQUIRE(compile(c->pattern, &g));
        bool got = policy_glob_match(&g, c->subject);
        CHECK(got == c->match);
        if (got != c->match)
            fprintf(stderr, "  match('%s', '%s') = %d\n", c->pattern, c->subject, got);
        policy_glob_free(&g);
    }
}

static void check_intersections(void)
{
    for (size_t i = 0; i < sizeof(isect_cases) / sizeof(isect_cases[0]); i++) {
        const isect_case *c = &isect_cases[i];
        policy_glob a, b;
        REQUIRE(compile(c->a, &a) && compile(c->b, &b));
        bool ab = policy_glob_intersect(&a, &b), ba = policy_glob_intersect(&b, &a);
        CHECK(ab == c->intersect && ba == c->intersect);
        if (ab != c->intersect || ba != c->intersect)
            fprintf(stderr, "  intersect('%s', '%s') = %d / %d\n", c->a, c->b, ab, ba);
        policy_glob_free(&a);
        policy_glob_free(&b);
    }
}

static void check_compile(void)
{
    policy_glob g;
    CHECK(policy_glob_compile("a\\", &g) == POLICY_GLOB_BAD_ESCAPE);
    CHECK(policy_glob_compile("a\\b", &g) == POLICY_GLOB_BAD_ESCAPE);
    CHECK(policy_glob_compile("\xff", &g) == POLICY_GLOB_BAD_UTF8);
    CHECK(policy_glob_compile("\xc0\xaf", &g) == POLICY_GLOB_BAD_UTF8);
    char big[POLICY_GLOB_MAX_BYTES + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(policy_glob_compile(big, &g) == POLICY_GLOB_TOO_LONG);
    big[sizeof(big) - 2] = '\0';
    REQUIRE(policy_glob_compile(big, &g) == POLICY_GLOB_OK);
    CHECK(g.exact && strlen(g.literal) == POLICY_GLOB_MAX_BYTES);
    policy_glob_free(&g);

    REQUIRE(compile("a\\*b\\?c\\\\", &g));
    CHECK(g.exact && strcmp(g.literal, "a*b?c\\") == 0);
    policy_glob_free(&g);
    REQUIRE(compile("a*b", &g));
    CHECK(!g.exact && g.literal == NULL);
    policy_glob_free(&g);
    /* Runs of stars collapse: the matcher's work stays bounded. */
    REQUIRE(compile("a***b", &g));
    CHECK(g.count == 3);
    policy_glob_free(&g);
}

/* Brute force: every pattern of length <= 4 over {a, b, ?, *} against every pair, compared
 * with enumerating all strings over {a, b} up to a length that must contain a witness. */
static const char alphabet[] = {'a', 'b', '?', '*'};

static size_t make_pattern(unsigned code, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        out[i] = alphabet[code % 4];
        code /= 4;
    }
    out[len] = '\0';
    return len;
}

static bool exists_common(const policy_glob *a, const policy_glob *b, size_t max_len)
{
    char s[16];
    for (size_t len = 0; len <= max_len; len++) {
        for (unsigned code = 0; code < (1u << len); code++) {
            for (size_t i = 0; i < len; i++)
                s[i] = (code >> i) & 1 ? 'b' : 'a';
            s[len] = '\0';
            if (policy_glob_match(a, s) && policy_glob_match(b, s))
                return true;
        }
    }
    return false;
}

static void check_brute_force(void)
{
    size_t mismatches = 0, pairs = 0;
    char pa[8], pb[8];
    for (size_t la = 0; la <= 3; la++) {
        unsigned na = 1u << (2 * la);
        for (unsigned ca = 0; ca < na; ca++) {
            make_pattern(ca, la, pa);
            policy_glob a;
            REQUIRE(compile(pa, &a));
            for (size_t lb = 0; lb <= 3; lb++) {
                unsigned nb = 1u << (2 * lb);
                for (unsigned cb = 0; cb < nb; cb++) {
                    make_pattern(cb, lb, pb);
                    policy_glob b;
                    REQUIRE(compile(pb, &b));
                    /* A common string, if any, exists with length <= la + lb. */
                    bool want = exists_common(&a, &b, la + lb);
                    bool got = policy_glob_intersect(&a, &b);
                    pairs++;
                    if (got != want) {
                        mismatches++;
                        if (mismatches < 10)
                            fprintf(stderr, "  intersect('%s', '%s') = %d, brute force %d\n", pa,
                                    pb, got, want);
                    }
                    policy_glob_free(&b);
                }
            }
            policy_glob_free(&a);
        }
    }
    CHECK(mismatches == 0);
    CHECK(pairs == 85 * 85);
}

int main(void)
{
    check_matches();
    check_intersections();
    check_compile();
    check_brute_force();
    return check_finish("policy-glob-test");
}
