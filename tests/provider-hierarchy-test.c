#include "config.h"

/* The key hierarchy, Redshift style in four tiers (master key in the token -> cluster key ->
 * database key -> block keys) and RDS style in two: wrong contexts, foreign parents and tampered
 * blobs are refused; rotating the master key re-wraps only the cluster key; opened keys expire
 * (ttl-seconds), run out (max-uses) and are revoked when the master key is disabled; closing a
 * parent leaves its opened children working. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

#define BLOCKS 5

static p11kms *svc;
static p11kms_principal *who;
static p11kms_error e;

static p11kms_context *cluster_ctx(const char *name)
{
    char arn[128];
    snprintf(arn, sizeof(arn), "arn:aws:redshift:us-east-1:123456789012:cluster:%s", name);
    return fx_ctx("aws:redshift:arn", arn, "aws:redshift:createtime", "20260101T120000Z", NULL);
}

static p11kms_context *block_ctx(int n)
{
    char v[16];
    snprintf(v, sizeof(v), "%d", n);
    return fx_ctx("block", v, NULL);
}

/* A cluster key blob under master (GenerateDataKeyWithoutPlaintext). */
static p11kms_result new_cluster_blob(const char *master, const p11kms_context *ctx)
{
    p11kms_result r;
    p11kms_err rc = p11kms_generate_data_key(svc, who, master, ctx, "AES_256", 0, false, &r, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "generate-data-key-without-plaintext: %s: %s\n", p11kms_error_class(rc),
                e.message);
        exit(99);
    }
    return r;
}

static p11kms_opened_key *open_or_die(const p11kms_context *ctx, const p11kms_result *blob)
{
    p11kms_opened_key *k = NULL;
    p11kms_err rc = p11kms_open_key(svc, who, ctx, blob->ciphertext, blob->ciphertext_len, &k, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "p11kms_open_key: %s: %s\n", p11kms_error_class(rc), e.message);
        exit(99);
    }
    return k;
}

static p11kms_err unwrap_expect(p11kms_opened_key *parent, const p11kms_context *ctx,
                                const uint8_t *blob, size_t len, const uint8_t *want,
                                size_t want_len)
{
    p11kms_result r;
    p11kms_err rc = p11kms_unwrap_child_key(parent, ctx, blob, len, &r, &e);
    if (rc == P11KMS_OK)
        CHECK(fx_same(r.plaintext, r.plaintext_len, want, want_len));
    else
        CHECK(r.plaintext == NULL && r.plaintext_len == 0);
    p11kms_result_free(&r);
    return rc;
}

static bool same_kcv(const p11kms_opened_key *a, const p11kms_opened_key *b)
{
    uint8_t ka[8], kb[8];
    p11kms_opened_key_check_value(a, ka);
    p11kms_opened_key_check_value(b, kb);
    return memcmp(ka, kb, 8) == 0;
}

static void test_redshift(const char *master, const char *other_master)
{
    p11kms_context *cctx = cluster_ctx("c1");
    p11kms_context *dbctx = fx_ctx("tier", "database", "database", "dev", NULL);

    fx_say("tier 2: cluster key blob (without plaintext) under the master key, opened");
    p11kms_result cluster_blob = new_cluster_blob(master, cctx);
    CHECK(cluster_blob.plaintext == NULL);
    p11kms_opened_key *cluster = open_or_die(cctx, &cluster_blob);
    p11kms_opened_key *wrong = NULL;
    p11kms_context *other_cctx = cluster_ctx("c2");
    CHECK_ERR(p11kms_open_key(svc, who, other_cctx, cluster_blob.ciphertext,
                              cluster_blob.ciphertext_len, &wrong, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(wrong == NULL);
    CHECK_ERR(p11kms_open_key(svc, who, NULL, cluster_blob.ciphertext, cluster_blob.ciphertext_len,
                              &wrong, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(wrong == NULL);

    fx_say("tier 3: database key generated under the cluster key and opened");
    p11kms_result db_blob;
    CHECK_OK(p11kms_generate_child_key(cluster, dbctx, 32, true, &db_blob, &e), &e);
    REQUIRE(db_blob.ciphertext != NULL && db_blob.plaintext_len == 32);
    char named[P11KMS_KEY_ID_LEN + 1];
    CHECK_ERR(p11kms_ciphertext_key_id(db_blob.ciphertext, db_blob.ciphertext_len, named, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e); /* a child blob names no master key */
    CHECK_OK(unwrap_expect(cluster, dbctx, db_blob.ciphertext, db_blob.ciphertext_len,
                           db_blob.plaintext, 32),
             &e);
    p11kms_opened_key *database = NULL;
    CHECK_OK(p11kms_open_child_key(cluster, dbctx, db_blob.ciphertext, db_blob.ciphertext_len,
                                   &database, &e),
             &e);
    REQUIRE(database != NULL);
    CHECK(!same_kcv(cluster, database));

    fx_say("tier 4: %d block keys under the database key; each unwraps to its bytes", BLOCKS);
    p11kms_result blocks[BLOCKS];
    p11kms_context *bctx[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        bctx[i] = block_ctx(i);
        CHECK_OK(p11kms_generate_child_key(database, bctx[i], 32, true, &blocks[i], &e), &e);
        REQUIRE(blocks[i].ciphertext != NULL && blocks[i].plaintext_len == 32);
    }
    CHECK(!fx_same(blocks[0].plaintext, 32, blocks[1].plaintext, 32));
    for (int i = 0; i < BLOCKS; i++)
        CHECK_OK(unwrap_expect(database, bctx[i], blocks[i].ciphertext, blocks[i].ciphertext_len,
                               blocks[i].plaintext, 32),
                 &e);
    fx_say("child key sizes: 1 and 1024 bytes work, 0 and 1025 are Validation; "
           "without plaintext gives none");
    p11kms_result r;
    CHECK_OK(p11kms_generate_child_key(database, NULL, 1, true, &r, &e), &e);
    CHECK(r.plaintext_len == 1);
    CHECK_OK(unwrap_expect(database, NULL, r.ciphertext, r.ciphertext_len, r.plaintext, 1), &e);
    p11kms_result_free(&r);
    CHECK_OK(p11kms_generate_child_key(database, NULL, 1024, true, &r, &e), &e);
    CHECK(r.plaintext_len == 1024);
    CHECK_OK(unwrap_expect(database, NULL, r.ciphertext, r.ciphertext_len, r.plaintext, 1024), &e);
    p11kms_result_free(&r);
    CHECK_ERR(p11kms_generate_child_key(database, NULL, 0, true, &r, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_generate_child_key(database, NULL, 1025, true, &r, &e), P11KMS_E_VALIDATION,
              &e);
    CHECK_OK(p11kms_generate_child_key(database, NULL, 32, false, &r, &e), &e);
    CHECK(r.plaintext == NULL && r.ciphertext != NULL);
    p11kms_result_free(&r);
    p11kms_opened_key *small = NULL;
    CHECK_OK(p11kms_generate_child_key(database, NULL, 16, true, &r, &e), &e);
    fx_say("only 32-byte child keys can be opened as parents");
    CHECK_ERR(p11kms_open_child_key(database, NULL, r.ciphertext, r.ciphertext_len, &small, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK(small == NULL);
    p11kms_result_free(&r);

    fx_say("wrong context is InvalidCiphertext; a blob of another parent is IncorrectKey");
    CHECK_ERR(unwrap_expect(database, bctx[1], blocks[0].ciphertext, blocks[0].ciphertext_len,
                            blocks[0].plaintext, 32),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK_ERR(unwrap_expect(database, NULL, blocks[0].ciphertext, blocks[0].ciphertext_len,
                            blocks[0].plaintext, 32),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_context *extra = fx_ctx("block", "0", "extra", "x", NULL);
    CHECK_ERR(unwrap_expect(database, extra, blocks[0].ciphertext, blocks[0].ciphertext_len,
                            blocks[0].plaintext, 32),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_context_free(extra);
    CHECK_ERR(unwrap_expect(cluster, bctx[0], blocks[0].ciphertext, blocks[0].ciphertext_len,
                            blocks[0].plaintext, 32),
              P11KMS_E_INCORRECT_KEY, &e);
    p11kms_result other_blob = new_cluster_blob(other_master, cctx);
    p11kms_opened_key *other_cluster = open_or_die(cctx, &other_blob);
    CHECK(!same_kcv(cluster, other_cluster));
    CHECK_ERR(unwrap_expect(other_cluster, dbctx, db_blob.ciphertext, db_blob.ciphertext_len,
                            db_blob.plaintext, 32),
              P11KMS_E_INCORRECT_KEY, &e);
    p11kms_opened_key *foreign = NULL;
    CHECK_ERR(p11kms_open_child_key(other_cluster, dbctx, db_blob.ciphertext,
                                    db_blob.ciphertext_len, &foreign, &e),
              P11KMS_E_INCORRECT_KEY, &e);
    CHECK(foreign == NULL);

    fx_say("a child blob is not a master-key ciphertext and vice versa");
    CHECK_ERR(
        p11kms_decrypt(svc, who, NULL, dbctx, db_blob.ciphertext, db_blob.ciphertext_len, &r, &e),
        P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(r.plaintext == NULL);
    p11kms_err rc = p11kms_unwrap_child_key(cluster, cctx, cluster_blob.ciphertext,
                                            cluster_blob.ciphertext_len, &r, &e);
    CHECK(rc != P11KMS_OK && r.plaintext == NULL);
    p11kms_result_free(&r);

    fx_say("flipping any bit of a block key blob (0x01, 0x80) or truncating it is refused");
    size_t n = blocks[2].ciphertext_len;
    uint8_t *copy = malloc(n + 1);
    REQUIRE(copy != NULL);
    int accepted = 0;
    const uint8_t masks[] = {0x01, 0x80};
    for (size_t m = 0; m < 2; m++) {
        for (size_t i = 0; i < n; i++) {
            memcpy(copy, blocks[2].ciphertext, n);
            copy[i] ^= masks[m];
            rc = p11kms_unwrap_child_key(database, bctx[2], copy, n, &r, &e);
            if (rc == P11KMS_OK || r.plaintext != NULL) {
                accepted++;
                fprintf(stderr, "   byte %zu ^ 0x%02x was accepted\n", i, masks[m]);
            }
            p11kms_result_free(&r);
        }
    }
    for (size_t len = 0; len < n; len++) {
        rc = p11kms_unwrap_child_key(database, bctx[2], blocks[2].ciphertext, len, &r, &e);
        if (rc == P11KMS_OK || r.plaintext != NULL) {
            accepted++;
            fprintf(stderr, "   truncation to %zu bytes was accepted\n", len);
        }
        p11kms_result_free(&r);
    }
    memcpy(copy, blocks[2].ciphertext, n);
    copy[n] = 0;
    rc = p11kms_unwrap_child_key(database, bctx[2], copy, n + 1, &r, &e);
    if (rc == P11KMS_OK)
        accepted++;
    p11kms_result_free(&r);
    CHECK(accepted == 0);
    CHECK_OK(unwrap_expect(database, bctx[2], blocks[2].ciphertext, n, blocks[2].plaintext, 32),
             &e);
    free(copy);

    fx_say("rotation: re-encrypt the cluster blob under the new master version; the database "
           "and block blobs made under the old opening still unwrap");
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, master, &md, &e), &e);
    CHECK(md.current_version == 2);
    p11kms_result rewrapped;
    CHECK_OK(p11kms_re_encrypt(svc, who, master, cctx, cluster_blob.ciphertext,
                               cluster_blob.ciphertext_len, master, cctx, &rewrapped, &e),
             &e);
    CHECK(rewrapped.key_version == 2);
    CHECK(!fx_same(rewrapped.ciphertext, rewrapped.ciphertext_len, cluster_blob.ciphertext,
                   cluster_blob.ciphertext_len));
    p11kms_opened_key *cluster2 = open_or_die(cctx, &rewrapped);
    CHECK(same_kcv(cluster, cluster2));
    CHECK_OK(unwrap_expect(cluster2, dbctx, db_blob.ciphertext, db_blob.ciphertext_len,
                           db_blob.plaintext, 32),
             &e);
    p11kms_opened_key *database2 = NULL;
    CHECK_OK(p11kms_open_child_key(cluster2, dbctx, db_blob.ciphertext, db_blob.ciphertext_len,
                                   &database2, &e),
             &e);
    REQUIRE(database2 != NULL);
    CHECK(same_kcv(database, database2));
    for (int i = 0; i < BLOCKS; i++)
        CHECK_OK(unwrap_expect(database2, bctx[i], blocks[i].ciphertext, blocks[i].ciphertext_len,
                               blocks[i].plaintext, 32),
                 &e);
    fx_say("the old cluster blob (version 1) still opens too");
    p11kms_opened_key *cluster_v1 = open_or_die(cctx, &cluster_blob);
    CHECK(same_kcv(cluster_v1, cluster2));
    p11kms_opened_key_close(cluster_v1);

    fx_say("closing a parent does not break an already opened child");
    p11kms_opened_key_close(cluster);
    cluster = NULL;
    p11kms_opened_key_close(cluster2);
    cluster2 = NULL;
    CHECK_OK(unwrap_expect(database, bctx[3], blocks[3].ciphertext, blocks[3].ciphertext_len,
                           blocks[3].plaintext, 32),
             &e);
    CHECK_OK(unwrap_expect(database2, bctx[4], blocks[4].ciphertext, blocks[4].ciphertext_len,
                           blocks[4].plaintext, 32),
             &e);
    CHECK_OK(p11kms_generate_child_key(database2, NULL, 32, true, &r, &e), &e);
    p11kms_result_free(&r);

    for (int i = 0; i < BLOCKS; i++) {
        p11kms_result_free(&blocks[i]);
        p11kms_context_free(bctx[i]);
    }
    p11kms_opened_key_close(database);
    p11kms_opened_key_close(database2);
    p11kms_opened_key_close(other_cluster);
    p11kms_result_free(&other_blob);
    p11kms_result_free(&rewrapped);
    p11kms_result_free(&db_blob);
    p11kms_result_free(&cluster_blob);
    p11kms_context_free(other_cctx);
    p11kms_context_free(dbctx);
    p11kms_context_free(cctx);
}

static void test_rds(const char *master)
{
    fx_say("RDS style: a per-instance data key with {aws:rds:db-id: db-123}");
    p11kms_context *ctx = fx_ctx("aws:rds:db-id", "db-123", NULL);
    p11kms_result dek;
    CHECK_OK(p11kms_generate_data_key(svc, who, master, ctx, "AES_256", 0, true, &dek, &e), &e);
    REQUIRE(dek.plaintext != NULL && dek.plaintext_len == 32);
    p11kms_result r;
    CHECK_OK(p11kms_decrypt(svc, who, master, ctx, dek.ciphertext, dek.ciphertext_len, &r, &e), &e);
    CHECK(fx_same(r.plaintext, r.plaintext_len, dek.plaintext, dek.plaintext_len));
    p11kms_result_free(&r);
    p11kms_context *other = fx_ctx("aws:rds:db-id", "db-124", NULL);
    CHECK_ERR(p11kms_decrypt(svc, who, master, other, dek.ciphertext, dek.ciphertext_len, &r, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_opened_key *k = NULL;
    CHECK_ERR(p11kms_open_key(svc, who, other, dek.ciphertext, dek.ciphertext_len, &k, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(k == NULL);
    k = open_or_die(ctx, &dek);
    p11kms_opened_key *k2 = open_or_die(ctx, &dek);
    CHECK(same_kcv(k, k2));
    CHECK_OK(p11kms_generate_child_key(k, NULL, 32, true, &r, &e), &e);
    CHECK_OK(unwrap_expect(k2, NULL, r.ciphertext, r.ciphertext_len, r.plaintext, 32), &e);
    p11kms_result_free(&r);
    fx_say("a 16-byte data key cannot be opened as a parent");
    p11kms_result small;
    CHECK_OK(p11kms_generate_data_key(svc, who, master, ctx, "AES_128", 0, false, &small, &e), &e);
    p11kms_opened_key *none = NULL;
    CHECK_ERR(p11kms_open_key(svc, who, ctx, small.ciphertext, small.ciphertext_len, &none, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK(none == NULL);
    p11kms_result_free(&small);
    p11kms_opened_key_close(k);
    p11kms_opened_key_close(k2);
    p11kms_result_free(&dek);
    p11kms_context_free(other);
    p11kms_context_free(ctx);
}

/* Reopens the service with a hierarchy setting (opened keys must be closed first). */
static void reopen(const char *file, const char *hierarchy_lines)
{
    p11kms_close(svc);
    char *cfg = fx_config(file, NULL, hierarchy_lines, NULL);
    svc = fx_open(cfg);
    free(cfg);
}

static void test_ttl(const char *master)
{
    fx_say("hierarchy.ttl-seconds 1: after 1.5 s the opened keys refuse (KMSInvalidState)");
    reopen("ttl.yaml", "ttl-seconds: 1");
    p11kms_context *ctx = cluster_ctx("ttl");
    p11kms_result blob = new_cluster_blob(master, ctx);
    p11kms_opened_key *k = open_or_die(ctx, &blob);
    p11kms_result child, r;
    CHECK_OK(p11kms_generate_child_key(k, NULL, 32, true, &child, &e), &e);
    p11kms_opened_key *sub = NULL;
    CHECK_OK(p11kms_open_child_key(k, NULL, child.ciphertext, child.ciphertext_len, &sub, &e), &e);
    fx_sleep_ms(1500);
    CHECK_ERR(p11kms_generate_child_key(k, NULL, 32, true, &r, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK(r.plaintext == NULL && r.ciphertext == NULL);
    CHECK_ERR(unwrap_expect(k, NULL, child.ciphertext, child.ciphertext_len, child.plaintext, 32),
              P11KMS_E_INVALID_STATE, &e);
    fx_say("a key opened below it expires with it");
    if (sub != NULL) {
        CHECK_ERR(p11kms_generate_child_key(sub, NULL, 32, true, &r, &e), P11KMS_E_INVALID_STATE,
                  &e);
        p11kms_result_free(&r);
    }
    fx_say("opening the blob again gives a fresh key");
    p11kms_opened_key *fresh = open_or_die(ctx, &blob);
    CHECK_OK(
        unwrap_expect(fresh, NULL, child.ciphertext, child.ciphertext_len, child.plaintext, 32),
        &e);
    p11kms_opened_key_close(fresh);
    p11kms_opened_key_close(sub);
    p11kms_opened_key_close(k);
    p11kms_result_free(&child);
    p11kms_result_free(&blob);
    p11kms_context_free(ctx);
}

static void test_max_uses(const char *master)
{
    fx_say("hierarchy.max-uses 3: three uses work, the fourth refuses (KMSInvalidState)");
    reopen("max-uses.yaml", "max-uses: 3");
    p11kms_context *ctx = cluster_ctx("uses");
    p11kms_result blob = new_cluster_blob(master, ctx);
    p11kms_opened_key *k = open_or_die(ctx, &blob);
    p11kms_result child, r;
    CHECK_OK(p11kms_generate_child_key(k, NULL, 32, true, &child, &e), &e);
    CHECK_OK(unwrap_expect(k, NULL, child.ciphertext, child.ciphertext_len, child.plaintext, 32),
             &e);
    CHECK_OK(p11kms_generate_child_key(k, NULL, 32, true, &r, &e), &e);
    p11kms_result_free(&r);
    CHECK_ERR(p11kms_generate_child_key(k, NULL, 32, true, &r, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK(r.plaintext == NULL && r.ciphertext == NULL);
    CHECK_ERR(unwrap_expect(k, NULL, child.ciphertext, child.ciphertext_len, child.plaintext, 32),
              P11KMS_E_INVALID_STATE, &e);
    p11kms_opened_key_close(k);
    p11kms_result_free(&child);
    p11kms_result_free(&blob);
    p11kms_context_free(ctx);
}

static void test_revocation(const char *master)
{
    fx_say("hierarchy.revocation-check-ms 100: disabling the master key revokes opened keys");
    reopen("revocation.yaml", "revocation-check-ms: 100");
    p11kms_context *ctx = cluster_ctx("revoke");
    p11kms_result blob = new_cluster_blob(master, ctx);
    p11kms_opened_key *cluster = open_or_die(ctx, &blob);
    p11kms_result db, r;
    CHECK_OK(p11kms_generate_child_key(cluster, NULL, 32, true, &db, &e), &e);
    p11kms_opened_key *database = NULL;
    CHECK_OK(p11kms_open_child_key(cluster, NULL, db.ciphertext, db.ciphertext_len, &database, &e),
             &e);
    REQUIRE(database != NULL);
    CHECK_OK(p11kms_generate_child_key(database, NULL, 32, true, &r, &e), &e);
    p11kms_result_free(&r);

    CHECK_OK(p11kms_disable_key(svc, who, master, &e), &e);
    fx_sleep_ms(300);
    fx_say("after 300 ms: the tier-3 key and the cluster key are Disabled");
    CHECK_ERR(p11kms_generate_child_key(database, NULL, 32, true, &r, &e), P11KMS_E_DISABLED, &e);
    CHECK(fx_msg_has(&e, master));
    CHECK(r.plaintext == NULL && r.ciphertext == NULL);
    CHECK_ERR(p11kms_generate_child_key(cluster, NULL, 32, true, &r, &e), P11KMS_E_DISABLED, &e);
    CHECK(r.plaintext == NULL);
    CHECK_ERR(unwrap_expect(cluster, NULL, db.ciphertext, db.ciphertext_len, db.plaintext, 32),
              P11KMS_E_DISABLED, &e);
    p11kms_opened_key *again = NULL;
    CHECK_ERR(p11kms_open_key(svc, who, ctx, blob.ciphertext, blob.ciphertext_len, &again, &e),
              P11KMS_E_DISABLED, &e);
    CHECK(again == NULL);

    fx_say("re-enabling the master key does not revive revoked handles; reopening works");
    CHECK_OK(p11kms_enable_key(svc, who, master, &e), &e);
    fx_sleep_ms(150);
    p11kms_err rc = p11kms_generate_child_key(cluster, NULL, 32, true, &r, &e);
    CHECK(rc != P11KMS_OK);
    p11kms_result_free(&r);
    again = open_or_die(ctx, &blob);
    CHECK_OK(unwrap_expect(again, NULL, db.ciphertext, db.ciphertext_len, db.plaintext, 32), &e);

    fx_say("scheduling deletion of the master key revokes as well");
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, master, 7, &md, &e), &e);
    fx_sleep_ms(300);
    rc = p11kms_unwrap_child_key(again, NULL, db.ciphertext, db.ciphertext_len, &r, &e);
    CHECK(rc != P11KMS_OK && r.plaintext == NULL);
    fprintf(stderr, "   after schedule-key-deletion: %s: %s\n", p11kms_error_class(rc), e.message);
    p11kms_result_free(&r);
    CHECK_OK(p11kms_cancel_key_deletion(svc, who, master, &e), &e);
    CHECK_OK(p11kms_enable_key(svc, who, master, &e), &e);

    p11kms_opened_key_close(again);
    p11kms_opened_key_close(database);
    p11kms_opened_key_close(cluster);
    p11kms_result_free(&db);
    p11kms_result_free(&blob);
    p11kms_context_free(ctx);
}

int main(void)
{
    svc = fx_open(NULL);
    who = fx_principal("unix:user:hierarchy-tester");
    char master[P11KMS_KEY_ID_LEN + 1], other[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "hierarchy master", master);
    fx_create_key(svc, who, "hierarchy other master", other);
    test_redshift(master, other);
    test_rds(master);
    test_ttl(master);
    test_max_uses(master);
    test_revocation(master);
    p11kms_principal_free(who);
    p11kms_close(svc);
    return check_finish("provider-hierarchy-test");
}
