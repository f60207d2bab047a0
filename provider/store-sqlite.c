#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/threads.h"
#include "provider/store.h"

/* SQLite store: one file in WAL mode with synchronous=FULL, so that a write is acknowledged
 * only once it is on disk (and a full disk is reported as an error, never swallowed). Processes
 * of one host share the file; SQLite's own locks serialize them, waiting up to BUSY_TIMEOUT_MS.
 * Threads of one process share one connection behind a recursive mutex, which a transaction
 * holds from begin to commit so no other thread ever reads its uncommitted rows. */

#define BUSY_TIMEOUT_MS 30000
/* 2: version_claims.pending_seal (a database of version 1 is upgraded when opened). */
#define SCHEMA_VERSION 2
#define SCHEMA_VERSION_TEXT "2"

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS p11kms_schema(version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS keys(name TEXT PRIMARY KEY NOT NULL,"
    " version INTEGER NOT NULL CHECK(version >= 1), value BLOB NOT NULL, mac BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS aliases(name TEXT PRIMARY KEY NOT NULL,"
    " version INTEGER NOT NULL CHECK(version >= 1), value BLOB NOT NULL, mac BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS audit_checkpoints(name TEXT PRIMARY KEY NOT NULL,"
    " version INTEGER NOT NULL CHECK(version >= 1), value BLOB NOT NULL, mac BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS version_claims(key_id TEXT NOT NULL,"
    " version INTEGER NOT NULL CHECK(version >= 1), claimed INTEGER NOT NULL,"
    " pending_seal BLOB, PRIMARY KEY(key_id, version)) WITHOUT ROWID;";

typedef struct sqlite_store {
    store base;
    sqlite3 *db;
    char *path;
    pthread_mutex_t lock; /* recursive */
    unsigned depth;       /* nested store_begin calls */
} sqlite_store;

static const char *table_name(store_table t)
{
    return t == STORE_KEYS ? "keys" : t == STORE_AUDIT ? "audit_checkpoints" : "aliases";
}

/* Every SQLite failure names the database and, for a full disk, says so plainly. */
static p11kms_err fail(sqlite_store *s, p11kms_error *err, int rc, const char *what)
{
    if (rc == SQLITE_FULL)
        return P11KMS_RAISE(err, P11KMS_E_IO,
                            "database %s: %s failed: the disk is full (nothing was changed)",
                            s->path, what);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return P11KMS_RAISE(err, P11KMS_E_IO,
                            "database %s: %s failed: still locked by another process after %d ms",
                            s->path, what, BUSY_TIMEOUT_MS);
    return P11KMS_RAISE(err, P11KMS_E_IO, "database %s: %s failed: %s", s->path, what,
                        s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static sqlite_store *of(store *s)
{
    return (sqlite_store *)s;
}

static void lock(sqlite_store *s)
{
    pthread_mutex_lock(&s->lock);
}

static void unlock(sqlite_store *s)
{
    pthread_mutex_unlock(&s->lock);
}

static p11kms_err prepare(sqlite_store *s, const char *sql, sqlite3_stmt **st, p11kms_error *err)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? P11KMS_OK : fail(s, err, rc, "preparing a statement");
}

static p11kms_err exec(sqlite_store *s, const char *sql, const char *what, p11kms_error *err)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? P11KMS_OK : fail(s, err, rc, what);
}

static p11kms_err read_row(sqlite_store *s, sqlite3_stmt *st, store_row *row, p11kms_error *err)
{
    const unsigned char *name = sqlite3_column_text(st, 0);
    sqlite3_int64 version = sqlite3_column_int64(st, 1);
    const void *value = sqlite3_column_blob(st, 2);
    int len = sqlite3_column_bytes(st, 2);
    const void *mac = sqlite3_column_blob(st, 3);
    int mac_len = sqlite3_column_bytes(st, 3);
    memset(row, 0, sizeof(*row));
    /* A row of the wrong shape is handled like a bad MAC by the caller: zero MAC, version 0. */
    snprintf(row->name, sizeof(row->name), "%s", name ? (const char *)name : "");
    row->version = version > 0 ? (uint64_t)version : 0;
    if (mac_len == STORE_MAC_LEN)
        memcpy(row->mac, mac, STORE_MAC_LEN);
    row->value = malloc(len > 0 ? (size_t)len : 1);
    if (row->value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading %s", s->path);
    if (len > 0)
        memcpy(row->value, value, (size_t)len);
    row->len = len > 0 ? (size_t)len : 0;
    return P11KMS_OK;
}

static p11kms_err sq_get(store *base, store_table t, const char *name, store_row *row,
                         p11kms_error *err)
{
    sqlite_store *s = of(base);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT name, version, value, mac FROM %s WHERE name = ?1",
             table_name(t));
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc = prepare(s, sql, &st, err);
    if (rc == P11KMS_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            rc = read_row(s, st, row, err);
        else if (step == SQLITE_DONE)
            rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "%s has no %s row %s", s->path,
                              table_name(t), name);
        else
            rc = fail(s, err, step, "reading a row");
    }
    sqlite3_finalize(st);
    unlock(s);
    return rc;
}

static p11kms_err step_done(sqlite_store *s, sqlite3_stmt *st, const char *what, p11kms_error *err)
{
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        return P11KMS_OK;
    if (step == SQLITE_CONSTRAINT)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS, "database %s: %s: the row exists",
                            s->path, what);
    return fail(s, err, step, what);
}

static p11kms_err sq_put(store *base, store_table t, const store_row *row, p11kms_error *err)
{
    sqlite_store *s = of(base);
    char sql[160];
    if (row->version <= 1)
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s(name, version, value, mac) VALUES(?1, ?2, ?3, ?4)", table_name(t));
    else
        snprintf(sql, sizeof(sql),
                 "UPDATE %s SET version = ?2, value = ?3, mac = ?4 WHERE name = ?1 AND "
                 "version = ?2 - 1",
                 table_name(t));
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc = prepare(s, sql, &st, err);
    if (rc == P11KMS_OK) {
        sqlite3_bind_text(st, 1, row->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(row->version ? row->version : 1));
        sqlite3_bind_blob(st, 3, row->len ? (const void *)row->value : "", (int)row->len,
                          SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, row->mac, STORE_MAC_LEN, SQLITE_STATIC);
        rc = step_done(s, st, "writing a row", err);
        if (rc == P11KMS_OK && row->version > 1 && sqlite3_changes(s->db) != 1)
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                              "database %s: %s row %s changed concurrently (expected version "
                              "%llu)",
                              s->path, table_name(t), row->name,
                              (unsigned long long)row->version - 1);
    }
    sqlite3_finalize(st);
    unlock(s);
    return rc;
}

static p11kms_err sq_del(store *base, store_table t, const char *name, p11kms_error *err)
{
    sqlite_store *s = of(base);
    char sql[96];
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE name = ?1", table_name(t));
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc = prepare(s, sql, &st, err);
    if (rc == P11KMS_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = step_done(s, st, "deleting a row", err);
        if (rc == P11KMS_OK && sqlite3_changes(s->db) == 0)
            rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "%s has no %s row %s", s->path,
                              table_name(t), name);
    }
    sqlite3_finalize(st);
    unlock(s);
    return rc;
}

/* Rows are collected first and handed to fn without the lock held: fn may use the store. */
static p11kms_err sq_list(store *base, store_table t, int (*fn)(const store_row *row, void *arg),
                          void *arg, p11kms_error *err)
{
    sqlite_store *s = of(base);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT name, version, value, mac FROM %s ORDER BY name",
             table_name(t));
    store_row *rows = NULL;
    size_t n = 0, cap = 0;
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc = prepare(s, sql, &st, err);
    int step = SQLITE_DONE;
    while (rc == P11KMS_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t grown_cap = cap ? cap * 2 : 64;
            store_row *grown = realloc(rows, grown_cap * sizeof(*rows));
            if (grown == NULL) {
                rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing %s", s->path);
                break;
            }
            rows = grown;
            cap = grown_cap;
        }
        rc = read_row(s, st, &rows[n], err);
        if (rc == P11KMS_OK)
            n++;
    }
    if (rc == P11KMS_OK && step != SQLITE_DONE)
        rc = fail(s, err, step, "listing rows");
    sqlite3_finalize(st);
    unlock(s);
    for (size_t i = 0; rc == P11KMS_OK && i < n; i++) {
        if (fn(&rows[i], arg) != 0)
            break;
    }
    for (size_t i = 0; i < n; i++)
        store_row_clear(&rows[i]);
    free(rows);
    return rc;
}

/* Binds key_id, version, claimed and the seal (NULL when not sealed) as ?1 to ?4. */
static void bind_claim(sqlite3_stmt *st, const store_claim *c)
{
    sqlite3_bind_text(st, 1, c->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, c->version);
    sqlite3_bind_int64(st, 3, c->claimed);
    if (c->sealed)
        sqlite3_bind_blob(st, 4, c->seal, STORE_MAC_LEN, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
}

/* An INSERT or UPDATE of claim c (bound as ?1 to ?4): ALREADY_EXISTS when the version is
 * claimed already, NOT_FOUND when no row changed. */
static p11kms_err write_claim(sqlite_store *s, const char *sql, const store_claim *c,
                              const char *what, p11kms_error *err)
{
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc = prepare(s, sql, &st, err);
    if (rc == P11KMS_OK) {
        bind_claim(st, c);
        p11kms_error probe = {0};
        rc = step_done(s, st, what, &probe);
        if (rc == P11KMS_E_ALREADY_EXISTS)
            rc = P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                              "version %u of key %s is already claimed in %s", c->version,
                              c->key_id, s->path);
        else if (rc != P11KMS_OK && err != NULL)
            *err = probe;
        else if (rc == P11KMS_OK && sqlite3_changes(s->db) != 1)
            rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "version %u of key %s is not claimed in %s",
                              c->version, c->key_id, s->path);
    }
    sqlite3_finalize(st);
    unlock(s);
    return rc;
}

static p11kms_err sq_claim(store *base, const store_claim *c, p11kms_error *err)
{
    return write_claim(of(base),
                       "INSERT INTO version_claims(key_id, version, claimed, pending_seal) "
                       "VALUES(?1, ?2, ?3, ?4)",
                       c, "claiming a key version", err);
}

static p11kms_err sq_reseal(store *base, const store_claim *c, p11kms_error *err)
{
    return write_claim(of(base),
                       "UPDATE version_claims SET claimed = ?3, pending_seal = ?4 "
                       "WHERE key_id = ?1 AND version = ?2",
                       c, "sealing a key version claim", err);
}

static p11kms_err sq_release(store *base, const char *key_id, uint32_t version, p11kms_error *err)
{
    sqlite_store *s = of(base);
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc =
        prepare(s, "DELETE FROM version_claims WHERE key_id = ?1 AND version = ?2", &st, err);
    if (rc == P11KMS_OK) {
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, version);
        rc = step_done(s, st, "releasing a key version", err);
    }
    sqlite3_finalize(st);
    unlock(s);
    return rc;
}

static p11kms_err sq_list_claims(store *base, int (*fn)(const store_claim *c, void *arg), void *arg,
                                 p11kms_error *err)
{
    sqlite_store *s = of(base);
    store_claim *items = NULL;
    size_t n = 0, cap = 0;
    lock(s);
    sqlite3_stmt *st = NULL;
    p11kms_err rc = prepare(s,
                            "SELECT key_id, version, claimed, pending_seal FROM version_claims "
                            "ORDER BY key_id, version",
                            &st, err);
    int step = SQLITE_DONE;
    while (rc == P11KMS_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t grown_cap = cap ? cap * 2 : 64;
            store_claim *grown = realloc(items, grown_cap * sizeof(*items));
            if (grown == NULL) {
                rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing %s", s->path);
                break;
            }
            items = grown;
            cap = grown_cap;
        }
        store_claim *c = &items[n++];
        memset(c, 0, sizeof(*c));
        const unsigned char *id = sqlite3_column_text(st, 0);
        snprintf(c->key_id, sizeof(c->key_id), "%s", id ? (const char *)id : "");
        c->version = (uint32_t)sqlite3_column_int64(st, 1);
        c->claimed = sqlite3_column_int64(st, 2);
        /* A seal of any other length is no seal: it will not verify. */
        c->sealed = sqlite3_column_type(st, 3) != SQLITE_NULL;
        if (c->sealed && sqlite3_column_bytes(st, 3) == STORE_MAC_LEN)
            memcpy(c->seal, sqlite3_column_blob(st, 3), STORE_MAC_LEN);
    }
    if (rc == P11KMS_OK && step != SQLITE_DONE)
        rc = fail(s, err, step, "listing version claims");
    sqlite3_finalize(st);
    unlock(s);
    for (size_t i = 0; rc == P11KMS_OK && i < n; i++) {
        if (fn(&items[i], arg) != 0)
            break;
    }
    free(items);
    return rc;
}

/* The mutex stays held from the outermost begin to its commit or rollback. */
static p11kms_err sq_begin(store *base, p11kms_error *err)
{
    sqlite_store *s = of(base);
    lock(s);
    if (s->depth++ > 0)
        return P11KMS_OK;
    p11kms_err rc = exec(s, "BEGIN IMMEDIATE", "starting a transaction", err);
    if (rc != P11KMS_OK) {
        s->depth--;
        unlock(s);
    }
    return rc;
}

static p11kms_err sq_commit(store *base, p11kms_error *err)
{
    sqlite_store *s = of(base);
    p11kms_err rc = P11KMS_OK;
    if (--s->depth == 0) {
        rc = exec(s, "COMMIT", "committing a transaction", err);
        if (rc != P11KMS_OK)
            (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    unlock(s);
    return rc;
}

static void sq_rollback(store *base)
{
    sqlite_store *s = of(base);
    if (--s->depth == 0)
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    unlock(s);
}

static void sq_close(store *base)
{
    sqlite_store *s = of(base);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

static const store_ops sqlite_ops = {
    .kind = "sqlite",
    .close = sq_close,
    .get = sq_get,
    .put = sq_put,
    .del = sq_del,
    .list = sq_list,
    .claim = sq_claim,
    .reseal = sq_reseal,
    .release = sq_release,
    .list_claims = sq_list_claims,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
};

/* Whether the database already has this schema: its version row and every table (the row is
 * written in the transaction that creates the tables). A read, so that opening a database in
 * use neither waits for nor blocks writers, and runs no DDL. */
static bool schema_current(sqlite_store *s)
{
    static const char check[] =
        "SELECT (SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
        "('p11kms_schema', 'keys', 'aliases', 'audit_checkpoints', 'version_claims')) = 5"
        " AND (SELECT min(version) = ? AND max(version) = ? FROM p11kms_schema)";
    sqlite3_stmt *st = NULL;
    bool current = false;
    /* Fails (no such table) on a new database: then the schema is created. */
    if (sqlite3_prepare_v2(s->db, check, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_int(st, 1, SCHEMA_VERSION) == SQLITE_OK &&
        sqlite3_bind_int(st, 2, SCHEMA_VERSION) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        current = sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
    return current;
}

static p11kms_err create_schema(sqlite_store *s, p11kms_error *err)
{
    if (schema_current(s))
        return P11KMS_OK;
    p11kms_err rc = exec(s, "BEGIN IMMEDIATE", "creating the schema", err);
    if (rc != P11KMS_OK)
        return rc;
    rc = exec(s, schema_sql, "creating the schema", err);
    sqlite3_stmt *st = NULL;
    if (rc == P11KMS_OK)
        rc = prepare(s, "SELECT version FROM p11kms_schema", &st, err);
    if (rc == P11KMS_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE) {
            rc = exec(s, "INSERT INTO p11kms_schema(version) VALUES(" SCHEMA_VERSION_TEXT ")",
                      "creating the schema", err);
        } else if (step == SQLITE_ROW) {
            sqlite3_int64 v = sqlite3_column_int64(st, 0);
            if (v == 1) {
                /* Claims of version 1 carry no seal: maintain destroys none of their objects. */
                sqlite3_finalize(st);
                st = NULL;
                rc = exec(s,
                          "ALTER TABLE version_claims ADD COLUMN pending_seal BLOB;"
                          "UPDATE p11kms_schema SET version = " SCHEMA_VERSION_TEXT,
                          "upgrading the schema to version " SCHEMA_VERSION_TEXT, err);
            } else if (v != SCHEMA_VERSION)
                rc = P11KMS_RAISE(err, P11KMS_E_CONFIG,
                                  "database %s has schema version %lld; this p11kms knows %d",
                                  s->path, (long long)v, SCHEMA_VERSION);
        } else {
            rc = fail(s, err, step, "reading the schema version");
        }
    }
    sqlite3_finalize(st);
    if (rc == P11KMS_OK)
        return exec(s, "COMMIT", "creating the schema", err);
    (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

p11kms_err store_sqlite_open(const char *path, store **out, p11kms_error *err)
{
    *out = NULL;
    if (path[0] != '/')
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "store sqlite:%s: the path must be absolute",
                            path);
    /* Created 0600 before SQLite sees it: descriptions and tags are not for everyone. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "cannot open database %s: %s", path, strerror(errno));
    close(fd);
    sqlite_store *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(path)) == NULL) {
        free(s);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory opening %s", path);
    }
    s->base.ops = &sqlite_ops;
    const sync_obj lock = {SYNC_MUTEX_RECURSIVE, &s->lock, "the SQLite store lock"};
    p11kms_err sync_rc = sync_init_all(&lock, 1, err);
    if (sync_rc != P11KMS_OK) {
        free(s->path);
        free(s);
        return sync_rc;
    }
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
    p11kms_err prc = P11KMS_OK;
    if (rc != SQLITE_OK)
        prc = fail(s, err, rc, "opening");
    if (prc == P11KMS_OK) {
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
        sqlite3_extended_result_codes(s->db, 0);
        prc = exec(s, "PRAGMA journal_mode=WAL", "switching to WAL", err);
    }
    if (prc == P11KMS_OK)
        prc = exec(s, "PRAGMA synchronous=FULL", "setting synchronous=FULL", err);
    if (prc == P11KMS_OK)
        prc = create_schema(s, err);
    if (prc != P11KMS_OK) {
        sq_close(&s->base);
        return prc;
    }
    *out = &s->base;
    return P11KMS_OK;
}
