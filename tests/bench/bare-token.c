#include "config.h"

/* The baseline of the token figures: the PKCS#11 calls an application would make without
 * p11kms, on the same module (loaded through p11-kit exactly as p11kms loads it), the same token
 * and the same key object. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

#include "bench.h"

struct bare_token {
    CK_FUNCTION_LIST *f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE login; /* keeps the login alive */
    CK_OBJECT_HANDLE key;
    /* A session copy of key (C_CopyObject with CKA_TOKEN=FALSE), the object form p11kms uses
     * with token.key-cache: session-copy; CK_INVALID_HANDLE when the token refused it. */
    CK_OBJECT_HANDLE copy;
    CK_RV copy_rv;
    /* Session copies made by bare_cold_encrypt, destroyed by bare_close (as p11kms keeps its
     * copies, the cold-key baseline does not pay for destroying them while timed). */
    CK_OBJECT_HANDLE *cold;
    size_t cold_count, cold_cap;
    /* Session copies of every AES key of the token (bare_copy_all), destroyed by bare_close. */
    CK_OBJECT_HANDLE *all;
    unsigned all_count;
};

struct bare_session {
    bare_token *t;
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE key; /* the token object or its session copy */
};

static void ck(CK_RV rv, const char *what)
{
    if (rv != CKR_OK)
        bench_die("bare token: %s returned 0x%lx", what, (unsigned long)rv);
}

static bool label_is(const CK_UTF8CHAR label[32], const char *want)
{
    size_t n = strlen(want);
    if (n > 32 || memcmp(label, want, n) != 0)
        return false;
    for (size_t i = n; i < 32; i++)
        if (label[i] != ' ')
            return false;
    return true;
}

static CK_SLOT_ID find_slot(CK_FUNCTION_LIST *f, const char *label)
{
    CK_ULONG n = 0;
    ck(f->C_GetSlotList(CK_TRUE, NULL, &n), "C_GetSlotList");
    CK_SLOT_ID *slots = calloc(n ? n : 1, sizeof(*slots));
    if (slots == NULL)
        bench_die("out of memory");
    ck(f->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && label_is(ti.label, label)) {
            CK_SLOT_ID s = slots[i];
            free(slots);
            return s;
        }
    }
    free(slots);
    bench_die("bare token: no token labelled %s", label);
}

/* "0f8e4a7c-..." -> 16 bytes. */
static void uuid_bytes(const char *text, uint8_t out[16])
{
    size_t j = 0;
    for (size_t i = 0; text[i] != '\0' && j < 32; i++) {
        char c = text[i];
        if (c == '-')
            continue;
        unsigned v = c >= 'a' ? (unsigned)(c - 'a' + 10) : (unsigned)(c - '0');
        if (j % 2 == 0)
            out[j / 2] = (uint8_t)(v << 4);
        else
            out[j / 2] |= (uint8_t)v;
        j++;
    }
    if (j != 32)
        bench_die("bad key id %s", text);
}

bare_token *bare_login(const char *module, const char *label, const char *pin)
{
    return bare_login_args(module, NULL, label, pin);
}

bare_token *bare_login_args(const char *module, const char *module_args, const char *label,
                            const char *pin)
{
    bare_token *t = calloc(1, sizeof(*t));
    if (t == NULL)
        bench_die("out of memory");
    t->f = p11_kit_module_load(module, 0);
    if (t->f == NULL)
        bench_die("bare token: cannot load %s: %s", module, p11_kit_message());
    /* As p11kms passes token.module-args (NSS softokn's database parameters). */
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK, .pReserved = (void *)module_args};
    CK_RV rv = t->f->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
        ck(rv, "C_Initialize");
    t->slot = find_slot(t->f, label);
    ck(t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->login),
       "C_OpenSession");
    rv = t->f->C_Login(t->login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        ck(rv, "C_Login");
    return t;
}

/* The object handle of version 1 of key_id, found by CKA_ID as an application would. */
static CK_OBJECT_HANDLE find_version1(bare_token *t, const char *key_id)
{
    /* Version 1 of the key: CKA_ID = 16-byte key id || u32 big-endian version. */
    uint8_t id[20];
    uuid_bytes(key_id, id);
    id[16] = 0, id[17] = 0, id[18] = 0, id[19] = 1;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL on_token = CK_TRUE; /* not p11kms's session copy of it (same CKA_ID, same process) */
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_TOKEN, &on_token, sizeof(on_token)},
                           {CKA_ID, id, sizeof(id)}};
    ck(t->f->C_FindObjectsInit(t->login, tmpl, 3), "C_FindObjectsInit");
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    ck(t->f->C_FindObjects(t->login, found, 2, &n), "C_FindObjects");
    ck(t->f->C_FindObjectsFinal(t->login), "C_FindObjectsFinal");
    if (n != 1)
        bench_die("bare token: %lu key objects carry the id of key %s version 1, expected 1",
                  (unsigned long)n, key_id);
    return found[0];
}

static CK_OBJECT_HANDLE copy_key(bare_token *t, CK_OBJECT_HANDLE key, CK_RV *rv)
{
    /* What p11kms asks for: only CKA_TOKEN=FALSE (the copy inherits CKA_SENSITIVE and
     * CKA_EXTRACTABLE), made in the login session so that every session of the process sees it. */
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    *rv = t->f->C_CopyObject(t->login, key, tmpl, 1, &copy);
    return *rv == CKR_OK ? copy : CK_INVALID_HANDLE;
}

bare_token *bare_open(const char *module, const char *label, const char *pin, const char *key_id)
{
    bare_token *t = bare_login(module, label, pin);
    t->key = find_version1(t, key_id);
    t->copy = copy_key(t, t->key, &t->copy_rv);
    return t;
}

bool bare_has_copy(const bare_token *t, unsigned long *why)
{
    if (why != NULL)
        *why = (unsigned long)t->copy_rv;
    return t->copy != CK_INVALID_HANDLE;
}

void bare_find_key(bare_token *t, const char *key_id)
{
    (void)find_version1(t, key_id);
}

double bare_generate_keys(bare_token *t, unsigned count)
{
    CK_OBJECT_HANDLE *made = calloc(count ? count : 1, sizeof(*made));
    if (made == NULL)
        bench_die("out of memory");
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    double start = bench_now();
    for (unsigned i = 0; i < count; i++) {
        /* The attributes of a p11kms key version: a token key, sensitive, never extractable,
         * encrypt/decrypt only, with a CKA_ID of its own. */
        uint8_t id[20] = {0xbe, 0x4c};
        memcpy(id + 2, &i, sizeof(i));
        memcpy(id + 8, &start, sizeof(start));
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},     {CKA_KEY_TYPE, &type, sizeof(type)},
            {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},   {CKA_SENSITIVE, &yes, sizeof(yes)},
            {CKA_EXTRACTABLE, &no, sizeof(no)}, {CKA_ENCRYPT, &yes, sizeof(yes)},
            {CKA_DECRYPT, &yes, sizeof(yes)},   {CKA_WRAP, &no, sizeof(no)},
            {CKA_UNWRAP, &no, sizeof(no)},      {CKA_ID, id, sizeof(id)},
        };
        ck(t->f->C_GenerateKey(t->login, &m, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &made[i]),
           "C_GenerateKey");
    }
    double seconds = bench_now() - start;
    for (unsigned i = 0; i < count; i++)
        ck(t->f->C_DestroyObject(t->login, made[i]), "C_DestroyObject");
    free(made);
    return seconds;
}

void bare_close(bare_token *t)
{
    if (t == NULL)
        return;
    if (t->copy != CK_INVALID_HANDLE)
        (void)t->f->C_DestroyObject(t->login, t->copy);
    for (size_t i = 0; i < t->cold_count; i++)
        (void)t->f->C_DestroyObject(t->login, t->cold[i]);
    free(t->cold);
    for (unsigned i = 0; i < t->all_count; i++)
        (void)t->f->C_DestroyObject(t->login, t->all[i]);
    free(t->all);
    t->f->C_CloseSession(t->login);
    /* p11-kit counts initializations of a managed module: this finalizes only our share. */
    t->f->C_Finalize(NULL);
    p11_kit_module_release(t->f);
    free(t);
}

void bare_module_name(bare_token *t, char *out, size_t size)
{
    CK_INFO info;
    ck(t->f->C_GetInfo(&info), "C_GetInfo");
    size_t n = p11_kit_space_strlen(info.libraryDescription, sizeof(info.libraryDescription));
    snprintf(out, size, "%.*s %u.%u", (int)n, (const char *)info.libraryDescription,
             info.libraryVersion.major, info.libraryVersion.minor);
}

bare_session *bare_session_open(bare_token *t)
{
    return bare_session_open_on(t, false);
}

bare_session *bare_session_open_on(bare_token *t, bool copy)
{
    if (copy && t->copy == CK_INVALID_HANDLE)
        bench_die("bare token: no session copy of the key (C_CopyObject returned 0x%lx)",
                  (unsigned long)t->copy_rv);
    bare_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        bench_die("out of memory");
    s->t = t;
    s->key = copy ? t->copy : t->key;
    ck(t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s->h),
       "C_OpenSession");
    return s;
}

void bare_session_close(bare_session *s)
{
    if (s == NULL)
        return;
    s->t->f->C_CloseSession(s->h);
    free(s);
}

static void gcm_params(CK_GCM_PARAMS *p, CK_MECHANISM *m, const uint8_t iv[12], const uint8_t *aad,
                       size_t aad_len)
{
    *p = (CK_GCM_PARAMS){.pIv = (CK_BYTE_PTR)iv,
                         .ulIvLen = 12,
                         .ulIvBits = 96,
                         .pAAD = (CK_BYTE_PTR)aad,
                         .ulAADLen = aad_len,
                         .ulTagBits = 128};
    *m = (CK_MECHANISM){CKM_AES_GCM, p, sizeof(*p)};
}

void bare_encrypt(bare_session *s, const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *pt, size_t pt_len, uint8_t *out)
{
    CK_FUNCTION_LIST *f = s->t->f;
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    gcm_params(&p, &m, iv, aad, aad_len);
    ck(f->C_EncryptInit(s->h, &m, s->key), "C_EncryptInit");
    CK_ULONG out_len = pt_len + 16;
    ck(f->C_Encrypt(s->h, (CK_BYTE_PTR)pt, pt_len, out, &out_len), "C_Encrypt");
    if (out_len != pt_len + 16)
        bench_die("bare token: C_Encrypt returned %lu bytes", (unsigned long)out_len);
}

void bare_decrypt(bare_session *s, const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *pt)
{
    CK_FUNCTION_LIST *f = s->t->f;
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    gcm_params(&p, &m, iv, aad, aad_len);
    ck(f->C_DecryptInit(s->h, &m, s->key), "C_DecryptInit");
    CK_ULONG out_len = in_len; /* SoftHSM wants room for the whole input */
    ck(f->C_Decrypt(s->h, (CK_BYTE_PTR)in, in_len, pt, &out_len), "C_Decrypt");
    if (out_len != in_len - 16)
        bench_die("bare token: C_Decrypt returned %lu bytes", (unsigned long)out_len);
}

size_t bench_aad(const uint8_t *header, size_t header_len, const char *const *keys,
                 const char *const *values, size_t pairs, uint8_t *out, size_t cap)
{
    /* Canonical context: u16 count, then sorted { u16 len, key, u16 len, value }. The caller
     * passes the pairs already sorted by key. */
    uint8_t ctx[1024];
    size_t n = 0;
    if (pairs > 0) {
        ctx[n++] = (uint8_t)(pairs >> 8), ctx[n++] = (uint8_t)pairs;
        for (size_t i = 0; i < pairs; i++) {
            const char *parts[2] = {keys[i], values[i]};
            for (int j = 0; j < 2; j++) {
                size_t len = strlen(parts[j]);
                if (n + 2 + len > sizeof(ctx))
                    bench_die("context too long");
                ctx[n++] = (uint8_t)(len >> 8), ctx[n++] = (uint8_t)len;
                memcpy(ctx + n, parts[j], len);
                n += len;
            }
        }
    }
    size_t total = header_len + 4 + n;
    if (total > cap)
        bench_die("AAD buffer too small");
    memcpy(out, header, header_len);
    uint8_t *len = out + header_len;
    len[0] = (uint8_t)(n >> 24), len[1] = (uint8_t)(n >> 16), len[2] = (uint8_t)(n >> 8);
    len[3] = (uint8_t)n;
    memcpy(len + 4, ctx, n);
    return total;
}

void bare_cold_encrypt(bare_session *s, const char *key_id, const uint8_t iv[12],
                       const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                       uint8_t *out)
{
    bare_token *t = s->t;
    if (t->cold_count == t->cold_cap) {
        size_t cap = t->cold_cap ? 2 * t->cold_cap : 64;
        CK_OBJECT_HANDLE *more = realloc(t->cold, cap * sizeof(*more));
        if (more == NULL)
            bench_die("out of memory");
        t->cold = more, t->cold_cap = cap;
    }
    CK_RV rv;
    CK_OBJECT_HANDLE copy = copy_key(t, find_version1(t, key_id), &rv);
    ck(rv, "C_CopyObject");
    t->cold[t->cold_count++] = copy;
    CK_OBJECT_HANDLE was = s->key;
    s->key = copy;
    bare_encrypt(s, iv, aad, aad_len, pt, pt_len, out);
    s->key = was;
}

unsigned bare_copy_all(bare_token *t, unsigned max)
{
    /* One search for every AES token key (SoftHSM reads each object file once), then a session
     * copy of each, at most max. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_KEY_TYPE, &type, sizeof(type)},
                           {CKA_TOKEN, &on_token, sizeof(on_token)}};
    CK_OBJECT_HANDLE *found = calloc(max ? max : 1, sizeof(*found));
    t->all = calloc(max ? max : 1, sizeof(*t->all));
    if (found == NULL || t->all == NULL)
        bench_die("out of memory");
    CK_ULONG n = 0;
    ck(t->f->C_FindObjectsInit(t->login, tmpl, 3), "C_FindObjectsInit");
    ck(t->f->C_FindObjects(t->login, found, max, &n), "C_FindObjects");
    ck(t->f->C_FindObjectsFinal(t->login), "C_FindObjectsFinal");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_RV rv;
        t->all[t->all_count] = copy_key(t, found[i], &rv);
        ck(rv, "C_CopyObject");
        t->all_count++;
    }
    free(found);
    return t->all_count;
}

void bare_encrypt_copy(bare_session *s, unsigned index, const uint8_t iv[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out)
{
    if (index >= s->t->all_count)
        bench_die("bare token: no session copy number %u", index);
    CK_OBJECT_HANDLE was = s->key;
    s->key = s->t->all[index];
    bare_encrypt(s, iv, aad, aad_len, pt, pt_len, out);
    s->key = was;
}
