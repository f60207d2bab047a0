#include "config.h"

/* Two processes on one token, each with its own service: a state change made by one is enforced
 * on the other at once by the token (not by a cache timeout), and revoking a master key reaches
 * the keys another process opened below it within the configured revocation interval.
 *
 * The processes fork before either opens anything. A (parent) administers, B (child) uses; they
 * take turns over two pipes. B reports its failed checks through its exit status. */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

#define REVOCATION_MS 300
#define REVOCATION_BOUND_MS (20 * REVOCATION_MS)

static p11kms_error e;
static int to_peer = -1, from_peer = -1;

static void signal_peer(char what)
{
    fx_send(to_peer, &what, 1);
}

static void wait_peer(char what)
{
    char got = 0;
    fx_recv(from_peer, &got, 1);
    if (got != what) {
        fprintf(stderr, "protocol error: expected '%c', got '%c'\n", what, got);
        exit(99);
    }
}

static const uint8_t secret[] = "shared between processes";

static p11kms_context *cluster_ctx(void)
{
    return fx_ctx("aws:redshift:arn", "arn:aws:redshift:us-east-1:123456789012:cluster:two-proc",
                  "aws:redshift:createtime", "20260101T000000Z", NULL);
}

/* --- A: the administrator ------------------------------------------------------------------ */

static void run_a(void)
{
    p11kms *svc = fx_open(NULL);
    p11kms_principal *who = fx_principal("unix:user:process-a");
    char id[P11KMS_KEY_ID_LEN + 1];

    fx_say("A: create a key and encrypt under it");
    fx_create_key(svc, who, "two processes", id);
    p11kms_result ct;
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, secret, sizeof(secret), &ct, &e), &e);
    p11kms_result_free(&ct);
    fx_send_msg(to_peer, id, strlen(id));
    wait_peer('w'); /* B warmed its caches */

    fx_say("A: disable the key");
    CHECK_OK(p11kms_disable_key(svc, who, id, &e), &e);
    signal_peer('d');
    wait_peer('c'); /* B checked the refusals */

    fx_say("A: enable the key");
    CHECK_OK(p11kms_enable_key(svc, who, id, &e), &e);
    signal_peer('e');
    wait_peer('u'); /* B used it again */

    fx_say("A: encrypt under the key B created, then disable it");
    char *b_key = (char *)fx_recv_msg(from_peer, NULL);
    p11kms_result b_ct;
    CHECK_OK(p11kms_encrypt(svc, who, b_key, NULL, secret, sizeof(secret), &b_ct, &e), &e);
    CHECK_OK(p11kms_disable_key(svc, who, b_key, &e), &e);
    fx_send_msg(to_peer, b_ct.ciphertext, b_ct.ciphertext_len);
    p11kms_result_free(&b_ct);
    free(b_key);
    wait_peer('y'); /* B checked the refusal */

    fx_say("A: a master key and a cluster key blob (generate-data-key-without-plaintext)");
    char master[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "two processes: master", master);
    p11kms_context *ctx = cluster_ctx();
    p11kms_result blob;
    REQUIRE(p11kms_generate_data_key(svc, who, master, ctx, "AES_256", 0, false, &blob, &e) ==
            P11KMS_OK);
    fx_send_msg(to_peer, master, strlen(master));
    fx_send_msg(to_peer, blob.ciphertext, blob.ciphertext_len);
    p11kms_result_free(&blob);
    p11kms_context_free(ctx);
    wait_peer('o'); /* B opened the cluster key and generated child keys */

    fx_say("A: disable the master key");
    CHECK_OK(p11kms_disable_key(svc, who, master, &e), &e);
    signal_peer('r');
    wait_peer('f'); /* B finished */

    p11kms_principal_free(who);
    p11kms_close(svc);
}

/* --- B: the user --------------------------------------------------------------------------- */

static void run_b(void)
{
    fx_say("B: own service with keys.state-refresh-ms 60000 and revocation-check-ms %d",
           REVOCATION_MS);
    char *cfg =
        fx_config("process-b.yaml", "state-refresh-ms: 60000", "revocation-check-ms: 300", NULL);
    p11kms *svc = fx_open(cfg);
    free(cfg);
    p11kms_principal *who = fx_principal("unix:user:process-b");
    char *id = (char *)fx_recv_msg(from_peer, NULL);

    fx_say("B: encrypt and decrypt under A's key (caches warm: state cached for 60 s)");
    p11kms_result ct, r;
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, secret, sizeof(secret), &ct, &e), &e);
    CHECK_OK(p11kms_decrypt(svc, who, id, NULL, ct.ciphertext, ct.ciphertext_len, &r, &e), &e);
    CHECK(fx_same(r.plaintext, r.plaintext_len, secret, sizeof(secret)));
    p11kms_result_free(&r);
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
    CHECK(md.state == P11KMS_KEY_ENABLED);
    signal_peer('w');
    wait_peer('d');

    fx_say("B: right after A disabled it, encrypt/decrypt/generate-data-key are Disabled");
    CHECK_ERR(p11kms_encrypt(svc, who, id, NULL, secret, sizeof(secret), &r, &e), P11KMS_E_DISABLED,
              &e);
    CHECK(fx_msg_has(&e, id) && fx_msg_has(&e, "Disabled"));
    p11kms_result_free(&r);
    CHECK_ERR(p11kms_decrypt(svc, who, id, NULL, ct.ciphertext, ct.ciphertext_len, &r, &e),
              P11KMS_E_DISABLED, &e);
    CHECK(r.plaintext == NULL);
    p11kms_result_free(&r);
    CHECK_ERR(p11kms_generate_data_key(svc, who, id, NULL, "AES_256", 0, true, &r, &e),
              P11KMS_E_DISABLED, &e);
    p11kms_result_free(&r);
    CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
    CHECK(md.state == P11KMS_KEY_DISABLED);
    signal_peer('c');
    wait_peer('e');

    fx_say("B: right after A enabled it, encrypt and decrypt work again");
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, secret, sizeof(secret), &r, &e), &e);
    p11kms_result_free(&r);
    CHECK_OK(p11kms_decrypt(svc, who, id, NULL, ct.ciphertext, ct.ciphertext_len, &r, &e), &e);
    CHECK(fx_same(r.plaintext, r.plaintext_len, secret, sizeof(secret)));
    p11kms_result_free(&r);
    p11kms_result_free(&ct);
    free(id);
    signal_peer('u');

    /* The record B cached when it created the key must count as read before A's change, even
     * though B's own change (the create) moved the state generation too. */
    fx_say("B: create a key of its own (its record cached by the create, not used yet)");
    char own[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "two processes: created by B", own);
    fx_send_msg(to_peer, own, strlen(own));
    size_t own_ct_len = 0;
    uint8_t *own_ct = fx_recv_msg(from_peer, &own_ct_len);
    fx_say("B: right after A disabled B's key, decrypt under it is Disabled");
    CHECK_ERR(p11kms_decrypt(svc, who, own, NULL, own_ct, own_ct_len, &r, &e), P11KMS_E_DISABLED,
              &e);
    CHECK(r.plaintext == NULL);
    p11kms_result_free(&r);
    free(own_ct);
    signal_peer('y');

    char *master = (char *)fx_recv_msg(from_peer, NULL);
    size_t blob_len = 0;
    uint8_t *blob = fx_recv_msg(from_peer, &blob_len);
    fx_say("B: open the cluster key and its database key, generate child keys");
    p11kms_context *ctx = cluster_ctx();
    p11kms_context *db_ctx = fx_ctx("tier", "database", "database", "dev", NULL);
    p11kms_opened_key *cluster = NULL, *database = NULL;
    CHECK_OK(p11kms_open_key(svc, who, ctx, blob, blob_len, &cluster, &e), &e);
    REQUIRE(cluster != NULL);
    p11kms_result db;
    CHECK_OK(p11kms_generate_child_key(cluster, db_ctx, 32, false, &db, &e), &e);
    CHECK_OK(
        p11kms_open_child_key(cluster, db_ctx, db.ciphertext, db.ciphertext_len, &database, &e),
        &e);
    REQUIRE(database != NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(p11kms_generate_child_key(cluster, NULL, 32, true, &r, &e), &e);
        p11kms_result_free(&r);
    }
    signal_peer('o');
    wait_peer('r');

    fx_say("B: generate child keys until the revocation of the master key reaches B");
    int64_t start = fx_now_ms(), refused_at = -1;
    p11kms_err last = P11KMS_OK;
    int attempts = 0;
    while (fx_now_ms() - start < REVOCATION_BOUND_MS) {
        attempts++;
        last = p11kms_generate_child_key(cluster, NULL, 32, true, &r, &e);
        p11kms_result_free(&r);
        if (last != P11KMS_OK) {
            refused_at = fx_now_ms();
            break;
        }
        fx_sleep_ms(5);
    }
    if (refused_at >= 0)
        fprintf(stderr, "   refused after %lld ms (%d attempts; revocation-check-ms %d): %s: %s\n",
                (long long)(refused_at - start), attempts, REVOCATION_MS, p11kms_error_class(last),
                e.message);
    else
        fprintf(stderr, "   still usable %d ms after the master key was disabled\n",
                REVOCATION_BOUND_MS);
    CHECK(refused_at >= 0);
    CHECK(last == P11KMS_E_DISABLED);
    CHECK(fx_msg_has(&e, master));

    fx_say("B: every later use of the revoked keys fails");
    p11kms_err rc = p11kms_generate_child_key(cluster, NULL, 32, true, &r, &e);
    CHECK(rc != P11KMS_OK && r.plaintext == NULL && r.ciphertext == NULL);
    fprintf(stderr, "   cluster key again: %s: %s\n", p11kms_error_class(rc), e.message);
    p11kms_result_free(&r);
    rc = p11kms_unwrap_child_key(cluster, db_ctx, db.ciphertext, db.ciphertext_len, &r, &e);
    CHECK(rc != P11KMS_OK && r.plaintext == NULL);
    p11kms_result_free(&r);
    fx_say("B: the database key opened below it is revoked too (Disabled)");
    CHECK_ERR(p11kms_generate_child_key(database, NULL, 32, true, &r, &e), P11KMS_E_DISABLED, &e);
    CHECK(r.plaintext == NULL && r.ciphertext == NULL);
    p11kms_result_free(&r);
    rc = p11kms_generate_child_key(database, NULL, 32, true, &r, &e);
    CHECK(rc != P11KMS_OK);
    p11kms_result_free(&r);
    p11kms_opened_key *again = NULL;
    CHECK_ERR(p11kms_open_key(svc, who, ctx, blob, blob_len, &again, &e), P11KMS_E_DISABLED, &e);
    CHECK(again == NULL);
    p11kms_opened_key_close(again);

    p11kms_result_free(&db);
    p11kms_opened_key_close(database);
    p11kms_opened_key_close(cluster);
    p11kms_context_free(db_ctx);
    p11kms_context_free(ctx);
    free(blob);
    free(master);
    signal_peer('f');
    p11kms_principal_free(who);
    p11kms_close(svc);
}

int main(void)
{
    int a_to_b[2], b_to_a[2];
    REQUIRE(pipe(a_to_b) == 0 && pipe(b_to_a) == 0);
    fflush(NULL);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(a_to_b[1]);
        close(b_to_a[0]);
        from_peer = a_to_b[0];
        to_peer = b_to_a[1];
        run_b();
        exit(check_finish("provider-two-process-test (process B)"));
    }
    close(a_to_b[0]);
    close(b_to_a[1]);
    to_peer = a_to_b[1];
    from_peer = b_to_a[0];
    run_a();
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    fx_say("B exited with status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return check_finish("provider-two-process-test (process A)");
}
