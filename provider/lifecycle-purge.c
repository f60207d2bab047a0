/* Key deletion: the record and aliases in one transaction, then the version objects. */
#include "config.h"

#include "provider/lifecycle-purge.h"

#include "provider/keycache.h"
#include "provider/keystore.h"

p11kms_err lifecycle_purge_locked(p11kms *svc, const key_meta *m, p11kms_error *err)
{
    /* One transaction removes the record and its aliases and seals the versions' claims (hands
     * them back to maintain); the version objects go afterwards. A crash before they are all
     * destroyed leaves sealed claims and objects no record names, which maintain destroys after
     * the grace period. */
    key_entry *entry = keycache_entry(svc, m->id_text);
    p11kms_err rc = keystore_begin(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; rc == P11KMS_OK && i < m->alias_count; i++) {
        p11kms_error probe = {0};
        p11kms_err arc = keystore_alias_delete(svc, m->aliases[i], &probe);
        if (arc != P11KMS_OK && arc != P11KMS_E_NOT_FOUND) {
            rc = arc;
            if (err != NULL)
                *err = probe;
        }
    }
    for (size_t i = 0; rc == P11KMS_OK && i < m->version_count; i++)
        rc = keystore_version_hand_back(svc, m->id_text, m->versions[i].number, err);
    if (rc == P11KMS_OK)
        rc = keystore_meta_delete(svc, m->id_text, err);
    if (rc == P11KMS_OK)
        rc = keystore_commit(svc, err);
    else
        keystore_rollback(svc);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < m->alias_count; i++)
        keycache_alias_forget(svc, m->aliases[i]);
    if (entry != NULL)
        keycache_forget(svc, entry);
    for (size_t i = 0; i < m->version_count; i++) {
        uint32_t v = m->versions[i].number;
        if (entry != NULL)
            keycache_drop_version_key(svc, entry, v);
        keystore_version_discard(svc, m->id, v);
    }
    return P11KMS_OK;
}

p11kms_err lifecycle_purge_if_due(p11kms *svc, key_entry *entry, p11kms_error *err)
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
        if (m->state == P11KMS_KEY_PENDING_DELETION && m->deletion_date <= service_now())
            rc = lifecycle_purge_locked(svc, m, err);
        else
            keycache_install_copy(svc, entry, m);
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}
