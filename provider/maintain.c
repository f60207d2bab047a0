#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/import.h"
#include "provider/keycache.h"
#include "provider/keystore.h"
#include "provider/lifecycle.h"

/* `p11kms maintain` performs only what key states and dates already decided (deletions whose
 * waiting period is over, due rotations) and repairs what crashed processes left behind; it
 * makes no new decision, so it is not a policy action. */

typedef struct maintenance {
    p11kms *svc;
    void (*fn)(const char *line, void *arg);
    void *arg;
    char (*ids)[P11KMS_KEY_ID_LEN + 1];
    size_t count;
    bool oom;
} maintenance;

#define say(mt, ...) lifecycle_report((mt)->fn, (mt)->arg, __VA_ARGS__)

/* Passes on the lines of lifecycle functions that report what they repaired. */
static void say_line(const char *line, void *arg)
{
    maintenance *mt = arg;
    if (mt->fn != NULL)
        mt->fn(line, mt->arg);
}

static int collect_key(const key_meta *m, void *arg)
{
    maintenance *mt = arg;
    void *grown = realloc(mt->ids, (mt->count + 1) * sizeof(*mt->ids));
    if (grown == NULL) {
        mt->oom = true;
        return 1;
    }
    mt->ids = grown;
    memcpy(mt->ids[mt->count++], m->id_text, P11KMS_KEY_ID_LEN + 1);
    return 0;
}

static void report_bad_record(const char *label, const p11kms_error *why, void *arg)
{
    maintenance *mt = arg;
    say(mt, "unreadable key record %s left in place: %s", label, why->message);
}

/* Every version the record lists must exist in the token and allow encryption and decryption:
 * p11kms never changes key objects (states live in the record), so a mismatch was made outside
 * p11kms and is reported, not repaired. */
static p11kms_err check_versions(maintenance *mt, key_entry *entry, const key_meta *m,
                                 p11kms_error *err)
{
    for (size_t i = 0; i < m->version_count; i++) {
        p11_key *key = NULL;
        p11_key_attributes attrs;
        p11kms_err rc = keycache_version_key(mt->svc, entry, m->versions[i].number, &key, err);
        if (rc == P11KMS_E_KEY_UNAVAILABLE) {
            say(mt,
                "key %s: version %u has no object in the token (data under it is "
                "unrecoverable)",
                m->id_text, m->versions[i].number);
            continue;
        }
        if (rc == P11KMS_OK)
            rc = p11_key_get_attributes(mt->svc->token, key, &attrs, err);
        if (rc != P11KMS_OK)
            return rc;
        if (!attrs.encrypt || !attrs.decrypt || attrs.extractable || !attrs.sensitive)
            say(mt,
                "key %s: version %u has attributes p11kms did not set (encrypt %d, decrypt "
                "%d, extractable %d, sensitive %d); left as is",
                m->id_text, m->versions[i].number, attrs.encrypt, attrs.decrypt, attrs.extractable,
                attrs.sensitive);
    }
    return P11KMS_OK;
}

static p11kms_err maintain_key(maintenance *mt, const char *id_text, p11kms_error *err)
{
    p11kms *svc = mt->svc;
    key_entry *entry = keycache_entry(svc, id_text);
    if (entry == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        rc = P11KMS_OK; /* deleted meanwhile */
    } else if (rc == P11KMS_OK) {
        int64_t now = service_now();
        if (m->state == P11KMS_KEY_PENDING_DELETION && m->deletion_date <= now) {
            rc = lifecycle_purge_locked(svc, m, err);
            if (rc == P11KMS_OK)
                say(mt, "key %s deleted: its waiting period ended", id_text);
        } else {
            rc = check_versions(mt, entry, m, err);
            if (rc == P11KMS_OK && m->state == P11KMS_KEY_ENABLED && m->rotation_enabled &&
                m->next_rotation <= now) {
                rc = lifecycle_rotate_locked(svc, m, ROTATION_AUTOMATIC, err);
                if (rc == P11KMS_OK)
                    say(mt, "key %s rotated to version %u (automatic rotation was due)", id_text,
                        keymeta_current(m)->number);
            }
            for (size_t i = 0; rc == P11KMS_OK && i < m->alias_count; i++) {
                char target[P11KMS_KEY_ID_LEN + 1];
                p11kms_error probe = {0};
                p11kms_err arc = keystore_alias_read(svc, m->aliases[i], target, &probe);
                if (arc == P11KMS_E_NOT_FOUND || (arc == P11KMS_OK && strcmp(target, id_text)))
                    rc = lifecycle_reconcile_alias(svc, m->aliases[i], say_line, mt, err);
            }
        }
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

typedef struct orphan_scan {
    maintenance *mt;
    p11kms_err rc;
    p11kms_error *err;
} orphan_scan;

static int check_orphan_version(const uint8_t id[KEY_UUID_LEN], uint32_t version, void *arg)
{
    orphan_scan *s = arg;
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uuid_format(id, id_text);
    key_meta *m = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_meta_read(s->mt->svc, id_text, &m, &probe);
    if (rc == P11KMS_E_NOT_FOUND)
        say(s->mt,
            "key object p11kms/%s/v%u has no key record; left in place (the journal "
            "names no interrupted operation for it: inspect before destroying)",
            id_text, version);
    else if (rc == P11KMS_OK && keymeta_version(m, version) == NULL)
        say(s->mt,
            "key object p11kms/%s/v%u is not a version of its key's record; left in "
            "place",
            id_text, version);
    keymeta_free(m);
    return 0;
}

typedef struct alias_scan {
    maintenance *mt;
    char (*names)[P11KMS_ALIAS_MAX];
    size_t count;
    bool oom;
} alias_scan;

static int collect_alias(const char *alias, const char *id_text, void *arg)
{
    alias_scan *s = arg;
    (void)id_text;
    void *grown = realloc(s->names, (s->count + 1) * sizeof(*s->names));
    if (grown == NULL) {
        s->oom = true;
        return 1;
    }
    s->names = grown;
    snprintf(s->names[s->count++], P11KMS_ALIAS_MAX, "%s", alias);
    return 0;
}

/* Aliases whose key record does not list them, or whose key is gone. */
static p11kms_err maintain_aliases(maintenance *mt, p11kms_error *err)
{
    alias_scan s = {mt, NULL, 0, false};
    p11kms_err rc = keystore_alias_list(mt->svc, collect_alias, &s, err);
    if (rc == P11KMS_OK && s.oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == P11KMS_OK && i < s.count; i++) {
        char target[P11KMS_KEY_ID_LEN + 1];
        key_meta *m = NULL;
        p11kms_error probe = {0};
        rc = keystore_lock(mt->svc, err);
        if (rc != P11KMS_OK)
            break;
        if (keystore_alias_read(mt->svc, s.names[i], target, &probe) == P11KMS_OK) {
            p11kms_err mrc = keystore_meta_read(mt->svc, target, &m, &probe);
            if (mrc == P11KMS_E_NOT_FOUND) {
                rc = keystore_alias_delete(mt->svc, s.names[i], err);
                keycache_alias_forget(mt->svc, s.names[i]);
                if (rc == P11KMS_OK)
                    say(mt, "alias %s pointed to deleted key %s; alias removed", s.names[i],
                        target);
            } else if (mrc == P11KMS_OK && !keymeta_has_alias(m, s.names[i])) {
                rc = lifecycle_reconcile_alias(mt->svc, s.names[i], say_line, mt, err);
            }
        }
        keymeta_free(m);
        keystore_unlock(mt->svc);
    }
    free(s.names);
    return rc;
}

p11kms_err p11kms_maintain(p11kms *svc, const p11kms_principal *who,
                           void (*fn)(const char *line, void *arg), void *arg, p11kms_error *err)
{
    (void)who;
    maintenance mt = {svc, fn, arg, NULL, 0, false};
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = lifecycle_recover_journal(svc, say_line, &mt, err);
    keystore_unlock(svc);
    if (rc == P11KMS_OK)
        rc = keystore_meta_list(svc, collect_key, report_bad_record, &mt, err);
    if (rc == P11KMS_OK && mt.oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == P11KMS_OK && i < mt.count; i++)
        rc = maintain_key(&mt, mt.ids[i], err);
    free(mt.ids);
    if (rc == P11KMS_OK)
        rc = import_maintain(svc, say_line, &mt, err);
    if (rc == P11KMS_OK)
        rc = maintain_aliases(&mt, err);
    if (rc == P11KMS_OK) {
        orphan_scan s = {&mt, P11KMS_OK, err};
        rc = keystore_version_list(svc, check_orphan_version, &s, err);
    }
    return rc;
}
