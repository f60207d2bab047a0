/* A key's state as callers see it: refusals that name it, and the public metadata. */
#ifndef P11KMS_PROVIDER_LIFECYCLE_STATE_H
#define P11KMS_PROVIDER_LIFECYCLE_STATE_H

#include "provider/service.h"

/* Refusal for a management operation the key's state does not allow
 * (KMSInvalidStateException), with a message naming key and state. */
p11kms_err lifecycle_refuse_state(const key_meta *m, const char *operation, p11kms_error *err);
/* Refusal for a cryptographic operation: DisabledException for a Disabled key,
 * KMSInvalidStateException otherwise (doc/design.md §5). */
p11kms_err lifecycle_refuse_crypto(const key_meta *m, const char *operation, p11kms_error *err);

/* Public metadata of a record. */
void lifecycle_fill_metadata(p11kms *svc, const key_meta *m, p11kms_key_metadata *out);

#endif
