#include "config.h"

#include "pkcs11/internal.h"

#include <stdlib.h>
#include <string.h>

/* Data objects hold the provider's metadata, aliases and journals, shared by every process that
 * uses the token. A label names one object (CKO_DATA, CKA_TOKEN, CKA_PRIVATE, CKA_APPLICATION
 * "p11kms").
 *
 * Writing. The metadata layer relies on CKA_VALUE of a data object being modifiable: PKCS#11
 * allows it (nothing in the data object's attribute table fixes CKA_VALUE at creation, and the
 * objects are created with CKA_MODIFIABLE=TRUE), so p11_data_write first replaces CKA_VALUE with
 * one C_SetAttributeValue, an atomic update. SoftHSM (2.6.1 and later) reads the specification
 * the other way and answers CKR_ATTRIBUTE_READ_ONLY. For such tokens a write replaces the object:
 *   1. find every object with the label and the highest generation g among them,
 *   2. create the new object with generation g+1,
 *   3. destroy the objects found in 1.
 * The generation is kept in CKA_OBJECT_ID as the DER object identifier 2.25.<g> (an object
 * without it has generation 0), so CKA_VALUE stays exactly the caller's bytes. A reader that
 * finds several objects with one label (a write in progress in another process, or one that
 * crashed between 2 and 3) takes the highest generation, ties broken by comparing values, so
 * every process agrees on one current value and the next write removes the leftovers. Deleting
 * destroys every object with the label, so an older generation cannot reappear.
 *
 * Handles are cached by label. Another process may delete or replace an object: the stale handle
 * fails with CKR_OBJECT_HANDLE_INVALID and the label is looked up again. A label's cache entry
 * lives until the token is closed (threads may hold it; entries are small). */

#define LABEL_MAX 1024

static const char application[] = "p11kms";
static const CK_BYTE empty_value[1];

/* --- generations ------------------------------------------------------------------------------ */

/* DER OBJECT IDENTIFIER 2.25.g */
static size_t generation_oid(uint64_t g, uint8_t out[16])
{
    uint8_t digits[10];
    size_t n = 0;
    do {
        digits[n++] = (uint8_t)(g & 0x7f);
        g >>= 7;
    } while (g != 0);
    out[0] = 0x06;
    out[1] = (uint8_t)(1 + n);
    out[2] = 2 * 40 + 25;
    for (size_t i = 0; i < n; i++)
        out[3 + i] = (uint8_t)(digits[n - 1 - i] | (i + 1 < n ? 0x80 : 0));
    return 3 + n;
}

static uint64_t oid_generation(const uint8_t *p, size_t len)
{
    if (len < 4 || len > 13 || p[0] != 0x06 || p[1] != len - 2 || p[2] != 2 * 40 + 25 ||
        p[3] == 0x80 || (p[len - 1] & 0x80))
        return 0;
    uint64_t g = 0;
    for (size_t i = 3; i < len; i++) {
        if (g >> 57)
            return 0;
        g = g << 7 | (p[i] & 0x7f);
    }
    return g;
}

/* The object's generation; *gone when another process destroyed it meanwhile. */
static p11kms_err read_generation(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h, uint64_t *g,
                                  bool *gone, p11kms_error *err)
{
    uint8_t *oid = NULL;
    size_t len = 0;
    *g = 0;
    *gone = false;
    p11kms_err rc = p11_get_attr_alloc(t, s, h, CKA_OBJECT_ID, &oid, &len, err);
    if (rc == P11KMS_OK) {
        *g = oid_generation(oid, len);
        free(oid);
        return P11KMS_OK;
    }
    if (rc == P11KMS_E_TOKEN && err->ckr == CKR_OBJECT_HANDLE_INVALID) {
        *gone = true;
        p11kms_error_clear(err);
        return P11KMS_OK;
    }
    if (rc == P11KMS_E_TOKEN && err->ckr == CKR_ATTRIBUTE_TYPE_INVALID) {
        p11kms_error_clear(err);
        return P11KMS_OK;
    }
    return rc;
}

static int compare_values(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* The current object among several carrying one label. */
static p11kms_err pick_current(p11_token *t, p11_session *s, const CK_OBJECT_HANDLE *hs, size_t n,
                               CK_OBJECT_HANDLE *best, uint64_t *best_gen, p11kms_error *err)
{
    bool found = false;
    uint8_t *best_value = NULL;
    size_t best_len = 0;
    bool best_value_read = false;
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < n && rc == P11KMS_OK; i++) {
        uint64_t g;
        bool gone;
        if ((rc = read_generation(t, s, hs[i], &g, &gone, err)) != P11KMS_OK || gone)
            continue;
        if (!found || g > *best_gen) {
            found = true;
            *best = hs[i];
            *best_gen = g;
            free(best_value);
            best_value = NULL;
            best_value_read = false;
            continue;
        }
        if (g < *best_gen)
            continue;
        /* same generation (two writers raced): the larger value wins, in every process */
        if (!best_value_read) {
            if ((rc = p11_get_attr_alloc(t, s, *best, CKA_VALUE, &best_value, &best_len, err)) !=
                P11KMS_OK)
                break;
            best_value_read = true;
        }
        uint8_t *v = NULL;
        size_t len = 0;
        if ((rc = p11_get_attr_alloc(t, s, hs[i], CKA_VALUE, &v, &len, err)) != P11KMS_OK) {
            if (err->ckr == CKR_OBJECT_HANDLE_INVALID) {
                p11kms_error_clear(err);
                rc = P11KMS_OK;
            }
            continue;
        }
        if (compare_values(v, len, best_value, best_len) > 0) {
            *best = hs[i];
            free(best_value);
            best_value = v;
            best_len = len;
        } else {
            free(v);
        }
    }
    free(best_value);
    if (rc != P11KMS_OK)
        return rc;
    if (!found)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "the data objects vanished while read");
    return P11KMS_OK;
}

/* --- finding ---------------------------------------------------------------------------------- */

static p11kms_err find_labelled(p11_token *t, p11_session *s, const char *label,
                                CK_OBJECT_HANDLE **hs, size_t *n, p11kms_error *err)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &on_token, sizeof(on_token)},
        {CKA_APPLICATION, (void *)application, sizeof(application) - 1},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    return p11_find_all(t, s, tmpl, 4, hs, n, err);
}

static p11kms_err data_finder(p11_token *t, p11_session *s, void *arg, CK_OBJECT_HANDLE *h,
                              p11kms_error *err)
{
    p11_dataref *d = arg;
    CK_OBJECT_HANDLE *hs = NULL;
    size_t n = 0;
    p11kms_err rc = find_labelled(t, s, d->label, &hs, &n, err);
    if (rc == P11KMS_OK && n == 1) {
        *h = hs[0];
    } else if (rc == P11KMS_OK && n > 1) {
        uint64_t g = 0;
        rc = pick_current(t, s, hs, n, h, &g, err);
    } else if (rc == P11KMS_OK) {
        rc = P11KMS_E_NOT_FOUND;
    }
    free(hs);
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

static void dataref_free(void *value)
{
    p11_dataref *d = value;
    free(d->label);
    free(d);
}

void p11_data_free_all(p11_token *t)
{
    pthread_mutex_lock(&t->cache_lock);
    hashmap_free(t->data, dataref_free);
    t->data = NULL;
    pthread_mutex_unlock(&t->cache_lock);
}

static p11_dataref *dataref_get(p11_token *t, const char *label, p11kms_error *err)
{
    size_t len = strlen(label);
    pthread_mutex_lock(&t->cache_lock);
    p11_dataref *d = hashmap_get_bytes(t->data, label, len);
    if (d == NULL) {
        d = calloc(1, sizeof(*d));
        if (d != NULL && (d->label = strdup(label)) != NULL &&
            hashmap_put_bytes(t->data, label, len, d, NULL)) {
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

/* Creates the object; generation 0 is written as no CKA_OBJECT_ID at all. */
static p11kms_err create_object(p11_token *t, p11_session *s, struct value_args *a, uint64_t gen,
                                CK_OBJECT_HANDLE *h, p11kms_error *err)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE;
    uint8_t oid[16];
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_MODIFIABLE, &yes, sizeof(yes)},
        {CKA_APPLICATION, (void *)application, sizeof(application) - 1},
        {CKA_LABEL, a->d->label, strlen(a->d->label)},
        {CKA_VALUE, a->len > 0 ? (void *)a->value : (void *)empty_value, a->len},
        {CKA_OBJECT_ID, oid, 0},
    };
    CK_ULONG count = sizeof(tmpl) / sizeof(tmpl[0]);
    if (gen > 0)
        tmpl[count - 1].ulValueLen = generation_oid(gen, oid);
    else
        count--;
    return p11c_create_object(t->calls, s->handle, tmpl, count, h, err);
}

static void cache_handle(p11_token *t, p11_dataref *d, CK_OBJECT_HANDLE h, uint64_t gen)
{
    (void)t;
    atomic_store(&d->ref.handle, h);
    atomic_store(&d->ref.gen, gen);
}

static p11kms_err create_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct value_args *a = arg;
    CK_OBJECT_HANDLE *existing = NULL;
    size_t n = 0;
    if (find_labelled(t, s, a->d->label, &existing, &n, err) != P11KMS_OK)
        return err->code;
    free(existing);
    if (n > 0)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS,
                            "a p11kms data object labelled '%s' already exists in token %s",
                            a->d->label, t->token_uri);
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    if (create_object(t, s, a, 0, &h, err) != P11KMS_OK)
        return err->code;
    cache_handle(t, a->d, h, gen);
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

/* --- read ------------------------------------------------------------------------------------- */

struct read_args {
    p11_dataref *d;
    uint8_t *value;
    size_t len;
};

/* A write replaces the object (create, then destroy the old one): a reader holding the old
 * handle sees it vanish. SoftHSM answers CKR_ATTRIBUTE_VALUE_INVALID instead of
 * CKR_OBJECT_HANDLE_INVALID when the object goes while it is read; both mean "look again". */
#define READ_TRIES 4

static p11kms_err read_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct read_args *a = arg;
    for (int tries = 1;; tries++) {
        CK_OBJECT_HANDLE h;
        if (p11_objref_handle(t, s, &a->d->ref, data_finder, a->d, &h, err) != P11KMS_OK)
            return err->code;
        p11kms_err rc = p11_get_attr_alloc(t, s, h, CKA_VALUE, &a->value, &a->len, err);
        bool vanished = rc == P11KMS_E_TOKEN && (err->ckr == CKR_OBJECT_HANDLE_INVALID ||
                                                 err->ckr == CKR_ATTRIBUTE_VALUE_INVALID);
        if (!vanished || tries >= READ_TRIES)
            return rc;
        p11kms_error_clear(err);
        p11_objref_invalidate(&a->d->ref);
    }
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

/* --- write ------------------------------------------------------------------------------------ */

static void destroy_quietly(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h)
{
    p11kms_error ignored = {0};
    (void)p11c_destroy_object(t->calls, s->handle, h, &ignored);
}

/* For tokens that keep CKA_VALUE fixed: a new generation, then the old objects go. */
static p11kms_err replace_object(p11_token *t, p11_session *s, struct value_args *a,
                                 p11kms_error *err)
{
    CK_OBJECT_HANDLE *hs = NULL;
    size_t n = 0;
    if (find_labelled(t, s, a->d->label, &hs, &n, err) != P11KMS_OK)
        return err->code;
    uint64_t top = 0;
    bool any = false;
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < n && rc == P11KMS_OK; i++) {
        uint64_t g;
        bool gone;
        rc = read_generation(t, s, hs[i], &g, &gone, err);
        if (rc == P11KMS_OK && !gone) {
            any = true;
            if (g > top)
                top = g;
        }
    }
    if (rc == P11KMS_OK && !any)
        rc =
            P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no p11kms data object labelled '%s' in token %s",
                         a->d->label, t->token_uri);
    uint64_t gen = atomic_load(&t->gen);
    CK_OBJECT_HANDLE h;
    if (rc == P11KMS_OK && (rc = create_object(t, s, a, top + 1, &h, err)) == P11KMS_OK) {
        for (size_t i = 0; i < n; i++)
            destroy_quietly(t, s, hs[i]);
        cache_handle(t, a->d, h, gen);
    }
    free(hs);
    return rc;
}

static p11kms_err write_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    struct value_args *a = arg;
    if (atomic_load(&t->data_value_read_only))
        return replace_object(t, s, a, err);
    CK_OBJECT_HANDLE h;
    if (p11_objref_handle(t, s, &a->d->ref, data_finder, a->d, &h, err) != P11KMS_OK)
        return err->code;
    CK_ATTRIBUTE tmpl = {CKA_VALUE, a->len > 0 ? (void *)a->value : (void *)empty_value, a->len};
    p11kms_err rc = p11c_set_attribute_value(t->calls, s->handle, h, &tmpl, 1, err);
    if (rc != P11KMS_E_TOKEN || err->ckr != CKR_ATTRIBUTE_READ_ONLY)
        return rc;
    atomic_store(&t->data_value_read_only, true);
    p11kms_error_clear(err);
    return replace_object(t, s, a, err);
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
    /* A write may create an object: serialized with creation. */
    pthread_mutex_lock(&t->create_lock);
    p11kms_err rc = p11_run(t, &d->ref, write_op, &a, err);
    pthread_mutex_unlock(&t->create_lock);
    return rc;
}

/* --- delete ----------------------------------------------------------------------------------- */

static p11kms_err delete_op(p11_token *t, p11_session *s, void *arg, p11kms_error *err)
{
    p11_dataref *d = arg;
    CK_OBJECT_HANDLE *hs = NULL;
    size_t n = 0;
    if (find_labelled(t, s, d->label, &hs, &n, err) != P11KMS_OK)
        return err->code;
    p11kms_err rc = P11KMS_OK;
    size_t destroyed = 0;
    /* every generation: an older one must not reappear */
    for (size_t i = 0; i < n; i++) {
        rc = p11c_destroy_object(t->calls, s->handle, hs[i], err);
        if (rc == P11KMS_OK) {
            destroyed++;
        } else if (err->ckr == CKR_OBJECT_HANDLE_INVALID) {
            p11kms_error_clear(err); /* someone else deleted it */
            rc = P11KMS_OK;
        } else {
            break;
        }
    }
    free(hs);
    p11_objref_invalidate(&d->ref);
    if (rc == P11KMS_OK && destroyed == 0)
        rc =
            P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no p11kms data object labelled '%s' in token %s",
                         d->label, t->token_uri);
    return rc;
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
    p11kms_err rc = p11_run(t, NULL, delete_op, d, err);
    pthread_mutex_unlock(&t->create_lock);
    return rc;
}

/* --- list ------------------------------------------------------------------------------------- */

typedef struct listed_data {
    char *label;
    size_t label_len;
    CK_OBJECT_HANDLE handle;
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

static int by_label(const void *x, const void *y)
{
    const listed_data *a = x, *b = y;
    return compare_values((const uint8_t *)a->label, a->label_len, (const uint8_t *)b->label,
                          b->label_len);
}

static bool handle_gone(p11kms_err rc, p11kms_error *err)
{
    if (rc == P11KMS_E_TOKEN && err->ckr == CKR_OBJECT_HANDLE_INVALID) {
        p11kms_error_clear(err); /* deleted by another process during the scan */
        return true;
    }
    return false;
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
    for (size_t i = 0; i < n && rc == P11KMS_OK; i++) {
        uint8_t *label = NULL;
        size_t label_len = 0;
        rc = p11_get_attr_alloc(t, s, hs[i], CKA_LABEL, &label, &label_len, err);
        if (handle_gone(rc, err)) {
            rc = P11KMS_OK;
            continue;
        }
        if (rc != P11KMS_OK)
            break;
        if (label_len < plen || memcmp(label, a->prefix, plen) != 0 ||
            memchr(label, '\0', label_len) != NULL) {
            free(label);
            continue;
        }
        a->items[a->n++] = (listed_data){(char *)label, label_len, hs[i], NULL, 0};
    }
    free(hs);
    if (rc != P11KMS_OK)
        return rc;

    /* one entry per label: the current generation where a write left several */
    qsort(a->items, a->n, sizeof(*a->items), by_label);
    size_t out = 0;
    for (size_t i = 0; i < a->n && rc == P11KMS_OK;) {
        size_t j = i + 1;
        while (j < a->n && by_label(&a->items[i], &a->items[j]) == 0)
            j++;
        CK_OBJECT_HANDLE h = a->items[i].handle;
        if (j - i > 1) {
            CK_OBJECT_HANDLE group[j - i];
            for (size_t k = i; k < j; k++)
                group[k - i] = a->items[k].handle;
            uint64_t g = 0;
            rc = pick_current(t, s, group, j - i, &h, &g, err);
        }
        uint8_t *value = NULL;
        size_t len = 0;
        if (rc == P11KMS_OK)
            rc = p11_get_attr_alloc(t, s, h, CKA_VALUE, &value, &len, err);
        bool gone = handle_gone(rc, err) || rc == P11KMS_E_NOT_FOUND;
        if (gone) {
            p11kms_error_clear(err);
            rc = P11KMS_OK;
        }
        for (size_t k = i + 1; k < j; k++)
            free(a->items[k].label);
        char *label = a->items[i].label;
        size_t label_len = a->items[i].label_len;
        if (rc != P11KMS_OK || gone) {
            free(label);
            free(value);
        } else {
            a->items[out++] = (listed_data){label, label_len, h, value, len};
        }
        i = j;
        if (rc != P11KMS_OK) {
            for (size_t k = i; k < a->n; k++)
                free(a->items[k].label);
            break;
        }
    }
    a->n = out;
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
