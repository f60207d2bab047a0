/* Where p11kms keeps its state (doc/token-layout.md): key version objects in the token; key
 * records, aliases and the journal of the mutation in progress in the store (provider/store.h),
 * every row authenticated by the token's integrity key and verified on read. Mutations are
 * serialized across threads and processes by keystore_lock. */
#ifndef P11KMS_PROVIDER_KEYSTORE_H
#define P11KMS_PROVIDER_KEYSTORE_H

#include "provider/service.h"

#define KEYSTORE_LABEL_MAX 320

/* Takes the process mutex and the lock file (flock, exclusive). Blocks. */
P11KMS_MUST_CHECK p11kms_err keystore_lock(p11kms *svc, p11kms_error *err);
void keystore_unlock(p11kms *svc);

P11KMS_MUST_CHECK p11kms_err keystore_meta_read(p11kms *svc, const char *id_text, key_meta **out,
                                                p11kms_error *err);
/* Both set m->row_version to the version written. A write replaces the row only if it is still
 * at m->row_version (when that is not 0). */
P11KMS_MUST_CHECK p11kms_err keystore_meta_create(p11kms *svc, key_meta *m, p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err keystore_meta_write(p11kms *svc, key_meta *m, p11kms_error *err);
p11kms_err keystore_meta_delete(p11kms *svc, const char *id_text, p11kms_error *err);
/* Every key record; records that fail verification or decoding are reported through bad. */
p11kms_err keystore_meta_list(p11kms *svc, int (*fn)(const key_meta *m, void *arg),
                              void (*bad)(const char *label, const p11kms_error *why, void *arg),
                              void *arg, p11kms_error *err);

/* alias is "alias/NAME". NOT_FOUND when absent. */
P11KMS_MUST_CHECK p11kms_err keystore_alias_read(p11kms *svc, const char *alias,
                                                 char id_text[P11KMS_KEY_ID_LEN + 1],
                                                 p11kms_error *err);
/* Creates or overwrites. */
P11KMS_MUST_CHECK p11kms_err keystore_alias_put(p11kms *svc, const char *alias, const char *id_text,
                                                p11kms_error *err);
p11kms_err keystore_alias_delete(p11kms *svc, const char *alias, p11kms_error *err);
p11kms_err keystore_alias_list(p11kms *svc,
                               int (*fn)(const char *alias, const char *id_text, void *arg),
                               void *arg, p11kms_error *err);

/* One transaction around several writes (alias changes, purge): all or nothing. Other threads
 * of the process wait for the store meanwhile. */
P11KMS_MUST_CHECK p11kms_err keystore_begin(p11kms *svc, p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err keystore_commit(p11kms *svc, p11kms_error *err);
void keystore_rollback(p11kms *svc);

/* Every alias row; rows that fail verification are reported through bad. */
p11kms_err keystore_alias_scan(p11kms *svc,
                               int (*fn)(const char *alias, const char *id_text, void *arg),
                               void (*bad)(const char *alias, const p11kms_error *why, void *arg),
                               void *arg, p11kms_error *err);

/* Key version objects: CKA_ID = 16-byte key id || u32 big-endian version.
 * Generation claims the version number in the store first (ALREADY_EXISTS if claimed), with a
 * seal that lets maintain destroy the object (store.h), then generates the object and finds it
 * again from a fresh lookup; on failure nothing is left. A crash after it leaves a sealed claim
 * and an object no record names, which maintain destroys after the grace period. */
P11KMS_MUST_CHECK p11kms_err keystore_version_generate(p11kms *svc, const uint8_t id[KEY_UUID_LEN],
                                                       uint32_t version, p11_key **out,
                                                       p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err keystore_version_find(p11kms *svc, const uint8_t id[KEY_UUID_LEN],
                                                   uint32_t version, p11_key **out,
                                                   p11kms_error *err);
/* Writes key record m (created when create) and, in the same transaction, clears the seal of
 * the claim of the version it now names (0: none, an imported key): from then on maintain
 * destroys that version's object under no circumstances, not even when the record is later
 * deleted or put back to an older state by someone without the token. */
P11KMS_MUST_CHECK p11kms_err keystore_meta_commit_version(p11kms *svc, key_meta *m, bool create,
                                                          uint32_t version, p11kms_error *err);
/* Seals the claim of a version of a key being purged (a claim is made if it had none), inside
 * the purge's transaction: an object the purge then fails to destroy is maintain's to destroy. */
P11KMS_MUST_CHECK p11kms_err keystore_version_hand_back(p11kms *svc, const char *id_text,
                                                        uint32_t version, p11kms_error *err);
/* Destroys a version object no record names and releases its claim. Best effort: what it
 * cannot do, maintain does later. */
void keystore_version_discard(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t version);
/* After a record write naming the version failed: keystore_version_discard, but only once a
 * fresh read shows that no record names the version. A write can fail after the database
 * committed it (the connection lost while COMMIT was answered); destroying the object then
 * would lose whatever was encrypted under the version. When the read fails too, the object and
 * its sealed claim stay for maintain, which decides under the lock after the grace period. */
void keystore_version_discard_unnamed(p11kms *svc, const uint8_t id[KEY_UUID_LEN],
                                      uint32_t version);
/* Releases the claim of a version whose object is gone. */
p11kms_err keystore_version_release(p11kms *svc, const char *id_text, uint32_t version,
                                    p11kms_error *err);
typedef enum keystore_claim_state {
    CLAIM_NAMED,    /* no seal: a record named the version */
    CLAIM_PENDING,  /* sealed, and the seal verifies: maintain may destroy its object */
    CLAIM_BAD_SEAL, /* sealed, but not by this token's integrity key */
} keystore_claim_state;
p11kms_err keystore_claims_list(p11kms *svc,
                                int (*fn)(const char *id_text, uint32_t version, int64_t claimed,
                                          keystore_claim_state state, void *arg),
                                void *arg, p11kms_error *err);
/* One scan of the token's version objects with their usage attributes (maintenance). */
p11kms_err keystore_version_scan(p11kms *svc,
                                 int (*fn)(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                           const p11_key_listing *k, void *arg),
                                 void *arg, p11kms_error *err);
/* Calls fn for every version object in the token (maintenance scans). */
p11kms_err keystore_version_list(p11kms *svc,
                                 int (*fn)(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                           void *arg),
                                 void *arg, p11kms_error *err);

/* The checkpoint row of the audit log whose chain id is chain (hex), authenticated like every
 * row. read: NOT_FOUND when absent; *value is malloc'ed. write: replaces it. */
P11KMS_MUST_CHECK p11kms_err keystore_audit_read(p11kms *svc, const char *chain, uint8_t **value,
                                                 size_t *len, p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err keystore_audit_write(p11kms *svc, const char *chain, const void *value,
                                                  size_t len, p11kms_error *err);

#endif
