/* p11kmsd's HTTP front: libmicrohttpd daemons on sockets p11kmsd binds itself, one per listener,
 * each with a pool of worker threads; every request is authenticated, decoded, performed
 * through p11kms.h and logged in one line. */
#ifndef P11KMS_DAEMON_SERVER_H
#define P11KMS_DAEMON_SERVER_H

#include <stdbool.h>

#include "auth.h"
#include "p11kms.h"

typedef struct server_limits {
    unsigned threads;         /* worker threads per listener */
    unsigned max_connections; /* per listener */
    unsigned timeout_seconds; /* idle or slow connections are closed after this */
    /* per client address on a TLS listener (0: none), so that one host cannot hold every
     * connection; loopback and Unix socket listeners serve one host anyway */
    unsigned per_ip_connections;
} server_limits;

typedef struct server server;

/* A server over svc (which must outlive it). */
server *server_new(p11kms *svc, const server_limits *limits);
/* Starts serving on fd, a bound and listening socket, as a listener of the given kind; the
 * server owns fd from now on (also on failure). name is for the log. */
p11kms_err server_listen(server *s, listener_kind kind, int fd, const char *name,
                         p11kms_error *err);
/* PEM texts of a TLS listener: its certificate chain and key, and the CA certificates that
 * issue client certificates (a client certificate is asked for, verified against these, and
 * names the caller x509:<subject>). The texts must stay valid while the listener runs. */
typedef struct server_tls {
    const char *cert_pem;
    const char *key_pem;
    const char *client_ca_pem;
} server_tls;

/* As server_listen for a TLS 1.2+ listener. */
p11kms_err server_listen_tls(server *s, int fd, const char *name, const server_tls *tls,
                             p11kms_error *err);

/* Stops accepting connections, lets requests in flight finish (at most grace_seconds), then
 * closes everything. */
void server_stop(server *s, unsigned grace_seconds);
void server_free(server *s);

#endif
