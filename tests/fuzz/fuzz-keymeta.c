/* Fuzz target: the key record decoder (the JSON object p11kms stores in the token for each key,
 * doc/token-layout.md). The token is trusted storage, but a record written by another tool or a
 * damaged one must be refused, never crash the service.
 *
 * Invariants: decode -> encode -> decode gives an equal record, and the encoding is then a fixed
 * point (encode(decode(encode(m))) == encode(m)); every accepted record respects the bounds the
 * decoder promises (versions ascending from 1, aliases "alias/...", at most one tag per key);
 * a refusal is an internal error with a message. */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "provider/keymeta.h"

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool meta_equal(const key_meta *a, const key_meta *b)
{
    if (memcmp(a->id, b->id, KEY_UUID_LEN) != 0 || strcmp(a->id_text, b->id_text) != 0 ||
        a->state != b->state || a->origin != b->origin || !str_eq(a->description, b->description) ||
        a->created != b->created || a->deletion_date != b->deletion_date ||
        a->pending_window_days != b->pending_window_days ||
        a->rotation_enabled != b->rotation_enabled ||
        a->rotation_period_days != b->rotation_period_days ||
        a->next_rotation != b->next_rotation || a->version_count != b->version_count ||
        a->alias_count != b->alias_count || a->tag_count != b->tag_count)
        return false;
    for (size_t i = 0; i < a->version_count; i++) {
        const key_version *x = &a->versions[i], *y = &b->versions[i];
        if (x->number != y->number || x->created != y->created || x->type != y->type ||
            x->reserved != y->reserved)
            return false;
    }
    for (size_t i = 0; i < a->alias_count; i++)
        if (!keymeta_has_alias(b, a->aliases[i]))
            return false;
    for (size_t i = 0; i < a->tag_count; i++) {
        bool found = false;
        for (size_t j = 0; j < b->tag_count && !found; j++)
            found = strcmp(a->tags[i].key, b->tags[j].key) == 0 &&
                    strcmp(a->tags[i].value, b->tags[j].value) == 0;
        if (!found)
            return false;
    }
    return true;
}

static void check_bounds(const key_meta *m)
{
    uint8_t id[KEY_UUID_LEN];
    FUZZ_ASSERT(strlen(m->id_text) == P11KMS_KEY_ID_LEN && uuid_parse(m->id_text, id));
    FUZZ_ASSERT(memcmp(id, m->id, KEY_UUID_LEN) == 0);
    FUZZ_ASSERT(m->state != P11KMS_KEY_UNAVAILABLE);
    FUZZ_ASSERT(m->pending_window_days <= 30 && m->rotation_period_days <= 2560);
    FUZZ_ASSERT(m->created >= 0 && m->deletion_date >= 0 && m->next_rotation >= 0);
    FUZZ_ASSERT(m->version_count > 0 || m->origin == P11KMS_ORIGIN_EXTERNAL);
    for (size_t i = 0; i < m->version_count; i++) {
        FUZZ_ASSERT(m->versions[i].number >= 1 && m->versions[i].created >= 0);
        FUZZ_ASSERT(i == 0 || m->versions[i].number > m->versions[i - 1].number);
        FUZZ_ASSERT(keymeta_version(m, m->versions[i].number) == &m->versions[i]);
    }
    FUZZ_ASSERT(keymeta_current(m) ==
                (m->version_count ? &m->versions[m->version_count - 1] : NULL));
    for (size_t i = 0; i < m->alias_count; i++) {
        FUZZ_ASSERT(strncmp(m->aliases[i], "alias/", 6) == 0);
        for (size_t j = 0; j < i; j++)
            FUZZ_ASSERT(strcmp(m->aliases[i], m->aliases[j]) != 0);
    }
    for (size_t i = 0; i < m->tag_count; i++)
        for (size_t j = 0; j < i; j++)
            FUZZ_ASSERT(strcmp(m->tags[i].key, m->tags[j].key) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    key_meta *m = NULL;
    p11kms_error err = {0};
    p11kms_err rc = keymeta_decode(data, size, &m, &err);
    if (rc != P11KMS_OK) {
        FUZZ_ASSERT(m == NULL);
        FUZZ_ASSERT((rc == P11KMS_E_INTERNAL || rc == P11KMS_E_NO_MEMORY) && err.code == rc);
        FUZZ_ASSERT(err.message[0] != '\0');
        return 0;
    }
    FUZZ_ASSERT(m != NULL);
    check_bounds(m);

    char *text = NULL;
    size_t len = 0;
    FUZZ_ASSERT(keymeta_encode(m, &text, &len, &err) == P11KMS_OK);
    FUZZ_ASSERT(text != NULL && strlen(text) == len);
    key_meta *back = NULL;
    if (keymeta_decode((const uint8_t *)text, len, &back, &err) != P11KMS_OK) {
        fprintf(stderr, "re-encoded record refused: %s\n%s\n", err.message, text);
        FUZZ_ASSERT(!"an encoded record decodes");
    }
    FUZZ_ASSERT(meta_equal(m, back));
    char *again = NULL;
    size_t again_len = 0;
    FUZZ_ASSERT(keymeta_encode(back, &again, &again_len, &err) == P11KMS_OK);
    FUZZ_ASSERT(again_len == len && memcmp(again, text, len) == 0);

    key_meta *clone = keymeta_clone(m);
    FUZZ_ASSERT(clone != NULL && meta_equal(m, clone));
    keymeta_free(clone);
    free(again);
    free(text);
    keymeta_free(back);
    keymeta_free(m);
    return 0;
}
