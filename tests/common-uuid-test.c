/* common/uuid.c: the text form of key and request ids. Round trips, the version-4 bits, and the
 * text parse refusing every malformed form (length, dash placement, non-hex digits). */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "check.h"
#include "common/uuid.h"

static void round_trip(void)
{
    const uint8_t id[UUID_LEN] = {0x0f, 0x8e, 0x4a, 0x7c, 0x1d, 0x2b, 0x4c, 0x3d,
                                  0x8e, 0x9f, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5};
    char text[UUID_TEXT_LEN + 1];
    memset(text, 'x', sizeof(text));
    uuid_format(id, text);
    CHECK(strcmp(text, "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5") == 0);
    uint8_t back[UUID_LEN];
    CHECK(uuid_parse(text, back) && memcmp(back, id, UUID_LEN) == 0);
    /* Uppercase is read (a caller may type it); p11kms only writes lowercase. */
    CHECK(uuid_parse("0F8E4A7C-1D2B-4C3D-8E9F-A0B1C2D3E4F5", back) &&
          memcmp(back, id, UUID_LEN) == 0);
}

static void version_4(void)
{
    uint8_t id[UUID_LEN];
    memset(id, 0xff, sizeof(id));
    uuid_mark_v4(id);
    CHECK(id[6] == 0x4f && id[8] == 0xbf);
    memset(id, 0x00, sizeof(id));
    uuid_mark_v4(id);
    CHECK(id[6] == 0x40 && id[8] == 0x80);
    char text[UUID_TEXT_LEN + 1];
    uuid_format(id, text);
    CHECK(text[14] == '4' && text[19] == '8');
}

static void malformed(void)
{
    static const char *const bad[] = {
        "",
        "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f",   /* one digit short */
        "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f50", /* one digit long */
        "0f8e4a7c1d2b-4c3d-8e9f-a0b1c2d3e4f5-",  /* dash moved */
        "0f8e4a7c-1d2b-4c3d-8e9fa-0b1c2d3e4f5",  /* dash moved inside a group */
        "0f8e4a7c+1d2b-4c3d-8e9f-a0b1c2d3e4f5",  /* not a dash */
        "0f8e4a7g-1d2b-4c3d-8e9f-a0b1c2d3e4f5",  /* not a hex digit */
        "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4 5",  /* space */
        "{f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5}", /* braces are not read */
    };
    uint8_t out[UUID_LEN];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!uuid_parse(bad[i], out));
    CHECK(!uuid_parse(NULL, out));
    /* A NUL inside the text shortens it: refused by length. */
    const char with_nul[] = "0f8e4a7c-1d2b-4c3d\0-8e9f-a0b1c2d3e4f5";
    CHECK(!uuid_parse(with_nul, out));
}

/* uuid_canonical agrees with uuid_parse + uuid_format on every form above, and on each single
 * character of a valid id replaced by every byte value both agree with a rule written here
 * independently (uuid_parse is built on uuid_canonical, so agreeing with each other alone would
 * prove nothing about the rule). */
static void canonical_matches_parse_and_format(void)
{
    static const char *const forms[] = {
        "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5",  "0F8E4A7C-1D2B-4C3D-8E9F-A0B1C2D3E4F5",
        "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f",   "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f50",
        "0f8e4a7c1d2b-4c3d-8e9f-a0b1c2d3e4f5-",  "0f8e4a7c-1d2b-4c3d-8e9fa-0b1c2d3e4f5",
        "{f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5}", "",
    };
    char canon[UUID_TEXT_LEN + 1], formatted[UUID_TEXT_LEN + 1];
    uint8_t id[UUID_LEN];
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        bool parsed = uuid_parse(forms[i], id);
        CHECK(uuid_canonical(forms[i], canon) == parsed);
        if (parsed) {
            uuid_format(id, formatted);
            CHECK(strcmp(canon, formatted) == 0);
        }
    }
    CHECK(uuid_canonical("0F8E4A7C-1D2B-4C3D-8E9F-A0B1C2D3E4F5", canon) &&
          strcmp(canon, "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5") == 0);
    CHECK(!uuid_canonical(NULL, canon));
    char text[UUID_TEXT_LEN + 1], lowered[UUID_TEXT_LEN + 1];
    size_t disagreements = 0;
    for (size_t pos = 0; pos < UUID_TEXT_LEN; pos++) {
        bool dash_here = pos == 8 || pos == 13 || pos == 18 || pos == 23;
        for (int b = 1; b < 256; b++) {
            memcpy(text, "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5", sizeof(text));
            text[pos] = (char)b;
            bool valid = dash_here ? b == '-' : isxdigit(b) != 0;
            for (size_t i = 0; i <= UUID_TEXT_LEN; i++)
                lowered[i] = (char)tolower((unsigned char)text[i]);
            bool parsed = uuid_parse(text, id);
            if (parsed)
                uuid_format(id, formatted);
            bool canonical = uuid_canonical(text, canon);
            if (parsed != valid || canonical != valid ||
                (valid && (strcmp(canon, lowered) != 0 || strcmp(formatted, lowered) != 0)))
                disagreements++;
        }
    }
    CHECK(disagreements == 0);
}

int main(void)
{
    round_trip();
    version_4();
    malformed();
    canonical_matches_parse_and_format();
    return check_finish("common-uuid-test");
}
