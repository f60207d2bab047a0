/* The per-process cache of keys: metadata snapshots, alias resolutions, and the token handles
 * and session copies of key versions (key_access in keyaccess.h keeps them fresh). */
#ifndef P11KMS_PROVIDER_KEYCACHE_H
#define P11KMS_PROVIDER_KEYCACHE_H

#include "provider/service.h"

/* Installs metadata this process just wrote or read under the keystore lock (takes ownership of
 * m). Under the lock only: the record then reflects every change the generation counted. */
void keycache_install(p11kms *svc, key_entry *entry, key_meta *m);
/* Installs metadata read without the lock, as of the generation read before the read. */
void keycache_install_read(p11kms *svc, key_entry *entry, key_meta *m, uint64_t gen_before_read);
/* Installs a copy of m (the caller keeps m). Out of memory it forgets the entry instead: the next
 * access re-reads the store, never a missing key or a stale record. entry may be NULL. */
void keycache_install_copy(p11kms *svc, key_entry *entry, const key_meta *m);
/* Writes the record (the caller holds the keystore lock) and installs a copy in this process's
 * cache. */
P11KMS_MUST_CHECK p11kms_err keycache_commit(p11kms *svc, key_entry *entry, key_meta *m,
                                             p11kms_error *err);
/* Marks the key gone (after a purge). */
void keycache_forget(p11kms *svc, key_entry *entry);
/* Reads the record from the token and installs it; NOT_FOUND when the key does not exist. */
P11KMS_MUST_CHECK p11kms_err keycache_load(p11kms *svc, key_entry *entry, p11kms_error *err);
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
