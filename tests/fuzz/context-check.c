#include "config.h"

#include "context-check.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"

static void check_canonical(const enc_context *ctx)
{
    size_t len = enc_context_serialized_len(ctx);
    FUZZ_ASSERT(len <= ENC_CONTEXT_MAX_SERIALIZED);
    FUZZ_ASSERT((len == 0) == (enc_context_count(ctx) == 0));
    uint8_t *bytes = NULL;
    size_t got = 0;
    p11kms_error err = {0};
    FUZZ_ASSERT(enc_context_serialize_alloc(ctx, &bytes, &got, &err) == P11KMS_OK);
    FUZZ_ASSERT(got == len);
    /* Canonical uniqueness: the canonical parser accepts only what serializing gives back, so
     * two different byte strings can never stand for the same context. */
    enc_context *back = NULL;
    FUZZ_ASSERT(enc_context_parse_canonical(bytes, len, &back, &err) == P11KMS_OK);
    FUZZ_ASSERT(enc_context_equal(ctx, back));
    uint8_t *again = NULL;
    size_t again_len = 0;
    FUZZ_ASSERT(enc_context_serialize_alloc(back, &again, &again_len, &err) == P11KMS_OK);
    FUZZ_ASSERT(again_len == len && (len == 0 || memcmp(bytes, again, len) == 0));
    /* A too-small buffer is refused, never overrun. */
    if (len > 0) {
        size_t unused;
        FUZZ_ASSERT(enc_context_serialize(ctx, again, len - 1, &unused, &err) != P11KMS_OK);
    }
    free(again);
    free(bytes);
    enc_context_free(back);
}

static void check_json(const enc_context *ctx)
{
    json_object *obj = enc_context_to_json(ctx);
    FUZZ_ASSERT(obj != NULL);
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
    FUZZ_ASSERT(text != NULL);
    enc_context *back = NULL;
    p11kms_error err = {0};
    if (enc_context_parse_json(text, &back, &err) != P11KMS_OK) {
        fprintf(stderr, "JSON %s refused: %s\n", text, err.message);
        FUZZ_ASSERT(!"the JSON form of a context parses");
    }
    FUZZ_ASSERT(enc_context_equal(ctx, back));
    enc_context_free(back);
    json_object_put(obj);
}

/* k=v,k2=v2 expresses a context when it is not empty, no key holds '=' or ',' and no value ','. */
static void check_shorthand(const enc_context *ctx)
{
    size_t n = enc_context_count(ctx);
    const enc_context_pair *pairs = enc_context_pairs(ctx);
    if (n == 0)
        return;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (memchr(pairs[i].key, '=', pairs[i].key_len) != NULL ||
            memchr(pairs[i].key, ',', pairs[i].key_len) != NULL ||
            memchr(pairs[i].value, ',', pairs[i].value_len) != NULL)
            return;
        len += pairs[i].key_len + pairs[i].value_len + 2;
    }
    char *text = malloc(len + 1);
    FUZZ_ASSERT(text != NULL);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            text[o++] = ',';
        memcpy(text + o, pairs[i].key, pairs[i].key_len);
        o += pairs[i].key_len;
        text[o++] = '=';
        memcpy(text + o, pairs[i].value, pairs[i].value_len);
        o += pairs[i].value_len;
    }
    text[o] = '\0';
    enc_context *back = NULL;
    p11kms_error err = {0};
    FUZZ_ASSERT(enc_context_parse_shorthand(text, &back, &err) == P11KMS_OK);
    FUZZ_ASSERT(enc_context_equal(ctx, back));
    enc_context_free(back);
    free(text);
}

static void check_copy_and_lookup(const enc_context *ctx)
{
    enc_context *copy = NULL;
    p11kms_error err = {0};
    FUZZ_ASSERT(enc_context_copy(ctx, &copy, &err) == P11KMS_OK);
    FUZZ_ASSERT(enc_context_equal(ctx, copy));
    size_t n = enc_context_count(ctx);
    const enc_context_pair *pairs = enc_context_pairs(ctx);
    for (size_t i = 0; i < n; i++) {
        /* Keys and values are C strings of their stated length, in strictly ascending order. */
        FUZZ_ASSERT(strlen(pairs[i].key) == pairs[i].key_len);
        FUZZ_ASSERT(strlen(pairs[i].value) == pairs[i].value_len);
        FUZZ_ASSERT(enc_context_utf8_valid((const uint8_t *)pairs[i].key, pairs[i].key_len));
        FUZZ_ASSERT(enc_context_utf8_valid((const uint8_t *)pairs[i].value, pairs[i].value_len));
        if (i > 0) {
            size_t a = pairs[i - 1].key_len, b = pairs[i].key_len;
            int c = memcmp(pairs[i - 1].key, pairs[i].key, a < b ? a : b);
            FUZZ_ASSERT(c < 0 || (c == 0 && a < b));
        }
        const char *v = enc_context_get(copy, pairs[i].key);
        FUZZ_ASSERT(v != NULL && strcmp(v, pairs[i].value) == 0);
        /* Adding an existing key again is refused and changes nothing. */
        FUZZ_ASSERT(enc_context_add(copy, pairs[i].key, "x", &err) == P11KMS_E_VALIDATION);
    }
    FUZZ_ASSERT(enc_context_equal(ctx, copy));
    enc_context_free(copy);
}

void fuzz_check_context(const enc_context *ctx)
{
    FUZZ_ASSERT(ctx != NULL);
    check_canonical(ctx);
    check_json(ctx);
    check_shorthand(ctx);
    check_copy_and_lookup(ctx);
}

void fuzz_check_refusal(p11kms_err rc, const p11kms_error *err, const enc_context *out)
{
    FUZZ_ASSERT(rc == P11KMS_E_VALIDATION);
    FUZZ_ASSERT(out == NULL);
    FUZZ_ASSERT(err->code == rc && err->message[0] != '\0');
    FUZZ_ASSERT(strchr(err->message, '\n') == NULL);
}
