/* Key lifecycle internals shared by the API, the data path and maintenance. */
#ifndef P11KMS_PROVIDER_LIFECYCLE_H
#define P11KMS_PROVIDER_LIFECYCLE_H

#include "provider/service.h"

/* Adds a version (rotation). Caller holds the keystore lock and passes the fresh record; on
 * success the record in the token and *m carry the new version. */
P11KMS_MUST_CHECK p11kms_err lifecycle_rotate_locked(p11kms *svc, key_meta *m, rotation_type type,
                                                     p11kms_error *err);

#endif
