/* The database that holds everything p11kms keeps besides key material (doc/token-layout.md):
 * key records, aliases and version claims. One small interface, two
 * implementations: SQLite (provider/store-sqlite.c, one host) and PostgreSQL.
 *
 * The store is dumb on purpose: it keeps rows of opaque canonical bytes with a row version and a
 * MAC that the caller (provider/keystore.c) computes with the token's integrity key and checks
 * on every read. Nothing here trusts or interprets a row. */
#ifndef P11KMS_PROVIDER_STORE_H
#define P11KMS_PROVIDER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p11kms-error.h"

#define STORE_MAC_LEN 32
#define STORE_NAME_MAX 320

typedef enum store_table {
    STORE_KEYS,    /* name: key id text; value: the key record (keymeta_encode) */
    STORE_ALIASES, /* name: "alias/NAME"; value: the key id text */
    STORE_AUDIT,   /* name: an audit log's chain id (hex); value: its checkpoint (audit.h) */
} store_table;

typedef struct store_row {
    char name[STORE_NAME_MAX];
    uint64_t version; /* 1 when created, +1 on each write */
    uint8_t *value;   /* malloc'ed by reads */
    size_t len;
    uint8_t mac[STORE_MAC_LEN];
} store_row;

typedef struct store store;

/* spec: "sqlite:/absolute/path.db" (created with its schema when absent), or a PostgreSQL URI
 * ("postgresql://...") or conninfo string ("host=... dbname=..."); the schema is created when
 * absent. */
P11KMS_MUST_CHECK p11kms_err store_open(const char *spec, store **out, p11kms_error *err);
/* store_open in two steps, so that a slow connection overlaps the token's start-up: a
 * PostgreSQL server starts a backend process for every connection (10-22 ms measured on a small
 * VM, where NSS softokn's C_Initialize + C_Login take 4-7 ms). store_open_begin checks the spec
 * and starts connecting (PostgreSQL: a thread of its own connects and reads whether the schema
 * is there; SQLite: nothing, its open is cheap and may create the file); it writes nothing.
 * store_open_finish waits for the connection and does the rest of store_open (the schema, if
 * missing); store_open_abandon waits for it and closes it. Both take the opening, whatever they
 * return. */
typedef struct store_opening store_opening;
P11KMS_MUST_CHECK p11kms_err store_open_begin(const char *spec, store_opening **out,
                                              p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err store_open_finish(store_opening *o, store **out, p11kms_error *err);
void store_open_abandon(store_opening *o);
void store_close(store *s);
/* "sqlite" or "postgresql". */
const char *store_kind(const store *s);

/* NOT_FOUND when absent. row->value is malloc'ed; free it with store_row_clear. */
P11KMS_MUST_CHECK p11kms_err store_get(store *s, store_table t, const char *name, store_row *row,
                                       p11kms_error *err);
void store_row_clear(store_row *row);
/* Creates the row when row->version is 1 (ALREADY_EXISTS if a row has the name), otherwise
 * replaces the row only if it is still at row->version - 1 (INTERNAL "changed concurrently" if
 * not). Returns only once the database reports the write durable. */
P11KMS_MUST_CHECK p11kms_err store_put(store *s, store_table t, const store_row *row,
                                       p11kms_error *err);
/* NOT_FOUND if absent. */
p11kms_err store_delete(store *s, store_table t, const char *name, p11kms_error *err);
/* Every row of the table in name order; a non-zero return from fn stops the scan. */
p11kms_err store_list(store *s, store_table t, int (*fn)(const store_row *row, void *arg),
                      void *arg, p11kms_error *err);

/* A version number is claimed (unique) before its key object is generated, so two writers can
 * never make two objects for one version. A claim is sealed while its object may be destroyed
 * by maintain: made before the object and not yet named by a record, or handed back by a purge.
 * The seal is the integrity key's MAC over the claim (provider/keystore.c): whoever changes the
 * database without the token cannot make a claim look destroyable. Writing the record that names
 * the version clears the seal. */
typedef struct store_claim {
    char key_id[64];
    uint32_t version;
    int64_t claimed; /* wall-clock second of the claim or of its last seal */
    bool sealed;
    uint8_t seal[STORE_MAC_LEN];
} store_claim;

/* ALREADY_EXISTS if claimed. */
P11KMS_MUST_CHECK p11kms_err store_claim_version(store *s, const store_claim *c, p11kms_error *err);
/* Rewrites a claim's time and seal; NOT_FOUND if the version is not claimed. */
P11KMS_MUST_CHECK p11kms_err store_reseal_claim(store *s, const store_claim *c, p11kms_error *err);
p11kms_err store_release_version(store *s, const char *key_id, uint32_t version, p11kms_error *err);
/* Every claim, in key and version order. */
p11kms_err store_list_claims(store *s, int (*fn)(const store_claim *c, void *arg), void *arg,
                             p11kms_error *err);

/* Serializes changes across every process that shares the store, beyond the local lock file
 * (PostgreSQL: an advisory lock; SQLite: nothing, its users share the lock file). unlock with
 * changed announces the change to every process (PostgreSQL: NOTIFY). */
P11KMS_MUST_CHECK p11kms_err store_lock(store *s, p11kms_error *err);
void store_unlock(store *s, bool changed);
/* Calls on_change (from another thread) whenever another process may have changed rows, or
 * when changes may have gone unannounced. Not needed (a no-op) for SQLite: its processes share
 * the lock file's generation. */
P11KMS_MUST_CHECK p11kms_err store_watch(store *s, void (*on_change)(void *arg), void *arg,
                                         p11kms_error *err);

/* Groups writes into one transaction (nested calls count). */
P11KMS_MUST_CHECK p11kms_err store_begin(store *s, p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err store_commit(store *s, p11kms_error *err);
void store_rollback(store *s);

/* The backends. */
typedef struct store_ops {
    const char *kind;
    void (*close)(store *s);
    p11kms_err (*get)(store *s, store_table t, const char *name, store_row *row, p11kms_error *err);
    p11kms_err (*put)(store *s, store_table t, const store_row *row, p11kms_error *err);
    p11kms_err (*del)(store *s, store_table t, const char *name, p11kms_error *err);
    p11kms_err (*list)(store *s, store_table t, int (*fn)(const store_row *row, void *arg),
                       void *arg, p11kms_error *err);
    p11kms_err (*claim)(store *s, const store_claim *c, p11kms_error *err);
    p11kms_err (*reseal)(store *s, const store_claim *c, p11kms_error *err);
    p11kms_err (*release)(store *s, const char *key_id, uint32_t version, p11kms_error *err);
    p11kms_err (*list_claims)(store *s, int (*fn)(const store_claim *c, void *arg), void *arg,
                              p11kms_error *err);
    p11kms_err (*begin)(store *s, p11kms_error *err);
    p11kms_err (*commit)(store *s, p11kms_error *err);
    void (*rollback)(store *s);
    p11kms_err (*lock)(store *s, p11kms_error *err); /* NULL: nothing to do */
    void (*unlock)(store *s, bool changed);          /* NULL: nothing to do */
    p11kms_err (*watch)(store *s, void (*on_change)(void *arg), void *arg,
                        p11kms_error *err); /* NULL: nothing to do */
} store_ops;

struct store {
    const store_ops *ops;
};

/* The session advisory lock that serializes changes across every p11kms process sharing a
 * PostgreSQL database (store_lock). Any constant, the same for all. */
#define STORE_PG_ADVISORY_KEY "7011771001"

P11KMS_MUST_CHECK p11kms_err store_sqlite_open(const char *path, store **out, p11kms_error *err);
typedef struct pg_connecting pg_connecting;
P11KMS_MUST_CHECK p11kms_err store_pg_connect_begin(const char *conninfo, pg_connecting **out,
                                                    p11kms_error *err);
P11KMS_MUST_CHECK p11kms_err store_pg_connect_finish(pg_connecting *c, store **out,
                                                     p11kms_error *err);
void store_pg_connect_abandon(pg_connecting *c);

#endif
