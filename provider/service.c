#include "config.h"

#include "provider/service.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/threads.h"
#include "policy/policy.h"
#include "provider/audit.h"
#include "provider/context-api.h"
#include "provider/gate.h"
#include "provider/keyaccess.h"
#include "provider/keycache.h"
#include "provider/keyref.h"
#include "provider/keystore.h"
#include "provider/kms-crypto.h"
#include "provider/lifecycle-state.h"
#include "provider/lifecycle.h"
#include "provider/protect.h"
#include "provider/store.h"

#define REGION_ACCOUNT_MAX 64

int64_t service_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t service_now(void)
{
    return (int64_t)time(NULL);
}

/* The lock file's first page carries the state generation; it lives in /run/lock (tmpfs) by
 * default, so mapping it shares memory between the processes without touching a disk. */
#define GENERATION_PAGE 4096

p11kms_err service_open_lock(p11kms *svc, p11kms_error *err)
{
    /* O_NOFOLLOW: the default lock file lives in a world-writable directory. */
    svc->lock_fd =
        open(svc->cfg->lock_file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0660);
    if (svc->lock_fd < 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "cannot open lock file %s: %s", svc->cfg->lock_file,
                            strerror(errno));
    struct stat st;
    if (fstat(svc->lock_fd, &st) != 0 || !S_ISREG(st.st_mode))
        return P11KMS_RAISE(err, P11KMS_E_IO, "lock file %s is not a regular file",
                            svc->cfg->lock_file);
    /* Growing the file is idempotent; two processes racing here both end at one page. */
    if (st.st_size < GENERATION_PAGE && ftruncate(svc->lock_fd, GENERATION_PAGE) != 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "cannot size lock file %s: %s", svc->cfg->lock_file,
                            strerror(errno));
    void *page = mmap(NULL, GENERATION_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, svc->lock_fd, 0);
    svc->generation = page == MAP_FAILED ? NULL : page;
    return P11KMS_OK;
}

uint64_t service_generation(const p11kms *svc)
{
    return svc->generation ? __atomic_load_n(svc->generation, __ATOMIC_ACQUIRE) : 0;
}

static p11kms_err open_token(p11kms *svc, unsigned flags, p11kms_error *err)
{
    const service_config *cfg = svc->cfg;
    p11_token_config tc = {
        .module = cfg->module,
        .module_args = cfg->module_args,
        .token_uri = cfg->token_uri,
        .pin_source = cfg->pin_source,
        .insecure_pin_file = cfg->insecure_pin_file || (flags & P11KMS_OPEN_INSECURE_PIN_FILE) != 0,
        .pool_size = cfg->sessions,
        .iv_mode = cfg->iv_mode,
        .gcm_layout = cfg->gcm_layout,
        .rng = cfg->rng,
        .libctx = svc->libctx,
        .skip_capability_check = (flags & P11KMS_OPEN_TOKEN_REPORT) != 0,
    };
    return p11_token_open(&tc, &svc->token, err);
}

/* A change made by a process on another host (PostgreSQL NOTIFY): every cached record is
 * re-read before its next use, as for a change announced through the lock file. */
static void announced_elsewhere(void *arg)
{
    p11kms *svc = arg;
    if (svc->generation != NULL)
        __atomic_fetch_add(svc->generation, 1, __ATOMIC_RELEASE);
}

p11kms_err p11kms_open(const char *config_path, p11kms **out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return p11kms_open_with(config_path, 0, out, err);
}

/* The configuration's switches add to the caller's flags; neither can turn the other's off. */
static unsigned config_flags(const service_config *cfg)
{
    return (cfg->core_dumps_disabled ? P11KMS_OPEN_NO_CORE_DUMPS : 0) |
           (cfg->secure_memory_required ? P11KMS_OPEN_REQUIRE_LOCKED_MEMORY : 0);
}

p11kms_err p11kms_config_endpoint(const char *config_path, char **endpoint, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (endpoint == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11kms_config_endpoint: endpoint is NULL");
    *endpoint = NULL;
    if (config_path == NULL)
        config_path = getenv("P11KMS_CONFIG");
    if (config_path == NULL || *config_path == '\0')
        config_path = P11KMS_DEFAULT_CONFIG;
    service_config *cfg;
    p11kms_err rc = config_load(config_path, &cfg, err);
    if (rc != P11KMS_OK)
        return rc;
    if (cfg->endpoint != NULL && (*endpoint = strdup(cfg->endpoint)) == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    config_free(cfg);
    return rc;
}

p11kms_err p11kms_config_memory_lock(const char *config_path, bool *lock, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (lock == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11kms_config_memory_lock: lock is NULL");
    *lock = true;
    if (config_path == NULL)
        config_path = getenv("P11KMS_CONFIG");
    if (config_path == NULL || *config_path == '\0')
        config_path = P11KMS_DEFAULT_CONFIG;
    service_config *cfg;
    p11kms_err rc = config_load(config_path, &cfg, err);
    if (rc != P11KMS_OK)
        return rc;
    *lock = !cfg->memory_lock_disabled;
    config_free(cfg);
    return P11KMS_OK;
}

p11kms_err p11kms_open_with(const char *config_path, unsigned flags, p11kms **out,
                            p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11kms_open: out is NULL");
    *out = NULL;
    if (config_path == NULL)
        config_path = getenv("P11KMS_CONFIG");
    if (config_path == NULL || *config_path == '\0')
        config_path = P11KMS_DEFAULT_CONFIG;
    p11kms *svc = calloc(1, sizeof(*svc));
    if (svc == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    svc->lock_fd = -1;
    const sync_obj locks[] = {
        {SYNC_RWLOCK, &svc->cache_lock, "the key cache lock"},
        {SYNC_MUTEX, &svc->mutation_lock, "the key mutation lock"},
        {SYNC_MUTEX, &svc->integrity_lock, "the integrity lock"},
        {SYNC_MUTEX, &svc->copies_lock, "the session copies lock"},
    };
    p11kms_err sync_rc = sync_init_all(locks, sizeof(locks) / sizeof(locks[0]), err);
    if (sync_rc != P11KMS_OK) {
        free(svc);
        return sync_rc;
    }
    svc->keys = hashmap_new_borrowing(); /* keyed by each entry's id_text */
    svc->aliases = hashmap_new();
    svc->verified = hashmap_new();
    svc->libctx = OSSL_LIB_CTX_new();
    if (svc->libctx != NULL)
        svc->sha256 = EVP_MD_fetch(svc->libctx, "SHA256", NULL);

    p11kms_err rc = P11KMS_OK;
    if (svc->keys == NULL || svc->aliases == NULL || svc->verified == NULL || svc->libctx == NULL ||
        svc->sha256 == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK)
        rc = config_load(config_path, &svc->cfg, err);
    if (rc == P11KMS_OK && svc->cfg->endpoint != NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_CONFIG,
                          "%s names an endpoint (%s): it configures a client of p11kmsd, which "
                          "cannot open the token itself",
                          config_path, svc->cfg->endpoint);
    /* Before the PIN or any key is read. */
    if (rc == P11KMS_OK)
        rc = p11kms_protect_process(flags | config_flags(svc->cfg), err);
    if (rc == P11KMS_OK && (strlen(svc->cfg->region) > REGION_ACCOUNT_MAX ||
                            strlen(svc->cfg->account) > REGION_ACCOUNT_MAX))
        rc = P11KMS_RAISE(err, P11KMS_E_CONFIG,
                          "%s: keys.region and keys.account must have at "
                          "most %d characters",
                          config_path, REGION_ACCOUNT_MAX);
    if (rc == P11KMS_OK && svc->cfg->key_cache_token_object)
        atomic_store(&svc->copies_off, true);
    if (rc == P11KMS_OK)
        rc = service_open_lock(svc, err);
    if (rc == P11KMS_OK)
        rc = gate_open(svc->cfg, &svc->gate, err);
    /* The store connects while the token starts: both take milliseconds, neither needs the
     * other. Nothing to reconcile at start-up: every change is one transaction or leaves only
     * what maintain cleans up (doc/token-layout.md), so opening reads no key. */
    store_opening *opening = NULL;
    if (rc == P11KMS_OK)
        rc = store_open_begin(svc->cfg->store, &opening, err);
    if (rc == P11KMS_OK)
        rc = open_token(svc, flags, err);
    if (rc == P11KMS_OK) {
        rc = store_open_finish(opening, &svc->store, err);
        opening = NULL;
    }
    store_open_abandon(opening);
    if (rc == P11KMS_OK)
        rc = store_watch(svc->store, announced_elsewhere, svc, err);
    if (rc == P11KMS_OK && svc->cfg->audit_file != NULL)
        rc = audit_log_open(svc, &svc->audit, err);
    if (rc != P11KMS_OK) {
        p11kms_close(svc);
        return rc;
    }
    *out = svc;
    return P11KMS_OK;
}

void p11kms_close(p11kms *svc)
{
    if (svc == NULL)
        return;
    audit_log_close(svc->audit); /* flushes and checkpoints: before the token goes */
    if (svc->keys != NULL)
        keycache_free_all(svc);
    store_close(svc->store);
    hashmap_free(svc->verified, free);
    p11_token_close(svc->token);
    gate_close(svc->gate);
    config_free(svc->cfg);
    EVP_MD_free(svc->sha256);
    OSSL_LIB_CTX_free(svc->libctx);
    if (svc->generation != NULL)
        munmap(svc->generation, GENERATION_PAGE);
    if (svc->lock_fd >= 0)
        close(svc->lock_fd);
    pthread_mutex_destroy(&svc->copies_lock);
    pthread_mutex_destroy(&svc->integrity_lock);
    pthread_mutex_destroy(&svc->mutation_lock);
    pthread_rwlock_destroy(&svc->cache_lock);
    free(svc);
}

p11kms_err p11kms_reload_policy(p11kms *svc, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return gate_reload(svc->gate, err);
}

const char *p11kms_region(const p11kms *svc)
{
    return svc != NULL ? svc->cfg->region : NULL;
}

/* --- metadata reads ------------------------------------------------------------------------ */

p11kms_err kms_op_describe_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               p11kms_key_metadata *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    key_access acc;
    p11kms_err rc = kms_begin(svc, who, POLICY_ACTION_DESCRIBE_KEY, key_ref, NULL, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    lifecycle_fill_metadata(svc, acc.meta, out);
    key_access_end(&acc);
    return P11KMS_OK;
}

typedef struct list_keys_ctx {
    p11kms *svc;
    const p11kms_principal *who;
    int (*fn)(const char *key_id, const char *arn, void *arg);
    void *arg;
} list_keys_ctx;

static int list_one_key(const key_meta *m, void *arg)
{
    list_keys_ctx *c = arg;
    /* A principal sees only keys it may describe: listing must not reveal the others. */
    if (!gate_may_list(c->svc, c->who, m))
        return 0;
    char arn[P11KMS_ARN_MAX];
    keyref_key_arn(c->svc->cfg, m->id_text, arn);
    return c->fn(m->id_text, arn, c->arg);
}

p11kms_err kms_op_list_keys(p11kms *svc, const p11kms_principal *who,
                            int (*fn)(const char *key_id, const char *arn, void *arg), void *arg,
                            p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    p11kms_err rc = gate_check_global(svc, who, POLICY_ACTION_LIST_KEYS, err);
    if (rc != P11KMS_OK)
        return rc;
    list_keys_ctx c = {svc, who, fn, arg};
    return keystore_meta_list(svc, list_one_key, NULL, &c, err);
}

typedef struct list_aliases_ctx {
    p11kms *svc;
    int (*fn)(const char *alias_name, const char *alias_arn, const char *target_key_id, void *arg);
    void *arg;
} list_aliases_ctx;

static int list_one_alias(const char *alias, const char *id_text, void *arg)
{
    list_aliases_ctx *c = arg;
    char arn[P11KMS_ARN_MAX];
    keyref_alias_arn(c->svc->cfg, alias, arn);
    return c->fn(alias, arn, id_text, c->arg);
}

/* Every alias, collected first: the policy is asked with each target key's record (its aliases
 * decide as much as its id), which is not read from inside the store's listing. */
typedef struct alias_pairs {
    char **items; /* alias, id, alias, id, ... */
    size_t count, cap;
    bool oom;
} alias_pairs;

static int collect_alias_pair(const char *alias, const char *id_text, void *arg)
{
    alias_pairs *v = arg;
    if (v->count + 2 > v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 32;
        char **items = realloc(v->items, cap * sizeof(*items));
        if (items == NULL) {
            v->oom = true;
            return 1;
        }
        v->items = items;
        v->cap = cap;
    }
    v->items[v->count++] = strdup(alias);
    v->items[v->count++] = strdup(id_text != NULL ? id_text : "");
    if (v->items[v->count - 2] == NULL || v->items[v->count - 1] == NULL) {
        v->oom = true;
        return 1;
    }
    return 0;
}

/* An alias is listed only when the caller may describe the key it names: an alias says what a
 * key is for, which is itself worth protecting. */
static p11kms_err list_visible_aliases(p11kms *svc, const p11kms_principal *who,
                                       list_aliases_ctx *c, p11kms_error *err)
{
    alias_pairs v = {0};
    p11kms_err rc = keystore_alias_list(svc, collect_alias_pair, &v, err);
    if (rc == P11KMS_OK && v.oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing aliases");
    for (size_t i = 0; rc == P11KMS_OK && i < v.count; i += 2) {
        /* The record as stored, read without the lazy purge of key access: listing changes
         * nothing. */
        key_meta *m = NULL;
        p11kms_error probe = {0};
        if (v.items[i + 1][0] == '\0' ||
            keystore_meta_read(svc, v.items[i + 1], &m, &probe) != P11KMS_OK)
            continue; /* a dangling alias: maintain reports it */
        bool visible = gate_may_list(svc, who, m);
        keymeta_free(m);
        if (visible && list_one_alias(v.items[i], v.items[i + 1], c) != 0)
            break;
    }
    for (size_t i = 0; i < v.count; i++)
        free(v.items[i]);
    free(v.items);
    return rc;
}

p11kms_err kms_op_list_aliases(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               int (*fn)(const char *alias_name, const char *alias_arn,
                                         const char *target_key_id, void *arg),
                               void *arg, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    p11kms_err rc = gate_check_global(svc, who, POLICY_ACTION_LIST_ALIASES, err);
    if (rc != P11KMS_OK)
        return rc;
    list_aliases_ctx c = {svc, fn, arg};
    if (key_ref == NULL)
        return list_visible_aliases(svc, who, &c, err);
    key_access acc;
    rc = kms_begin(svc, who, POLICY_ACTION_DESCRIBE_KEY, key_ref, NULL, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < acc.meta->alias_count; i++) {
        if (list_one_alias(acc.meta->aliases[i], acc.meta->id_text, &c) != 0)
            break;
    }
    key_access_end(&acc);
    return P11KMS_OK;
}

p11kms_err kms_op_list_resource_tags(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                     int (*fn)(const p11kms_tag *tag, void *arg), void *arg,
                                     p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    key_access acc;
    p11kms_err rc =
        kms_begin(svc, who, POLICY_ACTION_LIST_RESOURCE_TAGS, key_ref, NULL, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < acc.meta->tag_count; i++) {
        if (fn(&acc.meta->tags[i], arg) != 0)
            break;
    }
    key_access_end(&acc);
    return P11KMS_OK;
}

p11kms_err kms_op_list_key_rotations(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                     int (*fn)(const p11kms_rotation *r, void *arg), void *arg,
                                     p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    key_access acc;
    p11kms_err rc =
        kms_begin(svc, who, POLICY_ACTION_LIST_KEY_ROTATIONS, key_ref, NULL, NULL, &acc, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < acc.meta->version_count; i++) {
        const key_version *v = &acc.meta->versions[i];
        p11kms_rotation r = {v->number, v->created, rotation_type_name(v->type)};
        if (fn(&r, arg) != 0)
            break;
    }
    key_access_end(&acc);
    return P11KMS_OK;
}

/* --- token and policy tools ---------------------------------------------------------------- */

/* Whether the token copies a key into a sensitive, non-extractable session object: tried on a
 * throw-away session key (random value, wiped), since this process may not have used a key yet. */
static bool probe_copy(p11kms *svc, p11kms_error *why)
{
    uint8_t value[P11_AES256_KEY_LEN];
    if (RAND_bytes_ex(svc->libctx, value, sizeof(value), 0) != 1) {
        ERR_clear_error();
        P11KMS_RAISE(why, P11KMS_E_INTERNAL, "no random bytes for the probe key");
        return false;
    }
    p11_key *probe = NULL, *copy = NULL;
    p11kms_err rc = p11_key_create_session_aes(svc->token, value, sizeof(value), &probe, why);
    OPENSSL_cleanse(value, sizeof(value));
    if (rc == P11KMS_OK)
        rc = p11_key_copy_session(svc->token, probe, &copy, why);
    p11kms_error ignored = {0};
    if (copy != NULL)
        (void)p11_key_destroy(svc->token, copy, &ignored);
    if (probe != NULL)
        (void)p11_key_destroy(svc->token, probe, &ignored);
    return rc == P11KMS_OK;
}

static void report_key_cache(p11kms *svc, p11kms_token_report *out)
{
    keycache_copy_report r;
    keycache_copy_status(svc, &r);
    out->session_keys = svc->cfg->session_keys;
    out->session_copies = r.live;
    out->refused_keys = r.refusals;
    p11kms_error why = {0};
    if (svc->cfg->key_cache_token_object) {
        snprintf(out->key_cache, sizeof(out->key_cache), "token-object");
    } else if (r.off) {
        snprintf(out->key_cache, sizeof(out->key_cache), "token-object");
        snprintf(out->key_cache_reason, sizeof(out->key_cache_reason),
                 "the token refused to copy keys (%s)", r.reason);
    } else if (!probe_copy(svc, &why)) {
        snprintf(out->key_cache, sizeof(out->key_cache), "token-object");
        snprintf(out->key_cache_reason, sizeof(out->key_cache_reason),
                 "the token refused to copy a key into a session object: %.200s", why.message);
    } else {
        snprintf(out->key_cache, sizeof(out->key_cache), "session-copy");
        if (r.refusals > 0)
            snprintf(out->key_cache_reason, sizeof(out->key_cache_reason),
                     "%u key(s) use their token object: %.200s", r.refusals, r.reason);
    }
}

p11kms_err p11kms_token_info(p11kms *svc, p11kms_token_report *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    memset(out, 0, sizeof(*out));
    p11_token_info info;
    p11kms_err rc = p11_token_get_info(svc->token, &info, err);
    if (rc != P11KMS_OK)
        return rc;
    snprintf(out->module, sizeof(out->module), "%s", info.module);
    snprintf(out->library_description, sizeof(out->library_description), "%s",
             info.library_description);
    snprintf(out->library_manufacturer, sizeof(out->library_manufacturer), "%s",
             info.library_manufacturer);
    snprintf(out->library_version, sizeof(out->library_version), "%u.%u",
             info.library_version_major, info.library_version_minor);
    snprintf(out->cryptoki_version, sizeof(out->cryptoki_version), "%u.%u", info.cryptoki_major,
             info.cryptoki_minor);
    out->via_get_interface = info.via_get_interface;
    snprintf(out->token_label, sizeof(out->token_label), "%s", info.token_label);
    snprintf(out->token_manufacturer, sizeof(out->token_manufacturer), "%s",
             info.token_manufacturer);
    snprintf(out->token_model, sizeof(out->token_model), "%s", info.token_model);
    snprintf(out->token_serial, sizeof(out->token_serial), "%s", info.token_serial);
    out->slot_id = info.slot_id;
    out->pool_size = info.pool_size;
    p11_mechanism_report mechs[16];
    size_t n = sizeof(mechs) / sizeof(mechs[0]);
    rc = p11_token_mechanisms(svc->token, mechs, &n, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        out->mechanisms[i] =
            (p11kms_token_mechanism){mechs[i].name, mechs[i].purpose, mechs[i].supported};
    out->mechanism_count = n;
    p11_capability caps[P11_CAPABILITY_MAX];
    size_t nc = sizeof(out->capabilities) / sizeof(out->capabilities[0]);
    if (nc > P11_CAPABILITY_MAX)
        nc = P11_CAPABILITY_MAX;
    if ((rc = p11_token_capabilities(svc->token, caps, &nc, err)) != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < nc; i++) {
        struct p11kms_token_capability *c = &out->capabilities[i];
        c->name = caps[i].name;
        c->needed = caps[i].needed;
        c->required = caps[i].required;
        c->passed = caps[i].passed;
        snprintf(c->detail, sizeof(c->detail), "%s", caps[i].detail);
    }
    out->capability_count = nc;
    report_key_cache(svc, out);
    return P11KMS_OK;
}

p11kms_err p11kms_policy_check_file(const char *path, void (*fn)(const char *line, void *arg),
                                    void *arg, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (path == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "no policy file given");
    return policy_check_file(path, fn, arg, err);
}

/* Whether every name of subject is one of caller's: a caller may always ask about itself. */
static bool principal_within(const p11kms_principal *subject, const p11kms_principal *caller)
{
    for (size_t i = 0; i < subject->count; i++) {
        bool found = false;
        for (size_t j = 0; !found && j < caller->count; j++)
            found = strcmp(subject->names[i], caller->names[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* action is the name the caller wrote: the one place of the provider that parses one. It is
 * parsed only after a question about others was allowed, so a refusal says the same whatever
 * the action. */
static p11kms_err explain_for(p11kms *svc, const p11kms_principal *subject, const char *action_name,
                              const char *key_ref, const p11kms_context *ctx, bool *allowed,
                              char *explanation, size_t explanation_size, p11kms_error *err)
{
    policy_action action;
    p11kms_err parsed = policy_action_parse(action_name, &action, err);
    if (parsed != P11KMS_OK)
        return parsed;
    key_access acc;
    memset(&acc, 0, sizeof(acc));
    if (key_ref != NULL) {
        p11kms_error probe = {0};
        p11kms_err rc = key_access_begin(svc, key_ref, &acc, &probe);
        /* A malformed ARN names no key either: the policy decides as for a missing key. */
        if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND && rc != P11KMS_E_INVALID_ARN) {
            if (err != NULL)
                *err = probe;
            return rc;
        }
    }
    p11kms_err rc = gate_explain(svc, subject, action, key_ref, acc.meta, ctx, allowed, explanation,
                                 explanation_size, err);
    key_access_end(&acc);
    return rc;
}

p11kms_err p11kms_policy_explain(p11kms *svc, const p11kms_principal *caller,
                                 const p11kms_principal *subject, const char *action,
                                 const char *key_ref, const p11kms_context *ctx, bool *allowed,
                                 char *explanation, size_t explanation_size, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    *allowed = false;
    if (explanation_size > 0)
        explanation[0] = '\0';
    if (caller == NULL || caller->count == 0)
        return P11KMS_RAISE(err, P11KMS_E_ACCESS_DENIED, "no principal: the caller is unknown");
    /* About itself the caller learns only what trying would tell it: no right needed, and no
     * record (the daemon asks so for DryRun and for hiding a missing key, inside a request
     * that has its own record). */
    if (subject == NULL || principal_within(subject, caller))
        return explain_for(svc, subject != NULL ? subject : caller, action, key_ref, ctx, allowed,
                           explanation, explanation_size, err);
    /* About others: an administrator's action, decided before the key is even looked up, so
     * that a refusal says the same whatever the subject or the key. */
    audit_req a;
    audit_begin(&a, svc, "ExplainPolicy", caller, key_ref, NULL);
    p11kms_err rc = gate_check_global(svc, caller, POLICY_ACTION_EXPLAIN_POLICY, err);
    if (rc == P11KMS_OK)
        rc = explain_for(svc, subject, action, key_ref, ctx, allowed, explanation, explanation_size,
                         err);
    p11kms_err answer = audit_end(&a, rc, err);
    if (audit_refused(rc, answer)) {
        *allowed = false;
        if (explanation_size > 0)
            explanation[0] = '\0';
    }
    return answer;
}
