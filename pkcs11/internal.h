/* Token layer internals shared by the files of pkcs11/ (not by anything outside it).
 *
 * Locks, always taken in this order (the fork handlers take them all in this order too):
 *   registry -> token create_lock -> login_lock -> cache_lock -> pool_lock.
 * pool_lock is only held for short bookkeeping, never across a PKCS#11 call; no lock is held
 * while a caller's callback runs. A thread that holds a checked-out session ("in use") keeps
 * the module from being re-initialized under it: re-initialization waits for in_use == 0. */
#ifndef P11KMS_PKCS11_INTERNAL_H
#define P11KMS_PKCS11_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <p11-kit/uri.h>

#include "pkcs11/calls.h"
#include "common/hashmap.h"
#include "pkcs11/token.h"

/* Module state machine. A fork or a fatal token error moves READY to NEEDS_REINIT; the next
 * user re-initializes under the pool lock. ERROR is final (a refused PIN). */
typedef enum p11_state {
    P11_STATE_UNINITIALIZED = 0,
    P11_STATE_READY,
    P11_STATE_NEEDS_REINIT,
    P11_STATE_ERROR,
} p11_state;

typedef struct p11_session {
    CK_SESSION_HANDLE handle;
    uint64_t epoch;   /* pool epoch it was opened in; a session from an older epoch is dropped */
    uint8_t *scratch; /* secure heap: decrypt output before the tag is verified */
    size_t scratch_cap;
    bool dirty; /* an operation may still be active: close instead of reusing */
    bool dead;  /* the token said the handle is gone: forget it without closing */
    struct p11_session *next;
} p11_session;

/* A cached object handle, valid while gen equals the token's generation. */
typedef struct p11_objref {
    _Atomic CK_OBJECT_HANDLE handle;
    _Atomic uint64_t gen; /* 0: must be found again */
} p11_objref;

/* Finds the object a p11_objref stands for (C_FindObjects on session s). */
typedef p11kms_err (*p11_finder)(p11_token *t, p11_session *s, void *arg, CK_OBJECT_HANDLE *h,
                                 p11kms_error *err);

struct p11_key {
    p11_objref ref;
    bool session_object; /* created by p11_key_create_session_aes (CKA_TOKEN=FALSE) */
    /* A session copy (p11_key_copy_session): the token key it copies. Its finder copies the
     * source again, since the token destroyed the copy when it lost the login session. */
    struct p11_key *source;
    _Atomic bool hmac_checked; /* p11_hmac_find saw an HMAC key's attributes (hmac.c) */
    size_t id_len;
    uint8_t *id;
    struct p11_key *prev, *next; /* the token's list of keys it owns */
};

/* A data object known by its label. */
typedef struct p11_dataref {
    p11_objref ref;
    char *label;
} p11_dataref;

struct p11_token {
    /* configuration, own copies */
    char *module;
    char *module_args;
    char *token_uri;
    char *pin_source;
    bool insecure_pin_file;
    unsigned pool_wanted;
    p11_iv_mode iv_mode;
    p11_gcm_layout gcm_layout;
    p11_rng_source rng;
    OSSL_LIB_CTX *libctx;
    P11KitUri *uri;

    /* the module */
    p11_calls *calls;
    void *dl_handle; /* dlopen(RTLD_NOLOAD) reference taken to find C_GetInterface */
    bool via_get_interface;
    bool module_initialized;

    /* the selected token (refreshed on re-initialization: slot ids may change) */
    CK_SLOT_ID slot;
    CK_TOKEN_INFO token_info;
    CK_INFO module_info;

    /* login (login_lock). The PIN stays in the secure heap for the token's lifetime because
     * recovery may have to log in again after the token dropped our sessions; it is wiped at
     * close, and at once when the token refuses it. */
    pthread_mutex_t login_lock;
    char *pin;
    size_t pin_len;
    bool pin_refused;
    CK_RV pin_refused_ckr;
    bool login_required;
    bool login_session_open;
    CK_SESSION_HANDLE login_session;

    /* state machine and pool (pool_lock) */
    pthread_mutex_t pool_lock;
    pthread_cond_t cond_free;  /* a session was returned or a slot freed */
    pthread_cond_t cond_state; /* state changed, or in_use dropped to 0 */
    p11_state state;
    bool reinit_busy;
    bool exclusive;        /* p11_pool_exclusive: no checkout until it is done */
    p11kms_err error_code; /* ERROR state: what every call fails with */
    CK_RV error_ckr;
    p11_session *idle;
    p11_session *stale; /* inherited across fork(): never closed, freed at re-initialization */
    unsigned capacity, open, in_use, waiting;
    uint64_t epoch;

    /* bumped whenever cached object handles may have become invalid (re-init, re-login) */
    _Atomic uint64_t gen;

    /* caches (cache_lock) */
    pthread_mutex_t cache_lock;
    hashmap *keys; /* CKA_ID -> p11_key (token keys; the keys belong to the owned list) */
    hashmap *data; /* label -> p11_dataref (owned by the map) */
    p11_key *owned;

    /* object creation is serialized: SoftHSM fails spuriously on concurrent creation */
    pthread_mutex_t create_lock;
    /* the token refuses C_SetAttributeValue on a data object's CKA_VALUE (SoftHSM): writes
     * replace the object instead (see data.c) */
    _Atomic bool data_value_read_only;
    /* the largest C_GenerateRandom length the token accepted after refusing one (0: not
     * learnt yet; see random_op in token.c) */
    _Atomic size_t random_chunk;
    /* unique per opened token in the process, never reused (random-pool.c: whose bytes a
     * thread's block holds) */
    uint64_t serial;

    struct p11_token *next_registered; /* fork registry */
};

/* --- pool.c: sessions, recovery, state machine ------------------------------------------- */

/* Brings the module up: C_Initialize, token selection, login session, pool sizing. Used by
 * p11_token_open and by re-initialization. */
p11kms_err p11_token_start(p11_token *t, p11kms_error *err);
/* Closes this token's sessions (except ones inherited across fork) and finalizes. */
void p11_token_stop(p11_token *t);

p11kms_err p11_pool_checkout(p11_token *t, p11_session **out, p11kms_error *err);
void p11_pool_checkin(p11_token *t, p11_session *s);
/* Scratch space of at least need bytes in the session (secure heap, reused). */
uint8_t *p11_session_scratch(p11_session *s, size_t need, p11kms_error *err);

/* Runs op on a pool session with recovery: on a session, login or device failure the session is
 * dropped, the login repaired and op run again (bounded), then the module re-initialized once.
 * ref, if not NULL, is the cached object op uses: an invalid handle makes it found again. */
typedef p11kms_err (*p11_op)(p11_token *t, p11_session *s, void *arg, p11kms_error *err);
p11kms_err p11_run(p11_token *t, p11_objref *ref, p11_op op, void *arg, p11kms_error *err);

/* Runs fn while no session is in use and none can be checked out (for C_CloseAllSessions:
 * SoftHSM is not safe against closing a session another thread is using). */
p11kms_err p11_pool_exclusive(p11_token *t, p11kms_err (*fn)(p11_token *t, p11kms_error *err),
                              p11kms_error *err);

/* The login session under login_lock, opened and logged in if needed (session objects). */
p11kms_err p11_login_session_lock(p11_token *t, CK_SESSION_HANDLE *h, p11kms_error *err);
void p11_login_session_unlock(p11_token *t);

void p11_fork_register(p11_token *t);
void p11_fork_unregister(p11_token *t);

/* --- random-pool.c ------------------------------------------------------------------------- */

/* Wipes the calling thread's block of t's randomness, if it holds one (at close). */
void p11_random_pool_forget(const p11_token *t);

/* --- select.c: module loading and token selection ------------------------------------------ */

p11kms_err p11_module_load(p11_token *t, p11kms_error *err);
void p11_module_unload(p11_token *t);
p11kms_err p11_uri_parse(const char *text, P11KitUri **out, p11kms_error *err);
p11kms_err p11_select_token(p11_token *t, p11kms_error *err);

/* --- pin.c --------------------------------------------------------------------------------- */

/* Reads the PIN named by a "file:/absolute/path" source (first line) into the secure heap. The
 * file must be a regular file owned by this user or root with no group/other access; insecure
 * (development only) accepts any owner and mode, with a warning on stderr. */
P11KMS_MUST_CHECK p11kms_err p11_pin_load(const char *source, bool insecure, char **pin,
                                          size_t *len, p11kms_error *err);
void p11_pin_free(char *pin, size_t len);

/* A refused PIN file is remembered where every process sees it: a marker file PATH.refused
 * beside it holds the file's identity (device, inode, size, modification time; never the PIN).
 * p11_pin_refused fails with P11KMS_E_PIN, before any login, while the marker matches the
 * unchanged file; any change to the file (or removing the marker) allows a new try. */
P11KMS_MUST_CHECK p11kms_err p11_pin_refused(const char *source, p11kms_error *err);
/* Records the refusal; returns false when the marker could not be written. */
bool p11_pin_remember_refusal(const char *source, CK_RV ckr);
/* Removes the marker after a login that succeeded. */
void p11_pin_forget_refusal(const char *source);

/* --- object.c ------------------------------------------------------------------------------ */

p11kms_err p11_objref_refresh(p11_token *t, p11_session *s, p11_objref *ref, p11_finder find,
                              void *arg, CK_OBJECT_HANDLE *h, p11kms_error *err);

/* The handle of ref; found again (one C_FindObjects pass) only when it is stale. */
static inline p11kms_err p11_objref_handle(p11_token *t, p11_session *s, p11_objref *ref,
                                           p11_finder find, void *arg, CK_OBJECT_HANDLE *h,
                                           p11kms_error *err)
{
    if (atomic_load_explicit(&ref->gen, memory_order_acquire) ==
        atomic_load_explicit(&t->gen, memory_order_relaxed)) {
        *h = atomic_load_explicit(&ref->handle, memory_order_relaxed);
        return P11KMS_OK;
    }
    return p11_objref_refresh(t, s, ref, find, arg, h, err);
}

static inline void p11_objref_invalidate(p11_objref *ref)
{
    atomic_store_explicit(&ref->gen, 0, memory_order_release);
}

/* Exactly one object matches: NOT_FOUND for none, TOKEN for several (what names it). */
p11kms_err p11_find_one(p11_token *t, p11_session *s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        const char *what, CK_OBJECT_HANDLE *h, p11kms_error *err);
/* Every match; *handles is malloc'ed (NULL when none). */
p11kms_err p11_find_all(p11_token *t, p11_session *s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        CK_OBJECT_HANDLE **handles, size_t *count, p11kms_error *err);
/* One attribute of any length (two-call pattern); *value is malloc'ed plus a NUL byte. */
/* C_GetAttributeValue of several attributes where the object may lack some of them: a token
 * that fails the whole read when one is missing (NSS softokn, CKR_ATTRIBUTE_TYPE_INVALID) or
 * sensitive is asked again one attribute at a time. An attribute the token refuses that way
 * keeps the caller's default value and gets ulValueLen = CK_UNAVAILABLE_INFORMATION; any other
 * failure is returned. */
p11kms_err p11_get_attrs(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE *tmpl,
                         CK_ULONG count, p11kms_error *err);
p11kms_err p11_get_attr_alloc(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h,
                              CK_ATTRIBUTE_TYPE type, uint8_t **value, size_t *len,
                              p11kms_error *err);

/* --- key.c / data.c ------------------------------------------------------------------------ */

/* The p11_finder of a p11_key (arg is the key): its CKA_ID among secret keys. */
p11kms_err p11_key_finder(p11_token *t, p11_session *s, void *arg, CK_OBJECT_HANDLE *h,
                          p11kms_error *err);
/* At close: the caches go, with every key and data object reference. */
void p11_keys_free_all(p11_token *t);
/* For the other kinds of secret key (hmac.c): a key object not yet cached, and its adoption
 * into the cache once its token object exists (a stale entry for the same CKA_ID gives way, as
 * after p11_key_generate). p11_key_adopt frees k when it returns another entry or fails. */
p11_key *p11_key_new(const uint8_t *id, size_t id_len);
void p11_key_free(p11_key *k);
p11_key *p11_key_adopt(p11_token *t, p11_key *k, p11kms_error *err);
void p11_data_free_all(p11_token *t);
/* A session AES-256 key generated in the token (CKM_AES_KEY_GEN, CKA_TOKEN=FALSE): for the
 * capability self-test on tokens that refuse plaintext key values in C_CreateObject. */
p11kms_err p11_key_generate_session_aes(p11_token *t, p11_key **out, p11kms_error *err);

/* --- capability.c -------------------------------------------------------------------------- */

/* The capability check of p11_token_open: P11KMS_E_UNSUPPORTED, one line naming the token, the
 * first required capability it lacks and what to do. */
p11kms_err p11_token_check(p11_token *t, p11kms_error *err);

#endif
