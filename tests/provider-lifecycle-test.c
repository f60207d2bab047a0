#include "config.h"

/* Key lifecycle through the public API: creation, references, every state transition and
 * refusal of doc/design.md §5 with its exact error class, aliases, tags, descriptions, rotation,
 * and deletion once its waiting period is over (the date is moved into the past through the
 * internal key store, since a test cannot wait seven days). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "pkcs11/token.h"
#include "provider/keymeta.h"
#include "provider/keystore.h"
#include "provider/service.h"

#define DAY INT64_C(86400)

static p11kms *svc;
static p11kms_principal *who;
static p11kms_error e;

static const uint8_t secret[] = "lifecycle test plaintext";

static p11kms_key_metadata describe(const char *ref)
{
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, who, ref, &md, &e), &e);
    return md;
}

static p11kms_key_state state_of(const char *ref)
{
    p11kms_key_metadata md = describe(ref);
    return md.state;
}

/* Encrypts the test plaintext under ref; the caller frees r. */
static p11kms_err encrypt(const char *ref, p11kms_result *r)
{
    return p11kms_encrypt(svc, who, ref, NULL, secret, sizeof(secret), r, &e);
}

static p11kms_err encrypt_discard(const char *ref)
{
    p11kms_result r;
    p11kms_err rc = encrypt(ref, &r);
    p11kms_result_free(&r);
    return rc;
}

static p11kms_err decrypt_check(const char *ref, const p11kms_result *ct)
{
    p11kms_result r;
    p11kms_err rc = p11kms_decrypt(svc, who, ref, NULL, ct->ciphertext, ct->ciphertext_len, &r, &e);
    if (rc == P11KMS_OK)
        CHECK(fx_same(r.plaintext, r.plaintext_len, secret, sizeof(secret)));
    else
        CHECK(r.plaintext == NULL);
    p11kms_result_free(&r);
    return rc;
}

static p11kms_err gdk_discard(const char *ref, bool want_plaintext)
{
    p11kms_result r;
    p11kms_err rc =
        p11kms_generate_data_key(svc, who, ref, NULL, "AES_256", 0, want_plaintext, &r, &e);
    p11kms_result_free(&r);
    return rc;
}

static p11kms_err re_encrypt_discard(const p11kms_result *ct, const char *dest)
{
    p11kms_result r;
    p11kms_err rc = p11kms_re_encrypt(svc, who, NULL, NULL, ct->ciphertext, ct->ciphertext_len,
                                      dest, NULL, &r, &e);
    p11kms_result_free(&r);
    return rc;
}

static p11kms_err tag1(const char *ref, const char *k, const char *v)
{
    p11kms_tag t = {k, v};
    return p11kms_tag_resource(svc, who, ref, &t, 1, &e);
}

static int collect_tag(const p11kms_tag *tag, void *arg)
{
    char both[512];
    snprintf(both, sizeof(both), "%s=%s", tag->key, tag->value);
    fx_list_add(arg, both);
    return 0;
}

static void list_tags(const char *ref, fx_list *out)
{
    CHECK_OK(p11kms_list_resource_tags(svc, who, ref, collect_tag, out, &e), &e);
}

static int collect_rotation(const p11kms_rotation *r, void *arg)
{
    char line[64];
    snprintf(line, sizeof(line), "%u:%s", r->version, r->rotation_type);
    fx_list_add(arg, line);
    return 0;
}

static void list_rotations(const char *ref, fx_list *out)
{
    CHECK_OK(p11kms_list_key_rotations(svc, who, ref, collect_rotation, out, &e), &e);
}

static void aliases_of(const char *ref, fx_list *out)
{
    CHECK_OK(p11kms_list_aliases(svc, who, ref, fx_collect_alias, out, &e), &e);
}

static void all_aliases(fx_list *out)
{
    CHECK_OK(p11kms_list_aliases(svc, who, NULL, fx_collect_alias_target, out, &e), &e);
}

static bool near(int64_t got, int64_t lo, int64_t hi)
{
    return got >= lo && got <= hi;
}

/* --- creation ------------------------------------------------------------------------------ */

static void test_create(char plain[P11KMS_KEY_ID_LEN + 1])
{
    fx_say("create-key with defaults: Enabled, AWS_KMS, version 1, ARN of this service");
    p11kms_key_metadata md = {0};
    int64_t before = time(NULL);
    CHECK_OK(p11kms_create_key(svc, who, NULL, &md, &e), &e);
    int64_t after = time(NULL);
    memcpy(plain, md.key_id, P11KMS_KEY_ID_LEN + 1);
    char arn[P11KMS_ARN_MAX];
    fx_key_arn(md.key_id, arn);
    uint8_t raw[KEY_UUID_LEN];
    CHECK(strlen(md.key_id) == P11KMS_KEY_ID_LEN && uuid_parse(md.key_id, raw));
    CHECK(strcmp(md.arn, arn) == 0);
    CHECK(md.state == P11KMS_KEY_ENABLED);
    CHECK(strcmp(p11kms_key_state_name(md.state), "Enabled") == 0);
    CHECK(md.origin == P11KMS_ORIGIN_TOKEN);
    CHECK(strcmp(p11kms_key_origin_name(md.origin), "AWS_KMS") == 0);
    CHECK(md.description[0] == '\0');
    CHECK(near(md.creation_date, before, after));
    CHECK(md.deletion_date == 0 && md.pending_window_days == 0);
    CHECK(!md.rotation_enabled && md.next_rotation_date == 0);
    CHECK(md.current_version == 1 && md.version_count == 1);
    CHECK_OK(encrypt_discard(plain), &e);

    fx_say("create-key with description and tags");
    p11kms_tag tags[] = {{"team", "storage"}, {"env", "test"}};
    p11kms_create_key_input in = {.description = "lifecycle key", .tags = tags, .tag_count = 2};
    CHECK_OK(p11kms_create_key(svc, who, &in, &md, &e), &e);
    CHECK(strcmp(md.description, "lifecycle key") == 0);
    CHECK(strcmp(describe(md.key_id).description, "lifecycle key") == 0);
    fx_list tl = {0};
    list_tags(md.key_id, &tl);
    CHECK(tl.count == 2 && fx_list_has(&tl, "team=storage") && fx_list_has(&tl, "env=test"));
    fx_list_free(&tl);

    fx_say("create-key SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT / AWS_KMS spelled out is accepted");
    in = (p11kms_create_key_input){
        .key_spec = "SYMMETRIC_DEFAULT", .key_usage = "ENCRYPT_DECRYPT", .origin = "AWS_KMS"};
    CHECK_OK(p11kms_create_key(svc, who, &in, &md, &e), &e);
    CHECK(md.state == P11KMS_KEY_ENABLED);

    fx_say("create-key refusals: RSA_2048 and SIGN_VERIFY unsupported, bad tags, long text");
    fx_list before_keys = {0}, after_keys = {0};
    fx_list_keys(svc, who, &before_keys);
    in = (p11kms_create_key_input){.key_spec = "RSA_2048"};
    CHECK_ERR(p11kms_create_key(svc, who, &in, &md, &e), P11KMS_E_UNSUPPORTED, &e);
    in = (p11kms_create_key_input){.key_usage = "SIGN_VERIFY"};
    CHECK_ERR(p11kms_create_key(svc, who, &in, &md, &e), P11KMS_E_UNSUPPORTED, &e);
    in = (p11kms_create_key_input){.origin = "AWS_CLOUDHSM"};
    CHECK_ERR(p11kms_create_key(svc, who, &in, &md, &e), P11KMS_E_UNSUPPORTED, &e);
    p11kms_tag aws_tag = {"aws:owner", "x"};
    in = (p11kms_create_key_input){.tags = &aws_tag, .tag_count = 1};
    CHECK_ERR(p11kms_create_key(svc, who, &in, &md, &e), P11KMS_E_TAG, &e);
    char *long_text = malloc(P11KMS_DESCRIPTION_MAX + 2);
    REQUIRE(long_text != NULL);
    memset(long_text, 'd', P11KMS_DESCRIPTION_MAX + 1);
    long_text[P11KMS_DESCRIPTION_MAX + 1] = '\0';
    in = (p11kms_create_key_input){.description = long_text};
    CHECK_ERR(p11kms_create_key(svc, who, &in, &md, &e), P11KMS_E_VALIDATION, &e);
    free(long_text);
    fx_list_keys(svc, who, &after_keys);
    CHECK(after_keys.count == before_keys.count); /* no refused create left a key behind */
    fx_list_free(&before_keys);
    fx_list_free(&after_keys);
}

static void test_external(void)
{
    fx_say("origin EXTERNAL: PendingImport, no crypto (KMSInvalidState), no rotation");
    p11kms_create_key_input in = {.origin = "EXTERNAL", .description = "imported"};
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_create_key(svc, who, &in, &md, &e), &e);
    char id[P11KMS_KEY_ID_LEN + 1];
    memcpy(id, md.key_id, sizeof(id));
    CHECK(md.state == P11KMS_KEY_PENDING_IMPORT);
    CHECK(strcmp(p11kms_key_state_name(md.state), "PendingImport") == 0);
    CHECK(md.origin == P11KMS_ORIGIN_EXTERNAL);
    CHECK(strcmp(p11kms_key_origin_name(md.origin), "EXTERNAL") == 0);
    CHECK(md.version_count == 0);
    CHECK_ERR(encrypt_discard(id), P11KMS_E_INVALID_STATE, &e);
    CHECK(fx_msg_has(&e, id) && fx_msg_has(&e, "PendingImport"));
    CHECK_ERR(gdk_discard(id, true), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(gdk_discard(id, false), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), P11KMS_E_UNSUPPORTED, &e);
    CHECK_ERR(p11kms_enable_key_rotation(svc, who, id, 0, &e), P11KMS_E_UNSUPPORTED, &e);
    CHECK_ERR(p11kms_disable_key_rotation(svc, who, id, &e), P11KMS_E_UNSUPPORTED, &e);
    CHECK_ERR(p11kms_enable_key(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_disable_key(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_cancel_key_deletion(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);

    fx_say("PendingImport: alias, tag and description changes are allowed");
    CHECK_OK(p11kms_create_alias(svc, who, "alias/imported", id, &e), &e);
    CHECK_OK(tag1(id, "kind", "imported"), &e);
    CHECK_OK(p11kms_update_key_description(svc, who, id, "still waiting", &e), &e);
    CHECK(strcmp(describe("alias/imported").key_id, id) == 0);

    fx_say("PendingImport: schedule-key-deletion allowed, cancel returns it to PendingImport");
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, id, 7, &md, &e), &e);
    CHECK(md.state == P11KMS_KEY_PENDING_DELETION);
    CHECK_OK(p11kms_cancel_key_deletion(svc, who, id, &e), &e);
    CHECK(state_of(id) == P11KMS_KEY_PENDING_IMPORT);
}

/* --- references ---------------------------------------------------------------------------- */

static void test_references(const char *id, const char *other)
{
    fx_say("describe by key id, alias, key ARN and alias ARN");
    CHECK_OK(p11kms_create_alias(svc, who, "alias/ref-test", id, &e), &e);
    char key_arn[P11KMS_ARN_MAX], alias_arn[P11KMS_ARN_MAX];
    fx_key_arn(id, key_arn);
    fx_alias_arn("alias/ref-test", alias_arn);
    const char *refs[] = {id, "alias/ref-test", key_arn, alias_arn};
    for (size_t i = 0; i < 4; i++) {
        p11kms_key_metadata md = describe(refs[i]);
        CHECK(strcmp(md.key_id, id) == 0);
        CHECK(strcmp(md.arn, key_arn) == 0);
        p11kms_result r;
        CHECK_OK(encrypt(refs[i], &r), &e);
        CHECK(strcmp(r.key_id, key_arn) == 0);
        p11kms_result_free(&r);
    }

    fx_say("references that name nothing or belong elsewhere");
    p11kms_key_metadata md = {0};
    char ref[P11KMS_ARN_MAX + 64];
    /* Well-formed KMS ARNs of another partition, region or account name no key here. */
    const char *elsewhere[] = {"arn:aws:kms:eu-west-1:000000000000:key/",
                               "arn:aws:kms:local:111111111111:key/",
                               "arn:aws-cn:kms:local:000000000000:key/"};
    for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++) {
        snprintf(ref, sizeof(ref), "%s%s", elsewhere[i], id);
        CHECK_ERR(p11kms_describe_key(svc, who, ref, &md, &e), P11KMS_E_NOT_FOUND, &e);
        CHECK(fx_msg_has(&e, "another partition, region or account") &&
              fx_msg_has(&e, "arn:aws:kms:local:000000000000:"));
    }
    snprintf(ref, sizeof(ref), "arn:aws:kms:eu-west-1:000000000000:alias/ref-test");
    CHECK_ERR(p11kms_describe_key(svc, who, ref, &md, &e), P11KMS_E_NOT_FOUND, &e);
    /* Not KMS ARNs, or malformed ones, including the form p11kms once wrote. */
    snprintf(ref, sizeof(ref), "arn:aws:s3:local:000000000000:key/%s", id);
    CHECK_ERR(p11kms_describe_key(svc, who, ref, &md, &e), P11KMS_E_INVALID_ARN, &e);
    CHECK(fx_msg_has(&e, "not a KMS ARN"));
    snprintf(ref, sizeof(ref), "arn:p11kms:local:000000000000:key/%s", id);
    CHECK_ERR(p11kms_describe_key(svc, who, ref, &md, &e), P11KMS_E_INVALID_ARN, &e);
    CHECK(fx_msg_has(&e, "malformed") && fx_msg_has(&e, "arn:aws:kms:local:000000000000:key/ID"));
    CHECK_ERR(p11kms_describe_key(svc, who, "arn:aws:kms:local:000000000000:bucket/x", &md, &e),
              P11KMS_E_INVALID_ARN, &e);
    CHECK_ERR(
        p11kms_describe_key(svc, who, "arn:aws:kms:local:000000000000:key/not-a-uuid", &md, &e),
        P11KMS_E_INVALID_ARN, &e);
    CHECK_ERR(p11kms_describe_key(svc, who, "4f2c8a5e-1b3d-4c6e-8f90-123456789abc", &md, &e),
              P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_describe_key(svc, who, "alias/no-such-alias", &md, &e), P11KMS_E_NOT_FOUND,
              &e);
    CHECK_ERR(
        p11kms_describe_key(svc, who, "arn:aws:kms:local:000000000000:alias/no-such", &md, &e),
        P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_describe_key(svc, who, "not-a-key", &md, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_describe_key(svc, who, "alias/bad name!", &md, &e), P11KMS_E_NOT_FOUND, &e);
    bool readable =
        fx_msg_has(&e, "alias/bad name!\" does not exist") && fx_msg_has(&e, "only letters");
    CHECK(readable);
    if (!readable)
        fprintf(stderr, "   message: %s\n", e.message);
    CHECK_ERR(p11kms_describe_key(svc, who, "", &md, &e), P11KMS_E_VALIDATION, &e);

    fx_say("list-keys lists every key created");
    fx_list keys = {0};
    fx_list_keys(svc, who, &keys);
    CHECK(fx_list_has(&keys, id));
    CHECK(fx_list_has(&keys, other));
    CHECK(!fx_list_has(&keys, "4f2c8a5e-1b3d-4c6e-8f90-123456789abc"));
    fx_list_free(&keys);
    CHECK_OK(p11kms_delete_alias(svc, who, "alias/ref-test", &e), &e);
}

/* --- state transitions --------------------------------------------------------------------- */

static void test_disable_enable(const char *id, const char *other)
{
    p11kms_result ct, other_ct;
    REQUIRE(encrypt(id, &ct) == P11KMS_OK);
    REQUIRE(encrypt(other, &other_ct) == P11KMS_OK);

    fx_say("disable-key: every cryptographic operation is DisabledException naming key and state");
    CHECK_OK(p11kms_disable_key(svc, who, id, &e), &e);
    CHECK(state_of(id) == P11KMS_KEY_DISABLED);
    CHECK_ERR(encrypt_discard(id), P11KMS_E_DISABLED, &e);
    CHECK(fx_msg_has(&e, id) && fx_msg_has(&e, "Disabled"));
    CHECK_ERR(decrypt_check(id, &ct), P11KMS_E_DISABLED, &e);
    CHECK(fx_msg_has(&e, id) && fx_msg_has(&e, "Disabled"));
    CHECK_ERR(decrypt_check(NULL, &ct), P11KMS_E_DISABLED, &e);
    CHECK_ERR(gdk_discard(id, true), P11KMS_E_DISABLED, &e);
    CHECK(fx_msg_has(&e, id) && fx_msg_has(&e, "Disabled"));
    CHECK_ERR(gdk_discard(id, false), P11KMS_E_DISABLED, &e);
    CHECK_ERR(re_encrypt_discard(&ct, other), P11KMS_E_DISABLED, &e);
    CHECK_ERR(re_encrypt_discard(&other_ct, id), P11KMS_E_DISABLED, &e);

    fx_say("Disabled: disable again is fine, rotation refused (KMSInvalidState)");
    CHECK_OK(p11kms_disable_key(svc, who, id, &e), &e);
    CHECK_ERR(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_enable_key_rotation(svc, who, id, 0, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_disable_key_rotation(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_cancel_key_deletion(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);

    fx_say("Disabled: alias, tag, description changes and reads are allowed");
    CHECK_OK(p11kms_create_alias(svc, who, "alias/while-disabled", id, &e), &e);
    CHECK_OK(tag1(id, "state", "off"), &e);
    CHECK_OK(p11kms_update_key_description(svc, who, id, "disabled for a while", &e), &e);
    fx_list l = {0};
    list_tags(id, &l);
    CHECK(fx_list_has(&l, "state=off"));
    fx_list_free(&l);
    list_rotations(id, &l);
    CHECK(l.count == 1);
    fx_list_free(&l);

    fx_say("enable-key: the key works again, old ciphertext decrypts");
    CHECK_OK(p11kms_enable_key(svc, who, id, &e), &e);
    CHECK(state_of(id) == P11KMS_KEY_ENABLED);
    CHECK_OK(p11kms_enable_key(svc, who, id, &e), &e);
    CHECK_OK(encrypt_discard(id), &e);
    CHECK_OK(decrypt_check(id, &ct), &e);
    CHECK_OK(re_encrypt_discard(&other_ct, id), &e);
    CHECK_OK(p11kms_delete_alias(svc, who, "alias/while-disabled", &e), &e);
    p11kms_result_free(&ct);
    p11kms_result_free(&other_ct);
}

static void test_deletion_window(const char *id)
{
    p11kms_result ct;
    REQUIRE(encrypt(id, &ct) == P11KMS_OK);
    p11kms_key_metadata md = {0};

    fx_say("schedule-key-deletion: 6 and 31 days are ValidationException, key unchanged");
    CHECK_ERR(p11kms_schedule_key_deletion(svc, who, id, 6, &md, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_schedule_key_deletion(svc, who, id, 31, &md, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_schedule_key_deletion(svc, who, id, 1000, &md, &e), P11KMS_E_VALIDATION, &e);
    CHECK(state_of(id) == P11KMS_KEY_ENABLED);

    fx_say("schedule-key-deletion 7: PendingDeletion, deletion date now + 7 days");
    int64_t before = time(NULL);
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, id, 7, &md, &e), &e);
    int64_t after = time(NULL);
    CHECK(md.state == P11KMS_KEY_PENDING_DELETION);
    CHECK(near(md.deletion_date, before + 7 * DAY, after + 7 * DAY));
    CHECK(md.pending_window_days == 7);
    md = describe(id);
    CHECK(md.state == P11KMS_KEY_PENDING_DELETION);
    CHECK(strcmp(p11kms_key_state_name(md.state), "PendingDeletion") == 0);
    CHECK(near(md.deletion_date, before + 7 * DAY, after + 7 * DAY));

    fx_say("PendingDeletion: crypto is KMSInvalidState, so are enable/disable/reschedule");
    CHECK_ERR(encrypt_discard(id), P11KMS_E_INVALID_STATE, &e);
    CHECK(fx_msg_has(&e, id) && fx_msg_has(&e, "PendingDeletion"));
    CHECK_ERR(decrypt_check(id, &ct), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(gdk_discard(id, true), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(gdk_discard(id, false), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_enable_key(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_disable_key(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_schedule_key_deletion(svc, who, id, 10, &md, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_enable_key_rotation(svc, who, id, 0, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_create_alias(svc, who, "alias/too-late", id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(tag1(id, "too", "late"), P11KMS_E_INVALID_STATE, &e);
    CHECK_ERR(p11kms_update_key_description(svc, who, id, "too late", &e), P11KMS_E_INVALID_STATE,
              &e);
    fx_list l = {0};
    list_tags(id, &l);
    CHECK(!fx_list_has(&l, "too=late"));
    fx_list_free(&l);
    list_rotations(id, &l);
    CHECK(l.count >= 1);
    fx_list_free(&l);
    aliases_of(id, &l);
    CHECK(!fx_list_has(&l, "alias/too-late"));
    fx_list_free(&l);

    fx_say("cancel-key-deletion: the key becomes Disabled, not Enabled");
    CHECK_OK(p11kms_cancel_key_deletion(svc, who, id, &e), &e);
    md = describe(id);
    CHECK(md.state == P11KMS_KEY_DISABLED);
    CHECK(md.deletion_date == 0);
    CHECK_ERR(encrypt_discard(id), P11KMS_E_DISABLED, &e);
    CHECK_ERR(p11kms_cancel_key_deletion(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK_OK(p11kms_enable_key(svc, who, id, &e), &e);
    CHECK_OK(decrypt_check(id, &ct), &e);

    fx_say("cancel-key-deletion on an Enabled key is KMSInvalidState");
    CHECK_ERR(p11kms_cancel_key_deletion(svc, who, id, &e), P11KMS_E_INVALID_STATE, &e);

    fx_say("schedule-key-deletion with the default window: 30 days; from Disabled too");
    before = time(NULL);
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, id, 0, &md, &e), &e);
    after = time(NULL);
    CHECK(md.pending_window_days == 30);
    CHECK(near(md.deletion_date, before + 30 * DAY, after + 30 * DAY));
    CHECK_OK(p11kms_cancel_key_deletion(svc, who, id, &e), &e);
    CHECK(state_of(id) == P11KMS_KEY_DISABLED);
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, id, 30, &md, &e), &e);
    CHECK(md.state == P11KMS_KEY_PENDING_DELETION);
    CHECK_OK(p11kms_cancel_key_deletion(svc, who, id, &e), &e);
    CHECK_OK(p11kms_enable_key(svc, who, id, &e), &e);
    CHECK_OK(decrypt_check(id, &ct), &e);
    p11kms_result_free(&ct);

    fx_say("state changes of a key that does not exist are NotFoundException");
    const char *ghost = "4f2c8a5e-1b3d-4c6e-8f90-123456789abc";
    CHECK_ERR(p11kms_disable_key(svc, who, ghost, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_enable_key(svc, who, ghost, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_schedule_key_deletion(svc, who, ghost, 7, &md, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_cancel_key_deletion(svc, who, ghost, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(encrypt_discard(ghost), P11KMS_E_NOT_FOUND, &e);
}

/* --- aliases -------------------------------------------------------------------------------- */

static void test_aliases(const char *k1, const char *k2, const char *k3)
{
    fx_say("create-alias; a second create of the same name is AlreadyExistsException");
    CHECK_OK(p11kms_create_alias(svc, who, "alias/life-a", k1, &e), &e);
    CHECK(strcmp(describe("alias/life-a").key_id, k1) == 0);
    CHECK_ERR(p11kms_create_alias(svc, who, "alias/life-a", k2, &e), P11KMS_E_ALREADY_EXISTS, &e);
    CHECK_ERR(p11kms_create_alias(svc, who, "alias/life-a", k1, &e), P11KMS_E_ALREADY_EXISTS, &e);
    CHECK(strcmp(describe("alias/life-a").key_id, k1) == 0);
    fx_list l = {0};
    aliases_of(k1, &l);
    CHECK(l.count == 1 && fx_list_has(&l, "alias/life-a"));
    fx_list_free(&l);
    aliases_of(k2, &l);
    CHECK(!fx_list_has(&l, "alias/life-a"));
    fx_list_free(&l);

    fx_say("invalid alias names are InvalidAliasNameException");
    const char *bad[] = {"life-b",     "alias/aws/x",       "alias/bad name",
                         "alias/bad!", "alias/caf\xc3\xa9", "",
                         "alias/",     "Alias/upper",       "alias/a.b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_ERR(p11kms_create_alias(svc, who, bad[i], k1, &e), P11KMS_E_INVALID_ALIAS, &e);
        if (e.code != P11KMS_E_INVALID_ALIAS)
            fprintf(stderr, "   (alias name \"%s\")\n", bad[i]);
    }
    fx_say("alias names: 256 characters in all (AWS limit) work and resolve, 257 do not");
    char longest[300];
    memset(longest, 'x', sizeof(longest));
    memcpy(longest, "alias/", 6);
    longest[257] = '\0';
    CHECK_ERR(p11kms_create_alias(svc, who, longest, k1, &e), P11KMS_E_INVALID_ALIAS, &e);
    longest[256] = '\0';
    CHECK_OK(p11kms_create_alias(svc, who, longest, k1, &e), &e);
    p11kms_key_metadata lmd = {0};
    CHECK_OK(p11kms_describe_key(svc, who, longest, &lmd, &e), &e);
    CHECK(strcmp(lmd.key_id, k1) == 0);
    CHECK_OK(p11kms_delete_alias(svc, who, longest, &e), &e);
    CHECK_ERR(p11kms_create_alias(svc, who, "alias/to-nothing",
                                  "4f2c8a5e-1b3d-4c6e-8f90-123456789abc", &e),
              P11KMS_E_NOT_FOUND, &e);

    fx_say("50 aliases per key; the 51st is LimitExceededException");
    char name[64];
    int made = 0;
    for (int i = 0; i < P11KMS_MAX_ALIASES_PER_KEY; i++) {
        snprintf(name, sizeof(name), "alias/lim-%02d", i);
        if (p11kms_create_alias(svc, who, name, k3, &e) == P11KMS_OK)
            made++;
        else
            fprintf(stderr, "   create-alias %s failed: %s\n", name, e.message);
    }
    CHECK(made == P11KMS_MAX_ALIASES_PER_KEY);
    CHECK_ERR(p11kms_create_alias(svc, who, "alias/lim-50", k3, &e), P11KMS_E_LIMIT_EXCEEDED, &e);
    CHECK_ERR(p11kms_describe_key(svc, who, "alias/lim-50", &(p11kms_key_metadata){0}, &e),
              P11KMS_E_NOT_FOUND, &e);
    aliases_of(k3, &l);
    CHECK(l.count == P11KMS_MAX_ALIASES_PER_KEY);
    CHECK(fx_list_has(&l, "alias/lim-00") && fx_list_has(&l, "alias/lim-49"));
    CHECK(!fx_list_has(&l, "alias/lim-50"));
    fx_list_free(&l);
    fx_say("update-alias onto a key that already has 50 aliases is LimitExceededException");
    CHECK_ERR(p11kms_update_alias(svc, who, "alias/life-a", k3, &e), P11KMS_E_LIMIT_EXCEEDED, &e);
    CHECK(strcmp(describe("alias/life-a").key_id, k1) == 0);

    fx_say("update-alias moves the alias; the old key no longer lists it");
    CHECK_OK(p11kms_update_alias(svc, who, "alias/life-a", k2, &e), &e);
    CHECK(strcmp(describe("alias/life-a").key_id, k2) == 0);
    aliases_of(k1, &l);
    CHECK(!fx_list_has(&l, "alias/life-a"));
    fx_list_free(&l);
    aliases_of(k2, &l);
    CHECK(fx_list_has(&l, "alias/life-a"));
    fx_list_free(&l);
    char want[P11KMS_ALIAS_MAX + P11KMS_KEY_ID_LEN + 2];
    all_aliases(&l);
    snprintf(want, sizeof(want), "alias/life-a=%s", k2);
    CHECK(fx_list_has(&l, want));
    snprintf(want, sizeof(want), "alias/life-a=%s", k1);
    CHECK(!fx_list_has(&l, want));
    snprintf(want, sizeof(want), "alias/lim-07=%s", k3);
    CHECK(fx_list_has(&l, want));
    fx_list_free(&l);
    CHECK_ERR(p11kms_update_alias(svc, who, "alias/never-made", k1, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(
        p11kms_update_alias(svc, who, "alias/life-a", "4f2c8a5e-1b3d-4c6e-8f90-123456789abc", &e),
        P11KMS_E_NOT_FOUND, &e);
    CHECK(strcmp(describe("alias/life-a").key_id, k2) == 0);
    CHECK_ERR(p11kms_update_alias(svc, who, "alias/aws/life-a", k1, &e), P11KMS_E_INVALID_ALIAS,
              &e);

    fx_say("delete-alias; deleting it again is NotFoundException");
    CHECK_OK(p11kms_delete_alias(svc, who, "alias/life-a", &e), &e);
    CHECK_ERR(p11kms_describe_key(svc, who, "alias/life-a", &(p11kms_key_metadata){0}, &e),
              P11KMS_E_NOT_FOUND, &e);
    aliases_of(k2, &l);
    CHECK(!fx_list_has(&l, "alias/life-a"));
    fx_list_free(&l);
    all_aliases(&l);
    CHECK(fx_list_find_sub(&l, "alias/life-a=") < 0);
    fx_list_free(&l);
    CHECK_ERR(p11kms_delete_alias(svc, who, "alias/life-a", &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_delete_alias(svc, who, "life-a", &e), P11KMS_E_INVALID_ALIAS, &e);
    fx_say("the alias name is free again after delete-alias");
    CHECK_OK(p11kms_create_alias(svc, who, "alias/life-a", k1, &e), &e);
    CHECK(strcmp(describe("alias/life-a").key_id, k1) == 0);
    CHECK_OK(p11kms_delete_alias(svc, who, "alias/life-a", &e), &e);

    for (int i = 0; i < P11KMS_MAX_ALIASES_PER_KEY; i++) {
        snprintf(name, sizeof(name), "alias/lim-%02d", i);
        CHECK_OK(p11kms_delete_alias(svc, who, name, &e), &e);
    }
    aliases_of(k3, &l);
    CHECK(l.count == 0);
    fx_list_free(&l);
}

/* --- tags and description ------------------------------------------------------------------ */

static void test_tags(const char *id)
{
    fx_say("tag-resource / untag-resource / list-resource-tags");
    p11kms_tag two[] = {{"owner", "alice"}, {"cost", "17"}};
    CHECK_OK(p11kms_tag_resource(svc, who, id, two, 2, &e), &e);
    fx_list l = {0};
    list_tags(id, &l);
    CHECK(fx_list_has(&l, "owner=alice") && fx_list_has(&l, "cost=17"));
    fx_list_free(&l);
    CHECK_OK(tag1(id, "owner", "bob"), &e);
    list_tags(id, &l);
    CHECK(fx_list_has(&l, "owner=bob") && !fx_list_has(&l, "owner=alice"));
    fx_list_free(&l);
    const char *drop[] = {"owner"};
    CHECK_OK(p11kms_untag_resource(svc, who, id, drop, 1, &e), &e);
    list_tags(id, &l);
    CHECK(fx_list_find_sub(&l, "owner=") < 0 && fx_list_has(&l, "cost=17"));
    fx_list_free(&l);

    fx_say("tag refusals: aws: prefix and empty key are TagException, none is Validation");
    CHECK_ERR(tag1(id, "aws:reserved", "x"), P11KMS_E_TAG, &e);
    CHECK_ERR(tag1(id, "", "x"), P11KMS_E_TAG, &e);
    CHECK_ERR(p11kms_tag_resource(svc, who, id, two, 0, &e), P11KMS_E_VALIDATION, &e);
    const char *empty[] = {""};
    CHECK_ERR(p11kms_untag_resource(svc, who, id, empty, 1, &e), P11KMS_E_TAG, &e);
    list_tags(id, &l);
    CHECK(fx_list_find_sub(&l, "aws:") < 0);
    fx_list_free(&l);

    fx_say("50 tags per key: 51 in one call and the 51st added later are LimitExceeded");
    p11kms_tag many[P11KMS_MAX_TAGS_PER_KEY + 1];
    char keys[P11KMS_MAX_TAGS_PER_KEY + 1][16];
    for (int i = 0; i <= P11KMS_MAX_TAGS_PER_KEY; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%02d", i);
        many[i] = (p11kms_tag){keys[i], "v"};
    }
    CHECK_ERR(p11kms_tag_resource(svc, who, id, many, P11KMS_MAX_TAGS_PER_KEY + 1, &e),
              P11KMS_E_LIMIT_EXCEEDED, &e);
    /* "cost" is already there: 49 more make 50. */
    CHECK_OK(p11kms_tag_resource(svc, who, id, many, P11KMS_MAX_TAGS_PER_KEY - 1, &e), &e);
    list_tags(id, &l);
    CHECK(l.count == P11KMS_MAX_TAGS_PER_KEY);
    fx_list_free(&l);
    CHECK_ERR(tag1(id, "one-more", "x"), P11KMS_E_LIMIT_EXCEEDED, &e);
    CHECK_OK(tag1(id, "cost", "18"), &e); /* changing a value adds no tag */
    list_tags(id, &l);
    CHECK(l.count == P11KMS_MAX_TAGS_PER_KEY && fx_list_has(&l, "cost=18") &&
          !fx_list_has(&l, "one-more=x"));
    fx_list_free(&l);
}

static void test_description(const char *id)
{
    fx_say("update-key-description; more than 8192 characters is ValidationException");
    CHECK_OK(p11kms_update_key_description(svc, who, id, "first", &e), &e);
    CHECK(strcmp(describe(id).description, "first") == 0);
    char *text = malloc(P11KMS_DESCRIPTION_MAX + 2);
    REQUIRE(text != NULL);
    memset(text, 'x', P11KMS_DESCRIPTION_MAX);
    text[P11KMS_DESCRIPTION_MAX] = '\0';
    CHECK_OK(p11kms_update_key_description(svc, who, id, text, &e), &e);
    CHECK(strcmp(describe(id).description, text) == 0);
    text[P11KMS_DESCRIPTION_MAX] = 'x';
    text[P11KMS_DESCRIPTION_MAX + 1] = '\0';
    CHECK_ERR(p11kms_update_key_description(svc, who, id, text, &e), P11KMS_E_VALIDATION, &e);
    text[P11KMS_DESCRIPTION_MAX] = '\0';
    CHECK(strcmp(describe(id).description, text) == 0);
    free(text);
    CHECK_OK(p11kms_update_key_description(svc, who, id, "", &e), &e);
    CHECK(describe(id).description[0] == '\0');
}

/* --- rotation ------------------------------------------------------------------------------ */

static void test_rotation(const char *id, const char *disabled)
{
    p11kms_result old;
    REQUIRE(encrypt(id, &old) == P11KMS_OK);
    CHECK(old.key_version == 1);

    fx_say("rotate-key-on-demand on an Enabled key: version 2, INITIAL + ON_DEMAND");
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, id, &md, &e), &e);
    CHECK(md.current_version == 2 && md.version_count == 2);
    md = describe(id);
    CHECK(md.current_version == 2 && md.version_count == 2);
    fx_list l = {0};
    list_rotations(id, &l);
    CHECK(l.count == 2 && strcmp(l.items[0], "1:INITIAL") == 0 &&
          strcmp(l.items[1], "2:ON_DEMAND") == 0);
    fx_list_free(&l);
    p11kms_result now;
    CHECK_OK(encrypt(id, &now), &e);
    CHECK(now.key_version == 2);
    CHECK_OK(decrypt_check(id, &old), &e);
    CHECK_OK(decrypt_check(id, &now), &e);
    p11kms_result_free(&now);
    p11kms_result_free(&old);

    fx_say("rotate-key-on-demand on a Disabled key is KMSInvalidState");
    CHECK_OK(p11kms_disable_key(svc, who, disabled, &e), &e);
    CHECK_ERR(p11kms_rotate_key_on_demand(svc, who, disabled, &md, &e), P11KMS_E_INVALID_STATE, &e);
    CHECK(describe(disabled).version_count == 1);
    CHECK_OK(p11kms_enable_key(svc, who, disabled, &e), &e);

    fx_say("enable-key-rotation: 89 and 2561 days are ValidationException; 90 and 2560 work");
    CHECK_ERR(p11kms_enable_key_rotation(svc, who, id, 89, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_enable_key_rotation(svc, who, id, 2561, &e), P11KMS_E_VALIDATION, &e);
    CHECK(!describe(id).rotation_enabled);
    int64_t before = time(NULL);
    CHECK_OK(p11kms_enable_key_rotation(svc, who, id, 90, &e), &e);
    int64_t after = time(NULL);
    md = describe(id);
    CHECK(md.rotation_enabled && md.rotation_period_days == 90);
    CHECK(near(md.next_rotation_date, before + 90 * DAY, after + 90 * DAY));
    CHECK_OK(p11kms_enable_key_rotation(svc, who, id, 2560, &e), &e);
    CHECK(describe(id).rotation_period_days == 2560);

    fx_say("enable-key-rotation with the default period: 365 days, next rotation date set");
    before = time(NULL);
    CHECK_OK(p11kms_enable_key_rotation(svc, who, id, 0, &e), &e);
    after = time(NULL);
    md = describe(id);
    CHECK(md.rotation_enabled && md.rotation_period_days == 365);
    CHECK(near(md.next_rotation_date, before + 365 * DAY, after + 365 * DAY));
    CHECK(md.current_version == 2); /* enabling rotation does not rotate */

    fx_say("disable-key-rotation clears the schedule");
    CHECK_OK(p11kms_disable_key_rotation(svc, who, id, &e), &e);
    md = describe(id);
    CHECK(!md.rotation_enabled && md.next_rotation_date == 0);
    CHECK(md.current_version == 2);
}

/* --- deletion that has come due ------------------------------------------------------------ */

static void version_object_id(const char *key_id, uint32_t version, uint8_t out[KEY_UUID_LEN + 4])
{
    REQUIRE(uuid_parse(key_id, out));
    out[16] = (uint8_t)(version >> 24);
    out[17] = (uint8_t)(version >> 16);
    out[18] = (uint8_t)(version >> 8);
    out[19] = (uint8_t)version;
}

static p11kms_err find_version(const char *key_id, uint32_t version)
{
    uint8_t vid[KEY_UUID_LEN + 4];
    version_object_id(key_id, version, vid);
    p11_key *key = NULL;
    return p11_key_find(svc->token, vid, sizeof(vid), &key, &e);
}

static void test_due_deletion(void)
{
    char lazy[P11KMS_KEY_ID_LEN + 1], swept[P11KMS_KEY_ID_LEN + 1], kept[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "purged on access", lazy);
    fx_create_key(svc, who, "purged by maintain", swept);
    fx_create_key(svc, who, "scheduled but not due", kept);
    const char *both[] = {lazy, swept};
    for (int i = 0; i < 2; i++)
        CHECK_OK(p11kms_rotate_key_on_demand(svc, who, both[i], NULL, &e), &e);
    CHECK_OK(p11kms_create_alias(svc, who, "alias/due-lazy", lazy, &e), &e);
    CHECK_OK(p11kms_create_alias(svc, who, "alias/due-swept", swept, &e), &e);
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, lazy, 7, &md, &e), &e);
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, swept, 7, &md, &e), &e);
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, kept, 7, &md, &e), &e);

    fx_say("before the date: both versions of each key are objects in the token");
    for (int i = 0; i < 2; i++) {
        CHECK_OK(find_version(both[i], 1), &e);
        CHECK_OK(find_version(both[i], 2), &e);
    }

    fx_say("move the deletion dates into the past (internal key store), reopen the service");
    fx_backdate_deletion(svc, lazy);
    fx_backdate_deletion(svc, swept);
    p11kms_close(svc);
    svc = fx_open(NULL);

    fx_say("the next describe of a due key is NotFound (lazy purge), its objects are gone");
    CHECK_ERR(p11kms_describe_key(svc, who, lazy, &md, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(find_version(lazy, 1), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(find_version(lazy, 2), P11KMS_E_NOT_FOUND, &e);
    key_meta *m = NULL;
    CHECK_ERR(keystore_meta_read(svc, lazy, &m, &e), P11KMS_E_NOT_FOUND, &e);
    keymeta_free(m);
    m = NULL;
    CHECK_ERR(p11kms_describe_key(svc, who, "alias/due-lazy", &md, &e), P11KMS_E_NOT_FOUND, &e);
    fx_list l = {0};
    all_aliases(&l);
    CHECK(fx_list_find_sub(&l, "alias/due-lazy=") < 0);
    fx_list_free(&l);
    fx_list_keys(svc, who, &l);
    CHECK(!fx_list_has(&l, lazy));
    CHECK(fx_list_has(&l, swept)); /* nobody touched it yet */
    fx_list_free(&l);

    fx_say("p11kms_maintain purges the other due key and reports it");
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, swept) >= 0);
    CHECK(fx_list_find_sub(&lines, kept) < 0);
    fx_list_free(&lines);
    CHECK_ERR(find_version(swept, 1), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(find_version(swept, 2), P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(keystore_meta_read(svc, swept, &m, &e), P11KMS_E_NOT_FOUND, &e);
    keymeta_free(m);
    CHECK_ERR(p11kms_describe_key(svc, who, swept, &md, &e), P11KMS_E_NOT_FOUND, &e);
    all_aliases(&l);
    CHECK(fx_list_find_sub(&l, "alias/due-swept=") < 0);
    fx_list_free(&l);

    fx_say("a key whose date has not come stays PendingDeletion with its object");
    md = describe(kept);
    CHECK(md.state == P11KMS_KEY_PENDING_DELETION);
    CHECK_OK(find_version(kept, 1), &e);

    fx_say("a second maintain has nothing to do");
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(lines.count == 0);
    fx_list_free(&lines);
}

int main(void)
{
    svc = fx_open(NULL);
    who = fx_principal("unix:user:lifecycle-tester");
    char k1[P11KMS_KEY_ID_LEN + 1], k2[P11KMS_KEY_ID_LEN + 1], k3[P11KMS_KEY_ID_LEN + 1];
    test_create(k1);
    fx_create_key(svc, who, "second", k2);
    fx_create_key(svc, who, "third", k3);
    test_external();
    test_references(k1, k2);
    test_disable_enable(k1, k2);
    test_deletion_window(k1);
    test_aliases(k1, k2, k3);
    test_tags(k2);
    test_description(k3);
    test_rotation(k1, k2);
    test_due_deletion();
    p11kms_principal_free(who);
    p11kms_close(svc);
    return check_finish("provider-lifecycle-test");
}
