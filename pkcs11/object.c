#include "config.h"

#include "pkcs11/internal.h"

#include <stdlib.h>
#include <string.h>

p11kms_err p11_objref_refresh(p11_token *t, p11_session *s, p11_objref *ref, p11_finder find,
                              void *arg, CK_OBJECT_HANDLE *h, p11kms_error *err)
{
    /* Read the generation first: if it moves while we search, the next use searches again. */
    uint64_t gen = atomic_load(&t->gen);
    p11kms_err rc = find(t, s, arg, h, err);
    if (rc != P11KMS_OK)
        return rc;
    atomic_store_explicit(&ref->handle, *h, memory_order_relaxed);
    atomic_store_explicit(&ref->gen, gen, memory_order_release);
    return P11KMS_OK;
}

/* A search in a session that is not logged in misses every private object: that is a lost
 * login to repair, not an empty answer. Checked before searching: the login can only be lost
 * while no operation is in flight (p11_pool_exclusive) or by a token failure, which the search
 * itself reports. */
static p11kms_err check_logged_in(p11_token *t, p11_session *s, p11kms_error *err)
{
    if (!t->login_required)
        return P11KMS_OK;
    CK_SESSION_INFO si;
    if (p11c_get_session_info(t->calls, s->handle, &si, err) != P11KMS_OK)
        return err->code;
    if (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS)
        return P11KMS_OK;
    P11KMS_RAISE(err, P11KMS_E_TOKEN,
                 "the session is not logged in: a search would miss "
                 "private objects");
    err->ckr = CKR_USER_NOT_LOGGED_IN;
    return P11KMS_E_TOKEN;
}

static void find_final(p11_token *t, p11_session *s)
{
    p11kms_error e = {0};
    /* A search left open would make the session's next C_FindObjectsInit fail. */
    if (p11c_find_objects_final(t->calls, s->handle, &e) != P11KMS_OK)
        s->dirty = true;
}

p11kms_err p11_find_one(p11_token *t, p11_session *s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        const char *what, CK_OBJECT_HANDLE *h, p11kms_error *err)
{
    if (check_logged_in(t, s, err) != P11KMS_OK)
        return err->code;
    if (p11c_find_objects_init(t->calls, s->handle, tmpl, n, err) != P11KMS_OK) {
        if (err->ckr == CKR_OPERATION_ACTIVE)
            s->dirty = true;
        return err->code;
    }
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    p11kms_err rc = p11c_find_objects(t->calls, s->handle, found, 2, &count, err);
    find_final(t, s);
    if (rc != P11KMS_OK)
        return rc;
    if (count == 0)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no %s in token %s", what, t->token_uri);
    if (count > 1)
        return P11KMS_RAISE(err, P11KMS_E_TOKEN, "more than one %s in token %s", what,
                            t->token_uri);
    *h = found[0];
    return P11KMS_OK;
}

p11kms_err p11_find_all(p11_token *t, p11_session *s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                        CK_OBJECT_HANDLE **handles, size_t *count, p11kms_error *err)
{
    *handles = NULL;
    *count = 0;
    if (check_logged_in(t, s, err) != P11KMS_OK)
        return err->code;
    if (p11c_find_objects_init(t->calls, s->handle, tmpl, n, err) != P11KMS_OK) {
        if (err->ckr == CKR_OPERATION_ACTIVE)
            s->dirty = true;
        return err->code;
    }
    CK_OBJECT_HANDLE *all = NULL;
    size_t used = 0, cap = 0;
    p11kms_err rc = P11KMS_OK;
    for (;;) {
        if (cap - used < 64) {
            CK_OBJECT_HANDLE *grown = realloc(all, (cap + 64) * sizeof(*all));
            if (grown == NULL) {
                rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing objects");
                break;
            }
            all = grown;
            cap += 64;
        }
        CK_ULONG got = 0;
        if ((rc = p11c_find_objects(t->calls, s->handle, all + used, (CK_ULONG)(cap - used), &got,
                                    err)) != P11KMS_OK)
            break;
        if (got == 0)
            break;
        used += got;
    }
    find_final(t, s);
    if (rc != P11KMS_OK) {
        free(all);
        return rc;
    }
    if (used == 0) {
        free(all);
        all = NULL;
    }
    *handles = all;
    *count = used;
    return P11KMS_OK;
}

static bool attribute_refused(CK_RV rv)
{
    return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE;
}

p11kms_err p11_get_attrs(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE *tmpl,
                         CK_ULONG count, p11kms_error *err)
{
    p11kms_error whole = {0};
    if (p11c_get_attribute_value(t->calls, s->handle, h, tmpl, count, &whole) == P11KMS_OK)
        return P11KMS_OK;
    if (!attribute_refused(whole.ckr)) {
        *err = whole;
        return whole.code;
    }
    /* Which attribute is missing, and whether the others were filled, differs between tokens:
     * ask for each on its own. */
    for (CK_ULONG i = 0; i < count; i++) {
        CK_ATTRIBUTE one = tmpl[i];
        p11kms_error e = {0};
        if (p11c_get_attribute_value(t->calls, s->handle, h, &one, 1, &e) == P11KMS_OK) {
            tmpl[i].ulValueLen = one.ulValueLen;
            continue;
        }
        if (!attribute_refused(e.ckr)) {
            *err = e;
            return e.code;
        }
        tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
    }
    return P11KMS_OK;
}

p11kms_err p11_get_attr_alloc(p11_token *t, p11_session *s, CK_OBJECT_HANDLE h,
                              CK_ATTRIBUTE_TYPE type, uint8_t **value, size_t *len,
                              p11kms_error *err)
{
    *value = NULL;
    *len = 0;
    /* Another process may change the value between the size query and the read: try again. */
    for (int tries = 0; tries < 4; tries++) {
        CK_ATTRIBUTE a = {type, NULL, 0};
        if (p11c_get_attribute_value(t->calls, s->handle, h, &a, 1, err) != P11KMS_OK)
            return err->code;
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
            return P11KMS_RAISE(err, P11KMS_E_TOKEN, "attribute 0x%lx cannot be read",
                                (unsigned long)type);
        size_t n = a.ulValueLen;
        uint8_t *buf = malloc(n + 1);
        if (buf == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading an attribute");
        a.pValue = buf;
        p11kms_err rc = p11c_get_attribute_value(t->calls, s->handle, h, &a, 1, err);
        if (rc == P11KMS_OK && a.ulValueLen <= n) {
            buf[a.ulValueLen] = 0;
            *value = buf;
            *len = a.ulValueLen;
            return P11KMS_OK;
        }
        free(buf);
        if (rc != P11KMS_OK && err->ckr != CKR_BUFFER_TOO_SMALL)
            return rc;
        p11kms_error_clear(err);
    }
    return P11KMS_RAISE(err, P11KMS_E_TOKEN, "attribute 0x%lx kept changing while being read",
                        (unsigned long)type);
}
