#include "config.h"

#include "provider/keycache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/keystore.h"

meta_snapshot *snapshot_new(key_meta *meta)
{
    meta_snapshot *s = aligned_alloc(KEY_STATE_ALIGN, sizeof(*s));
    if (s == NULL) {
        keymeta_free(meta);
        return NULL;
    }
    /* The record moves into the snapshot: its fields (and the memory they own) now belong to it. */
    s->record = *meta;
    free(meta);
    s->meta = &s->record;
    const key_version *cur = keymeta_current(&s->record);
    s->current_version = cur != NULL ? cur->number : 0;
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
        keymeta_clear(&s->record);
        free(s);
    }
}

/* Entries start on a cache line, as their layout assumes (service.h). */
static key_entry *entry_new(void)
{
    key_entry *e = aligned_alloc(KEY_STATE_ALIGN, sizeof(*e));
    if (e != NULL)
        memset(e, 0, sizeof(*e));
    return e;
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
    if (e == NULL && (e = entry_new()) != NULL) {
        snprintf(e->id_text, sizeof(e->id_text), "%s", id_text);
        uuid_parse(id_text, e->id);
        /* NULL tells the caller "out of memory"; a lock that cannot be made is that too. The map
         * borrows the entry's own id_text as its key (service.c). */
        if (pthread_mutex_init(&e->lock, NULL) != 0) {
            free(e);
            e = NULL;
        } else if (!hashmap_put(svc->keys, e->id_text, e, NULL)) {
            pthread_mutex_destroy(&e->lock);
            free(e);
            e = NULL;
        }
    }
    pthread_rwlock_unlock(&svc->cache_lock);
    return e;
}

/* --- session copies ----------------------------------------------------------------------- */

static void copy_unref(p11kms *svc, key_copy *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1) {
        p11kms_error ignored = {0};
        (void)p11_key_destroy(svc->token, c->key, &ignored);
        free(c);
    }
}

/* copies_lock and c->entry->lock held: takes c out of its entry and out of the service's list;
 * the caller then drops the reference the lists held. */
static void copy_detach_locked(p11kms *svc, key_copy *c)
{
    c->entry->copies[c->version - 1] = NULL;
    if (c->entry->recent_copy == c)
        c->entry->recent_copy = NULL;
    size_t last = --svc->copies_count;
    if (c->index != last) {
        svc->copies[c->index] = svc->copies[last];
        svc->copies[c->index]->index = c->index;
    }
    svc->copies[last] = NULL;
}

/* Destroys the entry's copies of version `only` (0: of every version except `keep`). */
static void drop_copies(p11kms *svc, key_entry *entry, uint32_t only, uint32_t keep)
{
    for (;;) {
        key_copy *victim = NULL;
        pthread_mutex_lock(&svc->copies_lock);
        pthread_mutex_lock(&entry->lock);
        for (uint32_t i = 0; i < entry->copies_len && victim == NULL; i++) {
            key_copy *c = entry->copies[i];
            if (c != NULL && (only != 0 ? c->version == only : c->version != keep))
                victim = c;
        }
        if (victim != NULL)
            copy_detach_locked(svc, victim);
        pthread_mutex_unlock(&entry->lock);
        pthread_mutex_unlock(&svc->copies_lock);
        if (victim == NULL)
            return;
        copy_unref(svc, victim);
    }
}

static uint32_t current_version(const meta_snapshot *s)
{
    return s != NULL ? s->current_version : 0;
}

/* Installs m as read at generation gen. Copies go with what made them usable: all of them when
 * the key is gone or leaves Enabled (disabled, pending deletion, material removed), those of
 * the older versions when it was rotated. This is the path every state change of any process
 * reaches (the state generation), so copies never outlive the bound of the cached state. */
static void install_at(p11kms *svc, key_entry *entry, key_meta *m, uint64_t gen)
{
    meta_snapshot *fresh = m ? snapshot_new(m) : NULL;
    /* Read before it is published: once in the entry, its only reference is the entry's, and
     * another thread's install may replace and free it as soon as the lock is released. */
    uint32_t now = current_version(fresh);
    bool usable = fresh != NULL && fresh->meta->state == P11KMS_KEY_ENABLED;
    pthread_mutex_lock(&entry->lock);
    meta_snapshot *old = entry->snap;
    entry->snap = fresh;
    entry->fetched_ms = service_monotonic_ms();
    entry->generation = gen;
    bool has_copies = false;
    for (uint32_t i = 0; i < entry->copies_len && !has_copies; i++)
        has_copies = entry->copies[i] != NULL;
    pthread_mutex_unlock(&entry->lock);
    if (has_copies) {
        if (!usable)
            drop_copies(svc, entry, 0, 0);
        else if (current_version(old) != now) /* old: this call holds its reference */
            drop_copies(svc, entry, 0, now);
    }
    snapshot_unref(old);
}

void keycache_note_refusal(p11kms *svc, key_entry *entry, const p11kms_error *why)
{
    bool token_wide = why->ckr == CKR_FUNCTION_NOT_SUPPORTED ||
                      (why->ckr == 0 && strstr(why->message, "does not provide") != NULL);
    pthread_mutex_lock(&svc->copies_lock);
    if (svc->copy_refusal[0] == '\0')
        snprintf(svc->copy_refusal, sizeof(svc->copy_refusal), "key %s: %.200s", entry->id_text,
                 why->message);
    pthread_mutex_unlock(&svc->copies_lock);
    if (token_wide) {
        atomic_store(&svc->copies_off, true);
        return;
    }
    pthread_mutex_lock(&entry->lock);
    bool first = !entry->copy_refused;
    entry->copy_refused = true;
    pthread_mutex_unlock(&entry->lock);
    if (first)
        atomic_fetch_add(&svc->copy_refusals, 1);
}

/* The least recently used copy, detached (copies_lock held, no entry lock). */
static key_copy *evict_locked(p11kms *svc)
{
    key_copy *victim = NULL;
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < svc->copies_count; i++) {
        uint64_t t = atomic_load_explicit(&svc->copies[i]->last_used, memory_order_relaxed);
        if (t < oldest) {
            oldest = t;
            victim = svc->copies[i];
        }
    }
    if (victim != NULL) {
        pthread_mutex_lock(&victim->entry->lock);
        copy_detach_locked(svc, victim);
        pthread_mutex_unlock(&victim->entry->lock);
    }
    return victim;
}

/* Copies the token object and lists the copy, evicting the least recently used one at the
 * bound. On any failure use->key stays the token object. */
static void make_copy(p11kms *svc, key_entry *entry, uint32_t version, keycache_use *use)
{
    p11kms_error why = {0};
    p11_key *copy = NULL;
    if (p11_key_copy_session(svc->token, use->key, &copy, &why) != P11KMS_OK) {
        keycache_note_refusal(svc, entry, &why);
        return;
    }
    key_copy *c = calloc(1, sizeof(*c));
    pthread_mutex_lock(&svc->copies_lock);
    if (c != NULL && svc->copies == NULL)
        svc->copies = calloc(svc->cfg->session_keys, sizeof(*svc->copies));
    if (c == NULL || svc->copies == NULL) {
        pthread_mutex_unlock(&svc->copies_lock);
        free(c);
        (void)p11_key_destroy(svc->token, copy, &why);
        return;
    }
    c->key = copy;
    c->entry = entry;
    c->version = version;
    atomic_init(&c->refs, 2); /* the lists' and this operation's */
    atomic_init(&c->last_used, atomic_fetch_add(&svc->copy_clock, 1));
    key_copy *evicted = svc->copies_count >= svc->cfg->session_keys ? evict_locked(svc) : NULL;
    key_copy *have = NULL;
    pthread_mutex_lock(&entry->lock);
    if (version <= entry->copies_len && entry->copies[version - 1] != NULL) {
        have = entry->copies[version - 1]; /* another thread was first */
        atomic_fetch_add(&have->refs, 1);
    } else if (version > entry->copies_len) {
        key_copy **grown = realloc(entry->copies, version * sizeof(*grown));
        if (grown != NULL) {
            memset(grown + entry->copies_len, 0, (version - entry->copies_len) * sizeof(*grown));
            entry->copies = grown;
            entry->copies_len = version;
        }
    }
    bool listed = have == NULL && version <= entry->copies_len;
    if (listed) {
        entry->copies[version - 1] = c;
        entry->recent_copy = c;
        c->index = svc->copies_count;
        svc->copies[svc->copies_count++] = c;
    }
    pthread_mutex_unlock(&entry->lock);
    pthread_mutex_unlock(&svc->copies_lock);
    copy_unref(svc, evicted);
    if (!listed) {
        (void)p11_key_destroy(svc->token, copy, &why);
        free(c);
        if (have != NULL) {
            use->key = have->key;
            use->copy = have;
        }
        return;
    }
    use->key = copy;
    use->copy = c;
}

p11kms_err keycache_use_version(p11kms *svc, key_entry *entry, uint32_t version, keycache_use *use,
                                p11kms_error *err)
{
    use->copy = NULL;
    use->key = NULL;
    pthread_mutex_lock(&entry->lock);
    key_copy *c = entry->recent_copy;
    if (c == NULL || c->version != version)
        c = version >= 1 && version <= entry->copies_len ? entry->copies[version - 1] : NULL;
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&entry->lock);
        atomic_store_explicit(&c->last_used,
                              atomic_fetch_add_explicit(&svc->copy_clock, 1, memory_order_relaxed),
                              memory_order_relaxed);
        use->key = c->key;
        use->copy = c;
        return P11KMS_OK;
    }
    bool refused = entry->copy_refused;
    pthread_mutex_unlock(&entry->lock);
    p11kms_err rc = keycache_version_key(svc, entry, version, &use->key, err);
    if (rc != P11KMS_OK)
        return rc;
    if (!refused && !atomic_load_explicit(&svc->copies_off, memory_order_relaxed))
        make_copy(svc, entry, version, use);
    return P11KMS_OK;
}

void keycache_release(p11kms *svc, keycache_use *use)
{
    copy_unref(svc, use->copy);
    use->copy = NULL;
    use->key = NULL;
}

void keycache_copy_status(p11kms *svc, keycache_copy_report *out)
{
    memset(out, 0, sizeof(*out));
    out->off = atomic_load(&svc->copies_off);
    out->refusals = atomic_load(&svc->copy_refusals);
    pthread_mutex_lock(&svc->copies_lock);
    out->live = svc->copies_count;
    snprintf(out->reason, sizeof(out->reason), "%s", svc->copy_refusal);
    pthread_mutex_unlock(&svc->copies_lock);
}

void keycache_install(p11kms *svc, key_entry *entry, key_meta *m)
{
    /* Called under the lock, so no other change is between the record and this generation; the
     * unlock's bump then costs one more read. Never a generation ahead of the counter: another
     * process's change would move the counter onto it and make this record look fresh after
     * that change (a key disabled elsewhere used here until state-refresh-ms). */
    install_at(svc, entry, m, service_generation(svc));
}

void keycache_install_read(p11kms *svc, key_entry *entry, key_meta *m, uint64_t gen_before_read)
{
    install_at(svc, entry, m, gen_before_read);
}

void keycache_install_copy(p11kms *svc, key_entry *entry, const key_meta *m)
{
    if (entry == NULL)
        return;
    key_meta *copy = keymeta_clone(m);
    if (copy == NULL)
        keycache_forget(svc, entry);
    else
        keycache_install(svc, entry, copy);
}

p11kms_err keycache_commit(p11kms *svc, key_entry *entry, key_meta *m, p11kms_error *err)
{
    p11kms_err rc = keystore_meta_write(svc, m, err);
    if (rc == P11KMS_OK)
        keycache_install_copy(svc, entry, m);
    return rc;
}

void keycache_forget(p11kms *svc, key_entry *entry)
{
    keycache_install(svc, entry, NULL); /* destroys the copies */
    pthread_mutex_lock(&entry->lock);
    entry->batch_left = 0;
    /* The objects are destroyed: their handles must never be used again. */
    if (entry->version_keys != NULL)
        memset(entry->version_keys, 0, entry->version_keys_len * sizeof(*entry->version_keys));
    pthread_mutex_unlock(&entry->lock);
}

p11kms_err keycache_load(p11kms *svc, key_entry *entry, p11kms_error *err)
{
    key_meta *m = NULL;
    uint64_t gen = service_generation(svc); /* before the read: a later change re-triggers it */
    p11kms_err rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        install_at(svc, entry, NULL, gen);
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "key %s does not exist", entry->id_text);
    }
    if (rc != P11KMS_OK)
        return rc;
    install_at(svc, entry, m, gen);
    return P11KMS_OK;
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
    if (version >= 1)
        drop_copies(svc, entry, version, 0);
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
    free(e->copies);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void keycache_free_all(p11kms *svc)
{
    /* No operation is running: the session objects go when the token closes its sessions, and
     * the token frees their p11_key. */
    for (size_t i = 0; i < svc->copies_count; i++)
        free(svc->copies[i]);
    free(svc->copies);
    svc->copies = NULL;
    svc->copies_count = 0;
    hashmap_free(svc->keys, free_entry);
    hashmap_free(svc->aliases, free);
    svc->keys = NULL;
    svc->aliases = NULL;
}
