/* Who is calling p11kmsd. Every request is authenticated before anything else looks at it;
 * a request that authenticates as nobody is refused before the policy is asked.
 *
 * Listener kinds and what authenticates a caller on each:
 *   unix      SO_PEERCRED of the connection: unix:user:NAME, unix:uid:N and unix:group:NAME of
 *             every group of that uid (primary and supplementary).
 *   loopback  plain HTTP on 127.0.0.0/8 or ::1, only when configured: the kernel's owner of the
 *             peer socket (sock_diag), which on loopback is a local process; the same names as
 *             on the Unix socket. Any Authorization header is ignored there.
 *   tls       a client certificate (x509:<subject>) or AWS Signature Version 4; neither is
 *             built yet, so every TLS request is refused (see auth_authenticate). */
#ifndef P11KMS_DAEMON_AUTH_H
#define P11KMS_DAEMON_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "kms-request.h"
#include "p11kms.h"

typedef enum listener_kind { LISTENER_UNIX, LISTENER_LOOPBACK, LISTENER_TLS } listener_kind;

const char *listener_kind_name(listener_kind kind);

/* What the authenticators may look at: the connection's own identity (peer, already
 * established when the connection was accepted; NULL if the connection has none) and the
 * request as received. */
typedef struct auth_input {
    listener_kind kind;
    const p11kms_principal *peer;
    const char *method;
    const char *path;  /* without the query */
    const char *query; /* raw query string after '?', or "" */
    /* Case-insensitive lookup of a request header; NULL when absent. */
    const char *(*header)(void *cls, const char *name);
    void *header_cls;
    const uint8_t *body;
    size_t body_len;
} auth_input;

/* Decides who makes the request. On success *who is the principal to act as (borrowed from
 * in->peer, or a new one in *owned that the caller frees). On refusal fills f (status 400/403,
 * a class AWS uses for authentication failures) and returns false. */
bool auth_authenticate(const auth_input *in, const p11kms_principal **who, p11kms_principal **owned,
                       kms_fault *f);

/* The names of an OS account: unix:user:NAME (when the uid has a name), unix:uid:N and
 * unix:group:NAME for gid and every supplementary group of NAME. */
p11kms_err auth_unix_principal(uid_t uid, gid_t gid, p11kms_principal **out, p11kms_error *err);

/* The principal of a connected Unix socket, from SO_PEERCRED. */
p11kms_err auth_unix_peer(int fd, p11kms_principal **out, p11kms_error *err);

/* The principal of a loopback TCP connection: the owner of the peer's socket as the kernel
 * reports it (NETLINK_SOCK_DIAG, exact 4-tuple lookup). Refused for a non-loopback peer. */
p11kms_err auth_loopback_peer(int fd, p11kms_principal **out, p11kms_error *err);

/* True for 127.0.0.0/8 and ::1 (and ::ffff:127.0.0.0/104). */
bool auth_is_loopback(const struct sockaddr *sa);

#endif
