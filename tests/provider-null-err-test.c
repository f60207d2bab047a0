/* The error contract: every public function accepts err == NULL. Each one is called here on a
 * failure path (and the ones that used to dereference err on success, on that path too) with
 * err NULL: it must return the right code, not crash. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

#define MISSING "11111111-2222-3333-4444-555555555555"

static int count_one(const char *a, const char *b, void *arg)
{
    (void)a, (void)b;
    ++*(int *)arg;
    return 0;
}

static int count_alias(const char *a, const char *b, const char *c, void *arg)
{
    (void)c;
    return count_one(a, b, arg);
}

static int no_rotation(const p11kms_rotation *r, void *arg)
{
    (void)r, (void)arg;
    return 0;
}

static int no_tag(const p11kms_tag *t, void *arg)
{
    (void)t, (void)arg;
    return 0;
}

static void no_line(const char *line, void *arg)
{
    (void)line, (void)arg;
}

int main(void)
{
    p11kms *svc = NULL;
    fx_say("service, principals, contexts");
    CHECK(p11kms_open("/nonexistent/p11kms.yaml", &svc, NULL) == P11KMS_E_CONFIG && svc == NULL);
    CHECK(p11kms_open_with("/nonexistent/p11kms.yaml", 0, &svc, NULL) == P11KMS_E_CONFIG);
    CHECK(p11kms_open(NULL, NULL, NULL) != P11KMS_OK);
    CHECK(p11kms_protect_process(0, NULL) == P11KMS_OK);
    char *endpoint = NULL;
    CHECK(p11kms_config_endpoint("/nonexistent/p11kms.yaml", &endpoint, NULL) == P11KMS_E_CONFIG &&
          endpoint == NULL);
    CHECK(p11kms_config_endpoint(NULL, NULL, NULL) != P11KMS_OK);
    CHECK(p11kms_config_endpoint(NULL, &endpoint, NULL) == P11KMS_OK && endpoint == NULL);
    CHECK(p11kms_open(NULL, &svc, NULL) == P11KMS_OK && svc != NULL);
    if (svc == NULL)
        return check_finish("provider-null-err-test");
    p11kms_principal *who = fx_principal("unix:user:null-err");
    CHECK(p11kms_principal_add(who, "no-scheme", NULL) != P11KMS_OK);
    p11kms_context *ctx = NULL;
    CHECK(p11kms_context_parse("{\"unterminated", &ctx, NULL) != P11KMS_OK);
    ctx = p11kms_context_new();
    CHECK(p11kms_context_add(ctx, "k", "\xff", NULL) != P11KMS_OK);
    p11kms_principal *me = NULL;
    CHECK(p11kms_principal_from_process(&me, NULL) == P11KMS_OK);
    p11kms_principal_free(me);
    CHECK(p11kms_reload_policy(svc, NULL) == P11KMS_E_VALIDATION); /* "policy: none" */

    fx_say("keys: create (success and failure) and every key call on a missing key");
    p11kms_key_metadata md;
    p11kms_create_key_input in = {.description = "null err"};
    CHECK(p11kms_create_key(svc, who, &in, &md, NULL) == P11KMS_OK);
    char id[P11KMS_KEY_ID_LEN + 1];
    memcpy(id, md.key_id, sizeof(id));
    p11kms_create_key_input bad = {.key_spec = "RSA_2048"};
    CHECK(p11kms_create_key(svc, who, &bad, &md, NULL) != P11KMS_OK);
    CHECK(p11kms_describe_key(svc, who, MISSING, &md, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_enable_key(svc, who, MISSING, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_disable_key(svc, who, MISSING, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_schedule_key_deletion(svc, who, MISSING, 7, &md, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_cancel_key_deletion(svc, who, MISSING, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_update_key_description(svc, who, MISSING, "d", NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_rotate_key_on_demand(svc, who, MISSING, &md, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_enable_key_rotation(svc, who, MISSING, 365, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_disable_key_rotation(svc, who, MISSING, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_list_key_rotations(svc, who, MISSING, no_rotation, NULL, NULL) ==
          P11KMS_E_NOT_FOUND);
    p11kms_tag tag = {"k", "v"};
    CHECK(p11kms_tag_resource(svc, who, MISSING, &tag, 1, NULL) == P11KMS_E_NOT_FOUND);
    const char *tag_key = "k";
    CHECK(p11kms_untag_resource(svc, who, MISSING, &tag_key, 1, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_list_resource_tags(svc, who, MISSING, no_tag, NULL, NULL) == P11KMS_E_NOT_FOUND);
    int n = 0;
    CHECK(p11kms_list_keys(svc, who, count_one, &n, NULL) == P11KMS_OK && n == 1);

    fx_say("aliases");
    CHECK(p11kms_create_alias(svc, who, "alias/x", MISSING, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_create_alias(svc, who, "bad\x1b", id, NULL) == P11KMS_E_INVALID_ALIAS);
    CHECK(p11kms_update_alias(svc, who, "alias/none", id, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_delete_alias(svc, who, "alias/none", NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_list_aliases(svc, who, MISSING, count_alias, &n, NULL) == P11KMS_E_NOT_FOUND);

    fx_say("cryptography");
    p11kms_result r;
    const uint8_t junk[64] = {1, 2, 3};
    CHECK(p11kms_encrypt(svc, who, MISSING, NULL, junk, 4, &r, NULL) == P11KMS_E_NOT_FOUND);
    CHECK(p11kms_decrypt(svc, who, NULL, NULL, junk, sizeof(junk), &r, NULL) ==
          P11KMS_E_INVALID_CIPHERTEXT);
    CHECK(p11kms_re_encrypt(svc, who, NULL, NULL, junk, sizeof(junk), id, NULL, &r, NULL) ==
          P11KMS_E_INVALID_CIPHERTEXT);
    CHECK(p11kms_generate_data_key(svc, who, MISSING, NULL, "AES_256", 0, true, &r, NULL) ==
          P11KMS_E_NOT_FOUND);
    CHECK(p11kms_generate_random(svc, who, 0, &r, NULL) == P11KMS_E_VALIDATION);

    fx_say("the key hierarchy");
    p11kms_opened_key *k = NULL;
    CHECK(p11kms_open_key(svc, who, NULL, junk, sizeof(junk), &k, NULL) ==
          P11KMS_E_INVALID_CIPHERTEXT);
    REQUIRE(p11kms_generate_data_key(svc, who, id, ctx, "AES_256", 0, false, &r, NULL) ==
            P11KMS_OK);
    CHECK(p11kms_open_key(svc, who, ctx, r.ciphertext, r.ciphertext_len, &k, NULL) == P11KMS_OK);
    p11kms_result_free(&r);
    if (k != NULL) {
        p11kms_result child;
        CHECK(p11kms_generate_child_key(k, NULL, 0, true, &child, NULL) == P11KMS_E_VALIDATION);
        CHECK(p11kms_unwrap_child_key(k, NULL, junk, sizeof(junk), &child, NULL) ==
              P11KMS_E_INVALID_CIPHERTEXT);
        p11kms_opened_key *c = NULL;
        CHECK(p11kms_open_child_key(k, NULL, junk, sizeof(junk), &c, NULL) ==
              P11KMS_E_INVALID_CIPHERTEXT);
        p11kms_opened_key_close(k);
    }

    fx_say("tools");
    p11kms_token_report tr;
    CHECK(p11kms_token_info(svc, &tr, NULL) == P11KMS_OK);
    CHECK(p11kms_maintain(svc, who, no_line, NULL, NULL) == P11KMS_OK);
    CHECK(p11kms_store_migrate(svc, no_line, NULL, NULL) == P11KMS_OK);
    CHECK(p11kms_policy_check_file(NULL, no_line, NULL, NULL) == P11KMS_E_VALIDATION);
    CHECK(p11kms_policy_check_file("/nonexistent/policy.yaml", no_line, NULL, NULL) != P11KMS_OK);
    bool allowed;
    char why[256];
    CHECK(p11kms_policy_explain(svc, who, NULL, "no-such-action", id, NULL, &allowed, why,
                                sizeof(why), NULL) != P11KMS_OK);

    fx_say("audit and credentials");
    CHECK(p11kms_principal_set_source(who, "", NULL) == P11KMS_E_VALIDATION);
    CHECK(p11kms_principal_set_request_id(who, "", NULL) == P11KMS_E_VALIDATION);
    CHECK(p11kms_audit_verify(svc, NULL, 0, no_line, NULL, &allowed, NULL) == P11KMS_E_VALIDATION);
    p11kms_credential cred;
    char *secret = NULL;
    CHECK(p11kms_credentials_create(svc, who, "bad name", &cred, &secret, NULL) ==
          P11KMS_E_VALIDATION);
    CHECK(p11kms_credentials_list(svc, who, NULL, NULL, NULL) == P11KMS_E_VALIDATION);
    CHECK(p11kms_credentials_delete(svc, who, "PKMSAAAAAAAAAAAAAAAA", NULL) == P11KMS_E_NOT_FOUND);
    uint8_t signing_key[32];
    CHECK(p11kms_sigv4_signing_key(svc, "PKMSAAAAAAAAAAAAAAAA", "2026", "us-east-1", "kms",
                                   signing_key, NULL, 0, NULL) == P11KMS_E_VALIDATION);

    p11kms_context_free(ctx);
    p11kms_principal_free(who);
    p11kms_close(svc);
    return check_finish("provider-null-err-test");
}
