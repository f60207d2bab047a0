#include "config.h"

#include "policy/glob.h"
#include "common/utf8.h"

#include <stdlib.h>
#include <string.h>

#define GLOB_STR_(x) #x
#define GLOB_STR(x) GLOB_STR_(x)

const char *policy_glob_status_text(policy_glob_status status)
{
    switch (status) {
    case POLICY_GLOB_OK:
        return "ok";
    case POLICY_GLOB_NO_MEMORY:
        return "out of memory";
    case POLICY_GLOB_TOO_LONG:
        return "pattern is too long";
    case POLICY_GLOB_BAD_UTF8:
        return "pattern is not valid UTF-8";
    case POLICY_GLOB_TOO_MANY_STARS:
        return "pattern has more than " GLOB_STR(POLICY_GLOB_MAX_STARS) " '*' wildcards";
    default:
        return "'\\' must be followed by '*', '?' or '\\'";
    }
}

void policy_glob_free(policy_glob *g)
{
    if (g == NULL)
        return;
    free(g->tokens);
    free(g->literal);
    memset(g, 0, sizeof(*g));
}

policy_glob_status policy_glob_compile(const char *text, policy_glob *out)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(text);
    if (len > POLICY_GLOB_MAX_BYTES)
        return POLICY_GLOB_TOO_LONG;
    if (!policy_utf8_valid(text, len))
        return POLICY_GLOB_BAD_UTF8;
    /* At most one token per byte; the literal is never longer than the text. */
    out->tokens = malloc((len + 1) * sizeof(uint32_t));
    out->literal = malloc(len + 1);
    if (out->tokens == NULL || out->literal == NULL) {
        policy_glob_free(out);
        return POLICY_GLOB_NO_MEMORY;
    }
    const unsigned char *u = (const unsigned char *)text;
    size_t lit = 0, stars = 0;
    out->exact = true;
    for (size_t i = 0; i < len;) {
        if (u[i] == '\\') {
            if (i + 1 >= len || (u[i + 1] != '*' && u[i + 1] != '?' && u[i + 1] != '\\')) {
                policy_glob_free(out);
                return POLICY_GLOB_BAD_ESCAPE;
            }
            out->tokens[out->count++] = u[i + 1];
            out->literal[lit++] = (char)u[i + 1];
            i += 2;
            continue;
        }
        if (u[i] == '*' && ++stars > POLICY_GLOB_MAX_STARS) {
            policy_glob_free(out);
            return POLICY_GLOB_TOO_MANY_STARS;
        }
        if (u[i] == '*' || u[i] == '?') {
            /* Consecutive stars mean the same as one; keeping one bounds the matcher's work. */
            bool repeat =
                u[i] == '*' && out->count > 0 && out->tokens[out->count - 1] == POLICY_GLOB_STAR;
            if (!repeat)
                out->tokens[out->count++] = u[i] == '*' ? POLICY_GLOB_STAR : POLICY_GLOB_ONE;
            if (!repeat && u[i] == '*')
                out->stars++;
            out->exact = false;
            out->literal[lit++] = (char)u[i];
            i++;
            continue;
        }
        size_t n = policy_utf8_sequence_len(u + i, len - i);
        out->tokens[out->count++] = policy_utf8_code_point(u + i, n);
        memcpy(out->literal + lit, u + i, n);
        lit += n;
        i += n;
    }
    out->literal[lit] = '\0';
    if (!out->exact) {
        /* The literal only means something for an exact pattern. */
        free(out->literal);
        out->literal = NULL;
    }
    return POLICY_GLOB_OK;
}

/* Next code point of s at *pos; s is well formed (checked by the caller). */
static uint32_t next_cp(const unsigned char *s, size_t len, size_t *pos)
{
    size_t n = policy_utf8_sequence_len(s + *pos, len - *pos);
    if (n == 0)
        n = 1; /* not reached for well-formed input; never loop forever */
    uint32_t cp = policy_utf8_code_point(s + *pos, n);
    *pos += n;
    return cp;
}

bool policy_glob_match(const policy_glob *g, const char *s)
{
    if (g->exact)
        return strcmp(g->literal, s) == 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);
    size_t t = 0, i = 0;
    size_t star_t = SIZE_MAX, star_i = 0;
    /* Greedy match with one backtrack point: the last star seen absorbs one more character each
     * time the rest fails. O(pattern * subject). */
    while (i < len) {
        if (t < g->count && g->tokens[t] == POLICY_GLOB_STAR) {
            star_t = t++;
            star_i = i;
            continue;
        }
        size_t next = i;
        uint32_t cp = next_cp(u, len, &next);
        if (t < g->count && (g->tokens[t] == POLICY_GLOB_ONE || g->tokens[t] == cp)) {
            t++;
            i = next;
            continue;
        }
        if (star_t == SIZE_MAX)
            return false;
        t = star_t + 1;
        (void)next_cp(u, len, &star_i);
        i = star_i;
    }
    while (t < g->count && g->tokens[t] == POLICY_GLOB_STAR)
        t++;
    return t == g->count;
}

/* Whether two non-star tokens can stand for the same character. */
static bool tokens_compatible(uint32_t x, uint32_t y)
{
    return x == POLICY_GLOB_ONE || y == POLICY_GLOB_ONE || x == y;
}

/* Whether star pattern p matches some string of the star-free pattern f (whose '?' stand for any
 * character). The greedy matcher of policy_glob_match with compatibility in place of equality:
 * placing each segment as early as it fits is optimal for any per-position relation. */
static bool star_meets_fixed(const policy_glob *p, const policy_glob *f, uint64_t *steps)
{
    size_t t = 0, i = 0;
    size_t star_t = SIZE_MAX, star_i = 0;
    while (i < f->count) {
        (*steps)++;
        if (t < p->count && p->tokens[t] == POLICY_GLOB_STAR) {
            star_t = t++;
            star_i = i;
            continue;
        }
        if (t < p->count && tokens_compatible(p->tokens[t], f->tokens[i])) {
            t++;
            i++;
            continue;
        }
        if (star_t == SIZE_MAX)
            return false;
        t = star_t + 1;
        i = ++star_i;
    }
    while (t < p->count && p->tokens[t] == POLICY_GLOB_STAR)
        t++;
    return t == p->count;
}

/* Whether some string matches both patterns. No allocation and no search: the separation of
 * duties check calls this for many pairs when a policy loads.
 *  - Neither has a star: same length and compatible position by position.
 *  - One has a star: star_meets_fixed, O(length a * length b) at worst.
 *  - Both have a star: a = P1 * ... * S1 and b = P2 * ... * S2 meet exactly when P1 and P2 are
 *    compatible over the shorter one's length and so are S1 and S2 (aligned at the end). Then
 *    merge(P1, P2) + a's middle + b's middle + merge(S1, S2) matches both, each star absorbing
 *    the other pattern's parts; and any common match starts and ends with both. O(length). */
bool policy_glob_intersect(const policy_glob *a, const policy_glob *b)
{
    uint64_t steps = 0;
    return policy_glob_intersect_counted(a, b, &steps);
}

bool policy_glob_intersect_counted(const policy_glob *a, const policy_glob *b, uint64_t *steps)
{
    bool sa = a->stars > 0, sb = b->stars > 0;
    /* The linear cases: at most one step per token of the shorter pattern, twice. */
    *steps += 1 + (a->count < b->count ? a->count : b->count);
    if (!sa && !sb) {
        if (a->count != b->count)
            return false;
        for (size_t i = 0; i < a->count; i++)
            if (!tokens_compatible(a->tokens[i], b->tokens[i]))
                return false;
        return true;
    }
    if (sa != sb)
        return sa ? star_meets_fixed(a, b, steps) : star_meets_fixed(b, a, steps);
    for (size_t i = 0; i < a->count && i < b->count; i++) {
        if (a->tokens[i] == POLICY_GLOB_STAR || b->tokens[i] == POLICY_GLOB_STAR)
            break;
        if (!tokens_compatible(a->tokens[i], b->tokens[i]))
            return false;
    }
    for (size_t i = 1; i <= a->count && i <= b->count; i++) {
        uint32_t x = a->tokens[a->count - i], y = b->tokens[b->count - i];
        if (x == POLICY_GLOB_STAR || y == POLICY_GLOB_STAR)
            break;
        if (!tokens_compatible(x, y))
            return false;
    }
    return true;
}
