/* Who is calling p11kmsd. Every request is authenticated before anything else looks at it;
 * a request that authenticates as nobody is refused before the policy is asked.
 *
 * Listener kinds and what authenticates a caller on each:
 *   unix      SO_PEERCRED of the connection: unix:user:NAME, unix:uid:N and unix:group:NAME of
 *             every group of that uid (primary and supplementary).
 *   loopback  plain HTTP on 127.0.0.0/8 or ::1, only when configured: the kernel's owner of the
 *             peer socket (sock_diag), which on loopback is a local process; the same names as
 *             on the Unix socket. Not for a web browser's requests (browser-guard.h).
 *   tls       a client certificate that verifies against the client CAs (x509:<subject>), or
 *             AWS Signature Version 4 (sigv4:<access key id>).
 *
 * SigV4 on every listener (the rule of auth_authenticate): a request signed by a p11kms access
 * key (its Credential names an id beginning with "PKMS", see p11kms.h) is a claim to be
 * sigv4:<id>; it is verified in full (sigv4.h) and, when valid, that principal alone is the
 * caller, whatever the connection says; when not, the request is refused, never served as the
 * connection's identity. A signature by any other access key id is not p11kms's (an SDK
 * must sign with something: dummy credentials against the Unix socket, loopback or a client
 * certificate): on a connection with an identity it is ignored; on one without (TLS without a
 * client certificate) every Authorization header is verified, so an unknown id is refused with
 * UnrecognizedClientException. Over loopback plain HTTP a valid signature still proves the
 * secret (the secret never travels), but the request and response are not confidential. */
#ifndef P11KMS_DAEMON_AUTH_H
#define P11KMS_DAEMON_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "kms-request.h"
#include "p11kms.h"
#include "sigv4.h"

typedef enum listener_kind { LISTENER_UNIX, LISTENER_LOOPBACK, LISTENER_TLS } listener_kind;

const char *listener_kind_name(listener_kind kind);

/* What the authenticators may look at: the connection's own identity (peer, already
 * established when the connection was accepted; NULL if the connection has none) and the
 * request as received. */
typedef struct auth_input {
    listener_kind kind;
    const p11kms_principal *peer;
    const char *method;
    const char *path;  /* as the request line has it (still percent-encoded), without the query */
    const char *query; /* raw query string after '?', or "" */
    /* Case-insensitive lookup of a request header; NULL when absent. */
    const char *(*header)(void *cls, const char *name);
    void *header_cls;
    const uint8_t *body;
    size_t body_len;
    /* Every header of the request as received, in order and with repetitions (SigV4 signs
     * some of them and refuses a repeated Authorization header). */
    const sigv4_header *headers;
    size_t header_count;
    /* The body was larger than KMS_MAX_BODY and was not kept: a signature cannot be checked. */
    bool body_too_large;
    /* The service: its region scopes signatures and its token derives the signing keys. */
    p11kms *svc;
} auth_input;

/* Decides who makes the request (the body must be complete). On success *who is the principal
 * to act as (borrowed from in->peer, or a new one in *owned that the caller frees). On refusal
 * fills f (status 400/403, a class AWS uses for authentication failures: see sigv4.h; 413 for a
 * signed request whose body was too large to keep; 500 KMSInternalException when the token
 * could not derive a signing key) and returns false. */
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
