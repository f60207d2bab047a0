/* Glob patterns of the policy: '*' matches any run of characters (also none), '?' exactly one
 * character (a Unicode code point, not a byte), '\' makes the next '*', '?' or '\' literal.
 * Nothing else is special, so two patterns can be checked for a common match (the separation of
 * duties check needs that), which richer syntaxes like character classes would make costly. */
#ifndef P11KMS_POLICY_GLOB_H
#define P11KMS_POLICY_GLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_GLOB_MAX_BYTES 1024
/* At most this many '*' in one pattern (doc/p11kms-policy.5). Real selectors and principal
 * patterns use one or two; the bound keeps the cost of matching and of the separation-of-duties
 * check predictable whatever a policy file holds. */
#define POLICY_GLOB_MAX_STARS 16

typedef struct policy_glob {
    uint32_t *tokens; /* code points, or POLICY_GLOB_STAR / POLICY_GLOB_ONE */
    size_t count;
    bool exact;    /* no wildcard: literal is the whole pattern */
    size_t stars;  /* number of '*' tokens (after merging repeats) */
    char *literal; /* the text without escapes (UTF-8) */
} policy_glob;

#define POLICY_GLOB_STAR UINT32_C(0xFFFFFFFF)
#define POLICY_GLOB_ONE UINT32_C(0xFFFFFFFE)

typedef enum policy_glob_status {
    POLICY_GLOB_OK,
    POLICY_GLOB_NO_MEMORY,
    POLICY_GLOB_TOO_LONG,
    POLICY_GLOB_BAD_UTF8,
    POLICY_GLOB_BAD_ESCAPE,    /* '\' at the end, or before a character that is not * ? \ */
    POLICY_GLOB_TOO_MANY_STARS /* more than POLICY_GLOB_MAX_STARS '*' */
} policy_glob_status;

policy_glob_status policy_glob_compile(const char *text, policy_glob *out);
void policy_glob_free(policy_glob *g);
const char *policy_glob_status_text(policy_glob_status status);

/* Whether s (well-formed UTF-8, NUL-terminated) matches the whole pattern. */
bool policy_glob_match(const policy_glob *g, const char *s);
/* Whether some string matches both patterns. Allocates nothing; linear in the patterns' lengths
 * unless exactly one of them has a '*' (then at most the product of the lengths). */
bool policy_glob_intersect(const policy_glob *a, const policy_glob *b);
/* The same, adding to *steps the work it did (the separation-of-duties check bounds the sum). */
bool policy_glob_intersect_counted(const policy_glob *a, const policy_glob *b, uint64_t *steps);

#endif
