/* The token layer against tests/pkcs11-shim.c, a module that forwards to the test token's module
 * (SoftHSM, NSS softokn: it hands the real module $P11KMS_TEST_MODULE_ARGS) and produces on
 * demand what the token does not: C_GetInterface, device errors, lost sessions and logins, PIN
 * refusals, token flags, session limits, token-generated IVs, the legacy CK_GCM_PARAMS layout,
 * and init arguments from p11-kit's module configuration (x-init-reserved). */
#include "config.h"

#define P11_KIT_FUTURE_UNSTABLE_API 1

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>

#include <openssl/evp.h>
#include <p11-kit/p11-kit.h>

#include "pkcs11-testutil.h"
#include "pkcs11/internal.h" /* the copy's handle and the slot, to read CKA_VALUE directly */

static p11kms_error e;

static struct {
    void (*fail)(const char *fn, CK_RV rv, int times);
    unsigned long (*count)(const char *fn);
    void (*reset)(void);
    void (*token_flags)(CK_FLAGS set, CK_FLAGS clear);
    void (*max_rw)(CK_ULONG max_rw);
    void (*iv_mode)(int mode);
    void (*accept_legacy)(int on);
    const char *(*init_reserved)(void);
    void (*hide)(CK_MECHANISM_TYPE mechanism);
    void (*random_max)(CK_ULONG max);
    void (*lack_attribute)(CK_ATTRIBUTE_TYPE type);
} shim;

static void shim_bind(void)
{
    shim.fail = (void (*)(const char *, CK_RV, int))pt_shim_symbol("p11kms_shim_fail");
    shim.count = (unsigned long (*)(const char *))pt_shim_symbol("p11kms_shim_count");
    shim.reset = (void (*)(void))pt_shim_symbol("p11kms_shim_reset");
    shim.token_flags = (void (*)(CK_FLAGS, CK_FLAGS))pt_shim_symbol("p11kms_shim_token_flags");
    shim.max_rw = (void (*)(CK_ULONG))pt_shim_symbol("p11kms_shim_max_rw");
    shim.iv_mode = (void (*)(int))pt_shim_symbol("p11kms_shim_iv_mode");
    shim.accept_legacy = (void (*)(int))pt_shim_symbol("p11kms_shim_accept_legacy");
    shim.init_reserved = (const char *(*)(void))pt_shim_symbol("p11kms_shim_init_reserved");
    shim.hide = (void (*)(CK_MECHANISM_TYPE))pt_shim_symbol("p11kms_shim_hide");
    shim.random_max = (void (*)(CK_ULONG))pt_shim_symbol("p11kms_shim_random_max");
    shim.lack_attribute = (void (*)(CK_ATTRIBUTE_TYPE))pt_shim_symbol("p11kms_shim_lack_attribute");
}

static p11_token_config shim_config(void)
{
    p11_token_config cfg = pt_config();
    cfg.module = pt_shim_path();
    return cfg;
}

static p11_key *session_key(p11_token *t, uint8_t fill)
{
    uint8_t raw[32];
    memset(raw, fill, sizeof(raw));
    p11_key *k = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    REQUIRE(k != NULL);
    return k;
}

static int round_trip(p11_token *t, p11_key *k)
{
    uint8_t iv[12] = {3, 1, 4}, pt[33] = "round trip through the shim", ct[49], back[33];
    p11kms_error err = {0};
    if (p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &err) != P11KMS_OK ||
        p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &err) != P11KMS_OK) {
        fprintf(stderr, "  round trip: %s: %s\n", p11kms_error_class(err.code), err.message);
        return 0;
    }
    return memcmp(back, pt, sizeof(pt)) == 0;
}

static void test_get_interface(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(info.via_get_interface);
    CHECK(shim.count("C_GetInterface") == 1);
    /* by path, no p11-kit configuration: the shim saw only the configured module-args */
    const char *args = getenv("P11KMS_TEST_MODULE_ARGS");
    CHECK(strcmp(shim.init_reserved(), args != NULL ? args : "") == 0);
    p11_key *k = session_key(t, 1);
    unsigned long before = shim.count("C_EncryptInit");
    CHECK(round_trip(t, k));
    /* the calls went through the shim's 3.0 list */
    CHECK(shim.count("C_EncryptInit") == before + 1);
    p11_token_close(t);
}

static void test_transient_failures(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    p11_key *k = session_key(t, 2);

    /* a device error once: a new session, the same answer */
    shim.fail("C_Encrypt", CKR_DEVICE_ERROR, 1);
    CHECK(round_trip(t, k));
    shim.fail("C_DecryptInit", CKR_DEVICE_ERROR, 2);
    CHECK(round_trip(t, k));

    /* a lost session and a lost login */
    shim.fail("C_EncryptInit", CKR_SESSION_HANDLE_INVALID, 1);
    CHECK(round_trip(t, k));
    shim.fail("C_Decrypt", CKR_SESSION_CLOSED, 1);
    CHECK(round_trip(t, k));
    unsigned long logins = shim.count("C_Login");
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e);
    /* logged in again; the session key died with the login session and is not found */
    uint8_t iv0[12] = {0}, pt0[4] = "abc", ct0[20];
    CHECK_ERR(p11_gcm_encrypt(t, k, iv0, 12, NULL, 0, pt0, 4, ct0, 16, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK(shim.count("C_Login") == logins + 1);
    k = session_key(t, 2);
    shim.fail("C_EncryptInit", CKR_USER_NOT_LOGGED_IN, 1);
    CHECK(round_trip(t, k));

    /* a stale object handle is found again, once */
    const uint8_t id[] = "shim-key";
    p11_key *tk = NULL;
    CHECK_OK(p11_key_generate(t, id, sizeof(id) - 1, "p11kms-test/shim-key", &tk, &e), &e);
    REQUIRE(tk != NULL);
    CHECK(round_trip(t, tk));
    unsigned long finds = shim.count("C_FindObjectsInit");
    shim.fail("C_EncryptInit", CKR_OBJECT_HANDLE_INVALID, 1);
    CHECK(round_trip(t, tk));
    CHECK(shim.count("C_FindObjectsInit") == finds + 1);
    CHECK(round_trip(t, tk));
    CHECK(shim.count("C_FindObjectsInit") == finds + 1); /* cached again */

    /* an operation left active by a token that did not end it */
    shim.fail("C_EncryptInit", CKR_OPERATION_ACTIVE, 1);
    CHECK(round_trip(t, tk));

    /* the token has fewer sessions than it advertised */
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e);
    unsigned long opens = shim.count("C_OpenSession");
    shim.fail("C_OpenSession", CKR_SESSION_COUNT, 2);
    CHECK(round_trip(t, tk));
    CHECK(shim.count("C_OpenSession") >= opens + 3);

    /* a key disabled elsewhere is not retried */
    unsigned long inits = shim.count("C_EncryptInit");
    shim.fail("C_EncryptInit", CKR_KEY_FUNCTION_NOT_PERMITTED, 1);
    uint8_t iv[12] = {0}, pt[4] = "abc", ct[20];
    p11kms_error_clear(&e);
    CHECK_ERR(p11_gcm_encrypt(t, tk, iv, 12, NULL, 0, pt, 4, ct, 16, &e), P11KMS_E_TOKEN, &e);
    CHECK(e.ckr == CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK(shim.count("C_EncryptInit") == inits + 1);

    /* other tag-failure codes, and a token that wrote plaintext before failing */
    CHECK_OK(p11_gcm_encrypt(t, tk, iv, 12, NULL, 0, pt, 4, ct, 16, &e), &e);
    const CK_RV tag_codes[] = {CKR_ENCRYPTED_DATA_INVALID, 0x42 /* CKR_AEAD_DECRYPT_FAILED */,
                               CKR_GENERAL_ERROR, CKR_ENCRYPTED_DATA_LEN_RANGE, CKR_DATA_INVALID};
    for (size_t i = 0; i < sizeof(tag_codes) / sizeof(tag_codes[0]); i++) {
        uint8_t back[4] = {0xa5, 0xa5, 0xa5, 0xa5};
        shim.fail("C_Decrypt", tag_codes[i], 1);
        p11kms_error_clear(&e);
        CHECK_ERR(p11_gcm_decrypt(t, tk, iv, 12, NULL, 0, ct, 20, 16, back, &e),
                  P11KMS_E_INVALID_CIPHERTEXT, &e);
        CHECK(e.ckr == tag_codes[i]);
        CHECK(back[0] == 0xa5 && back[3] == 0xa5);
    }
    CHECK_OK(p11_key_destroy(t, tk, &e), &e);
    p11_token_close(t);
}

static void test_reinit(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    const uint8_t id[] = "reinit-key";
    p11_key *k = NULL;
    CHECK_OK(p11_key_generate(t, id, sizeof(id) - 1, "p11kms-test/reinit-key", &k, &e), &e);
    REQUIRE(k != NULL);
    /* a data object read back after re-initialization, where the token stores them */
    int data = pt_token_stores_data(t, "the data object read back after re-initialization");
    if (data)
        CHECK_OK(p11_data_create(t, "p11kms-test/reinit", (const uint8_t *)"data", 4, &e), &e);

    /* the device went away: C_Finalize, C_Initialize, select, log in, find the key again */
    unsigned long inits = shim.count("C_Initialize"), logins = shim.count("C_Login");
    unsigned long finds = shim.count("C_FindObjectsInit");
    shim.fail("C_EncryptInit", CKR_DEVICE_REMOVED, 1);
    CHECK(round_trip(t, k));
    CHECK(shim.count("C_Initialize") == inits + 1);
    CHECK(shim.count("C_Login") == logins + 1);
    CHECK(shim.count("C_FindObjectsInit") == finds + 1);
    if (data) {
        uint8_t *v = NULL;
        size_t len = 0;
        CHECK_OK(p11_data_read(t, "p11kms-test/reinit", &v, &len, &e), &e);
        CHECK(len == 4 && v != NULL && memcmp(v, "data", 4) == 0);
        free(v);
    }

    /* repeated device errors: a bounded number of attempts, then KEY_UNAVAILABLE */
    inits = shim.count("C_Initialize");
    unsigned long calls = shim.count("C_Encrypt");
    shim.fail("C_Encrypt", CKR_DEVICE_ERROR, -1);
    uint8_t iv[12] = {0}, pt[4] = "abc", ct[20];
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, 4, ct, 16, &e), P11KMS_E_KEY_UNAVAILABLE,
              &e);
    CHECK(e.ckr == CKR_DEVICE_ERROR);
    CHECK(pt_contains(e.message, "CKR_DEVICE_ERROR"));
    unsigned long tries = shim.count("C_Encrypt") - calls;
    fprintf(stderr, "persistent device error: %lu attempts, %lu re-initialization(s)\n", tries,
            shim.count("C_Initialize") - inits);
    CHECK(tries >= 2 && tries <= 8);
    CHECK(shim.count("C_Initialize") == inits + 1);
    shim.fail("C_Encrypt", CKR_OK, 0);
    CHECK(round_trip(t, k)); /* and it comes back */

    /* the token is gone for good: re-initialization fails, nothing wrong is returned */
    shim.fail("C_EncryptInit", CKR_TOKEN_NOT_PRESENT, 1);
    shim.fail("C_Initialize", CKR_DEVICE_ERROR, 1);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, 4, ct, 16, &e), P11KMS_E_KEY_UNAVAILABLE,
              &e);
    CHECK(round_trip(t, k)); /* the next use re-initializes again, successfully */

    CHECK_OK(p11_key_destroy(t, k, &e), &e);
    if (data)
        CHECK_OK(p11_data_delete(t, "p11kms-test/reinit", &e), &e);
    p11_token_close(t);
}

/* Answers of C_Login that are not about the PIN, which SoftHSM gives while another process
 * rewrites its token.object: CKR_USER_PIN_NOT_INITIALIZED (the flags said initialized) and
 * CKR_GENERAL_ERROR. Each is looked at again (transient times, then success), reported after
 * four looks when it lasts (a PinError for the first, the token's error for the second), and
 * never remembered as a refused PIN: remembering the first once refused every later start of a
 * CI run. */
static void test_login_answer_looked_at_again(CK_RV rv, bool pin_error, int transient)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    char marker[4096], said[128];
    snprintf(marker, sizeof(marker), "%s.refused", getenv("P11KMS_TEST_PIN_FILE"));
    snprintf(said, sizeof(said), "%s 4 times over 60 ms", p11_ckr_name(rv));
    struct stat st;

    shim.fail("C_Login", rv, transient);
    p11_token *t = pt_open(&cfg);
    CHECK(shim.count("C_Login") == (unsigned long)transient + 1);
    p11_token_close(t);

    shim.reset();
    shim.fail("C_Login", rv, -1);
    t = NULL;
    p11kms_err rc = p11_token_open(&cfg, &t, &e);
    CHECK(rc != P11KMS_OK && (rc == P11KMS_E_PIN) == pin_error && t == NULL);
    CHECK(e.ckr == rv && strstr(e.message, said) != NULL);
    CHECK(shim.count("C_Login") == 4);
    CHECK(stat(marker, &st) != 0);
    shim.fail("C_Login", CKR_OK, 0);
    t = pt_open(&cfg);
    CHECK(shim.count("C_Login") == 5);
    p11_token_close(t);
}

/* A token missing from the slot list (SoftHSM's token.object read while another process rewrites
 * it) is looked for four times, each after a fresh C_Initialize, before it is called absent. */
static void test_token_looked_for_again(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = NULL;

    /* every look finds no token: NotFound after four, with a C_Initialize before each */
    shim.fail("C_GetTokenInfo", CKR_TOKEN_NOT_PRESENT, -1);
    CHECK_ERR(p11_token_open(&cfg, &t, &e), P11KMS_E_NOT_FOUND, &e);
    CHECK(t == NULL && strstr(e.message, "no token matches URI") != NULL);
    CHECK(shim.count("C_Initialize") == 4 && shim.count("C_Login") == 0);
    unsigned long infos_per_look = shim.count("C_GetTokenInfo") / 4;
    REQUIRE(infos_per_look >= 1);

    /* the first two looks find none, the third finds the token */
    shim.reset();
    shim.fail("C_GetTokenInfo", CKR_TOKEN_NOT_PRESENT, (int)(2 * infos_per_look));
    t = pt_open(&cfg);
    CHECK(shim.count("C_Initialize") == 3 && shim.count("C_Login") == 1);
    p11_token_close(t);
}

/* A refused PIN is remembered and never sent again, also not by recovery. */
static void test_pin_never_retried(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();

    /* refused at open: exactly one C_Login */
    shim.fail("C_Login", CKR_PIN_INCORRECT, -1);
    p11_token *t = NULL;
    CHECK_ERR(p11_token_open(&cfg, &t, &e), P11KMS_E_PIN, &e);
    CHECK(t == NULL);
    CHECK(shim.count("C_Login") == 1);
    shim.fail("C_Login", CKR_OK, 0);

    /* remembered where another process sees it: beside the unchanged PIN file, a second open
     * is refused before any C_Login, naming the file; a changed file gets its one try */
    char marker[4096];
    snprintf(marker, sizeof(marker), "%s.refused", getenv("P11KMS_TEST_PIN_FILE"));
    struct stat st;
    CHECK(stat(marker, &st) == 0 && (st.st_mode & 077) == 0);
    CHECK_ERR(p11_token_open(&cfg, &t, &e), P11KMS_E_PIN, &e);
    CHECK(t == NULL && shim.count("C_Login") == 1);
    CHECK(strstr(e.message, "at an earlier login and the file has not changed") != NULL);
    FILE *marker_file = fopen(marker, "r");
    char recorded[512] = "";
    CHECK(marker_file != NULL && fgets(recorded, sizeof(recorded), marker_file) != NULL);
    if (marker_file != NULL)
        fclose(marker_file);
    CHECK(strstr(recorded, "12345678") == NULL && strstr(recorded, "ckr=CKR_PIN_INCORRECT"));
    /* the same identity with another modification time is another file */
    struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
    const char *pin_file = getenv("P11KMS_TEST_PIN_FILE");
    REQUIRE(pin_file != NULL);
    CHECK(utimensat(AT_FDCWD, pin_file, times, 0) == 0);
    t = pt_open(&cfg);
    CHECK(shim.count("C_Login") == 2);
    CHECK(stat(marker, &st) != 0); /* a successful login forgets the refusal */
    p11_token_close(t);

    /* refused during recovery: one C_Login, then every operation fails with PIN at once */
    t = pt_open(&cfg);
    p11_key *k = session_key(t, 3);
    CHECK(round_trip(t, k));
    unsigned long logins = shim.count("C_Login");
    shim.fail("C_Login", CKR_PIN_LOCKED, -1);
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e); /* logs out */
    uint8_t iv[12] = {0}, pt[4] = "abc", ct[20];
    p11kms_error_clear(&e);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, 4, ct, 16, &e), P11KMS_E_PIN, &e);
    CHECK(e.ckr == CKR_PIN_LOCKED);
    CHECK(shim.count("C_Login") == logins + 1);
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, 4, ct, 16, &e), P11KMS_E_PIN, &e);
        CHECK_ERR(p11_data_read(t, "p11kms-test/x", &(uint8_t *){NULL}, &(size_t){0}, &e),
                  P11KMS_E_PIN, &e);
        CHECK_ERR(p11_token_random(t, ct, 4, &e), P11KMS_E_PIN, &e);
    }
    CHECK(shim.count("C_Login") == logins + 1);
    /* even once the token would accept it again */
    shim.fail("C_Login", CKR_OK, 0);
    CHECK_ERR(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, 4, ct, 16, &e), P11KMS_E_PIN, &e);
    CHECK(shim.count("C_Login") == logins + 1);
    p11_token_close(t);
    /* the shim's refusal was not the file's fault */
    remove(marker);
}

static void test_token_flags(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = NULL;
    const struct {
        CK_FLAGS set, clear;
        const char *needle;
    } cases[] = {
        {CKF_USER_PIN_FINAL_TRY, 0, "final try"},
        {CKF_USER_PIN_LOCKED, 0, "locked"},
        {0, CKF_USER_PIN_INITIALIZED, "not initialized"},
        {0, CKF_TOKEN_INITIALIZED, "not initialized"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned long logins = shim.count("C_Login");
        shim.token_flags(cases[i].set, cases[i].clear);
        p11kms_err rc = p11_token_open(&cfg, &t, &e);
        CHECK(rc == P11KMS_E_PIN ||
              (cases[i].clear == CKF_TOKEN_INITIALIZED && rc == P11KMS_E_NOT_FOUND));
        CHECK(t == NULL);
        if (rc == P11KMS_E_PIN)
            CHECK(pt_contains(e.message, cases[i].needle));
        CHECK(shim.count("C_Login") == logins); /* refused before C_Login */
    }
    /* CKF_USER_PIN_COUNT_LOW alone is no reason to refuse */
    shim.token_flags(CKF_USER_PIN_COUNT_LOW, 0);
    t = pt_open(&cfg);
    p11_token_close(t);
    shim.token_flags(0, 0);
}

static void test_session_limit(void)
{
    shim.reset();
    shim.max_rw(3);
    p11_token_config cfg = shim_config();
    cfg.pool_size = 8;
    p11_token *t = pt_open(&cfg);
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(info.max_rw_sessions == 3);
    CHECK(info.pool_size == 2); /* one of the three is the login session */
    p11_token_close(t);
    shim.max_rw(CK_UNAVAILABLE_INFORMATION);
    t = pt_open(&cfg);
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(info.pool_size == 8);
    p11_token_close(t);
    shim.max_rw(0);
    cfg.pool_size = 0;
    t = pt_open(&cfg);
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(info.pool_size == 8);
    p11_token_close(t);
}

static int openssl_decrypt(const uint8_t *key, const uint8_t *iv, const uint8_t *ct, size_t len,
                           uint8_t *pt)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n, ok = c != NULL && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
                EVP_DecryptUpdate(c, pt, &n, ct, (int)(len - 16)) == 1 &&
                EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(ct + len - 16)) == 1 &&
                EVP_DecryptFinal_ex(c, pt + n, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* TOKEN IV mode with a token that writes its IV into pIv (1) or appends it to the output (2). */
static void test_token_iv(int mode)
{
    shim.reset();
    shim.iv_mode(mode);
    p11_token_config cfg = shim_config();
    cfg.iv_mode = P11_IV_TOKEN;
    p11_token *t = pt_open(&cfg);
    uint8_t raw[32];
    memset(raw, 0x33, sizeof(raw));
    p11_key *k = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    uint8_t iv1[12], iv2[12], pt[20] = "token chooses the IV", ct1[36], ct2[36], back[20];
    memset(iv1, 0xee, sizeof(iv1));
    CHECK_OK(p11_gcm_encrypt(t, k, iv1, 12, NULL, 0, pt, sizeof(pt), ct1, 16, &e), &e);
    CHECK_OK(p11_gcm_encrypt(t, k, iv2, 12, NULL, 0, pt, sizeof(pt), ct2, 16, &e), &e);
    CHECK(memcmp(iv1, iv2, 12) != 0);
    CHECK(iv1[0] != 0xee);
    CHECK(memcmp(ct1, ct2, sizeof(ct1)) != 0);
    CHECK_OK(p11_gcm_decrypt(t, k, iv1, 12, NULL, 0, ct1, sizeof(ct1), 16, back, &e), &e);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
    memset(back, 0, sizeof(back));
    CHECK(openssl_decrypt(raw, iv2, ct2, sizeof(ct2), back));
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
    p11_token_close(t);
    shim.iv_mode(0);
}

/* The LEGACY knob sends the 40-byte layout; a token that takes it gives the same ciphertext. */
static void test_legacy_layout(void)
{
    shim.reset();
    shim.accept_legacy(1);
    uint8_t raw[32];
    memset(raw, 0x44, sizeof(raw));
    uint8_t iv[12] = {9, 8, 7}, aad[5] = "legac", pt[24] = "legacy CK_GCM_PARAMS", ct_v240[40],
            ct_legacy[40], back[24];
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    p11_key *k = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, aad, 5, pt, sizeof(pt), ct_v240, 16, &e), &e);
    p11_token_close(t);

    cfg.gcm_layout = P11_GCM_LEGACY;
    t = pt_open(&cfg);
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, aad, 5, pt, sizeof(pt), ct_legacy, 16, &e), &e);
    CHECK(memcmp(ct_v240, ct_legacy, sizeof(ct_v240)) == 0);
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, aad, 5, ct_legacy, sizeof(ct_legacy), 16, back, &e), &e);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
    ct_legacy[0] ^= 1;
    CHECK_ERR(p11_gcm_decrypt(t, k, iv, 12, aad, 5, ct_legacy, sizeof(ct_legacy), 16, back, &e),
              P11KMS_E_INVALID_CIPHERTEXT, &e);
    p11_token_close(t);
    shim.accept_legacy(0);
}

/* A module registered with p11-kit gets its init arguments from the configuration. */
static void test_p11kit_name(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    cfg.module = "p11kms-shim";
    cfg.module_args = NULL; /* the shim hands the token its own ($P11KMS_TEST_MODULE_ARGS) */
    p11_token *t = pt_open(&cfg);
    CHECK(strcmp(shim.init_reserved(), "p11kms-reserved-argument") == 0);
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    CHECK(!info.via_get_interface); /* p11-kit's own function list */
    CHECK(strcmp(info.module, "p11kms-shim") == 0);
    p11_key *k = session_key(t, 5);
    CHECK(round_trip(t, k));
    p11_token_close(t);
}

/* token.module-args: a module given by path gets the string in C_Initialize's pReserved (NSS
 * softokn reads its database parameters there), also when the layer re-initializes; a module
 * named in p11-kit's configuration takes its arguments from there, so the two are refused
 * together. */
static void test_module_args(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    cfg.module_args = "configdir='sql:/nowhere' flags=readOnly";
    p11_token *t = pt_open(&cfg);
    CHECK(strcmp(shim.init_reserved(), "configdir='sql:/nowhere' flags=readOnly") == 0);
    p11_key *k = session_key(t, 6);
    CHECK(round_trip(t, k));
    p11_token_close(t);

    shim.reset();
    cfg = shim_config();
    cfg.module_args = NULL;
    t = pt_open(&cfg);
    /* none configured: p11-kit's own arguments (its configuration's, for this module) */
    CHECK(strstr(shim.init_reserved(), "configdir") == NULL);
    p11_token_close(t);

    cfg.module = "p11kms-shim";
    cfg.module_args = "flags=readOnly";
    t = NULL;
    CHECK_ERR(p11_token_open(&cfg, &t, &e), P11KMS_E_CONFIG, &e);
    CHECK(t == NULL);
    CHECK(pt_contains(e.message, "x-init-reserved"));
}

static void p11kit_config_here(void)
{
    /* p11-kit keeps these pointers: they must outlive every later load */
    static char dir[4096], none[4096], conf[4200], user_conf[4200];
    char file[4200];
    snprintf(dir, sizeof(dir), "%s/p11-kit-modules", test_env("P11KMS_TEST_ROOT"));
    snprintf(none, sizeof(none), "%s/p11-kit-none", test_env("P11KMS_TEST_ROOT"));
    REQUIRE(mkdir(dir, 0700) == 0);
    snprintf(file, sizeof(file), "%s/p11kms-shim.module", dir);
    FILE *f = fopen(file, "w");
    REQUIRE(f != NULL);
    fprintf(f, "module: %s\nx-init-reserved: p11kms-reserved-argument\n", pt_shim_path());
    REQUIRE(fclose(f) == 0);
    snprintf(conf, sizeof(conf), "%s/pkcs11.conf", none);
    snprintf(user_conf, sizeof(user_conf), "%s/user.conf", none);
    p11_kit_override_system_files(conf, user_conf, dir, none, none);
}

/* A token without what p11kms needs (openCryptoki 3.8 has no CKM_AES_GCM) is refused at open
 * with one line naming the token, the mechanism and what to do; one that loses it later is
 * refused at key generation before any key exists. The report lists every check. */
static void test_capability_check(void)
{
    static const struct {
        CK_MECHANISM_TYPE mechanism;
        const char *name;
    } hidden[] = {
        {CKM_AES_GCM, "CKM_AES_GCM: not offered (CKR_MECHANISM_INVALID)"},
        {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN: not offered (CKR_MECHANISM_INVALID)"},
        {CKM_SHA256_HMAC, "CKM_SHA256_HMAC: not offered (CKR_MECHANISM_INVALID)"},
    };
    p11_token_config cfg = shim_config();
    char named[64];
    snprintf(named, sizeof(named), "token \"%s\"", test_env("P11KMS_TEST_TOKEN_LABEL"));
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        shim.reset();
        shim.hide(hidden[i].mechanism);
        p11_token *t = NULL;
        CHECK_ERR(p11_token_open(&cfg, &t, &e), P11KMS_E_UNSUPPORTED, &e);
        CHECK(t == NULL);
        CHECK(pt_contains(e.message, named));
        CHECK(pt_contains(e.message, hidden[i].name));
        CHECK(pt_contains(e.message, "use a token that offers it"));
        CHECK(strchr(e.message, '\n') == NULL);
        fprintf(stderr, "refused: %s\n", e.message);
    }
    /* Opened for the report only: every check listed, the hidden one failed. */
    shim.reset();
    shim.hide(CKM_AES_GCM);
    cfg.skip_capability_check = true;
    p11_token *t = pt_open(&cfg);
    p11_capability caps[P11_CAPABILITY_MAX];
    size_t n = P11_CAPABILITY_MAX;
    CHECK_OK(p11_token_capabilities(t, caps, &n, &e), &e);
    CHECK(n == 7);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "  %-26s %s %s\n", caps[i].name, caps[i].passed ? "pass" : "FAIL",
                caps[i].detail);
        if (!caps[i].passed)
            failed++;
    }
    CHECK(failed == 2); /* CKM_AES_GCM and the self-test */
    CHECK(strcmp(caps[1].name, "CKM_AES_GCM") == 0 && !caps[1].passed);
    CHECK(strcmp(caps[6].name, "AES-GCM self-test") == 0 && !caps[6].passed);
    p11_token_close(t);

    /* Lost after open: create-key is refused and leaves no key behind. */
    shim.reset();
    cfg.skip_capability_check = false;
    t = pt_open(&cfg);
    shim.hide(CKM_AES_GCM);
    static const uint8_t id[] = "capability-check-key";
    p11_key *k = NULL;
    unsigned long generated = shim.count("C_GenerateKey");
    CHECK_ERR(p11_key_generate(t, id, sizeof(id) - 1, "p11kms-test/capability", &k, &e),
              P11KMS_E_UNSUPPORTED, &e);
    CHECK(k == NULL && pt_contains(e.message, "CKM_AES_GCM: not offered"));
    CHECK(shim.count("C_GenerateKey") == generated);
    CHECK_ERR(p11_key_find(t, id, sizeof(id) - 1, &k, &e), P11KMS_E_NOT_FOUND, &e);
    p11_token_close(t);
    shim.reset();
}

/* Random bytes in chunks the token accepts: NSS softokn refuses more than 65,536 bytes per
 * call; a token with a smaller limit answers CKR_DATA_LEN_RANGE and the layer halves. */
static void test_random_chunks(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    enum { BIG = 200000 };
    uint8_t *buf = calloc(1, BIG);
    REQUIRE(buf != NULL);
    CHECK_OK(p11_token_random(t, buf, BIG, &e), &e);
    CHECK(shim.count("C_GenerateRandom") == 4); /* 3 x 65,536 + 3,392 */
    shim.random_max(5000);
    memset(buf, 0, BIG);
    CHECK_OK(p11_token_random(t, buf, BIG, &e), &e);
    size_t zeros = 0;
    for (size_t i = BIG - 4096; i < BIG; i++)
        zeros += buf[i] == 0;
    CHECK(zeros < 64); /* the tail was filled */
    unsigned long calls = shim.count("C_GenerateRandom");
    CHECK_OK(p11_token_random(t, buf, BIG, &e), &e);
    /* learnt: 4,096-byte chunks from now on, no refused call */
    CHECK(shim.count("C_GenerateRandom") - calls == (BIG + 4095) / 4096);
    p11_token_close(t);
    free(buf);
    shim.reset();
}

static int count_scanned(const p11_key_listing *k, void *arg)
{
    if (k->encrypt && k->decrypt && k->sensitive && !k->extractable)
        ++*(int *)arg;
    return 0;
}

/* A token that fails a whole C_GetAttributeValue when the object lacks one of the attributes
 * asked for (NSS softokn): the others are read one at a time, the missing one reads as false;
 * a key missing one of the protection attributes p11kms requires is refused and destroyed. */
static void test_missing_attribute(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    static const uint8_t id[] = "missing-attribute-key";
    p11_key *k = NULL;
    CHECK_OK(p11_key_generate(t, id, sizeof(id) - 1, "p11kms-attr-test", &k, &e), &e);
    shim.lack_attribute(CKA_DERIVE);
    unsigned long reads = shim.count("C_GetAttributeValue");
    p11_key_attributes attrs;
    CHECK_OK(p11_key_get_attributes(t, k, &attrs, &e), &e);
    CHECK(shim.count("C_GetAttributeValue") - reads > 16); /* one at a time after the refusal */
    CHECK(attrs.token && attrs.private_ && attrs.sensitive && !attrs.extractable);
    CHECK(attrs.always_sensitive && attrs.never_extractable && attrs.encrypt && attrs.decrypt);
    CHECK(!attrs.derive && !attrs.wrap && !attrs.sign);
    CHECK(attrs.key_type == CKK_AES && attrs.value_len == 32);
    CHECK(strcmp(attrs.label, "p11kms-attr-test") == 0);
    shim.lack_attribute(CKA_EXTRACTABLE);
    int good = 0;
    CHECK_OK(p11_key_scan(t, "p11kms-attr-", count_scanned, &good, &e), &e);
    CHECK(good == 1); /* a lacking CKA_EXTRACTABLE reads as false */
    CHECK_OK(p11_key_destroy(t, k, &e), &e);

    /* No CKA_ALWAYS_SENSITIVE: the generated key cannot be shown to be protected. */
    shim.lack_attribute(CKA_ALWAYS_SENSITIVE);
    static const uint8_t id2[] = "missing-always-sensitive";
    k = NULL;
    CHECK_ERR(p11_key_generate(t, id2, sizeof(id2) - 1, "p11kms-attr-test2", &k, &e),
              P11KMS_E_TOKEN, &e);
    CHECK(pt_contains(e.message, "not protected as required"));
    shim.reset();
    CHECK_ERR(p11_key_find(t, id2, sizeof(id2) - 1, &k, &e), P11KMS_E_NOT_FOUND, &e);
    p11_token_close(t);
}

/* Session copies: protected like their source, usable for the same operations, made again
 * after the token lost the login session, and a refusal reported with its CKR_*. */
static void test_session_copy(void)
{
    shim.reset();
    p11_token_config cfg = shim_config();
    p11_token *t = pt_open(&cfg);
    const uint8_t id[] = "copy-source";
    p11_key *src = NULL, *copy = NULL;
    CHECK_OK(p11_key_generate(t, id, sizeof(id) - 1, "copy-source", &src, &e), &e);
    CHECK_OK(p11_key_copy_session(t, src, &copy, &e), &e);
    REQUIRE(copy != NULL);
    CHECK(shim.count("C_CopyObject") == 1);
    p11_key_attributes a;
    CHECK_OK(p11_key_get_attributes(t, copy, &a, &e), &e);
    CHECK(!a.token && a.sensitive && !a.extractable && a.private_ && a.encrypt && a.decrypt);

    /* The key value cannot be read from the copy, from any session of the application. */
    CK_FUNCTION_LIST *fl = NULL;
    void *dl = dlopen(pt_shim_path(), RTLD_NOW | RTLD_NOLOAD);
    REQUIRE(dl != NULL);
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    REQUIRE(gfl != NULL && gfl(&fl) == CKR_OK);
    CK_SESSION_HANDLE s;
    REQUIRE(fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) == CKR_OK);
    uint8_t value[32];
    CK_ATTRIBUTE va = {CKA_VALUE, value, sizeof(value)};
    CHECK(fl->C_GetAttributeValue(s, atomic_load(&copy->ref.handle), &va, 1) ==
          CKR_ATTRIBUTE_SENSITIVE);
    fl->C_CloseSession(s);
    dlclose(dl);

    /* Same key: what the copy encrypts the source decrypts. */
    uint8_t iv[12] = {9}, pt[16] = "copy and source", ct[32], back[16];
    CHECK_OK(p11_gcm_encrypt(t, copy, iv, 12, NULL, 0, pt, 16, ct, 16, &e), &e);
    CHECK_OK(p11_gcm_decrypt(t, src, iv, 12, NULL, 0, ct, 32, 16, back, &e), &e);
    CHECK(memcmp(back, pt, 16) == 0);

    /* The token drops every session: the copy is made again on next use. */
    CHECK_OK(p11_token_test_close_all_sessions(t, &e), &e);
    CHECK(round_trip(t, copy));
    CHECK(shim.count("C_CopyObject") == 2);
    CHECK_OK(p11_key_destroy(t, copy, &e), &e);
    CHECK(round_trip(t, src));

    /* A token that refuses copies: the refusal and its code reach the caller, nothing is left. */
    shim.fail("C_CopyObject", CKR_FUNCTION_NOT_SUPPORTED, 1);
    copy = NULL;
    CHECK_ERR(p11_key_copy_session(t, src, &copy, &e), P11KMS_E_TOKEN, &e);
    CHECK(e.ckr == CKR_FUNCTION_NOT_SUPPORTED && copy == NULL);
    shim.fail("C_CopyObject", CKR_ACTION_PROHIBITED, 1); /* CKA_COPYABLE false */
    CHECK_ERR(p11_key_copy_session(t, src, &copy, &e), P11KMS_E_TOKEN, &e);
    CHECK(e.ckr == CKR_ACTION_PROHIBITED && copy == NULL);
    CHECK_OK(p11_key_destroy(t, src, &e), &e);
    p11_token_close(t);
}

int main(void)
{
    p11kit_config_here();
    shim_bind();
    test_get_interface();
    test_transient_failures();
    test_reinit();
    test_pin_never_retried();
    test_login_answer_looked_at_again(CKR_USER_PIN_NOT_INITIALIZED, true, 2);
    test_login_answer_looked_at_again(CKR_GENERAL_ERROR, false, 3);
    test_token_looked_for_again();
    test_token_flags();
    test_session_limit();
    test_token_iv(1);
    test_token_iv(2);
    test_legacy_layout();
    test_p11kit_name();
    test_module_args();
    test_capability_check();
    test_random_chunks();
    test_missing_attribute();
    test_session_copy();
    return check_finish("pkcs11-shim-test");
}
