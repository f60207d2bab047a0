#include "config.h"

/* Requests a browser sends on a local user's behalf may not act as the connection's identity
 * (provider/daemon/browser-guard.h): the Host parser on every well-formed and malformed form, and
 * the decision on each listener kind. */

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/check.h"
#include "provider/daemon/browser-guard.h"

static void test_loopback_hosts(void)
{
    static const char *const loopback[] = {
        "localhost",     "LOCALHOST:8080",  "localhost.", "api.localhost:1", "127.0.0.1",
        "127.0.0.1:443", "127.1.2.3:65535", "[::1]",      "[::1]:8443",      "[0:0:0:0:0:0:0:1]:1",
    };
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        if (!browser_guard_loopback_host(loopback[i]))
            fprintf(stderr, "refused: %s\n", loopback[i]);
        CHECK(browser_guard_loopback_host(loopback[i]));
    }
    static const char *const elsewhere[] = {
        "",
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "evillocalhost",
        "128.0.0.1",
        "10.0.0.1:80",
        "0.0.0.0",
        "[::2]",
        "[::ffff:127.0.0.1]",
        "::1",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[::1]:123456",
        "127.0.0.1:",
        "127.0.0.1:80x",
        "127.0.0.1:-1",
        ":80",
        "localhost:80:80",
        "[]",
        "[::1]:80]",
    };
    for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++) {
        if (browser_guard_loopback_host(elsewhere[i]))
            fprintf(stderr, "accepted: \"%s\"\n", elsewhere[i]);
        CHECK(!browser_guard_loopback_host(elsewhere[i]));
    }
    CHECK(!browser_guard_loopback_host(NULL));
    char longest[2 * HOST_NAME_MAX];
    memset(longest, 'a', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    CHECK(!browser_guard_loopback_host(longest));

    /* the machine's own name (Debian maps it to 127.0.1.1), with or without a port */
    char self[HOST_NAME_MAX + 1], with_port[HOST_NAME_MAX + 8];
    REQUIRE(gethostname(self, sizeof(self)) == 0);
    snprintf(with_port, sizeof(with_port), "%s:8080", self);
    CHECK(browser_guard_loopback_host(self) && browser_guard_loopback_host(with_port));
}

/* A request's headers as name/value pairs, for auth_input's lookup. */
typedef struct fake_headers {
    const char *pairs[8][2];
} fake_headers;

static const char *fake_header(void *cls, const char *name)
{
    const fake_headers *h = cls;
    for (size_t i = 0; i < 8 && h->pairs[i][0] != NULL; i++)
        if (strcasecmp(h->pairs[i][0], name) == 0)
            return h->pairs[i][1];
    return NULL;
}

static bool allows(listener_kind kind, fake_headers h, kms_fault *f)
{
    auth_input in = {.kind = kind, .header = fake_header, .header_cls = &h};
    memset(f, 0, sizeof(*f));
    return browser_guard_allows(&in, f);
}

static void test_decisions(void)
{
    kms_fault f;
    fake_headers cli = {{{"Host", "127.0.0.1:8080"}, {"X-Amz-Target", "TrentService.Encrypt"}}};
    fake_headers rebound = {{{"Host", "attacker.example:8080"}}};
    fake_headers no_host = {{{"X-Amz-Target", "TrentService.Encrypt"}}};
    CHECK(allows(LISTENER_LOOPBACK, cli, &f));
    CHECK(allows(LISTENER_LOOPBACK, no_host, &f)); /* HTTP/1.0 */
    CHECK(!allows(LISTENER_LOOPBACK, rebound, &f));
    CHECK(f.status == 400 && strcmp(f.klass, "AccessDeniedException") == 0 &&
          strstr(f.message, "Host is not a loopback name") != NULL);
    /* TLS: the Host is the certificate's business; the Unix socket: no browser reaches it */
    CHECK(allows(LISTENER_TLS, rebound, &f));
    CHECK(allows(LISTENER_UNIX, rebound, &f));

    static const char *const marks[] = {"Origin", "Sec-Fetch-Site", "sec-fetch-mode",
                                        "Sec-Fetch-Dest"};
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        fake_headers browser = {{{"Host", "127.0.0.1:8080"}, {marks[i], "same-origin"}}};
        CHECK(!allows(LISTENER_LOOPBACK, browser, &f));
        CHECK(f.status == 400 && strcasestr(f.message, marks[i]) != NULL);
        CHECK(!allows(LISTENER_TLS, browser, &f));
        CHECK(allows(LISTENER_UNIX, browser, &f));
    }
}

int main(void)
{
    test_loopback_hosts();
    test_decisions();
    return check_finish("daemon-browser-guard-test");
}
