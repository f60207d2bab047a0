#include "config.h"

#include "server.h"

#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <netdb.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/uuid.h"
#include "kms-ops.h"
#include "kms-request.h"
#include "log.h"

#define MAX_LISTENERS 4
#define CONNECTION_MEMORY (32 * 1024) /* request line and headers must fit */

typedef struct listener {
    server *srv;
    listener_kind kind;
    struct MHD_Daemon *mhd;
    char name[128];
} listener;

struct server {
    p11kms *svc;
    server_limits limits;
    listener listeners[MAX_LISTENERS];
    size_t count;
    atomic_uint in_flight;
};

/* One connection: its kernel-attested caller, found once when it is accepted. */
typedef struct conn_ctx {
    p11kms_principal *peer;
    bool tls_checked; /* TLS: the client certificate is looked at once, after the handshake */
    char source[128]; /* for the audit record: "unix pid=N uid=U" or "tcp ADDR:PORT" */
} conn_ctx;

/* One request, from the URI callback to the completion callback. */
typedef struct req_ctx {
    char *uri;
    bool started;
    bool too_large;
    char *body; /* wiped when freed: it may hold a plaintext */
    size_t len, cap;
    struct timespec start;
    bool counted;
} req_ctx;

server *server_new(p11kms *svc, const server_limits *limits)
{
    server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->svc = svc;
    s->limits = *limits;
    atomic_init(&s->in_flight, 0);
    return s;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    listener *l = cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_line("listener %s: %s", l->name, line);
}

static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    req_ctx *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->uri = strdup(uri != NULL ? uri : "");
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    return r;
}

static void free_body(req_ctx *r)
{
    if (r->body != NULL) {
        OPENSSL_cleanse(r->body, r->cap);
        free(r->body);
    }
    r->body = NULL;
    r->len = r->cap = 0;
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    listener *l = cls;
    (void)c;
    (void)toe;
    req_ctx *r = *con_cls;
    if (r == NULL)
        return;
    if (r->counted)
        atomic_fetch_sub(&l->srv->in_flight, 1);
    free_body(r);
    free(r->uri);
    free(r);
    *con_cls = NULL;
}

/* Where a connection comes from, as the audit record names it: the kernel-attested peer
 * process of a Unix socket, the peer address and port of TCP. */
static void connection_source(int fd, listener_kind kind, char *out, size_t size)
{
    snprintf(out, size, "%s", kind == LISTENER_UNIX ? "unix" : "tcp");
    if (kind == LISTENER_UNIX) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(cred))
            snprintf(out, size, "unix pid=%ld uid=%lu", (long)cred.pid, (unsigned long)cred.uid);
        return;
    }
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    char host[INET6_ADDRSTRLEN], port[8];
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 &&
        getnameinfo((struct sockaddr *)&peer, plen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, size, strchr(host, ':') != NULL ? "tcp [%s]:%s" : "tcp %s:%s", host, port);
}

static void connection_event(void *cls, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe)
{
    listener *l = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_ctx *cc = *socket_context;
        if (cc != NULL) {
            p11kms_principal_free(cc->peer);
            free(cc);
        }
        *socket_context = NULL;
        return;
    }
    conn_ctx *cc = calloc(1, sizeof(*cc));
    *socket_context = cc;
    if (cc == NULL)
        return;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL)
        return;
    connection_source(info->connect_fd, l->kind, cc->source, sizeof(cc->source));
    p11kms_error err = {0};
    p11kms_err rc = P11KMS_OK;
    if (l->kind == LISTENER_UNIX)
        rc = auth_unix_peer(info->connect_fd, &cc->peer, &err);
    else if (l->kind == LISTENER_LOOPBACK)
        rc = auth_loopback_peer(info->connect_fd, &cc->peer, &err);
    /* Requests on a connection without a caller are refused one by one (and logged). */
    if (rc != P11KMS_OK)
        log_line("listener %s: connection has no caller: %s", l->name, err.message);
}

static const char *header_of(void *cls, const char *name)
{
    return MHD_lookup_connection_value(cls, MHD_HEADER_KIND, name);
}

typedef struct secret_body {
    char *body;
    size_t len;
} secret_body;

static void free_secret_body(void *cls)
{
    secret_body *sb = cls;
    OPENSSL_secure_clear_free(sb->body, sb->len + 1);
    free(sb);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, kms_reply *reply,
                                  const char *request_id)
{
    struct MHD_Response *resp = NULL;
    if (reply->secret) {
        secret_body *sb = malloc(sizeof(*sb));
        if (sb != NULL) {
            sb->body = reply->body;
            sb->len = reply->len;
            resp = MHD_create_response_from_buffer_with_free_callback_cls(reply->len, reply->body,
                                                                          free_secret_body, sb);
            if (resp == NULL)
                free(sb);
        }
    } else {
        resp = MHD_create_response_from_buffer(reply->len, reply->body, MHD_RESPMEM_MUST_FREE);
    }
    if (resp == NULL) {
        kms_reply_clear(reply);
        return MHD_NO; /* closes the connection */
    }
    reply->body = NULL; /* the response owns it now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, KMS_CONTENT_TYPE);
    MHD_add_response_header(resp, "x-amzn-RequestId", request_id);
    enum MHD_Result ret = MHD_queue_response(c, reply->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Request ids are random (version 4) UUIDs. Their bytes come from a per-thread block of
 * REQUEST_IDS_PER_DRAW ids drawn with one RAND_bytes call: each call costs OpenSSL's fork check
 * (a getpid system call) and its locks, measured at 6 % of p11kmsd's CPU per request when drawn
 * one id at a time (doc/BENCHMARKS.md). p11kmsd does not fork once it serves requests. */
enum { REQUEST_IDS_PER_DRAW = 64 };

static void new_request_id(char id[37])
{
    static _Thread_local unsigned char block[REQUEST_IDS_PER_DRAW][UUID_LEN];
    static _Thread_local unsigned left;
    if (left == 0) {
        if (RAND_bytes(&block[0][0], sizeof(block)) != 1)
            memset(block, 0, sizeof(block)); /* all-zero ids, as before this block existed */
        left = REQUEST_IDS_PER_DRAW;
    }
    unsigned char *b = block[--left];
    uuid_mark_v4(b);
    uuid_format(b, id);
    OPENSSL_cleanse(b, UUID_LEN); /* each id is handed out once */
}

static bool content_type_ok(const char *ct)
{
    size_t n = strlen(KMS_CONTENT_TYPE);
    if (ct == NULL || strncasecmp(ct, KMS_CONTENT_TYPE, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static const char *decision_of(const kms_reply *reply, bool authenticated)
{
    if (!authenticated)
        return "unauthenticated";
    if (reply->klass == NULL)
        return "allowed";
    if (strcmp(reply->klass, "AccessDeniedException") == 0)
        return "denied";
    if (strcmp(reply->klass, "DryRunOperationException") == 0)
        return "allowed-dry-run";
    return "failed";
}

/* The caller named by a TLS connection's client certificate: x509:<subject> with the subject
 * as RFC 4514 writes it (most specific first, e.g. "x509:CN=app1,O=Example,C=DE"), only for a
 * certificate that verifies against the configured client CAs and may authenticate a client. */
static p11kms_principal *tls_peer(listener *l, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ti == NULL || ti->tls_session == NULL)
        return NULL;
    gnutls_session_t session = (gnutls_session_t)ti->tls_session;
    unsigned status = 0;
    /* A certificate issued for another purpose (a server's, say) does not name a client: one
     * with an extended key usage extension must list TLS client authentication (RFC 5280: one
     * without the extension may be used for any purpose). */
    gnutls_typed_vdata_st purpose = {.type = GNUTLS_DT_KEY_PURPOSE_OID,
                                     .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT};
    int rc = gnutls_certificate_verify_peers(session, &purpose, 1, &status);
    if (rc == GNUTLS_E_NO_CERTIFICATE_FOUND)
        return NULL; /* no certificate: perhaps a signed request */
    if (rc != GNUTLS_E_SUCCESS || status != 0) {
        gnutls_datum_t why = {NULL, 0};
        if (rc == GNUTLS_E_SUCCESS)
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
        log_line("listener %s: client certificate refused: %s", l->name,
                 rc != GNUTLS_E_SUCCESS ? gnutls_strerror(rc)
                 : why.data != NULL     ? (const char *)why.data
                                        : "?");
        gnutls_free(why.data);
        return NULL;
    }
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    gnutls_x509_crt_t crt;
    if (certs == NULL || n == 0 || gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
        return NULL;
    gnutls_datum_t dn = {NULL, 0};
    p11kms_principal *p = NULL;
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS &&
        gnutls_x509_crt_get_dn3(crt, &dn, 0) == GNUTLS_E_SUCCESS && dn.data != NULL &&
        (p = p11kms_principal_new()) != NULL) {
        char name[1024];
        p11kms_error err = {0};
        int len = snprintf(name, sizeof(name), "x509:%s", (const char *)dn.data);
        if (len < 0 || (size_t)len >= sizeof(name) ||
            p11kms_principal_add(p, name, &err) != P11KMS_OK) {
            log_line("listener %s: certificate subject not usable as a principal: %s", l->name,
                     err.message);
            p11kms_principal_free(p);
            p = NULL;
        }
    }
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
    return p;
}

/* Every header of a request, as libmicrohttpd received them (pointers into its memory). */
typedef struct header_list {
    sigv4_header *items;
    size_t count, cap;
    bool oom;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    header_list *l = cls;
    (void)kind;
    if (l->count == l->cap) {
        size_t cap = l->cap == 0 ? 32 : l->cap * 2;
        sigv4_header *items = realloc(l->items, cap * sizeof(*items));
        if (items == NULL) {
            l->oom = true;
            return MHD_NO;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] =
        (sigv4_header){key, key_size, value != NULL ? value : "", value != NULL ? value_size : 0};
    return MHD_YES;
}

/* The path of the request line as sent (percent-encoded), without the query. */
static char *raw_path_of(const char *uri)
{
    size_t n = strcspn(uri, "?");
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, uri, n);
        p[n] = '\0';
    }
    return p;
}

/* Gives the library what the audit record needs of this request: its id (the x-amzn-RequestId
 * of the answer) and source. The principal is the connection's (one request at a time) or this
 * request's own, so writing into it is safe; who must be that very principal. */
static bool audit_context(p11kms_principal *mine, const p11kms_principal *who, const char *source,
                          const char *request_id, kms_fault *f)
{
    p11kms_error err = {0};
    if (mine == NULL || mine != who ||
        p11kms_principal_set_source(mine, source, &err) != P11KMS_OK ||
        p11kms_principal_set_request_id(mine, request_id, &err) != P11KMS_OK) {
        kms_fault_set(f, 500, "KMSInternalException", "cannot record the request for the audit");
        return false;
    }
    return true;
}

/* Authenticates, decodes and performs one complete request. */
static enum MHD_Result serve(listener *l, struct MHD_Connection *c, const char *url,
                             const char *method, req_ctx *r)
{
    char request_id[37];
    new_request_id(request_id);
    kms_reply reply;
    memset(&reply, 0, sizeof(reply));
    kms_fault f;
    kms_op op = KMS_OP__COUNT;
    bool authenticated = false;
    const p11kms_principal *who = NULL;
    p11kms_principal *owned = NULL;

    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_ctx *cc = info != NULL ? info->socket_context : NULL;
    if (l->kind == LISTENER_TLS && cc != NULL && !cc->tls_checked) {
        cc->tls_checked = true;
        cc->peer = tls_peer(l, c);
    }
    const char *q = r->uri != NULL ? strchr(r->uri, '?') : NULL;
    header_list headers = {0};
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, collect_header, &headers);
    char *raw_path = raw_path_of(r->uri);
    auth_input in = {
        .kind = l->kind,
        .peer = cc != NULL ? cc->peer : NULL,
        .method = method,
        .path = raw_path != NULL ? raw_path : url,
        .query = q != NULL ? q + 1 : "",
        .header = header_of,
        .header_cls = c,
        .body = (const uint8_t *)r->body,
        .body_len = r->len,
        .headers = headers.items,
        .header_count = headers.count,
        .body_too_large = r->too_large,
        .svc = l->srv->svc,
    };
    bool auth_ok = !headers.oom && raw_path != NULL;
    if (!auth_ok)
        kms_fault_set(&f, 500, "KMSInternalException", "out of memory");
    else
        auth_ok = auth_authenticate(&in, &who, &owned, &f);
    free(headers.items);
    free(raw_path);
    if (!auth_ok) {
        kms_reply_fault(&reply, &f);
    } else {
        authenticated = true;
        kms_request req;
        if (r->too_large) {
            kms_fault_set(&f, 413, "ValidationException", "request body is larger than %d bytes",
                          KMS_MAX_BODY);
            kms_reply_fault(&reply, &f);
        } else if (strcmp(method, "POST") != 0 || strcmp(url, "/") != 0) {
            kms_fault_set(&f, 404, "UnknownOperationException", "the KMS API is served as POST /");
            kms_reply_fault(&reply, &f);
        } else if (!kms_op_from_target(header_of(c, "X-Amz-Target"), &op, &f)) {
            kms_reply_fault(&reply, &f);
        } else if (!content_type_ok(header_of(c, MHD_HTTP_HEADER_CONTENT_TYPE))) {
            kms_fault_set(&f, 400, "SerializationException",
                          "Content-Type must be " KMS_CONTENT_TYPE);
            kms_reply_fault(&reply, &f);
        } else if (!kms_request_decode(op, r->body, r->len, &req, &f)) {
            kms_reply_fault(&reply, &f);
        } else if (!audit_context(who == owned ? owned
                                  : cc != NULL ? cc->peer
                                               : NULL,
                                  who, cc != NULL && cc->source[0] ? cc->source : "unknown",
                                  request_id, &f)) {
            kms_request_clear(&req); /* decoded: it may hold a plaintext */
            kms_reply_fault(&reply, &f);
        } else {
            free_body(r); /* the decoded request holds what is needed */
            kms_ops_perform(l->srv->svc, who, &req, &reply);
            kms_request_clear(&req);
        }
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long us = (long long)(end.tv_sec - r->start.tv_sec) * 1000000LL +
                   (end.tv_nsec - r->start.tv_nsec) / 1000;
    log_request(request_id,
                who != NULL && p11kms_principal_count(who) > 0 ? p11kms_principal_name(who, 0)
                                                               : "-",
                op < KMS_OP__COUNT ? kms_op_name(op) : "-", reply.key,
                decision_of(&reply, authenticated), reply.klass, reply.status, us);
    p11kms_principal_free(owned);
    free_body(r);
    enum MHD_Result ret = send_reply(c, &reply, request_id);
    kms_reply_clear(&reply);
    return ret;
}

/* Content-Length above which a request is refused before its body is read. */
#define EARLY_REFUSAL_BODY (1024 * 1024)

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    listener *l = cls;
    (void)version;
    req_ctx *r = *con_cls;
    if (r == NULL || r->uri == NULL)
        return MHD_NO; /* out of memory: drop the connection */
    if (!r->started) {
        r->started = true;
        r->counted = true;
        atomic_fetch_add(&l->srv->in_flight, 1);
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long announced = cl != NULL ? strtoull(cl, NULL, 10) : 0;
        r->too_large = announced > KMS_MAX_BODY;
        /* A body somewhat over the limit is read and dropped, so that a client that writes all
         * of it before reading (Python's http.client, botocore) still gets its 413. One
         * announcing more is answered before its body is read, and libmicrohttpd closes the
         * connection: nobody is made to send, nor a worker to read, megabytes for nothing. */
        if (announced > EARLY_REFUSAL_BODY)
            return serve(l, c, url, method, r);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large)
            return MHD_YES;
        if (r->len + n > KMS_MAX_BODY) {
            r->too_large = true;
            free_body(r);
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap == 0 ? 1024 : r->cap;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *b = malloc(cap);
            if (b == NULL)
                return MHD_NO;
            size_t len = r->len;
            if (r->body != NULL)
                memcpy(b, r->body, len);
            free_body(r);
            r->body = b;
            r->cap = cap;
            r->len = len;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    return serve(l, c, url, method, r);
}

static p11kms_err listen_on(server *s, listener_kind kind, int fd, const char *name,
                            const server_tls *tls, p11kms_error *err)
{
    if (s->count == MAX_LISTENERS) {
        close(fd);
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "at most %d listeners", MAX_LISTENERS);
    }
    listener *l = &s->listeners[s->count];
    l->srv = s;
    l->kind = kind;
    snprintf(l->name, sizeof(l->name), "%s", name);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    /* TLS options come last; without TLS only their MHD_OPTION_END is passed. */
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, tls != NULL ? (void *)tls->cert_pem : NULL},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, tls != NULL ? (void *)tls->key_pem : NULL},
        {MHD_OPTION_HTTPS_MEM_TRUST, 0, tls != NULL ? (void *)tls->client_ca_pem : NULL},
        /* TLS 1.2 and 1.3 only. */
        {MHD_OPTION_HTTPS_PRIORITIES, 0,
         (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"},
        {MHD_OPTION_END, 0, NULL},
    };
    if (tls != NULL)
        flags |= MHD_USE_TLS;
    l->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, l, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, l,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->limits.threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->limits.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, tls != NULL ? s->limits.per_ip_connections : 0u,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->limits.timeout_seconds,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_URI_LOG_CALLBACK,
        uri_seen, l, MHD_OPTION_NOTIFY_COMPLETED, request_done, l, MHD_OPTION_NOTIFY_CONNECTION,
        connection_event, l, MHD_OPTION_ARRAY, tls != NULL ? tls_options : tls_options + 4,
        MHD_OPTION_END);
    if (l->mhd == NULL) {
        close(fd);
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "cannot start the HTTP server on %s", name);
    }
    s->count++;
    char per_ip[48] = "";
    if (tls != NULL && s->limits.per_ip_connections > 0)
        snprintf(per_ip, sizeof(per_ip), ", %u per client address", s->limits.per_ip_connections);
    log_line("listening on %s (%s, %u threads, at most %u connections%s, %u s timeout)", name,
             listener_kind_name(kind), s->limits.threads, s->limits.max_connections, per_ip,
             s->limits.timeout_seconds);
    return P11KMS_OK;
}

p11kms_err server_listen(server *s, listener_kind kind, int fd, const char *name, p11kms_error *err)
{
    return listen_on(s, kind, fd, name, NULL, err);
}

p11kms_err server_listen_tls(server *s, int fd, const char *name, const server_tls *tls,
                             p11kms_error *err)
{
    return listen_on(s, LISTENER_TLS, fd, name, tls, err);
}

void server_stop(server *s, unsigned grace_seconds)
{
    for (size_t i = 0; i < s->count; i++) {
        MHD_socket fd = MHD_quiesce_daemon(s->listeners[i].mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
    for (unsigned waited = 0; waited < grace_seconds * 10 && atomic_load(&s->in_flight) > 0;
         waited++) {
        struct timespec t = {0, 100 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    unsigned left = atomic_load(&s->in_flight);
    if (left > 0)
        log_line("stopping with %u requests still in flight", left);
    for (size_t i = 0; i < s->count; i++)
        MHD_stop_daemon(s->listeners[i].mhd);
    s->count = 0;
}

void server_free(server *s)
{
    if (s == NULL)
        return;
    if (s->count > 0)
        server_stop(s, 0);
    free(s);
}
