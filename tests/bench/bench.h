/* p11kms-bench: p11kms against the bare token and bare OpenSSL, measured side by side.
 *
 * Every figure compares side A (p11kms) with side B (a baseline doing the same cryptographic
 * work without p11kms) in the same process and the same run: each round runs A then B for the
 * same duration, and the figure is the median over the rounds of the per-round ratio, so drift
 * of the machine (frequency, noisy neighbours) hits both sides alike. */
#ifndef P11KMS_BENCH_H
#define P11KMS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "p11kms.h"

#define BENCH_MAX_ROUNDS 101
#define BENCH_MAX_THREADS 64
#define BENCH_MAX_FIGURES 24

/* --- options ------------------------------------------------------------------------------- */

typedef struct bench_opts {
    double duration;      /* seconds per side per round */
    unsigned rounds;      /* rounds per figure; the figure is the median */
    unsigned threads;     /* threads of the concurrent variant of figure 1 */
    unsigned keys;        /* master keys in the large token (figures 5 and 7) */
    double create_budget; /* seconds creating them may take; the figures use what was made */
    bool smoke;           /* a few operations per side, no meaningful timing */
    unsigned smoke_ops;
    const char *json_path; /* NULL: no JSON */
    const char *workdir;   /* NULL: a fresh directory under the build directory */
    bool keep;             /* keep the work directory */
    const char *module;    /* the PKCS#11 module (SoftHSM) */
    const char *softhsm_util;
    /* --token nss: the scale figures' tokens are fresh NSS softokn databases (certutil -N)
     * instead of SoftHSM tokens; figures 1-8 and the daemon figure stay on SoftHSM. */
    bool nss;
    const char *nss_softokn;
    const char *certutil;
    const char *only;      /* comma-separated figure numbers, NULL for all */
    const char *rng;       /* token.rng of the configurations; NULL: the library's default */
    const char *key_cache; /* token.key-cache; NULL: the library's default */
    unsigned session_keys; /* token.session-keys; 0: the library's default */
    unsigned count_batch;  /* keys.count-batch; 0: the library's default */
    /* The scale figures (--scale N keys instead of figures 1-8), on SQLite and, with --pg
     * CONNINFO, PostgreSQL; --scale-stores LIST narrows them (NULL: both). */
    unsigned scale;
    const char *pg_store;
    const char *scale_stores;
    bool daemon; /* --daemon: the p11kmsd figure instead of figures 1-8 */
} bench_opts;

/* Whether figure number n ("1".."7") was selected with --only. */
bool bench_selected(const bench_opts *o, const char *n);

/* --- failures ------------------------------------------------------------------------------ */

/* A benchmark that cannot run is a failure: print why and exit 1. */
_Noreturn void bench_die(const char *fmt, ...) P11KMS_PRINTF(1, 2);
/* Ends the run when rc is not P11KMS_OK, naming what failed. */
void bench_check(p11kms_err rc, const p11kms_error *e, const char *what);
/* Whether a failed call asked its caller to retry (p11kms_encrypt under contention for the
 * encryption budget); such failures are counted (bench_retries) and the call repeated, as an
 * application would. */
bool bench_retry(p11kms_err rc, const p11kms_error *e);
unsigned long bench_retries(void);

/* --- timing -------------------------------------------------------------------------------- */

double bench_now(void); /* monotonic seconds */

/* One side of a figure. setup runs in each worker thread before the clock starts and returns
 * that thread's state; op performs one operation (it ends the run itself on failure); teardown
 * frees the state after the clock stopped. setup and teardown may be NULL (state = arg). */
typedef struct bench_side {
    const char *label;
    void *(*setup)(void *arg, unsigned thread);
    void (*op)(void *state);
    void (*teardown)(void *state);
    void *arg;
    unsigned batch; /* operations between two looks at the clock (0: 1), for very short ops */
} bench_side;

/* A side run with one thread is pinned to this CPU (-1: not pinned); see measure.c. */
int bench_single_thread_cpu(void);

typedef struct side_run {
    uint64_t ops;
    double seconds;     /* wall clock, first start to last finish */
    double cpu_seconds; /* CPU time of the worker threads (CLOCK_THREAD_CPUTIME_ID) */
} side_run;

/* Runs side with threads workers until duration seconds have passed (at least one operation
 * each), or, when max_ops is not 0, for max_ops operations per thread. */
side_run bench_run_side(const bench_side *side, unsigned threads, double duration,
                        uint64_t max_ops);

/* --- figures ------------------------------------------------------------------------------- */

typedef enum ratio_kind {
    RATIO_THROUGHPUT, /* A ops/s divided by B ops/s; higher is better; goal is a minimum */
    RATIO_TIME,       /* A time per op divided by B time per op; goal is a maximum */
} ratio_kind;

typedef struct figure {
    char id[8];
    char title[160];
    char a_label[160], b_label[160];
    unsigned threads;
    ratio_kind kind;
    double goal;     /* 0: no goal, report only */
    double max_a_ms; /* a goal on side A's own time per operation (ms) instead; 0: none */
    unsigned rounds;
    double ratio[BENCH_MAX_ROUNDS];
    double a_ops[BENCH_MAX_ROUNDS], b_ops[BENCH_MAX_ROUNDS]; /* ops/s */
    /* The same ratio from CPU time per operation: immune to other load on the machine, blind to
     * time spent waiting (I/O, locks). A diagnostic; the goal is judged on wall-clock time. */
    double cpu_ratio[BENCH_MAX_ROUNDS];
    double a_cpu_us[BENCH_MAX_ROUNDS], b_cpu_us[BENCH_MAX_ROUNDS]; /* CPU us per operation */
    double median_ratio, median_a, median_b;
    double median_cpu_ratio, median_a_cpu_us, median_b_cpu_us;
    char note[400];
} figure;

/* Measures A and B interleaved (A B A B ...) for o->rounds rounds into f (whose labels, kind and
 * goal are set by the caller) and computes the medians. */
void bench_compare(figure *f, const bench_side *a, const bench_side *b, unsigned threads,
                   const bench_opts *o);
/* The same with a second baseline c measured in the same rounds (A B C A B C ...): g receives
 * A against C (its labels, kind and goal set by the caller). */
void bench_compare2(figure *f, figure *g, const bench_side *a, const bench_side *b,
                    const bench_side *c, unsigned threads, const bench_opts *o);
/* Records round i of a figure whose sides the caller timed itself (ops operations each: wall
 * and CPU seconds), and recomputes the medians over rounds 0..i. */
void bench_set_round(figure *f, unsigned i, double a_seconds, double a_cpu, double b_seconds,
                     double b_cpu, uint64_t ops);
/* CPU seconds of the calling thread. */
double bench_thread_cpu(void);
bool figure_met(const figure *f);
double bench_median(const double *v, unsigned n);

/* --- the environment ----------------------------------------------------------------------- */

/* One token in a SoftHSM configuration of its own (SoftHSM reads every token of its
 * configuration when initialized: a large token next to a small one would slow the small one's
 * start-up), with the p11kms configuration and policy file that use it. */
typedef struct bench_token {
    char label[33];         /* the bench's name for it (lock file, log lines) */
    char token_label[33];   /* CKA_LABEL of the token: label on SoftHSM, NSS's own on NSS */
    char module[512];       /* the PKCS#11 module */
    char module_args[700];  /* token.module-args ("" for none: SoftHSM) */
    char softhsm_conf[600]; /* SOFTHSM2_CONF for this token ("" on NSS) */
    char config[600];       /* p11kms configuration */
    char policy[600];       /* its policy file */
} bench_token;

/* The tokens, configurations and principals every figure shares. */
typedef struct bench_env {
    char dir[512]; /* work directory */
    char module[512];
    char pin[64];
    bench_token main; /* one key: figures 1-4, and B of figure 7 */
    bench_token many; /* --keys keys: figure 5, and A of figure 7 */
    bool own_token;   /* false under tests/lib/with-token.sh */
    p11kms_principal *admin, *user;
    p11kms_context *ctx;                     /* two pairs, as Redshift binds a cluster key */
    p11kms_context *child_ctx;               /* two pairs, tier 3 */
    char main_id[P11KMS_KEY_ID_LEN + 1];     /* the key of the main token, once created */
    char (*many_ids)[P11KMS_KEY_ID_LEN + 1]; /* the keys of the large token, once created */
    unsigned many_count;
} bench_env;

/* Creates the work directory, the tokens and the configurations. */
void env_setup(bench_env *env, const bench_opts *o);
/* Removes what env_setup created (unless keep). */
void env_teardown(bench_env *env, bool keep);
/* Writes the policy of the main token, allowing the user to use key_id (NULL: no key yet). */
void env_write_main_policy(const bench_env *env, const char *key_id);
/* One more token in a SoftHSM configuration of its own, with a configuration whose store is
 * store (NULL: a SQLite file in the work directory) and a policy that lets the service use every
 * key (the scale figures). */
void env_add_token(bench_env *env, const bench_opts *o, bench_token *t, const char *label,
                   const char *store);
/* Writes path: the main token's configuration with its policy replaced by policy (NULL: kept)
 * and an audit section writing audit_log appended (NULL: none). */
void env_derive_config(const bench_env *env, const char *path, const char *policy,
                       const char *audit_log);
/* Selects the token's SoftHSM configuration and opens p11kms on it. */
p11kms *env_open(const bench_token *t);
void env_create_key(p11kms *svc, const bench_env *env, char id[P11KMS_KEY_ID_LEN + 1]);
/* Creates the main token's key (once) and writes the policy that lets the user use it. svc may be
 * NULL: the main token is then opened for the purpose. */
void env_main_key(bench_env *env, p11kms *svc);
/* Creates --keys keys in the large token (once), timing it into r. svc is a service open on the
 * large token, or NULL to open one for the purpose. */
struct bench_results;
void env_fill_many(bench_env *env, const bench_opts *o, struct bench_results *r, p11kms *svc);

/* --- the bare token baseline --------------------------------------------------------------- */

typedef struct bare_token bare_token;

/* Loads the module through p11-kit as p11kms does, finds the token by label, logs in and finds
 * version 1 of key_id (the 36-character text form) by CKA_ID. */
bare_token *bare_open(const char *module, const char *label, const char *pin, const char *key_id);
void bare_close(bare_token *t);
/* Loads the module, finds the token by label and logs in: what any application pays to start. */
bare_token *bare_login(const char *module, const char *label, const char *pin);
/* The same with CK_C_INITIALIZE_ARGS.pReserved = module_args (NULL: none), as p11kms passes
 * token.module-args. */
bare_token *bare_login_args(const char *module, const char *module_args, const char *label,
                            const char *pin);
/* C_FindObjects of version 1 of key_id by CKA_ID (what a first use of a key must do). */
void bare_find_key(bare_token *t, const char *key_id);
/* Generates count AES-256 token keys with the attributes of a p11kms key version and returns the
 * seconds that took; then destroys them (not timed), so the token's object count is unchanged. */
double bare_generate_keys(bare_token *t, unsigned count);

/* Whether bare_open could make a session copy of the key (C_CopyObject with CKA_TOKEN=FALSE,
 * what p11kms does with token.key-cache: session-copy); *why receives the CKR_* of the copy. */
bool bare_has_copy(const bare_token *t, unsigned long *why);

/* One session of the bare token, for one thread, using the token object (bare_session_open) or
 * its session copy (bare_session_open_on(t, true)). */
typedef struct bare_session bare_session;
bare_session *bare_session_open(bare_token *t);
bare_session *bare_session_open_on(bare_token *t, bool copy);
void bare_session_close(bare_session *s);
/* AES-256-GCM through C_EncryptInit + C_Encrypt / C_DecryptInit + C_Decrypt, 96-bit IV,
 * 128-bit tag. out receives ciphertext || tag; decrypt takes ciphertext || tag. */
void bare_encrypt(bare_session *s, const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *pt, size_t pt_len, uint8_t *out);
void bare_decrypt(bare_session *s, const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *pt);
/* The first use of a cold key by an application that keeps session copies: C_FindObjects of
 * version 1 of key_id by CKA_ID, C_CopyObject with CKA_TOKEN=FALSE, then one encryption with the
 * copy (the copy is kept until bare_close, as p11kms keeps its copies). */
void bare_cold_encrypt(bare_session *s, const char *key_id, const uint8_t iv[12],
                       const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                       uint8_t *out);
/* Session copies of the token's AES keys (at most max; one C_FindObjects, then C_CopyObject
 * each, kept until bare_close); returns how many. bare_encrypt_copy encrypts with copy index. */
unsigned bare_copy_all(bare_token *t, unsigned max);
void bare_encrypt_copy(bare_session *s, unsigned index, const uint8_t iv[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *out);
/* C_GetInfo of the module: "SoftHSM 2.6" and the like. */
void bare_module_name(bare_token *t, char *out, size_t size);

/* The AAD p11kms builds for a blob (header || u32 context length || canonical context),
 * computed here independently of the provider; the pairs must be given sorted by key. */
size_t bench_aad(const uint8_t *header, size_t header_len, const char *const *keys,
                 const char *const *values, size_t pairs, uint8_t *out, size_t cap);

/* --- the figures --------------------------------------------------------------------------- */

typedef struct bench_results {
    figure figures[BENCH_MAX_FIGURES];
    unsigned count;
    p11kms_token_report token;
    char module_name[128];
    double create_seconds; /* creating --keys keys */
    unsigned keys_created;
    bool create_budget_hit;
    /* ms per key while the first and the last tenth of the keys were created: creation cost
     * that grows with the number of objects already in the token shows here */
    double create_ms_first, create_ms_last;
    double warm_seconds; /* first use of each key in figure 5 (those figure 9 did not use) */
    unsigned warm_keys;  /* how many keys that was */
    double open_many_ms, open_one_ms;
} bench_results;

figure *results_add(bench_results *r, const char *id);

/* The bare token's own figure 5 (5-b): C_EncryptInit + C_Encrypt with a random session copy
 * of the token's AES keys (at most max) against always the same copy, measured into f (title
 * and labels set here, goal by the caller); returns the number of keys copied. */
unsigned bench_bare_random_copy(bare_token *t, unsigned max, const bench_opts *o, figure *f);

void figures_token(bench_env *env, const bench_opts *o, bench_results *r);    /* 1, 2, 3, 4 */
void figure_many_keys(bench_env *env, const bench_opts *o, bench_results *r); /* 5 */
void figure_policy(const bench_opts *o, bench_results *r);                    /* 6 */
void figure_startup(bench_env *env, const bench_opts *o, bench_results *r);   /* 7 */
/* 9 (first operation on a cold key) runs inside figure_many_keys, on its keys. */
void figure_audit(bench_env *env, const bench_opts *o, bench_results *r); /* 8 */
void figure_scale(bench_env *env, const bench_opts *o);                   /* --scale, per store */
void figure_daemon(bench_env *env, const bench_opts *o);                  /* --daemon */

/* The audit figures' bare baseline: append one record-sized line to fd and fsync it. */
typedef struct bare_sync {
    int fd;
    char line[600];
} bare_sync;
void op_write_fsync(void *arg); /* arg: a bare_sync */

/* The daemon figure's bare baseline (echo-server.c): a process answering every request of
 * request_len bytes on the Unix socket sock with an HTTP reply of reply_len bytes. */
pid_t echo_server_start(const char *sock, size_t request_len, size_t reply_len);
void echo_server_stop(pid_t pid);

/* --- output -------------------------------------------------------------------------------- */

void report_table(const bench_results *r, const bench_opts *o);
void report_json(const bench_results *r, const bench_opts *o, const char *path);
/* Checks that path holds a complete result file; returns 0 when it does. */
int report_check_json(const char *path);

#endif
