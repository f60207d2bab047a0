/* A key version object that p11kms could not destroy keeps its version claim, so that
 * p11kms maintain destroys it after the grace period (provider/keystore.c). Without the claim
 * maintain leaves such an object for ever ("no key record and no version claim"), and on a
 * rotation the version number stays blocked by it. Two ways to get there, both through the
 * fault-injecting shim (tests/pkcs11-shim.c):
 *   - a rotation whose new version the token does not find again (the fresh lookup fails) and
 *     whose destroy fails too;
 *   - a purge whose search for a version's object fails with a token error.
 * Each time the object must still be in the token, maintain (grace 0) must destroy it, and the
 * key's next rotation must work. */
#include "config.h"

#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/keymeta.h"
#include "provider/service.h"

static p11kms_error e;
static p11kms *svc;
static p11kms_principal *who;
static char *config_path;
static CK_FUNCTION_LIST *fl;
static unsigned long (*shim_count)(const char *fn);
static void (*shim_fail)(const char *fn, CK_RV rv, int times);
static void (*shim_fail_after)(const char *fn, CK_RV rv, int skip, int times);

/* The service loads the shim as its module; its control functions are found once it is open. */
static void open_service(void)
{
    svc = fx_open(config_path);
    *(void **)&shim_count = fx_shim_symbol("p11kms_shim_count");
    *(void **)&shim_fail = fx_shim_symbol("p11kms_shim_fail");
    *(void **)&shim_fail_after = fx_shim_symbol("p11kms_shim_fail_after");
    CK_RV (*get_list)(CK_FUNCTION_LIST **) = NULL;
    *(void **)&get_list = fx_shim_symbol("C_GetFunctionList");
    REQUIRE(get_list(&fl) == CKR_OK);
}

/* How many token objects carry the CKA_ID of this key version (key id bytes, then the version
 * as four bytes big-endian: provider/keystore.c). */
static CK_ULONG version_objects(const char *key_id, uint32_t version)
{
    uint8_t vid[KEY_UUID_LEN + 4];
    REQUIRE(uuid_parse(key_id, vid));
    vid[16] = (uint8_t)(version >> 24);
    vid[17] = (uint8_t)(version >> 16);
    vid[18] = (uint8_t)(version >> 8);
    vid[19] = (uint8_t)version;
    return fx_token_objects_with_id(fl, vid, sizeof(vid));
}

static uint32_t current_version(const char *key_id)
{
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_describe_key(svc, who, key_id, &md, &e), &e);
    return md.current_version;
}

/* Runs maintain and says whether one of its lines names this version's object as destroyed. */
static bool maintain_destroys(const char *key_id, uint32_t version)
{
    char object[P11KMS_KEY_ID_LEN + 32];
    snprintf(object, sizeof(object), "%s/v%u", key_id, version);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    long at = fx_list_find_sub(&lines, object);
    bool destroyed = at >= 0 && strstr(lines.items[at], "left in place") == NULL;
    fx_list_free(&lines);
    return destroyed;
}

static void test_rotation_not_found_again(void)
{
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "its version 3 is not found again", id);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), &e); /* warms every path */
    REQUIRE(current_version(id) == 2);

    fx_say("a rotation: the token does not find version 3 again and refuses to destroy it");
    /* The first search is the check that no object of version 3 exists yet, the second the
     * fresh lookup after C_GenerateKey. */
    shim_fail_after("C_FindObjectsInit", CKR_FUNCTION_FAILED, 1, 1);
    shim_fail("C_DestroyObject", CKR_FUNCTION_FAILED, 1);
    unsigned long destroys = shim_count("C_DestroyObject");
    CHECK_ERR(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), P11KMS_E_KEY_UNAVAILABLE, &e);
    CHECK(fx_msg_has(&e, "does not find it again"));
    CHECK(shim_count("C_DestroyObject") == destroys + 1);
    shim_fail("C_FindObjectsInit", CKR_OK, 0);
    shim_fail("C_DestroyObject", CKR_OK, 0);
    CHECK(current_version(id) == 2);
    CHECK(version_objects(id, 3) == 1);

    fx_say("maintain destroys the object (its claim stayed); the next rotation makes version 3");
    CHECK(maintain_destroys(id, 3));
    CHECK(version_objects(id, 3) == 0);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, id, NULL, &e), &e);
    CHECK(current_version(id) == 3);
    CHECK(version_objects(id, 3) == 1);
}

static void test_purge_search_fails(void)
{
    char doomed[P11KMS_KEY_ID_LEN + 1], other[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "purged while the token cannot search", doomed);
    fx_create_key(svc, who, "read first, so the integrity key is at hand", other);
    CHECK_OK(p11kms_rotate_key_on_demand(svc, who, doomed, NULL, &e), &e);
    p11kms_key_metadata md = {0};
    CHECK_OK(p11kms_schedule_key_deletion(svc, who, doomed, 7, &md, &e), &e);
    fx_backdate_deletion(svc, doomed);
    p11kms_close(svc); /* no cached handle of the doomed key's versions */
    open_service();
    (void)current_version(other);

    fx_say("a due purge: the record goes, every search for the versions' objects fails");
    shim_fail("C_FindObjectsInit", CKR_FUNCTION_FAILED, -1);
    p11kms_err rc = p11kms_describe_key(svc, who, doomed, &md, &e);
    shim_fail("C_FindObjectsInit", CKR_OK, 0);
    CHECK_ERR(rc, P11KMS_E_NOT_FOUND, &e);
    CHECK(version_objects(doomed, 1) == 1 && version_objects(doomed, 2) == 1);

    fx_say("maintain destroys both objects (their claims stayed)");
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, "left in place") < 0);
    fx_list_free(&lines);
    CHECK(version_objects(doomed, 1) == 0 && version_objects(doomed, 2) == 0);
}

int main(void)
{
    who = fx_principal("unix:user:version-cleanup-tester");
    /* The shim's configuration, derived from one whose orphan grace period is 0. */
    char *graceless = fx_config("version-cleanup-base.yaml", "orphan-grace-seconds: 0", NULL, NULL);
    REQUIRE(setenv("P11KMS_CONFIG", graceless, 1) == 0);
    config_path = fx_shim_config("version-cleanup.yaml", NULL);
    open_service();
    test_rotation_not_found_again();
    test_purge_search_fails();
    p11kms_close(svc);
    p11kms_principal_free(who);
    free(config_path);
    free(graceless);
    return check_finish("provider-version-cleanup-test");
}
