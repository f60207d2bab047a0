/* Rows are signed through a session copy of the token's integrity key where the token makes one
 * (provider/keystore.c): made once per service, sensitive and non-extractable like its source,
 * producing the MACs the token object produces (a service using the token object verifies what
 * the copy signed, and the other way round). token.key-cache: token-object makes no copy, and a
 * token that refuses C_CopyObject leaves the token object signing, asked once. NSS softokn makes
 * the copy (required when P11KMS_TEST_TOKEN is nss); SoftHSM refuses to copy a key that is not
 * modifiable (CKR_ATTRIBUTE_READ_ONLY), so there the refusal path runs from the start. The
 * service runs on tests/pkcs11-shim.c, which forwards to the test token, counts calls, refuses
 * C_CopyObject on demand and remembers the handle the last copy made and the key the last
 * C_SignInit used. */
#include "config.h"

#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

static p11kms_error e;
static CK_FUNCTION_LIST *fl;
static unsigned long (*shim_count)(const char *fn);
static void (*shim_fail)(const char *fn, CK_RV rv, int times);

static CK_OBJECT_HANDLE (*shim_last_copy)(void);
static CK_OBJECT_HANDLE (*shim_last_sign_key)(void);

/* Whether object h, seen from a session of our own (the service's login covers it), is a
 * sensitive, non-extractable session object whose value cannot be read. */
static bool protected_session_object(CK_OBJECT_HANDLE h)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    REQUIRE(fl->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK && n > 0);
    bool ok = false;
    for (CK_ULONG i = 0; i < n && !ok; i++) {
        CK_SESSION_HANDLE s;
        if (fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
            continue;
        CK_BBOOL token = CK_TRUE, sensitive = CK_FALSE, extractable = CK_TRUE;
        CK_ATTRIBUTE a[] = {{CKA_TOKEN, &token, sizeof(token)},
                            {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
                            {CKA_EXTRACTABLE, &extractable, sizeof(extractable)}};
        uint8_t value[64];
        CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
        ok = fl->C_GetAttributeValue(s, h, a, 3) == CKR_OK && !token && sensitive && !extractable &&
             fl->C_GetAttributeValue(s, h, &v, 1) == CKR_ATTRIBUTE_SENSITIVE;
        fl->C_CloseSession(s);
    }
    return ok;
}

/* How many token objects have the integrity key's CKA_ID (provider/keystore.c; not counting a
 * session copy of it). */
static CK_ULONG integrity_keys_in_token(void)
{
    static const char id[] = "p11kms/integrity";
    return fx_token_objects_with_id(fl, id, sizeof(id) - 1);
}

static void describe(p11kms *svc, const p11kms_principal *who, const char *id)
{
    p11kms_key_metadata md;
    CHECK_OK(p11kms_describe_key(svc, who, id, &md, &e), &e);
    CHECK(strcmp(md.key_id, id) == 0);
}

int main(void)
{
    p11kms_principal *who = fx_principal("unix:user:integrity-copy-tester");
    char *path = fx_shim_config("integrity-copy.yaml", NULL);

    /* An audit checkpoint is written under the audit log's lock, not the keystore's: on a token
     * without the integrity key yet it must not make one (another process's first key record
     * could make a second, and no row would verify again). */
    char *audited_path = fx_shim_config("integrity-audited.yaml", NULL);
    char *log = fx_write_file("integrity-audit.log", "");
    FILE *cfg = fopen(audited_path, "a");
    REQUIRE(cfg != NULL);
    fprintf(cfg, "audit:\n  file: %s\n  checkpoint-seconds: 1\n", log);
    fclose(cfg);
    p11kms *audited = fx_open(audited_path);
    CK_C_GetFunctionList get_list;
    *(void **)&get_list = fx_shim_symbol("C_GetFunctionList");
    REQUIRE(get_list(&fl) == CKR_OK);
    fx_say("an audited request before any key: its checkpoint makes no integrity key");
    p11kms_result random;
    for (int i = 0; i < 2; i++) { /* the second a checkpoint period after the open */
        CHECK_OK(p11kms_generate_random(audited, who, 16, &random, &e), &e);
        p11kms_result_free(&random);
        fx_sleep_ms(1100);
    }
    CHECK(integrity_keys_in_token() == 0);
    char first[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(audited, who, "the first key record makes it", first);
    CHECK(integrity_keys_in_token() == 1);
    p11kms_close(audited);
    free(log);
    free(audited_path);

    p11kms *svc = fx_open(path);
    /* The service loaded the shim as its module; it stays loaded while svc is open. */
    *(void **)&shim_count = fx_shim_symbol("p11kms_shim_count");
    *(void **)&shim_fail = fx_shim_symbol("p11kms_shim_fail");
    *(void **)&shim_last_copy = fx_shim_symbol("p11kms_shim_last_copy");
    *(void **)&shim_last_sign_key = fx_shim_symbol("p11kms_shim_last_sign_key");
    *(void **)&get_list = fx_shim_symbol("C_GetFunctionList");
    REQUIRE(get_list(&fl) == CKR_OK);

    fx_say("session-copy (the default): the first row written asks for one copy; it signs");
    unsigned long copies = shim_count("C_CopyObject");
    CK_OBJECT_HANDLE copy_before = shim_last_copy();
    char a[P11KMS_KEY_ID_LEN + 1], b[P11KMS_KEY_ID_LEN + 1], c[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "signed by the copy", a);
    CHECK(shim_count("C_CopyObject") == copies + 1);
    bool copied = shim_last_copy() != copy_before;
    const char *kind = getenv("P11KMS_TEST_TOKEN");
    if (kind != NULL && strcmp(kind, "nss") == 0)
        CHECK(copied);
    CK_OBJECT_HANDLE signer = shim_last_sign_key();
    CHECK(copied ? signer == shim_last_copy() : signer != shim_last_copy());
    CHECK(protected_session_object(signer) == copied);
    fx_say("  %s", copied ? "the token made the copy" : "the token refused the copy");
    fx_create_key(svc, who, "signed by the same key", b);
    CHECK(shim_count("C_CopyObject") == copies + 1);
    CHECK(shim_last_sign_key() == signer);

    fx_say("token.key-cache: token-object signs with the token object; each verifies the other");
    char *object_path = fx_shim_config("integrity-object.yaml", "  key-cache: token-object\n");
    p11kms *by_object = fx_open(object_path);
    describe(by_object, who, a); /* verified with the token object: same MAC as the copy's */
    CK_OBJECT_HANDLE token_key = shim_last_sign_key();
    CHECK(!protected_session_object(token_key));
    CHECK(copied ? token_key != signer : true);
    fx_create_key(by_object, who, "signed by the token object", c);
    CHECK(shim_last_sign_key() == token_key);
    CHECK(shim_count("C_CopyObject") == copies + 1);
    describe(svc, who, c); /* verified with svc's signer */
    CHECK(shim_last_sign_key() == signer);
    p11kms_close(by_object);

    fx_say("a token that refuses the copy: the token object signs, the copy is asked for once");
    p11kms *refused = fx_open(path);
    shim_fail("C_CopyObject", CKR_FUNCTION_NOT_SUPPORTED, -1);
    unsigned long before = shim_count("C_CopyObject");
    char d[P11KMS_KEY_ID_LEN + 1], f[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(refused, who, "signed after a refused copy", d);
    CHECK(shim_count("C_CopyObject") == before + 1);
    CK_OBJECT_HANDLE refused_key = shim_last_sign_key();
    CHECK(!protected_session_object(refused_key));
    fx_create_key(refused, who, "signed by the token object again", f);
    CHECK(shim_count("C_CopyObject") == before + 1);
    CHECK(shim_last_sign_key() == refused_key);
    shim_fail("C_CopyObject", CKR_OK, 0);
    describe(svc, who, d);
    describe(svc, who, f);
    describe(refused, who, b);
    p11kms_close(refused);

    p11kms_close(svc);
    free(object_path);
    free(path);
    p11kms_principal_free(who);
    return check_finish("provider-integrity-copy-test");
}
