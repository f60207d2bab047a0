/* keymeta_encode under allocation failure: the test program replaces malloc, calloc and realloc
 * (glibc lets a program do so for the whole process, json-c included) and makes the Nth
 * allocation fail, for every N until the encoding succeeds. Each failing run must return
 * P11KMS_E_NO_MEMORY with no output; the run that succeeds must produce the full record. Before
 * the json-c results were checked, a failed json_object_new_string became a null field: an OK
 * result with a record that cannot be read back. */
#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <string.h>

#include <json-c/json.h>

#include "check.h"
#include "provider/keymeta.h"

#include "failalloc.h"

#ifndef FAILALLOC_AVAILABLE
int main(void)
{
    /* AddressSanitizer owns malloc and cannot share it with the replacement; the normal and
     * valgrind builds run the test. */
    fprintf(stderr, "service-keymeta-oom-test: skipped under AddressSanitizer\n");
    return 77;
}
#else

/* The build hides symbols by default; the replacement must be seen by libc and json-c. */
#define REPLACEMENT __attribute__((visibility("default")))

/* keymeta_encode reads its text back with json_tokener_parse to catch what json-c's serializer
 * does not report. json-c's tokener itself crashes on some allocation failures (a NULL key
 * copy), as it would in any decode; the injection therefore pauses while it runs, and the test
 * covers every allocation of building and serializing the record. */
REPLACEMENT json_object *json_tokener_parse(const char *text)
{
    static json_object *(*real)(const char *);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "json_tokener_parse");
    REQUIRE(real != NULL);
    failalloc_pause();
    json_object *o = real(text);
    failalloc_resume();
    return o;
}

/* A record with every optional part: versions, aliases, tags, expiration and check value. */
static key_meta *sample(void)
{
    key_meta *m = calloc(1, sizeof(*m));
    REQUIRE(m != NULL);
    REQUIRE(uuid_parse("0f8e4a7c-1d2b-4c3d-8e9f-a0b1c2d3e4f5", m->id));
    uuid_format(m->id, m->id_text);
    m->state = P11KMS_KEY_ENABLED;
    m->origin = P11KMS_ORIGIN_TOKEN;
    m->created = 1700000000;
    m->rotation_period_days = 365;
    REQUIRE(keymeta_set_description(m, "orders key"));
    REQUIRE(keymeta_add_version(m, 1, 1700000000, ROTATION_INITIAL));
    REQUIRE(keymeta_add_version(m, 2, 1700000100, ROTATION_ON_DEMAND));
    REQUIRE(keymeta_add_alias(m, "alias/orders"));
    REQUIRE(keymeta_add_alias(m, "alias/orders-2"));
    REQUIRE(keymeta_set_tag(m, "team", "payments"));
    REQUIRE(keymeta_set_tag(m, "env", "prod"));
    m->expiration = EXPIRATION_EXPIRES;
    m->valid_to = 1800000000;
    m->material_kcv_len = 3;
    memcpy(m->material_kcv, "\x01\xab\xff", 3);
    return m;
}

int main(void)
{
    key_meta *m = sample();
    char *want = NULL;
    size_t want_len = 0;
    p11kms_error e = {0};
    CHECK_OK(keymeta_encode(m, &want, &want_len, &e), &e);
    REQUIRE(want != NULL);
    CHECK(strstr(want, "\"material_kcv\":\"01abff\"") != NULL);

    long failures = 0;
    for (long n = 0; n < 100000; n++) {
        char *text = (char *)"untouched";
        size_t len = 0;
        failalloc_arm(n);
        p11kms_err rc = keymeta_encode(m, &text, &len, &e);
        long attempts = failalloc_attempts();
        failalloc_disarm();
        if (rc == P11KMS_OK) {
            /* Success, whether or not allocation n was one of the encoding's (json-c copes with
             * some failures): the record must be the full one. */
            bool full = len == want_len && memcmp(text, want, len) == 0;
            CHECK(full);
            if (!full)
                fprintf(stderr, "  allocation %ld failed, record still written: %s\n", n, text);
            free(text);
        } else {
            failures++;
            CHECK(rc == P11KMS_E_NO_MEMORY);
            CHECK(text == NULL);
        }
        if (attempts <= n)
            break; /* every allocation of the encoding has been made to fail once */
    }
    /* The sample needs dozens of allocations: a loop that stopped early tested nothing. */
    CHECK(failures > 20);
    fprintf(stderr, "service-keymeta-oom-test: %ld allocation failures injected\n", failures);
    free(want);
    keymeta_free(m);
    return check_finish("service-keymeta-oom-test");
}
#endif
