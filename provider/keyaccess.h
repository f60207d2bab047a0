/* Access to a key for one operation: resolve, refresh from the cache, apply lazy deletion. */
#ifndef P11KMS_PROVIDER_KEYACCESS_H
#define P11KMS_PROVIDER_KEYACCESS_H

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
/* Takes the cache's current snapshot again, re-reading the store only when it is stale: after
 * this process itself installed a record it just wrote (an encryption reservation), so that the
 * first use of a key reads its record twice (access, reservation), not three times. */
P11KMS_MUST_CHECK p11kms_err key_access_renew(p11kms *svc, key_access *acc, p11kms_error *err);
void key_access_end(key_access *acc);

#endif
