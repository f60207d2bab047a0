#include "config.h"

#include "browser-guard.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Headers a browser adds to a fetch or form post, and no API client sends. */
static const char *const browser_headers[] = {"Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode",
                                              "Sec-Fetch-Dest"};

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool ends_with_nocase(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && strncasecmp(s + n - m, suffix, m) == 0;
}

static bool loopback_name(const char *name, size_t n)
{
    char buf[HOST_NAME_MAX + 2];
    if (n > 0 && name[n - 1] == '.') /* a fully qualified "localhost." */
        n--;
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, name, n);
    buf[n] = '\0';
    if (strcasecmp(buf, "localhost") == 0 || ends_with_nocase(buf, n, ".localhost"))
        return true;
    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    char self[HOST_NAME_MAX + 1];
    if (gethostname(self, sizeof(self)) != 0)
        return false;
    self[sizeof(self) - 1] = '\0';
    return self[0] != '\0' && strcasecmp(buf, self) == 0;
}

bool browser_guard_loopback_host(const char *host)
{
    if (host == NULL)
        return false;
    size_t len = strlen(host);
    if (host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close == NULL)
            return false;
        size_t rest = len - (size_t)(close + 1 - host);
        if (rest != 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return false;
        char buf[INET6_ADDRSTRLEN];
        size_t n = (size_t)(close - host - 1);
        if (n >= sizeof(buf))
            return false;
        memcpy(buf, host + 1, n);
        buf[n] = '\0';
        struct in6_addr v6;
        return inet_pton(AF_INET6, buf, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
    }
    const char *colon = strrchr(host, ':');
    size_t n = len;
    if (colon != NULL) {
        if (!all_digits(colon + 1, len - (size_t)(colon + 1 - host)))
            return false; /* an unbracketed IPv6 address or garbage */
        n = (size_t)(colon - host);
    }
    return loopback_name(host, n);
}

bool browser_guard_allows(const auth_input *in, kms_fault *f)
{
    if (in->kind == LISTENER_UNIX)
        return true;
    for (size_t i = 0; i < sizeof(browser_headers) / sizeof(browser_headers[0]); i++) {
        if (in->header(in->header_cls, browser_headers[i]) != NULL) {
            kms_fault_set(f, 400, "AccessDeniedException",
                          "a request with the %s header (sent by web browsers) cannot act as the "
                          "connection's identity; sign it with SigV4",
                          browser_headers[i]);
            return false;
        }
    }
    /* An HTTP/1.0 request may have no Host; browsers always send one. */
    const char *host = in->header(in->header_cls, "Host");
    if (in->kind == LISTENER_LOOPBACK && host != NULL && !browser_guard_loopback_host(host)) {
        kms_fault_set(f, 400, "AccessDeniedException",
                      "Host is not a loopback name on the loopback listener (a web page whose "
                      "name was pointed at 127.0.0.1?); use 127.0.0.1, [::1] or localhost, or "
                      "sign the request with SigV4");
        return false;
    }
    return true;
}
