/* p11kmsd: the service that alone holds the token login and serves the AWS KMS API to callers
 * it authenticates (see p11kmsd(8)). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <openssl/crypto.h>

#include "log.h"
#include "p11kms.h"
#include "server.h"

#define DEFAULT_SOCKET "/run/p11kms/p11kmsd.sock"

typedef struct options {
    const char *config;
    const char *socket_path;
    unsigned socket_mode;
    const char *http; /* loopback plain-HTTP listener, ADDR:PORT; NULL: none */
    const char *tls;  /* TLS listener, ADDR:PORT; NULL: none */
    const char *tls_cert, *tls_key, *tls_client_ca;
    server_limits limits;
    bool check_config;
} options;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: p11kmsd [--config FILE] [--socket PATH] [--socket-mode MODE]\n"
        "               [--listen-http ADDR:PORT] [--listen-tls ADDR:PORT --tls-cert FILE\n"
        "               --tls-key FILE --tls-client-ca FILE] [--threads N] [--max-connections N]\n"
        "               [--max-connections-per-ip N] [--timeout SECONDS] [--check-config]\n"
        "               [--version] [--help]\n"
        "Serves the AWS KMS JSON 1.1 API over a Unix socket (default " DEFAULT_SOCKET ")\n"
        "and, only when asked, over plain HTTP on a loopback address. See p11kmsd(8).\n");
}

static bool parse_unsigned(const char *opt, const char *text, unsigned long min, unsigned long max,
                           int base, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, base);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "p11kmsd: %s: '%s' is not a number in %lu..%lu\n", opt, text, min, max);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.socket_path = DEFAULT_SOCKET,
                   .socket_mode = 0666,
                   .limits = {.threads = 4, .max_connections = 256, .timeout_seconds = 30}};
    bool per_ip_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("p11kmsd %s\n", PACKAGE_VERSION);
            return 0;
        } else if (strcmp(a, "--check-config") == 0) {
            o->check_config = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "p11kmsd: %s: missing value or unknown option (see --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--config") == 0)
            o->config = v;
        else if (strcmp(a, "--socket") == 0)
            o->socket_path = v;
        else if (strcmp(a, "--socket-mode") == 0)
            ok = parse_unsigned(a, v, 0, 0777, 8, &o->socket_mode);
        else if (strcmp(a, "--listen-http") == 0)
            o->http = v;
        else if (strcmp(a, "--listen-tls") == 0)
            o->tls = v;
        else if (strcmp(a, "--tls-cert") == 0)
            o->tls_cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            o->tls_key = v;
        else if (strcmp(a, "--tls-client-ca") == 0)
            o->tls_client_ca = v;
        else if (strcmp(a, "--threads") == 0)
            ok = parse_unsigned(a, v, 1, 256, 10, &o->limits.threads);
        else if (strcmp(a, "--max-connections") == 0)
            ok = parse_unsigned(a, v, 1, 65536, 10, &o->limits.max_connections);
        else if (strcmp(a, "--max-connections-per-ip") == 0) {
            ok = parse_unsigned(a, v, 0, 65536, 10, &o->limits.per_ip_connections);
            per_ip_given = true;
        } else if (strcmp(a, "--timeout") == 0)
            ok = parse_unsigned(a, v, 1, 3600, 10, &o->limits.timeout_seconds);
        else {
            fprintf(stderr, "p11kmsd: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (!ok)
            return 2;
        i++;
    }
    if (o->tls != NULL && (o->tls_cert == NULL || o->tls_key == NULL || o->tls_client_ca == NULL)) {
        fprintf(stderr, "p11kmsd: --listen-tls needs --tls-cert, --tls-key and --tls-client-ca\n");
        return 2;
    }
    if (o->limits.max_connections < o->limits.threads) {
        fprintf(stderr, "p11kmsd: --max-connections must be at least --threads\n");
        return 2;
    }
    if (!per_ip_given)
        o->limits.per_ip_connections = (o->limits.max_connections + 3) / 4;
    else if (o->limits.per_ip_connections > o->limits.max_connections) {
        fprintf(stderr, "p11kmsd: --max-connections-per-ip must not exceed --max-connections\n");
        return 2;
    }
    return -1;
}

/* Binds the Unix socket. A socket file left by a p11kmsd that died is replaced; one that
 * answers belongs to a running p11kmsd and is left alone. */
static int bind_unix(const char *path, unsigned mode)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_line("socket path too long: %s", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_line("socket: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_line("%s exists and is not a socket: not replacing it", path);
            close(fd);
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            log_line("%s: another p11kmsd answers there", path);
            close(fd);
            return -1;
        }
        close(fd);
        if (unlink(path) != 0) {
            log_line("cannot remove the stale socket %s: %s", path, strerror(errno));
            return -1;
        }
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
            return -1;
    }
    /* Created with no access, opened up to the configured mode once bound: no window in
     * which the socket has looser permissions. */
    mode_t old = umask(0777);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || chmod(path, (mode_t)mode) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_line("cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* A TCP listener on ADDR:PORT or [ADDR]:PORT; with loopback_only (plain HTTP) refused unless
 * ADDR is loopback. */
static int bind_tcp(const char *spec, bool loopback_only)
{
    char host[128];
    const char *port;
    if (spec[0] == '[') {
        const char *close_br = strchr(spec, ']');
        if (close_br == NULL || close_br[1] != ':' || (size_t)(close_br - spec - 1) >= sizeof(host))
            goto bad;
        memcpy(host, spec + 1, (size_t)(close_br - spec - 1));
        host[close_br - spec - 1] = '\0';
        port = close_br + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL)
        goto bad;
    if (loopback_only && !auth_is_loopback(ai->ai_addr)) {
        log_line("--listen-http %s: plain HTTP is served only on 127.0.0.0/8 or ::1", spec);
        freeaddrinfo(ai);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        log_line("cannot listen on %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
bad:
    log_line("%s: expected ADDR:PORT or [ADDR]:PORT with a numeric address", spec);
    return -1;
}

/* A PEM file read whole (NUL-terminated); the caller wipes and frees it. */
static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        log_line("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    if (buf != NULL) {
        len = fread(buf, 1, cap, f);
        if (len == cap || ferror(f)) {
            log_line("%s: unreadable or larger than 1 MiB", path);
            free(buf);
            buf = NULL;
        } else {
            buf[len] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static void free_pem(char *pem)
{
    if (pem != NULL) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
}

/* No core dump may hold a PIN or key bytes: not dumpable (which also keeps other processes of
 * the same user from ptrace and /proc/PID/mem) and a core limit of 0. */
static bool forbid_core_dumps(void)
{
    struct rlimit none = {0, 0};
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || setrlimit(RLIMIT_CORE, &none) != 0) {
        log_line("cannot disable core dumps: %s", strerror(errno));
        return false;
    }
    return true;
}

/* Locks the whole process in memory when the memlock limit allows it; otherwise says so. (Key
 * bytes live in OpenSSL's secure heap, which is locked by itself; this covers the rest, such as
 * request bodies.) Locking future mappings under a finite limit would make thread stacks fail
 * later, so a finite limit is reported rather than tried. */
static void lock_memory(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && geteuid() != 0) {
        log_line("memory not locked: RLIMIT_MEMLOCK is %llu bytes (set LimitMEMLOCK=infinity); "
                 "key material stays in the locked secure heap",
                 (unsigned long long)lim.rlim_cur);
        return;
    }
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
        log_line("memory not locked: mlockall: %s; key material stays in the locked secure heap",
                 strerror(errno));
    else
        log_line("memory locked");
}

/* The configuration names the token and the PIN source: nobody but the service user may read
 * or change it. */
static bool config_private(const char *path)
{
    if (path == NULL)
        path = getenv("P11KMS_CONFIG");
    if (path == NULL || path[0] == '\0')
        path = P11KMS_DEFAULT_CONFIG;
    struct stat st;
    if (stat(path, &st) != 0) {
        log_line("cannot read the configuration %s: %s", path, strerror(errno));
        return false;
    }
    if ((st.st_mode & 0007) != 0) {
        log_line("refusing to start: the configuration %s is readable or writable by others "
                 "(mode %04o); chmod o-rwx it",
                 path, (unsigned)(st.st_mode & 07777));
        return false;
    }
    return true;
}

static void report_error(const char *what, const p11kms_error *err)
{
    log_line("%s: %s: %s", what, p11kms_error_class(err->code),
             err->message[0] != '\0' ? err->message : p11kms_strerror(err->code));
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0)
        return rc;

    /* Signals are taken by the main thread with sigwait; every worker inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!forbid_core_dumps() || !config_private(o.config))
        return 1;
    bool lock = true;
    p11kms_error lock_err = {0};
    if (p11kms_config_memory_lock(o.config, &lock, &lock_err) != P11KMS_OK) {
        report_error("cannot read the configuration", &lock_err);
        return 1;
    }
    if (!lock)
        log_line("warning: memory not locked: disabled by the configuration (memory-lock: "
                 "disabled); pages other than OpenSSL's secure heap may be swapped to disk");
    else if (!o.check_config)
        lock_memory();
    p11kms_error err = {0};
    p11kms *svc = NULL;
    if (p11kms_open(o.config, &svc, &err) != P11KMS_OK) {
        report_error("cannot open the key service", &err);
        return 1;
    }
    if (o.check_config) {
        log_line("configuration OK");
        p11kms_close(svc);
        return 0;
    }
    server *srv = server_new(svc, &o.limits);
    if (srv == NULL) {
        log_line("out of memory");
        p11kms_close(svc);
        return 1;
    }
    int status = 1;
    server_tls tls = {0};
    char *cert = NULL, *key = NULL, *ca = NULL;
    int fd = bind_unix(o.socket_path, o.socket_mode);
    bool own_socket = fd >= 0;
    if (fd < 0 || server_listen(srv, LISTENER_UNIX, fd, o.socket_path, &err) != P11KMS_OK) {
        if (fd >= 0)
            report_error("cannot serve", &err);
        goto out;
    }
    if (o.http != NULL) {
        fd = bind_tcp(o.http, true);
        if (fd < 0 || server_listen(srv, LISTENER_LOOPBACK, fd, o.http, &err) != P11KMS_OK) {
            if (fd >= 0)
                report_error("cannot serve", &err);
            goto out;
        }
    }
    if (o.tls != NULL) {
        tls.cert_pem = cert = read_pem(o.tls_cert);
        tls.key_pem = key = read_pem(o.tls_key);
        tls.client_ca_pem = ca = read_pem(o.tls_client_ca);
        if (cert == NULL || key == NULL || ca == NULL)
            goto out;
        fd = bind_tcp(o.tls, false);
        if (fd < 0 || server_listen_tls(srv, fd, o.tls, &tls, &err) != P11KMS_OK) {
            if (fd >= 0)
                report_error("cannot serve", &err);
            goto out;
        }
    }
    log_line("ready");
    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            p11kms_error reload_err = {0};
            if (p11kms_reload_policy(svc, &reload_err) == P11KMS_OK)
                log_line("policy reloaded");
            else
                report_error("policy reload failed, the previous policy stays in force",
                             &reload_err);
            continue;
        }
        log_line("%s: stopping (finishing requests in flight)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    server_stop(srv, 10);
    status = 0;
out:
    server_free(srv);
    free_pem(cert);
    free_pem(key);
    free_pem(ca);
    if (own_socket)
        unlink(o.socket_path);
    p11kms_close(svc);
    log_line("stopped");
    return status;
}
