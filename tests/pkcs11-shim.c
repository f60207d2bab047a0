/* A PKCS#11 module for the token layer's tests: it forwards every call to the test token's module
 * ($P11KMS_TEST_MODULE: SoftHSM, NSS softokn...), handing it $P11KMS_TEST_MODULE_ARGS (NSS
 * softokn's configdir=...) as C_Initialize's pReserved when that is set, so that programs that
 * cannot pass module arguments (pkcs11-tool) reach such a token through it. It lets the test
 * produce what the token never does on demand:
 *   - C_GetInterface (PKCS#11 3.0), which SoftHSM 2.6.1 lacks;
 *   - injected CK_RV failures for any wrapped function (device errors, lost sessions...);
 *   - token flags (PIN final try, locked, not initialized) and a finite ulMaxRwSessionCount;
 *   - a token that generates the GCM IV itself, writing it into pIv or appending it to the
 *     output (FIPS-mode HSMs);
 *   - acceptance of the legacy CK_GCM_PARAMS layout (no ulIvBits);
 *   - call counters (C_UnwrapKey among them), and the pReserved string p11-kit (or the caller)
 *     passed to C_Initialize, recorded and not forwarded;
 *   - the handle the last C_CopyObject made and the key the last C_SignInit used;
 *   - hidden mechanisms (p11kms_shim_hide, or $P11KMS_SHIM_HIDE="0x1087,..." read at load, for
 *     tests that run a program): not listed, CKR_MECHANISM_INVALID from C_GetMechanismInfo and
 *     from every *Init and C_GenerateKey that asks for them, as a token without them answers;
 *     a C_GenerateRandom length limit (p11kms_shim_random_max);
 *     and $P11KMS_SHIM_FAIL="C_Fn:0xRV:N" (one function failing with one CK_RV after N calls);
 *   - an attribute every object lacks, read as NSS softokn answers: a C_GetAttributeValue that
 *     asks for it fails as a whole with CKR_ATTRIBUTE_TYPE_INVALID (p11kms_shim_lack_attribute).
 * The test reaches the control functions with dlopen(RTLD_NOLOAD) + dlsym. */
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#define SHIM_API __attribute__((visibility("default")))

typedef struct shim_interface {
    CK_UTF8CHAR *pInterfaceName;
    void *pFunctionList;
    CK_FLAGS flags;
} shim_interface;

/* The 2.40 list followed by room for the 3.0 functions, which the shim does not provide. */
typedef struct shim_list_30 {
    CK_FUNCTION_LIST base;
    void *v30_functions[24];
} shim_list_30;

typedef struct legacy_gcm {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} legacy_gcm;

enum { N_COUNTERS = 32, N_SESSIONS = 256 };

static struct {
    pthread_mutex_t lock;
    void *dl;
    CK_FUNCTION_LIST *real;
    CK_FUNCTION_LIST list;
    shim_list_30 list30;
    shim_interface iface;
    struct {
        char fn[32];
        CK_RV rv;
        int times; /* < 0: forever */
        int skip;  /* calls let through before the first failure */
    } fault[8];
    struct {
        char fn[32];
        unsigned long n;
    } counter[N_COUNTERS];
    CK_FLAGS flags_set, flags_clear;
    CK_ULONG max_rw; /* 0: as the token says */
    int iv_mode;     /* 0 off, 1 write into pIv, 2 append to the output */
    int accept_legacy;
    CK_MECHANISM_TYPE hidden[8];
    int n_hidden;
    CK_ULONG random_max; /* C_GenerateRandom refuses more (CKR_DATA_LEN_RANGE); 0: no limit */
    char env_fn[32];     /* $P11KMS_SHIM_FAIL: not cleared by p11kms_shim_reset */
    CK_RV env_rv;
    long env_skip;
    char init_reserved[256];
    /* with lack_attribute set: an attribute no object has */
    CK_ATTRIBUTE_TYPE lacked;
    int lack_attribute;
    /* TOKEN IV emulation: the IV generated for a session's pending C_Encrypt */
    struct {
        CK_SESSION_HANDLE h;
        int pending;
        CK_BYTE iv[12];
    } sessions[N_SESSIONS];
    unsigned long iv_counter;
    /* the object the last successful C_CopyObject made, the key of the last C_SignInit */
    CK_OBJECT_HANDLE last_copy, last_sign_key;
} shim = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void count(const char *fn)
{
    pthread_mutex_lock(&shim.lock);
    for (int i = 0; i < N_COUNTERS; i++) {
        if (shim.counter[i].fn[0] == '\0') {
            snprintf(shim.counter[i].fn, sizeof(shim.counter[i].fn), "%s", fn);
            shim.counter[i].n = 1;
            break;
        }
        if (strcmp(shim.counter[i].fn, fn) == 0) {
            shim.counter[i].n++;
            break;
        }
    }
    pthread_mutex_unlock(&shim.lock);
}

/* CKR_OK, or the failure armed for fn. */
static CK_RV injected(const char *fn)
{
    count(fn);
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&shim.lock);
    if (shim.env_fn[0] != '\0' && strcmp(shim.env_fn, fn) == 0 && shim.env_skip-- <= 0)
        rv = shim.env_rv;
    for (int i = 0; i < 8 && rv == CKR_OK; i++) {
        if (shim.fault[i].times != 0 && strcmp(shim.fault[i].fn, fn) == 0) {
            if (shim.fault[i].skip > 0) {
                shim.fault[i].skip--;
                break;
            }
            rv = shim.fault[i].rv;
            if (shim.fault[i].times > 0)
                shim.fault[i].times--;
            break;
        }
    }
    pthread_mutex_unlock(&shim.lock);
    return rv;
}

/* --- control (for the tests) ------------------------------------------------------------------ */

SHIM_API void p11kms_shim_fail(const char *fn, CK_RV rv, int times);
SHIM_API void p11kms_shim_fail_after(const char *fn, CK_RV rv, int skip, int times);
SHIM_API unsigned long p11kms_shim_count(const char *fn);
SHIM_API void p11kms_shim_reset(void);
SHIM_API void p11kms_shim_token_flags(CK_FLAGS set, CK_FLAGS clear);
SHIM_API void p11kms_shim_max_rw(CK_ULONG max_rw);
SHIM_API void p11kms_shim_iv_mode(int mode);
SHIM_API void p11kms_shim_accept_legacy(int on);
SHIM_API const char *p11kms_shim_init_reserved(void);
SHIM_API void p11kms_shim_hide(CK_MECHANISM_TYPE mechanism);
SHIM_API void p11kms_shim_random_max(CK_ULONG max);
SHIM_API void p11kms_shim_lack_attribute(CK_ATTRIBUTE_TYPE type);
SHIM_API CK_OBJECT_HANDLE p11kms_shim_last_copy(void);
SHIM_API CK_OBJECT_HANDLE p11kms_shim_last_sign_key(void);

CK_OBJECT_HANDLE p11kms_shim_last_copy(void)
{
    pthread_mutex_lock(&shim.lock);
    CK_OBJECT_HANDLE h = shim.last_copy;
    pthread_mutex_unlock(&shim.lock);
    return h;
}

CK_OBJECT_HANDLE p11kms_shim_last_sign_key(void)
{
    pthread_mutex_lock(&shim.lock);
    CK_OBJECT_HANDLE h = shim.last_sign_key;
    pthread_mutex_unlock(&shim.lock);
    return h;
}

void p11kms_shim_fail(const char *fn, CK_RV rv, int times)
{
    p11kms_shim_fail_after(fn, rv, 0, times);
}

/* The next skip calls of fn succeed, then times calls fail with rv. */
void p11kms_shim_fail_after(const char *fn, CK_RV rv, int skip, int times)
{
    pthread_mutex_lock(&shim.lock);
    for (int i = 0; i < 8; i++) {
        if (shim.fault[i].times == 0 || strcmp(shim.fault[i].fn, fn) == 0) {
            snprintf(shim.fault[i].fn, sizeof(shim.fault[i].fn), "%s", fn);
            shim.fault[i].rv = rv;
            shim.fault[i].times = times;
            shim.fault[i].skip = skip;
            break;
        }
    }
    pthread_mutex_unlock(&shim.lock);
}

unsigned long p11kms_shim_count(const char *fn)
{
    unsigned long n = 0;
    pthread_mutex_lock(&shim.lock);
    for (int i = 0; i < N_COUNTERS; i++)
        if (strcmp(shim.counter[i].fn, fn) == 0)
            n = shim.counter[i].n;
    pthread_mutex_unlock(&shim.lock);
    return n;
}

void p11kms_shim_reset(void)
{
    pthread_mutex_lock(&shim.lock);
    memset(shim.fault, 0, sizeof(shim.fault));
    memset(shim.counter, 0, sizeof(shim.counter));
    shim.flags_set = shim.flags_clear = 0;
    shim.max_rw = 0;
    shim.iv_mode = 0;
    shim.accept_legacy = 0;
    shim.n_hidden = 0;
    shim.random_max = 0;
    shim.lack_attribute = 0;
    shim.init_reserved[0] = '\0';
    pthread_mutex_unlock(&shim.lock);
}

void p11kms_shim_token_flags(CK_FLAGS set, CK_FLAGS clear)
{
    shim.flags_set = set;
    shim.flags_clear = clear;
}

void p11kms_shim_max_rw(CK_ULONG max_rw)
{
    shim.max_rw = max_rw;
}

void p11kms_shim_iv_mode(int mode)
{
    shim.iv_mode = mode;
}

void p11kms_shim_accept_legacy(int on)
{
    shim.accept_legacy = on;
}

const char *p11kms_shim_init_reserved(void)
{
    return shim.init_reserved;
}

void p11kms_shim_hide(CK_MECHANISM_TYPE mechanism)
{
    pthread_mutex_lock(&shim.lock);
    if (shim.n_hidden < 8)
        shim.hidden[shim.n_hidden++] = mechanism;
    pthread_mutex_unlock(&shim.lock);
}

void p11kms_shim_random_max(CK_ULONG max)
{
    shim.random_max = max;
}

static int hidden(const CK_MECHANISM *m)
{
    int found = 0;
    pthread_mutex_lock(&shim.lock);
    for (int i = 0; m != NULL && i < shim.n_hidden && !found; i++)
        found = shim.hidden[i] == m->mechanism;
    pthread_mutex_unlock(&shim.lock);
    return found;
}

/* --- wrapped functions ------------------------------------------------------------------------ */

static CK_RV shim_Initialize(void *args)
{
    CK_RV rv = injected("C_Initialize");
    if (rv != CKR_OK)
        return rv;
    CK_C_INITIALIZE_ARGS *ia = args;
    if (ia != NULL && ia->pReserved != NULL)
        snprintf(shim.init_reserved, sizeof(shim.init_reserved), "%s", (const char *)ia->pReserved);
    /* The caller's pReserved is recorded, not forwarded: the real module gets the test token's
     * own arguments ($P11KMS_TEST_MODULE_ARGS: NSS softokn's configdir=...), or NULL (SoftHSM
     * would take any string there as its own). */
    const char *module_args = getenv("P11KMS_TEST_MODULE_ARGS");
    if (module_args != NULL && module_args[0] == '\0')
        module_args = NULL;
    CK_C_INITIALIZE_ARGS clean = {0};
    if (ia != NULL) {
        clean = *ia;
    } else if (module_args != NULL) {
        clean.flags = CKF_OS_LOCKING_OK; /* the module must see its arguments */
    }
    if (ia != NULL || module_args != NULL) {
        clean.pReserved = (void *)module_args;
        ia = &clean;
    }
    return shim.real->C_Initialize(ia);
}

static CK_RV shim_Finalize(void *reserved)
{
    CK_RV rv = injected("C_Finalize");
    return rv != CKR_OK ? rv : shim.real->C_Finalize(reserved);
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    CK_RV rv = injected("C_GetTokenInfo");
    if (rv != CKR_OK)
        return rv;
    rv = shim.real->C_GetTokenInfo(slot, info);
    if (rv == CKR_OK && (info->flags & CKF_TOKEN_INITIALIZED)) {
        info->flags = (info->flags | shim.flags_set) & ~shim.flags_clear;
        if (shim.max_rw != 0)
            info->ulMaxRwSessionCount = shim.max_rw;
    }
    return rv;
}

static CK_RV shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                              CK_SESSION_HANDLE *h)
{
    CK_RV rv = injected("C_OpenSession");
    return rv != CKR_OK ? rv : shim.real->C_OpenSession(slot, flags, app, notify, h);
}

static CK_RV shim_CloseSession(CK_SESSION_HANDLE h)
{
    CK_RV rv = injected("C_CloseSession");
    return rv != CKR_OK ? rv : shim.real->C_CloseSession(h);
}

static CK_RV shim_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO *info)
{
    CK_RV rv = injected("C_GetSessionInfo");
    return rv != CKR_OK ? rv : shim.real->C_GetSessionInfo(h, info);
}

static CK_RV shim_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR *pin, CK_ULONG len)
{
    CK_RV rv = injected("C_Login");
    return rv != CKR_OK ? rv : shim.real->C_Login(h, user, pin, len);
}

static CK_RV shim_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_RV rv = injected("C_FindObjectsInit");
    return rv != CKR_OK ? rv : shim.real->C_FindObjectsInit(h, tmpl, n);
}

void p11kms_shim_lack_attribute(CK_ATTRIBUTE_TYPE type)
{
    shim.lacked = type;
    shim.lack_attribute = 1;
}

/* NSS softokn fails the whole read, without filling the other attributes. */
static CK_RV shim_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *tmpl,
                                    CK_ULONG n)
{
    CK_RV rv = injected("C_GetAttributeValue");
    if (rv != CKR_OK)
        return rv;
    for (CK_ULONG i = 0; shim.lack_attribute && i < n; i++) {
        if (tmpl[i].type == shim.lacked) {
            tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            return CKR_ATTRIBUTE_TYPE_INVALID;
        }
    }
    return shim.real->C_GetAttributeValue(h, obj, tmpl, n);
}

static CK_RV shim_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *tmpl,
                             CK_ULONG n, CK_OBJECT_HANDLE *copy)
{
    CK_RV rv = injected("C_CopyObject");
    if (rv == CKR_OK)
        rv = shim.real->C_CopyObject(h, obj, tmpl, n, copy);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&shim.lock);
        shim.last_copy = *copy;
        pthread_mutex_unlock(&shim.lock);
    }
    return rv;
}

static CK_RV shim_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                              CK_OBJECT_HANDLE *key)
{
    CK_RV rv = injected("C_GenerateKey");
    if (rv == CKR_OK && hidden(m))
        rv = CKR_MECHANISM_INVALID;
    return rv != CKR_OK ? rv : shim.real->C_GenerateKey(h, m, tmpl, n, key);
}

static CK_RV shim_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE object)
{
    CK_RV rv = injected("C_DestroyObject");
    return rv != CKR_OK ? rv : shim.real->C_DestroyObject(h, object);
}

static CK_RV shim_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE *list, CK_ULONG *count)
{
    CK_RV rv = injected("C_GetMechanismList");
    if (rv != CKR_OK)
        return rv;
    CK_ULONG cap = *count;
    rv = shim.real->C_GetMechanismList(slot, list, count);
    if (list == NULL && rv == CKR_OK)
        return rv; /* the real count is an upper bound */
    if (rv != CKR_OK)
        return rv;
    CK_ULONG o = 0;
    for (CK_ULONG i = 0; i < *count && i < cap; i++) {
        CK_MECHANISM m = {list[i], NULL, 0};
        if (!hidden(&m))
            list[o++] = list[i];
    }
    *count = o;
    return CKR_OK;
}

static CK_RV shim_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO *info)
{
    CK_RV rv = injected("C_GetMechanismInfo");
    CK_MECHANISM m = {type, NULL, 0};
    if (rv == CKR_OK && hidden(&m))
        rv = CKR_MECHANISM_INVALID;
    return rv != CKR_OK ? rv : shim.real->C_GetMechanismInfo(slot, type, info);
}

static CK_RV shim_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE *buf, CK_ULONG len)
{
    CK_RV rv = injected("C_GenerateRandom");
    if (rv == CKR_OK && shim.random_max != 0 && len > shim.random_max)
        rv = CKR_DATA_LEN_RANGE;
    return rv != CKR_OK ? rv : shim.real->C_GenerateRandom(h, buf, len);
}

static CK_RV shim_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE key)
{
    CK_RV rv = injected("C_SignInit");
    if (rv == CKR_OK && hidden(m))
        rv = CKR_MECHANISM_INVALID;
    pthread_mutex_lock(&shim.lock);
    shim.last_sign_key = key;
    pthread_mutex_unlock(&shim.lock);
    return rv != CKR_OK ? rv : shim.real->C_SignInit(h, m, key);
}

static int session_slot(CK_SESSION_HANDLE h)
{
    return (int)(h % N_SESSIONS);
}

static int all_zero(const CK_BYTE *p, size_t n)
{
    CK_BYTE acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Rewrites a GCM mechanism: legacy layout to v2.40, and a token-chosen IV. */
static CK_RV gcm_rewrite(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_MECHANISM *out,
                         CK_GCM_PARAMS *params, int encrypt)
{
    *out = *m;
    if (m == NULL || m->mechanism != CKM_AES_GCM || m->pParameter == NULL)
        return CKR_OK;
    if (m->ulParameterLen == sizeof(legacy_gcm)) {
        if (!shim.accept_legacy)
            return CKR_OK; /* passed on as it is: the token decides */
        legacy_gcm *l = m->pParameter;
        params->pIv = l->pIv;
        params->ulIvLen = l->ulIvLen;
        params->ulIvBits = l->ulIvLen * 8;
        params->pAAD = l->pAAD;
        params->ulAADLen = l->ulAADLen;
        params->ulTagBits = l->ulTagBits;
    } else if (m->ulParameterLen == sizeof(CK_GCM_PARAMS)) {
        *params = *(CK_GCM_PARAMS *)m->pParameter;
    } else {
        return CKR_OK;
    }
    out->pParameter = params;
    out->ulParameterLen = sizeof(*params);
    int slot = session_slot(h);
    shim.sessions[slot].pending = 0;
    if (encrypt && shim.iv_mode != 0 && params->ulIvLen == 12 && all_zero(params->pIv, 12)) {
        CK_BYTE *iv = shim.sessions[slot].iv;
        unsigned long c = ++shim.iv_counter;
        for (int i = 0; i < 12; i++)
            iv[i] = (CK_BYTE)(0xa0 + i) ^ (CK_BYTE)(c >> (8 * (i % 8)));
        if (shim.iv_mode == 1)
            memcpy(params->pIv, iv, 12); /* written into the caller's pIv */
        else
            shim.sessions[slot].pending = 1;
        shim.sessions[slot].h = h;
        params->pIv = iv;
    }
    return CKR_OK;
}

static CK_RV shim_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE key)
{
    CK_RV rv = injected("C_EncryptInit");
    if (rv == CKR_OK && hidden(m))
        rv = CKR_MECHANISM_INVALID;
    if (rv != CKR_OK)
        return rv;
    CK_MECHANISM mech;
    CK_GCM_PARAMS params;
    gcm_rewrite(h, m, &mech, &params, 1);
    return shim.real->C_EncryptInit(h, &mech, key);
}

static CK_RV shim_Encrypt(CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out,
                          CK_ULONG *out_len)
{
    CK_RV rv = injected("C_Encrypt");
    if (rv != CKR_OK)
        return rv;
    int slot = session_slot(h);
    if (!shim.sessions[slot].pending || shim.sessions[slot].h != h)
        return shim.real->C_Encrypt(h, in, in_len, out, out_len);
    /* Appending token: ciphertext || tag || IV. */
    if (out == NULL) {
        *out_len = in_len + 16 + 12;
        return CKR_OK;
    }
    if (*out_len < in_len + 16 + 12) {
        *out_len = in_len + 16 + 12;
        return CKR_BUFFER_TOO_SMALL;
    }
    CK_ULONG n = *out_len - 12;
    rv = shim.real->C_Encrypt(h, in, in_len, out, &n);
    if (rv == CKR_OK) {
        memcpy(out + n, shim.sessions[slot].iv, 12);
        *out_len = n + 12;
    }
    shim.sessions[slot].pending = 0;
    return rv;
}

static CK_RV shim_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE key)
{
    CK_RV rv = injected("C_DecryptInit");
    if (rv == CKR_OK && hidden(m))
        rv = CKR_MECHANISM_INVALID;
    if (rv != CKR_OK)
        return rv;
    CK_MECHANISM mech;
    CK_GCM_PARAMS params;
    gcm_rewrite(h, m, &mech, &params, 0);
    return shim.real->C_DecryptInit(h, &mech, key);
}

static CK_RV shim_Decrypt(CK_SESSION_HANDLE h, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out,
                          CK_ULONG *out_len)
{
    CK_RV rv = injected("C_Decrypt");
    if (rv != CKR_OK) {
        /* Like a token that wrote plaintext before checking the tag: the layer must not pass
         * it on. */
        if (out != NULL && *out_len > 0)
            memset(out, 0x5a, *out_len < in_len ? *out_len : in_len);
        return rv;
    }
    return shim.real->C_Decrypt(h, in, in_len, out, out_len);
}

/* Counted (and injectable) so that a test can see whether the layer asked the token at all. */
static CK_RV shim_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE unwrapping_key,
                            CK_BYTE *wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                            CK_OBJECT_HANDLE *key)
{
    CK_RV rv = injected("C_UnwrapKey");
    if (rv == CKR_OK && hidden(m))
        rv = CKR_MECHANISM_INVALID;
    if (rv != CKR_OK)
        return rv;
    return shim.real->C_UnwrapKey(h, m, unwrapping_key, wrapped, wrapped_len, tmpl, n, key);
}

static CK_RV shim_GetInterface(CK_UTF8CHAR *name, CK_VERSION *version, shim_interface **iface,
                               CK_FLAGS flags);

static void shim_load(void)
{
    const char *path = getenv("P11KMS_TEST_MODULE");
    if (path == NULL)
        path = getenv("SOFTHSM_MODULE");
    if (path == NULL) {
        fprintf(stderr, "pkcs11-shim: P11KMS_TEST_MODULE is not set\n");
        return;
    }
    shim.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (shim.dl == NULL) {
        fprintf(stderr, "pkcs11-shim: %s\n", dlerror());
        return;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(shim.dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&shim.real) != CKR_OK)
        return;
    shim.list = *shim.real;
    shim.list.C_Initialize = shim_Initialize;
    shim.list.C_Finalize = shim_Finalize;
    shim.list.C_GetTokenInfo = shim_GetTokenInfo;
    shim.list.C_OpenSession = shim_OpenSession;
    shim.list.C_CloseSession = shim_CloseSession;
    shim.list.C_GetSessionInfo = shim_GetSessionInfo;
    shim.list.C_Login = shim_Login;
    shim.list.C_FindObjectsInit = shim_FindObjectsInit;
    shim.list.C_GenerateKey = shim_GenerateKey;
    shim.list.C_DestroyObject = shim_DestroyObject;
    shim.list.C_GetMechanismList = shim_GetMechanismList;
    shim.list.C_GetMechanismInfo = shim_GetMechanismInfo;
    shim.list.C_SignInit = shim_SignInit;
    shim.list.C_GenerateRandom = shim_GenerateRandom;
    shim.list.C_CopyObject = shim_CopyObject;
    shim.list.C_GetAttributeValue = shim_GetAttributeValue;
    shim.list.C_EncryptInit = shim_EncryptInit;
    shim.list.C_Encrypt = shim_Encrypt;
    shim.list.C_DecryptInit = shim_DecryptInit;
    shim.list.C_Decrypt = shim_Decrypt;
    shim.list.C_UnwrapKey = shim_UnwrapKey;
    /* Tests that run a program hide mechanisms from the start: "0x1087,0x1080". */
    const char *hide = getenv("P11KMS_SHIM_HIDE");
    for (char *end = NULL; hide != NULL && *hide != '\0'; hide = *end == ',' ? end + 1 : end) {
        CK_MECHANISM_TYPE m = strtoul(hide, &end, 0);
        if (end == hide)
            break;
        p11kms_shim_hide(m);
    }
    /* "C_EncryptInit:0x63:1": that function fails with that CK_RV every time after the
     * first (the capability self-test at open) call. */
    const char *fail = getenv("P11KMS_SHIM_FAIL");
    const char *colon = fail != NULL ? strchr(fail, ':') : NULL;
    if (colon != NULL && colon - fail < (long)sizeof(shim.env_fn)) {
        memcpy(shim.env_fn, fail, (size_t)(colon - fail));
        char *end = NULL;
        shim.env_rv = strtoul(colon + 1, &end, 0);
        shim.env_skip = *end == ':' ? strtol(end + 1, NULL, 0) : 0;
    }
    shim.list30.base = shim.list;
    shim.list30.base.version.major = 3;
    shim.list30.base.version.minor = 0;
    shim.iface.pInterfaceName = (CK_UTF8CHAR *)"PKCS 11";
    shim.iface.pFunctionList = &shim.list30;
    shim.iface.flags = 0;
}

static pthread_once_t load_once = PTHREAD_ONCE_INIT;

SHIM_API CK_RV C_GetFunctionList(CK_FUNCTION_LIST **list);
SHIM_API CK_RV C_GetInterface(CK_UTF8CHAR *name, CK_VERSION *version, shim_interface **iface,
                              CK_FLAGS flags);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST **list)
{
    pthread_once(&load_once, shim_load);
    if (shim.real == NULL)
        return CKR_GENERAL_ERROR;
    *list = &shim.list;
    return CKR_OK;
}

static CK_RV shim_GetInterface(CK_UTF8CHAR *name, CK_VERSION *version, shim_interface **iface,
                               CK_FLAGS flags)
{
    count("C_GetInterface");
    pthread_once(&load_once, shim_load);
    if (shim.real == NULL)
        return CKR_GENERAL_ERROR;
    if (iface == NULL)
        return CKR_ARGUMENTS_BAD;
    if (name != NULL && strcmp((const char *)name, "PKCS 11") != 0)
        return CKR_ARGUMENTS_BAD;
    if (version != NULL && version->major != 3)
        return CKR_ARGUMENTS_BAD;
    (void)flags;
    *iface = &shim.iface;
    return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR *name, CK_VERSION *version, shim_interface **iface, CK_FLAGS flags)
{
    return shim_GetInterface(name, version, iface, flags);
}

__attribute__((destructor)) static void shim_unload(void)
{
    if (shim.dl != NULL)
        dlclose(shim.dl);
}
