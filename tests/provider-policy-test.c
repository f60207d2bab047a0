#include "config.h"

/* Policy enforcement through the provider: administrators manage and cannot use, applications
 * use (with a required context key) and cannot manage, a statement on an alias applies however
 * the key is named, unknown principals learn nothing about which keys exist, listings show only
 * what the caller may describe, policy explain answers about other principals only to
 * administrators, and a broken policy file on reload leaves the old policy in force. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

static p11kms *svc;
static p11kms_principal *admin, *app1, *app2, *nobody;
static p11kms_error e;

static const char *const policy_text =
    "version: 1\n"
    "global:\n"
    "  - sid: admin-global\n"
    "    effect: allow\n"
    "    principals: [unix:user:admin1]\n"
    "    actions: [create-key, list-keys, list-aliases, maintain, explain-policy]\n"
    "    create:\n"
    "      description: created under the test policy\n"
    "      tags:\n"
    "        managed-by: policy-test\n"
    "  - sid: apps-list\n"
    "    effect: allow\n"
    "    principals: [unix:user:app1]\n"
    "    actions: [list-keys, list-aliases]\n"
    "statements:\n"
    "  - sid: admin-manage\n"
    "    effect: allow\n"
    "    principals: [unix:user:admin1]\n"
    "    keys: [\"*\"]\n"
    "    actions: [describe-key, list-resource-tags, list-key-rotations, enable-key, disable-key,\n"
    "              schedule-key-deletion, cancel-key-deletion, rotate-key-on-demand,\n"
    "              enable-key-rotation, disable-key-rotation, create-alias, delete-alias,\n"
    "              update-alias, tag-resource, untag-resource, update-key-description]\n"
    "  - sid: apps-use\n"
    "    effect: allow\n"
    "    principals: [unix:user:app1, unix:user:app2]\n"
    "    keys: [\"alias/app-*\"]\n"
    "    actions: [encrypt, decrypt, generate-data-key]\n"
    "    conditions:\n"
    "      context-keys-any: [tenant]\n"
    "  - sid: apps-describe\n"
    "    effect: allow\n"
    "    principals: [unix:user:app1]\n"
    "    keys: [\"alias/app-*\"]\n"
    "    actions: [describe-key]\n"
    "%s";

static const char *const app2_deny = "  - sid: app2-no-decrypt-one\n"
                                     "    effect: deny\n"
                                     "    principals: [unix:user:app2]\n"
                                     "    keys: [alias/app-one]\n"
                                     "    actions: [decrypt]\n";

static int collect_alias_name(const char *alias_name, const char *alias_arn,
                              const char *target_key_id, void *arg)
{
    (void)alias_arn;
    (void)target_key_id;
    fx_list_add(arg, alias_name);
    return 0;
}

static char *write_policy(bool with_deny)
{
    char text[4096];
    snprintf(text, sizeof(text), policy_text, with_deny ? app2_deny : "");
    return fx_write_file("policy.yaml", text);
}

static p11kms_err encrypt_as(const p11kms_principal *who, const char *ref,
                             const p11kms_context *ctx, p11kms_result *out)
{
    static const uint8_t pt[] = "policy test";
    return p11kms_encrypt(svc, who, ref, ctx, pt, sizeof(pt), out, &e);
}

static p11kms_err encrypt_as_discard(const p11kms_principal *who, const char *ref,
                                     const p11kms_context *ctx)
{
    p11kms_result r;
    p11kms_err rc = encrypt_as(who, ref, ctx, &r);
    p11kms_result_free(&r);
    return rc;
}

static p11kms_err decrypt_as(const p11kms_principal *who, const char *ref,
                             const p11kms_context *ctx, const p11kms_result *ct)
{
    p11kms_result r;
    p11kms_err rc = p11kms_decrypt(svc, who, ref, ctx, ct->ciphertext, ct->ciphertext_len, &r, &e);
    if (rc != P11KMS_OK)
        CHECK(r.plaintext == NULL);
    p11kms_result_free(&r);
    return rc;
}

/* p11kms_policy_explain by caller about subject; why gets the explanation. */
static p11kms_err explain_as(const p11kms_principal *caller, const p11kms_principal *subject,
                             const char *action, const char *ref, const p11kms_context *ctx,
                             bool *allowed, char *why, size_t size)
{
    return p11kms_policy_explain(svc, caller, subject, action, ref, ctx, allowed, why, size, &e);
}

/* A refused question about another principal: AccessDenied, nothing written, and the message
 * names the caller and explain-policy only, whatever the subject's decision or the key. */
static void check_explain_refused(const p11kms_principal *caller, const p11kms_principal *subject,
                                  const char *action, const char *ref, const p11kms_context *ctx,
                                  const char *want)
{
    bool allowed = true;
    char why[1024] = "stale";
    CHECK_ERR(explain_as(caller, subject, action, ref, ctx, &allowed, why, sizeof(why)),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK(!allowed && why[0] == '\0');
    if (strcmp(e.message, want) != 0) {
        fprintf(stderr, "   explain refusal: want \"%s\", got \"%s\"\n", want, e.message);
        CHECK(strcmp(e.message, want) == 0);
    }
}

static p11kms_key_state state_of(const char *id)
{
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, admin, id, &md, &e), &e);
    return md.state;
}

int main(void)
{
    char *policy = write_policy(true);
    p11kms_error pe = {0};
    fx_say("the test policy is valid");
    CHECK_OK(p11kms_policy_check_file(policy, NULL, NULL, &pe), &pe);
    char *cfg = fx_config("policy-test.yaml", NULL, NULL, policy);
    svc = fx_open(cfg);
    admin = fx_principal("unix:user:admin1");
    app1 = fx_principal("unix:user:app1");
    app2 = fx_principal("unix:user:app2");
    nobody = fx_principal("unix:user:nobody");
    p11kms_context *tenant = fx_ctx("tenant", "t1", NULL);
    p11kms_context *no_tenant = fx_ctx("customer", "t1", NULL);
    p11kms_key_metadata md = {0};

    fx_say("admin1 creates keys (policy defaults apply) and aliases");
    char one[P11KMS_KEY_ID_LEN + 1], two[P11KMS_KEY_ID_LEN + 1], plain[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, admin, NULL, one);
    fx_create_key(svc, admin, "second", two);
    fx_create_key(svc, admin, "not for apps", plain);
    CHECK_OK(p11kms_describe_key(svc, admin, one, &md, &e), &e);
    CHECK(strcmp(md.description, "created under the test policy") == 0);
    CHECK_OK(p11kms_describe_key(svc, admin, two, &md, &e), &e);
    CHECK(strcmp(md.description, "second") == 0);
    CHECK_OK(p11kms_create_alias(svc, admin, "alias/app-one", one, &e), &e);
    CHECK_OK(p11kms_create_alias(svc, admin, "alias/app-two", two, &e), &e);

    fx_say("admin1 may not use a key: AccessDenied naming principal, action and key");
    CHECK_ERR(encrypt_as_discard(admin, one, tenant), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(fx_msg_has(&e, "unix:user:admin1") && fx_msg_has(&e, "encrypt") && fx_msg_has(&e, one));
    CHECK_ERR(encrypt_as_discard(admin, "alias/app-one", tenant), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(fx_msg_has(&e, "alias/app-one"));
    p11kms_result r;
    CHECK_ERR(p11kms_generate_data_key(svc, admin, one, tenant, "AES_256", 0, true, &r, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK(r.plaintext == NULL);

    fx_say("app1 encrypts via the alias with a tenant context; without tenant it is denied");
    p11kms_result ct;
    CHECK_OK(encrypt_as(app1, "alias/app-one", tenant, &ct), &e);
    CHECK_ERR(encrypt_as_discard(app1, "alias/app-one", NULL), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(fx_msg_has(&e, "unix:user:app1") && fx_msg_has(&e, "encrypt"));
    CHECK_ERR(encrypt_as_discard(app1, "alias/app-one", no_tenant), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(decrypt_as(app1, NULL, tenant, &ct), &e);
    CHECK_ERR(decrypt_as(app1, NULL, NULL, &ct), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(
        p11kms_generate_data_key(svc, app1, "alias/app-one", tenant, "AES_256", 0, true, &r, &e),
        &e);
    p11kms_result_free(&r);
    CHECK_ERR(
        p11kms_generate_data_key(svc, app1, "alias/app-one", NULL, "AES_256", 0, true, &r, &e),
        P11KMS_E_ACCESS_DENIED, &e);
    fx_say("app1 has no generate-data-key-without-plaintext and no re-encrypt");
    CHECK_ERR(
        p11kms_generate_data_key(svc, app1, "alias/app-one", tenant, "AES_256", 0, false, &r, &e),
        P11KMS_E_ACCESS_DENIED, &e);
    CHECK(strcmp(e.message, "unix:user:app1 is not allowed to "
                            "generate-data-key-without-plaintext alias/app-one") == 0);
    CHECK_ERR(p11kms_re_encrypt(svc, app1, NULL, tenant, ct.ciphertext, ct.ciphertext_len,
                                "alias/app-two", tenant, &r, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK(strcmp(e.message, "unix:user:app1 is not allowed to re-encrypt-to alias/app-two") == 0);
    CHECK(r.ciphertext == NULL);

    fx_say("the alias statement applies when app1 names the key by id, key ARN or alias ARN");
    char arn[P11KMS_ARN_MAX];
    CHECK_OK(encrypt_as_discard(app1, one, tenant), &e);
    fx_key_arn(one, arn);
    CHECK_OK(encrypt_as_discard(app1, arn, tenant), &e);
    fx_alias_arn("alias/app-one", arn);
    CHECK_OK(encrypt_as_discard(app1, arn, tenant), &e);
    CHECK_ERR(encrypt_as_discard(app1, one, NULL), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(encrypt_as_discard(app1, plain, tenant), P11KMS_E_ACCESS_DENIED, &e);

    fx_say("a deny on alias/app-one cannot be bypassed by naming the key otherwise (app2)");
    p11kms_result ct_two;
    CHECK_OK(encrypt_as(app2, one, tenant, &r), &e); /* encrypt is allowed to app2 */
    p11kms_result_free(&r);
    CHECK_ERR(decrypt_as(app2, one, tenant, &ct), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(fx_msg_has(&e, "unix:user:app2") && fx_msg_has(&e, "decrypt"));
    CHECK_ERR(decrypt_as(app2, NULL, tenant, &ct), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(decrypt_as(app2, "alias/app-one", tenant, &ct), P11KMS_E_ACCESS_DENIED, &e);
    fx_key_arn(one, arn);
    CHECK_ERR(decrypt_as(app2, arn, tenant, &ct), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(encrypt_as(app1, "alias/app-two", tenant, &ct_two), &e);
    CHECK_OK(decrypt_as(app2, two, tenant, &ct_two), &e);
    CHECK_OK(decrypt_as(app2, NULL, tenant, &ct_two), &e);

    fx_say("app1 may not manage: disable-key, create-key, create-alias are AccessDenied");
    CHECK_ERR(p11kms_disable_key(svc, app1, one, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(fx_msg_has(&e, "unix:user:app1") && fx_msg_has(&e, "disable-key"));
    CHECK_ERR(p11kms_disable_key(svc, app1, "alias/app-one", &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(state_of(one) == P11KMS_KEY_ENABLED);
    CHECK_ERR(p11kms_schedule_key_deletion(svc, app1, one, 7, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(state_of(one) == P11KMS_KEY_ENABLED);
    CHECK_ERR(p11kms_rotate_key_on_demand(svc, app1, one, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(p11kms_create_key(svc, app1, NULL, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(strcmp(e.message, "unix:user:app1 is not allowed to create-key") == 0);
    CHECK_ERR(p11kms_create_alias(svc, app1, "alias/app-mine", one, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    CHECK(strcmp(e.message, "unix:user:app1 is not allowed to create-alias alias/app-mine") == 0);
    CHECK_ERR(p11kms_update_alias(svc, app1, "alias/app-one", two, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(p11kms_delete_alias(svc, app1, "alias/app-one", &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(p11kms_describe_key(svc, admin, "alias/app-one", &md, &e), &e);
    CHECK(strcmp(md.key_id, one) == 0);

    fx_say("unknown principal: AccessDenied whether or not the key exists; admin1 NotFound");
    const char *ghost = "4f2c8a5e-1b3d-4c6e-8f90-123456789abc";
    CHECK_ERR(p11kms_describe_key(svc, nobody, ghost, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(!fx_msg_has(&e, "not exist") && !fx_msg_has(&e, "not found"));
    char missing_msg[sizeof(e.message)];
    snprintf(missing_msg, sizeof(missing_msg), "%s", e.message);
    CHECK_ERR(p11kms_describe_key(svc, nobody, one, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    /* the same message but for the reference the caller wrote: no resolved id, no alias */
    char *at = strstr(e.message, one);
    CHECK(at != NULL && !fx_msg_has(&e, "alias/app-one"));
    if (at != NULL)
        memcpy(at, ghost, strlen(ghost));
    CHECK(strcmp(e.message, missing_msg) == 0);
    if (strcmp(e.message, missing_msg) != 0)
        fprintf(stderr, "   existing: %s\n   missing:  %s\n", e.message, missing_msg);
    CHECK_ERR(p11kms_describe_key(svc, nobody, "alias/app-one", &md, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    snprintf(missing_msg, sizeof(missing_msg), "%s", e.message);
    CHECK(!fx_msg_has(&e, one));
    CHECK_ERR(p11kms_describe_key(svc, nobody, "alias/app-xxx", &md, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    at = strstr(e.message, "alias/app-xxx");
    if (at != NULL)
        memcpy(at, "alias/app-one", strlen("alias/app-one"));
    CHECK(strcmp(e.message, missing_msg) == 0);
    CHECK_ERR(p11kms_describe_key(svc, admin, ghost, &md, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_describe_key(svc, nobody, "alias/nothing", &md, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    CHECK_ERR(p11kms_describe_key(svc, admin, "alias/nothing", &md, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(encrypt_as_discard(nobody, ghost, tenant), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(p11kms_disable_key(svc, nobody, ghost, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(p11kms_disable_key(svc, admin, ghost, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_describe_key(svc, app1, "alias/app-none", &md, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_describe_key(svc, app1, "alias/other-none", &md, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    CHECK_ERR(p11kms_decrypt(svc, nobody, NULL, tenant, ct.ciphertext, ct.ciphertext_len, &r, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    CHECK(r.plaintext == NULL);
    CHECK_ERR(p11kms_generate_random(svc, nobody, 16, &r, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(r.plaintext == NULL);
    p11kms_principal *empty = p11kms_principal_new();
    REQUIRE(empty != NULL);
    CHECK_ERR(p11kms_describe_key(svc, empty, one, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(p11kms_describe_key(svc, NULL, one, &md, &e), P11KMS_E_ACCESS_DENIED, &e);
    p11kms_principal_free(empty);

    fx_say("list-keys shows app1 only the keys it may describe; nobody may not list");
    fx_list keys = {0};
    fx_list_keys(svc, app1, &keys);
    CHECK(keys.count == 2 && fx_list_has(&keys, one) && fx_list_has(&keys, two));
    CHECK(!fx_list_has(&keys, plain));
    fx_list_free(&keys);
    fx_list_keys(svc, admin, &keys);
    CHECK(keys.count == 3 && fx_list_has(&keys, plain));
    fx_list_free(&keys);
    CHECK_ERR(p11kms_list_keys(svc, nobody, fx_collect_key, &keys, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(keys.count == 0);
    CHECK_ERR(p11kms_list_keys(svc, app2, fx_collect_key, &keys, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(keys.count == 0);

    fx_say("moving alias/app-one to another key moves the permission with it");
    CHECK_OK(p11kms_update_alias(svc, admin, "alias/app-one", plain, &e), &e);
    CHECK_OK(encrypt_as_discard(app1, plain, tenant), &e);
    CHECK_ERR(encrypt_as_discard(app1, one, tenant), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(decrypt_as(app2, two, tenant, &ct_two), &e);
    fx_list_keys(svc, app1, &keys);
    CHECK(fx_list_has(&keys, plain) && !fx_list_has(&keys, one));
    fx_list_free(&keys);
    CHECK_OK(p11kms_update_alias(svc, admin, "alias/app-one", one, &e), &e);
    CHECK_OK(encrypt_as_discard(app1, one, tenant), &e);

    fx_say("reload with a broken policy file: error, the old policy stays in force");
    free(fx_write_file("policy.yaml",
                       "version: 1\nstatements:\n  - sid: broken\n    effect: maybe\n"));
    p11kms_err rc = p11kms_reload_policy(svc, &e);
    CHECK(rc != P11KMS_OK);
    CHECK(rc == P11KMS_E_MALFORMED_POLICY);
    fprintf(stderr, "   reload: %s: %s\n", p11kms_error_class(rc), e.message);
    fx_say("the reload error names the file and position once, and says the old policy stays");
    CHECK(fx_msg_has(&e, "/policy.yaml:3:"));
    const char *stays = strstr(e.message, "stays in force");
    CHECK(stays != NULL && strstr(stays + 1, "stays in force") == NULL);
    CHECK_OK(encrypt_as_discard(app1, "alias/app-one", tenant), &e);
    CHECK_ERR(encrypt_as_discard(admin, one, tenant), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(decrypt_as(app2, one, tenant, &ct), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(p11kms_describe_key(svc, admin, one, &md, &e), &e);
    free(fx_write_file("policy.yaml", "version: 1\nstatements: [\n"));
    CHECK(p11kms_reload_policy(svc, &e) != P11KMS_OK);
    CHECK_OK(encrypt_as_discard(app1, "alias/app-one", tenant), &e);

    fx_say("reload with a valid policy without the deny: app2 may now decrypt under app-one");
    free(write_policy(false));
    CHECK_OK(p11kms_reload_policy(svc, &e), &e);
    CHECK_OK(decrypt_as(app2, one, tenant, &ct), &e);
    CHECK_OK(encrypt_as_discard(app1, "alias/app-one", tenant), &e);
    CHECK_ERR(encrypt_as_discard(admin, one, tenant), P11KMS_E_ACCESS_DENIED, &e);

    fx_say("list-aliases shows only aliases of keys the caller may describe");
    CHECK_OK(p11kms_create_alias(svc, admin, "alias/ops-plain", plain, &e), &e);
    fx_list seen = {0};
    CHECK_OK(p11kms_list_aliases(svc, app1, NULL, collect_alias_name, &seen, &e), &e);
    CHECK(seen.count == 2 && fx_list_has(&seen, "alias/app-one") &&
          fx_list_has(&seen, "alias/app-two"));
    fx_list_free(&seen);
    CHECK_OK(p11kms_list_aliases(svc, admin, NULL, collect_alias_name, &seen, &e), &e);
    CHECK(seen.count == 3 && fx_list_has(&seen, "alias/ops-plain"));
    fx_list_free(&seen);
    CHECK_ERR(p11kms_list_aliases(svc, app2, NULL, collect_alias_name, &seen, &e),
              P11KMS_E_ACCESS_DENIED, &e);
    fx_list_free(&seen);

    fx_say("policy explain: an administrator explains for anyone");
    bool allowed = false;
    char why[1024];
    CHECK_OK(
        explain_as(admin, app1, "encrypt", "alias/app-one", tenant, &allowed, why, sizeof(why)),
        &e);
    CHECK(allowed && strstr(why, "apps-use") != NULL);
    CHECK_OK(explain_as(admin, app1, "encrypt", "alias/app-one", NULL, &allowed, why, sizeof(why)),
             &e);
    CHECK(!allowed);
    CHECK_OK(explain_as(admin, nobody, "describe-key", one, NULL, &allowed, why, sizeof(why)), &e);
    CHECK(!allowed);
    CHECK_OK(explain_as(admin, NULL, "create-key", NULL, NULL, &allowed, why, sizeof(why)), &e);
    CHECK(allowed && strstr(why, "admin-global") != NULL);

    fx_say("policy explain: a service explains for itself, Allowed or Denied as before");
    CHECK_OK(explain_as(app1, NULL, "encrypt", "alias/app-one", tenant, &allowed, why, sizeof(why)),
             &e);
    CHECK(allowed && strstr(why, "apps-use") != NULL);
    CHECK_OK(explain_as(app1, app1, "encrypt", "alias/app-one", tenant, &allowed, why, sizeof(why)),
             &e);
    CHECK(allowed);
    CHECK_OK(
        explain_as(app1, app1, "disable-key", "alias/app-one", NULL, &allowed, why, sizeof(why)),
        &e);
    CHECK(!allowed);
    CHECK_OK(explain_as(nobody, NULL, "describe-key", one, NULL, &allowed, why, sizeof(why)), &e);
    CHECK(!allowed);
    fx_say("policy explain names the action as the policy does; an unknown name is invalid");
    CHECK_OK(explain_as(admin, app1, "re-encrypt-from", one, tenant, &allowed, why, sizeof(why)),
             &e);
    CHECK(!allowed && strncmp(why, "DENY re-encrypt-from", 20) == 0);
    CHECK_ERR(explain_as(app1, NULL, "Encrypt", one, NULL, &allowed, why, sizeof(why)),
              P11KMS_E_VALIDATION, &e);
    CHECK(strcmp(e.message, "unknown policy action 'Encrypt'") == 0 && !allowed);
    CHECK_ERR(explain_as(admin, app1, NULL, NULL, NULL, &allowed, why, sizeof(why)),
              P11KMS_E_VALIDATION, &e);
    CHECK(fx_msg_has(&e, "unknown policy action"));
    p11kms_principal *app1_groups = p11kms_principal_new();
    REQUIRE(app1_groups != NULL);
    CHECK_OK(p11kms_principal_add(app1_groups, "unix:user:app1", &e), &e);
    CHECK_OK(p11kms_principal_add(app1_groups, "unix:group:apps", &e), &e);
    fx_say("a subject made of some of the caller's names is the caller itself");
    CHECK_OK(explain_as(app1_groups, app1, "encrypt", "alias/app-one", tenant, &allowed, why,
                        sizeof(why)),
             &e);
    CHECK(allowed);

    fx_say("policy explain about another principal without explain-policy: AccessDenied, and "
           "the same message whatever the subject's decision or the key");
    const char *app1_refused = "unix:user:app1 is not allowed to explain-policy";
    check_explain_refused(app1, app2, "encrypt", "alias/app-one", tenant, app1_refused);
    check_explain_refused(app1, app2, "encrypt", "alias/app-one", NULL, app1_refused);
    check_explain_refused(app1, admin, "disable-key", one, NULL, app1_refused);
    check_explain_refused(app1, admin, "disable-key", "alias/no-such-key", NULL, app1_refused);
    check_explain_refused(app1, admin, "no-such-action", NULL, NULL, app1_refused);
    fx_say("a subject with one name the caller lacks is another principal");
    check_explain_refused(app1, app1_groups, "encrypt", "alias/app-one", tenant, app1_refused);
    check_explain_refused(nobody, admin, "create-key", NULL, NULL,
                          "unix:user:nobody is not allowed to explain-policy");
    CHECK_ERR(
        explain_as(NULL, app1, "encrypt", "alias/app-one", tenant, &allowed, why, sizeof(why)),
        P11KMS_E_ACCESS_DENIED, &e);
    p11kms_principal_free(app1_groups);

    fx_say("maintain is an administrator's action: services and strangers are refused");
    CHECK_OK(p11kms_maintain(svc, admin, NULL, NULL, &e), &e);
    CHECK_ERR(p11kms_maintain(svc, app1, NULL, NULL, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(fx_msg_has(&e, "maintain"));
    CHECK_ERR(p11kms_maintain(svc, nobody, NULL, NULL, &e), P11KMS_E_ACCESS_DENIED, &e);

    p11kms_result_free(&ct);
    p11kms_result_free(&ct_two);
    p11kms_context_free(tenant);
    p11kms_context_free(no_tenant);
    p11kms_principal_free(admin);
    p11kms_principal_free(app1);
    p11kms_principal_free(app2);
    p11kms_principal_free(nobody);
    p11kms_close(svc);
    free(cfg);
    free(policy);
    return check_finish("provider-policy-test");
}
