#include "config.h"

/* One service shared by many threads: 7 workers run mixed encrypt / decrypt / generate-data-key /
 * re-encrypt operations on 3 keys while an administrator thread rotates keys and rewrites their
 * descriptions. Every result is verified: whatever was encrypted decrypts to the same bytes,
 * under the key and context it was made with, including ciphertexts made before rotations. */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"

#define WORKERS 7
#define OPS 200
#define KEYS 3
#define HISTORY 8

static p11kms *svc;
static p11kms_principal *who;
static char key_ids[KEYS][P11KMS_KEY_ID_LEN + 1];
static char key_arns[KEYS][P11KMS_ARN_MAX];
static atomic_int thread_failures;
static atomic_int thread_checks;
static atomic_int ops_done;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

/* Checks from threads: counted atomically, reported with the thread and operation. */
#define TCHECK(cond, w, what)                                                                      \
    do {                                                                                           \
        atomic_fetch_add(&thread_checks, 1);                                                       \
        if (!(cond)) {                                                                             \
            atomic_fetch_add(&thread_failures, 1);                                                 \
            pthread_mutex_lock(&print_lock);                                                       \
            fprintf(stderr, "%s:%d: thread %d op %d (%s): check failed: %s [%s: %s]\n", __FILE__,  \
                    __LINE__, (w)->index, (w)->op, what, #cond, p11kms_error_class((w)->e.code),   \
                    (w)->e.message);                                                               \
            pthread_mutex_unlock(&print_lock);                                                     \
        }                                                                                          \
    } while (0)

typedef struct saved {
    uint8_t *blob;
    size_t blob_len;
    uint8_t plain[128];
    size_t plain_len;
    int key;
    char tag[32]; /* context value */
} saved;

typedef struct worker {
    int index;
    int op;
    unsigned seed;
    p11kms_error e;
    saved history[HISTORY];
    size_t next;
} worker;

static unsigned rnd(worker *w)
{
    w->seed = w->seed * 1103515245u + 12345u;
    return (w->seed >> 16) & 0x7fff;
}

static p11kms_context *context_for(const char *tag)
{
    return fx_ctx("thread-test", tag, NULL);
}

static void remember(worker *w, uint8_t *blob, size_t blob_len, const uint8_t *plain,
                     size_t plain_len, int key, const char *tag)
{
    saved *s = &w->history[w->next++ % HISTORY];
    free(s->blob);
    s->blob = blob;
    s->blob_len = blob_len;
    memcpy(s->plain, plain, plain_len);
    s->plain_len = plain_len;
    s->key = key;
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
}

/* Decrypts a remembered ciphertext and compares. */
static void verify(worker *w, const saved *s)
{
    p11kms_context *ctx = context_for(s->tag);
    p11kms_result r;
    p11kms_err rc = p11kms_decrypt(svc, who, key_ids[s->key], ctx, s->blob, s->blob_len, &r, &w->e);
    TCHECK(rc == P11KMS_OK, w, "decrypt");
    if (rc == P11KMS_OK) {
        TCHECK(fx_same(r.plaintext, r.plaintext_len, s->plain, s->plain_len), w, "decrypt");
        TCHECK(strcmp(r.key_id, key_arns[s->key]) == 0, w, "decrypt");
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
}

static void op_encrypt(worker *w)
{
    int key = (int)(rnd(w) % KEYS);
    uint8_t plain[128];
    size_t len = 1 + rnd(w) % sizeof(plain);
    for (size_t i = 0; i < len; i++)
        plain[i] = (uint8_t)rnd(w);
    char tag[32];
    snprintf(tag, sizeof(tag), "t%d-op%d", w->index, w->op);
    p11kms_context *ctx = context_for(tag);
    p11kms_result r;
    p11kms_err rc = p11kms_encrypt(svc, who, key_ids[key], ctx, plain, len, &r, &w->e);
    TCHECK(rc == P11KMS_OK, w, "encrypt");
    if (rc == P11KMS_OK) {
        TCHECK(strcmp(r.key_id, key_arns[key]) == 0 && r.key_version >= 1, w, "encrypt");
        remember(w, r.ciphertext, r.ciphertext_len, plain, len, key, tag);
        r.ciphertext = NULL;
        verify(w, &w->history[(w->next - 1) % HISTORY]);
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
}

static void op_data_key(worker *w)
{
    int key = (int)(rnd(w) % KEYS);
    char tag[32];
    snprintf(tag, sizeof(tag), "dk%d-op%d", w->index, w->op);
    p11kms_context *ctx = context_for(tag);
    p11kms_result r;
    p11kms_err rc =
        p11kms_generate_data_key(svc, who, key_ids[key], ctx, "AES_256", 0, true, &r, &w->e);
    TCHECK(rc == P11KMS_OK, w, "generate-data-key");
    if (rc == P11KMS_OK) {
        TCHECK(r.plaintext != NULL && r.plaintext_len == 32, w, "generate-data-key");
        remember(w, r.ciphertext, r.ciphertext_len, r.plaintext, r.plaintext_len, key, tag);
        r.ciphertext = NULL;
        verify(w, &w->history[(w->next - 1) % HISTORY]);
    }
    p11kms_result_free(&r);
    p11kms_context_free(ctx);
}

static void op_re_encrypt(worker *w)
{
    if (w->next == 0)
        return;
    saved *s = &w->history[rnd(w) % (w->next < HISTORY ? w->next : HISTORY)];
    int dest = (int)(rnd(w) % KEYS);
    char tag[32];
    snprintf(tag, sizeof(tag), "re%d-op%d", w->index, w->op);
    p11kms_context *src_ctx = context_for(s->tag);
    p11kms_context *dst_ctx = context_for(tag);
    p11kms_result r;
    p11kms_err rc = p11kms_re_encrypt(svc, who, NULL, src_ctx, s->blob, s->blob_len, key_ids[dest],
                                      dst_ctx, &r, &w->e);
    TCHECK(rc == P11KMS_OK, w, "re-encrypt");
    if (rc == P11KMS_OK) {
        TCHECK(strcmp(r.source_key_id, key_arns[s->key]) == 0, w, "re-encrypt");
        TCHECK(strcmp(r.key_id, key_arns[dest]) == 0, w, "re-encrypt");
        uint8_t plain[128];
        size_t len = s->plain_len;
        memcpy(plain, s->plain, len);
        remember(w, r.ciphertext, r.ciphertext_len, plain, len, dest, tag);
        r.ciphertext = NULL;
        verify(w, &w->history[(w->next - 1) % HISTORY]);
    }
    p11kms_result_free(&r);
    p11kms_context_free(src_ctx);
    p11kms_context_free(dst_ctx);
}

static void op_decrypt_old(worker *w)
{
    if (w->next == 0)
        return;
    verify(w, &w->history[rnd(w) % (w->next < HISTORY ? w->next : HISTORY)]);
    /* A wrong context must still be refused under load. */
    saved *s = &w->history[(w->next - 1) % HISTORY];
    p11kms_context *wrong = context_for("not-this-one");
    p11kms_result r;
    p11kms_err rc = p11kms_decrypt(svc, who, NULL, wrong, s->blob, s->blob_len, &r, &w->e);
    TCHECK(rc == P11KMS_E_INVALID_CIPHERTEXT && r.plaintext == NULL, w, "decrypt, wrong context");
    p11kms_result_free(&r);
    p11kms_context_free(wrong);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (w->op = 0; w->op < OPS; w->op++) {
        switch (rnd(w) % 4) {
        case 0:
            op_encrypt(w);
            break;
        case 1:
            op_data_key(w);
            break;
        case 2:
            op_re_encrypt(w);
            break;
        default:
            op_decrypt_old(w);
            break;
        }
        atomic_fetch_add(&ops_done, 1);
    }
    for (size_t i = 0; i < HISTORY; i++)
        if (w->history[i].blob != NULL)
            verify(w, &w->history[i]);
    return NULL;
}

static void *admin_main(void *arg)
{
    worker *w = arg;
    static const char *const descriptions[] = {"description one", "description two"};
    for (w->op = 0; w->op < OPS; w->op++) {
        int key = w->op % KEYS;
        if (w->op % 10 == 0) {
            p11kms_key_metadata md = {0};
            p11kms_err rc = p11kms_rotate_key_on_demand(svc, who, key_ids[key], &md, &w->e);
            TCHECK(rc == P11KMS_OK, w, "rotate-key-on-demand");
        } else {
            const char *d = descriptions[w->op % 2];
            p11kms_err rc = p11kms_update_key_description(svc, who, key_ids[key], d, &w->e);
            TCHECK(rc == P11KMS_OK, w, "update-key-description");
            p11kms_key_metadata md = {0};
            rc = p11kms_describe_key(svc, who, key_ids[key], &md, &w->e);
            TCHECK(rc == P11KMS_OK, w, "describe-key");
            TCHECK(strcmp(md.description, descriptions[0]) == 0 ||
                       strcmp(md.description, descriptions[1]) == 0,
                   w, "describe-key");
            TCHECK(md.state == P11KMS_KEY_ENABLED, w, "describe-key");
        }
        atomic_fetch_add(&ops_done, 1);
    }
    return NULL;
}

int main(void)
{
    svc = fx_open(NULL);
    who = fx_principal("unix:user:threads-tester");
    for (int k = 0; k < KEYS; k++) {
        fx_create_key(svc, who, "threads", key_ids[k]);
        fx_key_arn(key_ids[k], key_arns[k]);
    }

    fx_say("%d worker threads x %d mixed operations on %d keys, plus one thread rotating keys "
           "and changing descriptions",
           WORKERS, OPS, KEYS);
    worker workers[WORKERS + 1];
    pthread_t threads[WORKERS + 1];
    memset(workers, 0, sizeof(workers));
    for (int i = 0; i <= WORKERS; i++) {
        workers[i].index = i;
        workers[i].seed = 0x9e3779b9u * (unsigned)(i + 1);
        REQUIRE(pthread_create(&threads[i], NULL, i < WORKERS ? worker_main : admin_main,
                               &workers[i]) == 0);
    }
    for (int i = 0; i <= WORKERS; i++)
        REQUIRE(pthread_join(threads[i], NULL) == 0);
    fx_say("%d operations done, %d verifications, %d failed", atomic_load(&ops_done),
           atomic_load(&thread_checks), atomic_load(&thread_failures));
    CHECK(atomic_load(&ops_done) == (WORKERS + 1) * OPS);
    CHECK(atomic_load(&thread_checks) > WORKERS * OPS);
    CHECK(atomic_load(&thread_failures) == 0);

    fx_say("after the run: each key has 1 + its rotations versions, every saved ciphertext "
           "still decrypts");
    p11kms_error e = {0};
    for (int k = 0; k < KEYS; k++) {
        p11kms_key_metadata md = {0};
        CHECK_OK(p11kms_describe_key(svc, who, key_ids[k], &md, &e), &e);
        int rotations = 0;
        for (int op = 0; op < OPS; op += 10)
            rotations += op % KEYS == k;
        CHECK(md.current_version == (uint32_t)(1 + rotations));
        CHECK(md.version_count == (uint32_t)(1 + rotations));
    }
    int before = atomic_load(&thread_failures);
    for (int i = 0; i < WORKERS; i++) {
        for (size_t h = 0; h < HISTORY; h++) {
            if (workers[i].history[h].blob != NULL)
                verify(&workers[i], &workers[i].history[h]);
            free(workers[i].history[h].blob);
        }
    }
    CHECK(atomic_load(&thread_failures) == before);
    check_count += atomic_load(&thread_checks);
    check_failures += atomic_load(&thread_failures);
    p11kms_principal_free(who);
    p11kms_close(svc);
    return check_finish("provider-threads-test");
}
