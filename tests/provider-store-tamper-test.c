#include "config.h"

/* Rows changed in the database by anyone without the token are refused: every row carries a MAC
 * made by the token's integrity key over its canonical bytes, name and row version
 * (doc/token-layout.md). Each case changes a row behind p11kms's back (the SQLite file with its C
 * API, or the PostgreSQL database with libpq), opens a fresh service (nothing cached) and expects
 * KMSInternalException naming the key or alias; restoring the original row makes the key work
 * again. */

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

static p11kms_principal *who;
static p11kms_error e;
static char db_path[4096];

typedef struct saved_row {
    void *value;
    int len;
} saved_row;

/* The rows are changed with the store's own client library: SQLite's C API on the database
 * file, or libpq on the test's PostgreSQL (P11KMS_TEST_STORE=postgresql, see
 * tests/lib/with-postgres.sh). Both schemas name the tables and columns alike. */
static bool use_pg;

static sqlite3 *db_open(void)
{
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(db_path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static PGconn *pg_open(void)
{
    PGconn *c = PQconnectdb(test_env("P11KMS_TEST_STORE_SPEC"));
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "PQconnectdb: %s\n", PQerrorMessage(c));
        exit(99);
    }
    return c;
}

/* Runs sql with up to two text parameters (the second may be binary: len2 >= 0) and returns the
 * result, which must have the status want. */
static PGresult *pg_run(PGconn *c, const char *sql, const char *p1, const void *p2, int len2,
                        ExecStatusType want)
{
    const char *values[2] = {p1, p2};
    int lengths[2] = {0, len2};
    int formats[2] = {0, len2 >= 0 ? 1 : 0};
    int n = p2 != NULL ? 2 : p1 != NULL ? 1 : 0;
    /* Results in binary: bytea values come back as their bytes. */
    PGresult *res = PQexecParams(c, sql, n, NULL, values, lengths, formats, 1);
    if (PQresultStatus(res) != want) {
        fprintf(stderr, "PQexecParams(%s): %s\n", sql, PQerrorMessage(c));
        exit(99);
    }
    return res;
}

/* Runs one SQL statement that must change exactly one row (any number when any_rows). */
static void db_exec_rows(const char *sql, bool any_rows)
{
    if (use_pg) {
        PGconn *c = pg_open();
        PGresult *res = pg_run(c, sql, NULL, NULL, -1, PGRES_COMMAND_OK);
        REQUIRE(any_rows || strcmp(PQcmdTuples(res), "1") == 0);
        PQclear(res);
        PQfinish(c);
        return;
    }
    sqlite3 *db = db_open();
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sqlite3_exec(%s): %s\n", sql, msg ? msg : "?");
        exit(99);
    }
    REQUIRE(any_rows || sqlite3_changes(db) == 1);
    sqlite3_close(db);
}

static void db_exec(const char *sql)
{
    db_exec_rows(sql, false);
}

static saved_row row_value(const char *table, const char *name)
{
    char sql[128];
    saved_row r;
    if (use_pg) {
        snprintf(sql, sizeof(sql), "SELECT value FROM %s WHERE name = $1", table);
        PGconn *c = pg_open();
        PGresult *res = pg_run(c, sql, name, NULL, -1, PGRES_TUPLES_OK);
        REQUIRE(PQntuples(res) == 1);
        r.len = PQgetlength(res, 0, 0);
        r.value = malloc((size_t)r.len + 1);
        REQUIRE(r.value != NULL);
        memcpy(r.value, PQgetvalue(res, 0, 0), (size_t)r.len);
        ((char *)r.value)[r.len] = '\0';
        PQclear(res);
        PQfinish(c);
        return r;
    }
    snprintf(sql, sizeof(sql), "SELECT value FROM %s WHERE name = ?1", table);
    sqlite3 *db = db_open();
    sqlite3_stmt *st = NULL;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    r.len = sqlite3_column_bytes(st, 0);
    r.value = malloc((size_t)r.len + 1);
    REQUIRE(r.value != NULL);
    memcpy(r.value, sqlite3_column_blob(st, 0), (size_t)r.len);
    ((char *)r.value)[r.len] = '\0';
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

static void set_value(const char *table, const char *name, const void *value, int len)
{
    char sql[128];
    if (use_pg) {
        snprintf(sql, sizeof(sql), "UPDATE %s SET value = $2 WHERE name = $1", table);
        PGconn *c = pg_open();
        PGresult *res = pg_run(c, sql, name, value, len, PGRES_COMMAND_OK);
        REQUIRE(strcmp(PQcmdTuples(res), "1") == 0);
        PQclear(res);
        PQfinish(c);
        return;
    }
    snprintf(sql, sizeof(sql), "UPDATE %s SET value = ?2 WHERE name = ?1", table);
    sqlite3 *db = db_open();
    sqlite3_stmt *st = NULL;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, value, len, SQLITE_STATIC);
    REQUIRE(sqlite3_step(st) == SQLITE_DONE);
    REQUIRE(sqlite3_changes(db) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The name of the first key row in name order. */
static void first_key(char out[P11KMS_KEY_ID_LEN + 1])
{
    static const char sql[] = "SELECT name FROM keys ORDER BY name LIMIT 1";
    if (use_pg) {
        PGconn *c = pg_open();
        PGresult *res = pg_run(c, sql, NULL, NULL, -1, PGRES_TUPLES_OK);
        REQUIRE(PQntuples(res) == 1);
        snprintf(out, P11KMS_KEY_ID_LEN + 1, "%.*s", PQgetlength(res, 0, 0), PQgetvalue(res, 0, 0));
        PQclear(res);
        PQfinish(c);
        return;
    }
    sqlite3 *db = db_open();
    sqlite3_stmt *st = NULL;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    snprintf(out, P11KMS_KEY_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Replaces the first occurrence of from with to in a key record, as an attacker with SQL access
 * would. */
static saved_row edit_record(const char *id, const char *from, const char *to)
{
    saved_row orig = row_value("keys", id);
    char *text = orig.value;
    char *at = strstr(text, from);
    if (at == NULL) {
        fprintf(stderr, "record of %s has no %s: %s\n", id, from, text);
        exit(99);
    }
    size_t n = strlen(text) - strlen(from) + strlen(to);
    char *edited = malloc(n + 1);
    REQUIRE(edited != NULL);
    snprintf(edited, n + 1, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    set_value("keys", id, edited, (int)strlen(edited));
    free(edited);
    return orig;
}

static void restore(const char *table, const char *name, saved_row *r)
{
    set_value(table, name, r->value, r->len);
    free(r->value);
    r->value = NULL;
}

/* A fresh service (no cached row) must refuse ref with KMSInternalException naming subject. */
static void expect_refused(const char *what, const char *ref, const char *subject)
{
    fx_say("%s is refused", what);
    p11kms *svc = fx_open(NULL);
    p11kms_key_metadata md;
    CHECK_ERR(p11kms_describe_key(svc, who, ref, &md, &e), P11KMS_E_INTERNAL, &e);
    CHECK(fx_msg_has(&e, subject));
    CHECK(fx_msg_has(&e, "integrity"));
    p11kms_result r;
    static const uint8_t pt[] = "x";
    CHECK_ERR(p11kms_encrypt(svc, who, ref, NULL, pt, sizeof(pt), &r, &e), P11KMS_E_INTERNAL, &e);
    p11kms_result_free(&r);
    p11kms_close(svc);
}

static p11kms_key_state state_now(const char *ref)
{
    p11kms *svc = fx_open(NULL);
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, who, ref, &md, &e), &e);
    p11kms_close(svc);
    return md.state;
}

/* Saves key id's whole row (value, MAC, row version) into table saved_NAME. */
static void save_row(const char *saved, const char *id)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", saved);
    db_exec_rows(sql, true);
    snprintf(sql, sizeof(sql), "CREATE TABLE %s AS SELECT * FROM keys WHERE name = '%s'", saved,
             id);
    db_exec_rows(sql, true);
}

/* Puts a saved row back, in place of the key's row if it still has one. */
static void put_back_row(const char *saved, const char *id)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM keys WHERE name = '%s'", id);
    db_exec_rows(sql, true);
    snprintf(sql, sizeof(sql), "INSERT INTO keys SELECT * FROM %s", saved);
    db_exec(sql);
}

/* Whether maintain destroyed an object of key id (a line "destroyed key object p11kms/ID/..."). */
static bool maintain_destroyed_any(p11kms *svc, const char *id)
{
    char object[P11KMS_KEY_ID_LEN + 40];
    snprintf(object, sizeof(object), "destroyed key object p11kms/%s/", id);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    bool destroyed = fx_list_find_sub(&lines, object) >= 0;
    fx_list_free(&lines);
    return destroyed;
}

static void expect_decrypts(const char *config, const p11kms_result *ciphertext)
{
    p11kms *svc = fx_open(config);
    p11kms_result pt = {0};
    CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, ciphertext->ciphertext,
                            ciphertext->ciphertext_len, &pt, &e),
             &e);
    p11kms_result_free(&pt);
    p11kms_close(svc);
}

/* A key's row deleted, or put back to an older authentic row, by someone without the token:
 * maintain must destroy none of the key's material (orphan grace 0, the most eager setting),
 * whatever is done to the version claims, so that putting the row back from a backup makes
 * every ciphertext decrypt again. */
static void test_maintain_after_record_loss(void)
{
    char *config = fx_config("tamper-maintain.yaml", "orphan-grace-seconds: 0", NULL, NULL);
    p11kms *svc = fx_open(config);
    char gone[P11KMS_KEY_ID_LEN + 1], rolled[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "its row is deleted", gone);
    fx_create_key(svc, who, "its row is rolled back", rolled);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, gone, NULL, &e), &e);
    static const uint8_t pt[] = "kept";
    p11kms_result under_gone = {0}, under_rolled = {0};
    CHECK_OK(p11kms_encrypt(svc, who, gone, NULL, pt, sizeof(pt), &under_gone, &e), &e);
    save_row("saved_rolled_v1", rolled);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, rolled, NULL, &e), &e);
    CHECK_OK(p11kms_encrypt(svc, who, rolled, NULL, pt, sizeof(pt), &under_rolled, &e), &e);
    p11kms_close(svc);

    fx_say("a key row deleted by SQL: maintain destroys none of its versions");
    save_row("saved_gone", gone);
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM keys WHERE name = '%s'", gone);
    db_exec(sql);
    svc = fx_open(config);
    CHECK(!maintain_destroyed_any(svc, gone));
    p11kms_close(svc);

    fx_say("... nor when its claims are given seals made by SQL (another row's MAC)");
    snprintf(sql, sizeof(sql),
             "UPDATE version_claims SET pending_seal = (SELECT mac FROM keys ORDER BY name LIMIT "
             "1) WHERE key_id = '%s'",
             gone);
    db_exec_rows(sql, true);
    svc = fx_open(config);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    long at = fx_list_find_sub(&lines, gone);
    CHECK(at >= 0 && strstr(lines.items[at], "fails its integrity check") != NULL);
    CHECK(fx_list_find_sub(&lines, "destroyed key object") < 0);
    fx_list_free(&lines);
    p11kms_close(svc);
    put_back_row("saved_gone", gone);
    expect_decrypts(config, &under_gone);

    fx_say("a key row put back to its authentic state before a rotation: version 2 stays");
    save_row("saved_rolled_v2", rolled);
    put_back_row("saved_rolled_v1", rolled);
    svc = fx_open(config);
    CHECK(!maintain_destroyed_any(svc, rolled));
    p11kms_close(svc);
    put_back_row("saved_rolled_v2", rolled);
    expect_decrypts(config, &under_rolled);

    p11kms_result_free(&under_gone);
    p11kms_result_free(&under_rolled);
    free(config);
}

int main(void)
{
    const char *store = getenv("P11KMS_TEST_STORE");
    use_pg = store != NULL && strcmp(store, "postgresql") == 0;
    snprintf(db_path, sizeof(db_path), "%s/p11kms.db", test_env("P11KMS_TEST_ROOT"));
    who = fx_principal("unix:user:tamper-tester");
    p11kms *svc = fx_open(NULL);
    char k1[P11KMS_KEY_ID_LEN + 1], k2[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "tamper one", k1);
    fx_create_key(svc, who, "tamper two", k2);
    CHECK_OK(p11kms_disable_key(svc, who, k1, &e), &e);
    p11kms_key_metadata md;
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, k2, &md, &e), &e);
    CHECK_OK(p11kms_create_alias(svc, who, "alias/tamper", k2, &e), &e);
    p11kms_result r;
    static const uint8_t pt[] = "reserve a batch";
    CHECK_OK(p11kms_encrypt(svc, who, k2, NULL, pt, sizeof(pt), &r, &e), &e);
    p11kms_result_free(&r);
    p11kms_close(svc);

    fx_say("the database holds the rows, authenticated");
    CHECK(state_now(k1) == P11KMS_KEY_DISABLED);

    saved_row orig = edit_record(k1, "\"state\":\"Disabled\"", "\"state\":\"Enabled\"");
    expect_refused("a key re-enabled by SQL", k1, k1);
    restore("keys", k1, &orig);
    CHECK(state_now(k1) == P11KMS_KEY_DISABLED);

    orig = edit_record(k2, ",{\"number\":2", ",{\"number\":9");
    expect_refused("a key version renumbered by SQL", k2, k2);
    restore("keys", k2, &orig);

    /* Removing version 2 from the record: cut the last element of "versions". */
    orig = row_value("keys", k2);
    {
        char *text = strdup(orig.value);
        REQUIRE(text != NULL);
        char *v2 = strstr(text, ",{\"number\":2");
        char *end = v2 ? strchr(v2, '}') : NULL;
        REQUIRE(v2 != NULL && end != NULL);
        memmove(v2, end + 1, strlen(end + 1) + 1);
        set_value("keys", k2, text, (int)strlen(text));
        free(text);
    }
    expect_refused("a key version removed by SQL", k2, k2);
    restore("keys", k2, &orig);

    orig = row_value("keys", k2);
    {
        char *text = strdup(orig.value);
        REQUIRE(text != NULL);
        /* The current version's counter (the last one) is the one encryptions raised. */
        char *res = NULL;
        for (char *p = strstr(text, "\"reserved\":"); p != NULL; p = strstr(p + 1, "\"reserved\":"))
            res = p;
        REQUIRE(res != NULL);
        char *digits = res + strlen("\"reserved\":");
        REQUIRE(*digits >= '1' && *digits <= '9');
        char *after = digits;
        while (*after >= '0' && *after <= '9')
            after++;
        memmove(digits + 1, after, strlen(after) + 1);
        *digits = '0';
        set_value("keys", k2, text, (int)strlen(text));
        free(text);
    }
    expect_refused("an encryption counter lowered by SQL", k2, k2);
    restore("keys", k2, &orig);

    saved_row alias = row_value("aliases", "alias/tamper");
    set_value("aliases", "alias/tamper", k1, (int)strlen(k1));
    expect_refused("an alias pointed elsewhere by SQL", "alias/tamper", "alias/tamper");
    restore("aliases", "alias/tamper", &alias);

    /* The row version is part of the MAC: a row cannot be presented as another version. */
    db_exec("UPDATE keys SET version = version + 1 WHERE name = (SELECT name FROM keys ORDER BY "
            "name LIMIT 1)");
    {
        char first[P11KMS_KEY_ID_LEN + 1];
        first_key(first);
        expect_refused("a row version changed by SQL", first, first);
        db_exec("UPDATE keys SET version = version - 1 WHERE name = (SELECT name FROM keys "
                "ORDER BY name LIMIT 1)");
    }

    /* A row copied under another key's name (value and MAC) does not verify either. */
    saved_row one = row_value("keys", k1);
    saved_row two = row_value("keys", k2);
    set_value("keys", k2, one.value, one.len);
    {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "UPDATE keys SET mac = (SELECT mac FROM keys WHERE name = '%s'), version = "
                 "(SELECT version FROM keys WHERE name = '%s') WHERE name = '%s'",
                 k1, k1, k2);
        db_exec(sql);
    }
    expect_refused("another key's row copied under a key's name", k2, k2);
    free(one.value);
    free(two.value);

    fx_say("restored rows are accepted again");
    CHECK(state_now(k1) == P11KMS_KEY_DISABLED);

    fx_say("maintain reports the tampered row and leaves it in place");
    svc = fx_open(NULL);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, k2) >= 0);
    fx_list_free(&lines);
    p11kms_close(svc);

    test_maintain_after_record_loss();
    p11kms_principal_free(who);
    return check_finish("provider-store-tamper-test");
}
