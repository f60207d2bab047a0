/* The service handle behind p11kms.h and the per-process caches that keep token round trips off
 * the hot path. Internal to the provider. */
#ifndef P11KMS_PROVIDER_SERVICE_H
#define P11KMS_PROVIDER_SERVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>

#include <openssl/types.h>

#include "p11kms.h"
#include "pkcs11/token.h"
#include "common/hashmap.h"
#include "provider/keymeta.h"
#include "provider/service-config.h"
#include "provider/audit-ops.h"

struct policy_gate;
struct store;

/* Per-key state lives in memory that a random key finds cold in the CPU caches: each cache line
 * an Encrypt touches costs up to ~200 ns on a loaded VM, against ~1 us for the whole token call
 * on NSS softokn and ~10 us on SoftHSM (doc/BENCHMARKS.md). So the records an Encrypt reads start
 * on a cache line, with the fields it reads packed at their start. */
#define KEY_STATE_ALIGN 64

/* An immutable snapshot of a key's metadata shared by concurrent operations: one allocation, the
 * reference count and the record's first fields (keymeta.h) on the same cache line. */
typedef struct meta_snapshot {
    _Alignas(KEY_STATE_ALIGN) atomic_int refs;
    uint32_t current_version; /* the number of the record's last version (0: none) */
    key_meta *meta;           /* &record */
    key_meta record;
} meta_snapshot;

/* A session copy of one key version (p11_key_copy_session), shared by the operations using it.
 * It is in its entry's copies[] and in the service's copy list together (both changed under
 * copies_lock and the entry's lock), and holds one reference for that; each operation using it
 * holds another. The last reference destroys the session object. */
typedef struct key_copy {
    p11_key *key;
    struct key_entry *entry;
    uint32_t version;
    atomic_int refs;
    _Atomic uint64_t last_used; /* tick of svc->copy_clock: least recently used goes first */
    size_t index;               /* position in svc->copies */
} key_copy;

/* What one process knows of one key. Entries live until the service closes, so a pointer to an
 * entry never dangles; a purged key keeps an entry whose snapshot is NULL. The fields of the hot
 * path come first: the first cache line is what the key cache's lookup compares (id_text) and
 * what decides that the record is fresh; the second is the lock and what an Encrypt takes under
 * it (its reservation, its session copy). */
typedef struct key_entry {
    _Alignas(KEY_STATE_ALIGN) char id_text[P11KMS_KEY_ID_LEN + 1];
    meta_snapshot *snap; /* NULL: not loaded or key gone */
    int64_t fetched_ms;  /* monotonic time of the last token read */
    uint64_t generation; /* state generation seen before that read */
    pthread_mutex_t lock;
    /* Encryptions this process may still make under batch_version without asking the token. */
    uint32_t batch_version;
    uint64_t batch_left;
    /* The copy made last, or NULL: always one of copies[] (set and cleared with it), which saves
     * reading copies[] for the version in use. */
    struct key_copy *recent_copy;
    uint64_t next_batch;    /* size of the next reservation: grows to keys.count-batch */
    p11_key **version_keys; /* index = version number - 1; cached token handles */
    uint32_t version_keys_len;
    key_copy **copies; /* index = version number - 1; session copies in use */
    uint32_t copies_len;
    bool copy_refused; /* the token refused to copy this key: use its token object */
    uint8_t id[KEY_UUID_LEN];
} key_entry;

typedef struct alias_entry {
    char id_text[P11KMS_KEY_ID_LEN + 1]; /* "" when the alias does not exist */
    int64_t fetched_ms;
    uint64_t generation;
} alias_entry;

struct p11kms {
    service_config *cfg;
    OSSL_LIB_CTX *libctx;
    EVP_CIPHER *aes_gcm; /* fetched once from libctx */
    p11_token *token;
    struct policy_gate *gate;
    struct store *store; /* key records, aliases, version claims (provider/store.h) */
    EVP_MD *sha256;      /* fetched once from libctx (verified-row digests) */

    /* The token's integrity key (found or made on first use), what signs with it (its session
     * copy, or the key itself under token.key-cache: token-object or where the token refuses a
     * copy) and the digests of rows already verified with it (table:name -> 32 bytes); all
     * under integrity_lock. */
    pthread_mutex_t integrity_lock;
    p11_key *integrity;
    p11_key *integrity_signer;
    hashmap *verified;

    pthread_rwlock_t cache_lock; /* guards the two maps (not the entries) */
    hashmap *keys;               /* id_text -> key_entry */
    hashmap *aliases;            /* "alias/NAME" -> alias_entry */

    pthread_mutex_t mutation_lock; /* threads of this process; lock_fd serializes processes */
    int lock_fd;
    bool lock_dirty; /* a locked section wrote to the token: bump the generation on unlock */
    /* The state generation: a counter shared by every process through the mapped lock file,
     * bumped after each change to keys. NULL when the lock file cannot be mapped (processes then
     * converge within keys.state-refresh-ms). */
    uint64_t *generation;
    struct audit_log *audit; /* NULL: no audit.file configured */

    /* Session copies of hot key versions (token.key-cache, token.session-keys). */
    pthread_mutex_t copies_lock; /* taken before any entry's lock */
    key_copy **copies;           /* every live copy, at most cfg->session_keys */
    size_t copies_count;
    _Atomic uint64_t copy_clock;
    _Atomic bool copies_off;        /* token.key-cache: token-object, or the token refused copies */
    _Atomic unsigned copy_refusals; /* keys whose copy the token refused */
    char copy_refusal[256];         /* the first refusal's reason (under copies_lock) */
};

/* Opens and maps the lock file (called once by p11kms_open). */
P11KMS_MUST_CHECK p11kms_err service_open_lock(p11kms *svc, p11kms_error *err);
/* The current state generation (0 when unmapped). */
uint64_t service_generation(const p11kms *svc);

/* Monotonic and wall clocks (wall clock is what metadata dates use). */
int64_t service_monotonic_ms(void);
int64_t service_now(void);

meta_snapshot *snapshot_new(key_meta *meta); /* takes ownership of meta */
meta_snapshot *snapshot_ref(meta_snapshot *s);
void snapshot_unref(meta_snapshot *s);

#endif
