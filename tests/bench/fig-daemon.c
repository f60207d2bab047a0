#include "config.h"

/* The daemon figure (issue 8): Encrypt 32 B through p11kmsd over its Unix socket with 1, 4 and 16
 * concurrent keep-alive connections, against p11kms_encrypt in this process with as many threads,
 * on the same token and key, in one run. The client is a minimal HTTP/1.1 writer and reader on
 * plain sockets (a benchmark client, not a general one): it sends the AWS JSON 1.1 request and
 * reads the status line, Content-Length and body of each reply. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bench.h"

#define MAX_LAT (1u << 20)

typedef struct daemon_fix {
    bench_env *env;
    p11kms *svc;
    char sock[600];
    char request[2048];
    size_t request_len;
    uint8_t pt[32];
    pid_t server; /* the process answering on sock, for its CPU time */
} daemon_fix;

typedef struct conn {
    daemon_fix *x;
    int fd;
    char buf[8192];
    double *lat;
    unsigned nlat;
    size_t reply_len; /* of the last reply */
} conn;

/* sun_path of sock; the work directory's path must leave room for it. */
static struct sockaddr_un unix_addr(const char *sock)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(sock);
    if (n >= sizeof(a.sun_path))
        bench_die("socket path too long for a Unix socket: %s", sock);
    memcpy(a.sun_path, sock, n + 1);
    return a;
}

static void *conn_setup(void *arg, unsigned thread)
{
    (void)thread;
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        bench_die("out of memory");
    c->x = arg;
    c->lat = malloc(MAX_LAT * sizeof(double));
    if (c->lat == NULL)
        bench_die("out of memory");
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = unix_addr(c->x->sock);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        bench_die("connect %s: %s", c->x->sock, strerror(errno));
    return c;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            bench_die("write to p11kmsd: %s", strerror(errno));
        p += w, n -= (size_t)w;
    }
}

/* One request and its whole reply; ends the run unless the reply is 200. */
static void op_http(void *state)
{
    conn *c = state;
    double t0 = bench_now();
    write_all(c->fd, c->x->request, c->x->request_len);
    size_t have = 0, need = 0;
    char *body = NULL;
    for (;;) {
        if (have == sizeof(c->buf) - 1)
            bench_die("p11kmsd reply larger than %zu bytes", sizeof(c->buf));
        ssize_t r = read(c->fd, c->buf + have, sizeof(c->buf) - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            bench_die("p11kmsd closed the connection");
        have += (size_t)r;
        c->buf[have] = '\0';
        if (body == NULL && (body = strstr(c->buf, "\r\n\r\n")) != NULL) {
            body += 4;
            if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
                bench_die("p11kmsd answered: %.200s", c->buf);
            const char *cl = strcasestr(c->buf, "\r\ncontent-length:");
            if (cl == NULL || cl > body)
                bench_die("p11kmsd reply without Content-Length");
            need = (size_t)(body - c->buf) + strtoul(cl + 17, NULL, 10);
        }
        if (body != NULL && have >= need)
            break;
    }
    c->reply_len = have;
    if (c->nlat < MAX_LAT)
        c->lat[c->nlat++] = bench_now() - t0;
}

static void conn_teardown(void *state)
{
    conn *c = state;
    close(c->fd);
    /* Latencies are collected by the figure from the kept array. */
}

static void *lib_setup(void *arg, unsigned thread)
{
    (void)thread;
    return arg;
}

static void op_lib(void *arg)
{
    daemon_fix *x = arg;
    p11kms_result r;
    p11kms_error e = {0};
    p11kms_err rc;
    do
        rc = p11kms_encrypt(x->svc, x->env->user, x->env->main_id, x->env->ctx, x->pt,
                            sizeof(x->pt), &r, &e);
    while (bench_retry(rc, &e));
    bench_check(rc, &e, "p11kms_encrypt");
    p11kms_result_free(&r);
}

/* CPU seconds (user + system) the process pid has used so far, from /proc/PID/stat. */
static double process_cpu(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(text, sizeof(text), f) == NULL)
        bench_die("cannot read %s", path);
    fclose(f);
    /* Fields after the command name, which is in parentheses and may hold spaces. */
    const char *p = strrchr(text, ')');
    unsigned long utime = 0, stime = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        bench_die("cannot parse %s", path);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* One side through a server: the run, and the server's CPU time per request during it. */
static side_run run_server_side(const bench_side *side, const daemon_fix *x, unsigned n,
                                const bench_opts *o, double *server_cpu_per_op)
{
    uint64_t max_ops = o->smoke ? o->smoke_ops : 0;
    double before = process_cpu(x->server);
    side_run r = bench_run_side(side, n, o->duration, max_ops);
    *server_cpu_per_op = r.ops ? (process_cpu(x->server) - before) / (double)r.ops : 0;
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The connections of one measurement, kept to read their latencies. */
static conn *kept[BENCH_MAX_THREADS];
static unsigned nkept;

static void *conn_setup_kept(void *arg, unsigned thread)
{
    conn *c = conn_setup(arg, thread);
    kept[__atomic_fetch_add(&nkept, 1, __ATOMIC_SEQ_CST)] = c;
    return c;
}

static pid_t start_daemon(const char *config, const char *sock)
{
    char log[700];
    snprintf(log, sizeof(log), "%s.log", sock); /* one log per daemon of the figure */
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        char path[600];
        snprintf(path, sizeof(path), "%s/p11kmsd", BENCH_BUILDDIR);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* a benchmark that dies leaves no daemon behind */
        execl(path, path, "--config", config, "--socket", sock, "--threads", "16", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = unix_addr(sock);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            bench_die("p11kmsd exited at start (see %s)", log);
        usleep(100000);
    }
    kill(pid, SIGKILL);
    bench_die("p11kmsd did not listen on %s within 30 s (see %s)", sock, log);
}

static void conn_teardown_free(void *state)
{
    conn *c = state;
    close(c->fd);
    free(c->lat);
    free(c);
}

/* One table row: side A through the daemon of xa with n connections against side b with n
 * threads (and, where c is given, against c too); requests/s and ratios are medians over
 * rounds, p50/p99 over A's requests. Returns side b's median requests/s. */
static double measure_row(daemon_fix *xa, const bench_side *b, const bench_side *c, unsigned n,
                          const bench_opts *o, const char *note)
{
    double rc[BENCH_MAX_ROUNDS], ratio_c[BENCH_MAX_ROUNDS];
    /* CPU per request: of the server (p11kmsd; the bare server), of the clients, of side b. */
    double cpu_sa[BENCH_MAX_ROUNDS], cpu_ca[BENCH_MAX_ROUNDS], cpu_b[BENCH_MAX_ROUNDS];
    double cpu_sc[BENCH_MAX_ROUNDS], cpu_cc[BENCH_MAX_ROUNDS];
    uint64_t max_ops = o->smoke ? o->smoke_ops : 0;
    double ra[BENCH_MAX_ROUNDS], rb[BENCH_MAX_ROUNDS], ratio[BENCH_MAX_ROUNDS];
    double *lat = NULL;
    size_t nlat = 0;
    for (unsigned r = 0; r < o->rounds; r++) {
        nkept = 0;
        bench_side a = {.label = "p11kmsd",
                        .setup = conn_setup_kept,
                        .op = op_http,
                        .teardown = conn_teardown,
                        .arg = xa};
        side_run sa = run_server_side(&a, xa, n, o, &cpu_sa[r]);
        side_run sb = b->op == op_http ? run_server_side(b, b->arg, n, o, &cpu_b[r])
                                       : bench_run_side(b, n, o->duration, max_ops);
        ra[r] = sa.ops / sa.seconds;
        rb[r] = sb.ops / sb.seconds;
        ratio[r] = ra[r] / rb[r];
        cpu_ca[r] = sa.ops ? sa.cpu_seconds / (double)sa.ops : 0;
        if (b->op != op_http)
            cpu_b[r] = sb.ops ? sb.cpu_seconds / (double)sb.ops : 0;
        if (c != NULL) {
            side_run sc = run_server_side(c, c->arg, n, o, &cpu_sc[r]);
            rc[r] = sc.ops / sc.seconds;
            ratio_c[r] = ra[r] / rc[r];
            cpu_cc[r] = sc.ops ? sc.cpu_seconds / (double)sc.ops : 0;
        }
        for (unsigned i = 0; i < nkept; i++) {
            conn *k = kept[i];
            double *grown = realloc(lat, (nlat + k->nlat + 1) * sizeof(double));
            if (grown == NULL)
                bench_die("out of memory");
            lat = grown;
            memcpy(lat + nlat, k->lat, k->nlat * sizeof(double));
            nlat += k->nlat;
            free(k->lat);
            free(k);
        }
    }
    if (nlat == 0)
        bench_die("no request measured");
    qsort(lat, nlat, sizeof(double), cmp_double);
    printf("  %5u %12.0f/s %12.0f/s %7.3fx %7.0f us %7.0f us", n, bench_median(ra, o->rounds),
           bench_median(rb, o->rounds), bench_median(ratio, o->rounds), lat[nlat / 2] * 1e6,
           lat[(size_t)((double)nlat * 0.99)] * 1e6);
    if (c != NULL)
        printf(" %12.0f/s %8.3fx", bench_median(rc, o->rounds), bench_median(ratio_c, o->rounds));
    printf("%s\n", note);
    printf("        CPU per request: p11kmsd %.1f us + its clients %.1f us; %s %.1f us",
           bench_median(cpu_sa, o->rounds) * 1e6, bench_median(cpu_ca, o->rounds) * 1e6, b->label,
           bench_median(cpu_b, o->rounds) * 1e6);
    if (c != NULL)
        printf("; bare server %.1f us + its clients %.1f us", bench_median(cpu_sc, o->rounds) * 1e6,
               bench_median(cpu_cc, o->rounds) * 1e6);
    printf("\n");
    free(lat);
    fflush(stdout);
    return bench_median(rb, o->rounds);
}

static void stop_daemon(const char *sock, pid_t pid)
{
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_die("p11kmsd did not exit 0 on SIGTERM (see %s.log)", sock);
}

/* The daemon's configuration: the main token and store, the given policy file, and with audit_log
 * an audit section (every request recorded, chained, sealed and synced before its answer). */
void figure_daemon(bench_env *env, const bench_opts *o)
{
    env_main_key(env, NULL);
    /* The daemon's own configuration: the main token and store, its policy file (the caller is
     * this process's uid, so the service's statement also names that uid). */
    char config[600], policy[600], text[4096];
    snprintf(config, sizeof(config), "%s/daemon.yaml", env->dir);
    snprintf(policy, sizeof(policy), "%s/daemon-policy.yaml", env->dir);
    FILE *in = fopen(env->main.policy, "r");
    FILE *out = fopen(policy, "w");
    if (in == NULL || out == NULL)
        bench_die("cannot copy %s", env->main.policy);
    while (fgets(text, sizeof(text), in) != NULL) {
        if (strstr(text, "principals: [group:services]") != NULL)
            fprintf(out, "    principals: [group:services, \"unix:uid:%u\"]\n", (unsigned)getuid());
        else
            fputs(text, out);
    }
    fclose(in);
    fclose(out);
    env_derive_config(env, config, policy, NULL);
    chmod(policy, 0600);

    daemon_fix x = {.env = env};
    memset(x.pt, 0x5a, sizeof(x.pt));
    snprintf(x.sock, sizeof(x.sock), "%s/p11kmsd.sock", env->dir);
    char b64[64];
    EVP_EncodeBlock((unsigned char *)b64, x.pt, sizeof(x.pt));
    char body[1024];
    int blen = snprintf(body, sizeof(body),
                        "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\",\"EncryptionContext\":{"
                        "\"aws:redshift:arn\":\"arn:aws:redshift:us-east-1:123456789012:cluster:"
                        "bench-cluster\",\"aws:redshift:createtime\":\"20240115T093000Z\"}}",
                        env->main_id, b64);
    x.request_len = (size_t)snprintf(x.request, sizeof(x.request),
                                     "POST / HTTP/1.1\r\nHost: localhost\r\n"
                                     "X-Amz-Target: TrentService.Encrypt\r\n"
                                     "Content-Type: application/x-amz-json-1.1\r\n"
                                     "Content-Length: %d\r\n\r\n%s",
                                     blen, body);
    setenv("SOFTHSM2_CONF", env->main.softhsm_conf, 1);
    pid_t pid = start_daemon(config, x.sock);
    x.server = pid;
    bench_token t = env->main;
    snprintf(t.config, sizeof(t.config), "%s", config);
    x.svc = env_open(&t);

    /* The bare baseline: the same request bytes to a server that only answers with a reply of
     * the length p11kmsd's reply has (one request to p11kmsd first, to learn it). */
    conn *probe = conn_setup(&x, 0);
    op_http(probe);
    size_t reply_len = probe->reply_len;
    conn_teardown_free(probe);
    daemon_fix echo = x;
    snprintf(echo.sock, sizeof(echo.sock), "%s/echo.sock", env->dir);
    pid_t echo_pid = echo_server_start(echo.sock, x.request_len, reply_len);
    echo.server = echo_pid;
    bench_side bare = {.label = "bare socket server",
                       .setup = conn_setup,
                       .op = op_http,
                       .teardown = conn_teardown_free,
                       .arg = &echo};

    printf("\ndaemon: Encrypt 32 B through p11kmsd (Unix socket, keep-alive) vs p11kms_encrypt "
           "in-process, same token and key, median of %u rounds; bare: the same %zu request "
           "bytes answered with %zu reply bytes by a server doing nothing else (one epoll loop, "
           "tests/bench/echo-server.c), the ceiling of any server on this socket\n",
           o->rounds, x.request_len, reply_len);
    printf("  %5s %14s %14s %8s %10s %10s %14s %9s\n", "conns", "p11kmsd", "in-process", "ratio",
           "p50", "p99", "bare", "vs bare");
    static const unsigned conns[] = {1, 4, 16};
    bench_side lib = {.label = "in-process", .setup = lib_setup, .op = op_lib, .arg = &x};
    for (unsigned k = 0; k < 3; k++)
        measure_row(&x, &lib, &bare, conns[k], o, conns[k] == 4 ? "  (goal >= 0.60x)" : "");
    echo_server_stop(echo_pid);
    unlink(echo.sock);

    /* Issue 11's daemon figure: a second p11kmsd on the same token whose configuration adds an
     * audit section, against the first, both at 4 connections, rounds alternating. */
    char audit_config[600], audit_log[600];
    snprintf(audit_config, sizeof(audit_config), "%s/daemon-audit.yaml", env->dir);
    const char *audit_dir = getenv("BENCH_AUDIT_DIR");
    snprintf(audit_log, sizeof(audit_log), "%s/daemon-audit-%ld.log",
             audit_dir ? audit_dir : env->dir, (long)getpid());
    env_derive_config(env, audit_config, policy, audit_log);
    daemon_fix audited = x;
    snprintf(audited.sock, sizeof(audited.sock), "%s/p11kmsd-audit.sock", env->dir);
    pid_t audit_pid = start_daemon(audit_config, audited.sock);
    audited.server = audit_pid;
    bench_side plain = {.label = "p11kmsd without audit",
                        .setup = conn_setup,
                        .op = op_http,
                        .teardown = conn_teardown_free,
                        .arg = &x};
    printf("\ndaemon-audit: Encrypt 32 B through p11kmsd with an audit section (log %s) vs "
           "p11kmsd without, 4 connections, median of %u rounds\n",
           audit_log, o->rounds);
    printf("  %5s %14s %14s %8s %10s %10s\n", "conns", "audit on", "audit off", "ratio", "p50",
           "p99");
    double audit_off = measure_row(&audited, &plain, NULL, 4, o, "  (goal >= 0.90x)");
    /* The ceiling of the audited daemon on this filesystem: a request is answered after the
     * fsync of the batch holding its record, and with 4 connections a batch holds at most 4
     * records, so at most 4 x (write + fsync per second) requests are answered per second. */
    char bare_path[700];
    snprintf(bare_path, sizeof(bare_path), "%s.bare", audit_log);
    bare_sync bare_fsync = {.fd = open(bare_path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600)};
    if (bare_fsync.fd < 0)
        bench_die("%s: %s", bare_path, strerror(errno));
    memset(bare_fsync.line, 'x', sizeof(bare_fsync.line) - 1);
    bare_fsync.line[sizeof(bare_fsync.line) - 1] = '\n';
    bench_side fsync_side = {.label = "write + fsync", .op = op_write_fsync, .arg = &bare_fsync};
    double fsync_rate[BENCH_MAX_ROUNDS], fsync_cpu[BENCH_MAX_ROUNDS];
    for (unsigned r = 0; r < o->rounds; r++) {
        side_run sr = bench_run_side(&fsync_side, 1, o->duration, o->smoke ? o->smoke_ops : 0);
        fsync_rate[r] = sr.ops / sr.seconds;
        fsync_cpu[r] = sr.ops ? sr.cpu_seconds / (double)sr.ops : 0;
    }
    close(bare_fsync.fd);
    unlink(bare_path);
    double rate = bench_median(fsync_rate, o->rounds);
    printf("        bare: write 600 B + fsync in the log's directory %.0f/s (%.1f us CPU each), so "
           "at most %.0f audited requests/s with 4 connections (%.3fx of the audit-off median "
           "above)\n",
           rate, bench_median(fsync_cpu, o->rounds) * 1e6, 4 * rate, 4 * rate / audit_off);
    stop_daemon(audited.sock, audit_pid);
    unlink(audit_log);
    p11kms_close(x.svc);
    stop_daemon(x.sock, pid);
}
