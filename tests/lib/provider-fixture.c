#include "config.h"

#include "provider-fixture.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "check.h"
#include "provider/keymeta.h"
#include "provider/keystore.h"
#include "softhsm-guard.h"

#define TEST_ARN_PREFIX "arn:aws:kms:local:000000000000:"

void fx_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("== ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* SoftHSM's window in which token.object is empty (softhsm-guard.h): no token at all, or a
 * token whose user PIN C_Login finds not initialized. */
static bool token_mid_rewrite(p11kms_err rc, const p11kms_error *e)
{
    return ((rc == P11KMS_E_NOT_FOUND && strstr(e->message, "no token matches URI") != NULL) ||
            strstr(e->message, "CKR_USER_PIN_NOT_INITIALIZED") != NULL) &&
           softhsm_guard_own_token();
}

p11kms *fx_open(const char *config_path)
{
    p11kms *svc = NULL;
    p11kms_error e = {0};
    p11kms_err rc = p11kms_open(config_path, &svc, &e);
    for (int retry = 0; retry < 2 && token_mid_rewrite(rc, &e); retry++) {
        fprintf(stderr, "   the token looked uninitialized at open (SoftHSM rewriting token.object "
                        "for another process's C_Login?): trying again\n");
        fx_sleep_ms(20);
        rc = p11kms_open(config_path, &svc, &e);
    }
    if (rc != P11KMS_OK) {
        fprintf(stderr, "p11kms_open(%s) failed: %s: %s (raised at %s:%d)\n",
                config_path ? config_path : "$P11KMS_CONFIG", p11kms_error_class(rc), e.message,
                e.file ? e.file : "?", e.line);
        exit(99);
    }
    return svc;
}

static char *root_path(const char *name)
{
    const char *root = test_env("P11KMS_TEST_ROOT");
    size_t n = strlen(root) + strlen(name) + 2;
    char *path = malloc(n);
    REQUIRE(path != NULL);
    snprintf(path, n, "%s/%s", root, name);
    return path;
}

char *fx_write_file(const char *name, const char *text)
{
    char *path = root_path(name);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    REQUIRE(fputs(text, f) >= 0);
    REQUIRE(fclose(f) == 0);
    return path;
}

const char *fx_shim_path(void)
{
    static char path[4096];
    int n =
        snprintf(path, sizeof(path), "%s/tests/.libs/pkcs11-shim.so", test_env("P11KMS_BUILDDIR"));
    REQUIRE(n > 0 && (size_t)n < sizeof(path));
    return path;
}

char *fx_shim_config(const char *name, const char *token_lines)
{
    char *base = test_read_file(test_env("P11KMS_CONFIG"), NULL);
    REQUIRE(base != NULL);
    size_t cap = strlen(base) + 4200 + (token_lines != NULL ? strlen(token_lines) : 0);
    char *text = malloc(cap);
    REQUIRE(text != NULL);
    text[0] = '\0';
    bool replaced = false;
    char *save = NULL;
    for (char *line = strtok_r(base, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        size_t at = strlen(text);
        if (strncmp(line, "  module: ", 10) == 0) {
            snprintf(text + at, cap - at, "  module: %s\n%s", fx_shim_path(),
                     token_lines != NULL ? token_lines : "");
            replaced = true;
        } else {
            snprintf(text + at, cap - at, "%s\n", line);
        }
    }
    REQUIRE(replaced);
    char *path = fx_write_file(name, text);
    free(text);
    free(base);
    return path;
}

void *fx_shim_symbol(const char *name)
{
    void *dl = dlopen(fx_shim_path(), RTLD_NOW | RTLD_NOLOAD);
    REQUIRE(dl != NULL);
    void *sym = dlsym(dl, name);
    REQUIRE(sym != NULL);
    /* The service keeps the module loaded; this handle only raised its count. */
    dlclose(dl);
    return sym;
}

/* Writes each line of lines, indented by two spaces. */
static void put_indented(FILE *f, const char *lines)
{
    const char *p = lines;
    while (*p != '\0') {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0)
            fprintf(f, "  %.*s\n", (int)n, p);
        p += n;
        if (*p == '\n')
            p++;
    }
}

char *fx_config(const char *name, const char *keys_lines, const char *hierarchy_lines,
                const char *policy_path)
{
    char *base = test_read_file(test_env("P11KMS_CONFIG"), NULL);
    char *path = root_path(name);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    bool keys_done = false, policy_done = false;
    char *save = NULL;
    for (char *line = strtok_r(base, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (policy_path != NULL && strncmp(line, "policy:", 7) == 0) {
            fprintf(f, "policy: %s\n", policy_path);
            policy_done = true;
            continue;
        }
        fprintf(f, "%s\n", line);
        if (strcmp(line, "keys:") == 0 && keys_lines != NULL) {
            put_indented(f, keys_lines);
            keys_done = true;
        }
    }
    if (keys_lines != NULL && !keys_done) {
        fputs("keys:\n", f);
        put_indented(f, keys_lines);
    }
    if (hierarchy_lines != NULL) {
        fputs("hierarchy:\n", f);
        put_indented(f, hierarchy_lines);
    }
    if (policy_path != NULL && !policy_done)
        fprintf(f, "policy: %s\n", policy_path);
    REQUIRE(fclose(f) == 0);
    free(base);
    return path;
}

p11kms_principal *fx_principal(const char *name)
{
    p11kms_principal *p = p11kms_principal_new();
    REQUIRE(p != NULL);
    p11kms_error e = {0};
    if (p11kms_principal_add(p, name, &e) != P11KMS_OK) {
        fprintf(stderr, "p11kms_principal_add(%s): %s\n", name, e.message);
        exit(99);
    }
    return p;
}

p11kms_context *fx_ctx(const char *key, ...)
{
    p11kms_context *ctx = p11kms_context_new();
    REQUIRE(ctx != NULL);
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k != NULL; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        REQUIRE(v != NULL);
        p11kms_error e = {0};
        if (p11kms_context_add(ctx, k, v, &e) != P11KMS_OK) {
            fprintf(stderr, "p11kms_context_add(%s, %s): %s\n", k, v, e.message);
            exit(99);
        }
    }
    va_end(ap);
    return ctx;
}

void fx_create_key(p11kms *svc, const p11kms_principal *who, const char *description,
                   char id[P11KMS_KEY_ID_LEN + 1])
{
    p11kms_create_key_input in = {.description = description};
    p11kms_key_metadata md;
    p11kms_error e = {0};
    p11kms_err rc = p11kms_create_key(svc, who, &in, &md, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "p11kms_create_key failed: %s: %s\n", p11kms_error_class(rc), e.message);
        exit(99);
    }
    memcpy(id, md.key_id, P11KMS_KEY_ID_LEN + 1);
}

void fx_key_arn(const char *id, char arn[P11KMS_ARN_MAX])
{
    snprintf(arn, P11KMS_ARN_MAX, TEST_ARN_PREFIX "key/%s", id);
}

void fx_alias_arn(const char *alias, char arn[P11KMS_ARN_MAX])
{
    snprintf(arn, P11KMS_ARN_MAX, TEST_ARN_PREFIX "%s", alias);
}

bool fx_same(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || (a != NULL && b != NULL && memcmp(a, b, a_len) == 0));
}

bool fx_msg_has(const p11kms_error *e, const char *needle)
{
    return strstr(e->message, needle) != NULL;
}

int64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fx_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void fx_list_add(fx_list *l, const char *s)
{
    char **grown = realloc(l->items, (l->count + 1) * sizeof(*grown));
    REQUIRE(grown != NULL);
    l->items = grown;
    l->items[l->count] = strdup(s);
    REQUIRE(l->items[l->count] != NULL);
    l->count++;
}

bool fx_list_has(const fx_list *l, const char *s)
{
    for (size_t i = 0; i < l->count; i++) {
        if (strcmp(l->items[i], s) == 0)
            return true;
    }
    return false;
}

long fx_list_find_sub(const fx_list *l, const char *needle)
{
    for (size_t i = 0; i < l->count; i++) {
        if (strstr(l->items[i], needle) != NULL)
            return (long)i;
    }
    return -1;
}

void fx_list_free(fx_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

int fx_collect_key(const char *key_id, const char *arn, void *arg)
{
    (void)arn;
    fx_list_add(arg, key_id);
    return 0;
}

int fx_collect_alias(const char *alias_name, const char *alias_arn, const char *target_key_id,
                     void *arg)
{
    (void)alias_arn;
    (void)target_key_id;
    fx_list_add(arg, alias_name);
    return 0;
}

int fx_collect_alias_target(const char *alias_name, const char *alias_arn,
                            const char *target_key_id, void *arg)
{
    (void)alias_arn;
    char both[P11KMS_ALIAS_MAX + P11KMS_KEY_ID_LEN + 2];
    snprintf(both, sizeof(both), "%s=%s", alias_name, target_key_id);
    fx_list_add(arg, both);
    return 0;
}

void fx_collect_line(const char *line, void *arg)
{
    fprintf(stderr, "   maintain: %s\n", line);
    fx_list_add(arg, line);
}

void fx_list_keys(p11kms *svc, const p11kms_principal *who, fx_list *out)
{
    p11kms_error e = {0};
    p11kms_err rc = p11kms_list_keys(svc, who, fx_collect_key, out, &e);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "p11kms_list_keys failed: %s: %s\n", p11kms_error_class(rc), e.message);
        exit(99);
    }
}

void fx_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        REQUIRE(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

void fx_recv(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        REQUIRE(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

void fx_send_msg(int fd, const void *buf, size_t len)
{
    uint32_t n = (uint32_t)len;
    REQUIRE(n == len);
    fx_send(fd, &n, sizeof(n));
    fx_send(fd, buf, len);
}

uint8_t *fx_recv_msg(int fd, size_t *len)
{
    uint32_t n;
    fx_recv(fd, &n, sizeof(n));
    REQUIRE(n < (1u << 24));
    uint8_t *buf = malloc((size_t)n + 1);
    REQUIRE(buf != NULL);
    fx_recv(fd, buf, n);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

unsigned long fx_token_objects_with_id(void *function_list, const void *id, size_t id_len)
{
    CK_FUNCTION_LIST *fl = function_list;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, found = 0;
    REQUIRE(fl->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK && n > 0);
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE match[] = {{CKA_ID, (void *)id, id_len}, {CKA_TOKEN, &on_token, sizeof(on_token)}};
    for (CK_ULONG i = 0; i < n; i++) {
        CK_SESSION_HANDLE s;
        if (fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
            continue;
        CK_OBJECT_HANDLE h[4];
        CK_ULONG got = 0;
        if (fl->C_FindObjectsInit(s, match, 2) == CKR_OK) {
            if (fl->C_FindObjects(s, h, 4, &got) == CKR_OK)
                found += got;
            fl->C_FindObjectsFinal(s);
        }
        fl->C_CloseSession(s);
    }
    return found;
}

void fx_backdate_deletion(p11kms *svc, const char *key_id)
{
    p11kms_error e = {0};
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    key_meta *m = NULL;
    REQUIRE(keystore_meta_read(svc, key_id, &m, &e) == P11KMS_OK);
    REQUIRE(m->state == P11KMS_KEY_PENDING_DELETION);
    m->deletion_date = time(NULL) - 60;
    REQUIRE(keystore_meta_write(svc, m, &e) == P11KMS_OK);
    keymeta_free(m);
    keystore_unlock(svc);
}
