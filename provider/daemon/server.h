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
} server_limits;

typedef struct server server;

/* A server over svc (which must outlive it). */
server *server_new(p11kms *svc, const server_limits *limits);
/* Starts serving on fd, a bound and listening socket, as a listener of the given kind; the
 * server owns fd from now on (also on failure). name is for the log. */
p11kms_err server_listen(server *s, listener_kind kind, int fd, const char *name,
                         p11kms_error *err);
/* Stops accepting connections, lets requests in flight finish (at most grace_seconds), then
 * closes everything. */
void server_stop(server *s, unsigned grace_seconds);
void server_free(server *s);

#endif
