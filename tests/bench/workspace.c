#include "config.h"

/* The benchmark's own world: a SoftHSM configuration with two tokens (one key; many keys), the
 * PIN file, p11kms configurations and real policy files. Under tests/lib/with-token.sh the
 * harness's token is the main token and only the second token is added. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define BENCH_PIN "12345678"
#define BENCH_SO_PIN "87654321"
#define MAIN_LABEL "p11kms-bench"
#define MANY_LABEL "p11kms-bench-many"

#define ADMIN_NAME "unix:user:bench-admin"
#define USER_NAME "unix:user:bench-svc"

/* Mode 0600 from the start: p11kms refuses a PIN file (or configuration) others may read or
 * change, and a PIN must never sit in a readable file even for a moment. */
static void write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        bench_die("cannot write %s: %s", path, strerror(errno));
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size)
        bench_die("path too long: %s/%s", dir, name);
}

/* Runs argv with its output in dir/name.log; the run ends if the command fails. */
static void run_logged(const bench_env *env, const char *name, char *const argv[])
{
    char log[600];
    path_in(log, sizeof(log), env->dir, name);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_die("%s failed (see %s)", argv[0], log);
}

static void init_token(const bench_env *env, const bench_opts *o, const char *label,
                       const char *so_pin)
{
    char *argv[] = {
        (char *)o->softhsm_util, "--init-token", "--free",  "--label", (char *)label, "--so-pin",
        (char *)so_pin,          "--pin",        BENCH_PIN, NULL};
    char log[64];
    snprintf(log, sizeof(log), "init-%s", label);
    run_logged(env, log, argv);
}

static void make_workdir(bench_env *env, const bench_opts *o)
{
    if (o->workdir != NULL) {
        if (mkdir(o->workdir, 0700) != 0 && errno != EEXIST)
            bench_die("cannot create %s: %s", o->workdir, strerror(errno));
        snprintf(env->dir, sizeof(env->dir), "%s", o->workdir);
        return;
    }
    char base[512];
    snprintf(base, sizeof(base), "%s/tests/bench/run-XXXXXX", BENCH_BUILDDIR);
    if (mkdtemp(base) == NULL) {
        /* Not run from its build tree: fall back to the working directory. */
        snprintf(base, sizeof(base), "p11kms-bench-XXXXXX");
        if (mkdtemp(base) == NULL)
            bench_die("cannot create a work directory: %s", strerror(errno));
    }
    if (realpath(base, env->dir) == NULL)
        bench_die("realpath %s: %s", base, strerror(errno));
}

/* A token label as a PKCS#11 URI path value: every byte but RFC 3986's unreserved ones
 * percent-encoded ("NSS Certificate DB" -> "NSS%20Certificate%20DB"). */
static void uri_label(const char *label, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)label; *p != '\0'; p++) {
        if (j + 4 > size)
            bench_die("token label too long: %s", label);
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    out[j] = '\0';
}

/* t's configuration (t->config) with the library's defaults, unless --rng and the like ask
 * otherwise (to measure their effect). */
static void write_config_store(const bench_env *env, const bench_opts *o, bench_token *t,
                               const char *name, const char *store)
{
    path_in(t->config, sizeof(t->config), env->dir, name);
    char rng[160] = "", batch[64] = "", args[800] = "", uri[100];
    int n = 0;
    if (o->rng != NULL)
        n += snprintf(rng + n, sizeof(rng) - (size_t)n, "  rng: %s\n", o->rng);
    if (o->key_cache != NULL)
        n += snprintf(rng + n, sizeof(rng) - (size_t)n, "  key-cache: %s\n", o->key_cache);
    if (o->session_keys != 0)
        snprintf(rng + n, sizeof(rng) - (size_t)n, "  session-keys: %u\n", o->session_keys);
    if (o->count_batch != 0)
        snprintf(batch, sizeof(batch), "  count-batch: %u\n", o->count_batch);
    if (t->module_args[0] != '\0')
        snprintf(args, sizeof(args), "  module-args: \"%s\"\n", t->module_args);
    uri_label(t->token_label, uri, sizeof(uri));
    char text[4096];
    snprintf(text, sizeof(text),
             "# p11kms-bench: token %s\n"
             "token:\n"
             "  module: %s\n"
             "%s"
             "  uri: \"pkcs11:token=%s\"\n"
             "  pin-source: \"file:%s/pin\"\n"
             "  sessions: 8\n"
             "%s"
             "keys:\n"
             "  lock-file: %s/%s.lock\n"
             "%s"
             "store: \"%s\"\n"
             "policy: %s\n",
             t->label, t->module, args, uri, env->dir, rng, env->dir, t->label, batch, store,
             t->policy);
    write_text(t->config, text);
}

static void write_config(const bench_env *env, const bench_opts *o, bench_token *t,
                         const char *name)
{
    char store[600];
    snprintf(store, sizeof(store), "sqlite:%s/%s.db", env->dir, t->label);
    write_config_store(env, o, t, name, store);
}

/* The policy of a realistic deployment: administrators manage and never use, the service uses
 * its key(s) only under a Redshift-style context, a break-glass deny. */
static void write_policy(const char *path, const char *use_keys)
{
    char text[8192];
    int n = snprintf(text, sizeof(text),
                     "version: 1\n"
                     "groups:\n"
                     "  key-admins: [" ADMIN_NAME "]\n"
                     "  services: [" USER_NAME "]\n"
                     "global:\n"
                     "  - sid: admins-create\n"
                     "    effect: allow\n"
                     "    principals: [group:key-admins]\n"
                     "    actions: [create-key, list-keys, list-aliases, maintain]\n"
                     "statements:\n"
                     "  - sid: admins-manage\n"
                     "    effect: allow\n"
                     "    principals: [group:key-admins]\n"
                     "    keys: [\"*\"]\n"
                     "    actions: [describe-key, enable-key, disable-key, "
                     "schedule-key-deletion, cancel-key-deletion, create-alias, delete-alias, "
                     "update-alias, tag-resource, untag-resource]\n"
                     "  - sid: revoked\n"
                     "    effect: deny\n"
                     "    principals: [\"unix:user:revoked-*\"]\n"
                     "    keys: [\"*\"]\n"
                     "    actions: [\"*\"]\n");
    if (use_keys != NULL)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "  - sid: bench-use\n"
                      "    effect: allow\n"
                      "    principals: [group:services]\n"
                      "    keys: [%s]\n"
                      "    actions: [encrypt, decrypt, generate-data-key]\n"
                      "    conditions:\n"
                      "      context-like:\n"
                      "        aws:redshift:arn: \"arn:aws:redshift:*:*:cluster:*\"\n"
                      "        aws:redshift:createtime: \"*\"\n"
                      "      context-keys-only: [aws:redshift:arn, aws:redshift:createtime]\n",
                      use_keys);
    if (n < 0 || (size_t)n >= sizeof(text))
        bench_die("policy text too long");
    write_text(path, text);
}

void env_write_main_policy(const bench_env *env, const char *key_id)
{
    write_policy(env->main.policy, key_id);
}

static p11kms_principal *principal(const char *name)
{
    p11kms_principal *p = p11kms_principal_new();
    p11kms_error e = {0};
    if (p == NULL)
        bench_die("out of memory");
    bench_check(p11kms_principal_add(p, name, &e), &e, "p11kms_principal_add");
    return p;
}

static p11kms_context *context2(const char *k1, const char *v1, const char *k2, const char *v2)
{
    p11kms_context *c = p11kms_context_new();
    p11kms_error e = {0};
    if (c == NULL)
        bench_die("out of memory");
    bench_check(p11kms_context_add(c, k1, v1, &e), &e, "p11kms_context_add");
    bench_check(p11kms_context_add(c, k2, v2, &e), &e, "p11kms_context_add");
    return c;
}

/* Under with-token.sh the harness's token is the main token. */
static bool harness_token(bench_env *env)
{
    const char *root = getenv("P11KMS_TEST_ROOT"), *uri = getenv("P11KMS_TEST_URI");
    const char *pin_file = getenv("P11KMS_TEST_PIN_FILE"), *conf = getenv("SOFTHSM2_CONF");
    const char *kind = getenv("P11KMS_TEST_TOKEN");
    static const char prefix[] = "pkcs11:token=";
    /* Only a SoftHSM harness token can be the main token (figures 1-8 run on SoftHSM). */
    if (root == NULL || uri == NULL || pin_file == NULL || conf == NULL ||
        (kind != NULL && strcmp(kind, "softhsm") != 0) ||
        strncmp(uri, prefix, sizeof(prefix) - 1) != 0)
        return false;
    snprintf(env->main.label, sizeof(env->main.label), "%s", uri + sizeof(prefix) - 1);
    snprintf(env->main.token_label, sizeof(env->main.token_label), "%s", env->main.label);
    snprintf(env->main.softhsm_conf, sizeof(env->main.softhsm_conf), "%s", conf);
    char dir[512];
    path_in(dir, sizeof(dir), root, "bench");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        bench_die("cannot create %s: %s", dir, strerror(errno));
    snprintf(env->dir, sizeof(env->dir), "%s", dir);
    FILE *f = fopen(pin_file, "r");
    if (f == NULL || fgets(env->pin, sizeof(env->pin), f) == NULL)
        bench_die("cannot read the PIN file %s", pin_file);
    fclose(f);
    env->pin[strcspn(env->pin, "\r\n")] = '\0';
    const char *module = getenv("P11KMS_TEST_MODULE");
    if (module != NULL)
        snprintf(env->module, sizeof(env->module), "%s", module);
    snprintf(env->main.module, sizeof(env->main.module), "%s", env->module);
    return true;
}

/* A SoftHSM configuration with a token directory of its own, and the token in it. */
static void make_token(const bench_env *env, const bench_opts *o, bench_token *t, const char *label,
                       const char *so_pin)
{
    snprintf(t->label, sizeof(t->label), "%s", label);
    snprintf(t->token_label, sizeof(t->token_label), "%s", label);
    snprintf(t->module, sizeof(t->module), "%s", env->module);
    t->module_args[0] = '\0';
    char name[64], tokens[600], conf[64], text[1024];
    snprintf(name, sizeof(name), "tokens-%s", label);
    path_in(tokens, sizeof(tokens), env->dir, name);
    if (mkdir(tokens, 0700) != 0 && errno != EEXIST)
        bench_die("cannot create %s: %s", tokens, strerror(errno));
    snprintf(text, sizeof(text),
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
             "slots.removable = false\n",
             tokens);
    snprintf(conf, sizeof(conf), "softhsm2-%s.conf", label);
    path_in(t->softhsm_conf, sizeof(t->softhsm_conf), env->dir, conf);
    write_text(t->softhsm_conf, text);
    setenv("SOFTHSM2_CONF", t->softhsm_conf, 1);
    init_token(env, o, label, so_pin);
}

/* A fresh NSS softokn database of its own, as tests/lib/with-token.sh makes one: its key
 * database password is the PIN; its one token is "NSS Certificate DB". */
static void make_nss_token(const bench_env *env, const bench_opts *o, bench_token *t,
                           const char *label)
{
    snprintf(t->label, sizeof(t->label), "%s", label);
    snprintf(t->token_label, sizeof(t->token_label), "NSS Certificate DB");
    snprintf(t->module, sizeof(t->module), "%s", o->nss_softokn);
    t->softhsm_conf[0] = '\0';
    char name[64], db[600], pin[600], sql_db[620];
    snprintf(name, sizeof(name), "nssdb-%s", label);
    path_in(db, sizeof(db), env->dir, name);
    if (mkdir(db, 0700) != 0)
        bench_die("cannot create %s: %s", db, strerror(errno));
    path_in(pin, sizeof(pin), env->dir, "pin");
    snprintf(sql_db, sizeof(sql_db), "sql:%s", db);
    char *argv[] = {(char *)o->certutil, "-N", "-d", sql_db, "-f", pin, NULL};
    snprintf(name, sizeof(name), "init-%s", label);
    run_logged(env, name, argv);
    if ((size_t)snprintf(t->module_args, sizeof(t->module_args),
                         "configdir='sql:%s' certPrefix='' keyPrefix='' secmod='secmod.db' "
                         "flags=optimizeSpace",
                         db) >= sizeof(t->module_args))
        bench_die("NSS database path too long: %s", db);
}

void env_add_token(bench_env *env, const bench_opts *o, bench_token *t, const char *label,
                   const char *store)
{
    const char *so = getenv("P11KMS_TEST_SO_PIN");
    if (o->nss)
        make_nss_token(env, o, t, label);
    else
        make_token(env, o, t, label, !env->own_token && so != NULL ? so : BENCH_SO_PIN);
    char name[80], sqlite[600];
    snprintf(name, sizeof(name), "%s-policy.yaml", label);
    path_in(t->policy, sizeof(t->policy), env->dir, name);
    write_policy(t->policy, "\"*\"");
    snprintf(name, sizeof(name), "%s.yaml", label);
    if (store == NULL) {
        snprintf(sqlite, sizeof(sqlite), "sqlite:%s/%s.db", env->dir, label);
        store = sqlite;
    }
    write_config_store(env, o, t, name, store);
}

void env_setup(bench_env *env, const bench_opts *o)
{
    memset(env, 0, sizeof(*env));
    snprintf(env->module, sizeof(env->module), "%s", o->module);
    const char *so_pin = BENCH_SO_PIN;
    if (harness_token(env)) {
        const char *so = getenv("P11KMS_TEST_SO_PIN");
        if (so != NULL)
            so_pin = so;
    } else {
        env->own_token = true;
        make_workdir(env, o);
        snprintf(env->pin, sizeof(env->pin), "%s", BENCH_PIN);
        make_token(env, o, &env->main, MAIN_LABEL, so_pin);
    }
    make_token(env, o, &env->many, MANY_LABEL, so_pin);

    char pin_path[600];
    path_in(pin_path, sizeof(pin_path), env->dir, "pin");
    char pin_line[80];
    snprintf(pin_line, sizeof(pin_line), "%s\n", env->pin);
    write_text(pin_path, pin_line);

    path_in(env->main.policy, sizeof(env->main.policy), env->dir, "main-policy.yaml");
    path_in(env->many.policy, sizeof(env->many.policy), env->dir, "many-policy.yaml");
    write_policy(env->main.policy, NULL);
    write_policy(env->many.policy, "\"*\"");
    write_config(env, o, &env->main, "main.yaml");
    write_config(env, o, &env->many, "many.yaml");

    env->admin = principal(ADMIN_NAME);
    env->user = principal(USER_NAME);
    env->ctx = context2("aws:redshift:arn",
                        "arn:aws:redshift:us-east-1:123456789012:cluster:bench-cluster",
                        "aws:redshift:createtime", "20240115T093000Z");
    env->child_ctx = context2("tier", "database", "database", "sales");
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void env_teardown(bench_env *env, bool keep)
{
    p11kms_principal_free(env->admin);
    p11kms_principal_free(env->user);
    p11kms_context_free(env->ctx);
    p11kms_context_free(env->child_ctx);
    free(env->many_ids);
    if (env->own_token && !keep)
        nftw(env->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    else if (env->own_token)
        fprintf(stderr, "work directory kept: %s\n", env->dir);
}

void env_derive_config(const bench_env *env, const char *path, const char *policy,
                       const char *audit_log)
{
    FILE *in = fopen(env->main.config, "r");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (in == NULL || out == NULL)
        bench_die("cannot write %s from %s", path, env->main.config);
    char line[4096];
    while (fgets(line, sizeof(line), in) != NULL) {
        if (policy != NULL && strncmp(line, "policy:", 7) == 0)
            fprintf(out, "policy: %s\n", policy);
        else
            fputs(line, out);
    }
    if (audit_log != NULL)
        fprintf(out, "audit:\n  file: %s\n  max-size: 0\n", audit_log);
    fclose(in);
    if (fclose(out) != 0)
        bench_die("cannot write %s", path);
}

p11kms *env_open(const bench_token *t)
{
    /* Read by SoftHSM's C_Initialize, which every p11kms_open after the last close performs. */
    if (t->softhsm_conf[0] != '\0')
        setenv("SOFTHSM2_CONF", t->softhsm_conf, 1);
    p11kms *svc = NULL;
    p11kms_error e = {0};
    bench_check(p11kms_open(t->config, &svc, &e), &e, t->config);
    return svc;
}

void env_create_key(p11kms *svc, const bench_env *env, char id[P11KMS_KEY_ID_LEN + 1])
{
    p11kms_create_key_input in = {.description = "p11kms-bench"};
    p11kms_key_metadata md;
    p11kms_error e = {0};
    bench_check(p11kms_create_key(svc, env->admin, &in, &md, &e), &e, "p11kms_create_key");
    memcpy(id, md.key_id, P11KMS_KEY_ID_LEN + 1);
}

void env_main_key(bench_env *env, p11kms *svc)
{
    if (env->main_id[0] != '\0')
        return;
    p11kms *own = svc != NULL ? NULL : env_open(&env->main);
    p11kms *s = svc != NULL ? svc : own;
    env_create_key(s, env, env->main_id);
    /* The statement that lets the service use the key names it by id, as a deployment would. */
    env_write_main_policy(env, env->main_id);
    p11kms_error e = {0};
    bench_check(p11kms_reload_policy(s, &e), &e, "p11kms_reload_policy");
    p11kms_close(own);
}
