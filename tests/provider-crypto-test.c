#include "config.h"

/* Cryptographic operations through the public API: encryption contexts, size limits, wrong
 * keys, tampered and truncated ciphertexts, re-encryption, data keys, random bytes, and the
 * per-version encryption budget (with and without automatic rotation). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

static p11kms *svc;
static p11kms_principal *who;
static p11kms_error e;

static p11kms_err decrypt_expect(const char *ref, const p11kms_context *ctx, const uint8_t *blob,
                                 size_t len, const uint8_t *want, size_t want_len)
{
    p11kms_result r;
    p11kms_err rc = p11kms_decrypt(svc, who, ref, ctx, blob, len, &r, &e);
    if (rc == P11KMS_OK) {
        CHECK(fx_same(r.plaintext, r.plaintext_len, want, want_len));
    } else {
        CHECK(r.plaintext == NULL && r.plaintext_len == 0);
    }
    p11kms_result_free(&r);
    return rc;
}

static void test_contexts(const char *id)
{
    static const uint8_t pt[] = "context bound secret";
    p11kms_context *ctx = fx_ctx("Department", "Finance", "purpose", "test", NULL);
    p11kms_result ct;

    fx_say("encrypt/decrypt round trip with an encryption context");
    CHECK_OK(p11kms_encrypt(svc, who, id, ctx, pt, sizeof(pt), &ct, &e), &e);
    char arn[P11KMS_ARN_MAX];
    fx_key_arn(id, arn);
    CHECK(strcmp(ct.key_id, arn) == 0);
    CHECK(ct.key_version == 1);
    CHECK(ct.plaintext == NULL);
    CHECK(ct.ciphertext_len > sizeof(pt));
    CHECK(ct.ciphertext != NULL &&
          memmem(ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt) - 1) == NULL);
    CHECK_OK(decrypt_expect(id, ctx, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_result r;
    CHECK_OK(p11kms_decrypt(svc, who, NULL, ctx, ct.ciphertext, ct.ciphertext_len, &r, &e), &e);
    CHECK(strcmp(r.key_id, arn) == 0 && r.key_version == 1);
    p11kms_result_free(&r);

    fx_say("pair order does not matter");
    p11kms_context *reordered = fx_ctx("purpose", "test", "Department", "Finance", NULL);
    CHECK_OK(decrypt_expect(id, reordered, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_context *parsed = NULL;
    CHECK_OK(p11kms_context_parse("{\"purpose\":\"test\",\"Department\":\"Finance\"}", &parsed, &e),
             &e);
    CHECK_OK(decrypt_expect(id, parsed, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_context_free(parsed);
    parsed = NULL;
    CHECK_OK(p11kms_context_parse("purpose=test,Department=Finance", &parsed, &e), &e);
    CHECK_OK(decrypt_expect(id, parsed, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_context_free(parsed);

    fx_say("a missing pair, an extra pair or a changed case is InvalidCiphertextException");
    p11kms_context *wrong[] = {
        fx_ctx("Department", "Finance", NULL),
        fx_ctx("Department", "Finance", "purpose", "test", "extra", "x", NULL),
        fx_ctx("department", "Finance", "purpose", "test", NULL),
        fx_ctx("Department", "finance", "purpose", "test", NULL),
        fx_ctx("Department", "Finance", "purpose", "test ", NULL),
        fx_ctx("Department", "Finance", "purpose", "Test", NULL),
        fx_ctx(NULL),
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        CHECK_ERR(decrypt_expect(id, wrong[i], ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)),
                  P11KMS_E_INVALID_CIPHERTEXT, &e);
        p11kms_context_free(wrong[i]);
    }
    CHECK_ERR(decrypt_expect(id, NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_result_free(&ct);

    fx_say("empty context: NULL and an empty context object are the same; any pair is wrong");
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &ct, &e), &e);
    p11kms_context *empty = fx_ctx(NULL);
    CHECK_OK(decrypt_expect(id, NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    CHECK_OK(decrypt_expect(id, empty, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    CHECK_ERR(decrypt_expect(id, ctx, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_result_free(&ct);
    CHECK_OK(p11kms_encrypt(svc, who, id, empty, pt, sizeof(pt), &ct, &e), &e);
    CHECK_OK(decrypt_expect(id, NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_result_free(&ct);
    p11kms_context_free(empty);
    p11kms_context_free(reordered);
    p11kms_context_free(ctx);
}

static void test_sizes(const char *id)
{
    fx_say("plaintext of 0 and 4097 bytes is ValidationException; 1 and 4096 bytes work");
    uint8_t *big = malloc(P11KMS_MAX_PLAINTEXT + 1);
    REQUIRE(big != NULL);
    for (size_t i = 0; i <= P11KMS_MAX_PLAINTEXT; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    p11kms_result ct;
    CHECK_ERR(p11kms_encrypt(svc, who, id, NULL, big, 0, &ct, &e), P11KMS_E_VALIDATION, &e);
    CHECK(ct.ciphertext == NULL);
    CHECK_ERR(p11kms_encrypt(svc, who, id, NULL, big, P11KMS_MAX_PLAINTEXT + 1, &ct, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK(ct.ciphertext == NULL);
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, big, P11KMS_MAX_PLAINTEXT, &ct, &e), &e);
    CHECK_OK(decrypt_expect(id, NULL, ct.ciphertext, ct.ciphertext_len, big, P11KMS_MAX_PLAINTEXT),
             &e);
    p11kms_result_free(&ct);
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, big, 1, &ct, &e), &e);
    CHECK_OK(decrypt_expect(id, NULL, ct.ciphertext, ct.ciphertext_len, big, 1), &e);
    p11kms_result_free(&ct);
    free(big);
}

static void test_wrong_key(const char *id, const char *other)
{
    static const uint8_t pt[] = "which key?";
    p11kms_result ct;
    REQUIRE(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &ct, &e) == P11KMS_OK);

    fx_say("decrypt naming another key is IncorrectKeyException; the right key by alias works");
    CHECK_ERR(decrypt_expect(other, NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)),
              P11KMS_E_INCORRECT_KEY, &e);
    CHECK_ERR(decrypt_expect("alias/crypto-other", NULL, ct.ciphertext, ct.ciphertext_len, pt,
                             sizeof(pt)),
              P11KMS_E_INCORRECT_KEY, &e);
    CHECK_OK(
        decrypt_expect("alias/crypto-main", NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)),
        &e);
    char arn[P11KMS_ARN_MAX];
    fx_key_arn(id, arn);
    CHECK_OK(decrypt_expect(arn, NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    fx_alias_arn("alias/crypto-main", arn);
    CHECK_OK(decrypt_expect(arn, NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)), &e);
    CHECK_ERR(
        decrypt_expect("alias/crypto-none", NULL, ct.ciphertext, ct.ciphertext_len, pt, sizeof(pt)),
        P11KMS_E_NOT_FOUND, &e);

    fx_say("the key a blob names is read from its header; junk and cut blobs are refused");
    char named[P11KMS_KEY_ID_LEN + 1];
    CHECK_OK(p11kms_ciphertext_key_id(ct.ciphertext, ct.ciphertext_len, named, &e), &e);
    CHECK(strcmp(named, id) == 0);
    static const uint8_t junk[] = {0x00, 0x01, 0x02, 0x03};
    CHECK_ERR(p11kms_ciphertext_key_id(junk, sizeof(junk), named, &e), P11KMS_E_INVALID_CIPHERTEXT,
              &e);
    CHECK_ERR(p11kms_ciphertext_key_id(ct.ciphertext, 20, named, &e), P11KMS_E_INVALID_CIPHERTEXT,
              &e);
    p11kms_result_free(&ct);
}

static void test_tampering(const char *id)
{
    static const uint8_t pt[] = "tamper-evident master-key ciphertext";
    p11kms_context *ctx = fx_ctx("app", "tamper", NULL);
    p11kms_result ct;
    REQUIRE(p11kms_encrypt(svc, who, id, ctx, pt, sizeof(pt), &ct, &e) == P11KMS_OK);
    size_t n = ct.ciphertext_len;
    uint8_t *copy = malloc(n + 1);
    REQUIRE(copy != NULL);

    fx_say("flipping any single bit (0x01, 0x80) of the %zu-byte blob makes decrypt fail", n);
    int accepted = 0, leaked = 0;
    const uint8_t masks[] = {0x01, 0x80};
    for (size_t m = 0; m < 2; m++) {
        for (size_t i = 0; i < n; i++) {
            memcpy(copy, ct.ciphertext, n);
            copy[i] ^= masks[m];
            p11kms_result r;
            p11kms_err rc = p11kms_decrypt(svc, who, NULL, ctx, copy, n, &r, &e);
            if (rc == P11KMS_OK) {
                accepted++;
                fprintf(stderr, "   byte %zu ^ 0x%02x was accepted\n", i, masks[m]);
            }
            if (r.plaintext != NULL || r.plaintext_len != 0)
                leaked++;
            p11kms_result_free(&r);
        }
    }
    CHECK(accepted == 0);
    CHECK(leaked == 0);

    fx_say("every truncation and one appended byte are InvalidCiphertextException");
    int wrong_class = 0;
    for (size_t len = 0; len < n; len++) {
        memcpy(copy, ct.ciphertext, n);
        p11kms_result r;
        p11kms_err rc = p11kms_decrypt(svc, who, NULL, ctx, copy, len, &r, &e);
        if (rc != P11KMS_E_INVALID_CIPHERTEXT || r.plaintext != NULL) {
            wrong_class++;
            fprintf(stderr, "   truncated to %zu bytes: %s (%s)\n", len, p11kms_error_class(rc),
                    e.message);
        }
        p11kms_result_free(&r);
    }
    CHECK(wrong_class == 0);
    memcpy(copy, ct.ciphertext, n);
    copy[n] = 0;
    CHECK_ERR(decrypt_expect(NULL, ctx, copy, n + 1, pt, sizeof(pt)), P11KMS_E_INVALID_CIPHERTEXT,
              &e);
    CHECK_OK(decrypt_expect(NULL, ctx, ct.ciphertext, n, pt, sizeof(pt)), &e);
    free(copy);
    p11kms_result_free(&ct);
    p11kms_context_free(ctx);
}

static void test_re_encrypt(const char *id, const char *other)
{
    static const uint8_t pt[] = "moved between keys";
    p11kms_context *src_ctx = fx_ctx("side", "source", NULL);
    p11kms_context *dst_ctx = fx_ctx("side", "destination", "extra", "1", NULL);
    p11kms_result ct, moved;
    REQUIRE(p11kms_encrypt(svc, who, id, src_ctx, pt, sizeof(pt), &ct, &e) == P11KMS_OK);

    fx_say("re-encrypt to another key and context");
    CHECK_OK(p11kms_re_encrypt(svc, who, NULL, src_ctx, ct.ciphertext, ct.ciphertext_len, other,
                               dst_ctx, &moved, &e),
             &e);
    char src_arn[P11KMS_ARN_MAX], dst_arn[P11KMS_ARN_MAX];
    fx_key_arn(id, src_arn);
    fx_key_arn(other, dst_arn);
    CHECK(strcmp(moved.source_key_id, src_arn) == 0);
    CHECK(strcmp(moved.key_id, dst_arn) == 0);
    CHECK(moved.plaintext == NULL);
    CHECK_OK(decrypt_expect(other, dst_ctx, moved.ciphertext, moved.ciphertext_len, pt, sizeof(pt)),
             &e);
    CHECK_ERR(decrypt_expect(id, dst_ctx, moved.ciphertext, moved.ciphertext_len, pt, sizeof(pt)),
              P11KMS_E_INCORRECT_KEY, &e);
    CHECK_ERR(
        decrypt_expect(other, src_ctx, moved.ciphertext, moved.ciphertext_len, pt, sizeof(pt)),
        P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_result_free(&moved);

    fx_say("re-encrypt with the wrong source context or source key fails");
    CHECK_ERR(p11kms_re_encrypt(svc, who, NULL, dst_ctx, ct.ciphertext, ct.ciphertext_len, other,
                                dst_ctx, &moved, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK(moved.ciphertext == NULL);
    CHECK_ERR(p11kms_re_encrypt(svc, who, NULL, NULL, ct.ciphertext, ct.ciphertext_len, other,
                                dst_ctx, &moved, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    CHECK_ERR(p11kms_re_encrypt(svc, who, other, src_ctx, ct.ciphertext, ct.ciphertext_len, other,
                                dst_ctx, &moved, &e),
              P11KMS_E_INCORRECT_KEY, &e);
    CHECK(moved.ciphertext == NULL);
    CHECK_OK(p11kms_re_encrypt(svc, who, id, src_ctx, ct.ciphertext, ct.ciphertext_len, id, NULL,
                               &moved, &e),
             &e);
    CHECK_OK(decrypt_expect(id, NULL, moved.ciphertext, moved.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_result_free(&moved);
    p11kms_result_free(&ct);
    p11kms_context_free(src_ctx);
    p11kms_context_free(dst_ctx);
}

static void check_data_key(const char *id, const p11kms_context *ctx, const char *spec,
                           size_t bytes, size_t want_len)
{
    p11kms_result dk;
    p11kms_err rc = p11kms_generate_data_key(svc, who, id, ctx, spec, bytes, true, &dk, &e);
    CHECK_OK(rc, &e);
    if (rc != P11KMS_OK)
        return;
    CHECK(dk.plaintext != NULL && dk.plaintext_len == want_len);
    CHECK(dk.ciphertext != NULL && dk.ciphertext_len > want_len);
    CHECK_OK(
        decrypt_expect(id, ctx, dk.ciphertext, dk.ciphertext_len, dk.plaintext, dk.plaintext_len),
        &e);
    p11kms_result_free(&dk);
}

static void test_data_keys(const char *id)
{
    p11kms_context *ctx = fx_ctx("purpose", "data-key", NULL);
    fx_say("generate-data-key AES_256, AES_128, 1 and 1024 bytes; the blob decrypts to it");
    check_data_key(id, ctx, "AES_256", 0, 32);
    check_data_key(id, ctx, "AES_128", 0, 16);
    check_data_key(id, ctx, NULL, 1, 1);
    check_data_key(id, NULL, NULL, P11KMS_MAX_DATA_KEY, P11KMS_MAX_DATA_KEY);

    fx_say("two data keys differ");
    p11kms_result a, b;
    CHECK_OK(p11kms_generate_data_key(svc, who, id, ctx, "AES_256", 0, true, &a, &e), &e);
    CHECK_OK(p11kms_generate_data_key(svc, who, id, ctx, "AES_256", 0, true, &b, &e), &e);
    CHECK(a.plaintext != NULL && b.plaintext != NULL &&
          !fx_same(a.plaintext, a.plaintext_len, b.plaintext, b.plaintext_len));
    CHECK(!fx_same(a.ciphertext, a.ciphertext_len, b.ciphertext, b.ciphertext_len));
    p11kms_result_free(&a);
    p11kms_result_free(&b);

    fx_say("generate-data-key: 0 and 1025 bytes, spec plus bytes, unknown spec: Validation");
    p11kms_result r;
    CHECK_ERR(p11kms_generate_data_key(svc, who, id, ctx, NULL, 0, true, &r, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(
        p11kms_generate_data_key(svc, who, id, ctx, NULL, P11KMS_MAX_DATA_KEY + 1, true, &r, &e),
        P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_generate_data_key(svc, who, id, ctx, "AES_256", 32, true, &r, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_generate_data_key(svc, who, id, ctx, "AES_512", 0, true, &r, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_generate_data_key(svc, who, id, ctx, "aes_256", 0, true, &r, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK(r.plaintext == NULL && r.ciphertext == NULL);

    fx_say("generate-data-key-without-plaintext returns no plaintext; the blob still decrypts");
    CHECK_OK(p11kms_generate_data_key(svc, who, id, ctx, "AES_256", 0, false, &r, &e), &e);
    CHECK(r.plaintext == NULL && r.plaintext_len == 0);
    CHECK(r.ciphertext != NULL);
    p11kms_result d;
    CHECK_OK(p11kms_decrypt(svc, who, id, ctx, r.ciphertext, r.ciphertext_len, &d, &e), &e);
    CHECK(d.plaintext_len == 32);
    p11kms_result_free(&d);
    CHECK_ERR(p11kms_decrypt(svc, who, id, NULL, r.ciphertext, r.ciphertext_len, &d, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11kms_result_free(&d);
    p11kms_result_free(&r);
    p11kms_context_free(ctx);

    fx_say("generate-random: 1 and 1024 bytes work, 0 and 1025 are Validation");
    CHECK_OK(p11kms_generate_random(svc, who, 1, &r, &e), &e);
    CHECK(r.plaintext != NULL && r.plaintext_len == 1 && r.ciphertext == NULL);
    p11kms_result_free(&r);
    CHECK_OK(p11kms_generate_random(svc, who, P11KMS_MAX_DATA_KEY, &r, &e), &e);
    CHECK(r.plaintext != NULL && r.plaintext_len == P11KMS_MAX_DATA_KEY);
    p11kms_result_free(&r);
    CHECK_ERR(p11kms_generate_random(svc, who, 0, &r, &e), P11KMS_E_VALIDATION, &e);
    CHECK(r.plaintext == NULL);
    CHECK_ERR(p11kms_generate_random(svc, who, P11KMS_MAX_DATA_KEY + 1, &r, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK(r.plaintext == NULL);
    CHECK_OK(p11kms_generate_random(svc, who, 32, &a, &e), &e);
    CHECK_OK(p11kms_generate_random(svc, who, 32, &b, &e), &e);
    CHECK(a.plaintext && b.plaintext && !fx_same(a.plaintext, 32, b.plaintext, 32));
    p11kms_result_free(&a);
    p11kms_result_free(&b);
}

/* --- the per-version encryption budget ----------------------------------------------------- */

#define BUDGET 10

static int collect_rotation(const p11kms_rotation *r, void *arg)
{
    char line[64];
    snprintf(line, sizeof(line), "%u:%s", r->version, r->rotation_type);
    fx_list_add(arg, line);
    return 0;
}

static void test_budget_manual(void)
{
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "budget, manual rotation", id);
    static const uint8_t pt[] = "counted";
    p11kms_result cts[BUDGET];

    fx_say("max-encryptions-per-version %d: %d encryptions work, the next is LimitExceeded", BUDGET,
           BUDGET);
    int ok = 0;
    for (int i = 0; i < BUDGET; i++) {
        p11kms_err rc = p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &cts[i], &e);
        if (rc == P11KMS_OK && cts[i].key_version == 1)
            ok++;
        else
            fprintf(stderr, "   encryption %d: %s (%s)\n", i + 1, p11kms_error_class(rc),
                    e.message);
    }
    CHECK(ok == BUDGET);
    p11kms_result r;
    CHECK_ERR(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &r, &e), P11KMS_E_LIMIT_EXCEEDED,
              &e);
    CHECK(fx_msg_has(&e, id));
    CHECK(r.ciphertext == NULL);
    CHECK_ERR(p11kms_generate_data_key(svc, who, id, NULL, "AES_256", 0, true, &r, &e),
              P11KMS_E_LIMIT_EXCEEDED, &e);
    CHECK_ERR(p11kms_re_encrypt(svc, who, NULL, NULL, cts[0].ciphertext, cts[0].ciphertext_len, id,
                                NULL, &r, &e),
              P11KMS_E_LIMIT_EXCEEDED, &e);
    fx_say("decrypt is not counted: the old ciphertexts still decrypt at the limit");
    CHECK_OK(decrypt_expect(id, NULL, cts[0].ciphertext, cts[0].ciphertext_len, pt, sizeof(pt)),
             &e);
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
    CHECK(md.current_version == 1 && md.current_version_encryptions == BUDGET);

    fx_say("after rotate-key-on-demand encryption works again under version 2");
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), &e);
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &r, &e), &e);
    CHECK(r.key_version == 2);
    CHECK_OK(decrypt_expect(id, NULL, r.ciphertext, r.ciphertext_len, pt, sizeof(pt)), &e);
    p11kms_result_free(&r);
    int old_ok = 0;
    for (int i = 0; i < BUDGET; i++) {
        if (decrypt_expect(id, NULL, cts[i].ciphertext, cts[i].ciphertext_len, pt, sizeof(pt)) ==
            P11KMS_OK)
            old_ok++;
        p11kms_result_free(&cts[i]);
    }
    CHECK(old_ok == BUDGET);
    fx_list l = {0};
    CHECK_OK(p11kms_list_key_rotations(svc, who, id, collect_rotation, &l, &e), &e);
    CHECK(l.count == 2 && fx_list_has(&l, "2:ON_DEMAND"));
    fx_list_free(&l);
}

static void test_budget_automatic(void)
{
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "budget, automatic rotation", id);
    CHECK_OK(p11kms_enable_key_rotation(svc, who, id, 0, &e), &e);
    static const uint8_t pt[] = "rotated when spent";
    enum { TOTAL = 3 * BUDGET + 2 };
    p11kms_result cts[TOTAL];

    fx_say("with rotation enabled the limit rotates the key (AUTOMATIC) instead of refusing");
    int ok = 0, versions_right = 0;
    for (int i = 0; i < TOTAL; i++) {
        p11kms_err rc = p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &cts[i], &e);
        if (rc != P11KMS_OK) {
            fprintf(stderr, "   encryption %d: %s (%s)\n", i + 1, p11kms_error_class(rc),
                    e.message);
            continue;
        }
        ok++;
        if (cts[i].key_version == (uint32_t)(i / BUDGET + 1))
            versions_right++;
        else
            fprintf(stderr, "   encryption %d used version %u, expected %d\n", i + 1,
                    cts[i].key_version, i / BUDGET + 1);
    }
    CHECK(ok == TOTAL);
    CHECK(versions_right == TOTAL);
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
    CHECK(md.current_version == 4 && md.version_count == 4);
    CHECK(md.rotation_enabled && md.next_rotation_date > 0);
    fx_list l = {0};
    CHECK_OK(p11kms_list_key_rotations(svc, who, id, collect_rotation, &l, &e), &e);
    CHECK(l.count == 4 && fx_list_has(&l, "1:INITIAL") && fx_list_has(&l, "2:AUTOMATIC") &&
          fx_list_has(&l, "3:AUTOMATIC") && fx_list_has(&l, "4:AUTOMATIC"));
    fx_list_free(&l);

    fx_say("every ciphertext of every version still decrypts");
    int old_ok = 0;
    for (int i = 0; i < TOTAL; i++) {
        if (cts[i].ciphertext != NULL &&
            decrypt_expect(id, NULL, cts[i].ciphertext, cts[i].ciphertext_len, pt, sizeof(pt)) ==
                P11KMS_OK)
            old_ok++;
        p11kms_result_free(&cts[i]);
    }
    CHECK(old_ok == TOTAL);

    fx_say("generate-data-key also rotates at the limit");
    p11kms_result r;
    int gdk_ok = 0;
    for (int i = 0; i < BUDGET; i++) {
        if (p11kms_generate_data_key(svc, who, id, NULL, "AES_256", 0, true, &r, &e) == P11KMS_OK)
            gdk_ok++;
        p11kms_result_free(&r);
    }
    CHECK(gdk_ok == BUDGET);
    CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
    CHECK(md.current_version == 5);
}

int main(void)
{
    svc = fx_open(NULL);
    who = fx_principal("unix:user:crypto-tester");
    char id[P11KMS_KEY_ID_LEN + 1], other[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "crypto main", id);
    fx_create_key(svc, who, "crypto other", other);
    REQUIRE(p11kms_create_alias(svc, who, "alias/crypto-main", id, &e) == P11KMS_OK);
    REQUIRE(p11kms_create_alias(svc, who, "alias/crypto-other", other, &e) == P11KMS_OK);

    test_contexts(id);
    test_sizes(id);
    test_wrong_key(id, other);
    test_tampering(id);
    test_re_encrypt(id, other);
    test_data_keys(id);
    p11kms_close(svc);

    fx_say("reopen with keys.max-encryptions-per-version: %d, keys.count-batch: 4", BUDGET);
    char *cfg =
        fx_config("budget.yaml", "max-encryptions-per-version: 10\ncount-batch: 4", NULL, NULL);
    svc = fx_open(cfg);
    test_budget_manual();
    test_budget_automatic();
    p11kms_close(svc);
    free(cfg);
    p11kms_principal_free(who);
    return check_finish("provider-crypto-test");
}
