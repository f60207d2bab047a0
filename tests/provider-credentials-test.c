/* SigV4 credentials on a real SoftHSM token: create (format of ids and secrets), list, the
 * signing key chain (against OpenSSL and the AWS documentation's example), requests signed by
 * botocore with a token credential verified by provider/daemon/sigv4.c through
 * p11kms_sigv4_signing_key, deletion seen by another service handle, bad input, and the policy
 * actions create-credentials / list-credentials / delete-credentials. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "pkcs11/hmac.h"
#include "provider/daemon/sigv4.h"
#include "provider/service.h"

static p11kms_error e;

static void hmac(const uint8_t *key, size_t key_len, const char *msg, uint8_t out[32])
{
    unsigned n = 0;
    REQUIRE(HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)msg, strlen(msg), out, &n) !=
            NULL);
}

/* kSigning computed by OpenSSL from the secret itself. */
static void reference_key(const char *secret, const char *date, const char *region,
                          const char *service, uint8_t out[32])
{
    char first[64];
    snprintf(first, sizeof(first), "AWS4%s", secret);
    uint8_t a[32], b[32];
    hmac((const uint8_t *)first, strlen(first), date, a);
    hmac(a, 32, region, b);
    hmac(b, 32, service, a);
    hmac(a, 32, "aws4_request", out);
    OPENSSL_cleanse(first, sizeof(first));
}

static int collect(const p11kms_credential *c, void *arg)
{
    char line[128];
    snprintf(line, sizeof(line), "%s=%s", c->access_key_id, c->principal_name);
    fx_list_add(arg, line);
    return 0;
}

static bool listed(p11kms *svc, const p11kms_principal *who, const char *akid, const char *name)
{
    fx_list l = {0};
    CHECK_OK(p11kms_credentials_list(svc, who, collect, &l, &e), &e);
    char want[128];
    snprintf(want, sizeof(want), "%s=%s", akid, name);
    bool found = fx_list_has(&l, want);
    fx_list_free(&l);
    return found;
}

static bool unhex32(const char *hex, uint8_t out[32])
{
    if (strlen(hex) != 64)
        return false;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return false;
        out[i] = (uint8_t)v;
    }
    return true;
}

static bool akid_format(const char *id)
{
    if (strlen(id) != 20 || strncmp(id, "PKMS", 4) != 0)
        return false;
    for (int i = 4; i < 20; i++)
        if (!((id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '2' && id[i] <= '7')))
            return false;
    return true;
}

static bool secret_format(const char *s)
{
    if (strlen(s) != 40)
        return false;
    for (int i = 0; i < 40; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

/* --- botocore-signed requests verified through the token -------------------------------------- */

static p11kms_err token_key(void *arg, const char *akid, const char *date, const char *region,
                            const char *service, uint8_t key[32], char *principal_name, size_t size,
                            p11kms_error *err)
{
    return p11kms_sigv4_signing_key(arg, akid, date, region, service, key, principal_name, size,
                                    err);
}

typedef struct signed_req {
    char *names[16], *values[16];
    size_t count;
    uint8_t body[512];
    size_t body_len;
    long long now;
    char region[32];
} signed_req;

static json_object *sign_with_botocore(const char *akid, const char *secret)
{
    char path[4096], cmd[8192];
    snprintf(path, sizeof(path), "%s/token-signed.json", test_env("P11KMS_TEST_ROOT"));
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 '%s/tests/daemon-sigv4-gen.py' --credentials-from-stdin > '%s'",
             test_env("P11KMS_SRCDIR"), path);
    FILE *p = popen(cmd, "w");
    REQUIRE(p != NULL);
    fprintf(p, "%s\n%s\n", akid, secret);
    if (pclose(p) != 0) {
        fprintf(stderr, "%s failed (apt-get install python3-botocore)\n", cmd);
        exit(99);
    }
    json_object *root = json_object_from_file(path);
    REQUIRE(root != NULL && json_object_array_length(root) == 2);
    return root;
}

static void load_req(json_object *o, signed_req *r)
{
    memset(r, 0, sizeof(*r));
    json_object *v;
    REQUIRE(json_object_object_get_ex(o, "headers", &v));
    r->count = json_object_array_length(v);
    REQUIRE(r->count <= 16);
    for (size_t i = 0; i < r->count; i++) {
        json_object *pair = json_object_array_get_idx(v, i);
        r->names[i] = strdup(json_object_get_string(json_object_array_get_idx(pair, 0)));
        r->values[i] = strdup(json_object_get_string(json_object_array_get_idx(pair, 1)));
        REQUIRE(r->names[i] != NULL && r->values[i] != NULL);
    }
    REQUIRE(json_object_object_get_ex(o, "body", &v));
    const char *b64 = json_object_get_string(v);
    int n = EVP_DecodeBlock(r->body, (const uint8_t *)b64, (int)strlen(b64));
    REQUIRE(n >= 0);
    r->body_len = (size_t)n;
    for (const char *q = b64 + strlen(b64); q > b64 && q[-1] == '='; q--)
        r->body_len--;
    REQUIRE(json_object_object_get_ex(o, "now", &v));
    r->now = json_object_get_int64(v);
    REQUIRE(json_object_object_get_ex(o, "region", &v));
    snprintf(r->region, sizeof(r->region), "%s", json_object_get_string(v));
}

static void free_req(signed_req *r)
{
    for (size_t i = 0; i < r->count; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
}

static sigv4_status verify(p11kms *svc, const signed_req *r, sigv4_result *res)
{
    sigv4_header hs[16];
    for (size_t i = 0; i < r->count; i++)
        hs[i] =
            (sigv4_header){r->names[i], strlen(r->names[i]), r->values[i], strlen(r->values[i])};
    sigv4_request req = {"POST", "/", "", hs, r->count, r->body, r->body_len};
    sigv4_expect ex = {r->region, "kms", (time_t)r->now, svc->libctx, token_key, svc};
    return sigv4_verify(&req, &ex, res);
}

static void test_end_to_end(p11kms *svc, p11kms *other, const p11kms_principal *who)
{
    fx_say("requests signed by botocore with a token credential verify through the token");
    p11kms_credential c;
    char *secret = NULL;
    CHECK_OK(p11kms_credentials_create(svc, who, "etl.service@example", &c, &secret, &e), &e);
    REQUIRE(secret != NULL);
    json_object *root = sign_with_botocore(c.access_key_id, secret);
    p11kms_secret_free(secret);
    signed_req r[2];
    for (size_t i = 0; i < 2; i++)
        load_req(json_object_array_get_idx(root, i), &r[i]);
    json_object_put(root);
    char principal[64];
    snprintf(principal, sizeof(principal), "sigv4:%s", c.access_key_id);
    for (size_t i = 0; i < 2; i++) {
        sigv4_result res;
        CHECK(verify(svc, &r[i], &res) == SIGV4_OK);
        CHECK(strcmp(res.principal, principal) == 0);
        CHECK(strcmp(res.principal_name, "etl.service@example") == 0);
        CHECK(strcmp(res.access_key_id, c.access_key_id) == 0);
        if (res.status != SIGV4_OK)
            fprintf(stderr, "  %s: %s\n", res.error_class, res.message);
    }
    fx_say("a changed body is refused through the token path too");
    r[0].body[1] ^= 1;
    sigv4_result res;
    CHECK(verify(svc, &r[0], &res) == SIGV4_INVALID);
    r[0].body[1] ^= 1;

    fx_say("deleted by another service handle: refused at once as an unknown access key");
    CHECK_OK(p11kms_credentials_delete(other, who, c.access_key_id, &e), &e);
    CHECK(verify(svc, &r[0], &res) == SIGV4_UNKNOWN_KEY);
    CHECK(strcmp(res.error_class, "UnrecognizedClientException") == 0);
    CHECK(verify(svc, &r[1], &res) == SIGV4_UNKNOWN_KEY);
    for (size_t i = 0; i < 2; i++)
        free_req(&r[i]);
}

/* --- the rest ----------------------------------------------------------------------------------
 */

static void test_create_list_derive(p11kms *svc, const p11kms_principal *who)
{
    fx_say("create: access key id PKMS + 16 base32, secret 40 base64 characters");
    p11kms_credential c1, c2;
    char *s1 = NULL, *s2 = NULL;
    CHECK_OK(p11kms_credentials_create(svc, who, "app-one", &c1, &s1, &e), &e);
    CHECK_OK(p11kms_credentials_create(svc, who, "app-one", &c2, &s2, &e), &e);
    REQUIRE(s1 != NULL && s2 != NULL);
    CHECK(akid_format(c1.access_key_id) && akid_format(c2.access_key_id));
    CHECK(secret_format(s1) && secret_format(s2));
    CHECK(strcmp(c1.access_key_id, c2.access_key_id) != 0 && strcmp(s1, s2) != 0);
    CHECK(strcmp(c1.principal_name, "app-one") == 0);
    CHECK(CRYPTO_secure_allocated(s1));

    fx_say("list: both, with their principal names");
    CHECK(listed(svc, who, c1.access_key_id, "app-one"));
    CHECK(listed(svc, who, c2.access_key_id, "app-one"));

    fx_say("signing key: the token's chain equals OpenSSL's from the secret");
    uint8_t got[32], want[32];
    char name[80];
    CHECK_OK(p11kms_sigv4_signing_key(svc, c1.access_key_id, "20261130", "us-east-1", "kms", got,
                                      name, sizeof(name), &e),
             &e);
    reference_key(s1, "20261130", "us-east-1", "kms", want);
    CHECK(memcmp(got, want, 32) == 0);
    CHECK(strcmp(name, "app-one") == 0);
    CHECK_OK(p11kms_sigv4_signing_key(svc, c1.access_key_id, "20261201", "eu-west-1", "kms", got,
                                      name, sizeof(name), &e),
             &e);
    CHECK(memcmp(got, want, 32) != 0);
    reference_key(s1, "20261201", "eu-west-1", "kms", want);
    CHECK(memcmp(got, want, 32) == 0);
    CHECK_OK(p11kms_sigv4_signing_key(svc, c2.access_key_id, "20261130", "us-east-1", "kms", got,
                                      NULL, 0, &e),
             &e);
    reference_key(s2, "20261130", "us-east-1", "kms", want);
    CHECK(memcmp(got, want, 32) == 0);
    p11kms_secret_free(s1);
    p11kms_secret_free(s2);
    p11kms_secret_free(NULL);

    fx_say("delete: gone from the list and from signing; a second delete is NotFound");
    CHECK_OK(p11kms_credentials_delete(svc, who, c1.access_key_id, &e), &e);
    CHECK(!listed(svc, who, c1.access_key_id, "app-one"));
    CHECK(listed(svc, who, c2.access_key_id, "app-one"));
    CHECK_ERR(p11kms_sigv4_signing_key(svc, c1.access_key_id, "20261130", "us-east-1", "kms", got,
                                       NULL, 0, &e),
              P11KMS_E_NOT_FOUND, &e);
    CHECK_ERR(p11kms_credentials_delete(svc, who, c1.access_key_id, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK(fx_msg_has(&e, c1.access_key_id));
    CHECK_OK(p11kms_credentials_delete(svc, who, c2.access_key_id, &e), &e);
}

/* The example of the AWS documentation ("derive a signing key"): secret
 * wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam. Stored the way
 * p11kms_credentials_create stores a secret. */
static void test_aws_example(p11kms *svc, const p11kms_principal *who)
{
    fx_say("the AWS documentation's signing key example, through the token");
    static const char akid[] = "PKMSEXAMPLEKEYAAAAAA";
    static const char value[] = "AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    static const char id[] = "p11kms-sigv4:PKMSEXAMPLEKEYAAAAAA";
    p11_key *k = NULL;
    CHECK_OK(p11_hmac_import(svc->token, (const uint8_t *)id, strlen(id),
                             "p11kms-sigv4:PKMSEXAMPLEKEYAAAAAA:example", (const uint8_t *)value,
                             strlen(value), &k, &e),
             &e);
    uint8_t got[32], want[32];
    REQUIRE(unhex32("f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d", want));
    char name[80];
    CHECK_OK(p11kms_sigv4_signing_key(svc, akid, "20120215", "us-east-1", "iam", got, name,
                                      sizeof(name), &e),
             &e);
    CHECK(memcmp(got, want, 32) == 0);
    CHECK(strcmp(name, "example") == 0);
    CHECK(listed(svc, who, akid, "example"));
    CHECK_OK(p11kms_credentials_delete(svc, who, akid, &e), &e);
}

static void test_bad_input(p11kms *svc, const p11kms_principal *who)
{
    fx_say("bad principal names, access key ids and scopes are refused");
    p11kms_credential c;
    char *s = NULL;
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    const char *bad_names[] = {"", "a b", "x/y", "tab\t", "quote\"", "é", long_name, NULL};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        CHECK_ERR(p11kms_credentials_create(svc, who, bad_names[i], &c, &s, &e),
                  P11KMS_E_VALIDATION, &e);
        CHECK(s == NULL);
    }
    long_name[64] = '\0';
    CHECK_OK(p11kms_credentials_create(svc, who, long_name, &c, &s, &e), &e);
    CHECK(listed(svc, who, c.access_key_id, long_name));
    CHECK_OK(p11kms_credentials_delete(svc, who, c.access_key_id, &e), &e);
    p11kms_secret_free(s);

    uint8_t key[32];
    const char *bad_ids[] = {"",
                             "PKMS",
                             "AKIAIOSFODNN7EXAMPLE",
                             "PKMSAAAAAAAAAAAAAAA1",
                             "pkmsAAAAAAAAAAAAAAAA",
                             "PKMSAAAAAAAAAAAAAAAAA",
                             NULL};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        CHECK_ERR(p11kms_sigv4_signing_key(svc, bad_ids[i], "20261130", "us-east-1", "kms", key,
                                           NULL, 0, &e),
                  P11KMS_E_NOT_FOUND, &e);
        CHECK_ERR(p11kms_credentials_delete(svc, who, bad_ids[i], &e), P11KMS_E_NOT_FOUND, &e);
    }
    CHECK_ERR(p11kms_sigv4_signing_key(svc, "PKMSAAAAAAAAAAAAAAAA", "20261130", "us-east-1", "kms",
                                       key, NULL, 0, &e),
              P11KMS_E_NOT_FOUND, &e);
    const char *bad_dates[] = {"2026113", "2026113x", "202611300", "", NULL};
    for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++)
        CHECK_ERR(p11kms_sigv4_signing_key(svc, "PKMSAAAAAAAAAAAAAAAA", bad_dates[i], "us-east-1",
                                           "kms", key, NULL, 0, &e),
                  P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_sigv4_signing_key(svc, "PKMSAAAAAAAAAAAAAAAA", "20261130", "US-EAST-1", "kms",
                                       key, NULL, 0, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_sigv4_signing_key(svc, "PKMSAAAAAAAAAAAAAAAA", "20261130", "us-east-1", "",
                                       key, NULL, 0, &e),
              P11KMS_E_VALIDATION, &e);
    CHECK_ERR(p11kms_credentials_create(svc, who, "x", NULL, &s, &e), P11KMS_E_VALIDATION, &e);

    fx_say("a master key is never taken for a credential");
    char id[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "not a credential", id);
    fx_list l = {0};
    CHECK_OK(p11kms_credentials_list(svc, who, collect, &l, &e), &e);
    CHECK(l.count == 0);
    fx_list_free(&l);
}

static const char policy_text[] =
    "version: 1\n"
    "global:\n"
    "  - sid: credential-admins\n"
    "    effect: allow\n"
    "    principals: [unix:user:alice]\n"
    "    actions: [create-credentials, delete-credentials, list-credentials]\n"
    "  - sid: auditors\n"
    "    effect: allow\n"
    "    principals: [unix:user:carol]\n"
    "    actions: [list-credentials]\n";

static void test_policy(void)
{
    fx_say("policy: alice manages credentials, carol lists, bob gets nothing");
    char *policy = fx_write_file("credentials-policy.yaml", policy_text);
    CHECK_OK(p11kms_policy_check_file(policy, NULL, NULL, &e), &e);
    char *cfg = fx_config("credentials-policy.yaml.conf", NULL, NULL, policy);
    p11kms *svc = fx_open(cfg);
    p11kms_principal *alice = fx_principal("unix:user:alice");
    p11kms_principal *bob = fx_principal("unix:user:bob");
    p11kms_principal *carol = fx_principal("unix:user:carol");
    p11kms_credential c;
    char *s = NULL;
    CHECK_ERR(p11kms_credentials_create(svc, bob, "app", &c, &s, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(s == NULL);
    CHECK_ERR(p11kms_credentials_create(svc, carol, "app", &c, &s, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(p11kms_credentials_create(svc, alice, "app", &c, &s, &e), &e);
    p11kms_secret_free(s);
    fx_list l = {0};
    CHECK_ERR(p11kms_credentials_list(svc, bob, collect, &l, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(l.count == 0);
    CHECK(listed(svc, carol, c.access_key_id, "app"));
    CHECK_ERR(p11kms_credentials_delete(svc, bob, c.access_key_id, &e), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(p11kms_credentials_delete(svc, carol, c.access_key_id, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    CHECK(listed(svc, alice, c.access_key_id, "app"));
    CHECK_OK(p11kms_credentials_delete(svc, alice, c.access_key_id, &e), &e);
    p11kms_principal_free(alice);
    p11kms_principal_free(bob);
    p11kms_principal_free(carol);
    p11kms_close(svc);
    free(cfg);
    free(policy);
}

int main(void)
{
    p11kms *svc = fx_open(NULL);
    p11kms *other = fx_open(NULL);
    p11kms_principal *who = fx_principal("unix:user:admin");
    test_create_list_derive(svc, who);
    test_aws_example(svc, who);
    test_end_to_end(svc, other, who);
    test_bad_input(svc, who);
    p11kms_principal_free(who);
    p11kms_close(other);
    p11kms_close(svc);
    test_policy();
    return check_finish("provider-credentials-test");
}
