#include "config.h"

/* `p11kms store migrate` on a token in the previous layout (format 1). The token is written
 * with the token-layer calls the format-1 key store used (pkcs11/data.c data objects labelled
 * p11kms/key/<id>, p11kms/alias/<name>, p11kms/journal; key versions with a 20-byte CKA_ID) and
 * the record encoder it used (keymeta_encode), so it holds exactly what that code wrote. The
 * service sees no key before the migration; afterwards every key, state, tag, alias, version and
 * counter is in the store, the keys encrypt and decrypt with their old objects, the data objects
 * are gone, and a second migration (and one after a simulated crash before the clean-up) changes
 * nothing. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "pkcs11/token.h"
#include "provider/keymeta.h"

static p11kms_error e;

static p11_token *token_open(void)
{
    static char pin_source[4200];
    snprintf(pin_source, sizeof(pin_source), "file:%s", test_env("P11KMS_TEST_PIN_FILE"));
    p11_token_config tc = {
        .module = test_env("P11KMS_TEST_MODULE"),
        .token_uri = test_env("P11KMS_TEST_URI"),
        .pin_source = pin_source,
        .pool_size = 1,
    };
    p11_token *t = NULL;
    if (p11_token_open(&tc, &t, &e) != P11KMS_OK) {
        fprintf(stderr, "p11_token_open: %s\n", e.message);
        exit(99);
    }
    return t;
}

/* One key as the format-1 key store created it. */
static key_meta *old_key(p11_token *t, const char *id_text, p11kms_key_state state,
                         uint32_t versions, const char *alias, const char *tag)
{
    key_meta *m = calloc(1, sizeof(*m));
    REQUIRE(m != NULL);
    REQUIRE(uuid_parse(id_text, m->id));
    uuid_format(m->id, m->id_text);
    m->state = state;
    m->origin = P11KMS_ORIGIN_TOKEN;
    m->created = 1700000000;
    m->rotation_period_days = 365;
    REQUIRE(keymeta_set_description(m, "made by format 1"));
    for (uint32_t v = 1; v <= versions; v++) {
        uint8_t vid[KEY_UUID_LEN + 4];
        memcpy(vid, m->id, KEY_UUID_LEN);
        vid[16] = vid[17] = vid[18] = 0;
        vid[19] = (uint8_t)v;
        char label[128];
        snprintf(label, sizeof(label), "p11kms/%s/v%u", m->id_text, v);
        p11_key *k = NULL;
        CHECK_OK(p11_key_generate(t, vid, sizeof(vid), label, &k, &e), &e);
        REQUIRE(keymeta_add_version(m, v, 1700000000 + v,
                                    v == 1 ? ROTATION_INITIAL : ROTATION_ON_DEMAND));
        m->versions[v - 1].reserved = 4160 * v;
    }
    if (alias != NULL) {
        REQUIRE(keymeta_add_alias(m, alias));
        char label[128];
        snprintf(label, sizeof(label), "p11kms/alias/%s", alias + strlen("alias/"));
        CHECK_OK(p11_data_create(t, label, (const uint8_t *)m->id_text, P11KMS_KEY_ID_LEN, &e), &e);
    }
    if (tag != NULL)
        REQUIRE(keymeta_set_tag(m, tag, "kept"));
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(keymeta_encode(m, &text, &len, &e), &e);
    char label[128];
    snprintf(label, sizeof(label), "p11kms/key/%s", m->id_text);
    CHECK_OK(p11_data_create(t, label, (const uint8_t *)text, len, &e), &e);
    free(text);
    return m;
}

static int count_object(const char *label, const uint8_t *value, size_t len, void *arg)
{
    (void)label;
    (void)value;
    (void)len;
    (*(int *)arg)++;
    return 0;
}

static int data_objects(void)
{
    p11_token *t = token_open();
    int n = 0;
    CHECK_OK(p11_data_list(t, "p11kms/", count_object, &n, &e), &e);
    p11_token_close(t);
    return n;
}

static void migrate(const char *what, fx_list *lines)
{
    fx_say("%s", what);
    p11kms *svc = fx_open(NULL);
    CHECK_OK(p11kms_store_migrate(svc, fx_collect_line, lines, &e), &e);
    p11kms_close(svc);
}

static void check_migrated(const p11kms_principal *who, key_meta *const *keys, size_t n)
{
    p11kms *svc = fx_open(NULL);
    fx_list ids = {0};
    fx_list_keys(svc, who, &ids);
    CHECK(ids.count == n);
    for (size_t i = 0; i < n; i++) {
        const key_meta *m = keys[i];
        p11kms_key_metadata md = {0};
        CHECK_OK(p11kms_describe_key(svc, who, m->id_text, &md, &e), &e);
        CHECK(md.state == m->state);
        CHECK(md.version_count == m->version_count);
        /* The counter moved to the store; later checks encrypt and reserve more. */
        CHECK(md.current_version_encryptions >= m->versions[m->version_count - 1].reserved);
        CHECK(strcmp(md.description, "made by format 1") == 0);
        fx_list aliases = {0};
        CHECK_OK(p11kms_list_aliases(svc, who, m->id_text, fx_collect_alias, &aliases, &e), &e);
        CHECK(aliases.count == m->alias_count);
        for (size_t k = 0; k < m->alias_count; k++) {
            CHECK(fx_list_has(&aliases, m->aliases[k]));
            p11kms_key_metadata amd = {0};
            CHECK_OK(p11kms_describe_key(svc, who, m->aliases[k], &amd, &e), &e);
            CHECK(strcmp(amd.key_id, m->id_text) == 0);
        }
        fx_list_free(&aliases);
        if (m->state == P11KMS_KEY_ENABLED) {
            static const uint8_t pt[] = "migrated";
            p11kms_result ct, r;
            CHECK_OK(p11kms_encrypt(svc, who, m->id_text, NULL, pt, sizeof(pt), &ct, &e), &e);
            CHECK(ct.key_version == m->version_count);
            CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, ct.ciphertext, ct.ciphertext_len, &r, &e),
                     &e);
            CHECK(fx_same(r.plaintext, r.plaintext_len, pt, sizeof(pt)));
            p11kms_result_free(&r);
            p11kms_result_free(&ct);
        }
    }
    fx_list_free(&ids);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(lines.count == 0);
    fx_list_free(&lines);
    p11kms_close(svc);
}

int main(void)
{
    p11kms_principal *who = fx_principal("unix:user:migrate-tester");
    fx_say("a token in the format-1 layout: three keys, two aliases, tags, an idle journal");
    p11_token *t = token_open();
    key_meta *keys[3];
    keys[0] = old_key(t, "0f8e4a7c-1111-4222-8333-444455556666", P11KMS_KEY_ENABLED, 2,
                      "alias/orders", "team");
    keys[1] = old_key(t, "1f8e4a7c-1111-4222-8333-444455556666", P11KMS_KEY_DISABLED, 1,
                      "alias/old", NULL);
    keys[2] =
        old_key(t, "2f8e4a7c-1111-4222-8333-444455556666", P11KMS_KEY_ENABLED, 3, NULL, "env");
    CHECK_OK(p11_data_create(t, "p11kms/journal", (const uint8_t *)" ", 1, &e), &e);
    p11_token_close(t);
    CHECK(data_objects() == 6);

    fx_say("before the migration the service sees no key (it reads the store only)");
    p11kms *svc = fx_open(NULL);
    fx_list ids = {0};
    fx_list_keys(svc, who, &ids);
    CHECK(ids.count == 0);
    fx_list_free(&ids);
    p11kms_close(svc);

    fx_list lines = {0};
    migrate("store migrate moves records and aliases, then removes the data objects", &lines);
    CHECK(fx_list_find_sub(&lines, keys[0]->id_text) >= 0);
    CHECK(fx_list_find_sub(&lines, "alias/orders") >= 0);
    CHECK(fx_list_find_sub(&lines, "removed 6 data objects") >= 0);
    fx_list_free(&lines);
    CHECK(data_objects() == 0);
    check_migrated(who, keys, 3);

    migrate("a second migration has nothing to do", &lines);
    CHECK(lines.count == 1 && fx_list_find_sub(&lines, "nothing to migrate") == 0);
    fx_list_free(&lines);
    check_migrated(who, keys, 3);

    fx_say("a crash after the store committed and before the clean-up: the rerun finishes it");
    t = token_open();
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(keymeta_encode(keys[1], &text, &len, &e), &e);
    char label[128];
    snprintf(label, sizeof(label), "p11kms/key/%s", keys[1]->id_text);
    CHECK_OK(p11_data_create(t, label, (const uint8_t *)text, len, &e), &e);
    CHECK_OK(p11_data_create(t, "p11kms/alias/old", (const uint8_t *)keys[1]->id_text,
                             P11KMS_KEY_ID_LEN, &e),
             &e);
    free(text);
    p11_token_close(t);
    migrate("migrate again", &lines);
    CHECK(fx_list_find_sub(&lines, "moved to the store") < 0);
    CHECK(fx_list_find_sub(&lines, "removed 2 data objects") >= 0);
    fx_list_free(&lines);
    CHECK(data_objects() == 0);
    check_migrated(who, keys, 3);

    for (size_t i = 0; i < 3; i++)
        keymeta_free(keys[i]);
    p11kms_principal_free(who);
    return check_finish("provider-migrate-test");
}
