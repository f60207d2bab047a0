/* Opening a store. SQLite (provider/store-sqlite.c): a new file gets the schema; an existing one
 * with the current schema opens with a read only, so that a process holding the write lock does
 * not keep others from starting; a missing table is created again; a newer schema version, a
 * file that is not a database and a relative path are refused with messages that say so; a
 * store of schema version 1 is upgraded, its claims unsealed. PostgreSQL (provider/store-pg.c,
 * as the .pgtest variant): the same for the change lock (an advisory lock another process holds
 * while it changes keys), a dropped table, a newer version and the upgrade. */
#include "config.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "provider/store.h"

static p11kms_error e;

static char *db_path(const char *name)
{
    char *path = NULL;
    REQUIRE(asprintf(&path, "%s/%s", test_env("P11KMS_TEST_ROOT"), name) > 0);
    unlink(path);
    return path;
}

static sqlite3 *raw(const char *path)
{
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    sqlite3_busy_timeout(db, 0);
    return db;
}

static void sql(sqlite3 *db, const char *text)
{
    char *msg = NULL;
    if (sqlite3_exec(db, text, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", text, msg != NULL ? msg : "?");
        REQUIRE(false);
    }
}

static bool has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type='table' AND name=?", -1,
                               &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* store_open on "sqlite:path"; a row written and read back when it opened. */
static p11kms_err open_and_use(const char *path)
{
    char spec[4200];
    snprintf(spec, sizeof(spec), "sqlite:%s", path);
    store *s = NULL;
    p11kms_err rc = store_open(spec, &s, &e);
    if (rc != P11KMS_OK)
        return rc;
    store_row row = {.version = 1, .value = (uint8_t *)"v", .len = 1};
    snprintf(row.name, sizeof(row.name), "alias/open-test-%d", (int)getpid());
    (void)store_delete(s, STORE_ALIASES, row.name, &e);
    CHECK_OK(store_put(s, STORE_ALIASES, &row, &e), &e);
    store_row back = {0};
    CHECK_OK(store_get(s, STORE_ALIASES, row.name, &back, &e), &e);
    CHECK(back.len == 1 && back.value[0] == 'v');
    store_row_clear(&back);
    store_close(s);
    return P11KMS_OK;
}

static void pg_sql(PGconn *c, const char *text)
{
    PGresult *r = PQexec(c, text);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s\n", text, PQerrorMessage(c));
        REQUIRE(false);
    }
    PQclear(r);
}

/* A sealed claim, as a store of schema version 2 keeps it. */
static const store_claim upgrade_claim = {.key_id = "0f8e4a7c-0000-4000-8000-000000000000",
                                          .version = 1,
                                          .claimed = 1,
                                          .sealed = true,
                                          .seal = {1, 2, 3}};

static int copy_upgrade_claim(const store_claim *c, void *arg)
{
    if (strcmp(c->key_id, upgrade_claim.key_id) == 0 && c->version == upgrade_claim.version)
        *(store_claim *)arg = *c;
    return 0;
}

/* After the upgrade from schema version 1 the claim is there, without a seal (so that maintain
 * never destroys its object: doc/token-layout.md), and claims can be sealed again. */
static void expect_unsealed_claim(store *s)
{
    store_claim found = {0};
    CHECK_OK(store_list_claims(s, copy_upgrade_claim, &found, &e), &e);
    CHECK(found.version == 1 && found.claimed == 1 && !found.sealed);
    CHECK_OK(store_reseal_claim(s, &upgrade_claim, &e), &e);
    memset(&found, 0, sizeof(found));
    CHECK_OK(store_list_claims(s, copy_upgrade_claim, &found, &e), &e);
    CHECK(found.sealed && memcmp(found.seal, upgrade_claim.seal, STORE_MAC_LEN) == 0);
}

static void test_postgresql(const char *spec)
{
    store *s = NULL;
    CHECK_OK(store_open(spec, &s, &e), &e); /* creates the schema */
    store_close(s);
    PGconn *c = PQconnectdb(spec);
    REQUIRE(PQstatus(c) == CONNECTION_OK);

    fx_say("postgresql: the store opens while another session holds the change lock");
    pg_sql(c, "SELECT pg_advisory_lock(7011771001)"); /* provider/store-pg.c ADVISORY_KEY */
    CHECK_OK(store_open(spec, &s, &e), &e);
    store_close(s);
    pg_sql(c, "SELECT pg_advisory_unlock(7011771001)");

    fx_say("postgresql: a dropped table is created again; a newer version is refused");
    pg_sql(c, "DROP TABLE version_claims");
    CHECK_OK(store_open(spec, &s, &e), &e);
    CHECK_OK(store_claim_version(s, &upgrade_claim, &e), &e);
    store_close(s);
    pg_sql(c, "UPDATE p11kms_schema SET version = 3");
    CHECK_ERR(store_open(spec, &s, &e), P11KMS_E_CONFIG, &e);
    CHECK(fx_msg_has(&e, "schema version 3"));

    fx_say("postgresql: a store of schema version 1 is upgraded; its claims carry no seal");
    pg_sql(c, "ALTER TABLE version_claims DROP COLUMN pending_seal");
    pg_sql(c, "UPDATE p11kms_schema SET version = 1");
    CHECK_OK(store_open(spec, &s, &e), &e);
    expect_unsealed_claim(s);
    store_close(s);
    PQfinish(c);
}

int main(void)
{
    const char *kind = getenv("P11KMS_TEST_STORE");
    if (kind != NULL && strcmp(kind, "postgresql") == 0) {
        test_postgresql(test_env("P11KMS_TEST_STORE_SPEC"));
        return check_finish("provider-store-open-test");
    }

    char *path = db_path("open-test.db");

    fx_say("a new file gets the schema");
    CHECK_OK(open_and_use(path), &e);
    sqlite3 *db = raw(path);
    CHECK(has_table(db, "keys") && has_table(db, "aliases") && has_table(db, "version_claims") &&
          has_table(db, "audit_checkpoints") && has_table(db, "p11kms_schema"));

    fx_say("an existing store opens while another connection holds the write lock");
    sql(db, "BEGIN IMMEDIATE");
    sql(db, "INSERT INTO version_claims(key_id, version, claimed) VALUES('held', 1, 0)");
    char spec[4200];
    snprintf(spec, sizeof(spec), "sqlite:%s", path);
    store *s = NULL;
    CHECK_OK(store_open(spec, &s, &e), &e);
    store_close(s);
    sql(db, "ROLLBACK");

    fx_say("a table missing from a store of the current version is created again");
    sql(db, "DROP TABLE version_claims");
    CHECK(!has_table(db, "version_claims"));
    CHECK_OK(open_and_use(path), &e);
    CHECK(has_table(db, "version_claims"));

    fx_say("a newer schema version is refused, naming it");
    sql(db, "UPDATE p11kms_schema SET version = 3");
    CHECK_ERR(store_open(spec, &s, &e), P11KMS_E_CONFIG, &e);
    CHECK(fx_msg_has(&e, "schema version 3") && fx_msg_has(&e, path));

    fx_say("a store of schema version 1 is upgraded; its claims carry no seal");
    sql(db, "ALTER TABLE version_claims DROP COLUMN pending_seal");
    sql(db, "UPDATE p11kms_schema SET version = 1");
    sql(db, "INSERT INTO version_claims(key_id, version, claimed) VALUES("
            "'0f8e4a7c-0000-4000-8000-000000000000', 1, 1)");
    CHECK_OK(store_open(spec, &s, &e), &e);
    expect_unsealed_claim(s);
    store_close(s);
    CHECK_OK(open_and_use(path), &e);
    sqlite3_close(db);

    fx_say("a file that is not a database, and a relative path, are refused");
    char *junk = db_path("not-a-database.db");
    FILE *f = fopen(junk, "w");
    REQUIRE(f != NULL);
    for (int i = 0; i < 512; i++)
        fputs("this is not an SQLite database\n", f);
    fclose(f);
    snprintf(spec, sizeof(spec), "sqlite:%s", junk);
    CHECK(store_open(spec, &s, &e) != P11KMS_OK);
    CHECK(fx_msg_has(&e, junk));
    CHECK_ERR(store_open("sqlite:relative/open-test.db", &s, &e), P11KMS_E_CONFIG, &e);
    CHECK(fx_msg_has(&e, "absolute"));

    free(junk);
    free(path);
    return check_finish("provider-store-open-test");
}
