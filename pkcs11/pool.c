#include "config.h"

#include "pkcs11/internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#define POOL_DEFAULT 8
#define POOL_MAX 256
/* CKR_SESSION_COUNT: retry opening a session this many times, sleeping 5, 10, 20, 40, 80 ms... */
#define SESSION_COUNT_TRIES 7
/* Recoveries (new session, re-login, re-find) before the module is re-initialized, and after. */
#define SOFT_RECOVERIES 3
#define RECOVERIES_AFTER_REINIT 2
/* Decrypt scratch: allocated once per session, large enough for a KMS plaintext (4 KiB) plus
 * tag; a session gives back a scratch that grew past SCRATCH_KEEP. */
#define SCRATCH_MIN (4096 + 64)
#define SCRATCH_KEEP (64 * 1024)
/* C_Login answered with something not about the PIN (login_answer_transient): looks, and the
 * pause between two (login_with_second_looks). */
#define LOGIN_LOOKS 4
#define LOGIN_LOOK_PAUSE_MS 20

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* --- sessions --------------------------------------------------------------------------------- */

static void session_free(p11_session *s)
{
    if (s == NULL)
        return;
    if (s->scratch != NULL)
        OPENSSL_secure_clear_free(s->scratch, s->scratch_cap);
    free(s);
}

uint8_t *p11_session_scratch(p11_session *s, size_t need, p11kms_error *err)
{
    if (s->scratch_cap >= need)
        return s->scratch;
    size_t cap = need < SCRATCH_MIN ? SCRATCH_MIN : need;
    uint8_t *p = OPENSSL_secure_malloc(cap);
    if (p == NULL) {
        P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "no secure memory for a %zu-byte buffer", cap);
        return NULL;
    }
    if (s->scratch != NULL)
        OPENSSL_secure_clear_free(s->scratch, s->scratch_cap);
    s->scratch = p;
    s->scratch_cap = cap;
    return p;
}

static p11kms_err open_session(p11_token *t, CK_SESSION_HANDLE *h, p11kms_error *err)
{
    for (unsigned i = 0;; i++) {
        if (p11c_open_session(t->calls, t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, h, err) ==
            P11KMS_OK)
            return P11KMS_OK;
        if (err->ckr != CKR_SESSION_COUNT || i + 1 >= SESSION_COUNT_TRIES)
            return err->code;
        sleep_ms(5u << (i < 4 ? i : 4));
    }
}

static void close_quietly(p11_token *t, CK_SESSION_HANDLE h)
{
    p11kms_error ignored = {0};
    (void)p11c_close_session(t->calls, h, &ignored);
}

/* --- state ------------------------------------------------------------------------------------ */

static void set_error_state(p11_token *t, p11kms_err code, CK_RV ckr)
{
    pthread_mutex_lock(&t->pool_lock);
    t->state = P11_STATE_ERROR;
    t->error_code = code;
    t->error_ckr = ckr;
    pthread_cond_broadcast(&t->cond_free);
    pthread_cond_broadcast(&t->cond_state);
    pthread_mutex_unlock(&t->pool_lock);
}

static void mark_reinit(p11_token *t)
{
    pthread_mutex_lock(&t->pool_lock);
    if (t->state == P11_STATE_READY)
        t->state = P11_STATE_NEEDS_REINIT;
    pthread_cond_broadcast(&t->cond_free);
    pthread_cond_broadcast(&t->cond_state);
    pthread_mutex_unlock(&t->pool_lock);
}

static bool pin_refusal(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
        return true;
    /* Not CKR_USER_PIN_NOT_INITIALIZED: no PIN was compared, so no try was spent, and the
     * token's flags said the PIN was initialized just before (check_token_flags). SoftHSM's file
     * store answers so while another process rewrites its token.object at C_Login
     * (doc/token-layout.md; login_with_second_looks); remembering it would refuse every later
     * start until the PIN file changed. */
    default:
        return false;
    }
}

/* --- login (login_lock held) ------------------------------------------------------------------ */

static p11kms_err refused(p11_token *t, p11kms_error *err)
{
    P11KMS_RAISE(err, P11KMS_E_PIN,
                 "the token refused the PIN earlier (%s); p11kms does not try a refused PIN again",
                 p11_ckr_name(t->pin_refused_ckr));
    err->ckr = t->pin_refused_ckr;
    return P11KMS_E_PIN;
}

/* Refuses before C_Login when the token says logging in is unsafe or impossible. */
static p11kms_err check_token_flags(p11_token *t, p11kms_error *err)
{
    CK_FLAGS f = t->token_info.flags;
    if (!(f & CKF_TOKEN_INITIALIZED))
        return P11KMS_RAISE(err, P11KMS_E_PIN, "token %s is not initialized", t->token_uri);
    if (!(f & CKF_LOGIN_REQUIRED))
        return P11KMS_OK;
    if (!(f & CKF_USER_PIN_INITIALIZED))
        return P11KMS_RAISE(err, P11KMS_E_PIN, "token %s: the user PIN is not initialized",
                            t->token_uri);
    if (f & CKF_USER_PIN_LOCKED)
        return P11KMS_RAISE(err, P11KMS_E_PIN, "token %s: the user PIN is locked", t->token_uri);
    if (f & CKF_USER_PIN_FINAL_TRY)
        return P11KMS_RAISE(err, P11KMS_E_PIN,
                            "token %s: the user PIN is on its final try; refusing to log in",
                            t->token_uri);
    return P11KMS_OK;
}

/* Answers of C_Login that are not about the PIN, which SoftHSM's file store gives for a moment
 * while another process rewrites its token.object at its own C_Login (doc/token-layout.md):
 * CKR_USER_PIN_NOT_INITIALIZED although the token's flags said the PIN was initialized
 * (check_token_flags), and CKR_GENERAL_ERROR (seen in CI from a process logging in at the same
 * moment as another). A token that answers so for good is reported after the last look; a wrong
 * PIN is answered CKR_PIN_INCORRECT, which is never looked at again. */
static bool login_answer_transient(CK_RV rv)
{
    return rv == CKR_USER_PIN_NOT_INITIALIZED || rv == CKR_GENERAL_ERROR;
}

/* C_Login, looked at again (LOGIN_LOOKS in all) while its answer is one of the above. */
static p11kms_err login_with_second_looks(p11_token *t, p11kms_error *err)
{
    for (int look = 1;; look++) {
        if (p11c_login(t->calls, t->login_session, CKU_USER, t->pin, t->pin_len, err) == P11KMS_OK)
            return P11KMS_OK;
        if (!login_answer_transient(err->ckr))
            return err->code;
        if (look == LOGIN_LOOKS) {
            CK_RV rv = err->ckr;
            p11kms_err code = rv == CKR_USER_PIN_NOT_INITIALIZED ? P11KMS_E_PIN : err->code;
            P11KMS_RAISE(err, code, "token %s answered C_Login with %s %d times over %d ms%s",
                         t->token_uri, p11_ckr_name(rv), LOGIN_LOOKS,
                         (LOGIN_LOOKS - 1) * LOGIN_LOOK_PAUSE_MS,
                         rv == CKR_USER_PIN_NOT_INITIALIZED
                             ? " although its flags say the user PIN is initialized"
                             : "");
            err->ckr = rv;
            return code;
        }
        p11kms_error_clear(err);
        sleep_ms(LOGIN_LOOK_PAUSE_MS);
    }
}

static p11kms_err login_locked(p11_token *t, p11kms_error *err)
{
    if (t->pin_refused)
        return refused(t, err);
    const char *source = t->pin_source != NULL ? t->pin_source : p11_kit_uri_get_pin_source(t->uri);
    if (t->pin == NULL) {
        p11kms_err loaded = p11_pin_load(source, t->insecure_pin_file, &t->pin, &t->pin_len, err);
        if (loaded != P11KMS_OK)
            return loaded;
    }
    /* Another process found this very file refused: no second try with it. */
    p11kms_err known = p11_pin_refused(source, err);
    if (known != P11KMS_OK)
        return known;
    if (login_with_second_looks(t, err) == P11KMS_OK) {
        p11_pin_forget_refusal(source);
        return P11KMS_OK;
    }
    if (err->ckr == CKR_USER_ALREADY_LOGGED_IN) {
        p11kms_error_clear(err);
        return P11KMS_OK;
    }
    if (!pin_refusal(err->ckr))
        return err->code;
    /* Never again: a real HSM locks the PIN after a few failures. */
    t->pin_refused = true;
    t->pin_refused_ckr = err->ckr;
    p11_pin_free(t->pin, t->pin_len);
    t->pin = NULL;
    t->pin_len = 0;
    bool remembered = p11_pin_remember_refusal(source, t->pin_refused_ckr);
    P11KMS_RAISE(err, P11KMS_E_PIN, "token %s refused the PIN: %s; it will not be tried again%s",
                 t->token_uri, p11_ckr_name(t->pin_refused_ckr),
                 remembered ? " while the PIN file is unchanged"
                            : " (could not record the refusal beside the PIN file)");
    err->ckr = t->pin_refused_ckr;
    return P11KMS_E_PIN;
}

/* Makes sure the login session exists and is logged in; repairs it after the token dropped
 * our sessions or logged us out. Runs while the caller holds a pool session. */
static p11kms_err ensure_login(p11_token *t, p11kms_error *err)
{
    pthread_mutex_lock(&t->login_lock);
    p11kms_err rc = P11KMS_OK;
    if (t->pin_refused) {
        rc = refused(t, err);
        goto out;
    }
    if (t->login_session_open) {
        CK_SESSION_INFO si;
        if (p11c_get_session_info(t->calls, t->login_session, &si, err) == P11KMS_OK) {
            if (!t->login_required || si.state == CKS_RO_USER_FUNCTIONS ||
                si.state == CKS_RW_USER_FUNCTIONS)
                goto out;
        } else if (err->ckr == CKR_SESSION_HANDLE_INVALID || err->ckr == CKR_SESSION_CLOSED) {
            t->login_session_open = false;
        } else {
            rc = err->code;
            goto out;
        }
    }
    if (!t->login_session_open) {
        if ((rc = open_session(t, &t->login_session, err)) != P11KMS_OK)
            goto out;
        t->login_session_open = true;
    }
    if (t->login_required && (rc = login_locked(t, err)) != P11KMS_OK)
        goto out;
    /* A logout may have invalidated handles of private objects: find them again. */
    atomic_fetch_add(&t->gen, 1);
out:
    pthread_mutex_unlock(&t->login_lock);
    if (rc == P11KMS_E_PIN)
        set_error_state(t, P11KMS_E_PIN, err->ckr);
    if (rc == P11KMS_OK)
        p11kms_error_clear(err);
    return rc;
}

p11kms_err p11_login_session_lock(p11_token *t, CK_SESSION_HANDLE *h, p11kms_error *err)
{
    p11kms_err rc = ensure_login(t, err);
    if (rc != P11KMS_OK)
        return rc;
    pthread_mutex_lock(&t->login_lock);
    if (!t->login_session_open) {
        pthread_mutex_unlock(&t->login_lock);
        return P11KMS_RAISE(err, P11KMS_E_KEY_UNAVAILABLE, "the login session was lost");
    }
    *h = t->login_session;
    return P11KMS_OK;
}

void p11_login_session_unlock(p11_token *t)
{
    pthread_mutex_unlock(&t->login_lock);
}

/* --- bring-up and tear-down ------------------------------------------------------------------- */

static unsigned pool_capacity(const p11_token *t)
{
    unsigned want = t->pool_wanted ? t->pool_wanted : POOL_DEFAULT;
    if (want > POOL_MAX)
        want = POOL_MAX;
    /* 0 means "no limit" and ~0 "not known": neither caps the pool. */
    CK_ULONG limit = ULONG_MAX;
    CK_ULONG reported[2] = {t->token_info.ulMaxRwSessionCount, t->token_info.ulMaxSessionCount};
    for (int i = 0; i < 2; i++)
        if (reported[i] != CK_EFFECTIVELY_INFINITE && reported[i] != CK_UNAVAILABLE_INFORMATION &&
            reported[i] < limit)
            limit = reported[i];
    if (limit != ULONG_MAX) {
        limit = limit > 1 ? limit - 1 : 1; /* one session is the login session */
        if (want > limit)
            want = (unsigned)limit;
    }
    return want;
}

#define SELECT_TRIES 4
#define SELECT_PAUSE_NS (100 * 1000 * 1000)

p11kms_err p11_token_start(p11_token *t, p11kms_error *err)
{
    if (p11c_initialize(t->calls, err) != P11KMS_OK) {
        if (err->ckr != CKR_CRYPTOKI_ALREADY_INITIALIZED)
            return err->code;
        p11kms_error_clear(err);
    }
    t->module_initialized = true;
    /* A token another process is writing at this very moment can be missing from a file-backed
     * module's slot list (SoftHSM reads its files at C_Initialize): look again a few times, with
     * a fresh C_Initialize, before calling the token absent. */
    for (int tries = 1; p11_select_token(t, err) != P11KMS_OK; tries++) {
        if (err->code != P11KMS_E_NOT_FOUND || tries >= SELECT_TRIES)
            return err->code;
        p11kms_error ignored = {0};
        (void)p11c_finalize(t->calls, &ignored);
        struct timespec pause = {0, SELECT_PAUSE_NS};
        nanosleep(&pause, NULL);
        if (p11c_initialize(t->calls, err) != P11KMS_OK &&
            err->ckr != CKR_CRYPTOKI_ALREADY_INITIALIZED)
            return err->code;
        p11kms_error_clear(err);
    }

    pthread_mutex_lock(&t->login_lock);
    p11kms_err rc = P11KMS_OK;
    if (t->pin_refused) {
        rc = refused(t, err);
        goto out;
    }
    if ((rc = check_token_flags(t, err)) != P11KMS_OK)
        goto out;
    t->login_required = (t->token_info.flags & CKF_LOGIN_REQUIRED) != 0;
    if ((rc = open_session(t, &t->login_session, err)) != P11KMS_OK)
        goto out;
    t->login_session_open = true;
    if (t->login_required)
        rc = login_locked(t, err);
out:
    pthread_mutex_unlock(&t->login_lock);
    if (rc != P11KMS_OK)
        return rc;

    pthread_mutex_lock(&t->pool_lock);
    t->capacity = pool_capacity(t);
    t->open = 0;
    t->epoch++;
    pthread_mutex_unlock(&t->pool_lock);
    atomic_fetch_add(&t->gen, 1);
    return P11KMS_OK;
}

/* Gives up every session: closes the ones this process opened, forgets the ones inherited across
 * fork() (closing those could close the parent's sessions on a networked HSM). */
static void drop_sessions(p11_token *t)
{
    pthread_mutex_lock(&t->pool_lock);
    p11_session *idle = t->idle, *stale = t->stale;
    t->idle = NULL;
    t->stale = NULL;
    t->open = 0;
    pthread_mutex_unlock(&t->pool_lock);
    while (idle != NULL) {
        p11_session *next = idle->next;
        close_quietly(t, idle->handle);
        session_free(idle);
        idle = next;
    }
    while (stale != NULL) {
        p11_session *next = stale->next;
        session_free(stale);
        stale = next;
    }
    pthread_mutex_lock(&t->login_lock);
    if (t->login_session_open)
        close_quietly(t, t->login_session);
    t->login_session_open = false;
    pthread_mutex_unlock(&t->login_lock);
}

void p11_token_stop(p11_token *t)
{
    if (t->calls == NULL)
        return;
    drop_sessions(t);
    if (t->module_initialized) {
        p11kms_error ignored = {0};
        (void)p11c_finalize(t->calls, &ignored);
        t->module_initialized = false;
    }
}

/* Runs with reinit_busy set and no session in use. */
static p11kms_err reinit(p11_token *t, p11kms_error *err)
{
    p11_token_stop(t);
    p11kms_err rc = p11_token_start(t, err);
    if (rc == P11KMS_OK || rc == P11KMS_E_PIN || rc == P11KMS_E_CONFIG)
        return rc;
    return P11KMS_RAISE(err, P11KMS_E_KEY_UNAVAILABLE,
                        "token %s is unreachable: re-initializing the module failed: %s",
                        t->token_uri, err->message);
}

/* --- the pool ----------------------------------------------------------------------------------
 */

p11kms_err p11_pool_checkout(p11_token *t, p11_session **out, p11kms_error *err)
{
    pthread_mutex_lock(&t->pool_lock);
    for (;;) {
        if (t->state == P11_STATE_READY && t->exclusive) {
            pthread_cond_wait(&t->cond_state, &t->pool_lock);
            continue;
        }
        if (t->state == P11_STATE_READY) {
            p11_session *s = t->idle;
            if (s != NULL) {
                t->idle = s->next;
                t->in_use++;
                pthread_mutex_unlock(&t->pool_lock);
                s->next = NULL;
                *out = s;
                return P11KMS_OK;
            }
            if (t->open < t->capacity) {
                t->open++;
                t->in_use++;
                uint64_t epoch = t->epoch;
                pthread_mutex_unlock(&t->pool_lock);
                s = calloc(1, sizeof(*s));
                p11kms_err rc =
                    s == NULL ? P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory for a session")
                              : open_session(t, &s->handle, err);
                if (rc == P11KMS_OK) {
                    s->epoch = epoch;
                    *out = s;
                    return P11KMS_OK;
                }
                free(s);
                pthread_mutex_lock(&t->pool_lock);
                if (epoch == t->epoch) {
                    t->open--;
                    t->in_use--;
                    pthread_cond_signal(&t->cond_free);
                    if (t->in_use == 0)
                        pthread_cond_broadcast(&t->cond_state);
                }
                if (rc == P11KMS_E_TOKEN && err->ckr == CKR_SESSION_COUNT && t->open > 0) {
                    /* The token has fewer sessions than it said: make do with the open ones. */
                    t->capacity = t->open;
                    p11kms_error_clear(err);
                    continue;
                }
                pthread_mutex_unlock(&t->pool_lock);
                return rc;
            }
            t->waiting++;
            pthread_cond_wait(&t->cond_free, &t->pool_lock);
            t->waiting--;
            continue;
        }
        if (t->state == P11_STATE_ERROR) {
            p11kms_err code = t->error_code;
            CK_RV ckr = t->error_ckr;
            pthread_mutex_unlock(&t->pool_lock);
            P11KMS_RAISE(err, code, "token %s is unusable: %s", t->token_uri,
                         code == P11KMS_E_PIN ? "the PIN was refused and is not tried again"
                                              : "an earlier failure was final");
            err->ckr = ckr;
            return code;
        }
        /* NEEDS_REINIT: one thread re-initializes once every session is back. */
        if (t->reinit_busy || t->in_use > 0 || t->exclusive) {
            pthread_cond_wait(&t->cond_state, &t->pool_lock);
            continue;
        }
        t->reinit_busy = true;
        pthread_mutex_unlock(&t->pool_lock);
        p11kms_err rc = reinit(t, err);
        if (rc == P11KMS_E_PIN || rc == P11KMS_E_CONFIG)
            set_error_state(t, rc, err->ckr);
        pthread_mutex_lock(&t->pool_lock);
        t->reinit_busy = false;
        if (rc == P11KMS_OK && t->state == P11_STATE_NEEDS_REINIT)
            t->state = P11_STATE_READY;
        pthread_cond_broadcast(&t->cond_state);
        pthread_cond_broadcast(&t->cond_free);
        if (rc != P11KMS_OK) {
            pthread_mutex_unlock(&t->pool_lock);
            return rc;
        }
    }
}

void p11_pool_checkin(p11_token *t, p11_session *s)
{
    if (s == NULL) /* like free(): nothing checked out, nothing to return */
        return;
    if (s->scratch_cap > SCRATCH_KEEP) {
        OPENSSL_secure_clear_free(s->scratch, s->scratch_cap);
        s->scratch = NULL;
        s->scratch_cap = 0;
    }
    pthread_mutex_lock(&t->pool_lock);
    if (s->epoch != t->epoch) {
        /* Opened before a fork or re-initialization: neither ours to close nor counted. */
        pthread_mutex_unlock(&t->pool_lock);
        session_free(s);
        return;
    }
    bool keep = !s->dead && !s->dirty && t->state == P11_STATE_READY;
    if (!keep && !s->dead) {
        /* Close while still counted in use, so no re-initialization runs under the call. */
        pthread_mutex_unlock(&t->pool_lock);
        close_quietly(t, s->handle);
        pthread_mutex_lock(&t->pool_lock);
    }
    t->in_use--;
    if (keep) {
        s->next = t->idle;
        t->idle = s;
    } else {
        t->open--;
    }
    if (t->waiting > 0)
        pthread_cond_signal(&t->cond_free);
    if (t->in_use == 0 && (t->state != P11_STATE_READY || t->exclusive))
        pthread_cond_broadcast(&t->cond_state);
    pthread_mutex_unlock(&t->pool_lock);
    if (!keep)
        session_free(s);
}

static p11kms_err noop_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    (void)t;
    (void)s;
    (void)arg;
    (void)err;
    return P11KMS_OK;
}

p11kms_err p11_pool_exclusive(p11_token *t, p11kms_err (*fn)(p11_token *t, p11kms_error *err),
                              p11kms_error *err)
{
    /* a checkout first: it re-initializes the module if that is pending */
    if (p11_run(t, NULL, noop_op, NULL, err) != P11KMS_OK)
        return err->code;
    pthread_mutex_lock(&t->pool_lock);
    while (t->exclusive || t->reinit_busy)
        pthread_cond_wait(&t->cond_state, &t->pool_lock);
    t->exclusive = true;
    while (t->in_use > 0)
        pthread_cond_wait(&t->cond_state, &t->pool_lock);
    pthread_mutex_unlock(&t->pool_lock);
    p11kms_err rc = fn(t, err);
    pthread_mutex_lock(&t->pool_lock);
    t->exclusive = false;
    pthread_cond_broadcast(&t->cond_state);
    pthread_cond_broadcast(&t->cond_free);
    pthread_mutex_unlock(&t->pool_lock);
    return rc;
}

/* After one session turned out dead, checks the idle ones so that the retry does not draw
 * another dead session. */
static void sweep_idle(p11_token *t)
{
    pthread_mutex_lock(&t->pool_lock);
    p11_session *list = t->idle;
    t->idle = NULL;
    for (p11_session *s = list; s != NULL; s = s->next)
        t->in_use++;
    pthread_mutex_unlock(&t->pool_lock);
    while (list != NULL) {
        p11_session *s = list;
        list = s->next;
        s->next = NULL;
        CK_SESSION_INFO si;
        p11kms_error e = {0};
        if (p11c_get_session_info(t->calls, s->handle, &si, &e) != P11KMS_OK) {
            if (e.ckr == CKR_SESSION_HANDLE_INVALID || e.ckr == CKR_SESSION_CLOSED)
                s->dead = true;
            else
                s->dirty = true;
        }
        p11_pool_checkin(t, s);
    }
}

/* --- running an operation with recovery --------------------------------------------------------
 */

typedef enum p11_fault {
    FAULT_NONE,    /* the operation's own answer: return it */
    FAULT_SESSION, /* the session is gone */
    FAULT_LOGIN,   /* logged out */
    FAULT_HANDLE,  /* the cached object handle is stale */
    FAULT_DEVICE,  /* the device failed; maybe transient */
    FAULT_STUCK,   /* an operation left active on the session by a token that did not end it */
    FAULT_GONE,    /* the token or module went away: re-initialize at once */
} p11_fault;

static p11_fault classify(p11kms_err rc, const p11kms_error *err, bool have_ref)
{
    if (rc != P11KMS_E_TOKEN)
        return FAULT_NONE;
    switch (err->ckr) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
        return FAULT_SESSION;
    case CKR_USER_NOT_LOGGED_IN:
        return FAULT_LOGIN;
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
        return have_ref ? FAULT_HANDLE : FAULT_NONE;
    case CKR_DEVICE_ERROR:
        return FAULT_DEVICE;
    case CKR_OPERATION_ACTIVE:
        return FAULT_STUCK;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return FAULT_GONE;
    default:
        return FAULT_NONE;
    }
}

p11kms_err p11_run(p11_token *t, p11_objref *ref, p11_op op, void *arg, p11kms_error *err)
{
    unsigned soft = 0;
    bool reinit_done = false;
    for (;;) {
        p11_session *s = NULL;
        p11kms_err rc = p11_pool_checkout(t, &s, err);
        if (rc == P11KMS_OK) {
            rc = op(t, s, arg, err);
            if (rc == P11KMS_OK) {
                p11_pool_checkin(t, s);
                return P11KMS_OK;
            }
        }
        p11_fault f = classify(rc, err, ref != NULL);
        if (f == FAULT_NONE) {
            if (s != NULL)
                p11_pool_checkin(t, s);
            return rc;
        }
        CK_RV last = err->ckr;
        if (s != NULL) {
            if (f == FAULT_SESSION || f == FAULT_GONE)
                s->dead = true;
            else if (f == FAULT_DEVICE || f == FAULT_STUCK)
                s->dirty = true;
        }
        bool recovered = false;
        unsigned budget = reinit_done ? RECOVERIES_AFTER_REINIT : SOFT_RECOVERIES;
        if (s != NULL && f != FAULT_GONE && soft < budget) {
            soft++;
            if (f == FAULT_HANDLE)
                p11_objref_invalidate(ref);
            if (f == FAULT_SESSION || f == FAULT_DEVICE)
                sweep_idle(t);
            /* Still holding s, so the module cannot be re-initialized under ensure_login. */
            p11kms_error sub = {0};
            p11kms_err r2 = ensure_login(t, &sub);
            p11_pool_checkin(t, s);
            if (r2 == P11KMS_E_PIN) {
                *err = sub;
                return r2;
            }
            recovered = r2 == P11KMS_OK;
        } else if (s != NULL) {
            p11_pool_checkin(t, s);
        }
        if (!recovered) {
            if (reinit_done) {
                P11KMS_RAISE(err, P11KMS_E_KEY_UNAVAILABLE,
                             "token %s is unreachable: %s persisted after re-initializing the "
                             "module",
                             t->token_uri, p11_ckr_name(last));
                err->ckr = last;
                return P11KMS_E_KEY_UNAVAILABLE;
            }
            mark_reinit(t);
            reinit_done = true;
            soft = 0;
        }
        p11kms_error_clear(err);
    }
}

/* --- fork ---------------------------------------------------------------------------------------
 */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static p11_token *registry;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Before fork(): no thread may be inside the module (SoftHSM would hand the child a mutex that
 * no thread of the child will ever release), and every lock is taken so that the child inherits
 * none held by a thread it does not have. So each token first waits for its operations in flight
 * (new ones wait), then takes its locks in the documented order. fork() is delayed by at most the
 * operations in flight. */
static void quiesce(p11_token *t)
{
    pthread_mutex_lock(&t->create_lock);
    pthread_mutex_lock(&t->pool_lock);
    while (t->exclusive || t->reinit_busy)
        pthread_cond_wait(&t->cond_state, &t->pool_lock);
    t->exclusive = true;
    while (t->in_use > 0)
        pthread_cond_wait(&t->cond_state, &t->pool_lock);
    pthread_mutex_unlock(&t->pool_lock);
    pthread_mutex_lock(&t->login_lock);
    pthread_mutex_lock(&t->cache_lock);
    pthread_mutex_lock(&t->pool_lock);
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (p11_token *t = registry; t != NULL; t = t->next_registered)
        quiesce(t);
}

static void unlock_token(p11_token *t)
{
    pthread_mutex_unlock(&t->pool_lock);
    pthread_mutex_unlock(&t->cache_lock);
    pthread_mutex_unlock(&t->login_lock);
    pthread_mutex_unlock(&t->create_lock);
}

static void fork_parent(void)
{
    for (p11_token *t = registry; t != NULL; t = t->next_registered) {
        t->exclusive = false;
        pthread_cond_broadcast(&t->cond_state);
        pthread_cond_broadcast(&t->cond_free);
        unlock_token(t);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Only marks: the child re-initializes lazily, under the pool lock, on its first use. */
static void fork_child(void)
{
    for (p11_token *t = registry; t != NULL; t = t->next_registered) {
        if (t->state == P11_STATE_READY)
            t->state = P11_STATE_NEEDS_REINIT;
        t->epoch++;
        while (t->idle != NULL) {
            p11_session *s = t->idle;
            t->idle = s->next;
            s->next = t->stale;
            t->stale = s;
        }
        t->in_use = 0;
        t->open = 0;
        t->waiting = 0;
        t->reinit_busy = false;
        t->exclusive = false;
        t->login_session_open = false;
        /* An atfork handler cannot report: a token whose conditions could not be made anew is
         * final in the child (every use fails with the error state, nothing waits on them). */
        if (pthread_cond_init(&t->cond_free, NULL) != 0 ||
            pthread_cond_init(&t->cond_state, NULL) != 0) {
            t->state = P11_STATE_ERROR;
            t->error_code = P11KMS_E_INTERNAL;
            t->error_ckr = 0;
        }
        unlock_token(t);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void fork_install(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void p11_fork_register(p11_token *t)
{
    pthread_once(&fork_once, fork_install);
    pthread_mutex_lock(&registry_lock);
    t->next_registered = registry;
    registry = t;
    pthread_mutex_unlock(&registry_lock);
}

void p11_fork_unregister(p11_token *t)
{
    pthread_mutex_lock(&registry_lock);
    for (p11_token **pp = &registry; *pp != NULL; pp = &(*pp)->next_registered) {
        if (*pp == t) {
            *pp = t->next_registered;
            break;
        }
    }
    t->next_registered = NULL;
    pthread_mutex_unlock(&registry_lock);
}
