#include "config.h"

#include "provider/store.h"

#include <stdlib.h>
#include <string.h>

struct store_opening {
    const char *sqlite_path; /* inside the caller's spec, which outlives the opening */
    pg_connecting *pg;
};

p11kms_err store_open_begin(const char *spec, store_opening **out, p11kms_error *err)
{
    *out = NULL;
    bool sqlite = strncmp(spec, "sqlite:", 7) == 0;
    if (!sqlite && strncmp(spec, "postgresql://", 13) != 0 &&
        strncmp(spec, "postgres://", 11) != 0 && strchr(spec, '=') == NULL)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "store: not sqlite:/path, a postgresql:// URI or a conninfo string");
    store_opening *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory opening the store");
    if (sqlite)
        o->sqlite_path = spec + 7;
    else {
        p11kms_err rc = store_pg_connect_begin(spec, &o->pg, err);
        if (rc != P11KMS_OK) {
            free(o);
            return rc;
        }
    }
    *out = o;
    return P11KMS_OK;
}

p11kms_err store_open_finish(store_opening *o, store **out, p11kms_error *err)
{
    *out = NULL;
    p11kms_err rc = o->pg != NULL ? store_pg_connect_finish(o->pg, out, err)
                                  : store_sqlite_open(o->sqlite_path, out, err);
    free(o);
    return rc;
}

void store_open_abandon(store_opening *o)
{
    if (o == NULL)
        return;
    store_pg_connect_abandon(o->pg);
    free(o);
}

p11kms_err store_open(const char *spec, store **out, p11kms_error *err)
{
    store_opening *o;
    p11kms_err rc = store_open_begin(spec, &o, err);
    if (rc != P11KMS_OK) {
        *out = NULL;
        return rc;
    }
    return store_open_finish(o, out, err);
}

void store_close(store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

const char *store_kind(const store *s)
{
    return s->ops->kind;
}

p11kms_err store_get(store *s, store_table t, const char *name, store_row *row, p11kms_error *err)
{
    memset(row, 0, sizeof(*row));
    return s->ops->get(s, t, name, row, err);
}

void store_row_clear(store_row *row)
{
    free(row->value);
    row->value = NULL;
    row->len = 0;
}

p11kms_err store_put(store *s, store_table t, const store_row *row, p11kms_error *err)
{
    return s->ops->put(s, t, row, err);
}

p11kms_err store_delete(store *s, store_table t, const char *name, p11kms_error *err)
{
    return s->ops->del(s, t, name, err);
}

p11kms_err store_list(store *s, store_table t, int (*fn)(const store_row *row, void *arg),
                      void *arg, p11kms_error *err)
{
    return s->ops->list(s, t, fn, arg, err);
}

p11kms_err store_claim_version(store *s, const store_claim *c, p11kms_error *err)
{
    return s->ops->claim(s, c, err);
}

p11kms_err store_reseal_claim(store *s, const store_claim *c, p11kms_error *err)
{
    return s->ops->reseal(s, c, err);
}

p11kms_err store_release_version(store *s, const char *key_id, uint32_t version, p11kms_error *err)
{
    return s->ops->release(s, key_id, version, err);
}

p11kms_err store_list_claims(store *s, int (*fn)(const store_claim *c, void *arg), void *arg,
                             p11kms_error *err)
{
    return s->ops->list_claims(s, fn, arg, err);
}

p11kms_err store_begin(store *s, p11kms_error *err)
{
    return s->ops->begin(s, err);
}

p11kms_err store_commit(store *s, p11kms_error *err)
{
    return s->ops->commit(s, err);
}

void store_rollback(store *s)
{
    s->ops->rollback(s);
}

p11kms_err store_lock(store *s, p11kms_error *err)
{
    return s != NULL && s->ops->lock ? s->ops->lock(s, err) : P11KMS_OK;
}

void store_unlock(store *s, bool changed)
{
    if (s != NULL && s->ops->unlock)
        s->ops->unlock(s, changed);
}

p11kms_err store_watch(store *s, void (*on_change)(void *arg), void *arg, p11kms_error *err)
{
    return s->ops->watch ? s->ops->watch(s, on_change, arg, err) : P11KMS_OK;
}
