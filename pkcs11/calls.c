#include "config.h"

#include "pkcs11/calls.h"
#include "pkcs11/token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

struct p11_calls {
    CK_FUNCTION_LIST *module; /* p11-kit's handle: load, initialize, finalize, release */
    CK_FUNCTION_LIST *ops;    /* every other call */
    bool debug;               /* P11KMS_PKCS11_DEBUG set: trace calls on stderr */
    /* CK_C_INITIALIZE_ARGS pReserved (token.module-args), or NULL */
    const char *init_reserved;
};

p11_calls *p11c_bind(CK_FUNCTION_LIST *module, CK_FUNCTION_LIST *ops)
{
    p11_calls *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->module = module;
    c->ops = ops != NULL ? ops : module;
    const char *dbg = getenv("P11KMS_PKCS11_DEBUG");
    c->debug = dbg != NULL && *dbg != '\0' && strcmp(dbg, "0") != 0;
    return c;
}

void p11c_unbind(p11_calls *c)
{
    free(c);
}

void p11c_release_module(p11_calls *c)
{
    if (c != NULL && c->module != NULL) {
        p11_kit_module_release(c->module);
        c->module = NULL;
        c->ops = NULL;
    }
}

/* Failures are rare: keep the formatting out of the callers' instruction stream. */
__attribute__((noinline, cold)) static p11kms_err failed(const p11_calls *c, p11kms_error *err,
                                                         const char *fn, CK_RV rv)
{
    if (c->debug)
        fprintf(stderr, "p11kms: %s -> %s\n", fn, p11_ckr_name(rv));
    P11KMS_RAISE(err, P11KMS_E_TOKEN, "%s failed: %s (0x%lx)", fn, p11_ckr_name(rv),
                 (unsigned long)rv);
    if (err != NULL)
        err->ckr = rv;
    return P11KMS_E_TOKEN;
}

__attribute__((noinline, cold)) static p11kms_err missing(const p11_calls *c, p11kms_error *err,
                                                          const char *fn)
{
    P11KMS_RAISE(err, P11KMS_E_TOKEN, "the module does not provide %s", fn);
    if (err != NULL)
        err->ckr = CKR_FUNCTION_NOT_SUPPORTED;
    return P11KMS_E_TOKEN;
}

static void trace(const p11_calls *c, const char *fn)
{
    if (c->debug)
        fprintf(stderr, "p11kms: %s -> CKR_OK\n", fn);
}

/* One body for every wrapper: check the pointer, call, name any failure. */
#define P11C_CALL(c, err, fn, ...)                                                                 \
    do {                                                                                           \
        if ((c)->ops == NULL || (c)->ops->fn == NULL)                                              \
            return missing((c), (err), #fn);                                                       \
        CK_RV rv_ = (c)->ops->fn(__VA_ARGS__);                                                     \
        if (rv_ != CKR_OK)                                                                         \
            return failed((c), (err), #fn, rv_);                                                   \
        if ((c)->debug)                                                                            \
            trace((c), #fn);                                                                       \
        return P11KMS_OK;                                                                          \
    } while (0)

p11kms_err p11c_get_interface(p11_ck_get_interface_fn fn, CK_FUNCTION_LIST **list,
                              p11kms_error *err)
{
    static const p11_calls none = {0};
    if (fn == NULL)
        return missing(&none, err, "C_GetInterface");
    CK_VERSION want = {3, 0};
    p11_ck_interface *iface = NULL;
    CK_RV rv = fn((CK_UTF8CHAR *)"PKCS 11", &want, &iface, 0);
    if (rv != CKR_OK)
        return failed(&none, err, "C_GetInterface", rv);
    if (iface == NULL || iface->pFunctionList == NULL) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_GetInterface returned no function list");
        return P11KMS_E_TOKEN;
    }
    CK_FUNCTION_LIST *l = iface->pFunctionList;
    if (l->version.major < 3) {
        P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_GetInterface returned a version %u.%u list",
                     l->version.major, l->version.minor);
        return P11KMS_E_TOKEN;
    }
    *list = l;
    return P11KMS_OK;
}

void p11c_set_init_reserved(p11_calls *c, const char *reserved)
{
    c->init_reserved = reserved;
}

p11kms_err p11c_initialize(p11_calls *c, p11kms_error *err)
{
    CK_RV rv;
    if (c->init_reserved != NULL) {
        /* p11-kit's managed C_Initialize passes the caller's arguments on instead of its own:
         * NSS softokn, for one, takes its database parameters in pReserved. */
        CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK,
                                     .pReserved = (void *)c->init_reserved};
        rv = c->module->C_Initialize(&args);
    } else {
        rv = p11_kit_module_initialize(c->module);
    }
    if (rv != CKR_OK)
        return failed(c, err, "C_Initialize", rv);
    trace(c, "C_Initialize");
    return P11KMS_OK;
}

p11kms_err p11c_finalize(p11_calls *c, p11kms_error *err)
{
    CK_RV rv = p11_kit_module_finalize(c->module);
    if (rv != CKR_OK)
        return failed(c, err, "C_Finalize", rv);
    trace(c, "C_Finalize");
    return P11KMS_OK;
}

p11kms_err p11c_get_info(p11_calls *c, CK_INFO *info, p11kms_error *err)
{
    P11C_CALL(c, err, C_GetInfo, info);
}

p11kms_err p11c_get_slot_list(p11_calls *c, CK_BBOOL present, CK_SLOT_ID *slots, CK_ULONG *count,
                              p11kms_error *err)
{
    P11C_CALL(c, err, C_GetSlotList, present, slots, count);
}

p11kms_err p11c_get_slot_info(p11_calls *c, CK_SLOT_ID slot, CK_SLOT_INFO *info, p11kms_error *err)
{
    P11C_CALL(c, err, C_GetSlotInfo, slot, info);
}

p11kms_err p11c_get_token_info(p11_calls *c, CK_SLOT_ID slot, CK_TOKEN_INFO *info,
                               p11kms_error *err)
{
    P11C_CALL(c, err, C_GetTokenInfo, slot, info);
}

p11kms_err p11c_get_mechanism_list(p11_calls *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE *list,
                                   CK_ULONG *count, p11kms_error *err)
{
    P11C_CALL(c, err, C_GetMechanismList, slot, list, count);
}

p11kms_err p11c_get_mechanism_info(p11_calls *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                   CK_MECHANISM_INFO *info, p11kms_error *err)
{
    P11C_CALL(c, err, C_GetMechanismInfo, slot, type, info);
}

p11kms_err p11c_open_session(p11_calls *c, CK_SLOT_ID slot, CK_FLAGS flags,
                             CK_SESSION_HANDLE *session, p11kms_error *err)
{
    P11C_CALL(c, err, C_OpenSession, slot, flags, NULL, NULL, session);
}

p11kms_err p11c_close_session(p11_calls *c, CK_SESSION_HANDLE session, p11kms_error *err)
{
    P11C_CALL(c, err, C_CloseSession, session);
}

p11kms_err p11c_close_all_sessions(p11_calls *c, CK_SLOT_ID slot, p11kms_error *err)
{
    P11C_CALL(c, err, C_CloseAllSessions, slot);
}

p11kms_err p11c_get_session_info(p11_calls *c, CK_SESSION_HANDLE session, CK_SESSION_INFO *info,
                                 p11kms_error *err)
{
    P11C_CALL(c, err, C_GetSessionInfo, session, info);
}

p11kms_err p11c_login(p11_calls *c, CK_SESSION_HANDLE session, CK_USER_TYPE user, const char *pin,
                      size_t pin_len, p11kms_error *err)
{
    P11C_CALL(c, err, C_Login, session, user, (CK_UTF8CHAR *)pin, (CK_ULONG)pin_len);
}

p11kms_err p11c_create_object(p11_calls *c, CK_SESSION_HANDLE session, CK_ATTRIBUTE *tmpl,
                              CK_ULONG count, CK_OBJECT_HANDLE *object, p11kms_error *err)
{
    P11C_CALL(c, err, C_CreateObject, session, tmpl, count, object);
}

p11kms_err p11c_copy_object(p11_calls *c, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                            CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *copy,
                            p11kms_error *err)
{
    P11C_CALL(c, err, C_CopyObject, session, object, tmpl, count, copy);
}

p11kms_err p11c_destroy_object(p11_calls *c, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                               p11kms_error *err)
{
    P11C_CALL(c, err, C_DestroyObject, session, object);
}

p11kms_err p11c_get_attribute_value(p11_calls *c, CK_SESSION_HANDLE session,
                                    CK_OBJECT_HANDLE object, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                    p11kms_error *err)
{
    P11C_CALL(c, err, C_GetAttributeValue, session, object, tmpl, count);
}

p11kms_err p11c_set_attribute_value(p11_calls *c, CK_SESSION_HANDLE session,
                                    CK_OBJECT_HANDLE object, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                    p11kms_error *err)
{
    P11C_CALL(c, err, C_SetAttributeValue, session, object, tmpl, count);
}

p11kms_err p11c_find_objects_init(p11_calls *c, CK_SESSION_HANDLE session, CK_ATTRIBUTE *tmpl,
                                  CK_ULONG count, p11kms_error *err)
{
    P11C_CALL(c, err, C_FindObjectsInit, session, tmpl, count);
}

p11kms_err p11c_find_objects(p11_calls *c, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE *objects,
                             CK_ULONG max, CK_ULONG *count, p11kms_error *err)
{
    P11C_CALL(c, err, C_FindObjects, session, objects, max, count);
}

p11kms_err p11c_find_objects_final(p11_calls *c, CK_SESSION_HANDLE session, p11kms_error *err)
{
    P11C_CALL(c, err, C_FindObjectsFinal, session);
}

p11kms_err p11c_encrypt_init(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                             CK_OBJECT_HANDLE key, p11kms_error *err)
{
    P11C_CALL(c, err, C_EncryptInit, session, mech, key);
}

p11kms_err p11c_encrypt(p11_calls *c, CK_SESSION_HANDLE session, const CK_BYTE *in, CK_ULONG in_len,
                        CK_BYTE *out, CK_ULONG *out_len, p11kms_error *err)
{
    P11C_CALL(c, err, C_Encrypt, session, (CK_BYTE *)in, in_len, out, out_len);
}

p11kms_err p11c_decrypt_init(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                             CK_OBJECT_HANDLE key, p11kms_error *err)
{
    P11C_CALL(c, err, C_DecryptInit, session, mech, key);
}

p11kms_err p11c_decrypt(p11_calls *c, CK_SESSION_HANDLE session, const CK_BYTE *in, CK_ULONG in_len,
                        CK_BYTE *out, CK_ULONG *out_len, p11kms_error *err)
{
    P11C_CALL(c, err, C_Decrypt, session, (CK_BYTE *)in, in_len, out, out_len);
}

p11kms_err p11c_generate_key(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                             CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *key,
                             p11kms_error *err)
{
    P11C_CALL(c, err, C_GenerateKey, session, mech, tmpl, count, key);
}

p11kms_err p11c_generate_random(p11_calls *c, CK_SESSION_HANDLE session, CK_BYTE *buf, CK_ULONG len,
                                p11kms_error *err)
{
    P11C_CALL(c, err, C_GenerateRandom, session, buf, len);
}

p11kms_err p11c_sign_init(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                          CK_OBJECT_HANDLE key, p11kms_error *err)
{
    P11C_CALL(c, err, C_SignInit, session, mech, key);
}

p11kms_err p11c_sign(p11_calls *c, CK_SESSION_HANDLE session, const CK_BYTE *in, CK_ULONG in_len,
                     CK_BYTE *out, CK_ULONG *out_len, p11kms_error *err)
{
    P11C_CALL(c, err, C_Sign, session, (CK_BYTE *)in, in_len, out, out_len);
}

p11kms_err p11c_generate_key_pair(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                                  CK_ATTRIBUTE *pub, CK_ULONG pub_count, CK_ATTRIBUTE *priv,
                                  CK_ULONG priv_count, CK_OBJECT_HANDLE *pub_key,
                                  CK_OBJECT_HANDLE *priv_key, p11kms_error *err)
{
    P11C_CALL(c, err, C_GenerateKeyPair, session, mech, pub, pub_count, priv, priv_count, pub_key,
              priv_key);
}

p11kms_err p11c_unwrap_key(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                           CK_OBJECT_HANDLE unwrapping_key, CK_BYTE *wrapped, CK_ULONG wrapped_len,
                           CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *key,
                           p11kms_error *err)
{
    P11C_CALL(c, err, C_UnwrapKey, session, mech, unwrapping_key, wrapped, wrapped_len, tmpl, count,
              key);
}
