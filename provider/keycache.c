#include "config.h"

#include "provider/keycache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/import.h"
#include "provider/keyref.h"
#include "provider/keystore.h"
#include "provider/lifecycle.h"

meta_snapshot *snapshot_new(key_meta *meta)
{
    meta_snapshot *s = malloc(sizeof(*s));
    if (s == NULL) {
        keymeta_free(meta);
        return NULL;
    }
    s->meta = meta;
    atomic_init(&s->refs, 1);
    return s;
}

meta_snapshot *snapshot_ref(meta_snapshot *s)
{
    if (s != NULL)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void snapshot_unref(meta_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        keymeta_free(s->meta);
        free(s);
    }
}

key_entry *keycache_entry(p11kms *svc, const char *id_text)
{
    pthread_rwlock_rdlock(&svc->cache_lock);
    key_entry *e = hashmap_get(svc->keys, id_text);
    pthread_rwlock_unlock(&svc->cache_lock);
    if (e != NULL)
        return e;

    pthread_rwlock_wrlock(&svc->cache_lock);
    e = hashmap_get(svc->keys, id_text);
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        snprintf(e->id_text, sizeof(e->id_text), "%s", id_text);
        uuid_parse(id_text, e->id);
        pthread_mutex_init(&e->lock, NULL);
        if (!hashmap_put(svc->keys, id_text, e, NULL)) {
            pthread_mutex_destroy(&e->lock);
            free(e);
            e = NULL;
        }
    }
    pthread_rwlock_unlock(&svc->cache_lock);
    return e;
}

/* Installs m as read at generation gen. */
static void install_at(key_entry *entry, key_meta *m, uint64_t gen)
{
    meta_snapshot *fresh = m ? snapshot_new(m) : NULL;
    pthread_mutex_lock(&entry->lock);
    meta_snapshot *old = entry->snap;
    entry->snap = fresh;
    entry->fetched_ms = service_monotonic_ms();
    entry->generation = gen;
    pthread_mutex_unlock(&entry->lock);
    snapshot_unref(old);
}

void keycache_install(p11kms *svc, key_entry *entry, key_meta *m)
{
    /* Mostly called under the lock after a write, whose unlock bumps the generation. A
     * generation that turns out too new only costs one more read later; never a stale use. */
    install_at(entry, m, service_generation(svc) + 1);
}

void keycache_install_unannounced(p11kms *svc, key_entry *entry, key_meta *m)
{
    install_at(entry, m, service_generation(svc));
}

void keycache_forget(p11kms *svc, key_entry *entry)
{
    keycache_install(svc, entry, NULL);
    pthread_mutex_lock(&entry->lock);
    entry->batch_left = 0;
    /* The objects are destroyed: their handles must never be used again. */
    if (entry->version_keys != NULL)
        memset(entry->version_keys, 0, entry->version_keys_len * sizeof(*entry->version_keys));
    pthread_mutex_unlock(&entry->lock);
}

/* Reads the record from the token and installs it; NOT_FOUND when the key does not exist. */
static p11kms_err load(p11kms *svc, key_entry *entry, p11kms_error *err)
{
    key_meta *m = NULL;
    uint64_t gen = service_generation(svc); /* before the read: a later change re-triggers it */
    p11kms_err rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        install_at(entry, NULL, gen);
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "key %s does not exist", entry->id_text);
    }
    if (rc != P11KMS_OK)
        return rc;
    install_at(entry, m, gen);
    return P11KMS_OK;
}

static p11kms_err fill(p11kms *svc, key_entry *entry, bool force, key_access *acc,
                       p11kms_error *err)
{
    int64_t now = service_monotonic_ms();
    pthread_mutex_lock(&entry->lock);
    bool stale = force || entry->snap == NULL || entry->generation != service_generation(svc) ||
                 now - entry->fetched_ms >= (int64_t)svc->cfg->state_refresh_ms;
    pthread_mutex_unlock(&entry->lock);
    if (stale) {
        p11kms_err rc = load(svc, entry, err);
        if (rc != P11KMS_OK)
            return rc;
    }
    pthread_mutex_lock(&entry->lock);
    acc->entry = entry;
    acc->snap = snapshot_ref(entry->snap);
    pthread_mutex_unlock(&entry->lock);
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

void key_access_end(key_access *acc)
{
    snapshot_unref(acc->snap);
    acc->snap = NULL;
    acc->meta = NULL;
}

p11kms_err keycache_version_key(p11kms *svc, key_entry *entry, uint32_t version, p11_key **out,
                                p11kms_error *err)
{
    pthread_mutex_lock(&entry->lock);
    if (version >= 1 && version <= entry->version_keys_len &&
        entry->version_keys[version - 1] != NULL) {
        *out = entry->version_keys[version - 1];
        pthread_mutex_unlock(&entry->lock);
        return P11KMS_OK;
    }
    pthread_mutex_unlock(&entry->lock);

    p11_key *key = NULL;
    p11kms_err rc = keystore_version_find(svc, entry->id, version, &key, err);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_RAISE(err, P11KMS_E_KEY_UNAVAILABLE,
                            "key %s: the token holds no object for version %u", entry->id_text,
                            version);
    if (rc != P11KMS_OK)
        return rc;
    pthread_mutex_lock(&entry->lock);
    if (version > entry->version_keys_len) {
        p11_key **grown = realloc(entry->version_keys, version * sizeof(*grown));
        if (grown == NULL) {
            pthread_mutex_unlock(&entry->lock);
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        }
        memset(grown + entry->version_keys_len, 0,
               (version - entry->version_keys_len) * sizeof(*grown));
        entry->version_keys = grown;
        entry->version_keys_len = version;
    }
    entry->version_keys[version - 1] = key;
    pthread_mutex_unlock(&entry->lock);
    *out = key;
    return P11KMS_OK;
}

void keycache_drop_version_key(p11kms *svc, key_entry *entry, uint32_t version)
{
    (void)svc;
    pthread_mutex_lock(&entry->lock);
    if (version >= 1 && version <= entry->version_keys_len)
        entry->version_keys[version - 1] = NULL;
    pthread_mutex_unlock(&entry->lock);
}

p11kms_err keycache_resolve_alias(p11kms *svc, const char *alias,
                                  char id_text[P11KMS_KEY_ID_LEN + 1], p11kms_error *err)
{
    int64_t now = service_monotonic_ms();
    pthread_rwlock_rdlock(&svc->cache_lock);
    alias_entry *a = hashmap_get(svc->aliases, alias);
    uint64_t gen = service_generation(svc);
    bool fresh = a != NULL && a->generation == gen &&
                 now - a->fetched_ms < (int64_t)svc->cfg->state_refresh_ms;
    if (fresh)
        memcpy(id_text, a->id_text, P11KMS_KEY_ID_LEN + 1);
    pthread_rwlock_unlock(&svc->cache_lock);
    if (!fresh) {
        p11kms_error probe = {0};
        p11kms_err rc = keystore_alias_read(svc, alias, id_text, &probe);
        if (rc == P11KMS_E_NOT_FOUND)
            id_text[0] = '\0';
        else if (rc != P11KMS_OK) {
            if (err != NULL)
                *err = probe;
            return rc;
        }
        alias_entry *fresh_entry = malloc(sizeof(*fresh_entry));
        if (fresh_entry != NULL) {
            memcpy(fresh_entry->id_text, id_text, P11KMS_KEY_ID_LEN + 1);
            fresh_entry->fetched_ms = now;
            fresh_entry->generation = gen;
            void *old = NULL;
            pthread_rwlock_wrlock(&svc->cache_lock);
            if (!hashmap_put(svc->aliases, alias, fresh_entry, &old))
                old = fresh_entry;
            pthread_rwlock_unlock(&svc->cache_lock);
            free(old);
        }
    }
    if (id_text[0] == '\0')
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "alias %s does not exist", alias);
    return P11KMS_OK;
}

void keycache_alias_forget(p11kms *svc, const char *alias)
{
    pthread_rwlock_wrlock(&svc->cache_lock);
    free(hashmap_remove(svc->aliases, alias));
    pthread_rwlock_unlock(&svc->cache_lock);
}

static void free_entry(void *value)
{
    key_entry *e = value;
    snapshot_unref(e->snap);
    free(e->version_keys);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void keycache_free_all(p11kms *svc)
{
    hashmap_free(svc->keys, free_entry);
    hashmap_free(svc->aliases, free);
    svc->keys = NULL;
    svc->aliases = NULL;
}
