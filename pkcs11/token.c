#include "config.h"

#include "pkcs11/internal.h"
#include "common/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <p11-kit/p11-kit.h>

static char *dup_or_null(const char *s, bool *ok)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *ok = false;
    return d;
}

static p11kms_err check_config(const p11_token_config *cfg, p11kms_error *err)
{
    if (cfg->iv_mode != P11_IV_HOST && cfg->iv_mode != P11_IV_TOKEN)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "unknown IV mode %d", (int)cfg->iv_mode);
    if (cfg->gcm_layout != P11_GCM_V240 && cfg->gcm_layout != P11_GCM_LEGACY)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "unknown CK_GCM_PARAMS layout %d",
                            (int)cfg->gcm_layout);
    if (cfg->rng != P11_RNG_TOKEN && cfg->rng != P11_RNG_OPENSSL)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "unknown random source %d", (int)cfg->rng);
    return P11KMS_OK;
}

p11kms_err p11_token_open(const p11_token_config *cfg, p11_token **out, p11kms_error *err)
{
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_open: no configuration");
    if (check_config(cfg, err) != P11KMS_OK)
        return err->code;
    p11_token *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory opening the token");
    const sync_obj locks[] = {
        {SYNC_MUTEX, &t->login_lock, "the token's login lock"},
        {SYNC_MUTEX, &t->pool_lock, "the token's session pool lock"},
        {SYNC_MUTEX, &t->cache_lock, "the token's handle cache lock"},
        {SYNC_MUTEX, &t->create_lock, "the token's create lock"},
        {SYNC_COND, &t->cond_free, "the token's free-session condition"},
        {SYNC_COND, &t->cond_state, "the token's state condition"},
    };
    p11kms_err sync_rc = sync_init_all(locks, sizeof(locks) / sizeof(locks[0]), err);
    if (sync_rc != P11KMS_OK) {
        free(t);
        return sync_rc;
    }
    atomic_init(&t->gen, 1);
    t->state = P11_STATE_UNINITIALIZED;
    static _Atomic uint64_t next_serial = 1;
    t->serial = atomic_fetch_add(&next_serial, 1);

    t->keys = hashmap_new();
    t->data = hashmap_new();
    bool ok = t->keys != NULL && t->data != NULL;
    t->module = dup_or_null(cfg->module, &ok);
    t->module_args = dup_or_null(cfg->module_args, &ok);
    t->token_uri = dup_or_null(cfg->token_uri, &ok);
    t->pin_source = dup_or_null(cfg->pin_source, &ok);
    t->insecure_pin_file = cfg->insecure_pin_file;
    t->pool_wanted = cfg->pool_size;
    t->iv_mode = cfg->iv_mode;
    t->gcm_layout = cfg->gcm_layout;
    t->rng = cfg->rng;
    t->libctx = cfg->libctx;
    p11kms_err rc;
    if (!ok)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory opening the token");
    else if ((rc = p11_uri_parse(t->token_uri, &t->uri, err)) == P11KMS_OK &&
             (rc = p11_module_load(t, err)) == P11KMS_OK)
        rc = p11_token_start(t, err);
    if (rc != P11KMS_OK) {
        p11_token_close(t);
        return rc;
    }
    t->state = P11_STATE_READY;
    p11_fork_register(t);
    /* A token that cannot serve is refused now, not at the first key it cannot use. */
    if (!cfg->skip_capability_check && (rc = p11_token_check(t, err)) != P11KMS_OK) {
        p11_token_close(t);
        return rc;
    }
    *out = t;
    return P11KMS_OK;
}

void p11_token_close(p11_token *t)
{
    if (t == NULL)
        return;
    p11_fork_unregister(t);
    p11_random_pool_forget(t);
    p11_token_stop(t);
    p11_keys_free_all(t);
    p11_data_free_all(t);
    p11_module_unload(t);
    p11_pin_free(t->pin, t->pin_len);
    if (t->uri != NULL)
        p11_kit_uri_free(t->uri);
    free(t->module);
    free(t->module_args);
    free(t->token_uri);
    free(t->pin_source);
    pthread_cond_destroy(&t->cond_state);
    pthread_cond_destroy(&t->cond_free);
    pthread_mutex_destroy(&t->create_lock);
    pthread_mutex_destroy(&t->cache_lock);
    pthread_mutex_destroy(&t->pool_lock);
    pthread_mutex_destroy(&t->login_lock);
    free(t);
}

/* --- information ------------------------------------------------------------------------------ */

static void copy_padded(char *dst, size_t dst_size, const unsigned char *src, size_t src_len)
{
    size_t n = p11_kit_space_strlen(src, src_len);
    if (n >= dst_size)
        n = dst_size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

struct info_args {
    CK_TOKEN_INFO token;
    CK_INFO module;
    CK_SLOT_ID slot;
};

/* Reads the fields a re-initialization rewrites while holding a session, which excludes it. */
static p11kms_err token_info_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    (void)s;
    struct info_args *a = arg;
    a->module = t->module_info;
    a->slot = t->slot;
    return p11c_get_token_info(t->calls, t->slot, &a->token, err);
}

p11kms_err p11_token_get_info(p11_token *t, p11_token_info *info, p11kms_error *err)
{
    if (t == NULL || info == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_get_info: missing argument");
    struct info_args a;
    if (p11_run(t, NULL, token_info_op, &a, err) != P11KMS_OK)
        return err->code;
    const CK_TOKEN_INFO ti = a.token;
    const CK_INFO mi = a.module;
    memset(info, 0, sizeof(*info));
    snprintf(info->module, sizeof(info->module), "%s", t->module);
    info->slot_id = a.slot;
    pthread_mutex_lock(&t->pool_lock);
    info->pool_size = t->capacity;
    pthread_mutex_unlock(&t->pool_lock);
    copy_padded(info->library_description, sizeof(info->library_description), mi.libraryDescription,
                sizeof(mi.libraryDescription));
    copy_padded(info->library_manufacturer, sizeof(info->library_manufacturer), mi.manufacturerID,
                sizeof(mi.manufacturerID));
    info->library_version_major = mi.libraryVersion.major;
    info->library_version_minor = mi.libraryVersion.minor;
    info->cryptoki_major = mi.cryptokiVersion.major;
    info->cryptoki_minor = mi.cryptokiVersion.minor;
    info->via_get_interface = t->via_get_interface;
    copy_padded(info->token_label, sizeof(info->token_label), ti.label, sizeof(ti.label));
    copy_padded(info->token_manufacturer, sizeof(info->token_manufacturer), ti.manufacturerID,
                sizeof(ti.manufacturerID));
    copy_padded(info->token_model, sizeof(info->token_model), ti.model, sizeof(ti.model));
    copy_padded(info->token_serial, sizeof(info->token_serial), ti.serialNumber,
                sizeof(ti.serialNumber));
    info->max_rw_sessions = ti.ulMaxRwSessionCount;
    return P11KMS_OK;
}

static const struct {
    CK_MECHANISM_TYPE mechanism;
    const char *name;
    CK_FLAGS needs;
    const char *purpose;
} wanted_mechanisms[] = {
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", CKF_GENERATE, "generate AES-256 master keys"},
    {CKM_AES_GCM, "CKM_AES_GCM", CKF_ENCRYPT | CKF_DECRYPT,
     "encrypt and decrypt under master keys"},
    {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD", CKF_WRAP | CKF_UNWRAP,
     "wrap and unwrap imported key material (RFC 5649)"},
    {CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP", CKF_UNWRAP,
     "unwrap the ephemeral key of a key import"},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN", CKF_GENERATE_KEY_PAIR,
     "generate key import wrapping key pairs"},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC", CKF_SIGN, "sign with HMAC-SHA256"},
};
#define N_WANTED (sizeof(wanted_mechanisms) / sizeof(wanted_mechanisms[0]))

struct mech_args {
    p11_mechanism_report *out;
    size_t n;
};

static p11kms_err mechanisms_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    (void)s;
    struct mech_args *a = arg;
    CK_ULONG count = 0;
    CK_MECHANISM_TYPE *list = NULL;
    for (int tries = 0;; tries++) {
        if (p11c_get_mechanism_list(t->calls, t->slot, NULL, &count, err) != P11KMS_OK)
            return err->code;
        free(list);
        list = calloc(count + 1, sizeof(*list));
        if (list == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing mechanisms");
        if (p11c_get_mechanism_list(t->calls, t->slot, list, &count, err) == P11KMS_OK)
            break;
        if (err->ckr != CKR_BUFFER_TOO_SMALL || tries >= 3) {
            free(list);
            return err->code;
        }
    }
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < a->n; i++) {
        p11_mechanism_report *r = &a->out[i];
        memset(r, 0, sizeof(*r));
        r->mechanism = wanted_mechanisms[i].mechanism;
        r->name = wanted_mechanisms[i].name;
        r->purpose = wanted_mechanisms[i].purpose;
        bool listed = false;
        for (CK_ULONG j = 0; j < count && !listed; j++)
            listed = list[j] == r->mechanism;
        if (!listed)
            continue;
        CK_MECHANISM_INFO mi;
        if ((rc = p11c_get_mechanism_info(t->calls, t->slot, r->mechanism, &mi, err)) != P11KMS_OK)
            break;
        r->supported = (mi.flags & wanted_mechanisms[i].needs) == wanted_mechanisms[i].needs;
        r->min_key_size = mi.ulMinKeySize;
        r->max_key_size = mi.ulMaxKeySize;
    }
    free(list);
    return rc;
}

p11kms_err p11_token_mechanisms(p11_token *t, p11_mechanism_report *out, size_t *count,
                                p11kms_error *err)
{
    if (t == NULL || count == NULL || (out == NULL && *count > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_mechanisms: missing argument");
    struct mech_args a = {out, *count < N_WANTED ? *count : N_WANTED};
    if (p11_run(t, NULL, mechanisms_op, &a, err) != P11KMS_OK)
        return err->code;
    *count = a.n;
    return P11KMS_OK;
}

/* --- random ----------------------------------------------------------------------------------- */

struct random_args {
    uint8_t *buf;
    size_t len;
};

/* NSS softokn refuses more than 65,536 bytes per C_GenerateRandom; other tokens have smaller
 * limits. A refused length is halved (down to 32 bytes) and the smaller chunk kept. */
#define RANDOM_CHUNK_MAX 65536u
#define RANDOM_CHUNK_MIN 32u

static p11kms_err random_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct random_args *a = arg;
    size_t limit = atomic_load(&t->random_chunk);
    if (limit == 0)
        limit = RANDOM_CHUNK_MAX;
    for (size_t done = 0; done < a->len;) {
        size_t chunk = a->len - done > limit ? limit : a->len - done;
        p11kms_error probe = {0};
        if (p11c_generate_random(t->calls, s->handle, a->buf + done, (CK_ULONG)chunk, &probe) !=
            P11KMS_OK) {
            if ((probe.ckr == CKR_ARGUMENTS_BAD || probe.ckr == CKR_DATA_LEN_RANGE) &&
                chunk > RANDOM_CHUNK_MIN) {
                limit = chunk / 2 > RANDOM_CHUNK_MIN ? chunk / 2 : RANDOM_CHUNK_MIN;
                atomic_store(&t->random_chunk, limit);
                continue;
            }
            *err = probe;
            return probe.code;
        }
        done += chunk;
    }
    return P11KMS_OK;
}

p11kms_err p11_token_random(p11_token *t, uint8_t *buf, size_t len, p11kms_error *err)
{
    if (t == NULL || (buf == NULL && len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_token_random: missing argument");
    if (len == 0)
        return P11KMS_OK;
    if (t->rng == P11_RNG_OPENSSL) {
        if (RAND_bytes_ex(t->libctx, buf, len, 0) != 1)
            return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "OpenSSL's random generator failed");
        return P11KMS_OK;
    }
    struct random_args a = {buf, len};
    return p11_run(t, NULL, random_op, &a, err);
}

/* --- test support ----------------------------------------------------------------------------- */

static p11kms_err close_all(p11_token *t, p11kms_error *err)
{
    return p11c_close_all_sessions(t->calls, t->slot, err);
}

p11kms_err p11_token_test_close_all_sessions(p11_token *t, p11kms_error *err)
{
    if (t == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "no token");
    return p11_pool_exclusive(t, close_all, err);
}
