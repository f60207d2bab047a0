#include "config.h"

#include "auth.h"

#include <errno.h>
#include <stdarg.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "browser-guard.h"
#include "log.h"

const char *listener_kind_name(listener_kind kind)
{
    switch (kind) {
    case LISTENER_UNIX:
        return "unix";
    case LISTENER_LOOPBACK:
        return "loopback";
    case LISTENER_TLS:
        return "tls";
    }
    return "?";
}

static p11kms_err add_name(p11kms_principal *p, p11kms_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static p11kms_err add_name(p11kms_principal *p, p11kms_error *err, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(name))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "principal name is too long");
    /* A name the policy cannot hold (say, an exotic group name) is left out rather than failing
     * the caller: a principal only ever gains rights through its names. */
    p11kms_error ignored = {0};
    p11kms_err rc = p11kms_principal_add(p, name, &ignored);
    if (rc == P11KMS_E_NO_MEMORY)
        return P11KMS_RAISE(err, rc, "out of memory");
    return P11KMS_OK;
}

static long buffer_size(int name)
{
    long n = sysconf(name);
    return n > 0 && n < (1 << 20) ? n : 16384;
}

p11kms_err auth_unix_principal(uid_t uid, gid_t gid, p11kms_principal **out, p11kms_error *err)
{
    *out = NULL;
    p11kms_principal *p = p11kms_principal_new();
    size_t pwlen = (size_t)buffer_size(_SC_GETPW_R_SIZE_MAX);
    size_t grlen = (size_t)buffer_size(_SC_GETGR_R_SIZE_MAX);
    char *pwbuf = malloc(pwlen), *grbuf = malloc(grlen);
    gid_t *groups = NULL;
    p11kms_err rc = P11KMS_OK;
    if (p == NULL || pwbuf == NULL || grbuf == NULL) {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        goto out;
    }
    struct passwd pw, *pwp = NULL;
    if (getpwuid_r(uid, &pw, pwbuf, pwlen, &pwp) == 0 && pwp != NULL)
        rc = add_name(p, err, "unix:user:%s", pw.pw_name);
    if (rc == P11KMS_OK)
        rc = add_name(p, err, "unix:uid:%u", (unsigned)uid);
    int ngroups = 64;
    for (int attempt = 0; rc == P11KMS_OK && attempt < 4; attempt++) {
        gid_t *g = realloc(groups, (size_t)ngroups * sizeof(*g));
        if (g == NULL) {
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
            break;
        }
        groups = g;
        int n = ngroups;
        if (pwp == NULL) {
            groups[0] = gid; /* no account entry: only the connection's own group */
            ngroups = 1;
            break;
        }
        if (getgrouplist(pw.pw_name, gid, groups, &n) >= 0) {
            ngroups = n;
            break;
        }
        ngroups = n > ngroups ? n : ngroups * 4;
        if (attempt == 3)
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "too many groups for uid %u", (unsigned)uid);
    }
    for (int i = 0; rc == P11KMS_OK && groups != NULL && i < ngroups; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = groups[j] == groups[i];
        struct group gr, *grp = NULL;
        if (!seen && getgrgid_r(groups[i], &gr, grbuf, grlen, &grp) == 0 && grp != NULL)
            rc = add_name(p, err, "unix:group:%s", gr.gr_name);
    }
out:
    free(groups);
    free(grbuf);
    free(pwbuf);
    if (rc != P11KMS_OK) {
        p11kms_principal_free(p);
        return rc;
    }
    *out = p;
    return P11KMS_OK;
}

p11kms_err auth_unix_peer(int fd, p11kms_principal **out, p11kms_error *err)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    *out = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred))
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "no peer credentials: %s",
                            strerror(errno));
    return auth_unix_principal(cred.uid, cred.gid, out, err);
}

bool auth_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/* An IPv4-mapped IPv6 address as the IPv4 address it is (the peer's socket is then AF_INET). */
static void unmap(struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET6)
        return;
    struct sockaddr_in6 in6;
    memcpy(&in6, ss, sizeof(in6));
    if (!IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr))
        return;
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = in6.sin6_port};
    memcpy(&in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &in, sizeof(in));
}

static void diag_addr(const struct sockaddr_storage *ss, __be16 *port, __be32 addr[4])
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        *port = in->sin_port;
        memcpy(addr, &in->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        *port = in6->sin6_port;
        memcpy(addr, &in6->sin6_addr, 16);
    }
}

/* The uid owning the local TCP socket whose local end is peer and remote end is self. */
static p11kms_err socket_owner(const struct sockaddr_storage *peer,
                               const struct sockaddr_storage *self, uid_t *uid, p11kms_error *err)
{
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "sock_diag unavailable: %s",
                            strerror(errno));
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof(req));
    req.nlh.nlmsg_len = sizeof(req);
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST;
    req.r.sdiag_family = (__u8)peer->ss_family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = 1U << TCP_ESTABLISHED;
    diag_addr(peer, &req.r.id.idiag_sport, req.r.id.idiag_src);
    diag_addr(self, &req.r.id.idiag_dport, req.r.id.idiag_dst);
    req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    p11kms_err rc = P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "peer socket not found");
    if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) !=
        (ssize_t)sizeof(req)) {
        rc = P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "sock_diag request failed: %s",
                          strerror(errno));
        goto out;
    }
    union {
        struct nlmsghdr h;
        char bytes[8192];
    } buf;
    ssize_t n = recv(nl, &buf, sizeof(buf), 0);
    for (struct nlmsghdr *h = &buf.h; n > 0 && NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
            h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
            break;
        const struct inet_diag_msg *m = NLMSG_DATA(h);
        /* The kernel answers for exactly the 4-tuple asked; check it anyway. */
        if (m->idiag_state == TCP_ESTABLISHED && m->id.idiag_sport == req.r.id.idiag_sport &&
            m->id.idiag_dport == req.r.id.idiag_dport &&
            memcmp(m->id.idiag_src, req.r.id.idiag_src, sizeof(m->id.idiag_src)) == 0 &&
            memcmp(m->id.idiag_dst, req.r.id.idiag_dst, sizeof(m->id.idiag_dst)) == 0) {
            *uid = (uid_t)m->idiag_uid;
            p11kms_error_clear(err);
            rc = P11KMS_OK;
        }
        break;
    }
out:
    close(nl);
    return rc;
}

p11kms_err auth_loopback_peer(int fd, p11kms_principal **out, p11kms_error *err)
{
    *out = NULL;
    struct sockaddr_storage peer = {0}, self = {0};
    socklen_t plen = sizeof(peer), slen = sizeof(self);
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0 ||
        getsockname(fd, (struct sockaddr *)&self, &slen) != 0)
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "no peer address: %s", strerror(errno));
    if (!auth_is_loopback((struct sockaddr *)&peer) || !auth_is_loopback((struct sockaddr *)&self))
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "peer is not on loopback");
    unmap(&peer);
    unmap(&self);
    if (peer.ss_family != self.ss_family)
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "peer address family mismatch");
    uid_t uid;
    p11kms_err rc = socket_owner(&peer, &self, &uid, err);
    if (rc != P11KMS_OK)
        return rc;
    /* The primary group comes from the account: sock_diag reports only the owner. */
    long pwlen = buffer_size(_SC_GETPW_R_SIZE_MAX);
    char *pwbuf = malloc((size_t)pwlen);
    if (pwbuf == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    struct passwd pw, *pwp = NULL;
    gid_t gid = (gid_t)-1;
    if (getpwuid_r(uid, &pw, pwbuf, (size_t)pwlen, &pwp) == 0 && pwp != NULL)
        gid = pw.pw_gid;
    free(pwbuf);
    if (gid == (gid_t)-1) {
        /* No account: only the uid is known. */
        p11kms_principal *p = p11kms_principal_new();
        if (p == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        rc = add_name(p, err, "unix:uid:%u", (unsigned)uid);
        if (rc != P11KMS_OK) {
            p11kms_principal_free(p);
            return rc;
        }
        *out = p;
        return P11KMS_OK;
    }
    return auth_unix_principal(uid, gid, out, err);
}

/* Whether the request has an Authorization header, and whether one claims a p11kms access key
 * (Credential=PKMS..., in any case: a claim the verifier will refuse still counts as one). */
static void scan_authorization(const auth_input *in, bool *any, bool *ours)
{
    static const char claim[] = "credential=pkms";
    const size_t claim_len = sizeof(claim) - 1;
    *any = *ours = false;
    for (size_t i = 0; i < in->header_count; i++) {
        const sigv4_header *h = &in->headers[i];
        if (h->name_len != 13 || strncasecmp(h->name, "authorization", 13) != 0)
            continue;
        *any = true;
        for (size_t j = 0; j + claim_len <= h->value_len && !*ours; j++)
            *ours = strncasecmp(h->value + j, claim, claim_len) == 0;
    }
}

static p11kms_err token_signing_key(void *arg, const char *access_key_id, const char *yyyymmdd,
                                    const char *region, const char *service, uint8_t key[32],
                                    char *principal_name, size_t principal_name_size,
                                    p11kms_error *err)
{
    return p11kms_sigv4_signing_key(arg, access_key_id, yyyymmdd, region, service, key,
                                    principal_name, principal_name_size, err);
}

/* Verifies the request's signature; on success *owned is the caller sigv4:<access key id>. */
static bool sigv4_authenticate(const auth_input *in, p11kms_principal **owned, kms_fault *f)
{
    if (in->body_too_large) {
        /* The body was not kept, so the payload hash cannot be checked; the size alone is
         * refused, as it would be after authentication. */
        kms_fault_set(f, 413, "ValidationException", "request body is larger than %d bytes",
                      KMS_MAX_BODY);
        return false;
    }
    if (in->svc == NULL) {
        kms_fault_set(f, 500, "KMSInternalException", "no service to verify signatures with");
        return false;
    }
    sigv4_request req = {
        .method = in->method,
        .path = in->path,
        .query = in->query,
        .headers = in->headers,
        .header_count = in->header_count,
        .body = in->body,
        .body_len = in->body_len,
    };
    sigv4_expect ex = {
        .region = p11kms_region(in->svc),
        .service = "kms",
        .now = time(NULL),
        .libctx = NULL,
        .signing_key = token_signing_key,
        .arg = in->svc,
    };
    sigv4_result res;
    if (sigv4_verify(&req, &ex, &res) != SIGV4_OK) {
        log_line("SigV4 signature refused (%s): %s", res.error_class, res.message);
        kms_fault_set(f, (unsigned)res.http_status, res.error_class, "%s", res.message);
        return false;
    }
    p11kms_error err = {0};
    p11kms_principal *p = p11kms_principal_new();
    if (p == NULL || p11kms_principal_add(p, res.principal, &err) != P11KMS_OK) {
        p11kms_principal_free(p);
        log_line("SigV4 caller %s not usable as a principal: %s", res.principal, err.message);
        kms_fault_set(f, 500, "KMSInternalException", "the caller could not be named");
        return false;
    }
    *owned = p;
    return true;
}

bool auth_authenticate(const auth_input *in, const p11kms_principal **who, p11kms_principal **owned,
                       kms_fault *f)
{
    *who = NULL;
    *owned = NULL;
    /* The connection's identity: the kernel-attested owner on the Unix socket and loopback, a
     * verified client certificate on TLS. */
    bool has_peer = in->peer != NULL && p11kms_principal_count(in->peer) > 0;
    bool signed_request = false, ours = false;
    scan_authorization(in, &signed_request, &ours);
    /* A p11kms access key's signature names the caller instead of the connection (or the
     * request is refused); without a connection identity any signature must verify. The rule
     * and why are in auth.h. */
    if (ours || (signed_request && !has_peer)) {
        if (!sigv4_authenticate(in, owned, f))
            return false;
        *who = *owned;
        return true;
    }
    if (has_peer) {
        if (!browser_guard_allows(in, f))
            return false;
        *who = in->peer;
        return true;
    }
    kms_fault_set(f, 403, "MissingAuthenticationTokenException", "Missing Authentication Token");
    return false;
}
