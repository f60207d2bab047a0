/* A PostgreSQL store connects while the token starts (provider/store.c, store_open_begin).
 * A stand-in server on a Unix socket plays the PostgreSQL side, so that the test decides when
 * the server answers:
 * - store_open_begin returns before the server has answered: the stand-in reads the startup
 *   packet only after begin returned and refuses with a message of its own, which
 *   store_open_finish reports (a begin that waited for the server itself would have given up on
 *   connect_timeout first and reported that instead);
 * - store_open_abandon closes a connection that was still being made (the stand-in sees the
 *   client hang up);
 * - a server that never answers is given up after connect_timeout: the spec's own, else the
 *   environment's PGCONNECT_TIMEOUT, else p11kms's default of 10 s (libpq's own default is to
 *   wait for ever, which would hang a p11kmsd starting);
 * - a spec that names no store is refused by begin, before anything connects;
 * - p11kms_open: a refused connection is the store's error, and a wrong PIN is the token's
 *   (PinError) while the connection was being made, which is then closed.
 * As the .pgtest variant, against a real PostgreSQL: a wrong PIN leaves a new database without
 * the schema (the connecting thread only reads), the right PIN then creates it; a change waits
 * for the change lock another connection holds at most lock_timeout (30 s by default, again
 * after the connection was re-established; PGOPTIONS's own kept), then fails and leaves
 * nothing behind. */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "provider/store.h"

#define STAND_IN_PORT 54329
#define REFUSAL "refused by the stand-in server"

static p11kms_error e;

typedef struct stand_in {
    int listener;
    char dir[64];
    char socket_path[128];
    char spec[4400];
    bool refuse;      /* answer the startup packet with an error */
    bool saw_startup; /* a protocol 3.0 startup packet arrived */
    bool saw_hang_up; /* the client closed the connection */
    pthread_t thread;
} stand_in;

static void stand_in_listen(stand_in *s, bool refuse)
{
    memset(s, 0, sizeof(*s));
    s->refuse = refuse;
    /* A short directory of its own: a socket path must fit in sun_path (108 bytes), which a
     * build directory deep in a clone does not. */
    snprintf(s->dir, sizeof(s->dir), "/tmp/p11kms-stand-in.XXXXXX");
    REQUIRE(mkdtemp(s->dir) != NULL);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    REQUIRE(snprintf(s->socket_path, sizeof(s->socket_path), "%s/.s.PGSQL.%d", s->dir,
                     STAND_IN_PORT) < (int)sizeof(a.sun_path));
    memcpy(a.sun_path, s->socket_path, strlen(s->socket_path) + 1);
    s->listener = socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(s->listener >= 0);
    REQUIRE(bind(s->listener, (struct sockaddr *)&a, sizeof(a)) == 0);
    REQUIRE(listen(s->listener, 4) == 0);
    /* connect_timeout bounds a begin that would wait for the answer itself. */
    snprintf(s->spec, sizeof(s->spec),
             "host=%s port=%d dbname=p11kms user=p11kms connect_timeout=3 sslmode=disable "
             "gssencmode=disable",
             s->dir, STAND_IN_PORT);
}

/* The same stand-in, named by a spec without connect_timeout. */
static void stand_in_spec_without_timeout(stand_in *s)
{
    snprintf(s->spec, sizeof(s->spec),
             "host=%s port=%d dbname=p11kms user=p11kms sslmode=disable gssencmode=disable", s->dir,
             STAND_IN_PORT);
}

static bool read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 10000) != 1)
            return false;
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One connection: the startup packet, then a refusal (ErrorResponse) or nothing, then wait for
 * the client to hang up. */
static void *stand_in_serve(void *arg)
{
    stand_in *s = arg;
    struct pollfd lp = {s->listener, POLLIN, 0};
    if (poll(&lp, 1, 10000) != 1)
        return NULL;
    int fd = accept(s->listener, NULL, NULL);
    if (fd < 0)
        return NULL;
    uint8_t head[8];
    if (read_all(fd, head, sizeof(head)) && be32(head + 4) == 0x00030000u) {
        size_t rest = be32(head) - sizeof(head);
        uint8_t *params = malloc(rest);
        s->saw_startup = params != NULL && read_all(fd, params, rest);
        free(params);
    }
    if (s->refuse) {
        static const char fields[] = "SFATAL\0VFATAL\0C28000\0M" REFUSAL "\0";
        uint8_t msg[1 + 4 + sizeof(fields)];
        uint32_t len = 4 + sizeof(fields); /* the fields, their terminator, the length */
        msg[0] = 'E';
        msg[1] = (uint8_t)(len >> 24), msg[2] = (uint8_t)(len >> 16);
        msg[3] = (uint8_t)(len >> 8), msg[4] = (uint8_t)len;
        memcpy(msg + 5, fields, sizeof(fields));
        if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
            fprintf(stderr, "stand-in: short write\n");
    }
    uint8_t byte;
    struct pollfd pfd = {fd, POLLIN, 0};
    /* Longer than p11kms's default connect_timeout, so that a client giving up on it is seen. */
    s->saw_hang_up = poll(&pfd, 1, 60000) == 1 && read(fd, &byte, 1) == 0;
    close(fd);
    return NULL;
}

static void stand_in_start(stand_in *s)
{
    REQUIRE(pthread_create(&s->thread, NULL, stand_in_serve, s) == 0);
}

static void stand_in_stop(stand_in *s)
{
    pthread_join(s->thread, NULL);
    close(s->listener);
    unlink(s->socket_path);
    rmdir(s->dir);
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Opens the store against a stand-in that never answers: refused, and how long that took. */
static double seconds_to_give_up(stand_in *s)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    store_opening *o = NULL;
    store *st = NULL;
    CHECK_OK(store_open_begin(s->spec, &o, &e), &e);
    stand_in_start(s);
    CHECK_ERR(store_open_finish(o, &st, &e), P11KMS_E_IO, &e);
    double took = seconds_since(&start);
    CHECK(st == NULL && fx_msg_has(&e, "connecting") && fx_msg_has(&e, "timeout"));
    stand_in_stop(s);
    CHECK(s->saw_startup && s->saw_hang_up);
    return took;
}

/* The test configuration with its store: line replaced, and its PIN file too when pin is not
 * NULL. */
static char *config_with(const char *name, const char *store_spec, const char *pin)
{
    FILE *f = fopen(test_env("P11KMS_CONFIG"), "r");
    REQUIRE(f != NULL);
    char *text = NULL;
    size_t cap = 0;
    FILE *out = open_memstream(&text, &cap);
    REQUIRE(out != NULL);
    char line[8192];
    char *pin_path = pin != NULL ? fx_write_file("wrong-pin", pin) : NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "store:", 6) == 0)
            fprintf(out, "store: \"%s\"\n", store_spec);
        else if (pin != NULL && strstr(line, "pin-source:") != NULL)
            fprintf(out, "  pin-source: \"file:%s\"\n", pin_path);
        else
            fputs(line, out);
    }
    fclose(f);
    fclose(out);
    free(pin_path);
    char *path = fx_write_file(name, text);
    free(text);
    return path;
}

static PGresult *pg_exec(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    PGresult *res = PQexec(c, sql);
    PQfinish(c);
    return res;
}

static bool has_keys_table(const char *conninfo)
{
    PGresult *res = pg_exec(conninfo, "SELECT to_regclass('keys') IS NOT NULL");
    REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK);
    bool has = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return has;
}

static void test_real_server(const char *spec)
{
    fx_say("a wrong PIN leaves a new database without the schema; the right PIN creates it");
    PGresult *res = pg_exec(spec, "CREATE DATABASE p11kms_connect_test");
    REQUIRE(PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);
    char fresh[4400]; /* a later keyword wins in a conninfo string */
    snprintf(fresh, sizeof(fresh), "%s dbname=p11kms_connect_test", spec);
    CHECK(!has_keys_table(fresh));
    char *cfg = config_with("fresh-wrong-pin.yaml", fresh, "00000000\n");
    p11kms *svc = NULL;
    CHECK_ERR(p11kms_open(cfg, &svc, &e), P11KMS_E_PIN, &e);
    CHECK(!has_keys_table(fresh));
    free(cfg);
    cfg = config_with("fresh.yaml", fresh, NULL);
    CHECK_OK(p11kms_open(cfg, &svc, &e), &e);
    p11kms_close(svc);
    CHECK(has_keys_table(fresh));
    free(cfg);
}

/* Creates a key while another connection holds the change lock: refused after lock_timeout,
 * which took between at_least and below seconds. */
static void create_refused_behind_lock(p11kms *svc, PGconn *holder, double at_least, double below)
{
    PGresult *res = PQexec(holder, "SELECT pg_advisory_lock(" STORE_PG_ADVISORY_KEY ")");
    REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    p11kms_principal *who = fx_principal("unix:user:store-connect");
    p11kms_key_metadata md;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    alarm(120); /* a wait without a bound would hang here: fail instead */
    CHECK_ERR(p11kms_create_key(svc, who, NULL, &md, &e), P11KMS_E_IO, &e);
    alarm(0);
    double took = seconds_since(&start);
    CHECK(fx_msg_has(&e, "lock_timeout"));
    CHECK(took >= at_least && took < below);
    res = PQexec(holder, "SELECT pg_advisory_unlock(" STORE_PG_ADVISORY_KEY ")");
    REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    p11kms_principal_free(who);
}

static long key_rows(PGconn *c)
{
    PGresult *res = PQexec(c, "SELECT count(*) FROM keys");
    REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK);
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

static void test_lock_wait_bounded(const char *spec)
{
    PGconn *holder = PQconnectdb(spec);
    REQUIRE(PQstatus(holder) == CONNECTION_OK);
    p11kms_principal *who = fx_principal("unix:user:store-connect");
    char id[P11KMS_KEY_ID_LEN + 1];

    fx_say("a change behind another host's change lock fails after the default lock_timeout");
    p11kms *svc = fx_open(NULL);
    fx_create_key(svc, who, "before", id);
    long rows = key_rows(holder);
    create_refused_behind_lock(svc, holder, 25.0, 60.0);
    CHECK(key_rows(holder) == rows);
    fx_create_key(svc, who, "after the lock was released", id);

    fx_say("the same once the connection was lost and made again");
    PGresult *res =
        PQexec(holder, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    p11kms_key_metadata md;
    p11kms_error seen = {0};
    if (p11kms_create_key(svc, who, NULL, &md, &seen) != P11KMS_OK) /* the one that sees it */
        fx_say("as expected, the first change after it failed: %s", seen.message);
    fx_create_key(svc, who, "on the new connection", id);
    rows = key_rows(holder);
    create_refused_behind_lock(svc, holder, 25.0, 60.0);
    CHECK(key_rows(holder) == rows);
    p11kms_close(svc);

    fx_say("a lock_timeout the connection sets itself (PGOPTIONS) is kept");
    REQUIRE(setenv("PGOPTIONS", "-c lock_timeout=2s", 1) == 0);
    svc = fx_open(NULL);
    create_refused_behind_lock(svc, holder, 1.0, 15.0);
    p11kms_close(svc);
    REQUIRE(unsetenv("PGOPTIONS") == 0);

    p11kms_principal_free(who);
    PQfinish(holder);
}

/* A change that committed and then lost its connection before its NOTIFY: the NOTIFY is sent
 * again on the connection made anew, so the other hosts still hear of it at once. */
static void test_change_announced_after_lost_connection(const char *spec)
{
    fx_say("a change whose connection was lost before its NOTIFY is announced on a new one");
    PGconn *listener = PQconnectdb(spec);
    REQUIRE(PQstatus(listener) == CONNECTION_OK);
    PGresult *res = PQexec(listener, "LISTEN p11kms_state");
    REQUIRE(PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);
    store_opening *o = NULL;
    store *st = NULL;
    CHECK_OK(store_open_begin(spec, &o, &e), &e);
    CHECK_OK(store_open_finish(o, &st, &e), &e);
    REQUIRE(st != NULL);
    CHECK_OK(store_lock(st, &e), &e);
    res = PQexec(listener, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    REQUIRE(PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    store_unlock(st, true);
    bool announced = false;
    for (int i = 0; i < 150 && !announced; i++) {
        REQUIRE(PQconsumeInput(listener) == 1);
        PGnotify *n = PQnotifies(listener);
        if (n != NULL) {
            announced = strcmp(n->relname, "p11kms_state") == 0;
            PQfreemem(n);
        } else {
            fx_sleep_ms(20);
        }
    }
    CHECK(announced);
    store_close(st);
    PQfinish(listener);
}

int main(void)
{
    const char *kind = getenv("P11KMS_TEST_STORE");
    if (kind != NULL && strcmp(kind, "postgresql") == 0) {
        test_real_server(test_env("P11KMS_TEST_STORE_SPEC"));
        test_lock_wait_bounded(test_env("P11KMS_TEST_STORE_SPEC"));
        test_change_announced_after_lost_connection(test_env("P11KMS_TEST_STORE_SPEC"));
        return check_finish("provider-store-connect-test");
    }

    stand_in s;
    store_opening *o = NULL;
    store *st = NULL;

    fx_say("begin returns before the server answered; finish reports the server's refusal");
    stand_in_listen(&s, true);
    CHECK_OK(store_open_begin(s.spec, &o, &e), &e);
    stand_in_start(&s);
    CHECK_ERR(store_open_finish(o, &st, &e), P11KMS_E_IO, &e);
    CHECK(st == NULL);
    CHECK(fx_msg_has(&e, "connecting") && fx_msg_has(&e, REFUSAL));
    stand_in_stop(&s);
    CHECK(s.saw_startup && s.saw_hang_up);

    fx_say("abandon closes a connection still being made");
    stand_in_listen(&s, false);
    CHECK_OK(store_open_begin(s.spec, &o, &e), &e);
    stand_in_start(&s);
    /* The stand-in never answers: abandon waits for the client to give up (connect_timeout),
     * then closes. */
    store_open_abandon(o);
    stand_in_stop(&s);
    CHECK(s.saw_startup && s.saw_hang_up);

    /* Wall-clock bounds of a timeout, not a speed: each side is several seconds from the
     * value it tells apart. */
    fx_say("a server that never answers: the spec's connect_timeout (3 s) is kept");
    stand_in_listen(&s, false);
    double took = seconds_to_give_up(&s);
    CHECK(took >= 2.0 && took < 8.0);

    fx_say("without one in the spec, PGCONNECT_TIMEOUT (2 s) is honoured");
    REQUIRE(setenv("PGCONNECT_TIMEOUT", "2", 1) == 0);
    stand_in_listen(&s, false);
    stand_in_spec_without_timeout(&s);
    took = seconds_to_give_up(&s);
    CHECK(took >= 1.0 && took < 7.0);
    REQUIRE(unsetenv("PGCONNECT_TIMEOUT") == 0);

    fx_say("without either, p11kms gives up after its default of 10 s (libpq would wait for ever)");
    stand_in_listen(&s, false);
    stand_in_spec_without_timeout(&s);
    alarm(50); /* libpq's own default would hang here: fail instead */
    took = seconds_to_give_up(&s);
    alarm(0);
    CHECK(took >= 8.0 && took < 50.0);

    fx_say("a spec that names no store is refused before anything connects");
    CHECK_ERR(store_open_begin("mysql:whatever", &o, &e), P11KMS_E_CONFIG, &e);
    CHECK(o == NULL && fx_msg_has(&e, "postgresql://"));

    fx_say("p11kms_open: a refused connection is the store's error");
    stand_in_listen(&s, true);
    stand_in_start(&s);
    char *cfg = config_with("refused.yaml", s.spec, NULL);
    p11kms *svc = NULL;
    CHECK(p11kms_open(cfg, &svc, &e) != P11KMS_OK && svc == NULL);
    CHECK(fx_msg_has(&e, REFUSAL));
    stand_in_stop(&s);
    CHECK(s.saw_startup && s.saw_hang_up);
    free(cfg);

    fx_say("p11kms_open: a wrong PIN is the token's error; the connection it made is closed");
    stand_in_listen(&s, true);
    stand_in_start(&s);
    cfg = config_with("wrong-pin.yaml", s.spec, "00000000\n");
    CHECK_ERR(p11kms_open(cfg, &svc, &e), P11KMS_E_PIN, &e);
    CHECK(svc == NULL && !fx_msg_has(&e, REFUSAL));
    stand_in_stop(&s);
    CHECK(s.saw_startup && s.saw_hang_up);
    free(cfg);

    return check_finish("provider-store-connect-test");
}
