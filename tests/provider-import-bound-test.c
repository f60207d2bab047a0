/* Imported key material whose RSA-OAEP block is not below the wrapping key's modulus
 * (Wycheproof RSA-OAEP tcId 27, "added n to c"): pkcs11/rsa-wrap.c refuses it before asking the
 * token, as InvalidCiphertextException. SoftHSM refuses such a block itself, so only a count of
 * the token's calls shows where the refusal happened: the service runs on tests/pkcs11-shim.c
 * (which forwards to the test token, SoftHSM or NSS softokn, and counts calls), and each refused
 * import must leave C_UnwrapKey uncounted. For RSAES_OAEP_SHA_1 and
 * RSA_AES_KEY_WRAP_SHA_1 (the block followed by an RFC 5649 wrap): c = n, n + 1 and all 0xff
 * bytes, and a block of the wrong length; none may be refused in the token's name. Controls on the
 * same key: c = n - 1 (below the modulus, not valid OAEP) reaches the token and is refused there as
 * InvalidCiphertext too; a client's real wrap imports, and the key then encrypts and decrypts. */
#include "config.h"

#include <stdbool.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

static p11kms_error e;

static unsigned long (*shim_count)(const char *fn);

/* The token's unwraps. (C_DecryptInit and C_Decrypt are counted too, but an import makes them
 * anyway: the import token is opened with AES-GCM in the token. The wrapping private key has
 * CKA_UNWRAP only, so the RSA block can reach the token through C_UnwrapKey alone.) */
static unsigned long token_unwraps(void)
{
    return shim_count("C_UnwrapKey");
}

/* The wrapping key's modulus, big-endian in exactly k bytes (k: the modulus length). */
static BIGNUM *modulus_of(const p11kms_import_parameters *p, size_t *k)
{
    const unsigned char *der = p->public_key;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &der, (long)p->public_key_len);
    REQUIRE(pub != NULL);
    BIGNUM *n = NULL;
    REQUIRE(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
    *k = (size_t)EVP_PKEY_get_size(pub);
    REQUIRE(*k == 256 && (size_t)BN_num_bytes(n) == *k);
    EVP_PKEY_free(pub);
    return n;
}

/* What a client sends: RSAES_OAEP_SHA_1 of the material, or for RSA_AES_KEY_WRAP_SHA_1 that of
 * an ephemeral AES-256 key followed by the RFC 5649 wrap of the material under it. */
static size_t client_wrap(const p11kms_import_parameters *p, bool two_step,
                          const uint8_t material[32], uint8_t out[512])
{
    uint8_t eph[32];
    REQUIRE(RAND_bytes(eph, sizeof(eph)) == 1);
    const unsigned char *der = p->public_key;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &der, (long)p->public_key_len);
    REQUIRE(pub != NULL);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    size_t len = 512;
    REQUIRE(ctx != NULL && EVP_PKEY_encrypt_init(ctx) > 0 &&
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) > 0 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()) > 0 &&
            EVP_PKEY_encrypt(ctx, out, &len, two_step ? eph : material, 32) > 0);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pub);
    if (two_step) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n1 = 0, n2 = 0;
        REQUIRE(c != NULL);
        EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        REQUIRE(EVP_EncryptInit_ex(c, EVP_aes_256_wrap_pad(), NULL, eph, NULL) == 1 &&
                EVP_EncryptUpdate(c, out + len, &n1, material, 32) == 1 &&
                EVP_EncryptFinal_ex(c, out + len + n1, &n2) == 1);
        EVP_CIPHER_CTX_free(c);
        len += (size_t)(n1 + n2);
    }
    return len;
}

static p11kms_err import(p11kms *svc, const p11kms_principal *who, const char *key,
                         const p11kms_import_parameters *p, const uint8_t *wrapped, size_t len)
{
    p11kms_import_input in = {wrapped, len, p->import_token, p->import_token_len, NULL, 0};
    return p11kms_import_key_material(svc, who, key, &in, &e);
}

static p11kms_key_state state_of(p11kms *svc, const p11kms_principal *who, const char *key)
{
    p11kms_key_metadata m;
    REQUIRE(p11kms_describe_key(svc, who, key, &m, &e) == P11KMS_OK);
    return m.state;
}

static void run(p11kms *svc, const p11kms_principal *who, const char *alg, bool two_step)
{
    fx_say("%s: RSA-OAEP blocks not below the modulus are refused before the token is asked", alg);
    p11kms_create_key_input in = {.origin = "EXTERNAL"};
    p11kms_key_metadata m;
    CHECK_OK(p11kms_create_key(svc, who, &in, &m, &e), &e);
    p11kms_import_parameters p = {0};
    CHECK_OK(p11kms_get_parameters_for_import(svc, who, m.key_id, alg, "RSA_2048", &p, &e), &e);
    REQUIRE(p.public_key != NULL);
    size_t k = 0;
    BIGNUM *n = modulus_of(&p, &k);
    /* Two-step: after the block, 40 bytes as long as the RFC 5649 wrap of 32 bytes. */
    size_t tail = two_step ? 40 : 0;
    uint8_t tail_bytes[40];
    REQUIRE(RAND_bytes(tail_bytes, sizeof(tail_bytes)) == 1);

    BIGNUM *v = BN_new();
    REQUIRE(v != NULL);
    static const char *const names[] = {"c = n", "c = n + 1", "c = 0xff..ff", "c = n - 1"};
    for (int i = 0; i < 4; i++) {
        uint8_t c[512];
        if (i == 2) {
            memset(c, 0xff, k);
        } else {
            REQUIRE(BN_copy(v, n) != NULL);
            if (i == 1)
                REQUIRE(BN_add_word(v, 1) == 1);
            if (i == 3)
                REQUIRE(BN_sub_word(v, 1) == 1);
            REQUIRE(BN_bn2binpad(v, c, (int)k) == (int)k);
        }
        memcpy(c + k, tail_bytes, tail);
        unsigned long before = token_unwraps();
        p11kms_err rc = import(svc, who, m.key_id, &p, c, k + tail);
        unsigned long asked = token_unwraps() - before;
        fx_say("%s, %s: %s (%s), C_UnwrapKey called %lu times", alg, names[i],
               p11kms_error_class(rc), e.message, asked);
        CHECK(rc == P11KMS_E_INVALID_CIPHERTEXT);
        CHECK(strcmp(p11kms_error_class(rc), "InvalidCiphertextException") == 0);
        if (i < 3) {
            CHECK(asked == 0); /* refused before the token, and not in the token's name */
            CHECK(fx_msg_has(&e, "not below the wrapping key's modulus"));
            CHECK(!fx_msg_has(&e, "token said"));
        } else {
            CHECK(asked > 0); /* the control: below the modulus, the token decides */
            CHECK(fx_msg_has(&e, "token said"));
        }
        CHECK(state_of(svc, who, m.key_id) == P11KMS_KEY_PENDING_IMPORT);
    }
    /* A block of the wrong length is refused before the token too: one byte short of the
     * modulus, or for the two-step algorithms the block with no RFC 5649 wrap after it. */
    {
        uint8_t c[512];
        memset(c, 0x01, k);
        size_t len = two_step ? k : k - 1;
        unsigned long before = token_unwraps();
        p11kms_err rc = import(svc, who, m.key_id, &p, c, len);
        unsigned long asked = token_unwraps() - before;
        fx_say("%s, %zu bytes: %s (%s), C_UnwrapKey called %lu times", alg, len,
               p11kms_error_class(rc), e.message, asked);
        CHECK(rc == P11KMS_E_INVALID_CIPHERTEXT);
        CHECK(asked == 0);
        CHECK(fx_msg_has(&e, "the wrapping key's modulus") && !fx_msg_has(&e, "token said"));
    }
    BN_free(v);
    BN_free(n);

    /* The same import token and key take a real wrap: the refusals consumed nothing. */
    uint8_t material[32], wrapped[512];
    REQUIRE(RAND_bytes(material, sizeof(material)) == 1);
    size_t len = client_wrap(&p, two_step, material, wrapped);
    unsigned long before = token_unwraps();
    CHECK_OK(import(svc, who, m.key_id, &p, wrapped, len), &e);
    CHECK(token_unwraps() > before);
    CHECK(state_of(svc, who, m.key_id) == P11KMS_KEY_ENABLED);
    static const uint8_t pt[] = "imported after the refusals";
    p11kms_result ct, back;
    CHECK_OK(p11kms_encrypt(svc, who, m.key_id, NULL, pt, sizeof(pt), &ct, &e), &e);
    CHECK_OK(p11kms_decrypt(svc, who, m.key_id, NULL, ct.ciphertext, ct.ciphertext_len, &back, &e),
             &e);
    CHECK(fx_same(back.plaintext, back.plaintext_len, pt, sizeof(pt)));
    p11kms_result_free(&back);
    p11kms_result_free(&ct);
    p11kms_import_parameters_free(&p);
}

int main(void)
{
    p11kms_principal *who = fx_principal("unix:user:import-bound-tester");
    char *path = fx_shim_config("import-bound.yaml", NULL);
    p11kms *svc = fx_open(path);
    /* The service loaded the shim as its module: reach its counters. */
    *(void **)&shim_count = fx_shim_symbol("p11kms_shim_count");
    CHECK(shim_count("C_OpenSession") > 0);

    run(svc, who, "RSAES_OAEP_SHA_1", false);
    run(svc, who, "RSA_AES_KEY_WRAP_SHA_1", true);

    p11kms_close(svc);
    p11kms_principal_free(who);
    free(path);
    return check_finish("provider-import-bound-test");
}
