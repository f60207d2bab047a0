/* Fuzz target: key references as callers write them (key id, alias/NAME, key ARN, alias ARN)
 * and alias names. The reference is a C string, so the input stops at its first NUL byte.
 *
 * Invariants: an accepted reference resolves to a canonical form (a lower-case UUID, or a valid
 * alias name) that parses to itself, and whose ARN parses to it again; a refusal is one of the
 * documented errors with a message; the key id of a reference is never longer than its slot. */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "provider/keymeta.h"
#include "provider/keyref.h"

static service_config cfg = {.partition = "aws",
                             .region = "eu-west-3",
                             .account = "111122223333",
                             .key_arn_prefix = "arn:aws:kms:eu-west-3:111122223333:key/"};

static void check_accepted(keyref_kind kind, const char *out)
{
    p11kms_error err = {0};
    size_t n = strlen(out);
    FUZZ_ASSERT(n > 0 && n < P11KMS_ALIAS_MAX);
    char arn[P11KMS_ARN_MAX];
    if (kind == KEYREF_ID) {
        uint8_t id[KEY_UUID_LEN];
        char text[P11KMS_KEY_ID_LEN + 1];
        FUZZ_ASSERT(n == P11KMS_KEY_ID_LEN && uuid_parse(out, id));
        uuid_format(id, text);
        FUZZ_ASSERT(strcmp(text, out) == 0); /* canonical: lower case */
        keyref_key_arn(&cfg, out, arn);
    } else {
        FUZZ_ASSERT(kind == KEYREF_ALIAS);
        FUZZ_ASSERT(keyref_check_alias_name(out, &err) == P11KMS_OK);
        keyref_alias_arn(&cfg, out, arn);
    }
    const char *forms[] = {out, arn};
    for (size_t i = 0; i < 2; i++) {
        keyref_kind again_kind;
        char again[P11KMS_ALIAS_MAX];
        FUZZ_ASSERT(keyref_parse(&cfg, forms[i], &again_kind, again, &err) == P11KMS_OK);
        FUZZ_ASSERT(again_kind == kind && strcmp(again, out) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *ref = malloc(size + 1);
    if (ref == NULL)
        return 0;
    memcpy(ref, data, size);
    ref[size] = '\0';

    keyref_kind kind;
    char out[P11KMS_ALIAS_MAX];
    p11kms_error err = {0};
    p11kms_err rc = keyref_parse(&cfg, ref, &kind, out, &err);
    if (rc == P11KMS_OK) {
        check_accepted(kind, out);
    } else {
        FUZZ_ASSERT(rc == P11KMS_E_NOT_FOUND || rc == P11KMS_E_INVALID_ARN ||
                    rc == P11KMS_E_VALIDATION);
        FUZZ_ASSERT(err.code == rc && err.message[0] != '\0');
    }

    /* The alias-name check on its own: accepted names are exactly alias/ + 1..250 of the
     * documented characters, not under alias/aws/. */
    p11kms_error aerr = {0};
    bool ok = keyref_check_alias_name(ref, &aerr) == P11KMS_OK;
    size_t n = strlen(ref);
    bool expect = n > 6 && n <= 6 + 250 && strncmp(ref, "alias/", 6) == 0 &&
                  strncmp(ref, "alias/aws/", 10) != 0 &&
                  strspn(ref + 6, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789/_-") == n - 6;
    FUZZ_ASSERT(ok == expect);
    FUZZ_ASSERT(ok || (aerr.code == P11KMS_E_INVALID_ALIAS && aerr.message[0] != '\0'));
    /* A valid alias name is accepted as a reference too, as itself. */
    if (ok) {
        FUZZ_ASSERT(rc == P11KMS_OK && kind == KEYREF_ALIAS && strcmp(out, ref) == 0);
    }

    /* UUID text: parse -> format gives the lower-case spelling of the same bytes. */
    uint8_t id[KEY_UUID_LEN];
    if (uuid_parse(ref, id)) {
        char text[P11KMS_KEY_ID_LEN + 1];
        uuid_format(id, text);
        FUZZ_ASSERT(strlen(text) == P11KMS_KEY_ID_LEN);
        for (size_t i = 0; i < P11KMS_KEY_ID_LEN; i++)
            FUZZ_ASSERT(text[i] == (ref[i] >= 'A' && ref[i] <= 'F' ? ref[i] - 'A' + 'a' : ref[i]));
    }
    free(ref);
    return 0;
}
