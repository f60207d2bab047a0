#include "config.h"

#include "provider/keyref.h"

#include <stdio.h>
#include <string.h>

#include "provider/keymeta.h"

#define ALIAS_PREFIX "alias/"
#define ALIAS_NAME_MAX 250
#define QUOTED_MAX 100 /* a reference quoted in a message: escaped, cut with "..." */

/* A caller's reference, safe to quote in a message (it may hold any byte). */
static const char *quoted(const char *ref, char out[QUOTED_MAX])
{
    return p11kms_escape(out, QUOTED_MAX, ref, strlen(ref), P11KMS_ESCAPE_QUOTED);
}

p11kms_err keyref_check_alias_name(const char *alias, p11kms_error *err)
{
    size_t plen = strlen(ALIAS_PREFIX);
    if (alias == NULL || strncmp(alias, ALIAS_PREFIX, plen) != 0)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_ALIAS, "alias name must begin with \"alias/\"");
    const char *name = alias + plen;
    size_t n = strlen(name);
    if (n == 0 || n > ALIAS_NAME_MAX)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_ALIAS,
                            "alias name must have 1 to %d characters after \"alias/\"",
                            ALIAS_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '/' || c == '_' || c == '-';
        if (!ok)
            return P11KMS_RAISE(err, P11KMS_E_INVALID_ALIAS,
                                "alias name may contain only letters, digits, '/', '_' and '-'");
    }
    if (strncmp(name, "aws/", 4) == 0)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_ALIAS,
                            "alias names beginning with \"alias/aws/\" are reserved");
    return P11KMS_OK;
}

static p11kms_err parse_plain(const char *ref, keyref_kind *kind, char out[P11KMS_ALIAS_MAX],
                              p11kms_error *err)
{
    char q[QUOTED_MAX];
    if (strncmp(ref, ALIAS_PREFIX, strlen(ALIAS_PREFIX)) == 0) {
        p11kms_err rc = keyref_check_alias_name(ref, err);
        if (rc != P11KMS_OK)
            return rc == P11KMS_E_INVALID_ALIAS
                       ? P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "alias \"%s\" does not exist: %s",
                                      quoted(ref, q), err ? err->message : "")
                       : rc;
        *kind = KEYREF_ALIAS;
        snprintf(out, P11KMS_ALIAS_MAX, "%s", ref);
        return P11KMS_OK;
    }
    if (!uuid_canonical(ref, out))
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                            "invalid key reference \"%s\": expected a key id (UUID), "
                            "alias/NAME or an ARN",
                            quoted(ref, q));
    *kind = KEYREF_ID;
    return P11KMS_OK;
}

/* The fields of "arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE"; false unless there are six. */
typedef struct arn_fields {
    const char *field[5]; /* arn, partition, service, region, account (not NUL-terminated) */
    size_t len[5];
    const char *resource;
} arn_fields;

static bool arn_split(const char *ref, arn_fields *a)
{
    const char *p = ref;
    for (size_t i = 0; i < 5; i++) {
        const char *colon = strchr(p, ':');
        if (colon == NULL)
            return false;
        a->field[i] = p;
        a->len[i] = (size_t)(colon - p);
        p = colon + 1;
    }
    a->resource = p;
    return true;
}

static bool field_is(const arn_fields *a, size_t i, const char *want)
{
    return a->len[i] == strlen(want) && strncmp(a->field[i], want, a->len[i]) == 0;
}

p11kms_err keyref_parse(const service_config *cfg, const char *ref, keyref_kind *kind,
                        char out[P11KMS_ALIAS_MAX], p11kms_error *err)
{
    if (ref == NULL || *ref == '\0')
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "a key id is required");
    if (strlen(ref) >= P11KMS_ARN_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "key reference is too long");
    if (strncmp(ref, "arn:", 4) != 0)
        return parse_plain(ref, kind, out, err);

    char q[QUOTED_MAX];
    arn_fields a;
    if (!arn_split(ref, &a))
        return P11KMS_RAISE(err, P11KMS_E_INVALID_ARN,
                            "ARN \"%s\" is malformed: expected arn:%s:kms:%s:%s:key/ID or "
                            "arn:%s:kms:%s:%s:alias/NAME",
                            quoted(ref, q), cfg->partition, cfg->region, cfg->account,
                            cfg->partition, cfg->region, cfg->account);
    if (!field_is(&a, 2, "kms"))
        return P11KMS_RAISE(err, P11KMS_E_INVALID_ARN,
                            "ARN \"%s\" is not a KMS ARN: its service field is not \"kms\"",
                            quoted(ref, q));
    /* Well-formed but elsewhere: no key of this service has that name. */
    if (!field_is(&a, 1, cfg->partition) || !field_is(&a, 3, cfg->region) ||
        !field_is(&a, 4, cfg->account))
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                            "ARN \"%s\" names a key of another partition, region or account: "
                            "this service's keys are arn:%s:kms:%s:%s:...",
                            quoted(ref, q), cfg->partition, cfg->region, cfg->account);
    const char *resource = a.resource;
    if (strncmp(resource, "key/", 4) == 0) {
        if (!uuid_canonical(resource + 4, out))
            return P11KMS_RAISE(err, P11KMS_E_INVALID_ARN, "ARN \"%s\" has no valid key id",
                                quoted(ref, q));
        *kind = KEYREF_ID;
        return P11KMS_OK;
    }
    if (strncmp(resource, ALIAS_PREFIX, strlen(ALIAS_PREFIX)) == 0)
        return parse_plain(resource, kind, out, err);
    return P11KMS_RAISE(err, P11KMS_E_INVALID_ARN, "ARN \"%s\" names neither key/ID nor alias/NAME",
                        quoted(ref, q));
}

void keyref_key_arn(const service_config *cfg, const char *id_text, char out[P11KMS_ARN_MAX])
{
    /* Truncated like snprintf would; p11kms_open refuses a region or account that makes an ARN
     * too long, so it does not happen. */
    size_t prefix = strnlen(cfg->key_arn_prefix, P11KMS_ARN_MAX - 1);
    size_t id = strnlen(id_text, P11KMS_ARN_MAX - 1 - prefix);
    memcpy(out, cfg->key_arn_prefix, prefix);
    memcpy(out + prefix, id_text, id);
    out[prefix + id] = '\0';
}

void keyref_alias_arn(const service_config *cfg, const char *alias, char out[P11KMS_ARN_MAX])
{
    snprintf(out, P11KMS_ARN_MAX, "arn:%s:kms:%s:%s:%s", cfg->partition, cfg->region, cfg->account,
             alias);
}
