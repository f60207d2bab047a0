/* Requests a web browser sends on a local user's behalf. The identity of a TCP connection (the
 * owner of the peer socket on loopback, a client certificate on TLS) is ambient: whoever can make
 * the user's browser send a request gets it. A page whose host name the attacker points at
 * 127.0.0.1 after it loaded (DNS rebinding) is same-origin with p11kmsd's loopback listener, so
 * no CORS preflight stops it from sending X-Amz-Target and reading the reply. Such requests are
 * told apart by what browsers add and API clients (aws, boto3, the SDKs) never send: an Origin or
 * Sec-Fetch-* header, and on loopback a Host that is not a loopback name. SigV4-signed requests
 * carry their own proof and are not subject to this. */
#ifndef P11KMS_DAEMON_BROWSER_GUARD_H
#define P11KMS_DAEMON_BROWSER_GUARD_H

#include <stdbool.h>

#include "auth.h"

/* True when the request may act as the connection's identity; otherwise fills f (400
 * AccessDeniedException saying why, as AWS KMS answers it) and returns false. The Unix socket is
 * not reachable from a browser and always passes. */
bool browser_guard_allows(const auth_input *in, kms_fault *f);

/* True when host (a Host header's value: name or address, optional :port) names this machine
 * over loopback: localhost or a name under .localhost, an IPv4 address in 127.0.0.0/8, [::1],
 * or the machine's own host name (Debian maps it to 127.0.1.1). */
bool browser_guard_loopback_host(const char *host);

#endif
