#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "enc-context.h"
#include "lib/check.h"

static size_t from_hex(const char *hex, uint8_t **out)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n + 1);
    REQUIRE(b != NULL && strlen(hex) % 2 == 0);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        REQUIRE(sscanf(hex + 2 * i, "%2x", &v) == 1);
        b[i] = (uint8_t)v;
    }
    *out = b;
    return n;
}

static bool serializes_to(const enc_context *ctx, const uint8_t *want, size_t want_len)
{
    p11kms_error e = {0};
    uint8_t buf[ENC_CONTEXT_MAX_SERIALIZED];
    size_t len = 0;
    if (enc_context_serialize(ctx, buf, sizeof(buf), &len, &e) != P11KMS_OK)
        return false;
    return len == want_len && enc_context_serialized_len(ctx) == want_len &&
           (want_len == 0 || memcmp(buf, want, len) == 0);
}

/* Every case of the shared vectors: valid contexts serialize to the exact bytes whichever way they
 * are built; invalid bytes are refused by the strict parser. */
static void test_shared_vectors(void)
{
    p11kms_error e = {0};
    json_object *doc = json_object_from_file(test_vector_path("encryption_context.json"));
    REQUIRE(doc != NULL);
    json_object *tests, *invalid;
    REQUIRE(json_object_object_get_ex(doc, "tests", &tests));
    REQUIRE(json_object_object_get_ex(doc, "invalid", &invalid));
    REQUIRE(json_object_array_length(tests) >= 9 && json_object_array_length(invalid) >= 5);

    for (size_t i = 0; i < json_object_array_length(tests); i++) {
        json_object *t = json_object_array_get_idx(tests, i), *jctx, *jhex, *jcomment;
        REQUIRE(json_object_object_get_ex(t, "context", &jctx));
        REQUIRE(json_object_object_get_ex(t, "serialized_hex", &jhex));
        REQUIRE(json_object_object_get_ex(t, "comment", &jcomment));
        uint8_t *want;
        size_t want_len = from_hex(json_object_get_string(jhex), &want);
        const char *comment = json_object_get_string(jcomment);

        /* 1. from the parsed JSON object */
        enc_context *a = NULL;
        CHECK_OK(enc_context_from_json_object(jctx, &a, &e), &e);
        if (!serializes_to(a, want, want_len)) {
            check_failures++;
            fprintf(stderr, "vector \"%s\": from_json_object bytes differ\n", comment);
        }
        /* 2. pair by pair in the file's order (exercises ordered insertion) */
        enc_context *b = enc_context_new();
        REQUIRE(b != NULL);
        json_object_object_foreach(jctx, k, v)
        {
            CHECK_OK(enc_context_add(b, k, json_object_get_string(v), &e), &e);
        }
        if (!serializes_to(b, want, want_len)) {
            check_failures++;
            fprintf(stderr, "vector \"%s\": enc_context_add bytes differ\n", comment);
        }
        /* 3. pair by pair in reverse order */
        enc_context *c = enc_context_new();
        REQUIRE(c != NULL);
        size_t n = enc_context_count(a);
        const enc_context_pair *pairs = enc_context_pairs(a);
        for (size_t j = n; j-- > 0;)
            CHECK_OK(enc_context_add(c, pairs[j].key, pairs[j].value, &e), &e);
        CHECK(serializes_to(c, want, want_len));
        /* 4. from the JSON text */
        enc_context *d = NULL;
        CHECK_OK(enc_context_parse_json(json_object_to_json_string(jctx), &d, &e), &e);
        CHECK(serializes_to(d, want, want_len));
        /* 5. back from the canonical bytes */
        enc_context *f = NULL;
        CHECK_OK(enc_context_parse_canonical(want, want_len, &f, &e), &e);
        CHECK(serializes_to(f, want, want_len));
        CHECK(enc_context_equal(a, b) && enc_context_equal(a, c) && enc_context_equal(a, d) &&
              enc_context_equal(a, f));
        CHECK(enc_context_count(a) == (size_t)json_object_object_length(jctx));

        /* 6. allocated form */
        uint8_t *alloc = NULL;
        size_t alloc_len = 99;
        CHECK_OK(enc_context_serialize_alloc(a, &alloc, &alloc_len, &e), &e);
        CHECK(alloc_len == want_len && (want_len == 0 || memcmp(alloc, want, want_len) == 0));
        CHECK((alloc == NULL) == (want_len == 0));
        free(alloc);

        enc_context_free(a);
        enc_context_free(b);
        enc_context_free(c);
        enc_context_free(d);
        enc_context_free(f);
        free(want);
    }

    for (size_t i = 0; i < json_object_array_length(invalid); i++) {
        json_object *t = json_object_array_get_idx(invalid, i), *jhex, *jcomment;
        REQUIRE(json_object_object_get_ex(t, "serialized_hex", &jhex));
        REQUIRE(json_object_object_get_ex(t, "comment", &jcomment));
        uint8_t *bytes;
        size_t len = from_hex(json_object_get_string(jhex), &bytes);
        enc_context *ctx = (enc_context *)&ctx; /* must be reset to NULL on failure */
        p11kms_err rc = enc_context_parse_canonical(bytes, len, &ctx, &e);
        if (rc != P11KMS_E_VALIDATION || ctx != NULL) {
            check_failures++;
            fprintf(stderr, "invalid vector \"%s\" was not refused\n",
                    json_object_get_string(jcomment));
        }
        check_count++;
        free(bytes);
    }
    json_object_put(doc);
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
        bool valid;
    } cases[] = {
        {"", 0, true},
        {"abc", 3, true},
        {"\x00", 1, true},
        {"\x7f", 1, true},
        {"\xc2\x80", 2, true},         /* U+0080 */
        {"\xdf\xbf", 2, true},         /* U+07FF */
        {"\xe0\xa0\x80", 3, true},     /* U+0800 */
        {"\xed\x9f\xbf", 3, true},     /* U+D7FF */
        {"\xee\x80\x80", 3, true},     /* U+E000 */
        {"\xef\xbf\xbf", 3, true},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, true}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, true}, /* U+10FFFF */
        {"\x80", 1, false},            /* lone continuation */
        {"\xbf", 1, false},
        {"\xc0\x80", 2, false},                 /* overlong NUL */
        {"\xc1\xbf", 2, false},                 /* overlong */
        {"\xc0\xaf", 2, false},                 /* overlong '/' */
        {"\xe0\x80\xaf", 3, false},             /* overlong */
        {"\xe0\x9f\xbf", 3, false},             /* overlong U+07FF */
        {"\xf0\x80\x80\xaf", 4, false},         /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, false},         /* overlong U+FFFF */
        {"\xed\xa0\x80", 3, false},             /* U+D800 high surrogate */
        {"\xed\xbf\xbf", 3, false},             /* U+DFFF low surrogate */
        {"\xed\xa0\xbd\xed\xb4\x91", 6, false}, /* CESU-8 surrogate pair */
        {"\xf4\x90\x80\x80", 4, false},         /* U+110000 */
        {"\xf5\x80\x80\x80", 4, false},
        {"\xf8\x88\x80\x80\x80", 5, false}, /* 5-byte form */
        {"\xfc\x84\x80\x80\x80\x80", 6, false},
        {"\xfe", 1, false},
        {"\xff", 1, false},
        {"\xc3", 1, false},         /* truncated */
        {"\xe2\x82", 2, false},     /* truncated */
        {"\xf0\x9f\x94", 3, false}, /* truncated */
        {"\xc3\x28", 2, false},     /* bad continuation */
        {"\xe2\x28\xa1", 3, false},
        {"\xe2\x82\x28", 3, false},
        {"\xf0\x9f\x94\x28", 4, false},
        {"a\xc3\xa9z", 4, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = enc_context_utf8_valid((const uint8_t *)cases[i].s, cases[i].len);
        if (got != cases[i].valid) {
            check_failures++;
            fprintf(stderr, "utf8 case %zu: want %d got %d\n", i, cases[i].valid, got);
        }
        check_count++;
    }
}

static void test_add(void)
{
    p11kms_error e = {0};
    enc_context *ctx = enc_context_new();
    REQUIRE(ctx != NULL);
    CHECK_OK(enc_context_add(ctx, "b", "2", &e), &e);
    CHECK_OK(enc_context_add(ctx, "a", "1", &e), &e);
    CHECK_OK(enc_context_add(ctx, "", "empty key", &e), &e);
    CHECK_OK(enc_context_add(ctx, "c", "", &e), &e);
    CHECK(enc_context_count(ctx) == 4);
    const enc_context_pair *p = enc_context_pairs(ctx);
    CHECK(strcmp(p[0].key, "") == 0 && strcmp(p[1].key, "a") == 0 && strcmp(p[2].key, "b") == 0 &&
          strcmp(p[3].key, "c") == 0);
    CHECK(strcmp(p[3].value, "") == 0 && p[3].value_len == 0);
    CHECK(strcmp(enc_context_get(ctx, "a"), "1") == 0);
    CHECK(strcmp(enc_context_get(ctx, ""), "empty key") == 0);
    CHECK(enc_context_get(ctx, "A") == NULL && enc_context_get(ctx, "d") == NULL);
    CHECK(enc_context_get(NULL, "a") == NULL);

    size_t before = enc_context_serialized_len(ctx);
    CHECK_ERR(enc_context_add(ctx, "a", "other", &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "duplicate key \"a\"") != NULL);
    CHECK(enc_context_count(ctx) == 4 && enc_context_serialized_len(ctx) == before);
    CHECK(strcmp(enc_context_get(ctx, "a"), "1") == 0);
    CHECK_OK(enc_context_add(ctx, "A", "upper", &e), &e); /* case-sensitive keys */

    CHECK_ERR(enc_context_add(ctx, NULL, "v", &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(enc_context_add(ctx, "k", NULL, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(enc_context_add_n(ctx, "k\0x", 3, "v", 1, &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "NUL") != NULL);
    CHECK_ERR(enc_context_add_n(ctx, "k", 1, "v\0", 2, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(enc_context_add(ctx, "k\xc0\xaf", "v", &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "UTF-8") != NULL);
    CHECK_ERR(enc_context_add(ctx, "k", "\xed\xa0\x80", &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(enc_context_add(ctx, "k", "\xf4\x90\x80\x80", &e), P11KMS_E_VALIDATION, &e);
    CHECK(enc_context_get(ctx, "k") == NULL && enc_context_count(ctx) == 5);
    CHECK_ERR(enc_context_add(NULL, "k", "v", &e), P11KMS_E_INTERNAL, &e);

    /* Messages stay on one line whatever the key holds. */
    CHECK_OK(enc_context_add(ctx, "line\nbreak", "v", &e), &e);
    CHECK_ERR(enc_context_add(ctx, "line\nbreak", "v", &e), P11KMS_E_VALIDATION, &e);
    CHECK(strchr(e.message, '\n') == NULL && strstr(e.message, "line\\x0abreak") != NULL);

    enc_context *copy = NULL;
    CHECK_OK(enc_context_copy(ctx, &copy, &e), &e);
    CHECK(enc_context_equal(ctx, copy));
    enc_context_free(copy);
    CHECK_OK(enc_context_copy(NULL, &copy, &e), &e);
    CHECK(enc_context_count(copy) == 0);
    enc_context_free(copy);
    enc_context_free(ctx);
    enc_context_free(NULL);
}

static void test_size_limit(void)
{
    p11kms_error e = {0};
    /* One pair: 2 (count) + 2 + key + 2 + value <= 65535, so key + value <= 65529. */
    size_t big = 65529;
    char *s = malloc(big + 2);
    REQUIRE(s != NULL);
    memset(s, 'x', big + 1);
    s[big + 1] = '\0';
    enc_context *ctx = enc_context_new();
    REQUIRE(ctx != NULL);
    CHECK_ERR(enc_context_add_n(ctx, "k", 1, s, big, &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "65535") != NULL);
    CHECK_OK(enc_context_add_n(ctx, "k", 1, s, big - 1, &e), &e);
    CHECK(enc_context_serialized_len(ctx) == 65535);
    CHECK_ERR(enc_context_add(ctx, "", "", &e), P11KMS_E_VALIDATION, &e);
    uint8_t *bytes;
    size_t len;
    CHECK_OK(enc_context_serialize_alloc(ctx, &bytes, &len, &e), &e);
    CHECK(len == 65535);
    enc_context *back = NULL;
    CHECK_OK(enc_context_parse_canonical(bytes, len, &back, &e), &e);
    CHECK(enc_context_equal(ctx, back));
    enc_context_free(back);
    free(bytes);
    /* The caller's buffer is checked. */
    uint8_t small[16];
    CHECK_ERR(enc_context_serialize(ctx, small, sizeof(small), &len, &e), P11KMS_E_INTERNAL, &e);
    enc_context_free(ctx);

    /* Oversized canonical input is refused before it is read. */
    uint8_t *huge = calloc(1, 65536);
    REQUIRE(huge != NULL);
    huge[1] = 1;
    CHECK_ERR(enc_context_parse_canonical(huge, 65536, &back, &e), P11KMS_E_VALIDATION, &e);
    free(huge);

    /* Many small pairs reach the bound too (each pair costs 4 + key + value). */
    ctx = enc_context_new();
    REQUIRE(ctx != NULL);
    p11kms_err rc = P11KMS_OK;
    size_t added = 0;
    for (unsigned i = 0; i < 70000 && rc == P11KMS_OK; i++) {
        char key[8];
        snprintf(key, sizeof(key), "%05u", i);
        rc = enc_context_add(ctx, key, "", &e);
        if (rc == P11KMS_OK)
            added++;
    }
    CHECK(rc == P11KMS_E_VALIDATION);
    CHECK(added == (65535 - 2) / 9 && enc_context_serialized_len(ctx) <= 65535);
    enc_context_free(ctx);

    /* And through JSON. */
    size_t jlen = big + 32;
    char *json = malloc(jlen);
    REQUIRE(json != NULL);
    snprintf(json, jlen, "{\"k\":\"%s\"}", s);
    CHECK_ERR(enc_context_parse_json(json, &ctx, &e), P11KMS_E_VALIDATION, &e);
    CHECK(ctx == NULL);
    free(json);
    free(s);
}

static void test_shorthand(void)
{
    p11kms_error e = {0};
    enc_context *ctx = NULL;
    CHECK_OK(enc_context_parse_shorthand("tier=cluster,cluster=c1", &ctx, &e), &e);
    CHECK(enc_context_count(ctx) == 2 && strcmp(enc_context_get(ctx, "tier"), "cluster") == 0 &&
          strcmp(enc_context_get(ctx, "cluster"), "c1") == 0);
    CHECK(serializes_to(ctx,
                        (const uint8_t *)"\x00\x02\x00\x07"
                                         "cluster"
                                         "\x00\x02"
                                         "c1"
                                         "\x00\x04"
                                         "tier"
                                         "\x00\x07"
                                         "cluster",
                        30));
    enc_context_free(ctx);

    /* Split on the first '=' only; nothing trimmed; empty values and keys kept. */
    CHECK_OK(enc_context_parse_shorthand("url=a=b, sp = x ,empty=", &ctx, &e), &e);
    CHECK(enc_context_count(ctx) == 3);
    CHECK(strcmp(enc_context_get(ctx, "url"), "a=b") == 0);
    CHECK(strcmp(enc_context_get(ctx, " sp "), " x ") == 0);
    CHECK(strcmp(enc_context_get(ctx, "empty"), "") == 0);
    enc_context_free(ctx);
    CHECK_OK(enc_context_parse_shorthand("=v", &ctx, &e), &e);
    CHECK(strcmp(enc_context_get(ctx, ""), "v") == 0);
    enc_context_free(ctx);
    CHECK_OK(enc_context_parse_shorthand("k=\xc3\xa9t\xc3\xa9", &ctx, &e), &e);
    CHECK(strcmp(enc_context_get(ctx, "k"), "\xc3\xa9t\xc3\xa9") == 0);
    enc_context_free(ctx);

    static const char *bad[] = {
        "",
        ",",
        "a=1,",
        ",a=1",
        "a=1,,b=2",
        "a",
        "a=1,b",
        "a=1,a=2",
        "a=1,b=2,a=3",
        "k=\xc0\xaf",
        "k=\xed\xa0\x80",
        "\xff=v",
        "k=\xf4\x90\x80\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ctx = (enc_context *)&ctx;
        CHECK_ERR(enc_context_parse_shorthand(bad[i], &ctx, &e), P11KMS_E_VALIDATION, &e);
        CHECK(ctx == NULL);
    }
    CHECK_ERR(enc_context_parse_shorthand("a=1,b=2,a=3", &ctx, &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "duplicate key \"a\"") != NULL);
    CHECK_ERR(enc_context_parse_shorthand("a=1,,b=2", &ctx, &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "JSON") != NULL);
    CHECK_ERR(enc_context_parse_shorthand("noequals", &ctx, &e), P11KMS_E_VALIDATION, &e);
    CHECK(strstr(e.message, "noequals") != NULL);
    CHECK_ERR(enc_context_parse_shorthand(NULL, &ctx, &e), P11KMS_E_VALIDATION, &e);
}

static void test_json(void)
{
    p11kms_error e = {0};
    enc_context *ctx = NULL;
    CHECK_OK(enc_context_parse_json("{}", &ctx, &e), &e);
    CHECK(enc_context_count(ctx) == 0 && enc_context_serialized_len(ctx) == 0);
    enc_context_free(ctx);
    CHECK_OK(enc_context_parse_json(" \n{ \"b\" : \"2\" ,\t\"a\":\"1\" } \n", &ctx, &e), &e);
    CHECK(enc_context_count(ctx) == 2 && strcmp(enc_context_pairs(ctx)[0].key, "a") == 0);
    enc_context_free(ctx);
    CHECK_OK(enc_context_parse_json("{\"k\":\"\\ud83d\\udd11 \\u00e9\\\"\\\\\\/\\n\"}", &ctx, &e),
             &e);
    CHECK(strcmp(enc_context_get(ctx, "k"), "\xf0\x9f\x94\x91 \xc3\xa9\"\\/\n") == 0);
    enc_context_free(ctx);
    /* A key that only looks like a repeat is a different key. */
    CHECK_OK(enc_context_parse_json("{\"a\":\"x\",\"A\":\"x\",\"a \":\"x\"}", &ctx, &e), &e);
    CHECK(enc_context_count(ctx) == 3);
    enc_context_free(ctx);
    /* Escaped quotes and backslashes do not confuse the member count. */
    CHECK_OK(enc_context_parse_json("{\"a\\\"\":\"\\\\\",\"b\\\\\":\"\\\"\"}", &ctx, &e), &e);
    CHECK(enc_context_count(ctx) == 2 && strcmp(enc_context_get(ctx, "a\""), "\\") == 0);
    enc_context_free(ctx);

    static const struct {
        const char *text;
        const char *why; /* a word the message must contain */
    } bad[] = {
        {"", "malformed"},
        {"   ", "malformed"},
        {"{", "malformed"},
        {"{\"a\":\"b\"", "malformed"},
        {"{\"a\":\"b\",}", "malformed"},
        {"{'a':'b'}", "malformed"},
        {"{a:\"b\"}", "malformed"},
        {"{\"a\":\"b\"} x", "malformed"},
        {"{\"a\":\"b\"}{}", "malformed"},
        {"[]", "object"},
        {"[\"a\",\"b\"]", "object"},
        {"\"a\"", "object"},
        {"null", "malformed"},
        {"null ", "not null"},
        {"{\"a\":1}", "not a string"},
        {"{\"a\":1.5}", "not a string"},
        {"{\"a\":true}", "not a string"},
        {"{\"a\":null}", "not a string"},
        {"{\"a\":[\"x\"]}", "not a string"},
        {"{\"a\":{\"b\":\"c\"}}", "not a string"},
        {"{\"a\":\"x\",\"a\":\"y\"}", "duplicate key \"a\""},
        {"{\"a\":\"x\",\"b\":\"z\",\"a\":\"x\"}", "duplicate key \"a\""},
        {"{\"a\":\"x\",\"\\u0061\":\"y\"}", "duplicate key \"a\""},
        {"{\"\\u00e9\":\"x\",\"\xc3\xa9\":\"y\"}", "duplicate key \"\xc3\xa9\""},
        {"{\"a\":\"\\ud800\"}", "surrogate"},
        {"{\"a\":\"\\udc00\"}", "surrogate"},
        {"{\"a\":\"\\uDBFF x\"}", "surrogate"},
        {"{\"a\":\"\\ud800\\u0041\"}", "surrogate"},
        {"{\"a\":\"\\ud800\\ud800\"}", "surrogate"},
        {"{\"a\":\"\\udc00\\ud800\"}", "surrogate"},
        {"{\"\\ud800\":\"x\"}", "surrogate"},
        {"{\"a\":\"x\\u0000\"}", "NUL"},
        {"{\"a\\u0000\":\"x\"}", "NUL"},
        {"{\"a\\u0000\":\"x\",\"a\":\"y\"}", "NUL"},
        {"{\"a\":\"\xc0\xaf\"}", "UTF-8"},
        {"{\"a\":\"\xed\xa0\x80\"}", "UTF-8"},
        {"{\"\xff\":\"x\"}", "UTF-8"},
        {"{\"a\":\"tab\there\"}", "control"},
        {"{\"a\":\"x\x01\"}", "control"},
        /* json-c accepts a single-quoted member name even in strict mode (found by fuzzing). */
        {"{'a': \"b\"}", "single-quoted"},
        {"{\"a\":\"b\", 'c\": \"d\"': \"e\"}", "single-quoted"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ctx = (enc_context *)&ctx;
        p11kms_err rc = enc_context_parse_json(bad[i].text, &ctx, &e);
        check_count++;
        if (rc != P11KMS_E_VALIDATION || ctx != NULL || strstr(e.message, bad[i].why) == NULL) {
            check_failures++;
            fprintf(stderr, "json case %zu (%s): rc %d, message \"%s\", want \"%s\"\n", i,
                    bad[i].text, rc, e.message, bad[i].why);
        }
    }
    CHECK_ERR(enc_context_parse_json(NULL, &ctx, &e), P11KMS_E_VALIDATION, &e);

    /* The CLI form picks JSON or shorthand. */
    CHECK_OK(enc_context_parse_cli("  {\"a\":\"b,c\"}", &ctx, &e), &e);
    CHECK(strcmp(enc_context_get(ctx, "a"), "b,c") == 0);
    enc_context_free(ctx);
    CHECK_OK(enc_context_parse_cli("a=b", &ctx, &e), &e);
    CHECK(strcmp(enc_context_get(ctx, "a"), "b") == 0);
    enc_context_free(ctx);
    CHECK_ERR(enc_context_parse_cli("{\"a\":1}", &ctx, &e), P11KMS_E_VALIDATION, &e);
    CHECK_ERR(enc_context_parse_cli("", &ctx, &e), P11KMS_E_VALIDATION, &e);

    /* from_json_object refuses what is not a flat object of strings. */
    json_object *arr = json_object_new_array();
    CHECK_ERR(enc_context_from_json_object(arr, &ctx, &e), P11KMS_E_VALIDATION, &e);
    json_object_put(arr);
    CHECK_ERR(enc_context_from_json_object(NULL, &ctx, &e), P11KMS_E_VALIDATION, &e);
}

static void test_canonical_negative(void)
{
    p11kms_error e = {0};
    static const struct {
        const char *bytes;
        size_t len;
        const char *why;
    } bad[] = {
        {"\x00", 1, "truncated"},
        {"\x00\x00", 2, "count 0"},
        {"\x00\x01", 2, "truncated in the key length"},
        {"\x00\x01\x00", 3, "truncated in the key length"},
        {"\x00\x01\x00\x01", 4, "truncated in the key"},
        {"\x00\x01\x00\x01"
         "a",
         5, "truncated in the value length"},
        {"\x00\x01\x00\x01"
         "a\x00\x02"
         "x",
         8, "truncated in the value"},
        {"\x00\x02\x00\x01"
         "a\x00\x01"
         "x",
         8, "pair 2"},
        {"\x00\x01\x00\x01"
         "a\x00\x01"
         "xZ",
         9, "trailing"},
        {"\x00\x01\x00\x01"
         "a\x00\x01"
         "\x80",
         8, "UTF-8"},
        {"\x00\x01\x00\x01"
         "\x00\x00\x00",
         7, "NUL"},
        {"\x00\x02\x00\x01"
         "b\x00\x00\x00\x01"
         "a\x00\x00",
         12, "order"},
        {"\x00\x02\x00\x02"
         "ab\x00\x00\x00\x01"
         "a\x00\x00",
         13, "order"},
        {"\x00\x02\x00\x01"
         "a\x00\x00\x00\x01"
         "a\x00\x00",
         12, "duplicate"},
        {"\xff\xff\x00\x00\x00\x00", 6, "pair 2"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enc_context *ctx = (enc_context *)&ctx;
        p11kms_err rc =
            enc_context_parse_canonical((const uint8_t *)bad[i].bytes, bad[i].len, &ctx, &e);
        check_count++;
        if (rc != P11KMS_E_VALIDATION || ctx != NULL || strstr(e.message, bad[i].why) == NULL) {
            check_failures++;
            fprintf(stderr, "canonical case %zu: rc %d, message \"%s\", want \"%s\"\n", i, rc,
                    e.message, bad[i].why);
        }
    }
    enc_context *ctx = NULL;
    CHECK_OK(enc_context_parse_canonical(NULL, 0, &ctx, &e), &e);
    CHECK(ctx != NULL && enc_context_count(ctx) == 0);
    enc_context_free(ctx);
    /* Empty key and value are valid canonical pairs. */
    CHECK_OK(enc_context_parse_canonical((const uint8_t *)"\x00\x01\x00\x00\x00\x00", 6, &ctx, &e),
             &e);
    CHECK(enc_context_count(ctx) == 1 && strcmp(enc_context_get(ctx, ""), "") == 0);
    enc_context_free(ctx);
}

static void test_equal_and_json_out(void)
{
    p11kms_error e = {0};
    enc_context *a = NULL, *b = NULL, *c = NULL, *d = NULL, *empty = enc_context_new();
    REQUIRE(empty != NULL);
    CHECK_OK(enc_context_parse_shorthand("x=1,y=2", &a, &e), &e);
    CHECK_OK(enc_context_parse_json("{\"y\":\"2\",\"x\":\"1\"}", &b, &e), &e);
    CHECK_OK(enc_context_parse_shorthand("x=1,y=2,z=3", &c, &e), &e);
    CHECK_OK(enc_context_parse_shorthand("X=1,y=2", &d, &e), &e);
    CHECK(enc_context_equal(a, b) && enc_context_equal(b, a));
    CHECK(!enc_context_equal(a, c) && !enc_context_equal(c, a));
    CHECK(!enc_context_equal(a, d));
    CHECK(enc_context_equal(NULL, empty) && enc_context_equal(empty, NULL));
    CHECK(!enc_context_equal(a, NULL));
    enc_context *v = NULL;
    CHECK_OK(enc_context_parse_shorthand("x=1,y=3", &v, &e), &e);
    CHECK(!enc_context_equal(a, v));
    enc_context_free(v);
    CHECK_OK(enc_context_parse_shorthand("x=1,y=2 ", &v, &e), &e);
    CHECK(!enc_context_equal(a, v));
    enc_context_free(v);
    CHECK(enc_context_serialized_len(NULL) == 0 && enc_context_count(NULL) == 0 &&
          enc_context_pairs(NULL) == NULL && enc_context_pairs(empty) == NULL);

    json_object *j = enc_context_to_json(c);
    REQUIRE(j != NULL);
    CHECK(strcmp(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN),
                 "{\"x\":\"1\",\"y\":\"2\",\"z\":\"3\"}") == 0);
    enc_context *back = NULL;
    CHECK_OK(enc_context_from_json_object(j, &back, &e), &e);
    CHECK(enc_context_equal(back, c));
    json_object_put(j);
    enc_context_free(back);
    j = enc_context_to_json(NULL);
    CHECK(j != NULL && json_object_object_length(j) == 0);
    json_object_put(j);

    enc_context_free(a);
    enc_context_free(b);
    enc_context_free(c);
    enc_context_free(d);
    enc_context_free(empty);
}

int main(void)
{
    test_shared_vectors();
    test_utf8();
    test_add();
    test_size_limit();
    test_shorthand();
    test_json();
    test_canonical_negative();
    test_equal_and_json_out();
    return check_finish("format-context-test");
}
