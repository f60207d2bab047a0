/* Key deletion: the record and aliases in one transaction, then the version objects. */
#ifndef P11KMS_PROVIDER_LIFECYCLE_PURGE_H
#define P11KMS_PROVIDER_LIFECYCLE_PURGE_H

#include "provider/service.h"

/* Destroys the key if it is PendingDeletion and its date has passed (takes the lock). */
p11kms_err lifecycle_purge_if_due(p11kms *svc, key_entry *entry, p11kms_error *err);

/* Deletes the key's record and aliases in one transaction, then destroys its version objects
 * (caller holds the lock). */
p11kms_err lifecycle_purge_locked(p11kms *svc, const key_meta *m, p11kms_error *err);

#endif
