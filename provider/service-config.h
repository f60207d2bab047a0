/* p11kms.yaml: the service configuration (token, key store, hierarchy, policy). */
#ifndef P11KMS_PROVIDER_CONFIG_H
#define P11KMS_PROVIDER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "p11kms-error.h"
#include "pkcs11/token.h"

/* Defaults, documented in conf/p11kms.yaml. The GCM bound: NIST SP 800-38D limits a key used
 * with random 96-bit IVs to 2^32 invocations; p11kms stops a version at 2^30 to keep the IV
 * collision probability below 2^-33 even with counts reserved but unused after crashes. */
#define CONFIG_DEFAULT_MAX_ENCRYPTIONS (UINT64_C(1) << 30)
#define CONFIG_DEFAULT_COUNT_BATCH 65536u
#define CONFIG_DEFAULT_STATE_REFRESH_MS 300000u
#define CONFIG_DEFAULT_HIERARCHY_TTL_S 3600u
#define CONFIG_DEFAULT_HIERARCHY_MAX_USES (UINT64_C(1) << 32)
#define CONFIG_DEFAULT_REVOCATION_CHECK_MS 2000u
#define CONFIG_DEFAULT_LOCK_FILE "/run/lock/p11kms.lock"
#define CONFIG_DEFAULT_AUDIT_MAX_SIZE (UINT64_C(64) << 20)
#define CONFIG_DEFAULT_AUDIT_CHECKPOINT_S 10u
#define CONFIG_DEFAULT_STORE "sqlite:/var/lib/p11kms/p11kms.db"
#define CONFIG_DEFAULT_ORPHAN_GRACE_S 3600u
#define CONFIG_DEFAULT_PARTITION "aws"
#define CONFIG_DEFAULT_SESSION_KEYS 512u

typedef struct service_config {
    char *path; /* the file this came from */

    /* token: */
    char *module;
    char *module_args; /* CK_C_INITIALIZE_ARGS pReserved, or NULL */
    char *token_uri;
    char *pin_source;
    unsigned sessions;
    p11_iv_mode iv_mode;
    p11_gcm_layout gcm_layout;
    p11_rng_source rng;
    bool insecure_pin_file; /* development only */
    /* key-cache: session-copy (default) uses session copies of hot key versions, at most
     * session_keys of them; token-object always uses the token objects. */
    bool key_cache_token_object;
    unsigned session_keys;

    /* keys: ARNs are arn:PARTITION:kms:REGION:ACCOUNT:key/ID */
    char *partition;
    char *region;
    char *account;
    /* "arn:PARTITION:kms:REGION:ACCOUNT:key/", made once when the configuration is read: every
     * reply names its key by ARN, and formatting it per request was measurable on the hot path. */
    char *key_arn_prefix;
    char *lock_file;
    uint64_t max_encryptions_per_version;
    unsigned count_batch;
    unsigned state_refresh_ms;
    /* maintain destroys a claimed key version object no record names only after this long. */
    unsigned orphan_grace_s;

    /* hierarchy: */
    unsigned hierarchy_ttl_s;
    uint64_t hierarchy_max_uses;
    unsigned revocation_check_ms;

    /* secure-memory: required (refuse an unlocked secure heap); core-dumps: disabled. */
    bool secure_memory_required;
    bool core_dumps_disabled;
    /* memory-lock: disabled: p11kmsd does not mlockall (and warns at start). */
    bool memory_lock_disabled;
    /* store: where key records, aliases and counters live (provider/store.h): "sqlite:/path"
     * or a PostgreSQL URI / conninfo string. */
    char *store;

    /* policy: a path, or policy_none for "policy: none" (development only). */
    char *policy_path;
    bool policy_none;

    /* audit: audit_file NULL means no audit trail. */
    char *audit_file;
    uint64_t audit_max_size;      /* rotate when a file would grow past this (0: never) */
    bool audit_daily;             /* rotate at the first write of a new UTC day */
    bool audit_continue;          /* on-failure: continue (default refuse) */
    unsigned audit_sync_delay_ms; /* how long a batch waits for more records */
    unsigned audit_checkpoint_s;  /* checkpoint interval */
    bool audit_syslog;            /* second, best-effort sink */

    /* endpoint: a client configuration (p11kms --endpoint): where p11kmsd listens. Such a
     * configuration needs no token section and cannot open the service locally. */
    char *endpoint;
} service_config;

/* Loads and validates a configuration file; every error is P11KMS_E_CONFIG with
 * file:line:column. */
P11KMS_MUST_CHECK p11kms_err config_load(const char *path, service_config **out, p11kms_error *err);
/* Same from memory (tests). */
P11KMS_MUST_CHECK p11kms_err config_load_buffer(const char *name, const char *text, size_t len,
                                                service_config **out, p11kms_error *err);
void config_free(service_config *cfg);

#endif
