#include "config.h"

#include "policy/glob.h"
#include "policy/utf8.h"

#include <stdlib.h>
#include <string.h>

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
    size_t lit = 0;
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
        if (u[i] == '*' || u[i] == '?') {
            /* Consecutive stars mean the same as one; keeping one bounds the matcher's work. */
            bool repeat =
                u[i] == '*' && out->count > 0 && out->tokens[out->count - 1] == POLICY_GLOB_STAR;
            if (!repeat)
                out->tokens[out->count++] = u[i] == '*' ? POLICY_GLOB_STAR : POLICY_GLOB_ONE;
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

/* Reachability in the product of the two patterns' automata. State (i, j): the next tokens to
 * match are a[i] and b[j]. A star may stop (epsilon move to the next token) or absorb a
 * character; a character can be read by both when neither side is a literal that differs. */
bool policy_glob_intersect(const policy_glob *a, const policy_glob *b)
{
    if (a->exact)
        return policy_glob_match(b, a->literal);
    if (b->exact)
        return policy_glob_match(a, b->literal);
    size_t w = b->count + 1, states = (a->count + 1) * w;
    unsigned char *seen = calloc(states, 1);
    size_t *stack = malloc(states * sizeof(size_t));
    if (seen == NULL || stack == NULL) {
        free(seen);
        free(stack);
        return true;
    }
    bool found = false;
    size_t top = 0;
    stack[top++] = 0;
    seen[0] = 1;
#define PUSH(ni, nj)                                                                               \
    do {                                                                                           \
        size_t s_ = (ni)*w + (nj);                                                                 \
        if (!seen[s_]) {                                                                           \
            seen[s_] = 1;                                                                          \
            stack[top++] = s_;                                                                     \
        }                                                                                          \
    } while (0)
    while (top > 0 && !found) {
        size_t s = stack[--top];
        size_t i = s / w, j = s % w;
        if (i == a->count && j == b->count) {
            found = true;
            break;
        }
        uint32_t ta = i < a->count ? a->tokens[i] : 0;
        uint32_t tb = j < b->count ? b->tokens[j] : 0;
        bool star_a = i < a->count && ta == POLICY_GLOB_STAR;
        bool star_b = j < b->count && tb == POLICY_GLOB_STAR;
        if (star_a)
            PUSH(i + 1, j);
        if (star_b)
            PUSH(i, j + 1);
        if (i == a->count || j == b->count || (star_a && star_b))
            continue;
        bool lit_a = !star_a && ta != POLICY_GLOB_ONE;
        bool lit_b = !star_b && tb != POLICY_GLOB_ONE;
        if (lit_a && lit_b && ta != tb)
            continue;
        PUSH(star_a ? i : i + 1, star_b ? j : j + 1);
    }
#undef PUSH
    free(seen);
    free(stack);
    return found;
}
