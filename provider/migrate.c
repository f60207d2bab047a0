#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/audit-ops.h"
#include "provider/keystore.h"
#include "provider/lifecycle-report.h"

/* `p11kms store migrate`: moves what format 1 kept in the token as CKO_DATA objects (key
 * records, aliases, the journal) into the configured store, verifies what it wrote, then
 * destroys the data objects. The key version objects stay where they are. Idempotent: a rerun
 * after a crash finds rows already in the store, checks them and finishes the clean-up. This is
 * the only code that still reads the old layout. */

#define OLD_KEY_PREFIX "p11kms/key/"
#define OLD_ALIAS_PREFIX "p11kms/alias/"
#define OLD_JOURNAL "p11kms/journal"

typedef struct old_record {
    char label[KEYSTORE_LABEL_MAX];
    key_meta *meta; /* NULL: unreadable, left in place */
} old_record;

typedef struct old_alias {
    char label[KEYSTORE_LABEL_MAX];
    char alias[KEYSTORE_LABEL_MAX];
    char target[P11KMS_KEY_ID_LEN + 1];
} old_alias;

typedef struct migration {
    p11kms *svc;
    void (*fn)(const char *line, void *arg);
    void *arg;
    old_record *records;
    size_t record_count;
    old_alias *aliases;
    size_t alias_count;
    bool oom;
} migration;

#define say(mg, ...) lifecycle_report((mg)->fn, (mg)->arg, __VA_ARGS__)

static int collect_old_record(const char *label, const uint8_t *value, size_t len, void *arg)
{
    migration *mg = arg;
    void *grown = realloc(mg->records, (mg->record_count + 1) * sizeof(*mg->records));
    if (grown == NULL) {
        mg->oom = true;
        return 1;
    }
    mg->records = grown;
    old_record *r = &mg->records[mg->record_count++];
    snprintf(r->label, sizeof(r->label), "%s", label);
    r->meta = NULL;
    p11kms_error why = {0};
    if (keymeta_decode(value, len, &r->meta, &why) != P11KMS_OK)
        say(mg, "old key record %s is unreadable; left in the token: %s", label, why.message);
    else if (strcmp(label + strlen(OLD_KEY_PREFIX), r->meta->id_text) != 0) {
        say(mg, "old key record %s holds the record of key %s; left in the token", label,
            r->meta->id_text);
        keymeta_free(r->meta);
        r->meta = NULL;
    }
    return 0;
}

static int collect_old_alias(const char *label, const uint8_t *value, size_t len, void *arg)
{
    migration *mg = arg;
    uint8_t id[KEY_UUID_LEN];
    char target[P11KMS_KEY_ID_LEN + 1];
    bool valid = len == P11KMS_KEY_ID_LEN;
    if (valid) {
        memcpy(target, value, len);
        target[len] = '\0';
        valid = uuid_parse(target, id);
    }
    if (!valid) {
        say(mg, "old alias object %s holds no valid key id; left in the token", label);
        return 0;
    }
    void *grown = realloc(mg->aliases, (mg->alias_count + 1) * sizeof(*mg->aliases));
    if (grown == NULL) {
        mg->oom = true;
        return 1;
    }
    mg->aliases = grown;
    old_alias *a = &mg->aliases[mg->alias_count++];
    snprintf(a->label, sizeof(a->label), "%s", label);
    snprintf(a->alias, sizeof(a->alias), "alias/%s", label + strlen(OLD_ALIAS_PREFIX));
    memcpy(a->target, target, sizeof(a->target));
    return 0;
}

/* Format 1's recovery made records agree with the alias objects (the truth); so does this. */
static bool align_aliases(migration *mg, key_meta *m)
{
    while (m->alias_count > 0)
        keymeta_remove_alias(m, m->aliases[0]);
    for (size_t i = 0; i < mg->alias_count; i++) {
        if (strcmp(mg->aliases[i].target, m->id_text) == 0 &&
            !keymeta_add_alias(m, mg->aliases[i].alias))
            return false;
    }
    return true;
}

static bool same_record(const key_meta *a, const key_meta *b)
{
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    bool same = keymeta_encode(a, &ta, &la, NULL) == P11KMS_OK &&
                keymeta_encode(b, &tb, &lb, NULL) == P11KMS_OK && la == lb &&
                memcmp(ta, tb, la) == 0;
    free(ta);
    free(tb);
    return same;
}

/* Writes every record and alias the store lacks, in one transaction. */
static p11kms_err write_rows(migration *mg, size_t *written, p11kms_error *err)
{
    p11kms *svc = mg->svc;
    p11kms_err rc = keystore_begin(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; rc == P11KMS_OK && i < mg->record_count; i++) {
        key_meta *m = mg->records[i].meta;
        if (m == NULL)
            continue;
        key_meta *have = NULL;
        p11kms_error probe = {0};
        p11kms_err hrc = keystore_meta_read(svc, m->id_text, &have, &probe);
        if (hrc == P11KMS_E_NOT_FOUND) {
            rc = keystore_meta_create(svc, m, err);
            if (rc == P11KMS_OK) {
                (*written)++;
                say(mg, "key %s: record moved to the store", m->id_text);
            }
        } else if (hrc == P11KMS_OK) {
            if (!same_record(have, m))
                say(mg,
                    "key %s: the store already holds a different record (changed since an "
                    "earlier migration); the store's is kept",
                    m->id_text);
        } else {
            rc = hrc;
            if (err != NULL)
                *err = probe;
        }
        keymeta_free(have);
    }
    for (size_t i = 0; rc == P11KMS_OK && i < mg->alias_count; i++) {
        const old_alias *a = &mg->aliases[i];
        char have[P11KMS_KEY_ID_LEN + 1];
        p11kms_error probe = {0};
        p11kms_err hrc = keystore_alias_read(svc, a->alias, have, &probe);
        if (hrc == P11KMS_E_NOT_FOUND) {
            rc = keystore_alias_put(svc, a->alias, a->target, err);
            if (rc == P11KMS_OK) {
                (*written)++;
                say(mg, "%s: moved to the store (points to %s)", a->alias, a->target);
            }
        } else if (hrc == P11KMS_OK && strcmp(have, a->target) != 0) {
            say(mg, "%s: the store already points it to %s; the store's is kept", a->alias, have);
        } else if (hrc != P11KMS_OK) {
            rc = hrc;
            if (err != NULL)
                *err = probe;
        }
    }
    if (rc == P11KMS_OK)
        return keystore_commit(svc, err);
    keystore_rollback(svc);
    return rc;
}

/* Every migrated row reads back from the store, authenticated, before any object goes. */
static p11kms_err verify_rows(migration *mg, p11kms_error *err)
{
    for (size_t i = 0; i < mg->record_count; i++) {
        if (mg->records[i].meta == NULL)
            continue;
        key_meta *have = NULL;
        p11kms_err rc = keystore_meta_read(mg->svc, mg->records[i].meta->id_text, &have, err);
        keymeta_free(have);
        if (rc != P11KMS_OK)
            return rc;
    }
    for (size_t i = 0; i < mg->alias_count; i++) {
        char have[P11KMS_KEY_ID_LEN + 1];
        p11kms_err rc = keystore_alias_read(mg->svc, mg->aliases[i].alias, have, err);
        if (rc != P11KMS_OK)
            return rc;
    }
    return P11KMS_OK;
}

static p11kms_err remove_objects(migration *mg, p11kms_error *err)
{
    p11_token *t = mg->svc->token;
    size_t removed = 0;
    for (size_t i = 0; i < mg->record_count; i++) {
        if (mg->records[i].meta == NULL)
            continue;
        p11kms_err rc = p11_data_delete(t, mg->records[i].label, err);
        if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND)
            return rc;
        removed++;
    }
    for (size_t i = 0; i < mg->alias_count; i++) {
        p11kms_err rc = p11_data_delete(t, mg->aliases[i].label, err);
        if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND)
            return rc;
        removed++;
    }
    p11kms_error probe = {0};
    if (p11_data_delete(t, OLD_JOURNAL, &probe) == P11KMS_OK)
        removed++;
    if (removed > 0)
        say(mg, "removed %zu data objects of the old layout from the token", removed);
    return P11KMS_OK;
}

static p11kms_err migrate_locked(migration *mg, p11kms_error *err)
{
    p11_token *t = mg->svc->token;
    p11kms_err rc = p11_data_list(t, OLD_KEY_PREFIX, collect_old_record, mg, err);
    if (rc == P11KMS_OK)
        rc = p11_data_list(t, OLD_ALIAS_PREFIX, collect_old_alias, mg, err);
    if (rc == P11KMS_OK && mg->oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc != P11KMS_OK)
        return rc;
    uint8_t *journal = NULL;
    size_t len = 0;
    p11kms_error probe = {0};
    if (p11_data_read(t, OLD_JOURNAL, &journal, &len, &probe) == P11KMS_OK &&
        !(len == 1 && journal[0] == ' ') && len > 0)
        say(mg,
            "the old journal names an interrupted operation (%.*s); not replayed: a key object "
            "it left without a record is reported by p11kms maintain",
            (int)(len > 200 ? 200 : len), (const char *)journal);
    free(journal);
    if (mg->record_count == 0 && mg->alias_count == 0) {
        say(mg, "nothing to migrate: the token holds no key record or alias of the old layout");
        (void)p11_data_delete(t, OLD_JOURNAL, &probe); /* an idle journal alone */
        return P11KMS_OK;
    }
    for (size_t i = 0; i < mg->record_count; i++) {
        if (mg->records[i].meta != NULL && !align_aliases(mg, mg->records[i].meta))
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    size_t written = 0;
    rc = write_rows(mg, &written, err);
    if (rc == P11KMS_OK)
        rc = verify_rows(mg, err);
    if (rc == P11KMS_OK)
        rc = remove_objects(mg, err);
    if (rc == P11KMS_OK)
        mg->svc->lock_dirty = true; /* every process re-reads what it cached */
    return rc;
}

p11kms_err kms_op_store_migrate(p11kms *svc, void (*fn)(const char *line, void *arg), void *arg,
                                p11kms_error *err)
{
    migration mg = {svc, fn, arg, NULL, 0, NULL, 0, false};
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = migrate_locked(&mg, err);
    keystore_unlock(svc);
    for (size_t i = 0; i < mg.record_count; i++)
        keymeta_free(mg.records[i].meta);
    free(mg.records);
    free(mg.aliases);
    return rc;
}
