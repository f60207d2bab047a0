#include "config.h"

/* Imported key material through the library: conf/policy.yaml lets administrators import and
 * refuses services; expired import tokens; expiry of material (lazily on access and by
 * maintain); maintain destroys expired wrapping key pairs; Wycheproof RSA-OAEP and AES-KWP
 * vectors through the token's unwrap path; kill -9 during import leaves PendingImport without a
 * material object, or Enabled. */

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "lib/softhsm-guard.h"
#include "p11kms.h"
#include "pkcs11/rsa-wrap.h"
#include "provider/import-token.h"
#include "provider/keystore.h"
#include "provider/service.h"

static p11kms_error e;

/* --- a client: OpenSSL only ---------------------------------------------------------------------
 */

/* RSAES_OAEP_SHA_1 of material under the DER public key. */
static size_t client_wrap(const p11kms_import_parameters *p, const uint8_t *material, size_t len,
                          uint8_t out[512])
{
    const unsigned char *der = p->public_key;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &der, (long)p->public_key_len);
    REQUIRE(pub != NULL);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    size_t out_len = 512;
    REQUIRE(ctx != NULL && EVP_PKEY_encrypt_init(ctx) > 0 &&
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) > 0 &&
            EVP_PKEY_encrypt(ctx, out, &out_len, material, len) > 0);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pub);
    return out_len;
}

static p11kms_err get_params(p11kms *svc, const p11kms_principal *who, const char *key,
                             p11kms_import_parameters *p)
{
    return p11kms_get_parameters_for_import(svc, who, key, "RSAES_OAEP_SHA_1", "RSA_2048", p, &e);
}

static p11kms_err import_as(p11kms *svc, const p11kms_principal *who, const char *key,
                            const p11kms_import_parameters *p, const uint8_t material[32],
                            const char *model, int64_t valid_to)
{
    uint8_t wrapped[512];
    size_t n = client_wrap(p, material, 32, wrapped);
    p11kms_import_input in = {wrapped, n, p->import_token, p->import_token_len, model, valid_to};
    return p11kms_import_key_material(svc, who, key, &in, &e);
}

static p11kms_key_state state_of(p11kms *svc, const p11kms_principal *who, const char *key)
{
    p11kms_key_metadata m;
    REQUIRE(p11kms_describe_key(svc, who, key, &m, &e) == P11KMS_OK);
    return m.state;
}

/* Whether the token holds the key's material object (version 1). */
static bool has_material(p11kms *svc, const char *key)
{
    uint8_t id[16];
    p11_key *k = NULL;
    REQUIRE(uuid_parse(key, id));
    p11kms_error probe = {0};
    p11kms_err rc = keystore_version_find(svc, id, 1, &k, &probe);
    REQUIRE(rc == P11KMS_OK || rc == P11KMS_E_NOT_FOUND);
    return rc == P11KMS_OK;
}

/* --- policy
 * --------------------------------------------------------------------------------------- */

static void test_policy(void)
{
    fx_say("conf/policy.yaml: key administrators import, services cannot");
    char policy[4096];
    snprintf(policy, sizeof(policy), "%s/conf/policy.yaml", test_env("P11KMS_SRCDIR"));
    char *config = fx_config("policy-config.yaml", NULL, NULL, policy);
    p11kms *svc = fx_open(config);
    p11kms_principal *alice = fx_principal("unix:user:alice");
    p11kms_principal *rds = fx_principal("unix:user:rds-svc");
    p11kms_principal *etl = fx_principal("unix:user:etl-svc");
    p11kms_create_key_input in = {.origin = "EXTERNAL"};
    p11kms_key_metadata m;
    CHECK_OK(p11kms_create_key(svc, alice, &in, &m, &e), &e);
    p11kms_import_parameters p = {0};
    CHECK_ERR(get_params(svc, rds, m.key_id, &p), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(get_params(svc, etl, m.key_id, &p), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_OK(get_params(svc, alice, m.key_id, &p), &e);
    uint8_t material[32];
    REQUIRE(RAND_bytes(material, sizeof(material)) == 1);
    CHECK_ERR(import_as(svc, rds, m.key_id, &p, material, NULL, 0), P11KMS_E_ACCESS_DENIED, &e);
    CHECK_ERR(import_as(svc, etl, m.key_id, &p, material, NULL, 0), P11KMS_E_ACCESS_DENIED, &e);
    CHECK(state_of(svc, alice, m.key_id) == P11KMS_KEY_PENDING_IMPORT);
    CHECK_OK(import_as(svc, alice, m.key_id, &p, material, NULL, 0), &e);
    CHECK(state_of(svc, alice, m.key_id) == P11KMS_KEY_ENABLED);
    CHECK_ERR(p11kms_delete_imported_key_material(svc, rds, m.key_id, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    CHECK_ERR(p11kms_delete_imported_key_material(svc, etl, m.key_id, &e), P11KMS_E_ACCESS_DENIED,
              &e);
    CHECK(state_of(svc, alice, m.key_id) == P11KMS_KEY_ENABLED);
    CHECK_OK(p11kms_delete_imported_key_material(svc, alice, m.key_id, &e), &e);
    CHECK(state_of(svc, alice, m.key_id) == P11KMS_KEY_PENDING_IMPORT);
    p11kms_import_parameters_free(&p);
    p11kms_principal_free(alice);
    p11kms_principal_free(rds);
    p11kms_principal_free(etl);
    p11kms_close(svc);
    free(config);
}

/* --- import tokens, expiry, maintenance ----------------------------------------------------------
 */

static void test_tokens_and_expiry(p11kms *svc, const p11kms_principal *who)
{
    fx_say("an expired import token is ExpiredImportTokenException, one naming an unknown "
           "algorithm InvalidImportTokenException");
    p11kms_create_key_input in = {.origin = "EXTERNAL"};
    p11kms_key_metadata m;
    CHECK_OK(p11kms_create_key(svc, who, &in, &m, &e), &e);
    p11kms_import_parameters p = {0};
    CHECK_OK(get_params(svc, who, m.key_id, &p), &e);
    import_token tok;
    CHECK_OK(import_token_open(svc, p.import_token, p.import_token_len, &tok, &e), &e);
    CHECK(tok.expires == p.parameters_valid_to);
    uint8_t material[32];
    REQUIRE(RAND_bytes(material, sizeof(material)) == 1);
    uint8_t *good = p.import_token;
    uint8_t forged[IMPORT_TOKEN_LEN];
    tok.expires = service_now() - 1;
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    CHECK_OK(import_token_seal(svc, &tok, forged, &e), &e);
    keystore_unlock(svc);
    p.import_token = forged;
    CHECK_ERR(import_as(svc, who, m.key_id, &p, material, NULL, 0), P11KMS_E_EXPIRED_IMPORT_TOKEN,
              &e);
    tok.expires = service_now() + 3600;
    tok.alg = (p11_wrap_alg)9;
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    CHECK_OK(import_token_seal(svc, &tok, forged, &e), &e);
    keystore_unlock(svc);
    CHECK_ERR(import_as(svc, who, m.key_id, &p, material, NULL, 0), P11KMS_E_INVALID_IMPORT_TOKEN,
              &e);
    CHECK(state_of(svc, who, m.key_id) == P11KMS_KEY_PENDING_IMPORT);
    CHECK(!has_material(svc, m.key_id));
    p.import_token = good;

    fx_say("KEY_MATERIAL_EXPIRES: at ValidTo the material is destroyed (on access and by "
           "maintain) and the key is PendingImport");
    p11kms_key_metadata m2;
    CHECK_OK(p11kms_create_key(svc, who, &in, &m2, &e), &e);
    p11kms_import_parameters p2 = {0};
    CHECK_OK(get_params(svc, who, m2.key_id, &p2), &e);
    /* two imports and a describe must fit in the window: they are slow under valgrind */
    int64_t valid_to = service_now() + (getenv("P11KMS_TEST_WRAPPER") ? 60 : 3);
    CHECK_OK(import_as(svc, who, m.key_id, &p, material, "KEY_MATERIAL_EXPIRES", valid_to), &e);
    CHECK_OK(import_as(svc, who, m2.key_id, &p2, material, "KEY_MATERIAL_EXPIRES", valid_to), &e);
    p11kms_key_metadata d;
    CHECK_OK(p11kms_describe_key(svc, who, m.key_id, &d, &e), &e);
    CHECK(d.state == P11KMS_KEY_ENABLED && d.valid_to == valid_to &&
          strcmp(d.expiration_model, "KEY_MATERIAL_EXPIRES") == 0);
    static const uint8_t pt[] = "expires";
    p11kms_result r = {0};
    CHECK_OK(p11kms_encrypt(svc, who, m.key_id, NULL, pt, sizeof(pt), &r, &e), &e);

    CHECK(has_material(svc, m.key_id) && has_material(svc, m2.key_id));
    while (service_now() <= valid_to)
        fx_sleep_ms(200);
    p11kms_result out = {0};
    CHECK_ERR(p11kms_decrypt(svc, who, NULL, NULL, r.ciphertext, r.ciphertext_len, &out, &e),
              P11KMS_E_INVALID_STATE, &e);
    CHECK(state_of(svc, who, m.key_id) == P11KMS_KEY_PENDING_IMPORT);
    CHECK(!has_material(svc, m.key_id));
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, "imported key material expired") >= 0);
    CHECK(!has_material(svc, m2.key_id));
    CHECK(state_of(svc, who, m2.key_id) == P11KMS_KEY_PENDING_IMPORT);
    fx_list_free(&lines);

    fx_say("re-import after expiry: the same material again, and old ciphertext decrypts");
    CHECK_OK(import_as(svc, who, m.key_id, &p, material, NULL, 0), &e);
    CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, r.ciphertext, r.ciphertext_len, &out, &e), &e);
    CHECK(fx_same(out.plaintext, out.plaintext_len, pt, sizeof(pt)));
    p11kms_result_free(&out);
    p11kms_result_free(&r);

    fx_say("maintain destroys expired wrapping key pairs and keeps valid ones");
    uint8_t old_id[P11_WRAP_ID_LEN];
    REQUIRE(RAND_bytes(old_id, sizeof(old_id)) == 1);
    char label[128];
    snprintf(label, sizeof(label), "p11kms-import/wrap/%s/1000", m.key_id);
    uint8_t *spki = NULL;
    size_t spki_len = 0;
    CHECK_OK(p11_rsa_wrap_generate(svc->token, old_id, sizeof(old_id), label, 2048, NULL, &spki,
                                   &spki_len, &e),
             &e);
    free(spki);
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, "wrapping key pair") >= 0);
    CHECK_ERR(p11_rsa_wrap_destroy(svc->token, old_id, sizeof(old_id), &e), P11KMS_E_NOT_FOUND, &e);
    CHECK_OK(import_token_open(svc, p2.import_token, p2.import_token_len, &tok, &e), &e);
    CHECK_OK(import_as(svc, who, m2.key_id, &p2, material, NULL, 0), &e); /* pair still there */
    fx_list_free(&lines);
    p11kms_import_parameters_free(&p);
    p11kms_import_parameters_free(&p2);
}

/* --- Wycheproof
 * ----------------------------------------------------------------------------------- */

static const char *str(json_object *o, const char *key)
{
    json_object *v = NULL;
    REQUIRE(json_object_object_get_ex(o, key, &v));
    return json_object_get_string(v);
}

/* Hex to bytes without leading zero bytes (PKCS#11 big integers). */
static uint8_t *unhex(const char *hex, size_t *len, bool strip)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n + 1);
    REQUIRE(b != NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        REQUIRE(sscanf(hex + 2 * i, "%2x", &v) == 1);
        b[i] = (uint8_t)v;
    }
    size_t skip = 0;
    while (strip && skip + 1 < n && b[skip] == 0)
        skip++;
    memmove(b, b + skip, n - skip);
    *len = n - skip;
    return b;
}

static void run_wycheproof(p11kms *svc, const char *file, p11_wrap_alg alg)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/vectors/wycheproof/%s", test_env("P11KMS_SRCDIR"), file);
    json_object *root = json_object_from_file(path);
    REQUIRE(root != NULL);
    json_object *groups = NULL;
    REQUIRE(json_object_object_get_ex(root, "testGroups", &groups));
    int valid = 0, refused = 0, skipped = 0, unsupported = 0;
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *group = json_object_array_get_idx(groups, g), *key = NULL, *tests = NULL;
        REQUIRE(json_object_object_get_ex(group, "privateKey", &key));
        REQUIRE(json_object_object_get_ex(group, "tests", &tests));
        static const char *const names[] = {"modulus",   "publicExponent", "privateExponent",
                                            "prime1",    "prime2",         "exponent1",
                                            "exponent2", "coefficient"};
        uint8_t *parts[8];
        size_t lens[8];
        for (int i = 0; i < 8; i++)
            parts[i] = unhex(str(key, names[i]), &lens[i], true);
        p11_rsa_components c = {parts[0], parts[1], parts[2], parts[3], parts[4], parts[5],
                                parts[6], parts[7], lens[0],  lens[1],  lens[2],  lens[3],
                                lens[4],  lens[5],  lens[6],  lens[7]};
        uint8_t wrap_id[16];
        REQUIRE(RAND_bytes(wrap_id, sizeof(wrap_id)) == 1);
        CHECK_OK(p11_rsa_wrap_test_import(svc->token, wrap_id, sizeof(wrap_id), &c, &e), &e);
        for (int i = 0; i < 8; i++)
            free(parts[i]);
        /* Under valgrind every 7th vector (still valid and invalid ones): each unwrap is an
         * RSA private-key operation in the token, minutes for the whole file. */
        size_t stride = getenv("P11KMS_TEST_WRAPPER") ? 7 : 1;
        for (size_t t = 0; t < json_object_array_length(tests); t += stride) {
            json_object *tc = json_object_array_get_idx(tests, t);
            size_t msg_len, ct_len, label_len;
            uint8_t *msg = unhex(str(tc, "msg"), &msg_len, false);
            uint8_t *ct = unhex(str(tc, "ct"), &ct_len, false);
            free(unhex(str(tc, "label"), &label_len, false));
            const char *result = str(tc, "result");
            uint8_t value[512];
            static const uint8_t id[] = "wycheproof";
            p11_unwrap_target target = {id, sizeof(id) - 1, "wycheproof", msg_len, true, value};
            p11kms_error te = {0};
            p11kms_err rc = P11KMS_OK;
            if (msg_len == 0 || strcmp(result, "acceptable") == 0) {
                skipped++; /* a zero-length key cannot be made; "acceptable" fixes nothing */
            } else if ((rc = p11_rsa_wrap_unwrap(svc->token, wrap_id, sizeof(wrap_id), alg, ct,
                                                 ct_len, &target, NULL, &te)) ==
                       P11KMS_E_UNSUPPORTED) {
                if (unsupported++ == 0) /* the first one says why */
                    fprintf(stderr, "%s tcId %d (%s, %zu-byte message, %zu-byte label): %s\n", file,
                            json_object_get_int(json_object_object_get(tc, "tcId")), result,
                            msg_len, label_len, te.message);
            } else if (strcmp(result, "valid") == 0 && label_len == 0) {
                valid++;
                if (rc != P11KMS_OK || memcmp(value, msg, msg_len) != 0) {
                    fprintf(stderr, "%s tcId %d: valid vector: %s\n", file,
                            json_object_get_int(json_object_object_get(tc, "tcId")), te.message);
                    CHECK(false);
                }
            } else {
                /* invalid, or valid only under a label p11kms never uses: refused */
                refused++;
                if (rc != P11KMS_E_INVALID_CIPHERTEXT) {
                    fprintf(stderr, "%s tcId %d: want InvalidCiphertext, got %s\n", file,
                            json_object_get_int(json_object_object_get(tc, "tcId")),
                            p11kms_error_class(rc));
                    CHECK(false);
                }
            }
            free(msg);
            free(ct);
        }
    }
    fx_say("%s: %d valid vectors unwrapped to their bytes, %d refused, %d skipped, %d not "
           "supported by the token",
           file, valid, refused, skipped, unsupported);
    /* A token does an OAEP variant for every input or for none: only what p11kms refuses before
     * asking the token (a block not as long as the modulus or not below it) is refused where the
     * token lacks the variant (SoftHSM 2.6.1: SHA-256), never some vectors "unsupported" and
     * others not. */
    if (alg == P11_WRAP_OAEP_SHA1)
        CHECK(valid > 0 && refused > 0 && unsupported == 0);
    else
        CHECK((valid > 0 && refused > 0 && unsupported == 0) || (unsupported > 0 && valid == 0));
    json_object_put(root);
}

/* --- crash
 * ---------------------------------------------------------------------------------------- */

/* The length of key material p11kms imports (AES-256). */
#define IMPORTED_LEN 32

/* The RFC 5649 step of RSA_AES_KEY_WRAP_* (the same code) against Wycheproof AES-KWP. A valid
 * vector must unwrap to its bytes; one of a length p11kms never imports may instead be refused
 * as InvalidCiphertext where the token will not make a key that long. */
static void run_wycheproof_kwp(p11kms *svc)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/vectors/wycheproof/aes_kwp_test.json",
             test_env("P11KMS_SRCDIR"));
    json_object *root = json_object_from_file(path);
    REQUIRE(root != NULL);
    json_object *groups = NULL;
    REQUIRE(json_object_object_get_ex(root, "testGroups", &groups));
    int valid = 0, refused = 0, skipped = 0, token_refused = 0, imported_len = 0;
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *tests = NULL;
        REQUIRE(json_object_object_get_ex(json_object_array_get_idx(groups, g), "tests", &tests));
        for (size_t t = 0; t < json_object_array_length(tests); t++) {
            json_object *tc = json_object_array_get_idx(tests, t);
            size_t key_len, msg_len, ct_len;
            uint8_t *key = unhex(str(tc, "key"), &key_len, false);
            uint8_t *msg = unhex(str(tc, "msg"), &msg_len, false);
            uint8_t *ct = unhex(str(tc, "ct"), &ct_len, false);
            const char *result = str(tc, "result");
            uint8_t value[512];
            static const uint8_t id[] = "wycheproof-kwp";
            p11_unwrap_target target = {id, sizeof(id) - 1, "wycheproof-kwp", msg_len, true, value};
            p11kms_error te = {0};
            int tc_id = json_object_get_int(json_object_object_get(tc, "tcId"));
            if (strcmp(result, "acceptable") == 0 || msg_len == 0 || msg_len > sizeof(value)) {
                skipped++;
            } else if (strcmp(result, "valid") == 0) {
                valid++;
                p11kms_err rc =
                    p11_kwp_test_unwrap(svc->token, key, key_len, ct, ct_len, &target, &te);
                if (rc == P11KMS_E_INVALID_CIPHERTEXT && msg_len != IMPORTED_LEN) {
                    /* Key material of a length p11kms never imports: the token may refuse to
                     * make a secret key that long (NSS softokn 3.87: the 384-byte vectors,
                     * CKR_TEMPLATE_INCONSISTENT), and then it must be refused as the
                     * ciphertext's fault, whatever the token's code. */
                    fprintf(stderr, "aes_kwp tcId %d: %zu-byte key refused by the token: %s\n",
                            tc_id, msg_len, te.message);
                    token_refused++;
                } else if (rc != P11KMS_OK || memcmp(value, msg, msg_len) != 0) {
                    fprintf(stderr, "aes_kwp tcId %d: valid vector: %s\n", tc_id, te.message);
                    CHECK(false);
                } else if (msg_len == IMPORTED_LEN) {
                    imported_len++;
                }
            } else {
                refused++;
                /* the expected length is unknown for an invalid vector: any is refused */
                target.value_len = msg_len;
                p11kms_err rc =
                    p11_kwp_test_unwrap(svc->token, key, key_len, ct, ct_len, &target, &te);
                if (rc != P11KMS_E_INVALID_CIPHERTEXT) {
                    fprintf(stderr, "aes_kwp tcId %d: want InvalidCiphertext, got %s\n", tc_id,
                            p11kms_error_class(rc));
                    CHECK(false);
                }
            }
            free(key);
            free(msg);
            free(ct);
        }
    }
    fx_say("aes_kwp_test.json: %d valid vectors unwrapped to their bytes (%d of them of %d bytes, "
           "as p11kms imports), %d refused by the token for their length, %d invalid refused, %d "
           "skipped",
           valid - token_refused, imported_len, IMPORTED_LEN, token_refused, refused, skipped);
    /* every vector of the length p11kms imports went through, and most of the others did */
    CHECK(imported_len == 9);
    CHECK(valid > 0 && refused > 0 && token_refused * 10 < valid);
    json_object_put(root);
}

static void test_crash(const p11kms_principal *who)
{
    fx_say("kill -9 during import or deletion of material: PendingImport without a material "
           "object, or Enabled with one");
    p11kms *svc = fx_open(NULL);
    p11kms_create_key_input in = {.origin = "EXTERNAL"};
    p11kms_key_metadata m;
    CHECK_OK(p11kms_create_key(svc, who, &in, &m, &e), &e);
    p11kms_import_parameters p = {0};
    CHECK_OK(get_params(svc, who, m.key_id, &p), &e);
    uint8_t material[32], wrapped[512];
    REQUIRE(RAND_bytes(material, sizeof(material)) == 1);
    size_t wrapped_len = client_wrap(&p, material, 32, wrapped);
    p11kms_close(svc);
    softhsm_guard_arm(); /* under a slow wrapper the kill can land in the child's C_Login */
    int rounds = getenv("P11KMS_TEST_WRAPPER") ? 1 : 6, seen[3] = {0, 0, 0};
    for (int round = 0; round < rounds; round++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            p11kms *child = fx_open(NULL);
            p11kms_import_input ii = {
                wrapped, wrapped_len, p.import_token, p.import_token_len, NULL, 0};
            p11kms_error ce;
            for (;;) {
                if (p11kms_import_key_material(child, who, m.key_id, &ii, &ce) != P11KMS_OK &&
                    ce.code != P11KMS_E_INVALID_STATE)
                    _exit(3);
                if (p11kms_delete_imported_key_material(child, who, m.key_id, &ce) != P11KMS_OK &&
                    ce.code != P11KMS_E_INVALID_STATE)
                    _exit(4);
            }
        }
        fx_sleep_ms(300 + (unsigned)(round * 137) % 900);
        kill(pid, SIGKILL);
        int status;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        softhsm_guard_repair();
        if (!WIFSIGNALED(status)) {
            fprintf(stderr, "crash round %d: the child exited %d before the kill\n", round,
                    WEXITSTATUS(status));
            CHECK(false);
            continue;
        }
        /* No journal: the record is the truth. A crash between unwrap and record (import) or
         * between record and destroy (deletion) leaves PendingImport and a material object no
         * record names; the next access of the key destroys it. */
        svc = fx_open(NULL);
        bool before = has_material(svc, m.key_id);
        p11kms_key_state st = state_of(svc, who, m.key_id);
        bool object = has_material(svc, m.key_id);
        if (st == P11KMS_KEY_PENDING_IMPORT && before)
            seen[2]++;
        if (st == P11KMS_KEY_ENABLED) {
            seen[0]++;
            CHECK(object);
            static const uint8_t pt[] = "after the crash";
            p11kms_result r = {0}, out = {0};
            CHECK_OK(p11kms_encrypt(svc, who, m.key_id, NULL, pt, sizeof(pt), &r, &e), &e);
            CHECK_OK(p11kms_decrypt(svc, who, NULL, NULL, r.ciphertext, r.ciphertext_len, &out, &e),
                     &e);
            p11kms_result_free(&r);
            p11kms_result_free(&out);
        } else {
            seen[1]++;
            CHECK(st == P11KMS_KEY_PENDING_IMPORT);
            if (object)
                fprintf(stderr, "crash round %d: PendingImport with a material object\n", round);
            CHECK(!object);
        }
        p11kms_close(svc);
    }
    fx_say("crash rounds ended Enabled %d times, PendingImport %d times (%d with a leftover "
           "object, destroyed on access)",
           seen[0], seen[1], seen[2]);
    p11kms_import_parameters_free(&p);
}

/* A crash between C_UnwrapKey and the record commit, made deterministic: the import's own
 * unwrap into the material object (the same CKA_ID and label), then no commit. maintain finds
 * the object its record does not name and destroys it; the key stays PendingImport, and the
 * same material imports afterwards. */
static void test_leftover_material(p11kms *svc, const p11kms_principal *who)
{
    fx_say("a material object left between C_UnwrapKey and the record commit: maintain "
           "destroys it, the key stays PendingImport");
    p11kms_create_key_input in = {.origin = "EXTERNAL"};
    p11kms_key_metadata m;
    CHECK_OK(p11kms_create_key(svc, who, &in, &m, &e), &e);
    p11kms_import_parameters p = {0};
    CHECK_OK(get_params(svc, who, m.key_id, &p), &e);
    uint8_t material[32], wrapped[512];
    REQUIRE(RAND_bytes(material, sizeof(material)) == 1);
    size_t wrapped_len = client_wrap(&p, material, 32, wrapped);

    uint8_t vid[KEY_UUID_LEN + 4] = {0};
    REQUIRE(uuid_parse(m.key_id, vid));
    vid[KEY_UUID_LEN + 3] = 1; /* the material is version 1 */
    char label[128];
    snprintf(label, sizeof(label), "p11kms/%s/v1", m.key_id);
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    import_token tok;
    CHECK_OK(import_token_open(svc, p.import_token, p.import_token_len, &tok, &e), &e);
    p11_unwrap_target target = {vid, sizeof(vid), label, 32, false, NULL};
    p11_key *key = NULL;
    CHECK_OK(p11_rsa_wrap_unwrap(svc->token, tok.wrap_id, sizeof(tok.wrap_id), tok.alg, wrapped,
                                 wrapped_len, &target, &key, &e),
             &e);
    keystore_unlock(svc); /* "crash": the record is never committed */
    CHECK(has_material(svc, m.key_id));

    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    bool reported = false;
    for (size_t i = 0; i < lines.count; i++)
        if (strstr(lines.items[i], m.key_id) != NULL &&
            strstr(lines.items[i], "destroyed key material its record does not name") != NULL)
            reported = true;
    CHECK(reported);
    CHECK(!has_material(svc, m.key_id));
    CHECK(state_of(svc, who, m.key_id) == P11KMS_KEY_PENDING_IMPORT);
    fx_list_free(&lines);
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, m.key_id) < 0); /* nothing left to repair */
    fx_list_free(&lines);

    CHECK_OK(import_as(svc, who, m.key_id, &p, material, NULL, 0), &e);
    CHECK(state_of(svc, who, m.key_id) == P11KMS_KEY_ENABLED && has_material(svc, m.key_id));
    p11kms_import_parameters_free(&p);
}

int main(void)
{
    test_policy();
    p11kms *svc = fx_open(NULL);
    p11kms_principal *who = fx_principal("unix:user:tester");
    test_tokens_and_expiry(svc, who);
    run_wycheproof(svc, "rsa_oaep_2048_sha1_mgf1sha1_test.json", P11_WRAP_OAEP_SHA1);
    run_wycheproof(svc, "rsa_oaep_2048_sha256_mgf1sha256_test.json", P11_WRAP_OAEP_SHA256);
    run_wycheproof_kwp(svc);
    test_leftover_material(svc, who);
    p11kms_close(svc);
    test_crash(who);
    p11kms_principal_free(who);
    return check_finish("provider-import-test");
}
