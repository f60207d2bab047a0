/* p11kms_escape: the one function that makes user bytes safe in an error or log line. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "lib/check.h"
#include "p11kms-error.h"

static void expect(const char *in, size_t len, unsigned flags, size_t size, const char *want)
{
    char out[512];
    memset(out, 'Z', sizeof(out));
    p11kms_escape(out, size, in, len, flags);
    CHECK(strcmp(out, want) == 0);
    CHECK(strlen(out) < size);
    if (strcmp(out, want) != 0)
        fprintf(stderr, "  got \"%s\", want \"%s\"\n", out, want);
}

#define E(in, want) expect(in, sizeof(in) - 1, 0, 512, want)
#define Q(in, want) expect(in, sizeof(in) - 1, P11KMS_ESCAPE_QUOTED, 512, want)

int main(void)
{
    E("plain key-id 123", "plain key-id 123");
    E("\x1b[31mred\x07", "\\x1b[31mred\\x07");         /* ESC, BEL */
    E("a\r\nb\tc\x7f", "a\\x0d\\x0ab\\x09c\\x7f");       /* CR LF TAB DEL */
    E("\x01\x1f", "\\x01\\x1f");                          /* all of C0 */
    E("\xc2\x9b" "2J", "\\xc2\\x9b2J");                   /* C1 CSI as UTF-8 */
    E("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
    E("\xff\xfe", "\\xff\\xfe");                          /* not UTF-8 */
    E("\xc0\xaf", "\\xc0\\xaf");                          /* overlong '/' */
    E("\xed\xa0\x80", "\\xed\\xa0\\x80");                 /* surrogate */
    E("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");        /* above U+10FFFF */
    E("\xe2\x82", "\\xe2\\x82");                          /* truncated sequence */
    E("a\"b\\c", "a\"b\\c");                              /* kept without QUOTED */
    Q("a\"b\\c", "a\\x22b\\x5cc");
    /* NUL inside the given length is a control too. */
    expect("a\0b", 3, 0, 512, "a\\x00b");
    /* Idempotent without QUOTED: the output of an escape is left alone. */
    E("\\x1b[31m", "\\x1b[31m");
    /* Cut at a whole character, marked. */
    expect("abcdefghij", 10, 0, 8, "abcd...");
    expect("\x1b\x1b\x1b\x1b", 4, 0, 12, "\\x1b\\x1b...");
    expect("\x1b\x1b\x1b\x1b", 4, 0, 11, "\\x1b...");
    expect("abc", 3, 0, 4, "abc");
    expect(NULL, 0, 0, 8, "");
    return check_finish("format-escape-test");
}
