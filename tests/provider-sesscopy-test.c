/* Session copies of master key versions (token.key-cache, token.session-keys): operations use
 * copies, at most session-keys of them live, a key that leaves Enabled loses its copies, and
 * token.key-cache: token-object turns them off. Counts come from p11kms_token_info. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

static p11kms_error e;

/* The test configuration with token_lines added to its token section. */
static char *config_with_token(const char *name, const char *token_lines)
{
    char *base = test_read_file(test_env("P11KMS_CONFIG"), NULL);
    REQUIRE(base != NULL);
    char *at = strstr(base, "\ntoken:\n");
    REQUIRE(at != NULL);
    at += strlen("\ntoken:\n");
    size_t n = strlen(base) + strlen(token_lines) + 1;
    char *text = malloc(n);
    REQUIRE(text != NULL);
    snprintf(text, n, "%.*s%s%s", (int)(at - base), base, token_lines, at);
    char *path = fx_write_file(name, text);
    free(text);
    free(base);
    return path;
}

static p11kms_token_report report(p11kms *svc)
{
    p11kms_token_report r;
    CHECK_OK(p11kms_token_info(svc, &r, &e), &e);
    return r;
}

static void encrypt_once(p11kms *svc, const p11kms_principal *who, const char *id)
{
    static const uint8_t pt[] = "hot key";
    p11kms_result ct;
    CHECK_OK(p11kms_encrypt(svc, who, id, NULL, pt, sizeof(pt), &ct, &e), &e);
    p11kms_result r;
    CHECK_OK(p11kms_decrypt(svc, who, id, NULL, ct.ciphertext, ct.ciphertext_len, &r, &e), &e);
    CHECK(fx_same(r.plaintext, r.plaintext_len, pt, sizeof(pt)));
    p11kms_result_free(&r);
    p11kms_result_free(&ct);
}

int main(void)
{
    p11kms_principal *who = fx_principal("unix:user:sesscopy-tester");
    char *path = config_with_token("sesscopy.yaml", "  session-keys: 2\n");
    p11kms *svc = fx_open(path);
    char ids[3][P11KMS_KEY_ID_LEN + 1];
    for (int i = 0; i < 3; i++)
        fx_create_key(svc, who, "session copy test", ids[i]);

    fx_say("token info: session copies in force, none yet");
    p11kms_token_report r = report(svc);
    CHECK(strcmp(r.key_cache, "session-copy") == 0);
    CHECK(r.session_keys == 2 && r.session_copies == 0 && r.refused_keys == 0);

    fx_say("the first operation on a key makes its copy; at most session-keys copies live");
    encrypt_once(svc, who, ids[0]);
    CHECK(report(svc).session_copies == 1);
    encrypt_once(svc, who, ids[1]);
    CHECK(report(svc).session_copies == 2);
    encrypt_once(svc, who, ids[2]);
    r = report(svc);
    CHECK(r.session_copies == 2 && r.refused_keys == 0);
    encrypt_once(svc, who, ids[0]); /* evicted, copied again */
    CHECK(report(svc).session_copies == 2);

    fx_say("a disabled key loses its copy and is refused; enabled again it works");
    CHECK_OK(p11kms_disable_key(svc, who, ids[0], &e), &e);
    CHECK(report(svc).session_copies == 1);
    static const uint8_t pt[] = "x";
    p11kms_result ct;
    CHECK_ERR(p11kms_encrypt(svc, who, ids[0], NULL, pt, 1, &ct, &e), P11KMS_E_DISABLED, &e);
    CHECK_OK(p11kms_enable_key(svc, who, ids[0], &e), &e);
    encrypt_once(svc, who, ids[0]);
    p11kms_close(svc);
    free(path);

    fx_say("token.key-cache: token-object uses no copies");
    path = config_with_token("tokenobj.yaml", "  key-cache: token-object\n");
    svc = fx_open(path);
    encrypt_once(svc, who, ids[1]);
    r = report(svc);
    CHECK(strcmp(r.key_cache, "token-object") == 0 && r.session_copies == 0);
    p11kms_close(svc);
    free(path);
    p11kms_principal_free(who);
    return check_finish("provider-sesscopy-test");
}
