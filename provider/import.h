/* Imported key material (BYOK): hooks the rest of the provider calls (doc/import.md). */
#ifndef P11KMS_PROVIDER_IMPORT_H
#define P11KMS_PROVIDER_IMPORT_H

#include "provider/service.h"

/* ExpirationModel and ValidTo of the public metadata. */
void import_fill_metadata(const key_meta *m, p11kms_key_metadata *out);

/* The record's material has expired (KEY_MATERIAL_EXPIRES and ValidTo passed). */
bool import_material_due(const key_meta *m, int64_t now);

/* Destroys the key's material if it has expired and moves the key to PendingImport (takes the
 * lock; called lazily on access). */
P11KMS_MUST_CHECK p11kms_err import_expire_if_due(p11kms *svc, key_entry *entry, p11kms_error *err);

/* Maintenance: destroys expired material and expired wrapping key pairs; one line per action. */
p11kms_err import_maintain(p11kms *svc, void (*fn)(const char *line, void *arg), void *arg,
                           p11kms_error *err);

/* Destroys the material object of an EXTERNAL key whose record names no material (left by an
 * import or deletion of material interrupted by a crash; nothing can have used it). Takes the
 * lock; *destroyed tells whether there was one. */
p11kms_err import_sweep(p11kms *svc, const char *id_text, bool *destroyed, p11kms_error *err);

#endif
