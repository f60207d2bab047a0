/* The per-process view of keys: resolves references, keeps metadata snapshots fresh within
 * state-refresh-ms, and caches token handles of key versions. */
#ifndef P11KMS_PROVIDER_KEYCACHE_H
#define P11KMS_PROVIDER_KEYCACHE_H

#include "provider/service.h"

/* A key being used by one operation: the entry and a snapshot that stays valid until
 * key_access_end, whatever other threads install meanwhile. */
typedef struct key_access {
    key_entry *entry;
    meta_snapshot *snap;
    const key_meta *meta; /* snap->meta */
} key_access;

/* Resolves a key reference (id, alias, ARN) to an existing key. NOT_FOUND when it names no key
 * (including a key purged because its deletion date passed). */
P11KMS_MUST_CHECK p11kms_err key_access_begin(p11kms *svc, const char *key_ref, key_access *acc,
                                              p11kms_error *err);
/* Same for a key id taken from a ciphertext blob. */
P11KMS_MUST_CHECK p11kms_err key_access_by_id(p11kms *svc, const uint8_t id[KEY_UUID_LEN],
                                              key_access *acc, p11kms_error *err);
/* Re-reads the metadata from the token now (used when the token refuses a key, or when the
 * cached state refuses an operation: a refusal must never rest on stale data). */
P11KMS_MUST_CHECK p11kms_err key_access_refresh(p11kms *svc, key_access *acc, p11kms_error *err);
void key_access_end(key_access *acc);

/* Installs metadata just written to the token by this process (takes ownership of m). */
void keycache_install(p11kms *svc, key_entry *entry, key_meta *m);
/* Same, for a write whose unlock does not bump the generation (encryption reservations). */
void keycache_install_unannounced(p11kms *svc, key_entry *entry, key_meta *m);
/* Marks the key gone (after a purge). */
void keycache_forget(p11kms *svc, key_entry *entry);
/* Entry for an id, created empty if needed (never NULL unless out of memory). */
key_entry *keycache_entry(p11kms *svc, const char *id_text);

/* Token handle of a version, cached. */
P11KMS_MUST_CHECK p11kms_err keycache_version_key(p11kms *svc, key_entry *entry, uint32_t version,
                                                  p11_key **out, p11kms_error *err);
/* Drops a cached handle (after the object was destroyed). */
void keycache_drop_version_key(p11kms *svc, key_entry *entry, uint32_t version);

/* The object an operation on a version runs with: its session copy (made on first use, see
 * token.key-cache) or, where copies are off or the token refused one, the token object. Never
 * fails for the copy's sake: a refused copy falls back to the token object for good. */
typedef struct keycache_use {
    p11_key *key;
    key_copy *copy; /* held until keycache_release */
} keycache_use;
P11KMS_MUST_CHECK p11kms_err keycache_use_version(p11kms *svc, key_entry *entry, uint32_t version,
                                                  keycache_use *use, p11kms_error *err);
void keycache_release(p11kms *svc, keycache_use *use);

/* What token info reports about session copies in this process. */
typedef struct keycache_copy_report {
    bool off;          /* token.key-cache: token-object, or the token refused copies */
    size_t live;       /* copies now */
    unsigned refusals; /* keys using their token object because the token refused a copy */
    char reason[256];  /* the first refusal, "" if none */
} keycache_copy_report;
void keycache_copy_status(p11kms *svc, keycache_copy_report *out);
/* The first refusal of a copy: keys using their token object from now on; a token that does
 * not implement C_CopyObject turns copies off for the process. */
void keycache_note_refusal(p11kms *svc, key_entry *entry, const p11kms_error *why);

/* Alias resolution, cached for state-refresh-ms. */
P11KMS_MUST_CHECK p11kms_err keycache_resolve_alias(p11kms *svc, const char *alias,
                                                    char id_text[P11KMS_KEY_ID_LEN + 1],
                                                    p11kms_error *err);
void keycache_alias_forget(p11kms *svc, const char *alias);

void keycache_free_all(p11kms *svc);

#endif
