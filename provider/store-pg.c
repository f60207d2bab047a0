#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/threads.h"
#include "provider/store.h"

/* PostgreSQL store: several p11kms processes on several hosts sharing one HSM and one database.
 * - Changes are serialized across hosts by a session advisory lock taken with the local lock
 *   (store_lock), and grouped into transactions; single statements that fail with a
 *   serialization failure or deadlock are retried.
 * - State changes are announced with NOTIFY after they committed; a listener thread with its own
 *   connection receives them and calls the service's callback (which moves the state
 *   generation, so every process re-reads the records it uses before its next operation). When
 *   the listener loses its connection it calls the callback on reconnecting: notifications may
 *   have been missed.
 * Threads of one process share one connection behind a recursive mutex, held by a transaction
 * from BEGIN to COMMIT. */

/* 2: version_claims.pending_seal (a database of version 1 is upgraded when opened). */
#define SCHEMA_VERSION 2
#define SCHEMA_VERSION_TEXT "2"
#define RETRIES 5
#define CHANNEL "p11kms_state"
#define ADVISORY_KEY STORE_PG_ADVISORY_KEY

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS p11kms_schema(version integer NOT NULL);"
    "CREATE TABLE IF NOT EXISTS keys(name text PRIMARY KEY,"
    " version bigint NOT NULL CHECK (version >= 1), value bytea NOT NULL, mac bytea NOT NULL);"
    "CREATE TABLE IF NOT EXISTS aliases(name text PRIMARY KEY,"
    " version bigint NOT NULL CHECK (version >= 1), value bytea NOT NULL, mac bytea NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_checkpoints(name text PRIMARY KEY,"
    " version bigint NOT NULL CHECK (version >= 1), value bytea NOT NULL, mac bytea NOT NULL);"
    "CREATE TABLE IF NOT EXISTS version_claims(key_id text NOT NULL,"
    " version bigint NOT NULL CHECK (version >= 1), claimed bigint NOT NULL,"
    " pending_seal bytea, PRIMARY KEY (key_id, version));";

typedef struct pg_store {
    store base;
    PGconn *conn;
    char *conninfo;
    pthread_mutex_t lock; /* recursive */
    unsigned depth;
    /* listener */
    pthread_t listener;
    bool listening;
    volatile int stop;
    int wake[2]; /* closing writes here so the listener's poll returns at once */
    void (*on_change)(void *arg);
    void *on_change_arg;
} pg_store;

static pg_store *of(store *s)
{
    return (pg_store *)s;
}

static const char *table_name(store_table t)
{
    return t == STORE_KEYS ? "keys" : t == STORE_AUDIT ? "audit_checkpoints" : "aliases";
}

static bool retryable(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0);
}

static p11kms_err fail(pg_store *s, p11kms_error *err, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL && strcmp(state, "23505") == 0)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS, "PostgreSQL store: %s: the row exists",
                            what);
    if (state != NULL && strcmp(state, "55P03") == 0)
        return P11KMS_RAISE(err, P11KMS_E_IO,
                            "PostgreSQL store: %s failed: waited longer than lock_timeout for a "
                            "lock another connection holds (another p11kms host stuck in a "
                            "change?); try again",
                            what);
    if (state != NULL && strcmp(state, "53100") == 0)
        return P11KMS_RAISE(err, P11KMS_E_IO,
                            "PostgreSQL store: %s failed: the disk is full (nothing was changed)",
                            what);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
    char clean[256];
    snprintf(clean, sizeof(clean), "%s", msg ? msg : "?");
    clean[strcspn(clean, "\n")] = '\0';
    return P11KMS_RAISE(err, P11KMS_E_IO, "PostgreSQL store: %s failed: %s", what, clean);
}

/* What every connection of the store sets once made (again after PQreset, which starts a new
 * backend): no notices on stderr, and a bounded wait for locks. Changes take the advisory lock
 * of every host; a host that hangs while holding it (its HSM stopped answering in the middle of
 * a change) keeps its connection and so the lock, and every other host's changes, batch
 * reservations for Encrypt included, would wait for ever behind it: they fail after
 * DEFAULT_LOCK_TIMEOUT instead (SQLite's busy timeout is the same 30 s). A lock_timeout other
 * than 0 set for the connection (the spec's options=-c lock_timeout=..., PGOPTIONS, ALTER ROLE or
 * DATABASE ... SET) is kept. One statement, one round trip. */
#define DEFAULT_LOCK_TIMEOUT "30s"
static const char session_setup_sql[] =
    "SELECT set_config('client_min_messages', 'warning', false),"
    " CASE WHEN current_setting('lock_timeout') = '0'"
    " THEN set_config('lock_timeout', '" DEFAULT_LOCK_TIMEOUT "', false) END";

static void session_setup(PGconn *conn)
{
    PQclear(PQexec(conn, session_setup_sql));
}

/* A dropped connection is re-established once before a statement outside a transaction. */
static void ensure_connected(pg_store *s)
{
    if (PQstatus(s->conn) != CONNECTION_OK && s->depth == 0) {
        PQreset(s->conn);
        if (PQstatus(s->conn) == CONNECTION_OK)
            session_setup(s->conn);
    }
}

/* Runs one statement; outside a transaction, retried on serialization failure or deadlock. */
static PGresult *run(pg_store *s, const char *sql, int n, const char *const *values,
                     const int *lengths, const int *formats)
{
    PGresult *res = NULL;
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        ensure_connected(s);
        res = PQexecParams(s->conn, sql, n, NULL, values, lengths, formats, 1);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
            return res;
        if (s->depth > 0 || !retryable(res))
            return res;
        PQclear(res);
        res = NULL;
        struct timespec ts = {0, 5000000L * (attempt + 1)};
        nanosleep(&ts, NULL);
    }
    return res;
}

static bool ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static uint64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}

static p11kms_err read_row(pg_store *s, const PGresult *res, int i, store_row *row,
                           p11kms_error *err)
{
    (void)s;
    memset(row, 0, sizeof(*row));
    snprintf(row->name, sizeof(row->name), "%.*s", PQgetlength(res, i, 0), PQgetvalue(res, i, 0));
    if (PQgetlength(res, i, 1) == 8)
        row->version = be64(PQgetvalue(res, i, 1));
    int len = PQgetlength(res, i, 2);
    row->value = malloc(len > 0 ? (size_t)len : 1);
    if (row->value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading the store");
    memcpy(row->value, PQgetvalue(res, i, 2), (size_t)len);
    row->len = (size_t)len;
    if (PQgetlength(res, i, 3) == STORE_MAC_LEN)
        memcpy(row->mac, PQgetvalue(res, i, 3), STORE_MAC_LEN);
    return P11KMS_OK;
}

static p11kms_err pg_get(store *base, store_table t, const char *name, store_row *row,
                         p11kms_error *err)
{
    pg_store *s = of(base);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT name, version, value, mac FROM %s WHERE name = $1",
             table_name(t));
    const char *values[1] = {name};
    pthread_mutex_lock(&s->lock);
    PGresult *res = run(s, sql, 1, values, NULL, NULL);
    p11kms_err rc;
    if (!ok(res))
        rc = fail(s, err, res, "reading a row");
    else if (PQntuples(res) == 0)
        rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "the store has no %s row %s", table_name(t),
                          name);
    else
        rc = read_row(s, res, 0, row, err);
    PQclear(res);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static p11kms_err pg_put(store *base, store_table t, const store_row *row, p11kms_error *err)
{
    pg_store *s = of(base);
    char sql[192];
    if (row->version <= 1)
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s(name, version, value, mac) VALUES($1, $2::bigint, $3, $4)",
                 table_name(t));
    else
        snprintf(sql, sizeof(sql),
                 "UPDATE %s SET version = $2::bigint, value = $3, mac = $4 WHERE name = $1 AND "
                 "version = $2::bigint - 1",
                 table_name(t));
    char version[24];
    snprintf(version, sizeof(version), "%llu",
             (unsigned long long)(row->version ? row->version : 1));
    const char *values[4] = {row->name, version, row->len ? (const char *)row->value : "",
                             (const char *)row->mac};
    int lengths[4] = {0, 0, (int)row->len, STORE_MAC_LEN};
    int formats[4] = {0, 0, 1, 1};
    pthread_mutex_lock(&s->lock);
    PGresult *res = run(s, sql, 4, values, lengths, formats);
    p11kms_err rc = P11KMS_OK;
    if (!ok(res))
        rc = fail(s, err, res, "writing a row");
    else if (row->version > 1 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                          "PostgreSQL store: %s row %s changed concurrently (expected version "
                          "%llu)",
                          table_name(t), row->name, (unsigned long long)row->version - 1);
    PQclear(res);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static p11kms_err pg_del(store *base, store_table t, const char *name, p11kms_error *err)
{
    pg_store *s = of(base);
    char sql[96];
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE name = $1", table_name(t));
    const char *values[1] = {name};
    pthread_mutex_lock(&s->lock);
    PGresult *res = run(s, sql, 1, values, NULL, NULL);
    p11kms_err rc = P11KMS_OK;
    if (!ok(res))
        rc = fail(s, err, res, "deleting a row");
    else if (strcmp(PQcmdTuples(res), "0") == 0)
        rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "the store has no %s row %s", table_name(t),
                          name);
    PQclear(res);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static p11kms_err pg_list(store *base, store_table t, int (*fn)(const store_row *row, void *arg),
                          void *arg, p11kms_error *err)
{
    pg_store *s = of(base);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT name, version, value, mac FROM %s ORDER BY name",
             table_name(t));
    pthread_mutex_lock(&s->lock);
    PGresult *res = run(s, sql, 0, NULL, NULL, NULL);
    pthread_mutex_unlock(&s->lock);
    if (!ok(res)) {
        p11kms_err rc = fail(s, err, res, "listing rows");
        PQclear(res);
        return rc;
    }
    p11kms_err rc = P11KMS_OK;
    int n = PQntuples(res);
    for (int i = 0; rc == P11KMS_OK && i < n; i++) {
        store_row row;
        rc = read_row(s, res, i, &row, err);
        int stop = rc == P11KMS_OK ? fn(&row, arg) : 1;
        store_row_clear(&row);
        if (stop)
            break;
    }
    PQclear(res);
    return rc;
}

/* Runs sql with key_id, version, claimed and the seal (NULL when not sealed) as $1 to $4. */
static PGresult *run_claim(pg_store *s, const char *sql, const store_claim *c)
{
    char v[16], t[24];
    snprintf(v, sizeof(v), "%u", c->version);
    snprintf(t, sizeof(t), "%lld", (long long)c->claimed);
    const char *values[4] = {c->key_id, v, t, c->sealed ? (const char *)c->seal : NULL};
    const int lengths[4] = {0, 0, 0, STORE_MAC_LEN};
    const int formats[4] = {0, 0, 0, 1};
    return run(s, sql, 4, values, lengths, formats);
}

/* An INSERT or UPDATE of claim c: ALREADY_EXISTS when the version is claimed already,
 * NOT_FOUND when no row changed. */
static p11kms_err write_claim(pg_store *s, const char *sql, const store_claim *c, const char *what,
                              p11kms_error *err)
{
    pthread_mutex_lock(&s->lock);
    PGresult *res = run_claim(s, sql, c);
    p11kms_err rc = P11KMS_OK;
    if (!ok(res)) {
        p11kms_error probe = {0};
        rc = fail(s, &probe, res, what);
        if (rc == P11KMS_E_ALREADY_EXISTS)
            rc = P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                              "version %u of key %s is already claimed in the store", c->version,
                              c->key_id);
        else if (err != NULL)
            *err = probe;
    } else if (strcmp(PQcmdTuples(res), "1") != 0) {
        rc =
            P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                         "version %u of key %s is not claimed in the store", c->version, c->key_id);
    }
    PQclear(res);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static p11kms_err pg_claim(store *base, const store_claim *c, p11kms_error *err)
{
    return write_claim(of(base),
                       "INSERT INTO version_claims(key_id, version, claimed, pending_seal) "
                       "VALUES($1, $2::bigint, $3::bigint, $4::bytea)",
                       c, "claiming a key version", err);
}

static p11kms_err pg_reseal(store *base, const store_claim *c, p11kms_error *err)
{
    return write_claim(of(base),
                       "UPDATE version_claims SET claimed = $3::bigint, pending_seal = "
                       "$4::bytea WHERE key_id = $1 AND version = $2::bigint",
                       c, "sealing a key version claim", err);
}

static p11kms_err pg_release(store *base, const char *key_id, uint32_t version, p11kms_error *err)
{
    pg_store *s = of(base);
    char v[16];
    snprintf(v, sizeof(v), "%u", version);
    const char *values[2] = {key_id, v};
    pthread_mutex_lock(&s->lock);
    PGresult *res = run(s, "DELETE FROM version_claims WHERE key_id = $1 AND version = $2::bigint",
                        2, values, NULL, NULL);
    p11kms_err rc = ok(res) ? P11KMS_OK : fail(s, err, res, "releasing a key version");
    PQclear(res);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static p11kms_err pg_list_claims(store *base, int (*fn)(const store_claim *c, void *arg), void *arg,
                                 p11kms_error *err)
{
    pg_store *s = of(base);
    pthread_mutex_lock(&s->lock);
    PGresult *res = run(s,
                        "SELECT key_id, version, claimed, pending_seal FROM version_claims "
                        "ORDER BY key_id, version",
                        0, NULL, NULL, NULL);
    pthread_mutex_unlock(&s->lock);
    if (!ok(res)) {
        p11kms_err rc = fail(s, err, res, "listing version claims");
        PQclear(res);
        return rc;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        store_claim c = {0};
        snprintf(c.key_id, sizeof(c.key_id), "%.*s", PQgetlength(res, i, 0), PQgetvalue(res, i, 0));
        c.version = (uint32_t)be64(PQgetvalue(res, i, 1));
        c.claimed = (int64_t)be64(PQgetvalue(res, i, 2));
        /* A seal of any other length is no seal: it will not verify. */
        c.sealed = !PQgetisnull(res, i, 3);
        if (c.sealed && PQgetlength(res, i, 3) == STORE_MAC_LEN)
            memcpy(c.seal, PQgetvalue(res, i, 3), STORE_MAC_LEN);
        if (fn(&c, arg) != 0)
            break;
    }
    PQclear(res);
    return P11KMS_OK;
}

static p11kms_err simple(pg_store *s, const char *sql, const char *what, p11kms_error *err)
{
    PGresult *res = run(s, sql, 0, NULL, NULL, NULL);
    p11kms_err rc = ok(res) ? P11KMS_OK : fail(s, err, res, what);
    PQclear(res);
    return rc;
}

static p11kms_err pg_begin(store *base, p11kms_error *err)
{
    pg_store *s = of(base);
    pthread_mutex_lock(&s->lock);
    if (s->depth > 0) {
        s->depth++;
        return P11KMS_OK;
    }
    p11kms_err rc = simple(s, "BEGIN", "starting a transaction", err);
    if (rc != P11KMS_OK) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    s->depth = 1;
    return P11KMS_OK;
}

static p11kms_err pg_commit(store *base, p11kms_error *err)
{
    pg_store *s = of(base);
    p11kms_err rc = P11KMS_OK;
    if (--s->depth == 0) {
        /* COMMIT of a failed transaction reports ROLLBACK: treat it as the failure it is. */
        PGresult *res = PQexec(s->conn, "COMMIT");
        if (!ok(res) || strcmp(PQcmdStatus(res), "COMMIT") != 0)
            rc = fail(s, err, ok(res) ? NULL : res, "committing a transaction");
        PQclear(res);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void pg_rollback(store *base)
{
    pg_store *s = of(base);
    if (--s->depth == 0)
        PQclear(PQexec(s->conn, "ROLLBACK"));
    pthread_mutex_unlock(&s->lock);
}

static p11kms_err pg_lock(store *base, p11kms_error *err)
{
    pg_store *s = of(base);
    pthread_mutex_lock(&s->lock);
    p11kms_err rc =
        simple(s, "SELECT pg_advisory_lock(" ADVISORY_KEY ")", "taking the change lock", err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void pg_unlock(store *base, bool changed)
{
    pg_store *s = of(base);
    p11kms_error ignored = {0};
    pthread_mutex_lock(&s->lock);
    /* The change committed already. A connection lost since then fails the NOTIFY; sent again
     * on the connection made anew (run), it still reaches the other hosts at once instead of
     * after their keys.state-refresh-ms. */
    if (changed && simple(s, "NOTIFY " CHANNEL, "announcing a change", &ignored) != P11KMS_OK) {
        p11kms_error_clear(&ignored);
        if (simple(s, "NOTIFY " CHANNEL, "announcing a change", &ignored) != P11KMS_OK)
            fprintf(stderr,
                    "p11kms: WARNING: a committed change could not be announced to other hosts "
                    "(%s); they see it within keys.state-refresh-ms\n",
                    ignored.message);
        p11kms_error_clear(&ignored);
    }
    /* A lost connection released the lock on the server already. */
    (void)simple(s, "SELECT pg_advisory_unlock(" ADVISORY_KEY ")", "releasing the change lock",
                 &ignored);
    pthread_mutex_unlock(&s->lock);
}

/* --- connecting ----------------------------------------------------------------------------- */

/* libpq waits for ever for a server that accepts a connection and never answers, or a host that
 * drops every packet, when connect_timeout is not set: p11kms_open (and so a p11kmsd starting),
 * the listener's reconnection and the p11kms_close that waits for it would hang with it. */
#define DEFAULT_CONNECT_TIMEOUT "10"

/* Every connection p11kms makes: the store's, the listener's (PQreset reuses the options). The
 * spec is expanded as libpq's dbname (a URI or a conninfo string); array entries before it are
 * overridden by its own keywords, so a connect_timeout in the spec wins. PGCONNECT_TIMEOUT in
 * the environment is libpq's default, which an array entry would override: when it is set, none
 * is passed. */
static PGconn *pg_connect(const char *conninfo)
{
    static const char *const keywords[] = {"connect_timeout", "dbname", NULL};
    const char *values[] = {DEFAULT_CONNECT_TIMEOUT, conninfo, NULL};
    const char *env = getenv("PGCONNECT_TIMEOUT");
    int first = env != NULL && env[0] != '\0' ? 1 : 0;
    return PQconnectdbParams(keywords + first, values + first, 1);
}

/* --- the listener ---------------------------------------------------------------------------- */

static PGconn *listen_connect(pg_store *s)
{
    PGconn *c = pg_connect(s->conninfo);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *res = PQexec(c, "LISTEN " CHANNEL);
        bool listening = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (listening)
            return c;
    }
    PQfinish(c);
    return NULL;
}

static void *listen_loop(void *arg)
{
    pg_store *s = arg;
    PGconn *c = NULL;
    while (!s->stop) {
        if (c == NULL) {
            c = listen_connect(s);
            if (c == NULL) {
                struct timespec ts = {0, 200000000L};
                nanosleep(&ts, NULL);
                continue;
            }
            /* Changes made while not listening were not announced to this process. */
            s->on_change(s->on_change_arg);
        }
        struct pollfd pfd[2] = {{PQsocket(c), POLLIN, 0}, {s->wake[0], POLLIN, 0}};
        int n = poll(pfd, 2, 1000);
        if (n < 0 || s->stop)
            continue;
        if (n > 0 && !PQconsumeInput(c)) {
            PQfinish(c);
            c = NULL;
            continue;
        }
        bool changed = false;
        PGnotify *note;
        while ((note = PQnotifies(c)) != NULL) {
            changed = true;
            PQfreemem(note);
        }
        if (changed)
            s->on_change(s->on_change_arg);
    }
    PQfinish(c);
    return NULL;
}

static p11kms_err pg_watch(store *base, void (*on_change)(void *arg), void *arg, p11kms_error *err)
{
    pg_store *s = of(base);
    s->on_change = on_change;
    s->on_change_arg = arg;
    if (pipe2(s->wake, O_CLOEXEC) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "cannot create a pipe: %s", strerror(errno));
    if (pthread_create(&s->listener, NULL, listen_loop, s) != 0) {
        close(s->wake[0]);
        close(s->wake[1]);
        return P11KMS_RAISE(err, P11KMS_E_IO, "cannot start the PostgreSQL listener thread");
    }
    s->listening = true;
    return P11KMS_OK;
}

static void pg_close(store *base)
{
    pg_store *s = of(base);
    if (s->listening) {
        s->stop = 1;
        (void)!write(s->wake[1], "x", 1);
        pthread_join(s->listener, NULL);
        close(s->wake[0]);
        close(s->wake[1]);
    }
    PQfinish(s->conn);
    pthread_mutex_destroy(&s->lock);
    free(s->conninfo);
    free(s);
}

static const store_ops pg_ops = {
    .kind = "postgresql",
    .close = pg_close,
    .get = pg_get,
    .put = pg_put,
    .del = pg_del,
    .list = pg_list,
    .claim = pg_claim,
    .reseal = pg_reseal,
    .release = pg_release,
    .list_claims = pg_list_claims,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .lock = pg_lock,
    .unlock = pg_unlock,
    .watch = pg_watch,
};

/* Whether the database already has this schema: its version row and every table (the row is
 * written in the transaction that creates the tables). One read, so that opening neither waits
 * for the change lock nor runs DDL (store-sqlite.c does the same). An error (no such table on a
 * new database) means no. The tables are named as the statements name them, through the
 * search_path (to_regclass): on a new backend that costs 3.4-4.0 ms against 6.2-7.4 ms for a
 * query on the pg_tables view, the first query being the one that fills the backend's catalog
 * caches. */
static bool schema_current(PGconn *conn)
{
    char check[512];
    snprintf(check, sizeof(check),
             "SELECT to_regclass('keys') IS NOT NULL AND to_regclass('aliases') IS NOT NULL"
             " AND to_regclass('audit_checkpoints') IS NOT NULL"
             " AND to_regclass('version_claims') IS NOT NULL"
             " AND (SELECT min(version) = %d AND max(version) = %d FROM p11kms_schema)",
             SCHEMA_VERSION, SCHEMA_VERSION);
    PGresult *res = PQexec(conn, check);
    bool current = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                   strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return current;
}

/* Claims of version 1 carry no seal: maintain destroys none of their objects. */
static p11kms_err upgrade_from_1(pg_store *s, p11kms_error *err)
{
    static const char what[] = "upgrading the schema to version " SCHEMA_VERSION_TEXT;
    p11kms_err rc = simple(
        s, "ALTER TABLE version_claims ADD COLUMN IF NOT EXISTS pending_seal bytea", what, err);
    if (rc == P11KMS_OK)
        rc = simple(s, "UPDATE p11kms_schema SET version = " SCHEMA_VERSION_TEXT, what, err);
    return rc;
}

static p11kms_err create_schema(pg_store *s, p11kms_error *err)
{
    /* Two processes starting at once on an empty database must not race on CREATE TABLE. */
    p11kms_err rc = simple(s, "BEGIN", "creating the schema", err);
    if (rc == P11KMS_OK)
        rc =
            simple(s, "SELECT pg_advisory_xact_lock(" ADVISORY_KEY ")", "creating the schema", err);
    if (rc == P11KMS_OK) {
        PGresult *res = PQexec(s->conn, schema_sql);
        rc = PQresultStatus(res) == PGRES_COMMAND_OK ? P11KMS_OK
                                                     : fail(s, err, res, "creating the schema");
        PQclear(res);
    }
    PGresult *res = NULL;
    if (rc == P11KMS_OK) {
        res = PQexec(s->conn, "SELECT version FROM p11kms_schema");
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = fail(s, err, res, "reading the schema version");
        else if (PQntuples(res) == 0)
            rc = simple(s, "INSERT INTO p11kms_schema(version) VALUES (" SCHEMA_VERSION_TEXT ")",
                        "creating the schema", err);
        else if (atoi(PQgetvalue(res, 0, 0)) == 1)
            rc = upgrade_from_1(s, err);
        else if (atoi(PQgetvalue(res, 0, 0)) != SCHEMA_VERSION)
            rc = P11KMS_RAISE(err, P11KMS_E_CONFIG,
                              "the PostgreSQL store has schema version %s; this p11kms knows %d",
                              PQgetvalue(res, 0, 0), SCHEMA_VERSION);
    }
    PQclear(res);
    if (rc == P11KMS_OK)
        return simple(s, "COMMIT", "creating the schema", err);
    PQclear(PQexec(s->conn, "ROLLBACK"));
    return rc;
}

/* --- opening: the connection on a thread of its own ------------------------------------------ */

struct pg_connecting {
    char *conninfo;
    PGconn *conn;
    bool has_schema; /* read on the new connection: nothing to create */
    pthread_t thread;
    bool threaded; /* false: pthread_create failed, so finish connects itself */
};

/* Connects and reads whether the schema is there: the first round trips of a new backend, which
 * change nothing. */
static void *connect_thread(void *arg)
{
    pg_connecting *c = arg;
    c->conn = pg_connect(c->conninfo);
    if (PQstatus(c->conn) == CONNECTION_OK) {
        session_setup(c->conn);
        c->has_schema = schema_current(c->conn);
    }
    return NULL;
}

p11kms_err store_pg_connect_begin(const char *conninfo, pg_connecting **out, p11kms_error *err)
{
    *out = NULL;
    pg_connecting *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->conninfo = strdup(conninfo)) == NULL) {
        free(c);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory opening the store");
    }
    c->threaded = pthread_create(&c->thread, NULL, connect_thread, c) == 0;
    *out = c;
    return P11KMS_OK;
}

/* The connection, once made; the opening is freed, its conninfo handed to the caller. */
static PGconn *connect_wait(pg_connecting *c, char **conninfo, bool *schema_is_current)
{
    if (c->threaded)
        pthread_join(c->thread, NULL);
    else
        connect_thread(c);
    PGconn *conn = c->conn;
    *conninfo = c->conninfo;
    *schema_is_current = c->has_schema;
    free(c);
    return conn;
}

void store_pg_connect_abandon(pg_connecting *c)
{
    if (c == NULL)
        return;
    char *conninfo;
    bool ignored;
    PQfinish(connect_wait(c, &conninfo, &ignored));
    free(conninfo);
}

p11kms_err store_pg_connect_finish(pg_connecting *c, store **out, p11kms_error *err)
{
    *out = NULL;
    pg_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        store_pg_connect_abandon(c);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory opening the store");
    }
    bool current;
    s->conn = connect_wait(c, &s->conninfo, &current);
    s->base.ops = &pg_ops;
    const sync_obj lock = {SYNC_MUTEX_RECURSIVE, &s->lock, "the PostgreSQL store lock"};
    p11kms_err sync_rc = sync_init_all(&lock, 1, err);
    if (sync_rc != P11KMS_OK) {
        PQfinish(s->conn);
        free(s->conninfo);
        free(s);
        return sync_rc;
    }
    p11kms_err rc = P11KMS_OK;
    if (PQstatus(s->conn) != CONNECTION_OK)
        rc = fail(s, err, NULL, "connecting");
    else if (!current)
        rc = create_schema(s, err);
    if (rc != P11KMS_OK) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return P11KMS_OK;
}
