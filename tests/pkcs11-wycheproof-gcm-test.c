/* Wycheproof AES-GCM vectors through the token: each vector's key becomes a session object, and
 * p11_gcm_encrypt/decrypt must reproduce every valid 96-bit-IV/128-bit-tag case exactly, refuse
 * every invalid one, and refuse other IV and tag sizes before reaching the token. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "pkcs11-testutil.h"

static struct {
    int valid, invalid, acceptable, refused_sizes, key_refused;
    int acceptable_ok, acceptable_refused;
} n;

static const char *str(json_object *o, const char *key)
{
    json_object *v = NULL;
    REQUIRE(json_object_object_get_ex(o, key, &v));
    return json_object_get_string(v);
}

static int num(json_object *o, const char *key)
{
    json_object *v = NULL;
    REQUIRE(json_object_object_get_ex(o, key, &v));
    return json_object_get_int(v);
}

/* Hex to a fresh buffer (at least one byte, so that empty values still have an address). */
static uint8_t *unhex_alloc(const char *hex, size_t *len)
{
    size_t cap = strlen(hex) / 2 + 1;
    uint8_t *b = malloc(cap);
    REQUIRE(b != NULL);
    *len = pt_unhex(hex, b, cap);
    return b;
}

static void run_case(p11_token *t, json_object *tc, int iv_bits, int tag_bits)
{
    p11kms_error e = {0};
    int id = num(tc, "tcId");
    const char *result = str(tc, "result");
    size_t key_len, iv_len, aad_len, msg_len, ct_len, tag_len;
    uint8_t *key = unhex_alloc(str(tc, "key"), &key_len);
    uint8_t *iv = unhex_alloc(str(tc, "iv"), &iv_len);
    uint8_t *aad = unhex_alloc(str(tc, "aad"), &aad_len);
    uint8_t *msg = unhex_alloc(str(tc, "msg"), &msg_len);
    uint8_t *ct = unhex_alloc(str(tc, "ct"), &ct_len);
    uint8_t *tag = unhex_alloc(str(tc, "tag"), &tag_len);
    REQUIRE(iv_len * 8 == (size_t)iv_bits && tag_len * 8 == (size_t)tag_bits);

    size_t in_len = ct_len + tag_len;
    uint8_t *in = malloc(in_len + 1), *out = malloc(msg_len + 16 + 1), *back = malloc(in_len + 1);
    REQUIRE(in != NULL && out != NULL && back != NULL);
    memcpy(in, ct, ct_len);
    memcpy(in + ct_len, tag, tag_len);

    p11_key *k = NULL;
    if (p11_key_create_session_aes(t, key, key_len, &k, &e) != P11KMS_OK) {
        n.key_refused++;
        fprintf(stderr, "tcId %d: %zu-byte key refused: %s\n", id, key_len, e.message);
        goto out;
    }

    if (iv_bits != 96 || tag_bits != 128) {
        n.refused_sizes++;
        CHECK_ERR(p11_gcm_encrypt(t, k, iv, iv_len, aad, aad_len, msg, msg_len, out, tag_len, &e),
                  P11KMS_E_VALIDATION, &e);
        CHECK_ERR(p11_gcm_decrypt(t, k, iv, iv_len, aad, aad_len, in, in_len, tag_len, back, &e),
                  P11KMS_E_VALIDATION, &e);
    } else if (strcmp(result, "valid") == 0) {
        n.valid++;
        CHECK_OK(p11_gcm_encrypt(t, k, iv, iv_len, aad, aad_len, msg, msg_len, out, 16, &e), &e);
        CHECK(memcmp(out, in, in_len) == 0);
        if (memcmp(out, in, in_len) != 0)
            fprintf(stderr, "tcId %d: ciphertext differs\n", id);
        CHECK_OK(p11_gcm_decrypt(t, k, iv, iv_len, aad, aad_len, in, in_len, 16, back, &e), &e);
        CHECK(memcmp(back, msg, msg_len) == 0);
    } else if (strcmp(result, "invalid") == 0) {
        n.invalid++;
        memset(back, 0xa5, in_len + 1);
        p11kms_err rc = p11_gcm_decrypt(t, k, iv, iv_len, aad, aad_len, in, in_len, 16, back, &e);
        CHECK(rc == P11KMS_E_INVALID_CIPHERTEXT);
        if (rc != P11KMS_E_INVALID_CIPHERTEXT)
            fprintf(stderr, "tcId %d: invalid case gave %s\n", id, p11kms_error_class(rc));
        size_t i = 0;
        while (i <= in_len && back[i] == 0xa5)
            i++;
        CHECK(i == in_len + 1);
    } else {
        n.acceptable++;
        p11kms_err rc = p11_gcm_decrypt(t, k, iv, iv_len, aad, aad_len, in, in_len, 16, back, &e);
        if (rc == P11KMS_OK && memcmp(back, msg, msg_len) == 0)
            n.acceptable_ok++;
        else
            n.acceptable_refused++;
        fprintf(stderr, "tcId %d (acceptable): %s\n", id,
                rc == P11KMS_OK ? "decrypted" : p11kms_error_class(rc));
    }
    CHECK_OK(p11_key_destroy(t, k, &e), &e);
out:
    free(key);
    free(iv);
    free(aad);
    free(msg);
    free(ct);
    free(tag);
    free(in);
    free(out);
    free(back);
}

int main(void)
{
    p11_token_config cfg = pt_config();
    p11_token *t = pt_open(&cfg);
    json_object *root =
        json_object_from_file(test_vector_path("wycheproof/aes_gcm_test.json"));
    REQUIRE(root != NULL);
    json_object *groups = NULL;
    REQUIRE(json_object_object_get_ex(root, "testGroups", &groups));
    size_t ng = json_object_array_length(groups);
    for (size_t g = 0; g < ng; g++) {
        json_object *group = json_object_array_get_idx(groups, g);
        int iv_bits = num(group, "ivSize"), tag_bits = num(group, "tagSize");
        json_object *tests = NULL;
        REQUIRE(json_object_object_get_ex(group, "tests", &tests));
        size_t nt = json_object_array_length(tests);
        for (size_t i = 0; i < nt; i++)
            run_case(t, json_object_array_get_idx(tests, i), iv_bits, tag_bits);
    }
    json_object_put(root);
    p11_token_close(t);
    fprintf(stderr,
            "wycheproof aes_gcm: %d valid, %d invalid, %d refused for IV/tag size, %d acceptable "
            "(%d decrypted, %d refused), %d keys refused by the token\n",
            n.valid, n.invalid, n.refused_sizes, n.acceptable, n.acceptable_ok,
            n.acceptable_refused, n.key_refused);
    CHECK(n.valid > 0);
    CHECK(n.invalid > 0);
    CHECK(n.refused_sizes > 0);
    return check_finish("pkcs11-wycheproof-gcm-test");
}
