#include "config.h"

#include "pkcs11/internal.h"
#include "common/hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ids of session keys, unique in the process (session objects are visible to every session of
 * the application, whichever p11_token created them). */
static _Atomic unsigned long session_key_counter;

#define ID_MAX 256

static void id_hex(char *out, size_t size, const uint8_t *id, size_t len)
{
    size_t max = (size - 3) / 2; /* room for ".." and the NUL */
    size_t n = len < max ? len : max;
    hex_encode(id, n, out);
    if (n < len)
        memcpy(out + 2 * n, "..", 3);
}

static p11_key *key_alloc(const uint8_t *id, size_t id_len, bool session_object)
{
    p11_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->id = malloc(id_len);
    if (k->id == NULL) {
        free(k);
        return NULL;
    }
    memcpy(k->id, id, id_len);
    k->id_len = id_len;
    k->session_object = session_object;
    atomic_init(&k->ref.handle, CK_INVALID_HANDLE);
    atomic_init(&k->ref.gen, 0);
    return k;
}

static void key_free(p11_key *k)
{
    if (k == NULL)
        return;
    free(k->id);
    free(k);
}

/* cache_lock held */
static void own(p11_token *t, p11_key *k)
{
    k->prev = NULL;
    k->next = t->owned;
    if (t->owned != NULL)
        t->owned->prev = k;
    t->owned = k;
}

/* cache_lock held */
static void disown(p11_token *t, p11_key *k)
{
    if (k->prev != NULL)
        k->prev->next = k->next;
    else if (t->owned == k)
        t->owned = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

void p11_keys_free_all(p11_token *t)
{
    pthread_mutex_lock(&t->cache_lock);
    p11_key *k = t->owned;
    t->owned = NULL;
    hashmap_free(t->keys, NULL);
    t->keys = NULL;
    pthread_mutex_unlock(&t->cache_lock);
    while (k != NULL) {
        p11_key *next = k->next;
        key_free(k);
        k = next;
    }
}

static p11kms_err copy_object(p11_token *t, p11_session *s, p11_key *k, CK_OBJECT_HANDLE *h,
                              p11kms_error *err);

p11kms_err p11_key_finder(p11_token *t, p11_session *s, void *arg, CK_OBJECT_HANDLE *h,
                          p11kms_error *err)
{
    p11_key *k = arg;
    if (k->source != NULL)
        return copy_object(t, s, k, h, err);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL on_token = k->session_object ? CK_FALSE : CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_ID, k->id, k->id_len},
    };
    p11kms_err rc = p11_find_one(t, s, tmpl, 3, "secret key with this CKA_ID", h, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        char hex[80];
        id_hex(hex, sizeof(hex), k->id, k->id_len);
        P11KMS_RAISE(err, rc, "no secret key with CKA_ID %s in token %s", hex, t->token_uri);
    }
    return rc;
}

static p11kms_err check_id(const uint8_t *id, size_t id_len, p11kms_error *err)
{
    if (id == NULL || id_len == 0 || id_len > ID_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "a key id must be 1 to %d bytes", ID_MAX);
    return P11KMS_OK;
}

/* Puts k in the cache unless another thread was first; returns the cached key. */
static p11_key *cache_key(p11_token *t, p11_key *k, p11kms_error *err)
{
    pthread_mutex_lock(&t->cache_lock);
    p11_key *have = hashmap_get_bytes(t->keys, k->id, k->id_len);
    if (have == NULL) {
        if (!hashmap_put_bytes(t->keys, k->id, k->id_len, k, NULL)) {
            pthread_mutex_unlock(&t->cache_lock);
            key_free(k);
            P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory caching a key");
            return NULL;
        }
        own(t, k);
        have = k;
        k = NULL;
    }
    pthread_mutex_unlock(&t->cache_lock);
    key_free(k);
    return have;
}

/* --- find ------------------------------------------------------------------------------------- */

static p11kms_err resolve_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_key *k = arg;
    CK_OBJECT_HANDLE h;
    return p11_objref_refresh(t, s, &k->ref, p11_key_finder, k, &h, err);
}

p11kms_err p11_key_find(p11_token *t, const uint8_t *id, size_t id_len, p11_key **out,
                        p11kms_error *err)
{
    if (t == NULL || out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_find: missing argument");
    *out = NULL;
    if (check_id(id, id_len, err) != P11KMS_OK)
        return err->code;
    pthread_mutex_lock(&t->cache_lock);
    p11_key *k = hashmap_get_bytes(t->keys, id, id_len);
    pthread_mutex_unlock(&t->cache_lock);
    if (k != NULL) {
        *out = k;
        return P11KMS_OK;
    }
    k = key_alloc(id, id_len, false);
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory for a key");
    if (p11_run(t, &k->ref, resolve_op, k, err) != P11KMS_OK) {
        key_free(k);
        return err->code;
    }
    if ((*out = cache_key(t, k, err)) == NULL)
        return err->code;
    return P11KMS_OK;
}

/* --- generate --------------------------------------------------------------------------------- */

struct generate_args {
    p11_key *key;
    const char *label;
};

static p11kms_err generate_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct generate_args *a = arg;
    p11_key *k = a->key;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_ID, k->id, k->id_len},
    };
    CK_OBJECT_HANDLE *existing = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, find, 3, &existing, &n, err) != P11KMS_OK)
        return err->code;
    free(existing);
    if (n > 0) {
        char hex[80];
        id_hex(hex, sizeof(hex), k->id, k->id_len);
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                            "a secret key with CKA_ID %s already exists in token %s", hex,
                            t->token_uri);
    }

    CK_KEY_TYPE key_type = CKK_AES;
    CK_ULONG value_len = P11_AES256_KEY_LEN;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},
        /* usage is switched off with C_SetAttributeValue when a key leaves Enabled */
        {CKA_MODIFIABLE, &yes, sizeof(yes)},
        {CKA_ID, k->id, k->id_len},
        {CKA_LABEL, (void *)a->label, strlen(a->label)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    if (p11c_generate_key(t->calls, s->handle, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h,
                          err) != P11KMS_OK)
        return err->code;
    atomic_store(&k->ref.handle, h);
    atomic_store(&k->ref.gen, gen);
    return P11KMS_OK;
}

/* The key must be what the template asked for, and must never have been extractable. */
static p11kms_err verify_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_key *k = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &k->ref, p11_key_finder, k, &h, err) != P11KMS_OK)
        return err->code;
    CK_BBOOL never_extractable = CK_FALSE, always_sensitive = CK_FALSE, extractable = CK_TRUE,
             sensitive = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(CK_BBOOL)},
        {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &extractable, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &sensitive, sizeof(CK_BBOOL)},
    };
    p11kms_err rc = p11c_get_attribute_value(t->calls, s->handle, h, tmpl, 4, err);
    if (rc == P11KMS_OK && never_extractable == CK_TRUE && always_sensitive == CK_TRUE &&
        extractable == CK_FALSE && sensitive == CK_TRUE)
        return P11KMS_OK;
    if (rc != P11KMS_OK && err->ckr != CKR_ATTRIBUTE_TYPE_INVALID &&
        err->ckr != CKR_ATTRIBUTE_SENSITIVE)
        return rc; /* could not read: recovery may retry the check */
    p11kms_error ignored = {0};
    (void)p11c_destroy_object(t->calls, s->handle, h, &ignored);
    P11KMS_RAISE(err, P11KMS_E_TOKEN,
                 "the generated key is not protected as required (never-extractable %d, "
                 "always-sensitive %d, extractable %d, sensitive %d): destroyed it",
                 never_extractable, always_sensitive, extractable, sensitive);
    err->ckr = 0;
    return P11KMS_E_TOKEN;
}

p11kms_err p11_key_generate(p11_token *t, const uint8_t *id, size_t id_len, const char *label,
                            p11_key **out, p11kms_error *err)
{
    if (t == NULL || out == NULL || label == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_generate: missing argument");
    *out = NULL;
    if (check_id(id, id_len, err) != P11KMS_OK)
        return err->code;
    /* Never a key that can be created but not used. */
    if (p11_token_check_generate(t, err) != P11KMS_OK)
        return err->code;
    p11_key *k = key_alloc(id, id_len, false);
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory for a key");
    struct generate_args a = {k, label};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, generate_op, &a, err);
    if (rc == P11KMS_OK)
        rc = p11_run(t, &k->ref, verify_op, k, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc != P11KMS_OK) {
        key_free(k);
        return rc;
    }
    /* A stale cache entry for this id (key deleted elsewhere) gives way to the new key. */
    pthread_mutex_lock(&t->cache_lock);
    p11_key *old = hashmap_get_bytes(t->keys, id, id_len);
    if (old != NULL)
        p11_objref_invalidate(&old->ref);
    pthread_mutex_unlock(&t->cache_lock);
    if (old != NULL) {
        key_free(k);
        *out = old;
        return P11KMS_OK;
    }
    if ((*out = cache_key(t, k, err)) == NULL)
        return err->code;
    return P11KMS_OK;
}

p11_key *p11_key_new(const uint8_t *id, size_t id_len)
{
    return key_alloc(id, id_len, false);
}

void p11_key_free(p11_key *k)
{
    key_free(k);
}

p11_key *p11_key_adopt(p11_token *t, p11_key *k, p11kms_error *err)
{
    pthread_mutex_lock(&t->cache_lock);
    p11_key *old = hashmap_get_bytes(t->keys, k->id, k->id_len);
    if (old != NULL) {
        p11_objref_invalidate(&old->ref);
        atomic_store(&old->hmac_checked, false); /* the kind is checked again on next use */
    }
    pthread_mutex_unlock(&t->cache_lock);
    if (old != NULL) {
        key_free(k);
        return old;
    }
    return cache_key(t, k, err);
}

/* --- session keys ----------------------------------------------------------------------------- */

struct session_key_args {
    p11_key *key;
    const uint8_t *value; /* NULL: generate (CKM_AES_KEY_GEN) a key of len bytes */
    size_t len;
};

/* Session objects die with the session that created them: create on the long-lived login
 * session, not on a pool session that recovery may close. */
static p11kms_err create_session_key_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    (void)s;
    struct session_key_args *a = arg;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE key_type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},        {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
        {CKA_TOKEN, &no, sizeof(no)},          {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},    {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},      {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_MODIFIABLE, &yes, sizeof(yes)},   {CKA_ID, a->key->id, a->key->id_len},
        {CKA_VALUE, (void *)a->value, a->len},
    };
    CK_ULONG count = sizeof(tmpl) / sizeof(tmpl[0]);
    CK_ULONG value_len = a->len;
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    if (a->value == NULL) /* generated: the class is implied, the length asked for */
        tmpl[count - 1] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &value_len, sizeof(value_len)};
    CK_SESSION_HANDLE login;
    if (p11_login_session_lock(t, &login, err) != P11KMS_OK)
        return err->code;
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    p11kms_err rc = a->value != NULL
                        ? p11c_create_object(t->calls, login, tmpl, count, &h, err)
                        : p11c_generate_key(t->calls, login, &mech, tmpl, count, &h, err);
    p11_login_session_unlock(t);
    if (rc == P11KMS_OK) {
        atomic_store(&a->key->ref.handle, h);
        atomic_store(&a->key->ref.gen, gen);
    }
    return rc;
}

static p11kms_err session_aes(p11_token *t, const uint8_t *value, size_t len, p11_key **out,
                              p11kms_error *err)
{
    char id[64];
    int n = snprintf(id, sizeof(id), "p11kms-session-key-%lu",
                     (unsigned long)atomic_fetch_add(&session_key_counter, 1));
    p11_key *k = key_alloc((const uint8_t *)id, (size_t)n, true);
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory for a key");
    struct session_key_args a = {k, value, len};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, create_session_key_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc != P11KMS_OK) {
        key_free(k);
        return rc;
    }
    pthread_mutex_lock(&t->cache_lock);
    own(t, k);
    pthread_mutex_unlock(&t->cache_lock);
    *out = k;
    return P11KMS_OK;
}

p11kms_err p11_key_create_session_aes(p11_token *t, const uint8_t *value, size_t len, p11_key **out,
                                      p11kms_error *err)
{
    if (t == NULL || out == NULL || value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "p11_key_create_session_aes: missing argument");
    *out = NULL;
    if (len != 16 && len != 24 && len != 32)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "an AES key is 16, 24 or 32 bytes, not %zu",
                            len);
    return session_aes(t, value, len, out, err);
}

p11kms_err p11_key_generate_session_aes(p11_token *t, p11_key **out, p11kms_error *err)
{
    *out = NULL;
    return session_aes(t, NULL, P11_AES256_KEY_LEN, out, err);
}

/* --- session copies of token keys ------------------------------------------------------------ */

/* Copies k->source into a session object on the login session (session objects die with the
 * session that created them; the login session lives as long as the login) and checks that the
 * copy is as protected as its source. Also the finder of a copy: after the token lost the login
 * session (every generation change) the copy is gone and is made again. */
static p11kms_err copy_object(p11_token *t, p11_session *s, p11_key *k, CK_OBJECT_HANDLE *h,
                              p11kms_error *err)
{
    CK_OBJECT_HANDLE src;
    if (p11_objref_handle(t, s, &k->source->ref, p11_key_finder, k->source, &src, err) != P11KMS_OK)
        return err->code;
    /* Only CKA_TOKEN: a copy inherits CKA_SENSITIVE and CKA_EXTRACTABLE, and tokens refuse to
     * have them in the template (SoftHSM: CKR_ATTRIBUTE_READ_ONLY); checked below instead. */
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_TOKEN, &no, sizeof(no)},
    };
    CK_SESSION_HANDLE login;
    if (p11_login_session_lock(t, &login, err) != P11KMS_OK)
        return err->code;
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE copy;
    p11kms_err rc = p11c_copy_object(t->calls, login, src, tmpl, 1, &copy, err);
    p11_login_session_unlock(t);
    if (rc != P11KMS_OK) {
        /* A stale source handle: find the source again when p11_run retries. */
        if (err->ckr == CKR_OBJECT_HANDLE_INVALID)
            p11_objref_invalidate(&k->source->ref);
        return rc;
    }
    CK_BBOOL token = CK_TRUE, sensitive = CK_FALSE, extractable = CK_TRUE;
    CK_ATTRIBUTE check[] = {
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
    };
    rc = p11c_get_attribute_value(t->calls, s->handle, copy, check, 3, err);
    if (rc == P11KMS_OK && (token != CK_FALSE || sensitive != CK_TRUE || extractable != CK_FALSE)) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN,
                     "the token's copy of a key is not protected as required (token %d, "
                     "sensitive %d, extractable %d): destroyed it",
                     token, sensitive, extractable);
        err->ckr = 0;
        rc = P11KMS_E_TOKEN;
    }
    if (rc != P11KMS_OK) {
        p11kms_error ignored = {0};
        (void)p11c_destroy_object(t->calls, s->handle, copy, &ignored);
        return rc;
    }
    atomic_store(&k->ref.handle, copy);
    atomic_store(&k->ref.gen, gen);
    *h = copy;
    return P11KMS_OK;
}

static p11kms_err copy_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    CK_OBJECT_HANDLE h;
    return copy_object(t, s, arg, &h, err);
}

p11kms_err p11_key_copy_session(p11_token *t, p11_key *source, p11_key **out, p11kms_error *err)
{
    if (t == NULL || source == NULL || out == NULL || source->source != NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_copy_session: bad argument");
    *out = NULL;
    p11_key *k = key_alloc(source->id, source->id_len, true);
    if (k == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory for a key");
    k->source = source;
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, &source->ref, copy_op, k, err);
    pthread_mutex_unlock(&t->create_lock);
    if (rc != P11KMS_OK) {
        key_free(k);
        return rc;
    }
    pthread_mutex_lock(&t->cache_lock);
    own(t, k);
    pthread_mutex_unlock(&t->cache_lock);
    *out = k;
    return P11KMS_OK;
}

/* --- destroy, usage, attributes --------------------------------------------------------------- */

static p11kms_err destroy_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_key *k = arg;
    CK_OBJECT_HANDLE h;
    /* A copy from an older generation died with the session it was made on: nothing to do
     * (finding it would make a new copy). */
    if (k->source != NULL &&
        atomic_load(&k->ref.gen) != atomic_load_explicit(&t->gen, memory_order_relaxed))
        return P11KMS_OK;
    if (p11_objref_handle(t, s, &k->ref, p11_key_finder, k, &h, err) != P11KMS_OK)
        return err->code;
    return p11c_destroy_object(t->calls, s->handle, h, err);
}

p11kms_err p11_key_destroy(p11_token *t, p11_key *key, p11kms_error *err)
{
    if (t == NULL || key == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_destroy: missing argument");
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, &key->ref, destroy_op, key, err);
    pthread_mutex_unlock(&t->create_lock);
    pthread_mutex_lock(&t->cache_lock);
    if (!key->session_object && hashmap_get_bytes(t->keys, key->id, key->id_len) == key)
        hashmap_remove_bytes(t->keys, key->id, key->id_len);
    disown(t, key);
    pthread_mutex_unlock(&t->cache_lock);
    key_free(key);
    return rc;
}

struct usage_args {
    p11_key *key;
    CK_BBOOL allowed;
};

static p11kms_err usage_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct usage_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_ENCRYPT, &a->allowed, sizeof(a->allowed)},
        {CKA_DECRYPT, &a->allowed, sizeof(a->allowed)},
    };
    return p11c_set_attribute_value(t->calls, s->handle, h, tmpl, 2, err);
}

p11kms_err p11_key_set_usage(p11_token *t, p11_key *key, bool allowed, p11kms_error *err)
{
    if (t == NULL || key == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_set_usage: missing argument");
    struct usage_args a = {key, allowed ? CK_TRUE : CK_FALSE};
    return p11_run(t, &key->ref, usage_op, &a, err);
}

struct attr_args {
    p11_key *key;
    p11_key_attributes *out;
};

static p11kms_err attributes_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct attr_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->key->ref, p11_key_finder, a->key, &h, err) != P11KMS_OK)
        return err->code;
    static const CK_ATTRIBUTE_TYPE bool_types[] = {
        CKA_TOKEN,       CKA_PRIVATE,          CKA_SENSITIVE,
        CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE,
        CKA_ENCRYPT,     CKA_DECRYPT,          CKA_WRAP,
        CKA_UNWRAP,      CKA_DERIVE,           CKA_SIGN,
        CKA_VERIFY,      CKA_MODIFIABLE,
    };
    enum { NB = sizeof(bool_types) / sizeof(bool_types[0]) };
    CK_BBOOL b[NB];
    CK_KEY_TYPE key_type = 0;
    CK_ULONG value_len = 0;
    CK_ATTRIBUTE tmpl[NB + 2];
    for (size_t i = 0; i < NB; i++) {
        b[i] = CK_FALSE;
        tmpl[i] = (CK_ATTRIBUTE){bool_types[i], &b[i], sizeof(b[i])};
    }
    tmpl[NB] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &key_type, sizeof(key_type)};
    tmpl[NB + 1] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &value_len, sizeof(value_len)};
    /* A missing attribute reads as false (or 0): the report of a token that lacks one. */
    if (p11_get_attrs(t, s, h, tmpl, NB + 2, err) != P11KMS_OK)
        return err->code;
    for (size_t i = 0; i < NB; i++)
        if (tmpl[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            b[i] = CK_FALSE;
    uint8_t *label = NULL;
    size_t label_len = 0;
    if (p11_get_attr_alloc(t, s, h, CKA_LABEL, &label, &label_len, err) != P11KMS_OK)
        return err->code;
    p11_key_attributes *o = a->out;
    memset(o, 0, sizeof(*o));
    bool *dst[NB] = {&o->token,       &o->private_,         &o->sensitive,
                     &o->extractable, &o->always_sensitive, &o->never_extractable,
                     &o->encrypt,     &o->decrypt,          &o->wrap,
                     &o->unwrap,      &o->derive,           &o->sign,
                     &o->verify,      &o->modifiable};
    for (size_t i = 0; i < NB; i++)
        *dst[i] = b[i] == CK_TRUE;
    o->key_type = key_type;
    o->value_len = value_len;
    if (label_len >= sizeof(o->label))
        label_len = sizeof(o->label) - 1;
    memcpy(o->label, label, label_len);
    o->label[label_len] = '\0';
    free(label);
    return P11KMS_OK;
}

p11kms_err p11_key_get_attributes(p11_token *t, p11_key *key, p11_key_attributes *attrs,
                                  p11kms_error *err)
{
    if (t == NULL || key == NULL || attrs == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_get_attributes: missing argument");
    struct attr_args a = {key, attrs};
    return p11_run(t, &key->ref, attributes_op, &a, err);
}

/* --- list ------------------------------------------------------------------------------------- */

typedef struct listed_key {
    uint8_t *id;
    size_t id_len;
    char *label;
    bool encrypt, decrypt, sensitive, extractable;
} listed_key;

struct list_args {
    const char *prefix;
    listed_key *items;
    size_t n;
};

static void free_listed(struct list_args *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].id);
        free(a->items[i].label);
    }
    free(a->items);
    a->items = NULL;
    a->n = 0;
}

static p11kms_err list_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct list_args *a = arg;
    free_listed(a); /* from a failed earlier attempt */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
    };
    CK_OBJECT_HANDLE *hs = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, tmpl, 2, &hs, &n, err) != P11KMS_OK)
        return err->code;
    a->items = calloc(n + 1, sizeof(*a->items));
    if (a->items == NULL) {
        free(hs);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing keys");
    }
    size_t plen = strlen(a->prefix);
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < n; i++) {
        uint8_t *label = NULL, *id = NULL;
        size_t label_len = 0, id_len = 0;
        rc = p11_get_attr_alloc(t, s, hs[i], CKA_LABEL, &label, &label_len, err);
        if (rc == P11KMS_OK && (label_len < plen || memcmp(label, a->prefix, plen) != 0)) {
            free(label);
            continue;
        }
        if (rc == P11KMS_OK)
            rc = p11_get_attr_alloc(t, s, hs[i], CKA_ID, &id, &id_len, err);
        CK_BBOOL b[4] = {CK_FALSE, CK_FALSE, CK_FALSE, CK_FALSE};
        CK_ATTRIBUTE usage[] = {
            {CKA_ENCRYPT, &b[0], sizeof(CK_BBOOL)},
            {CKA_DECRYPT, &b[1], sizeof(CK_BBOOL)},
            {CKA_SENSITIVE, &b[2], sizeof(CK_BBOOL)},
            {CKA_EXTRACTABLE, &b[3], sizeof(CK_BBOOL)},
        };
        if (rc == P11KMS_OK)
            rc = p11_get_attrs(t, s, hs[i], usage, 4, err);
        if (rc == P11KMS_E_TOKEN && err->ckr == CKR_OBJECT_HANDLE_INVALID) {
            free(id);
            id = NULL;
            /* deleted by someone else during the scan */
            free(label);
            p11kms_error_clear(err);
            rc = P11KMS_OK;
            continue;
        }
        if (rc != P11KMS_OK) {
            free(label);
            free(id);
            break;
        }
        a->items[a->n++] = (listed_key){id,
                                        id_len,
                                        (char *)label,
                                        b[0] == CK_TRUE,
                                        b[1] == CK_TRUE,
                                        b[2] == CK_TRUE,
                                        b[3] == CK_TRUE};
    }
    free(hs);
    return rc;
}

p11kms_err p11_key_scan(p11_token *t, const char *label_prefix,
                        int (*fn)(const p11_key_listing *k, void *arg), void *arg,
                        p11kms_error *err)
{
    if (t == NULL || fn == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_scan: missing argument");
    struct list_args a = {label_prefix != NULL ? label_prefix : "", NULL, 0};
    p11kms_err rc = p11_run(t, NULL, list_op, &a, err);
    /* Callbacks run with no session held: they may use the token themselves. */
    for (size_t i = 0; rc == P11KMS_OK && i < a.n; i++) {
        const listed_key *l = &a.items[i];
        p11_key_listing k = {l->id,      l->id_len,    l->label,      l->encrypt,
                             l->decrypt, l->sensitive, l->extractable};
        if (fn(&k, arg) != 0)
            break;
    }
    free_listed(&a);
    return rc;
}

struct list_adapter {
    int (*fn)(const uint8_t *id, size_t id_len, const char *label, void *arg);
    void *arg;
};

static int list_adapt(const p11_key_listing *k, void *arg)
{
    struct list_adapter *la = arg;
    return la->fn(k->id, k->id_len, k->label, la->arg);
}

p11kms_err p11_key_list(p11_token *t, const char *label_prefix,
                        int (*fn)(const uint8_t *id, size_t id_len, const char *label, void *arg),
                        void *arg, p11kms_error *err)
{
    if (t == NULL || fn == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_list: missing argument");
    struct list_adapter la = {fn, arg};
    return p11_key_scan(t, label_prefix, list_adapt, &la, err);
}

/* --- confirm ---------------------------------------------------------------------------------- */

static p11kms_err confirm_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_key *k = arg;
    CK_OBJECT_HANDLE h;
    if (p11_key_finder(t, s, k, &h, err) != P11KMS_OK)
        return err->code;
    atomic_store(&k->ref.handle, h);
    atomic_store(&k->ref.gen, atomic_load(&t->gen));
    return P11KMS_OK;
}

p11kms_err p11_key_confirm(p11_token *t, p11_key *key, p11kms_error *err)
{
    if (t == NULL || key == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_key_confirm: missing argument");
    return p11_run(t, NULL, confirm_op, key, err);
}
