#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/gate.h"
#include "provider/import-material.h"
#include "provider/import.h"
#include "provider/keycache.h"
#include "provider/keystore.h"
#include "provider/lifecycle-purge.h"
#include "provider/lifecycle-report.h"
#include "provider/lifecycle.h"

/* `p11kms maintain` performs only what key states and dates already decided (deletions whose
 * waiting period is over, due rotations) and cleans up what crashed processes left behind; it
 * makes no new decision, so it is not a policy action.
 *
 * Linear in the number of keys: one pass over the records, one over the aliases, one over the
 * version claims and one scan of the token's objects build in-memory maps; the checks then look
 * things up in those maps. Only changes take the lock, and each re-reads what it changes. */

typedef struct object_info {
    unsigned count; /* objects with this CKA_ID: more than one is reported */
    bool encrypt, decrypt, sensitive, extractable;
} object_info;

typedef struct claim_info {
    int64_t claimed;
    keystore_claim_state state;
} claim_info;

typedef struct record_info {
    key_meta *meta; /* NULL: the row failed verification or decoding */
} record_info;

typedef struct maintenance {
    p11kms *svc;
    void (*fn)(const char *line, void *arg);
    void *arg;
    hashmap *records; /* key id -> record_info */
    hashmap *objects; /* "keyid/vN" -> object_info */
    hashmap *claims;  /* "keyid/vN" -> claim_info */
    hashmap *aliases; /* "alias/NAME" -> key id text (malloc'ed) */
    char (*ids)[P11KMS_KEY_ID_LEN + 1];
    size_t id_count;
    bool oom;
} maintenance;

#define say(mt, ...) lifecycle_report((mt)->fn, (mt)->arg, __VA_ARGS__)

static void version_key(char *out, size_t size, const char *id_text, uint32_t version)
{
    snprintf(out, size, "%s/v%u", id_text, version);
}

static bool put(maintenance *mt, hashmap *map, const char *key, void *value)
{
    void *old = NULL;
    if (value == NULL || !hashmap_put(map, key, value, &old)) {
        free(value);
        mt->oom = true;
        return false;
    }
    free(old);
    return true;
}

/* --- the passes ------------------------------------------------------------------------------ */

static bool add_id(maintenance *mt, const char *id_text)
{
    void *grown = realloc(mt->ids, (mt->id_count + 1) * sizeof(*mt->ids));
    if (grown == NULL) {
        mt->oom = true;
        return false;
    }
    mt->ids = grown;
    snprintf(mt->ids[mt->id_count++], P11KMS_KEY_ID_LEN + 1, "%s", id_text);
    return true;
}

static int collect_record(const key_meta *m, void *arg)
{
    maintenance *mt = arg;
    record_info *r = calloc(1, sizeof(*r));
    if (r != NULL && (r->meta = keymeta_clone(m)) == NULL) {
        free(r);
        r = NULL;
    }
    if (!put(mt, mt->records, m->id_text, r) || !add_id(mt, m->id_text))
        return 1;
    return 0;
}

static void bad_record(const char *name, const p11kms_error *why, void *arg)
{
    maintenance *mt = arg;
    say(mt, "unreadable key record %s left in place: %s", name, why->message);
    put(mt, mt->records, name, calloc(1, sizeof(record_info)));
}

static int collect_object(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                          const p11_key_listing *k, void *arg)
{
    maintenance *mt = arg;
    char id_text[P11KMS_KEY_ID_LEN + 1], key[64];
    uuid_format(id, id_text);
    version_key(key, sizeof(key), id_text, version);
    object_info *o = hashmap_get(mt->objects, key);
    if (o != NULL) {
        o->count++;
        return 0;
    }
    o = calloc(1, sizeof(*o));
    if (o != NULL)
        *o = (object_info){1, k->encrypt, k->decrypt, k->sensitive, k->extractable};
    return put(mt, mt->objects, key, o) ? 0 : 1;
}

static int collect_claim(const char *id_text, uint32_t version, int64_t claimed,
                         keystore_claim_state state, void *arg)
{
    maintenance *mt = arg;
    char key[64];
    version_key(key, sizeof(key), id_text, version);
    claim_info *c = malloc(sizeof(*c));
    if (c != NULL)
        *c = (claim_info){claimed, state};
    return put(mt, mt->claims, key, c) ? 0 : 1;
}

static int collect_alias(const char *alias, const char *id_text, void *arg)
{
    maintenance *mt = arg;
    return put(mt, mt->aliases, alias, strdup(id_text)) ? 0 : 1;
}

static void bad_alias(const char *alias, const p11kms_error *why, void *arg)
{
    maintenance *mt = arg;
    say(mt, "unreadable alias row %s left in place: %s", alias, why->message);
}

/* --- per key --------------------------------------------------------------------------------- */

/* Every version the record lists must exist in the token, once, and allow encryption and
 * decryption: p11kms never changes key objects (states live in the record), so a mismatch was
 * made outside p11kms and is reported, not repaired. */
static void check_versions(maintenance *mt, const key_meta *m)
{
    for (size_t i = 0; i < m->version_count; i++) {
        char key[64];
        version_key(key, sizeof(key), m->id_text, m->versions[i].number);
        const object_info *o = hashmap_get(mt->objects, key);
        if (o == NULL) {
            say(mt,
                "key %s: version %u has no object in the token (data under it is unrecoverable)",
                m->id_text, m->versions[i].number);
            continue;
        }
        if (o->count > 1)
            say(mt,
                "key %s: version %u has %u objects in the token; the key cannot be used until an "
                "operator removes the extra ones (every other key keeps working)",
                m->id_text, m->versions[i].number, o->count);
        if (!o->encrypt || !o->decrypt || o->extractable || !o->sensitive)
            say(mt,
                "key %s: version %u has attributes p11kms did not set (encrypt %d, decrypt "
                "%d, extractable %d, sensitive %d); left as is",
                m->id_text, m->versions[i].number, o->encrypt, o->decrypt, o->extractable,
                o->sensitive);
    }
}

/* Deletions and rotations that are due; both re-read the record under the lock. */
static p11kms_err act_on_dates(maintenance *mt, const key_meta *seen, p11kms_error *err)
{
    int64_t now = service_now();
    bool due_deletion = seen->state == P11KMS_KEY_PENDING_DELETION && seen->deletion_date <= now;
    bool due_rotation =
        seen->state == P11KMS_KEY_ENABLED && seen->rotation_enabled && seen->next_rotation <= now;
    if (!due_deletion && !due_rotation)
        return P11KMS_OK;
    p11kms *svc = mt->svc;
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, seen->id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        rc = P11KMS_OK; /* deleted meanwhile */
    } else if (rc == P11KMS_OK) {
        if (m->state == P11KMS_KEY_PENDING_DELETION && m->deletion_date <= now) {
            rc = lifecycle_purge_locked(svc, m, err);
            if (rc == P11KMS_OK)
                say(mt, "key %s deleted: its waiting period ended", m->id_text);
        } else if (m->state == P11KMS_KEY_ENABLED && m->rotation_enabled &&
                   m->next_rotation <= now) {
            rc = lifecycle_rotate_locked(svc, m, ROTATION_AUTOMATIC, err);
            if (rc == P11KMS_OK)
                say(mt, "key %s rotated to version %u (automatic rotation was due)", m->id_text,
                    keymeta_current(m)->number);
        }
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

/* Sets whether the key's record lists alias (under the lock, from a fresh read). */
static p11kms_err set_alias_membership(p11kms *svc, const char *id_text, const char *alias,
                                       bool member, p11kms_error *err)
{
    key_meta *m = NULL;
    p11kms_err rc = keystore_meta_read(svc, id_text, &m, err);
    if (rc != P11KMS_OK)
        return rc == P11KMS_E_NOT_FOUND ? P11KMS_OK : rc;
    if (keymeta_has_alias(m, alias) != member) {
        if (!member)
            keymeta_remove_alias(m, alias);
        else if (!keymeta_add_alias(m, alias))
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        if (rc == P11KMS_OK)
            rc = keystore_meta_write(svc, m, err);
        key_entry *entry = keycache_entry(svc, id_text);
        if (entry != NULL)
            keycache_forget(svc, entry);
    }
    keymeta_free(m);
    return rc;
}

/* Where alias points now (under the lock): *found false when the alias row is gone. */
static p11kms_err alias_target_now(p11kms *svc, const char *alias,
                                   char target[P11KMS_KEY_ID_LEN + 1], bool *found,
                                   p11kms_error *err)
{
    p11kms_error probe = {0};
    p11kms_err rc = keystore_alias_read(svc, alias, target, &probe);
    *found = rc == P11KMS_OK;
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_OK;
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

/* Alias rows and the alias lists of records agree: the alias row is the truth. Changes are
 * transactions, so a disagreement means the database was edited by hand (with the token's key
 * used to authenticate the rows): repaired and reported. */
static p11kms_err check_record_aliases(maintenance *mt, const key_meta *m, p11kms_error *err)
{
    for (size_t i = 0; i < m->alias_count; i++) {
        const char *seen = hashmap_get(mt->aliases, m->aliases[i]);
        if (seen != NULL && strcmp(seen, m->id_text) == 0)
            continue;
        /* The listings were read without the lock: an alias made or moved since is not a
         * disagreement. Decided again from the alias row as it is now. */
        p11kms_err rc = keystore_lock(mt->svc, err);
        if (rc != P11KMS_OK)
            return rc;
        char target[P11KMS_KEY_ID_LEN + 1];
        bool found = false;
        rc = alias_target_now(mt->svc, m->aliases[i], target, &found, err);
        bool disagree = rc == P11KMS_OK && !(found && strcmp(target, m->id_text) == 0);
        if (disagree)
            rc = set_alias_membership(mt->svc, m->id_text, m->aliases[i], false, err);
        keystore_unlock(mt->svc);
        if (rc != P11KMS_OK)
            return rc;
        if (disagree)
            say(mt, "key %s listed %s, which %s%s; removed from its record", m->id_text,
                m->aliases[i], found ? "points to " : "does not exist", found ? target : "");
    }
    return P11KMS_OK;
}

typedef struct alias_check {
    maintenance *mt;
    p11kms_error *err;
    p11kms_err rc;
} alias_check;

static int check_alias(const char *alias, void *value, void *arg)
{
    alias_check *ac = arg;
    maintenance *mt = ac->mt;
    const char *target = value;
    const record_info *r = hashmap_get(mt->records, target);
    if (r != NULL && (r->meta == NULL || keymeta_has_alias(r->meta, alias)))
        return 0;
    /* The listings were read without the lock: the alias may have been moved, or its key made,
     * since. Decided again from the alias row and its key's record as they are now. */
    p11kms *svc = mt->svc;
    p11kms_err rc = keystore_lock(svc, ac->err);
    if (rc != P11KMS_OK) {
        ac->rc = rc;
        return 1;
    }
    char now[P11KMS_KEY_ID_LEN + 1];
    bool found = false;
    rc = alias_target_now(svc, alias, now, &found, ac->err);
    key_meta *m = NULL;
    p11kms_err mrc = P11KMS_E_NOT_FOUND;
    if (rc == P11KMS_OK && found) {
        p11kms_error probe = {0};
        mrc = keystore_meta_read(svc, now, &m, &probe);
        if (mrc != P11KMS_OK && mrc != P11KMS_E_NOT_FOUND) {
            rc = mrc;
            if (ac->err != NULL)
                *ac->err = probe;
        }
    }
    if (rc == P11KMS_OK && found && mrc == P11KMS_E_NOT_FOUND) {
        rc = keystore_alias_delete(svc, alias, ac->err);
        keycache_alias_forget(svc, alias);
        if (rc == P11KMS_OK)
            say(mt, "alias %s pointed to deleted key %s; alias removed", alias, now);
    } else if (rc == P11KMS_OK && found && !keymeta_has_alias(m, alias)) {
        rc = set_alias_membership(svc, now, alias, true, ac->err);
        if (rc == P11KMS_OK)
            say(mt, "reconciled %s with its key record (points to %s)", alias, now);
    }
    keymeta_free(m);
    keystore_unlock(svc);
    ac->rc = rc;
    return rc != P11KMS_OK;
}

/* --- objects no record names ----------------------------------------------------------------- */

typedef struct orphan_check {
    maintenance *mt;
    p11kms_error *err;
    p11kms_err rc;
} orphan_check;

static bool split_version_key(const char *key, char id_text[P11KMS_KEY_ID_LEN + 1], uint32_t *v)
{
    const char *slash = strrchr(key, '/');
    if (slash == NULL || (size_t)(slash - key) != P11KMS_KEY_ID_LEN || slash[1] != 'v')
        return false;
    memcpy(id_text, key, P11KMS_KEY_ID_LEN);
    id_text[P11KMS_KEY_ID_LEN] = '\0';
    *v = (uint32_t)strtoul(slash + 2, NULL, 10);
    return true;
}

/* Under the lock, from a fresh read: is the version still unnamed? Then destroy it. */
static p11kms_err destroy_orphan(maintenance *mt, const char *id_text, uint32_t version,
                                 bool *destroyed, p11kms_error *err)
{
    p11kms *svc = mt->svc;
    *destroyed = false;
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    p11kms_error probe = {0};
    p11kms_err mrc = keystore_meta_read(svc, id_text, &m, &probe);
    bool named = mrc == P11KMS_OK && keymeta_version(m, version) != NULL;
    keymeta_free(m);
    if (mrc != P11KMS_OK && mrc != P11KMS_E_NOT_FOUND) {
        rc = mrc;
        if (err != NULL)
            *err = probe;
    } else if (!named) {
        uint8_t id[KEY_UUID_LEN];
        p11_key *key = NULL;
        if (uuid_parse(id_text, id)) {
            rc = keystore_version_find(svc, id, version, &key, err);
            if (rc == P11KMS_OK)
                rc = p11_key_destroy(svc->token, key, err);
            if (rc == P11KMS_OK || rc == P11KMS_E_NOT_FOUND)
                rc = keystore_version_release(svc, id_text, version, err);
            key_entry *entry = keycache_entry(svc, id_text);
            if (entry != NULL)
                keycache_drop_version_key(svc, entry, version);
            *destroyed = rc == P11KMS_OK;
        }
    }
    keystore_unlock(svc);
    return rc;
}

static int check_orphan(const char *key, void *value, void *arg)
{
    orphan_check *oc = arg;
    maintenance *mt = oc->mt;
    (void)value;
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uint32_t version = 0;
    if (!split_version_key(key, id_text, &version))
        return 0;
    const record_info *r = hashmap_get(mt->records, id_text);
    if (r != NULL && r->meta == NULL) {
        say(mt, "key object p11kms/%s/v%u belongs to an unreadable record; left in place", id_text,
            version);
        return 0;
    }
    if (r != NULL && keymeta_version(r->meta, version) != NULL)
        return 0;
    if (r != NULL && r->meta->origin == P11KMS_ORIGIN_EXTERNAL) {
        /* Imported material its record does not name: an interrupted import or deletion of
         * material (no claim is made for those). Nothing can have used it. */
        bool destroyed = false;
        oc->rc = import_sweep(mt->svc, id_text, &destroyed, oc->err);
        if (oc->rc != P11KMS_OK)
            return 1;
        if (destroyed)
            say(mt,
                "key %s: destroyed key material its record does not name (interrupted import or "
                "deletion of imported material)",
                id_text);
        return 0;
    }
    const claim_info *claim = hashmap_get(mt->claims, key);
    if (claim == NULL) {
        say(mt,
            "key object p11kms/%s/v%u has no key record and no version claim; left in place (not "
            "made by an interrupted p11kms create or rotation: inspect before destroying)",
            id_text, version);
        return 0;
    }
    /* Only a claim sealed by this token's integrity key hands an object to maintain: a record
     * deleted, or put back to an older authentic state, by someone without the token must not
     * get the material of its key destroyed (putting the row back from a backup restores it). */
    if (claim->state == CLAIM_NAMED) {
        say(mt,
            "key object p11kms/%s/v%u: a key record named this version, and none does now (the "
            "record deleted or put back to an older state outside p11kms?); left in place: "
            "restore the record",
            id_text, version);
        return 0;
    }
    if (claim->state == CLAIM_BAD_SEAL) {
        say(mt,
            "key object p11kms/%s/v%u: its version claim fails its integrity check (changed "
            "outside p11kms?); left in place",
            id_text, version);
        return 0;
    }
    int64_t age = service_now() - claim->claimed;
    if (age < (int64_t)mt->svc->cfg->orphan_grace_s) {
        say(mt,
            "key object p11kms/%s/v%u is not in its key's record yet; left in place (claimed %lld "
            "s ago, within the grace period of %u s: a create or rotation may be in progress)",
            id_text, version, (long long)age, mt->svc->cfg->orphan_grace_s);
        return 0;
    }
    bool destroyed = false;
    oc->rc = destroy_orphan(mt, id_text, version, &destroyed, oc->err);
    if (oc->rc != P11KMS_OK)
        return 1;
    if (destroyed)
        say(mt,
            "destroyed key object p11kms/%s/v%u: no record named it (an interrupted create or "
            "rotation, or a purge that could not destroy it, %lld s ago)",
            id_text, version, (long long)age);
    return 0;
}

/* Claims whose object never came into being (generation failed, process killed first). */
static int check_claim(const char *key, void *value, void *arg)
{
    orphan_check *oc = arg;
    maintenance *mt = oc->mt;
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uint32_t version = 0;
    if (hashmap_get(mt->objects, key) != NULL || !split_version_key(key, id_text, &version))
        return 0;
    const record_info *r = hashmap_get(mt->records, id_text);
    if (r != NULL && (r->meta == NULL || keymeta_version(r->meta, version) != NULL))
        return 0; /* a listed version without object is reported by check_versions */
    const claim_info *claim = value;
    if (claim->state != CLAIM_PENDING ||
        service_now() - claim->claimed < (int64_t)mt->svc->cfg->orphan_grace_s)
        return 0;
    p11kms_err rc = keystore_lock(mt->svc, oc->err);
    if (rc == P11KMS_OK) {
        rc = keystore_version_release(mt->svc, id_text, version, oc->err);
        keystore_unlock(mt->svc);
    }
    oc->rc = rc;
    return rc != P11KMS_OK;
}

/* --- the whole run --------------------------------------------------------------------------- */

static void free_record(void *value)
{
    record_info *r = value;
    if (r != NULL)
        keymeta_free(r->meta);
    free(r);
}

p11kms_err kms_op_maintain(p11kms *svc, const p11kms_principal *who,
                           void (*fn)(const char *line, void *arg), void *arg, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    /* maintain destroys key material (due deletions, leftovers): administration. */
    p11kms_err rc0 = gate_check_global(svc, who, POLICY_ACTION_MAINTAIN, err);
    if (rc0 != P11KMS_OK)
        return rc0;
    maintenance mt = {svc,           fn,   arg, hashmap_new(), hashmap_new(), hashmap_new(),
                      hashmap_new(), NULL, 0,   false};
    p11kms_err rc = P11KMS_OK;
    if (mt.records == NULL || mt.objects == NULL || mt.claims == NULL || mt.aliases == NULL)
        mt.oom = true;
    /* Token objects first: an object generated after this scan is not judged from a stale
     * picture of the records. */
    if (!mt.oom)
        rc = keystore_version_scan(svc, collect_object, &mt, err);
    if (rc == P11KMS_OK && !mt.oom)
        rc = keystore_claims_list(svc, collect_claim, &mt, err);
    if (rc == P11KMS_OK && !mt.oom)
        rc = keystore_meta_list(svc, collect_record, bad_record, &mt, err);
    if (rc == P11KMS_OK && !mt.oom)
        rc = keystore_alias_scan(svc, collect_alias, bad_alias, &mt, err);
    if (rc == P11KMS_OK && mt.oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");

    for (size_t i = 0; rc == P11KMS_OK && i < mt.id_count; i++) {
        const record_info *r = hashmap_get(mt.records, mt.ids[i]);
        if (r == NULL || r->meta == NULL)
            continue;
        check_versions(&mt, r->meta);
        rc = check_record_aliases(&mt, r->meta, err);
        if (rc == P11KMS_OK)
            rc = act_on_dates(&mt, r->meta, err);
    }
    if (rc == P11KMS_OK)
        rc = import_maintain(svc, mt.fn, mt.arg, err);
    if (rc == P11KMS_OK) {
        alias_check ac = {&mt, err, P11KMS_OK};
        hashmap_each(mt.aliases, check_alias, &ac);
        rc = ac.rc;
    }
    if (rc == P11KMS_OK) {
        orphan_check oc = {&mt, err, P11KMS_OK};
        hashmap_each(mt.objects, check_orphan, &oc);
        rc = oc.rc;
        if (rc == P11KMS_OK)
            hashmap_each(mt.claims, check_claim, &oc);
        rc = oc.rc;
    }
    free(mt.ids);
    hashmap_free(mt.records, free_record);
    hashmap_free(mt.objects, free);
    hashmap_free(mt.claims, free);
    hashmap_free(mt.aliases, free);
    return rc;
}
