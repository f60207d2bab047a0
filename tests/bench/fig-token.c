#include "config.h"

/* Figures 1-4: p11kms on the main token (one key, a real policy) against the bare token and bare
 * OpenSSL doing the same cryptographic work. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bench.h"

#define PT_LEN 32
#define AAD_MAX 512

/* The context pairs of env->ctx and env->child_ctx, sorted by key, for the baselines' AAD. */
static const char *const ctx_keys[] = {"aws:redshift:arn", "aws:redshift:createtime"};
static const char *const ctx_values[] = {
    "arn:aws:redshift:us-east-1:123456789012:cluster:bench-cluster", "20240115T093000Z"};
static const char *const child_keys[] = {"database", "tier"};
static const char *const child_values[] = {"sales", "database"};

/* Everything the sides of figures 1-4 share (read-only while measuring). */
typedef struct token_fix {
    bench_env *env;
    p11kms *svc;
    const char *key_id;
    uint8_t pt[PT_LEN];
    uint8_t *blob; /* made by p11kms_encrypt: figure 3 decrypts it */
    size_t blob_len;
    uint8_t aad[AAD_MAX]; /* the AAD of blob, as p11kms builds it */
    size_t aad_len;
    bare_token *bare;
    p11kms_opened_key *parent; /* figure 4 */
    uint8_t child_aad[AAD_MAX];
    size_t child_aad_len;
    /* p11kms uses session copies of its key versions (token.key-cache: session-copy, and the
     * token copies keys): baseline B of figures 1-3 is then the bare loop on a session copy, and
     * the bare loop on the token object is the second baseline (figures 1a-t, 1b-t, 2-t, 3-t). */
    bool copies;
} token_fix;

/* --- side A: p11kms ------------------------------------------------------------------------ */

static void op_encrypt(void *arg)
{
    token_fix *x = arg;
    p11kms_result r;
    p11kms_error e = {0};
    p11kms_err rc;
    do
        rc = p11kms_encrypt(x->svc, x->env->user, x->key_id, x->env->ctx, x->pt, PT_LEN, &r, &e);
    while (bench_retry(rc, &e));
    bench_check(rc, &e, "p11kms_encrypt");
    p11kms_result_free(&r);
}

static void op_generate_data_key(void *arg)
{
    token_fix *x = arg;
    p11kms_result r;
    p11kms_error e = {0};
    bench_check(p11kms_generate_data_key(x->svc, x->env->user, x->key_id, x->env->ctx, "AES_256", 0,
                                         true, &r, &e),
                &e, "p11kms_generate_data_key");
    p11kms_result_free(&r);
}

static void op_decrypt(void *arg)
{
    token_fix *x = arg;
    p11kms_result r;
    p11kms_error e = {0};
    bench_check(
        p11kms_decrypt(x->svc, x->env->user, NULL, x->env->ctx, x->blob, x->blob_len, &r, &e), &e,
        "p11kms_decrypt");
    p11kms_result_free(&r);
}

static void op_child_key(void *arg)
{
    token_fix *x = arg;
    p11kms_result r;
    p11kms_error e = {0};
    bench_check(p11kms_generate_child_key(x->parent, x->env->child_ctx, 32, true, &r, &e), &e,
                "p11kms_generate_child_key");
    p11kms_result_free(&r);
}

/* --- side B: the bare token ---------------------------------------------------------------- */

typedef struct bare_worker {
    token_fix *x;
    bare_session *s;
    uint8_t iv[12];
    uint8_t out[PT_LEN + 16];
    uint8_t back[PT_LEN + 16];
} bare_worker;

static void *bare_setup_on(token_fix *x, unsigned thread, bool copy)
{
    bare_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        bench_die("out of memory");
    w->x = x;
    w->s = bare_session_open_on(x->bare, copy);
    /* A counter IV per thread and object: unique under the key, and free (p11kms draws random
     * ones). */
    w->iv[0] = (uint8_t)thread;
    w->iv[1] = copy ? 0xc5 : 0xb5;
    return w;
}

/* The bare loop on the object form p11kms uses. */
static void *bare_setup(void *arg, unsigned thread)
{
    token_fix *x = arg;
    return bare_setup_on(x, thread, x->copies);
}

/* The bare loop on the token object. */
static void *bare_setup_token(void *arg, unsigned thread)
{
    return bare_setup_on(arg, thread, false);
}

static void bare_teardown(void *state)
{
    bare_worker *w = state;
    bare_session_close(w->s);
    free(w);
}

static void next_iv(uint8_t iv[12])
{
    for (int i = 11; i >= 4; i--)
        if (++iv[i] != 0)
            break;
}

static void op_bare_encrypt(void *state)
{
    bare_worker *w = state;
    next_iv(w->iv);
    bare_encrypt(w->s, w->iv, w->x->aad, w->x->aad_len, w->x->pt, PT_LEN, w->out);
}

static void op_bare_encrypt_decrypt(void *state)
{
    bare_worker *w = state;
    next_iv(w->iv);
    bare_encrypt(w->s, w->iv, w->x->aad, w->x->aad_len, w->x->pt, PT_LEN, w->out);
    bare_decrypt(w->s, w->iv, w->x->aad, w->x->aad_len, w->out, sizeof(w->out), w->back);
}

/* The MASTER blob layout: header (23) || IV (12) || u32 length || ciphertext || tag. */
static void op_bare_decrypt(void *state)
{
    bare_worker *w = state;
    const uint8_t *b = w->x->blob;
    bare_decrypt(w->s, b + 23, w->x->aad, w->x->aad_len, b + 23 + 12 + 4, PT_LEN + 16, w->back);
}

/* --- side B of figure 4: bare OpenSSL ------------------------------------------------------ */

typedef struct evp_worker {
    token_fix *x;
    EVP_CIPHER_CTX *c;
    uint8_t key[32], iv[12], out[32], tag[16];
} evp_worker;

static void *evp_setup(void *arg, unsigned thread)
{
    (void)thread;
    evp_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        bench_die("out of memory");
    w->x = arg;
    w->c = EVP_CIPHER_CTX_new();
    uint8_t parent[32];
    if (w->c == NULL || RAND_bytes(parent, sizeof(parent)) != 1 ||
        EVP_EncryptInit_ex(w->c, EVP_aes_256_gcm(), NULL, parent, NULL) != 1)
        bench_die("OpenSSL AES-256-GCM set-up failed");
    return w;
}

static void evp_teardown(void *state)
{
    evp_worker *w = state;
    EVP_CIPHER_CTX_free(w->c);
    free(w);
}

static void op_evp_wrap(void *state)
{
    evp_worker *w = state;
    int len;
    if (RAND_bytes(w->key, sizeof(w->key)) != 1 || RAND_bytes(w->iv, sizeof(w->iv)) != 1 ||
        EVP_EncryptInit_ex(w->c, NULL, NULL, NULL, w->iv) != 1 ||
        EVP_EncryptUpdate(w->c, NULL, &len, w->x->child_aad, (int)w->x->child_aad_len) != 1 ||
        EVP_EncryptUpdate(w->c, w->out, &len, w->key, sizeof(w->key)) != 1 ||
        EVP_EncryptFinal_ex(w->c, w->out + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(w->c, EVP_CTRL_GCM_GET_TAG, sizeof(w->tag), w->tag) != 1)
        bench_die("OpenSSL AES-256-GCM encryption failed");
}

/* --- set-up -------------------------------------------------------------------------------- */

/* The baseline must do what p11kms does: decrypting p11kms's own blob with the AAD computed
 * here proves the same key object and the same AAD bytes. */
static void prove_same_work(token_fix *x)
{
    for (int copy = 0; copy <= (x->copies ? 1 : 0); copy++) {
        bare_worker *w = bare_setup_on(x, 0, copy);
        op_bare_decrypt(w);
        if (memcmp(w->back, x->pt, PT_LEN) != 0)
            bench_die("the bare token does not decrypt p11kms's blob to its plaintext (%s)",
                      copy ? "session copy" : "token object");
        bare_teardown(w);
    }
}

static void make_parent(token_fix *x)
{
    p11kms_result dk;
    p11kms_error e = {0};
    bench_check(p11kms_generate_data_key(x->svc, x->env->user, x->key_id, x->env->ctx, "AES_256", 0,
                                         true, &dk, &e),
                &e, "p11kms_generate_data_key");
    bench_check(p11kms_open_key(x->svc, x->env->user, x->env->ctx, dk.ciphertext, dk.ciphertext_len,
                                &x->parent, &e),
                &e, "p11kms_open_key");
    p11kms_result_free(&dk);
    /* The CHILD header is version, type, algorithm and the parent's 8-byte check value. */
    uint8_t header[11] = {0x01, 0x02, 0x01};
    p11kms_opened_key_check_value(x->parent, header + 3);
    x->child_aad_len = bench_aad(header, sizeof(header), child_keys, child_values, 2, x->child_aad,
                                 sizeof(x->child_aad));
}

static void set_labels(figure *f, const char *title, const char *a, const char *b, double goal)
{
    snprintf(f->title, sizeof(f->title), "%s", title);
    snprintf(f->a_label, sizeof(f->a_label), "%s", a);
    snprintf(f->b_label, sizeof(f->b_label), "%s", b);
    f->goal = goal;
}

/* The goals against the bare token object hold for SoftHSM with session copies (the issue's
 * measurement of what a copy saves there); elsewhere that figure is reported. */
static double token_goal(const token_fix *x, const bench_results *r, double goal)
{
    bool softhsm = strstr(r->module_name, "SoftHSM") != NULL ||
                   strstr(r->token.library_manufacturer, "SoftHSM") != NULL;
    return x->copies && softhsm ? goal : 0;
}

void figures_token(bench_env *env, const bench_opts *o, bench_results *r)
{
    bool want[5] = {false, bench_selected(o, "1"), bench_selected(o, "2"), bench_selected(o, "3"),
                    bench_selected(o, "4")};
    if (!want[1] && !want[2] && !want[3] && !want[4])
        return;
    token_fix x = {.env = env, .svc = env_open(&env->main)};
    p11kms_error e = {0};
    bench_check(p11kms_token_info(x.svc, &r->token, &e), &e, "p11kms_token_info");
    env_main_key(env, x.svc);
    x.key_id = env->main_id;
    if (RAND_bytes(x.pt, sizeof(x.pt)) != 1)
        bench_die("RAND_bytes failed");

    p11kms_result blob;
    bench_check(p11kms_encrypt(x.svc, env->user, x.key_id, env->ctx, x.pt, PT_LEN, &blob, &e), &e,
                "p11kms_encrypt");
    x.blob = blob.ciphertext;
    x.blob_len = blob.ciphertext_len;
    x.aad_len = bench_aad(x.blob, 23, ctx_keys, ctx_values, 2, x.aad, sizeof(x.aad));
    x.bare = bare_open(env->module, env->main.label, env->pin, x.key_id);
    bare_module_name(x.bare, r->module_name, sizeof(r->module_name));
    unsigned long copy_rv = 0;
    x.copies = strcmp(r->token.key_cache, "session-copy") == 0;
    if (x.copies && !bare_has_copy(x.bare, &copy_rv))
        bench_die("p11kms uses session copies but the bare token could not copy the key (0x%lx)",
                  copy_rv);
    prove_same_work(&x);

    bench_side a, b, c;
    const char *form = x.copies ? "session copy of the key (what p11kms uses)"
                                : "the token object (what p11kms uses)";
    char b_text[160];
    if (want[1]) {
        a = (bench_side){.label = "p11kms_encrypt", .op = op_encrypt, .arg = &x};
        b = (bench_side){.label = "bare C_EncryptInit+C_Encrypt",
                         .setup = bare_setup,
                         .op = op_bare_encrypt,
                         .teardown = bare_teardown,
                         .arg = &x};
        c = b;
        c.setup = bare_setup_token;
        unsigned counts[2] = {1, o->threads};
        for (int i = 0; i < (o->threads > 1 ? 2 : 1); i++) {
            figure *f = results_add(r, i == 0 ? "1a" : "1b");
            figure *g = results_add(r, i == 0 ? "1a-t" : "1b-t");
            snprintf(b_text, sizeof(b_text), "C_EncryptInit + C_Encrypt, AES-GCM, %s, own session",
                     form);
            set_labels(
                f, "Encrypt 32 B, 2-pair context, policy on",
                "p11kms_encrypt (token key, policy evaluated, random IV from the private DRBG)",
                b_text, 0.95);
            set_labels(g, "Encrypt 32 B, vs bare loop on the token object", f->a_label,
                       "C_EncryptInit + C_Encrypt, AES-GCM, the token object, own session",
                       token_goal(&x, r, i == 0 ? 2.5 : 1.3));
            bench_compare2(f, g, &a, &b, &c, counts[i], o);
        }
    }
    if (want[2]) {
        figure *f = results_add(r, "2");
        figure *g = results_add(r, "2-t");
        snprintf(b_text, sizeof(b_text), "C_Encrypt + C_Decrypt of 32 B, AES-GCM, %s", form);
        set_labels(f, "GenerateDataKey AES_256 (with trial decrypt)",
                   "p11kms_generate_data_key AES_256", b_text, 0.95);
        set_labels(g, "GenerateDataKey, vs bare loop on the token object", f->a_label,
                   "C_Encrypt + C_Decrypt of 32 B, AES-GCM, the token object",
                   token_goal(&x, r, 2.5));
        a = (bench_side){
            .label = "p11kms_generate_data_key", .op = op_generate_data_key, .arg = &x};
        b = (bench_side){.label = "bare encrypt+decrypt",
                         .setup = bare_setup,
                         .op = op_bare_encrypt_decrypt,
                         .teardown = bare_teardown,
                         .arg = &x};
        c = b;
        c.setup = bare_setup_token;
        bench_compare2(f, g, &a, &b, &c, 1, o);
    }
    if (want[3]) {
        figure *f = results_add(r, "3");
        figure *g = results_add(r, "3-t");
        snprintf(b_text, sizeof(b_text), "C_DecryptInit + C_Decrypt of the same blob, %s", form);
        set_labels(f, "Decrypt a 32 B blob", "p11kms_decrypt of a figure-1 blob", b_text, 0.95);
        set_labels(g, "Decrypt, vs bare loop on the token object", f->a_label,
                   "C_DecryptInit + C_Decrypt of the same blob, the token object",
                   token_goal(&x, r, 2.5));
        a = (bench_side){.label = "p11kms_decrypt", .op = op_decrypt, .arg = &x};
        b = (bench_side){.label = "bare decrypt",
                         .setup = bare_setup,
                         .op = op_bare_decrypt,
                         .teardown = bare_teardown,
                         .arg = &x};
        c = b;
        c.setup = bare_setup_token;
        bench_compare2(f, g, &a, &b, &c, 1, o);
    }
    if (want[1] || want[2] || want[3]) {
        /* Say what p11kms used while measuring: the mode and the copies alive now. */
        p11kms_token_report after;
        bench_check(p11kms_token_info(x.svc, &after, &e), &e, "p11kms_token_info");
        for (unsigned i = 0; i < r->count; i++)
            if (r->figures[i].id[0] >= '1' && r->figures[i].id[0] <= '3')
                snprintf(r->figures[i].note, sizeof(r->figures[i].note),
                         "p11kms key cache: %s, %u session copies live, %u keys refused%s%s",
                         after.key_cache, (unsigned)after.session_copies,
                         (unsigned)after.refused_keys, after.key_cache_reason[0] ? ": " : "",
                         after.key_cache_reason);
    }
    if (want[4]) {
        make_parent(&x);
        figure *f = results_add(r, "4");
        set_labels(f, "Data key under an opened cluster key (memory)",
                   "p11kms_generate_child_key(parent, 2-pair ctx, 32, plaintext)",
                   "OpenSSL EVP AES-256-GCM: RAND_bytes key+IV, key schedule set once", 0.9);
        a = (bench_side){.label = "p11kms_generate_child_key", .op = op_child_key, .arg = &x};
        b = (bench_side){.label = "bare EVP",
                         .setup = evp_setup,
                         .op = op_evp_wrap,
                         .teardown = evp_teardown,
                         .arg = &x};
        bench_compare(f, &a, &b, 1, o);
        p11kms_opened_key_close(x.parent);
    }
    bare_close(x.bare);
    p11kms_result_free(&blob);
    p11kms_close(x.svc);
}
