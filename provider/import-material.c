/* Imported key material in the token: its object's destruction, its lazy expiry, and the sweep. */
#include "config.h"

#include "provider/import-material.h"

#include <stdio.h>

#include "provider/keycache.h"
#include "provider/keystore.h"

void import_fill_metadata(const key_meta *m, p11kms_key_metadata *out)
{
    const char *name = expiration_model_name(m->expiration);
    snprintf(out->expiration_model, sizeof(out->expiration_model), "%s", name ? name : "");
    out->valid_to = m->expiration == EXPIRATION_EXPIRES ? m->valid_to : 0;
}

bool import_material_due(const key_meta *m, int64_t now)
{
    return m->origin == P11KMS_ORIGIN_EXTERNAL && m->expiration == EXPIRATION_EXPIRES &&
           m->version_count > 0 && m->valid_to <= now && m->state != P11KMS_KEY_PENDING_DELETION;
}

/* Destroys the material object of a key if one exists (NOT_FOUND is success). */
p11kms_err import_destroy_material(p11kms *svc, key_entry *entry, const uint8_t id[KEY_UUID_LEN],
                                   bool *destroyed, p11kms_error *err)
{
    p11_key *key = NULL;
    p11kms_error probe = {0};
    if (destroyed != NULL)
        *destroyed = false;
    if (entry != NULL)
        keycache_drop_version_key(svc, entry, IMPORT_MATERIAL_VERSION);
    p11kms_err rc = keystore_version_find(svc, id, IMPORT_MATERIAL_VERSION, &key, &probe);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_OK;
    if (rc == P11KMS_OK) {
        rc = p11_key_destroy(svc->token, key, &probe);
        if (rc == P11KMS_E_NOT_FOUND)
            return P11KMS_OK; /* a cached handle of an object another process destroyed */
    }
    if (rc == P11KMS_OK && destroyed != NULL)
        *destroyed = true;
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

/* The record first (the key is unusable in every process from the next generation on), then the
 * object. A crash between the two leaves a material object no record names; the record is
 * PendingImport, so nothing can use it, and import_sweep destroys it on the next access, import
 * or maintain. */
p11kms_err import_remove_material_locked(p11kms *svc, key_entry *entry, key_meta *m,
                                         p11kms_error *err)
{
    m->version_count = 0;
    m->state = P11KMS_KEY_PENDING_IMPORT;
    m->expiration = EXPIRATION_NONE;
    m->valid_to = 0;
    m->rotation_enabled = false;
    m->next_rotation = 0;
    p11kms_err rc = keycache_commit(svc, entry, m, err);
    if (rc != P11KMS_OK)
        return rc;
    pthread_mutex_lock(&entry->lock);
    entry->batch_left = 0; /* the next material starts a fresh encryption budget record */
    pthread_mutex_unlock(&entry->lock);
    return import_destroy_material(svc, entry, m->id, NULL, err);
}

p11kms_err import_expire_if_due(p11kms *svc, key_entry *entry, p11kms_error *err)
{
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        keycache_forget(svc, entry);
        rc = P11KMS_OK;
    } else if (rc == P11KMS_OK) {
        if (import_material_due(m, service_now()))
            rc = import_remove_material_locked(svc, entry, m, err);
        else
            keycache_install_copy(svc, entry, m);
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

p11kms_err import_sweep(p11kms *svc, const char *id_text, bool *destroyed, p11kms_error *err)
{
    uint8_t id[KEY_UUID_LEN];
    *destroyed = false;
    if (!uuid_parse(id_text, id))
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "malformed key id %s", id_text);
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, id_text, &m, err);
    /* Under the lock no import is half done: an object the record does not name is left over. */
    if (rc == P11KMS_OK && m->origin == P11KMS_ORIGIN_EXTERNAL &&
        keymeta_version(m, IMPORT_MATERIAL_VERSION) == NULL)
        rc = import_destroy_material(svc, keycache_entry(svc, id_text), id, destroyed, err);
    else if (rc == P11KMS_E_NOT_FOUND)
        rc = P11KMS_OK; /* no record: maintain's orphan rules apply */
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}
