/* The one wrapper layer: every PKCS#11 call p11kms makes goes through a function declared here.
 *
 * Each wrapper checks that the module provides the function, makes the call, and turns a non-OK
 * CK_RV into a P11KMS_E_TOKEN error whose message names the function and the CKR_* code, with
 * err->ckr set to the CK_RV. On success err is left untouched (no cost on the hot path).
 * Callers that expect a particular CK_RV (CKR_BUFFER_TOO_SMALL, CKR_USER_ALREADY_LOGGED_IN)
 * test err->ckr after a failure. Nothing outside calls.c dereferences a CK_FUNCTION_LIST. */
#ifndef P11KMS_PKCS11_CALLS_H
#define P11KMS_PKCS11_CALLS_H

#include <stdbool.h>

#include <p11-kit/pkcs11.h>

#include "p11kms-error.h"

typedef struct p11_calls p11_calls;

/* PKCS#11 3.0 CK_INTERFACE, which p11-kit 0.24's header lacks. Only the CK_FUNCTION_LIST
 * (2.40) prefix of the 3.0 function list it points to is ever used. */
typedef struct p11_ck_interface {
    CK_UTF8CHAR *pInterfaceName;
    void *pFunctionList;
    CK_FLAGS flags;
} p11_ck_interface;
typedef CK_RV (*p11_ck_get_interface_fn)(CK_UTF8CHAR *name, CK_VERSION *version,
                                         p11_ck_interface **interface, CK_FLAGS flags);

/* Binds a module loaded by p11-kit. module is the p11-kit handle (initialized and finalized
 * through p11-kit so that its options and fork handling apply); ops is the list every other call
 * goes through (the 2.40 prefix of a C_GetInterface list, or module itself). */
p11_calls *p11c_bind(CK_FUNCTION_LIST *module, CK_FUNCTION_LIST *ops);
/* Releases the binding (not the module: p11c_release_module does that). NULL is a no-op. */
void p11c_unbind(p11_calls *c);
/* p11_kit_module_release of the bound module. */
void p11c_release_module(p11_calls *c);

/* C_GetInterface("PKCS 11", {3,0}) through a symbol found with dlsym; *list receives the
 * function list when its version is 3.x. */
p11kms_err p11c_get_interface(p11_ck_get_interface_fn fn, CK_FUNCTION_LIST **list,
                              p11kms_error *err);

/* The string C_Initialize passes in CK_C_INITIALIZE_ARGS.pReserved (with CKF_OS_LOCKING_OK);
 * NULL (the default) initializes through p11-kit with its own arguments. Not copied. */
void p11c_set_init_reserved(p11_calls *c, const char *reserved);
p11kms_err p11c_initialize(p11_calls *c, p11kms_error *err);
p11kms_err p11c_finalize(p11_calls *c, p11kms_error *err);
p11kms_err p11c_get_info(p11_calls *c, CK_INFO *info, p11kms_error *err);
p11kms_err p11c_get_slot_list(p11_calls *c, CK_BBOOL present, CK_SLOT_ID *slots, CK_ULONG *count,
                              p11kms_error *err);
p11kms_err p11c_get_slot_info(p11_calls *c, CK_SLOT_ID slot, CK_SLOT_INFO *info, p11kms_error *err);
p11kms_err p11c_get_token_info(p11_calls *c, CK_SLOT_ID slot, CK_TOKEN_INFO *info,
                               p11kms_error *err);
p11kms_err p11c_get_mechanism_list(p11_calls *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE *list,
                                   CK_ULONG *count, p11kms_error *err);
p11kms_err p11c_get_mechanism_info(p11_calls *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                   CK_MECHANISM_INFO *info, p11kms_error *err);
p11kms_err p11c_open_session(p11_calls *c, CK_SLOT_ID slot, CK_FLAGS flags,
                             CK_SESSION_HANDLE *session, p11kms_error *err);
p11kms_err p11c_close_session(p11_calls *c, CK_SESSION_HANDLE session, p11kms_error *err);
p11kms_err p11c_close_all_sessions(p11_calls *c, CK_SLOT_ID slot, p11kms_error *err);
p11kms_err p11c_get_session_info(p11_calls *c, CK_SESSION_HANDLE session, CK_SESSION_INFO *info,
                                 p11kms_error *err);
p11kms_err p11c_login(p11_calls *c, CK_SESSION_HANDLE session, CK_USER_TYPE user, const char *pin,
                      size_t pin_len, p11kms_error *err);
p11kms_err p11c_create_object(p11_calls *c, CK_SESSION_HANDLE session, CK_ATTRIBUTE *tmpl,
                              CK_ULONG count, CK_OBJECT_HANDLE *object, p11kms_error *err);
p11kms_err p11c_copy_object(p11_calls *c, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                            CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *copy,
                            p11kms_error *err);
p11kms_err p11c_destroy_object(p11_calls *c, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                               p11kms_error *err);
p11kms_err p11c_get_attribute_value(p11_calls *c, CK_SESSION_HANDLE session,
                                    CK_OBJECT_HANDLE object, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                    p11kms_error *err);
p11kms_err p11c_set_attribute_value(p11_calls *c, CK_SESSION_HANDLE session,
                                    CK_OBJECT_HANDLE object, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                    p11kms_error *err);
p11kms_err p11c_find_objects_init(p11_calls *c, CK_SESSION_HANDLE session, CK_ATTRIBUTE *tmpl,
                                  CK_ULONG count, p11kms_error *err);
p11kms_err p11c_find_objects(p11_calls *c, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE *objects,
                             CK_ULONG max, CK_ULONG *count, p11kms_error *err);
p11kms_err p11c_find_objects_final(p11_calls *c, CK_SESSION_HANDLE session, p11kms_error *err);
p11kms_err p11c_encrypt_init(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                             CK_OBJECT_HANDLE key, p11kms_error *err);
p11kms_err p11c_encrypt(p11_calls *c, CK_SESSION_HANDLE session, const CK_BYTE *in, CK_ULONG in_len,
                        CK_BYTE *out, CK_ULONG *out_len, p11kms_error *err);
p11kms_err p11c_decrypt_init(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                             CK_OBJECT_HANDLE key, p11kms_error *err);
p11kms_err p11c_decrypt(p11_calls *c, CK_SESSION_HANDLE session, const CK_BYTE *in, CK_ULONG in_len,
                        CK_BYTE *out, CK_ULONG *out_len, p11kms_error *err);
p11kms_err p11c_generate_key(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                             CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *key,
                             p11kms_error *err);
p11kms_err p11c_generate_random(p11_calls *c, CK_SESSION_HANDLE session, CK_BYTE *buf, CK_ULONG len,
                                p11kms_error *err);
p11kms_err p11c_sign_init(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                          CK_OBJECT_HANDLE key, p11kms_error *err);
p11kms_err p11c_sign(p11_calls *c, CK_SESSION_HANDLE session, const CK_BYTE *in, CK_ULONG in_len,
                     CK_BYTE *out, CK_ULONG *out_len, p11kms_error *err);
p11kms_err p11c_generate_key_pair(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                                  CK_ATTRIBUTE *pub, CK_ULONG pub_count, CK_ATTRIBUTE *priv,
                                  CK_ULONG priv_count, CK_OBJECT_HANDLE *pub_key,
                                  CK_OBJECT_HANDLE *priv_key, p11kms_error *err);
p11kms_err p11c_unwrap_key(p11_calls *c, CK_SESSION_HANDLE session, CK_MECHANISM *mech,
                           CK_OBJECT_HANDLE unwrapping_key, CK_BYTE *wrapped, CK_ULONG wrapped_len,
                           CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_OBJECT_HANDLE *key,
                           p11kms_error *err);

#endif
