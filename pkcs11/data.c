#include "config.h"

#include "pkcs11/internal.h"

#include <stdlib.h>
#include <string.h>

/* Data objects hold the provider's metadata, aliases and journals, shared by every process that
 * uses the token.
 *
 * The metadata layer relies on CKA_VALUE of a CKO_DATA object being modifiable in place with
 * C_SetAttributeValue (one atomic update, see p11_data_write). PKCS#11 allows it: CKA_VALUE of a
 * data object is not among the attributes fixed at creation, and the objects are created with
 * CKA_MODIFIABLE=TRUE.
 *
 * Handles are cached by label. Another process may delete or re-create an object: a stale handle
 * fails with CKR_OBJECT_HANDLE_INVALID and the object is found again by its label. A label's
 * cache entry lives until the token is closed (threads may hold it; entries are small). */

#define LABEL_MAX 1024

static const char application[] = "p11kms";
static const CK_BYTE empty_value[1];

static p11kms_err data_finder(p11_token *t, p11_session *s, void *arg, CK_OBJECT_HANDLE *h,
                              p11kms_error *err)
{
    p11_dataref *d = arg;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_APPLICATION, (void *)application, sizeof(application) - 1},
        {CKA_LABEL, d->label, strlen(d->label)},
    };
    p11kms_err rc = p11_find_one(t, s, tmpl, 4, "p11kms data object with this label", h, err);
    if (rc == P11KMS_E_NOT_FOUND)
        P11KMS_RAISE(err, rc, "no p11kms data object labelled '%s' in token %s", d->label,
                     t->token_uri);
    return rc;
}

static p11kms_err check_label(const char *label, p11kms_error *err)
{
    if (label == NULL || label[0] == '\0' || strlen(label) > LABEL_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "a data object label is 1 to %d bytes",
                            LABEL_MAX);
    return P11KMS_OK;
}

static void dataref_free(void *value, void *arg)
{
    (void)arg;
    p11_dataref *d = value;
    free(d->label);
    free(d);
}

void p11_data_free_all(p11_token *t)
{
    pthread_mutex_lock(&t->cache_lock);
    p11_map_each(&t->data, dataref_free, NULL);
    p11_map_clear(&t->data);
    pthread_mutex_unlock(&t->cache_lock);
}

static p11_dataref *dataref_get(p11_token *t, const char *label, p11kms_error *err)
{
    size_t len = strlen(label);
    pthread_mutex_lock(&t->cache_lock);
    p11_dataref *d = p11_map_get(&t->data, label, len);
    if (d == NULL) {
        d = calloc(1, sizeof(*d));
        if (d != NULL && (d->label = strdup(label)) != NULL &&
            p11_map_put(&t->data, label, len, d)) {
            atomic_init(&d->ref.handle, CK_INVALID_HANDLE);
            atomic_init(&d->ref.gen, 0);
        } else {
            if (d != NULL)
                free(d->label);
            free(d);
            d = NULL;
        }
    }
    pthread_mutex_unlock(&t->cache_lock);
    if (d == NULL)
        P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory caching a data object");
    return d;
}

/* --- create ----------------------------------------------------------------------------------- */

struct value_args {
    p11_dataref *d;
    const uint8_t *value;
    size_t len;
};

static p11kms_err create_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct value_args *a = arg;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_APPLICATION, (void *)application, sizeof(application) - 1},
        {CKA_LABEL, a->d->label, strlen(a->d->label)},
    };
    CK_OBJECT_HANDLE *existing = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, find, 4, &existing, &n, err) != P11KMS_OK)
        return err->code;
    free(existing);
    if (n > 0)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                            "a p11kms data object labelled '%s' already exists in token %s",
                            a->d->label, t->token_uri);
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_MODIFIABLE, &yes, sizeof(yes)},
        {CKA_APPLICATION, (void *)application, sizeof(application) - 1},
        {CKA_LABEL, a->d->label, strlen(a->d->label)},
        {CKA_VALUE, a->len > 0 ? (void *)a->value : (void *)empty_value, a->len},
    };
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    if (p11c_create_object(t->calls, s->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h, err) !=
        P11KMS_OK)
        return err->code;
    atomic_store(&a->d->ref.handle, h);
    atomic_store(&a->d->ref.gen, gen);
    return P11KMS_OK;
}

p11kms_err p11_data_create(p11_token *t, const char *label, const uint8_t *value, size_t len,
                           p11kms_error *err)
{
    if (t == NULL || (value == NULL && len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_data_create: missing argument");
    if (check_label(label, err) != P11KMS_OK)
        return err->code;
    p11_dataref *d = dataref_get(t, label, err);
    if (d == NULL)
        return err->code;
    struct value_args a = {d, value, len};
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, NULL, create_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    return rc;
}

/* --- read, write, delete ---------------------------------------------------------------------- */

struct read_args {
    p11_dataref *d;
    uint8_t *value;
    size_t len;
};

static p11kms_err read_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct read_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->d->ref, data_finder, a->d, &h, err) != P11KMS_OK)
        return err->code;
    return p11_get_attr_alloc(t, s, h, CKA_VALUE, &a->value, &a->len, err);
}

p11kms_err p11_data_read(p11_token *t, const char *label, uint8_t **value, size_t *len,
                         p11kms_error *err)
{
    if (t == NULL || value == NULL || len == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_data_read: missing argument");
    *value = NULL;
    *len = 0;
    if (check_label(label, err) != P11KMS_OK)
        return err->code;
    p11_dataref *d = dataref_get(t, label, err);
    if (d == NULL)
        return err->code;
    struct read_args a = {d, NULL, 0};
    if (p11_run(t, &d->ref, read_op, &a, err) != P11KMS_OK)
        return err->code;
    *value = a.value;
    *len = a.len;
    return P11KMS_OK;
}

static p11kms_err write_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct value_args *a = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->d->ref, data_finder, a->d, &h, err) != P11KMS_OK)
        return err->code;
    CK_ATTRIBUTE tmpl = {CKA_VALUE, a->len > 0 ? (void *)a->value : (void *)empty_value, a->len};
    return p11c_set_attribute_value(t->calls, s->handle, h, &tmpl, 1, err);
}

p11kms_err p11_data_write(p11_token *t, const char *label, const uint8_t *value, size_t len,
                          p11kms_error *err)
{
    if (t == NULL || (value == NULL && len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_data_write: missing argument");
    if (check_label(label, err) != P11KMS_OK)
        return err->code;
    p11_dataref *d = dataref_get(t, label, err);
    if (d == NULL)
        return err->code;
    struct value_args a = {d, value, len};
    return p11_run(t, &d->ref, write_op, &a, err);
}

static p11kms_err delete_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_dataref *d = arg;
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &d->ref, data_finder, d, &h, err) != P11KMS_OK)
        return err->code;
    if (p11c_destroy_object(t->calls, s->handle, h, err) != P11KMS_OK)
        return err->code;
    p11_objref_invalidate(&d->ref);
    return P11KMS_OK;
}

p11kms_err p11_data_delete(p11_token *t, const char *label, p11kms_error *err)
{
    if (t == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_data_delete: missing argument");
    if (check_label(label, err) != P11KMS_OK)
        return err->code;
    p11_dataref *d = dataref_get(t, label, err);
    if (d == NULL)
        return err->code;
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, &d->ref, delete_op, d, err);
    pthread_mutex_unlock(&t->create_lock);
    return rc;
}

/* --- list ------------------------------------------------------------------------------------- */

typedef struct listed_data {
    char *label;
    uint8_t *value;
    size_t len;
} listed_data;

struct list_args {
    const char *prefix;
    listed_data *items;
    size_t n;
};

static void free_listed(struct list_args *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].label);
        free(a->items[i].value);
    }
    free(a->items);
    a->items = NULL;
    a->n = 0;
}

static p11kms_err list_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct list_args *a = arg;
    free_listed(a); /* from a failed earlier attempt */
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_APPLICATION, (void *)application, sizeof(application) - 1},
    };
    CK_OBJECT_HANDLE *hs = NULL;
    size_t n = 0;
    if (p11_find_all(t, s, tmpl, 3, &hs, &n, err) != P11KMS_OK)
        return err->code;
    a->items = calloc(n + 1, sizeof(*a->items));
    if (a->items == NULL) {
        free(hs);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing data objects");
    }
    size_t plen = strlen(a->prefix);
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < n; i++) {
        uint8_t *label = NULL, *value = NULL;
        size_t label_len = 0, len = 0;
        rc = p11_get_attr_alloc(t, s, hs[i], CKA_LABEL, &label, &label_len, err);
        if (rc == P11KMS_OK && (label_len < plen || memcmp(label, a->prefix, plen) != 0 ||
                                memchr(label, '\0', label_len) != NULL)) {
            free(label);
            continue;
        }
        if (rc == P11KMS_OK)
            rc = p11_get_attr_alloc(t, s, hs[i], CKA_VALUE, &value, &len, err);
        if (rc == P11KMS_E_TOKEN && err->ckr == CKR_OBJECT_HANDLE_INVALID) {
            /* deleted by another process during the scan */
            free(label);
            p11kms_error_clear(err);
            rc = P11KMS_OK;
            continue;
        }
        if (rc != P11KMS_OK) {
            free(label);
            break;
        }
        a->items[a->n++] = (listed_data){(char *)label, value, len};
    }
    free(hs);
    return rc;
}

p11kms_err p11_data_list(p11_token *t, const char *label_prefix,
                         int (*fn)(const char *label, const uint8_t *value, size_t len, void *arg),
                         void *arg, p11kms_error *err)
{
    if (t == NULL || fn == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "p11_data_list: missing argument");
    struct list_args a = {label_prefix != NULL ? label_prefix : "", NULL, 0};
    p11kms_err rc = p11_run(t, NULL, list_op, &a, err);
    /* Callbacks run with no session held: they may use the token themselves. */
    for (size_t i = 0; rc == P11KMS_OK && i < a.n; i++)
        if (fn(a.items[i].label, a.items[i].value, a.items[i].len, arg) != 0)
            break;
    free_listed(&a);
    return rc;
}
