/* The key record stored in the token: round trip, and records p11kms did not write refused. */
#include "config.h"

#include <string.h>

#include "check.h"
#include "provider/keymeta.h"

static key_meta *sample(void)
{
    key_meta *m = calloc(1, sizeof(*m));
    REQUIRE(m != NULL);
    REQUIRE(uuid_parse("0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5", m->id));
    uuid_format(m->id, m->id_text);
    m->state = P11KMS_KEY_DISABLED;
    m->origin = P11KMS_ORIGIN_TOKEN;
    m->created = 1700000000;
    m->rotation_enabled = true;
    m->rotation_period_days = 90;
    m->next_rotation = 1707776000;
    REQUIRE(keymeta_set_description(m, "orders \"db\" key\n\u00e9"));
    REQUIRE(keymeta_add_version(m, 1, 1700000000, ROTATION_INITIAL));
    REQUIRE(keymeta_add_version(m, 2, 1700000100, ROTATION_ON_DEMAND));
    m->versions[1].reserved = 4096;
    REQUIRE(keymeta_add_alias(m, "alias/orders"));
    REQUIRE(keymeta_set_tag(m, "team", "payments"));
    return m;
}

static void test_round_trip(void)
{
    key_meta *m = sample();
    char *text = NULL;
    size_t len = 0;
    p11kms_error e = {0};
    CHECK_OK(keymeta_encode(m, &text, &len, &e), &e);
    key_meta *back = NULL;
    CHECK_OK(keymeta_decode((const uint8_t *)text, len, &back, &e), &e);
    if (back != NULL) {
        CHECK(strcmp(back->id_text, m->id_text) == 0);
        CHECK(back->state == P11KMS_KEY_DISABLED && back->origin == P11KMS_ORIGIN_TOKEN);
        CHECK(strcmp(back->description, m->description) == 0);
        CHECK(back->version_count == 2 && back->versions[1].number == 2);
        CHECK(back->versions[1].type == ROTATION_ON_DEMAND && back->versions[1].reserved == 4096);
        CHECK(back->rotation_enabled && back->rotation_period_days == 90);
        CHECK(keymeta_has_alias(back, "alias/orders") && back->alias_count == 1);
        CHECK(back->tag_count == 1 && strcmp(back->tags[0].value, "payments") == 0);
        key_meta *copy = keymeta_clone(back);
        CHECK(copy != NULL && copy->version_count == 2 && copy->alias_count == 1);
        keymeta_free(copy);
    }
    keymeta_free(back);
    free(text);
    keymeta_free(m);
}

/* Each mutation of a valid record must be refused with P11KMS_E_INTERNAL. */
static void refuse(const char *from, const char *to)
{
    key_meta *m = sample();
    char *text = NULL;
    size_t len = 0;
    p11kms_error e = {0};
    REQUIRE(keymeta_encode(m, &text, &len, &e) == P11KMS_OK);
    keymeta_free(m);
    char *hit = strstr(text, from);
    if (hit == NULL)
        fprintf(stderr, "  %s not in %s\n", from, text);
    REQUIRE(hit != NULL);
    size_t out_len = len - strlen(from) + strlen(to);
    char *bad = malloc(out_len + 1);
    REQUIRE(bad != NULL);
    size_t pre = (size_t)(hit - text);
    memcpy(bad, text, pre);
    memcpy(bad + pre, to, strlen(to));
    memcpy(bad + pre + strlen(to), hit + strlen(from), len - pre - strlen(from));
    bad[out_len] = '\0';
    key_meta *back = NULL;
    p11kms_err rc = keymeta_decode((const uint8_t *)bad, out_len, &back, &e);
    CHECK(rc == P11KMS_E_INTERNAL);
    CHECK(back == NULL);
    if (rc != P11KMS_E_INTERNAL)
        fprintf(stderr, "  accepted: %s\n", bad);
    keymeta_free(back);
    free(bad);
    free(text);
}

static void test_malformed(void)
{
    p11kms_error e = {0};
    key_meta *m = NULL;
    CHECK(keymeta_decode((const uint8_t *)"", 0, &m, &e) == P11KMS_E_INTERNAL);
    CHECK(keymeta_decode((const uint8_t *)"[]", 2, &m, &e) == P11KMS_E_INTERNAL);
    CHECK(keymeta_decode((const uint8_t *)"{\"format\":1", 11, &m, &e) == P11KMS_E_INTERNAL);
    CHECK(keymeta_decode((const uint8_t *)"{}\0", 3, &m, &e) == P11KMS_E_INTERNAL);
    refuse("\"format\":1", "\"format\":2");
    refuse("\"format\":1", "\"format\":\"1\"");
    refuse("\"state\":\"Disabled\"", "\"state\":\"disabled\"");
    refuse("\"state\":\"Disabled\"", "\"state\":\"Unavailable\"");
    refuse("\"origin\":\"AWS_KMS\"", "\"origin\":\"AWS_CLOUDHSM\"");
    refuse("0f8e4a7c-1d2b", "0f8e4a7c_1d2b");
    refuse("\"number\":2", "\"number\":1"); /* out of order */
    refuse("\"type\":\"ON_DEMAND\"", "\"type\":\"MANUAL\"");
    refuse("\"pending_window_days\":0", "\"pending_window_days\":31");
    refuse("\"created\":1700000000,\"deletion_date\"", "\"created\":-1,\"deletion_date\"");
    refuse("\"alias/orders\"", "\"orders\"");
    refuse("\"team\":\"payments\"", "\"team\":7");
    refuse("\"rotation_enabled\":true", "\"rotation_enabled\":1");
    refuse("\"format\":1", "\"format\":1,\"extra\":true");
    refuse("\"versions\":[", "\"versions\":[7,");
}

static void test_uuid(void)
{
    uint8_t id[KEY_UUID_LEN];
    char text[P11KMS_KEY_ID_LEN + 1];
    CHECK(uuid_parse("0F8E4A7C-1D2B-4C3D-8E9F-A0B1C2D3E4F5", id));
    uuid_format(id, text);
    CHECK(strcmp(text, "0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5") == 0);
    CHECK(!uuid_parse("0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f", id));
    CHECK(!uuid_parse("0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f55", id));
    CHECK(!uuid_parse("0f8e4a7c1d2b-4c3d-8e9f-a0b1c2d3e4f5-", id));
    CHECK(!uuid_parse("0g8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5", id));
    CHECK(!uuid_parse("", id));
}

int main(void)
{
    test_round_trip();
    test_malformed();
    test_uuid();
    return check_finish("service-keymeta-test");
}
