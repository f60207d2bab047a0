/* Imported key material in the token: its object's destruction, its lazy expiry, and the sweep. */
#ifndef P11KMS_PROVIDER_IMPORT_MATERIAL_H
#define P11KMS_PROVIDER_IMPORT_MATERIAL_H

#include "provider/service.h"

/* The version imported material is: the key's only one, the object a generated key's first
 * version would be. */
#define IMPORT_MATERIAL_VERSION 1

/* ExpirationModel and ValidTo of the public metadata. */
void import_fill_metadata(const key_meta *m, p11kms_key_metadata *out);

/* The record's material has expired (KEY_MATERIAL_EXPIRES and ValidTo passed). */
bool import_material_due(const key_meta *m, int64_t now);

/* Destroys the key's material if it has expired and moves the key to PendingImport (takes the
 * lock; called lazily on access). */
P11KMS_MUST_CHECK p11kms_err import_expire_if_due(p11kms *svc, key_entry *entry, p11kms_error *err);

/* Destroys the material object of an EXTERNAL key whose record names no material (left by an
 * import or deletion of material interrupted by a crash; nothing can have used it). Takes the
 * lock; *destroyed tells whether there was one. */
p11kms_err import_sweep(p11kms *svc, const char *id_text, bool *destroyed, p11kms_error *err);

/* Destroys the material object of a key if one exists (NOT_FOUND is success); entry (may be
 * NULL) drops its cached handle first. */
p11kms_err import_destroy_material(p11kms *svc, key_entry *entry, const uint8_t id[KEY_UUID_LEN],
                                   bool *destroyed, p11kms_error *err);

/* Makes the key PendingImport without material: the record, then the object (caller holds the
 * lock). */
p11kms_err import_remove_material_locked(p11kms *svc, key_entry *entry, key_meta *m,
                                         p11kms_error *err);

#endif
