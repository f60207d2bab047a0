#include "config.h"

#include "pkcs11/internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <p11-kit/p11-kit.h>

/* --- loading -------------------------------------------------------------------------------- */

/* The module's own PKCS#11 3.x function list if it has C_GetInterface. p11-kit 0.24 only knows
 * C_GetFunctionList, so the symbol is looked up in the copy p11-kit already loaded. */
static CK_FUNCTION_LIST *interface_list(p11_token *t, const char *path)
{
    t->dl_handle = dlopen(path, RTLD_NOLOAD | RTLD_LAZY);
    if (t->dl_handle == NULL)
        return NULL;
    /* POSIX dlsym returns void *; converting it to a function pointer is the documented use. */
    p11_ck_get_interface_fn fn = (p11_ck_get_interface_fn)dlsym(t->dl_handle, "C_GetInterface");
    if (fn == NULL)
        return NULL;
    CK_FUNCTION_LIST *list = NULL;
    p11kms_error ignored = {0};
    if (p11c_get_interface(fn, &list, &ignored) != P11KMS_OK)
        return NULL; /* a 3.x module that will not give a 3.0 list: use C_GetFunctionList */
    return list;
}

static p11kms_err load_by_path(p11_token *t, p11kms_error *err)
{
    struct stat st;
    if (stat(t->module, &st) != 0)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "PKCS#11 module %s: %s", t->module,
                            strerror(errno));
    CK_FUNCTION_LIST *m = p11_kit_module_load(t->module, 0);
    if (m == NULL) {
        const char *why = p11_kit_message();
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "cannot load PKCS#11 module %s: %s", t->module,
                            why != NULL ? why : "unknown p11-kit error");
    }
    CK_FUNCTION_LIST *ops = interface_list(t, t->module);
    t->via_get_interface = ops != NULL;
    t->calls = p11c_bind(m, ops);
    if (t->calls == NULL) {
        p11_kit_module_release(m);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory binding the module");
    }
    p11c_set_init_reserved(t->calls, t->module_args);
    return P11KMS_OK;
}

/* A module registered in p11-kit's configuration: p11-kit applies its options (x-init-reserved,
 * log-calls, remoting), so every call goes through p11-kit's own function list. */
static p11kms_err load_by_name(p11_token *t, p11kms_error *err)
{
    if (t->module_args != NULL)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "module-args is for a module given by path: module '%s' is "
                            "registered with p11-kit, give its arguments there (x-init-reserved)",
                            t->module);
    CK_FUNCTION_LIST **mods = p11_kit_modules_load(NULL, 0);
    if (mods == NULL) {
        const char *why = p11_kit_message();
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "p11-kit cannot load its registered modules: %s",
                            why != NULL ? why : "unknown p11-kit error");
    }
    CK_FUNCTION_LIST *m = p11_kit_module_for_name(mods, t->module);
    char names[256] = "";
    size_t used = 0;
    for (size_t i = 0; mods[i] != NULL; i++) {
        if (m == NULL) {
            char *name = p11_kit_module_get_name(mods[i]);
            int n = snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "",
                             name != NULL ? name : "?");
            if (n > 0 && (size_t)n < sizeof(names) - used)
                used += (size_t)n;
            free(name);
        }
        if (mods[i] != m)
            p11_kit_module_release(mods[i]);
    }
    free(mods);
    if (m == NULL)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "no PKCS#11 module named '%s' in p11-kit's configuration "
                            "(registered: %s)",
                            t->module, used ? names : "none");
    t->via_get_interface = false;
    t->calls = p11c_bind(m, NULL);
    if (t->calls == NULL) {
        p11_kit_module_release(m);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory binding the module");
    }
    return P11KMS_OK;
}

p11kms_err p11_module_load(p11_token *t, p11kms_error *err)
{
    if (t->module == NULL || t->module[0] == '\0')
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "no PKCS#11 module configured");
    if (t->module[0] == '/')
        return load_by_path(t, err);
    if (strchr(t->module, '/') != NULL)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "PKCS#11 module path '%s' is relative: give an absolute path or the "
                            "name of a module registered with p11-kit",
                            t->module);
    return load_by_name(t, err);
}

void p11_module_unload(p11_token *t)
{
    p11c_release_module(t->calls);
    p11c_unbind(t->calls);
    t->calls = NULL;
    if (t->dl_handle != NULL)
        dlclose(t->dl_handle);
    t->dl_handle = NULL;
}

/* --- URI ------------------------------------------------------------------------------------ */

static bool names_a_token(P11KitUri *uri)
{
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(uri);
    CK_SLOT_INFO *si = p11_kit_uri_get_slot_info(uri);
    return ti->label[0] != 0 || ti->serialNumber[0] != 0 || ti->manufacturerID[0] != 0 ||
           ti->model[0] != 0 || si->slotDescription[0] != 0 || si->manufacturerID[0] != 0 ||
           p11_kit_uri_get_slot_id(uri) != (CK_SLOT_ID)-1;
}

p11kms_err p11_uri_parse(const char *text, P11KitUri **out, p11kms_error *err)
{
    *out = NULL;
    if (text == NULL || text[0] == '\0')
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "no token URI configured (e.g. pkcs11:token=LABEL): p11kms never "
                            "picks the first slot");
    P11KitUri *uri = p11_kit_uri_new();
    if (uri == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory parsing the token URI");
    int rc = p11_kit_uri_parse(
        text, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT | P11_KIT_URI_FOR_MODULE_WITH_VERSION,
        uri);
    if (rc != P11_KIT_URI_OK) {
        p11_kit_uri_free(uri);
        /* The text may hold a pin-value: never echo an unparsable URI. */
        return P11KMS_RAISE(err, P11KMS_E_CONFIG, "invalid token URI: %s", p11_kit_uri_message(rc));
    }
    if (p11_kit_uri_get_pin_value(uri) != NULL) {
        p11_kit_uri_free(uri);
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "the token URI contains a pin-value: literal PINs are refused, use "
                            "pin-source=file:/path");
    }
    if (p11_kit_uri_any_unrecognized(uri)) {
        p11_kit_uri_free(uri);
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "token URI '%s' has attributes that do not select a token (object "
                            "or unknown attributes)",
                            text);
    }
    if (!names_a_token(uri)) {
        p11_kit_uri_free(uri);
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "token URI '%s' names no token (use token=, serial=, manufacturer=, "
                            "model= or slot-id=): p11kms never picks the first slot",
                            text);
    }
    *out = uri;
    return P11KMS_OK;
}

static void describe(char *buf, size_t size, size_t *used, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti)
{
    int n =
        snprintf(buf + *used, size - *used, "%s'%.*s' (serial %.*s, slot %lu)", *used ? ", " : "",
                 (int)p11_kit_space_strlen(ti->label, sizeof(ti->label)), (const char *)ti->label,
                 (int)p11_kit_space_strlen(ti->serialNumber, sizeof(ti->serialNumber)),
                 (const char *)ti->serialNumber, (unsigned long)slot);
    if (n > 0 && (size_t)n < size - *used)
        *used += (size_t)n;
}

p11kms_err p11_select_token(p11_token *t, p11kms_error *err)
{
    if (p11c_get_info(t->calls, &t->module_info, err) != P11KMS_OK)
        return err->code;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    for (int tries = 0;; tries++) {
        if (p11c_get_slot_list(t->calls, CK_TRUE, NULL, &n, err) != P11KMS_OK)
            return err->code;
        free(slots);
        slots = calloc(n + 1, sizeof(*slots));
        if (slots == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory listing slots");
        if (p11c_get_slot_list(t->calls, CK_TRUE, slots, &n, err) == P11KMS_OK)
            break;
        /* a token appeared between the two calls */
        if (err->ckr != CKR_BUFFER_TOO_SMALL || tries >= 3) {
            free(slots);
            return err->code;
        }
    }

    bool module_ok = p11_kit_uri_match_module_info(t->uri, &t->module_info);
    CK_SLOT_ID want_slot = p11_kit_uri_get_slot_id(t->uri);
    size_t matches = 0, present = 0;
    char found[400] = "", seen[400] = "";
    size_t found_used = 0, seen_used = 0;
    CK_SLOT_ID chosen = 0;
    CK_TOKEN_INFO chosen_info;
    memset(&chosen_info, 0, sizeof(chosen_info));
    for (CK_ULONG i = 0; i < n; i++) {
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        p11kms_error ignored = {0};
        /* A slot whose token vanished meanwhile is simply not a candidate. */
        if (p11c_get_slot_info(t->calls, slots[i], &si, &ignored) != P11KMS_OK ||
            p11c_get_token_info(t->calls, slots[i], &ti, &ignored) != P11KMS_OK)
            continue;
        present++;
        describe(seen, sizeof(seen), &seen_used, slots[i], &ti);
        if (!module_ok || !p11_kit_uri_match_slot_info(t->uri, &si) ||
            !p11_kit_uri_match_token_info(t->uri, &ti) ||
            (want_slot != (CK_SLOT_ID)-1 && want_slot != slots[i]))
            continue;
        matches++;
        describe(found, sizeof(found), &found_used, slots[i], &ti);
        chosen = slots[i];
        chosen_info = ti;
    }
    free(slots);
    if (matches == 0)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                            "no token matches URI %s (%zu token%s present%s%s)", t->token_uri,
                            present, present == 1 ? "" : "s", present ? ": " : "", seen);
    if (matches > 1)
        return P11KMS_RAISE(err, P11KMS_E_CONFIG,
                            "URI %s matches %zu tokens, it must select exactly one: %s",
                            t->token_uri, matches, found);
    t->slot = chosen;
    t->token_info = chosen_info;
    return P11KMS_OK;
}
