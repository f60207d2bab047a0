/* Opening the token: every way the configuration can be wrong must fail with a clear error and
 * leave nothing open; PIN sources; token selection by RFC 7512 URI; modules by absolute path and
 * by p11-kit name. */
#include "config.h"

#define P11_KIT_FUTURE_UNSTABLE_API 1

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <p11-kit/p11-kit.h>

#include "pkcs11-testutil.h"

static p11kms_error e;

/* Opening must fail with want; the message must contain needle (if any). */
static void check_open_fails(const p11_token_config *cfg, p11kms_err want, const char *needle,
                             const char *what)
{
    p11_token *t = (p11_token *)1;
    p11kms_error_clear(&e);
    p11kms_err rc = p11_token_open(cfg, &t, &e);
    CHECK(rc == want);
    CHECK(t == NULL);
    if (rc != want)
        fprintf(stderr, "  %s: want %s, got %s: %s\n", what, p11kms_error_class(want),
                p11kms_error_class(rc), e.message);
    else
        fprintf(stderr, "  %s: %s: %s\n", what, p11kms_error_class(rc), e.message);
    if (needle != NULL) {
        CHECK(pt_contains(e.message, needle));
        if (!pt_contains(e.message, needle))
            fprintf(stderr, "  %s: message lacks '%s'\n", what, needle);
    }
    if (rc == P11KMS_OK)
        p11_token_close(t);
}

static void check_open_ok(const p11_token_config *cfg, const char *what)
{
    p11_token *t = NULL;
    p11kms_err rc = p11_token_open(cfg, &t, &e);
    CHECK(rc == P11KMS_OK && t != NULL);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "  %s: %s: %s\n", what, p11kms_error_class(rc), e.message);
        return;
    }
    uint8_t raw[32] = {1}, iv[12] = {2}, pt[8] = "opened", ct[24], back[8];
    p11_key *k = NULL;
    CHECK_OK(p11_key_create_session_aes(t, raw, sizeof(raw), &k, &e), &e);
    CHECK_OK(p11_gcm_encrypt(t, k, iv, 12, NULL, 0, pt, sizeof(pt), ct, 16, &e), &e);
    CHECK_OK(p11_gcm_decrypt(t, k, iv, 12, NULL, 0, ct, sizeof(ct), 16, back, &e), &e);
    CHECK(memcmp(back, pt, sizeof(pt)) == 0);
    p11_token_close(t);
}

static void test_pins(void)
{
    p11_token_config cfg = pt_config();

    /* A wrong PIN spends one of the token's PIN tries (on a real HSM, the last one locks it):
     * only on a token the test harness made itself. */
    const char *own = getenv("P11KMS_TEST_OWN_TOKEN");
    char *wrong = pt_write_source("wrong-pin", "87654321\n");
    if (own != NULL && strcmp(own, "1") == 0) {
        cfg.pin_source = wrong;
        check_open_fails(&cfg, P11KMS_E_PIN, "CKR_PIN_INCORRECT", "wrong PIN");
        CHECK(e.ckr == CKR_PIN_INCORRECT);
        CHECK(!pt_contains(e.message, "87654321"));
        fprintf(stderr, "  the wrong-PIN check ran: the harness made this token "
                        "(P11KMS_TEST_OWN_TOKEN=1), it may spend a PIN try\n");
    } else {
        printf("not run on this token: the wrong-PIN check (it would spend a PIN try on a token "
               "the harness did not make: P11KMS_TEST_OWN_TOKEN is not 1)\n");
    }

    char *missing = pt_file_source("/nonexistent/p11kms/pin");
    cfg.pin_source = missing;
    check_open_fails(&cfg, P11KMS_E_PIN, "/nonexistent/p11kms/pin", "missing PIN file");
    char *empty = pt_write_source("empty-pin", "");
    cfg.pin_source = empty;
    check_open_fails(&cfg, P11KMS_E_PIN, "empty", "empty PIN file");
    char *blank = pt_write_source("blank-pin", "\nsecond line\n");
    cfg.pin_source = blank;
    check_open_fails(&cfg, P11KMS_E_PIN, "empty", "empty first line");
    char long_pin[400];
    memset(long_pin, '1', sizeof(long_pin) - 1);
    long_pin[sizeof(long_pin) - 1] = '\0';
    char *too_long = pt_write_source("long-pin", long_pin);
    cfg.pin_source = too_long;
    check_open_fails(&cfg, P11KMS_E_PIN, "longer", "PIN line too long");

    cfg.pin_source = "env:P11KMS_PIN";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "file:", "unsupported PIN source");
    cfg.pin_source = "file:relative/pin";
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "relative PIN file");
    cfg.pin_source = "12345678";
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "literal PIN as source");
    CHECK(!pt_contains(e.message, "12345678"));
    cfg.pin_source = NULL;
    check_open_fails(&cfg, P11KMS_E_CONFIG, "pin-source", "no PIN source at all");

    /* accepted forms: no newline, CRLF, a second line, file:///, the URI's pin-source */
    char *bare = pt_write_source("bare-pin", "12345678");
    cfg.pin_source = bare;
    check_open_ok(&cfg, "PIN without newline");
    char *crlf = pt_write_source("crlf-pin", "12345678\r\nignored\n");
    cfg.pin_source = crlf;
    check_open_ok(&cfg, "PIN with CRLF and a second line");
    char triple[4200];
    snprintf(triple, sizeof(triple), "file://%s", test_env("P11KMS_TEST_PIN_FILE"));
    cfg.pin_source = triple;
    check_open_ok(&cfg, "file:/// PIN source");

    /* the harness's URI (no query of its own) with a query added */
    const char *token_uri = test_env("P11KMS_TEST_URI");
    REQUIRE(strchr(token_uri, '?') == NULL);
    char uri[4200];
    snprintf(uri, sizeof(uri), "%s?pin-source=file:%s", token_uri,
             test_env("P11KMS_TEST_PIN_FILE"));
    cfg.pin_source = NULL;
    cfg.token_uri = uri;
    check_open_ok(&cfg, "pin-source in the URI");
    snprintf(uri, sizeof(uri), "%s?pin-value=12345678", token_uri);
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_CONFIG, "pin-value", "literal PIN in the URI");
    CHECK(!pt_contains(e.message, "12345678"));

    free(wrong);
    free(missing);
    free(empty);
    free(blank);
    free(too_long);
    free(bare);
    free(crlf);
}

/* The harness's token, selected by what it shows (P11KMS_TEST_URI, P11KMS_TEST_TOKEN_LABEL and
 * the token's own CK_TOKEN_INFO), not by SoftHSM's names. */
static void test_uris(void)
{
    p11_token_config cfg = pt_config();
    p11_token *t = pt_open(&cfg);
    p11_token_info info;
    CHECK_OK(p11_token_get_info(t, &info, &e), &e);
    p11_token_close(t);
    const char *label = test_env("P11KMS_TEST_TOKEN_LABEL");
    const char *kind = test_env("P11KMS_TEST_TOKEN");
    CHECK(strcmp(info.token_label, label) == 0);
    const char *token_uri = test_env("P11KMS_TEST_URI");
    char label_enc[128], manufacturer_enc[128], model_enc[64], serial_enc[64];
    pt_uri_escape(label, label_enc, sizeof(label_enc));
    pt_uri_escape(info.token_manufacturer, manufacturer_enc, sizeof(manufacturer_enc));
    pt_uri_escape(info.token_model, model_enc, sizeof(model_enc));
    pt_uri_escape(info.token_serial, serial_enc, sizeof(serial_enc));
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "'%s'", label); /* how a message lists a token */
    char uri[512];

    cfg.token_uri = "pkcs11:token=nope";
    check_open_fails(&cfg, P11KMS_E_NOT_FOUND, "pkcs11:token=nope", "no such token");
    CHECK(pt_contains(e.message, quoted)); /* says what is there */
    cfg.token_uri = "";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "first slot", "empty URI");
    cfg.token_uri = NULL;
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "no URI");
    cfg.token_uri = "pkcs11:";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "names no token", "URI naming nothing");
    cfg.token_uri = "http://example.com/token";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "invalid token URI", "not a pkcs11 URI");
    cfg.token_uri = "pkcs11:token=%zz";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "invalid token URI", "bad percent encoding");
    snprintf(uri, sizeof(uri), "%s;object=master", token_uri);
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "object attribute");
    snprintf(uri, sizeof(uri), "%s;no-such-attr=1", token_uri);
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "unknown attribute");

    /* Two tokens of the test token's model: SoftHSM always offers a free slot with an
     * uninitialized token, NSS softokn its "NSS Generic Crypto Services" beside the key
     * database. On a token the harness did not make, how many share the model is not known. */
    int two_of_model = strcmp(kind, "softhsm") == 0 || strcmp(kind, "nss") == 0;
    snprintf(uri, sizeof(uri), "pkcs11:model=%s", model_enc);
    cfg.token_uri = uri;
    if (two_of_model) {
        check_open_fails(&cfg, P11KMS_E_CONFIG, "matches 2 tokens", "ambiguous URI");
        CHECK(pt_contains(e.message, quoted));
    } else {
        printf("not run on this token: the ambiguous-URI check (a %s token: how many tokens "
               "share the model '%s' is not known)\n",
               kind, info.token_model);
    }

    /* NSS softokn gives every token the serial 0000000000000000: the serial alone is as
     * ambiguous as the model, and selects with the label. */
    snprintf(uri, sizeof(uri), "pkcs11:serial=%s", serial_enc);
    cfg.token_uri = uri;
    if (strcmp(kind, "nss") == 0) {
        check_open_fails(&cfg, P11KMS_E_CONFIG, "matches 2 tokens", "serial shared by two tokens");
        CHECK(pt_contains(e.message, quoted));
    } else {
        check_open_ok(&cfg, "by serial");
    }
    snprintf(uri, sizeof(uri), "pkcs11:serial=%s;token=%s", serial_enc, label_enc);
    cfg.token_uri = uri;
    check_open_ok(&cfg, "by serial and label");
    snprintf(uri, sizeof(uri), "pkcs11:slot-id=%lu", info.slot_id);
    cfg.token_uri = uri;
    check_open_ok(&cfg, "by slot-id");
    snprintf(uri, sizeof(uri), "pkcs11:manufacturer=%s;model=%s;token=%s", manufacturer_enc,
             model_enc, label_enc);
    cfg.token_uri = uri;
    check_open_ok(&cfg, "by manufacturer, model and label");
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;slot-id=%lu", label_enc, info.slot_id + 1);
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_NOT_FOUND, NULL, "right label, wrong slot");
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;serial=%s", label_enc,
             strcmp(info.token_serial, "9999999999999999") == 0 ? "8888888888888888"
                                                                : "9999999999999999");
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_NOT_FOUND, NULL, "right label, wrong serial");
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;manufacturer=Somebody", label_enc);
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_NOT_FOUND, NULL, "wrong manufacturer");
    snprintf(uri, sizeof(uri), "pkcs11:library-manufacturer=Nobody;token=%s", label_enc);
    cfg.token_uri = uri;
    check_open_fails(&cfg, P11KMS_E_NOT_FOUND, NULL, "wrong library");
}

static void test_modules(void)
{
    p11_token_config cfg = pt_config();
    cfg.module = "/nonexistent/p11kms/libnothing.so";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "/nonexistent/p11kms/libnothing.so",
                     "module path not found");
    cfg.module = "softhsm/libsofthsm2.so";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "relative", "relative module path");
    cfg.module = "./libsofthsm2.so";
    check_open_fails(&cfg, P11KMS_E_CONFIG, "relative", "./ module path");
    cfg.module = "";
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "empty module");
    cfg.module = NULL;
    check_open_fails(&cfg, P11KMS_E_CONFIG, NULL, "no module");
    char *not_a_module = pt_write_file("not-a-module.so", "this is not a shared object\n");
    cfg.module = not_a_module;
    check_open_fails(&cfg, P11KMS_E_CONFIG, "cannot load", "file that is no module");
    free(not_a_module);
    /* A module registered with p11-kit takes its arguments (NSS softokn's configdir=...) from
     * its registration (x-init-reserved, see p11kit_config_here), never from module-args. */
    const char *module_args = cfg.module_args;
    cfg.module = "p11kms-no-such-module";
    cfg.module_args = NULL;
    check_open_fails(&cfg, P11KMS_E_CONFIG, "p11kms-token", "unregistered module name");
    if (module_args != NULL) {
        cfg.module = "p11kms-token";
        cfg.module_args = module_args;
        check_open_fails(&cfg, P11KMS_E_CONFIG, "x-init-reserved",
                         "module-args beside a registered name");
        cfg.module_args = NULL;
    }

    /* p11-kit's registered module, by name */
    cfg.module = "p11kms-token";
    p11_token *t = NULL;
    CHECK_OK(p11_token_open(&cfg, &t, &e), &e);
    if (t != NULL) {
        p11_token_info info;
        CHECK_OK(p11_token_get_info(t, &info, &e), &e);
        CHECK(strcmp(info.module, "p11kms-token") == 0);
        CHECK(strcmp(info.token_label, test_env("P11KMS_TEST_TOKEN_LABEL")) == 0);
        CHECK(!info.via_get_interface);
        p11_token_close(t);
    }
    check_open_ok(&cfg, "module by p11-kit name");
    cfg.token_uri = "pkcs11:token=nope";
    check_open_fails(&cfg, P11KMS_E_NOT_FOUND, NULL, "module by name, no such token");
}

/* p11-kit ignores user configuration when running as root (as CI often does), so the test points
 * p11-kit's configuration at its own scratch directory. The test token's module is registered
 * under a name no system file uses, with the token's module arguments as x-init-reserved. */
static void p11kit_config_here(void)
{
    /* p11-kit keeps these pointers: they must outlive every later load */
    static char dir[4096], none[4096], conf[4200], user_conf[4200];
    char file[4200];
    snprintf(dir, sizeof(dir), "%s/p11-kit-modules", test_env("P11KMS_TEST_ROOT"));
    snprintf(none, sizeof(none), "%s/p11-kit-none", test_env("P11KMS_TEST_ROOT"));
    REQUIRE(mkdir(dir, 0700) == 0);
    snprintf(file, sizeof(file), "%s/p11kms-token.module", dir);
    FILE *f = fopen(file, "w");
    REQUIRE(f != NULL);
    fprintf(f, "module: %s\n", test_env("P11KMS_TEST_MODULE"));
    const char *args = getenv("P11KMS_TEST_MODULE_ARGS");
    if (args != NULL) {
        REQUIRE(strchr(args, '\n') == NULL);
        fprintf(f, "x-init-reserved: %s\n", args);
    }
    REQUIRE(fclose(f) == 0);
    snprintf(conf, sizeof(conf), "%s/pkcs11.conf", none);
    snprintf(user_conf, sizeof(user_conf), "%s/user.conf", none);
    p11_kit_override_system_files(conf, user_conf, dir, none, none);
}

int main(void)
{
    p11kit_config_here();
    p11_token_config cfg = pt_config();
    check_open_ok(&cfg, "the test token");
    test_pins();
    test_uris();
    test_modules();
    return check_finish("pkcs11-open-test");
}
