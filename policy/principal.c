#include "config.h"

#include "policy/model.h"
#include "common/utf8.h"

#include <string.h>

/* The principal forms of doc/design.md §6. Matching is by whole string and case-sensitive, so the
 * scheme is part of the name: "unix:user:alice" and "unix:uid:1000" are different principals even
 * when they are the same account (the caller passes both). */
static const struct {
    const char *prefix;
    enum { NAME_TEXT, NAME_UID, NAME_ACCESS_KEY } name;
} schemes[] = {
    {"unix:user:", NAME_TEXT}, {"unix:uid:", NAME_UID},     {"unix:group:", NAME_TEXT},
    {"x509:", NAME_TEXT},      {"sigv4:", NAME_ACCESS_KEY},
};

#define PRINCIPAL_MAX_BYTES 512

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Checks the part after the scheme. In a pattern, '*', '?' and '\' escapes are wildcards and
 * were already checked by the glob compiler; only the other characters are checked here. */
static const char *name_problem(const char *name, int kind, bool pattern)
{
    size_t len = strlen(name);
    if (len == 0)
        return "the name after the scheme is empty";
    if (!policy_utf8_printable(name, len))
        return "principal contains a control character or invalid UTF-8";
    bool wild = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (pattern && (c == '*' || c == '?')) {
            wild = true;
            continue;
        }
        if (pattern && c == '\\') {
            i++; /* the escaped character is literal; the glob compiler checked it */
            if (kind != NAME_TEXT)
                return kind == NAME_UID ? "a uid has only digits"
                                        : "an access key id has only letters and digits";
            continue;
        }
        if (kind == NAME_UID && !is_digit(c))
            return "a uid has only digits";
        if (kind == NAME_ACCESS_KEY && !is_alnum(c))
            return "an access key id has only letters and digits";
    }
    if (kind == NAME_UID && !wild) {
        if (len > 1 && name[0] == '0')
            return "a uid has no leading zero";
        if (len > 10 || (len == 10 && strcmp(name, "4294967295") > 0))
            return "a uid is at most 4294967295";
    }
    return NULL;
}

const char *policy_principal_problem(const char *text, bool pattern, size_t *scheme_len)
{
    if (strlen(text) > PRINCIPAL_MAX_BYTES)
        return "principal is longer than 512 bytes";
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i].prefix);
        if (strncmp(text, schemes[i].prefix, n) == 0) {
            if (scheme_len != NULL)
                *scheme_len = n;
            return name_problem(text + n, schemes[i].name, pattern);
        }
    }
    return "unknown principal scheme (use unix:user:, unix:uid:, unix:group:, x509: or sigv4:, "
           "in lower case)";
}
