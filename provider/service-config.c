#include "config.h"

#include "provider/service-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/yaml-doc.h"

/* One table row per accepted key of a section: unknown keys are errors, so every accepted key
 * must be listed here. */
typedef p11kms_err (*field_parser)(const yaml_doc *doc, const yaml_doc_node *node,
                                   service_config *cfg, p11kms_error *err);

typedef struct config_field {
    const char *name;
    bool required;
    field_parser parse;
} config_field;

static p11kms_err take_string(const yaml_doc *doc, const yaml_doc_node *node, char **dst,
                              p11kms_error *err)
{
    p11kms_err rc = yaml_doc_expect(doc, node, YAML_DOC_SCALAR, "a string", P11KMS_E_CONFIG, err);
    if (rc != P11KMS_OK)
        return rc;
    if (node->scalar_len == 0)
        return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err, "value must not be empty");
    if (strlen(node->scalar) != node->scalar_len)
        return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err, "value contains a NUL byte");
    char *copy = strdup(node->scalar);
    if (copy == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading configuration");
    free(*dst);
    *dst = copy;
    return P11KMS_OK;
}

static p11kms_err take_uint(const yaml_doc *doc, const yaml_doc_node *node, unsigned long min,
                            unsigned long max, unsigned long *out, p11kms_error *err)
{
    return yaml_doc_get_uint(doc, node, min, max, out, P11KMS_E_CONFIG, err);
}

/* Maps a scalar to one of a fixed set of words. */
static p11kms_err take_choice(const yaml_doc *doc, const yaml_doc_node *node,
                              const char *const *words, size_t n, size_t *out, p11kms_error *err)
{
    p11kms_err rc = yaml_doc_expect(doc, node, YAML_DOC_SCALAR, "a string", P11KMS_E_CONFIG, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(node->scalar, words[i]) == 0) {
            *out = i;
            return P11KMS_OK;
        }
    }
    char allowed[128] = "";
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(allowed);
        snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i ? ", " : "", words[i]);
    }
    return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err, "\"%s\" is not one of: %s",
                             node->scalar, allowed);
}

#define STRING_FIELD(fn, member)                                                                   \
    static p11kms_err fn(const yaml_doc *doc, const yaml_doc_node *node, service_config *cfg,      \
                         p11kms_error *err)                                                        \
    {                                                                                              \
        return take_string(doc, node, &cfg->member, err);                                          \
    }

STRING_FIELD(parse_module, module)
STRING_FIELD(parse_module_args, module_args)
STRING_FIELD(parse_uri, token_uri)
STRING_FIELD(parse_pin_source, pin_source)
STRING_FIELD(parse_region, region)
STRING_FIELD(parse_account, account)

/* The first field of every ARN p11kms writes ("aws", "aws-cn", "aws-us-gov", ...): SDKs and
 * tools split ARNs on ':' and some check the partition's spelling. */
#define PARTITION_MAX 32
static p11kms_err parse_partition(const yaml_doc *doc, const yaml_doc_node *node,
                                  service_config *cfg, p11kms_error *err)
{
    p11kms_err rc = yaml_doc_expect(doc, node, YAML_DOC_SCALAR, "a string", P11KMS_E_CONFIG, err);
    if (rc != P11KMS_OK)
        return rc;
    size_t n = node->scalar_len;
    bool ok = n > 0 && n <= PARTITION_MAX && strlen(node->scalar) == n && node->scalar[0] != '-' &&
              node->scalar[n - 1] != '-';
    for (size_t i = 0; ok && i < n; i++) {
        char c = node->scalar[i];
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    }
    if (!ok)
        return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err,
                                 "partition must be 1 to %d lower-case letters, digits and inner "
                                 "'-' (such as aws, aws-cn, aws-us-gov)",
                                 PARTITION_MAX);
    return take_string(doc, node, &cfg->partition, err);
}

/* Every process must open the same lock file: a relative path would depend on the directory the
 * process started in. */
static p11kms_err parse_lock_file(const yaml_doc *doc, const yaml_doc_node *node,
                                  service_config *cfg, p11kms_error *err)
{
    p11kms_err rc = take_string(doc, node, &cfg->lock_file, err);
    if (rc == P11KMS_OK && cfg->lock_file[0] != '/')
        rc = yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err,
                               "lock-file must be an absolute path");
    return rc;
}

static p11kms_err parse_insecure_pin_file(const yaml_doc *doc, const yaml_doc_node *node,
                                          service_config *cfg, p11kms_error *err)
{
    return yaml_doc_get_bool(doc, node, &cfg->insecure_pin_file, P11KMS_E_CONFIG, err);
}

#define UINT_FIELD(fn, member, min, max)                                                           \
    static p11kms_err fn(const yaml_doc *doc, const yaml_doc_node *node, service_config *cfg,      \
                         p11kms_error *err)                                                        \
    {                                                                                              \
        unsigned long v;                                                                           \
        p11kms_err rc = take_uint(doc, node, (min), (max), &v, err);                               \
        if (rc == P11KMS_OK)                                                                       \
            cfg->member = v;                                                                       \
        return rc;                                                                                 \
    }

UINT_FIELD(parse_sessions, sessions, 1, 1024)
UINT_FIELD(parse_session_keys, session_keys, 1, 1000000)
UINT_FIELD(parse_max_encryptions, max_encryptions_per_version, 1, UINT64_C(1) << 32)
UINT_FIELD(parse_count_batch, count_batch, 1, 1u << 20)
UINT_FIELD(parse_state_refresh, state_refresh_ms, 0, 3600000)
UINT_FIELD(parse_orphan_grace, orphan_grace_s, 0, 30 * 24 * 3600)
UINT_FIELD(parse_ttl, hierarchy_ttl_s, 1, 7 * 24 * 3600)
UINT_FIELD(parse_max_uses, hierarchy_max_uses, 1, UINT64_MAX >> 1)
UINT_FIELD(parse_revocation, revocation_check_ms, 0, 60000)

static p11kms_err parse_iv(const yaml_doc *doc, const yaml_doc_node *node, service_config *cfg,
                           p11kms_error *err)
{
    static const char *const words[] = {"host", "token"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->iv_mode = i == 0 ? P11_IV_HOST : P11_IV_TOKEN;
    return rc;
}

static p11kms_err parse_gcm_params(const yaml_doc *doc, const yaml_doc_node *node,
                                   service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"v2.40", "legacy"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->gcm_layout = i == 0 ? P11_GCM_V240 : P11_GCM_LEGACY;
    return rc;
}

static p11kms_err parse_rng(const yaml_doc *doc, const yaml_doc_node *node, service_config *cfg,
                            p11kms_error *err)
{
    static const char *const words[] = {"token", "openssl"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->rng = i == 0 ? P11_RNG_TOKEN : P11_RNG_OPENSSL;
    return rc;
}

static p11kms_err parse_key_cache(const yaml_doc *doc, const yaml_doc_node *node,
                                  service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"session-copy", "token-object"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->key_cache_token_object = i == 1;
    return rc;
}

static const config_field token_fields[] = {
    {"module", true, parse_module},
    {"module-args", false, parse_module_args},
    {"uri", true, parse_uri},
    {"pin-source", true, parse_pin_source},
    {"sessions", false, parse_sessions},
    {"iv", false, parse_iv},
    {"gcm-params", false, parse_gcm_params},
    {"rng", false, parse_rng},
    {"insecure-pin-file", false, parse_insecure_pin_file},
    {"key-cache", false, parse_key_cache},
    {"session-keys", false, parse_session_keys},
};

static const config_field keys_fields[] = {
    {"partition", false, parse_partition},
    {"region", false, parse_region},
    {"account", false, parse_account},
    {"lock-file", false, parse_lock_file},
    {"max-encryptions-per-version", false, parse_max_encryptions},
    {"count-batch", false, parse_count_batch},
    {"state-refresh-ms", false, parse_state_refresh},
    {"orphan-grace-seconds", false, parse_orphan_grace},
};

static const config_field hierarchy_fields[] = {
    {"ttl-seconds", false, parse_ttl},
    {"max-uses", false, parse_max_uses},
    {"revocation-check-ms", false, parse_revocation},
};

static p11kms_err parse_audit_file(const yaml_doc *doc, const yaml_doc_node *node,
                                   service_config *cfg, p11kms_error *err)
{
    p11kms_err rc = take_string(doc, node, &cfg->audit_file, err);
    if (rc == P11KMS_OK && cfg->audit_file[0] != '/')
        return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err,
                                 "audit.file must be an absolute path");
    return rc;
}

UINT_FIELD(parse_audit_max_size, audit_max_size, 0, UINT64_C(1) << 40)
UINT_FIELD(parse_audit_sync_delay, audit_sync_delay_ms, 0, 1000)
UINT_FIELD(parse_audit_checkpoint, audit_checkpoint_s, 1, 86400)

static p11kms_err parse_audit_rotate(const yaml_doc *doc, const yaml_doc_node *node,
                                     service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"size", "daily"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->audit_daily = i == 1;
    return rc;
}

static p11kms_err parse_audit_on_failure(const yaml_doc *doc, const yaml_doc_node *node,
                                         service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"refuse", "continue"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->audit_continue = i == 1;
    return rc;
}

static p11kms_err parse_audit_syslog(const yaml_doc *doc, const yaml_doc_node *node,
                                     service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"no", "yes"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->audit_syslog = i == 1;
    return rc;
}

static const config_field audit_fields[] = {
    {"file", true, parse_audit_file},
    {"max-size", false, parse_audit_max_size},
    {"rotate", false, parse_audit_rotate},
    {"on-failure", false, parse_audit_on_failure},
    {"sync-delay-ms", false, parse_audit_sync_delay},
    {"checkpoint-seconds", false, parse_audit_checkpoint},
    {"syslog", false, parse_audit_syslog},
};

static p11kms_err parse_section(const yaml_doc *doc, const yaml_doc_node *node, const char *section,
                                const config_field *fields, size_t n, service_config *cfg,
                                p11kms_error *err)
{
    p11kms_err rc = yaml_doc_expect(doc, node, YAML_DOC_MAP, "a mapping", P11KMS_E_CONFIG, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t k = 0; k < node->count; k++) {
        const yaml_doc_node *key = node->keys[k];
        size_t f = 0;
        while (f < n && strcmp(fields[f].name, key->scalar) != 0)
            f++;
        if (f == n)
            return yaml_doc_error_at(doc, key, P11KMS_E_CONFIG, err, "unknown key \"%s\" in %s",
                                     key->scalar, section);
        rc = fields[f].parse(doc, node->children[k], cfg, err);
        if (rc != P11KMS_OK)
            return rc;
    }
    for (size_t f = 0; f < n; f++) {
        if (fields[f].required && yaml_doc_map_get(node, fields[f].name) == NULL)
            return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err,
                                     "%s: required key \"%s\" is missing", section, fields[f].name);
    }
    return P11KMS_OK;
}

static p11kms_err parse_policy(const yaml_doc *doc, const yaml_doc_node *node, service_config *cfg,
                               p11kms_error *err)
{
    p11kms_err rc = take_string(doc, node, &cfg->policy_path, err);
    if (rc != P11KMS_OK)
        return rc;
    if (strcmp(cfg->policy_path, "none") == 0) {
        free(cfg->policy_path);
        cfg->policy_path = NULL;
        cfg->policy_none = true;
    } else if (cfg->policy_path[0] != '/') {
        return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err,
                                 "policy must be an absolute path or \"none\"");
    }
    return P11KMS_OK;
}

/* Top-level switches for the protection of secrets in memory. */
static p11kms_err parse_secure_memory(const yaml_doc *doc, const yaml_doc_node *node,
                                      service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"preferred", "required"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->secure_memory_required = i == 1;
    return rc;
}

static p11kms_err parse_core_dumps(const yaml_doc *doc, const yaml_doc_node *node,
                                   service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"allowed", "disabled"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->core_dumps_disabled = i == 1;
    return rc;
}

static p11kms_err parse_memory_lock(const yaml_doc *doc, const yaml_doc_node *node,
                                    service_config *cfg, p11kms_error *err)
{
    static const char *const words[] = {"enabled", "disabled"};
    size_t i;
    p11kms_err rc = take_choice(doc, node, words, 2, &i, err);
    if (rc == P11KMS_OK)
        cfg->memory_lock_disabled = i == 1;
    return rc;
}

static p11kms_err parse_store(const yaml_doc *doc, const yaml_doc_node *node, service_config *cfg,
                              p11kms_error *err)
{
    p11kms_err rc = take_string(doc, node, &cfg->store, err);
    if (rc != P11KMS_OK)
        return rc;
    const char *s = cfg->store;
    if (strncmp(s, "sqlite:", 7) == 0) {
        if (s[7] != '/')
            return yaml_doc_error_at(
                doc, node, P11KMS_E_CONFIG, err,
                "store: sqlite: needs an absolute path (sqlite:/path/file.db)");
        return P11KMS_OK;
    }
    if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0 ||
        strchr(s, '=') != NULL)
        return P11KMS_OK;
    return yaml_doc_error_at(doc, node, P11KMS_E_CONFIG, err,
                             "store must be sqlite:/path, a postgresql:// URI or a PostgreSQL "
                             "conninfo string (key=value ...)");
}

static p11kms_err set_defaults(service_config *cfg)
{
    cfg->sessions = 8;
    cfg->session_keys = CONFIG_DEFAULT_SESSION_KEYS;
    cfg->iv_mode = P11_IV_HOST;
    cfg->gcm_layout = P11_GCM_V240;
    cfg->rng = P11_RNG_TOKEN;
    cfg->max_encryptions_per_version = CONFIG_DEFAULT_MAX_ENCRYPTIONS;
    cfg->count_batch = CONFIG_DEFAULT_COUNT_BATCH;
    cfg->state_refresh_ms = CONFIG_DEFAULT_STATE_REFRESH_MS;
    cfg->orphan_grace_s = CONFIG_DEFAULT_ORPHAN_GRACE_S;
    cfg->hierarchy_ttl_s = CONFIG_DEFAULT_HIERARCHY_TTL_S;
    cfg->hierarchy_max_uses = CONFIG_DEFAULT_HIERARCHY_MAX_USES;
    cfg->revocation_check_ms = CONFIG_DEFAULT_REVOCATION_CHECK_MS;
    cfg->partition = strdup(CONFIG_DEFAULT_PARTITION);
    cfg->region = strdup("local");
    cfg->account = strdup("000000000000");
    cfg->lock_file = strdup(CONFIG_DEFAULT_LOCK_FILE);
    cfg->audit_max_size = CONFIG_DEFAULT_AUDIT_MAX_SIZE;
    cfg->audit_checkpoint_s = CONFIG_DEFAULT_AUDIT_CHECKPOINT_S;
    cfg->store = strdup(CONFIG_DEFAULT_STORE);
    return cfg->partition && cfg->region && cfg->account && cfg->lock_file && cfg->store
               ? P11KMS_OK
               : P11KMS_E_NO_MEMORY;
}

static p11kms_err parse_document(const yaml_doc *doc, service_config *cfg, p11kms_error *err)
{
    const yaml_doc_node *root = doc->root;
    if (root == NULL)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "%s: the configuration is empty", doc->file);
    p11kms_err rc = yaml_doc_expect(doc, root, YAML_DOC_MAP, "a mapping", P11KMS_E_CONFIG, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t k = 0; k < root->count && rc == P11KMS_OK; k++) {
        const char *name = root->keys[k]->scalar;
        const yaml_doc_node *value = root->children[k];
        if (strcmp(name, "token") == 0)
            rc = parse_section(doc, value, "token", token_fields,
                               sizeof(token_fields) / sizeof(token_fields[0]), cfg, err);
        else if (strcmp(name, "keys") == 0)
            rc = parse_section(doc, value, "keys", keys_fields,
                               sizeof(keys_fields) / sizeof(keys_fields[0]), cfg, err);
        else if (strcmp(name, "hierarchy") == 0)
            rc = parse_section(doc, value, "hierarchy", hierarchy_fields,
                               sizeof(hierarchy_fields) / sizeof(hierarchy_fields[0]), cfg, err);
        else if (strcmp(name, "policy") == 0)
            rc = parse_policy(doc, value, cfg, err);
        else if (strcmp(name, "secure-memory") == 0)
            rc = parse_secure_memory(doc, value, cfg, err);
        else if (strcmp(name, "core-dumps") == 0)
            rc = parse_core_dumps(doc, value, cfg, err);
        else if (strcmp(name, "memory-lock") == 0)
            rc = parse_memory_lock(doc, value, cfg, err);
        else if (strcmp(name, "store") == 0)
            rc = parse_store(doc, value, cfg, err);
        else if (strcmp(name, "audit") == 0)
            rc = parse_section(doc, value, "audit", audit_fields,
                               sizeof(audit_fields) / sizeof(audit_fields[0]), cfg, err);
        else if (strcmp(name, "endpoint") == 0)
            rc = take_string(doc, value, &cfg->endpoint, err);
        else if (strcmp(name, "listeners") == 0)
            /* Reserved for the daemon; refusing beats silently ignoring an audit setting. */
            rc = yaml_doc_error_at(doc, root->keys[k], P11KMS_E_CONFIG, err,
                                   "section \"%s\" is reserved for p11kmsd and not supported by "
                                   "this version",
                                   name);
        else
            rc = yaml_doc_error_at(doc, root->keys[k], P11KMS_E_CONFIG, err,
                                   "unknown section \"%s\"", name);
    }
    if (rc != P11KMS_OK)
        return rc;
    if (cfg->endpoint != NULL)
        return P11KMS_OK; /* a client's configuration: the daemon holds token and policy */
    if (yaml_doc_map_get(root, "token") == NULL)
        return yaml_doc_error_at(doc, root, P11KMS_E_CONFIG, err,
                                 "required section \"token\" is missing");
    if (yaml_doc_map_get(root, "policy") == NULL)
        return yaml_doc_error_at(doc, root, P11KMS_E_CONFIG, err,
                                 "required key \"policy\" is missing (a policy file path, or "
                                 "\"none\" for development only)");
    return P11KMS_OK;
}

static char *key_arn_prefix(const service_config *cfg)
{
    char *prefix = NULL;
    if (asprintf(&prefix, "arn:%s:kms:%s:%s:key/", cfg->partition, cfg->region, cfg->account) < 0)
        return NULL; /* asprintf leaves prefix undefined on failure */
    return prefix;
}

static p11kms_err finish(yaml_doc *doc, p11kms_err rc, const char *name, service_config **out,
                         p11kms_error *err)
{
    *out = NULL;
    if (rc != P11KMS_OK)
        return rc;
    service_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL || set_defaults(cfg) != P11KMS_OK || (cfg->path = strdup(name)) == NULL) {
        config_free(cfg);
        yaml_doc_free(doc);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading configuration");
    }
    rc = parse_document(doc, cfg, err);
    yaml_doc_free(doc);
    if (rc == P11KMS_OK && (cfg->key_arn_prefix = key_arn_prefix(cfg)) == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading configuration");
    if (rc != P11KMS_OK) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return P11KMS_OK;
}

p11kms_err config_load(const char *path, service_config **out, p11kms_error *err)
{
    yaml_doc *doc = NULL;
    /* The configuration names the PKCS#11 module to load: whoever can change it runs code in
     * every process that reads it. */
    p11kms_err rc = yaml_doc_load_file_mode(path, 022, P11KMS_E_CONFIG, &doc, err);
    return finish(doc, rc, path, out, err);
}

p11kms_err config_load_buffer(const char *name, const char *text, size_t len, service_config **out,
                              p11kms_error *err)
{
    yaml_doc *doc = NULL;
    p11kms_err rc = yaml_doc_load_buffer(name, text, len, P11KMS_E_CONFIG, &doc, err);
    return finish(doc, rc, name, out, err);
}

void config_free(service_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->endpoint);
    free(cfg->module);
    free(cfg->module_args);
    free(cfg->token_uri);
    free(cfg->pin_source);
    free(cfg->partition);
    free(cfg->region);
    free(cfg->account);
    free(cfg->key_arn_prefix);
    free(cfg->lock_file);
    free(cfg->store);
    free(cfg->policy_path);
    free(cfg->audit_file);
    free(cfg);
}
