/* A rotation whose record PostgreSQL committed but whose COMMIT answer never reached p11kms
 * (provider/keystore.c, keystore_version_discard_unnamed): the rotation reports a failure, yet
 * the record names the new version, so its key object must stay. Destroying it, as a failed
 * write did before, left a key whose current version has no material.
 *
 * The real server makes the unknown outcome: with synchronous_standby_names naming a standby
 * that does not exist, every commit is written locally and then waits for the standby; a
 * watcher on a connection of its own cancels those waits (the statement then succeeds: the
 * commit is local) except the first COMMIT of a transaction, whose backend it terminates: the
 * transaction is committed and p11kms sees its connection lost. Runs only as the .pgtest. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/keymeta.h"
#include "provider/keystore.h"
#include "provider/service.h"

static p11kms_error e;
static const char *spec;
static atomic_bool stop;
static atomic_bool terminated;

static PGconn *connect_local(void)
{
    PGconn *c = PQconnectdb(spec);
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    PQclear(PQexec(c, "SET synchronous_commit = local"));
    return c;
}

static void sql(PGconn *c, const char *text)
{
    PGresult *r = PQexec(c, text);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s\n", text, PQerrorMessage(c));
        REQUIRE(false);
    }
    PQclear(r);
}

/* Cancels every wait for the standby but the first COMMIT's, whose backend it terminates. */
static void *watch_commits(void *arg)
{
    (void)arg;
    PGconn *c = connect_local();
    while (!atomic_load(&stop)) {
        PGresult *r = PQexec(c, "SELECT pid, query FROM pg_stat_activity WHERE wait_event = "
                                "'SyncRep' AND pid <> pg_backend_pid()");
        REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
        for (int i = 0; i < PQntuples(r); i++) {
            bool commit = strcmp(PQgetvalue(r, i, 1), "COMMIT") == 0;
            const char *how = commit && !atomic_load(&terminated) ? "terminate" : "cancel";
            if (commit)
                atomic_store(&terminated, true);
            char q[96];
            snprintf(q, sizeof(q), "SELECT pg_%s_backend(%s)", how, PQgetvalue(r, i, 0));
            sql(c, q);
        }
        PQclear(r);
        fx_sleep_ms(5);
    }
    PQfinish(c);
    return NULL;
}

static void standby_required(PGconn *c, bool on)
{
    sql(c, on ? "ALTER SYSTEM SET synchronous_standby_names = 'p11kms_test_nobody'"
              : "ALTER SYSTEM RESET synchronous_standby_names");
    sql(c, "SELECT pg_reload_conf()");
    fx_sleep_ms(300); /* the backends read the configuration again before their next command */
}

int main(void)
{
    const char *kind = getenv("P11KMS_TEST_STORE");
    REQUIRE(kind != NULL && strcmp(kind, "postgresql") == 0);
    spec = test_env("P11KMS_TEST_STORE_SPEC");
    p11kms_principal *who = fx_principal("unix:user:commit-unknown-tester");
    p11kms *svc = fx_open(NULL);
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "rotated while its commit's answer is lost", id);

    fx_say("a rotation whose COMMIT is made but never answered reports a failure");
    PGconn *admin = connect_local();
    standby_required(admin, true);
    pthread_t watcher;
    REQUIRE(pthread_create(&watcher, NULL, watch_commits, NULL) == 0);
    p11kms_key_metadata md;
    p11kms_err rc = p11kms_rotate_key_on_demand(svc, who, id, &md, &e);
    atomic_store(&stop, true);
    REQUIRE(pthread_join(watcher, NULL) == 0);
    standby_required(admin, false);
    PQfinish(admin);
    CHECK(atomic_load(&terminated));
    CHECK_ERR(rc, P11KMS_E_IO, &e);
    p11kms_close(svc);

    fx_say("the record names version 2, and version 2 encrypts and decrypts");
    svc = fx_open(NULL);
    key_meta *m = NULL;
    CHECK_OK(keystore_meta_read(svc, id, &m, &e), &e);
    CHECK(m != NULL && keymeta_current(m)->number == 2);
    keymeta_free(m);
    static const uint8_t pt[] = "after the lost answer";
    p11kms_result ct = {0}, back = {0};
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &ct, &e), &e);
    CHECK(ct.key_version == 2);
    CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, ct.ciphertext, ct.ciphertext_len, &back, &e), &e);
    CHECK(fx_same(back.plaintext, back.plaintext_len, pt, sizeof(pt)));
    p11kms_result_free(&ct);
    p11kms_result_free(&back);

    fx_say("maintain finds nothing to repair");
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(lines.count == 0);
    fx_list_free(&lines);
    p11kms_close(svc);
    p11kms_principal_free(who);
    return check_finish("provider-commit-unknown-test");
}
