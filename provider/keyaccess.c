/* A key for one operation: its cached record, after the purge or expiry its dates made due. */
#include "config.h"

#include "provider/keyaccess.h"

#include <string.h>

#include "provider/import-material.h"
#include "provider/keycache.h"
#include "provider/keyref.h"
#include "provider/lifecycle-purge.h"

static p11kms_err fill(p11kms *svc, key_entry *entry, bool force, key_access *acc,
                       p11kms_error *err)
{
    int64_t now = service_monotonic_ms();
    acc->entry = entry;
    /* A fresh record is taken under the same lock that judged it fresh (one lock on the hot
     * path); a stale one is read again first. */
    pthread_mutex_lock(&entry->lock);
    bool stale = force || entry->snap == NULL || entry->generation != service_generation(svc) ||
                 now - entry->fetched_ms >= (int64_t)svc->cfg->state_refresh_ms;
    if (!stale)
        acc->snap = snapshot_ref(entry->snap);
    pthread_mutex_unlock(&entry->lock);
    if (stale) {
        p11kms_err rc = keycache_load(svc, entry, err);
        if (rc != P11KMS_OK)
            return rc;
        pthread_mutex_lock(&entry->lock);
        acc->snap = snapshot_ref(entry->snap);
        pthread_mutex_unlock(&entry->lock);
    }
    if (acc->snap == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "key %s does not exist", entry->id_text);
    acc->meta = acc->snap->meta;
    /* Deletion happens lazily on access once the waiting period is over. */
    if (acc->meta->state == P11KMS_KEY_PENDING_DELETION &&
        acc->meta->deletion_date <= service_now()) {
        key_access_end(acc);
        p11kms_err rc = lifecycle_purge_if_due(svc, entry, err);
        if (rc != P11KMS_OK)
            return rc;
        return fill(svc, entry, false, acc, err);
    }
    /* Imported material is destroyed lazily on access once its ValidTo has passed. */
    if (import_material_due(acc->meta, service_now())) {
        key_access_end(acc);
        p11kms_err rc = import_expire_if_due(svc, entry, err);
        if (rc != P11KMS_OK)
            return rc;
        return fill(svc, entry, false, acc, err);
    }
    /* A freshly read PendingImport key may have an interrupted import's object left over. */
    if (stale && acc->meta->state == P11KMS_KEY_PENDING_IMPORT &&
        acc->meta->origin == P11KMS_ORIGIN_EXTERNAL) {
        bool destroyed = false;
        p11kms_err rc = import_sweep(svc, entry->id_text, &destroyed, err);
        if (rc != P11KMS_OK) {
            key_access_end(acc);
            return rc;
        }
    }
    return P11KMS_OK;
}

p11kms_err key_access_by_id(p11kms *svc, const uint8_t id[KEY_UUID_LEN], key_access *acc,
                            p11kms_error *err)
{
    char id_text[P11KMS_KEY_ID_LEN + 1];
    memset(acc, 0, sizeof(*acc));
    uuid_format(id, id_text);
    key_entry *entry = keycache_entry(svc, id_text);
    if (entry == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    return fill(svc, entry, false, acc, err);
}

p11kms_err key_access_begin(p11kms *svc, const char *key_ref, key_access *acc, p11kms_error *err)
{
    keyref_kind kind;
    char name[P11KMS_ALIAS_MAX];
    memset(acc, 0, sizeof(*acc));
    p11kms_err rc = keyref_parse(svc->cfg, key_ref, &kind, name, err);
    if (rc != P11KMS_OK)
        return rc;
    char id_text[P11KMS_KEY_ID_LEN + 1];
    if (kind == KEYREF_ALIAS) {
        rc = keycache_resolve_alias(svc, name, id_text, err);
        if (rc != P11KMS_OK)
            return rc;
    } else {
        memcpy(id_text, name, sizeof(id_text)); /* keyref_parse wrote a canonical key id */
        id_text[P11KMS_KEY_ID_LEN] = '\0';
    }
    key_entry *entry = keycache_entry(svc, id_text);
    if (entry == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    rc = fill(svc, entry, false, acc, err);
    if (rc == P11KMS_E_NOT_FOUND && kind == KEYREF_ALIAS)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                            "alias %s points to a key that no longer "
                            "exists (run p11kms maintain)",
                            name);
    return rc;
}

p11kms_err key_access_refresh(p11kms *svc, key_access *acc, p11kms_error *err)
{
    key_entry *entry = acc->entry;
    key_access_end(acc);
    return fill(svc, entry, true, acc, err);
}

p11kms_err key_access_renew(p11kms *svc, key_access *acc, p11kms_error *err)
{
    key_entry *entry = acc->entry;
    key_access_end(acc);
    return fill(svc, entry, false, acc, err);
}

void key_access_end(key_access *acc)
{
    snapshot_unref(acc->snap);
    acc->snap = NULL;
    acc->meta = NULL;
}
