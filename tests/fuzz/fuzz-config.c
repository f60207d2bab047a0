/* Fuzz target: the service configuration (p11kms.yaml, provider/service-config.c) over the
 * strict YAML document layer.
 *
 * Invariants: an accepted configuration has every value within the bounds the schema documents
 * (conf/p11kms.yaml); written back as YAML (every string double-quoted and escaped) it loads to
 * an equal configuration; a refusal is a configuration error with a message. (Messages may
 * still quote the offending text raw: the CLI makes them one line when it prints them.) */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "provider/service-config.h"

typedef struct out {
    char *text;
    size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->len + n + 1) * 2;
        char *grown = realloc(o->text, cap);
        FUZZ_ASSERT(grown != NULL);
        o->text = grown;
        o->cap = cap;
    }
    memcpy(o->text + o->len, s, n);
    o->len += n;
    o->text[o->len] = '\0';
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* One UTF-8 sequence at s (the loader hands out valid UTF-8 only): its code point and length. */
static size_t utf8_next(const unsigned char *s, unsigned long *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    unsigned long v = s[0] & (0x3F >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        FUZZ_ASSERT((s[i] & 0xC0) == 0x80); /* valid UTF-8 in every string */
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return n;
}

/* A YAML double-quoted scalar: printable ASCII as is, everything else as \UXXXXXXXX. */
static void put_quoted(out *o, const char *s)
{
    puts_(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0';) {
        unsigned long cp;
        size_t n = utf8_next(p, &cp);
        char esc[16];
        if (cp >= 0x20 && cp < 0x7F && cp != '"' && cp != '\\')
            put(o, (const char *)p, 1);
        else {
            snprintf(esc, sizeof(esc), "\\U%08lx", cp);
            puts_(o, esc);
        }
        p += n;
    }
    puts_(o, "\"");
}

static void put_field(out *o, const char *name, const char *value)
{
    if (value == NULL)
        return;
    puts_(o, "  ");
    puts_(o, name);
    puts_(o, ": ");
    put_quoted(o, value);
    puts_(o, "\n");
}

static void put_number(out *o, const char *name, unsigned long long v)
{
    char line[96];
    snprintf(line, sizeof(line), "  %s: %llu\n", name, v);
    puts_(o, line);
}

static char *write_yaml(const service_config *c, size_t *len)
{
    out o = {0};
    if (c->endpoint != NULL) {
        puts_(&o, "endpoint: ");
        put_quoted(&o, c->endpoint);
        puts_(&o, "\n");
    }
    /* A client configuration (endpoint:) may leave out the token section; one that has it has
     * every required key, so the module stands for the section. */
    if (c->module != NULL) {
        puts_(&o, "token:\n");
        put_field(&o, "module", c->module);
        put_field(&o, "uri", c->token_uri);
        put_field(&o, "pin-source", c->pin_source);
        put_number(&o, "sessions", c->sessions);
        put_field(&o, "iv", c->iv_mode == P11_IV_HOST ? "host" : "token");
        put_field(&o, "gcm-params", c->gcm_layout == P11_GCM_V240 ? "v2.40" : "legacy");
        put_field(&o, "rng", c->rng == P11_RNG_TOKEN ? "token" : "openssl");
    }
    puts_(&o, "keys:\n");
    put_field(&o, "region", c->region);
    put_field(&o, "account", c->account);
    put_field(&o, "lock-file", c->lock_file);
    put_number(&o, "max-encryptions-per-version", c->max_encryptions_per_version);
    put_number(&o, "count-batch", c->count_batch);
    put_number(&o, "state-refresh-ms", c->state_refresh_ms);
    puts_(&o, "hierarchy:\n");
    put_number(&o, "ttl-seconds", c->hierarchy_ttl_s);
    put_number(&o, "max-uses", c->hierarchy_max_uses);
    put_number(&o, "revocation-check-ms", c->revocation_check_ms);
    if (c->policy_none || c->policy_path != NULL) {
        puts_(&o, "policy: ");
        put_quoted(&o, c->policy_none ? "none" : c->policy_path);
        puts_(&o, "\n");
    }
    *len = o.len;
    return o.text;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void check_bounds(const service_config *c)
{
    /* Only a client configuration (endpoint:) may leave out the token and the policy; a token
     * section, where there is one, has every required key. */
    bool client = c->endpoint != NULL;
    FUZZ_ASSERT(!client || c->endpoint[0] != '\0');
    FUZZ_ASSERT(client || c->module != NULL);
    if (c->module != NULL) {
        FUZZ_ASSERT(c->module[0] != '\0');
        FUZZ_ASSERT(c->token_uri != NULL && c->token_uri[0] != '\0');
        FUZZ_ASSERT(c->pin_source != NULL && c->pin_source[0] != '\0');
    }
    FUZZ_ASSERT(c->region != NULL && c->account != NULL && c->lock_file != NULL);
    FUZZ_ASSERT(c->sessions >= 1 && c->sessions <= 1024);
    FUZZ_ASSERT(c->max_encryptions_per_version >= 1 && c->max_encryptions_per_version <= UINT64_C(1)
                                                                                             << 32);
    FUZZ_ASSERT(c->count_batch >= 1 && c->count_batch <= 1u << 20);
    FUZZ_ASSERT(c->state_refresh_ms <= 3600000);
    FUZZ_ASSERT(c->hierarchy_ttl_s >= 1 && c->hierarchy_ttl_s <= 7 * 24 * 3600);
    FUZZ_ASSERT(c->hierarchy_max_uses >= 1 && c->hierarchy_max_uses <= UINT64_MAX >> 1);
    FUZZ_ASSERT(c->revocation_check_ms <= 60000);
    FUZZ_ASSERT(c->policy_none ? c->policy_path == NULL
                               : (client && c->policy_path == NULL) ||
                                     (c->policy_path != NULL && c->policy_path[0] == '/'));
    FUZZ_ASSERT(c->path != NULL && strcmp(c->path, "fuzz.yaml") == 0);
}

static bool config_equal(const service_config *a, const service_config *b)
{
    return str_eq(a->endpoint, b->endpoint) && str_eq(a->module, b->module) &&
           str_eq(a->token_uri, b->token_uri) && str_eq(a->pin_source, b->pin_source) &&
           a->sessions == b->sessions && a->iv_mode == b->iv_mode &&
           a->gcm_layout == b->gcm_layout && a->rng == b->rng && str_eq(a->region, b->region) &&
           str_eq(a->account, b->account) && str_eq(a->lock_file, b->lock_file) &&
           a->max_encryptions_per_version == b->max_encryptions_per_version &&
           a->count_batch == b->count_batch && a->state_refresh_ms == b->state_refresh_ms &&
           a->hierarchy_ttl_s == b->hierarchy_ttl_s &&
           a->hierarchy_max_uses == b->hierarchy_max_uses &&
           a->revocation_check_ms == b->revocation_check_ms &&
           str_eq(a->policy_path, b->policy_path) && a->policy_none == b->policy_none;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    service_config *cfg = NULL;
    p11kms_error err = {0};
    p11kms_err rc = config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &err);
    if (rc != P11KMS_OK) {
        FUZZ_ASSERT(cfg == NULL);
        FUZZ_ASSERT((rc == P11KMS_E_CONFIG || rc == P11KMS_E_NO_MEMORY) && err.code == rc);
        FUZZ_ASSERT(err.message[0] != '\0');
        return 0;
    }
    check_bounds(cfg);
    size_t len = 0;
    char *text = write_yaml(cfg, &len);
    service_config *back = NULL;
    if (config_load_buffer("fuzz.yaml", text, len, &back, &err) != P11KMS_OK) {
        fprintf(stderr, "written back, refused: %s\n%s", err.message, text);
        FUZZ_ASSERT(!"a configuration written back loads");
    }
    FUZZ_ASSERT(config_equal(cfg, back));
    config_free(back);
    free(text);
    config_free(cfg);
    return 0;
}
