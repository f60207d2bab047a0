#include "config.h"

#include "provider/context-api.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const enc_context *context_pairs(const p11kms_context *ctx)
{
    return ctx != NULL ? ctx->pairs : NULL; /* enc_context treats NULL as the empty context */
}

p11kms_context *p11kms_context_new(void)
{
    p11kms_context *ctx = calloc(1, sizeof(*ctx));
    if (ctx != NULL && (ctx->pairs = enc_context_new()) == NULL) {
        free(ctx);
        ctx = NULL;
    }
    return ctx;
}

p11kms_err p11kms_context_add(p11kms_context *ctx, const char *key, const char *value,
                              p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (ctx == NULL || key == NULL || value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: missing key or value");
    return enc_context_add(ctx->pairs, key, value, err);
}

p11kms_err p11kms_context_parse(const char *text, p11kms_context **out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    *out = NULL;
    if (text == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: no text");
    p11kms_context *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p11kms_err rc = enc_context_parse_cli(text, &ctx->pairs, err);
    if (rc != P11KMS_OK) {
        free(ctx);
        return rc;
    }
    *out = ctx;
    return P11KMS_OK;
}

size_t p11kms_context_count(const p11kms_context *ctx)
{
    return enc_context_count(context_pairs(ctx));
}

const char *p11kms_context_key(const p11kms_context *ctx, size_t i)
{
    return i < p11kms_context_count(ctx) ? enc_context_pairs(ctx->pairs)[i].key : NULL;
}

const char *p11kms_context_value(const p11kms_context *ctx, size_t i)
{
    return i < p11kms_context_count(ctx) ? enc_context_pairs(ctx->pairs)[i].value : NULL;
}

void p11kms_context_free(p11kms_context *ctx)
{
    if (ctx != NULL) {
        enc_context_free(ctx->pairs);
        free(ctx);
    }
}

/* --- principals ---------------------------------------------------------------------------- */

p11kms_principal *p11kms_principal_new(void)
{
    return calloc(1, sizeof(p11kms_principal));
}

p11kms_err p11kms_principal_add(p11kms_principal *p, const char *name, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (p == NULL || name == NULL || *name == '\0' || strlen(name) > 1024)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "principal names must have 1..1024 bytes");
    if (strchr(name, ':') == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "principal \"%.64s\" has no scheme (unix:user:NAME, x509:SUBJECT, ...)",
                            name);
    char **grown = realloc(p->names, (p->count + 1) * sizeof(*grown));
    if (grown == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p->names = grown;
    if ((p->names[p->count] = strdup(name)) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p->count++;
    return P11KMS_OK;
}

static p11kms_err add_formatted(p11kms_principal *p, p11kms_error *err, const char *fmt, ...)
    P11KMS_PRINTF(3, 4);

static p11kms_err add_formatted(p11kms_principal *p, p11kms_error *err, const char *fmt, ...)
{
    char name[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    return p11kms_principal_add(p, name, err);
}

static p11kms_err add_group(p11kms_principal *p, gid_t gid, p11kms_error *err)
{
    struct group *gr = getgrgid(gid);
    if (gr != NULL)
        return add_formatted(p, err, "unix:group:%s", gr->gr_name);
    return add_formatted(p, err, "unix:gid:%u", (unsigned)gid);
}

p11kms_err p11kms_principal_from_process(p11kms_principal **out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    *out = NULL;
    p11kms_principal *p = p11kms_principal_new();
    if (p == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    uid_t uid = geteuid();
    struct passwd *pw = getpwuid(uid);
    p11kms_err rc = P11KMS_OK;
    if (pw != NULL)
        rc = add_formatted(p, err, "unix:user:%s", pw->pw_name);
    if (rc == P11KMS_OK)
        rc = add_formatted(p, err, "unix:uid:%u", (unsigned)uid);
    if (rc == P11KMS_OK)
        rc = add_group(p, getegid(), err);
    int n = getgroups(0, NULL);
    gid_t *groups = n > 0 ? calloc((size_t)n, sizeof(*groups)) : NULL;
    if (groups != NULL)
        n = getgroups(n, groups);
    for (int i = 0; groups != NULL && rc == P11KMS_OK && i < n; i++) {
        if (groups[i] != getegid())
            rc = add_group(p, groups[i], err);
    }
    free(groups);
    if (rc != P11KMS_OK) {
        p11kms_principal_free(p);
        return rc;
    }
    *out = p;
    return P11KMS_OK;
}

size_t p11kms_principal_count(const p11kms_principal *p)
{
    return p != NULL ? p->count : 0;
}

const char *p11kms_principal_name(const p11kms_principal *p, size_t i)
{
    return p != NULL && i < p->count ? p->names[i] : NULL;
}

void p11kms_principal_free(p11kms_principal *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->count; i++)
        free(p->names[i]);
    free(p->names);
    free(p->source);
    free(p->request_id);
    free(p);
}
