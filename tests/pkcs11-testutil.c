#include "config.h"

#include "pkcs11-testutil.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

p11_token_config pt_config(void)
{
    p11_token_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.module = test_env("P11KMS_TEST_MODULE");
    cfg.module_args = getenv("P11KMS_TEST_MODULE_ARGS"); /* NSS softokn's database parameters */
    cfg.token_uri = test_env("P11KMS_TEST_URI");
    static char *source;
    if (source == NULL)
        source = pt_file_source(test_env("P11KMS_TEST_PIN_FILE"));
    cfg.pin_source = source;
    return cfg;
}

p11_token *pt_open(const p11_token_config *cfg)
{
    p11kms_error err = {0};
    p11_token *t = NULL;
    if (p11_token_open(cfg, &t, &err) != P11KMS_OK) {
        fprintf(stderr, "cannot open the test token: %s: %s\n", p11kms_error_class(err.code),
                err.message);
        exit(99);
    }
    return t;
}

char *pt_write_file(const char *name, const char *content)
{
    size_t n = strlen(test_env("P11KMS_TEST_ROOT")) + strlen(name) + 2;
    char *path = malloc(n);
    REQUIRE(path != NULL);
    snprintf(path, n, "%s/%s", test_env("P11KMS_TEST_ROOT"), name);
    /* 0600 from the start: PIN files must not be readable by others (p11kms refuses them). */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    REQUIRE(f != NULL);
    REQUIRE(fputs(content, f) >= 0);
    REQUIRE(fclose(f) == 0);
    return path;
}

char *pt_file_source(const char *path)
{
    size_t n = strlen(path) + 6;
    char *s = malloc(n);
    REQUIRE(s != NULL);
    snprintf(s, n, "file:%s", path);
    return s;
}

char *pt_write_source(const char *name, const char *content)
{
    char *path = pt_write_file(name, content);
    char *source = pt_file_source(path);
    free(path);
    return source;
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t pt_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    REQUIRE(n % 2 == 0 && n / 2 <= cap);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        REQUIRE(hi >= 0 && lo >= 0);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return n / 2;
}

const char *pt_shim_path(void)
{
    static char path[4096];
    int n =
        snprintf(path, sizeof(path), "%s/tests/.libs/pkcs11-shim.so", test_env("P11KMS_BUILDDIR"));
    REQUIRE(n > 0 && (size_t)n < sizeof(path));
    return path;
}

void *pt_shim_symbol(const char *name)
{
    /* Loaded once for the whole test, so the control state outlives each p11_token. */
    static void *dl;
    if (dl == NULL && (dl = dlopen(pt_shim_path(), RTLD_NOW | RTLD_LOCAL)) == NULL) {
        fprintf(stderr, "cannot load %s: %s\n", pt_shim_path(), dlerror());
        exit(99);
    }
    void *sym = dlsym(dl, name);
    if (sym == NULL) {
        fprintf(stderr, "%s has no %s\n", pt_shim_path(), name);
        exit(99);
    }
    return sym;
}

const char *pt_uri_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        REQUIRE(o + 4 <= cap);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
    }
    REQUIRE(o < cap);
    out[o] = '\0';
    return out;
}

int pt_contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

int pt_token_stores_data(p11_token *t, const char *what)
{
    p11kms_error err = {0};
    const char probe[] = "p11kms-test/data-object-probe";
    p11kms_err rc = p11_data_create(t, probe, (const uint8_t *)"probe", 5, &err);
    if (rc == P11KMS_OK) {
        CHECK_OK(p11_data_delete(t, probe, &err), &err);
        return 1;
    }
    /* The codes a token refuses an object class or its template with; anything else (a p11kms
     * validation error, a session failure) is a failure of the layer, not the token's choice. */
    CHECK(rc == P11KMS_E_TOKEN &&
          (err.ckr == CKR_ATTRIBUTE_VALUE_INVALID || err.ckr == CKR_TEMPLATE_INCONSISTENT ||
           err.ckr == CKR_ATTRIBUTE_TYPE_INVALID || err.ckr == CKR_FUNCTION_NOT_SUPPORTED));
    const char *kind = getenv("P11KMS_TEST_TOKEN");
    CHECK(kind == NULL || strcmp(kind, "softhsm") != 0);
    fprintf(stderr, "not run on this token: %s (the token refuses CKO_DATA objects: %s)\n", what,
            err.message);
    return 0;
}
