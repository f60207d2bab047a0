/* Key lifecycle internals shared by the API, the key cache and maintenance. */
#ifndef P11KMS_PROVIDER_LIFECYCLE_H
#define P11KMS_PROVIDER_LIFECYCLE_H

#include "provider/service.h"

/* Refusal for a management operation the key's state does not allow
 * (KMSInvalidStateException), with a message naming key and state. */
p11kms_err lifecycle_refuse_state(const key_meta *m, const char *operation, p11kms_error *err);
/* Refusal for a cryptographic operation: DisabledException for a Disabled key,
 * KMSInvalidStateException otherwise (doc/design.md §5). */
p11kms_err lifecycle_refuse_crypto(const key_meta *m, const char *operation, p11kms_error *err);

/* Destroys the key if it is PendingDeletion and its date has passed (takes the lock). */
p11kms_err lifecycle_purge_if_due(p11kms *svc, key_entry *entry, p11kms_error *err);

/* Adds a version (rotation). Caller holds the keystore lock and passes the fresh record; on
 * success the record in the token and *m carry the new version. */
P11KMS_MUST_CHECK p11kms_err lifecycle_rotate_locked(p11kms *svc, key_meta *m, rotation_type type,
                                                     p11kms_error *err);

/* Deletes the key's record and aliases in one transaction, then destroys its version objects
 * (caller holds the lock). */
p11kms_err lifecycle_purge_locked(p11kms *svc, const key_meta *m, p11kms_error *err);

/* Formats one line of a maintenance report and hands it to fn (NULL: nothing). */
void lifecycle_report(void (*fn)(const char *line, void *arg), void *arg, const char *fmt, ...)
    P11KMS_PRINTF(3, 4);

/* Public metadata of a record. */
void lifecycle_fill_metadata(p11kms *svc, const key_meta *m, p11kms_key_metadata *out);

#endif
