/* p11kms.yaml parsing: every accepted key, defaults, and malformed input refused with
 * file:line:column. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "provider/keyref.h"
#include "provider/service-config.h"

static service_config *load(const char *text, p11kms_error *e)
{
    service_config *cfg = NULL;
    p11kms_error_clear(e);
    if (config_load_buffer("test.yaml", text, strlen(text), &cfg, e) != P11KMS_OK)
        return NULL;
    return cfg;
}

/* text must be refused with a message that starts with where. */
static void refused(const char *text, const char *where, const char *needle)
{
    p11kms_error e;
    service_config *cfg = load(text, &e);
    CHECK(cfg == NULL);
    CHECK(e.code == P11KMS_E_CONFIG);
    CHECK(strncmp(e.message, where, strlen(where)) == 0);
    CHECK(strstr(e.message, needle) != NULL);
    if (cfg != NULL || strncmp(e.message, where, strlen(where)) != 0 ||
        strstr(e.message, needle) == NULL)
        fprintf(stderr, "  input:\n%s\n  got: %s\n  want: %s ... %s\n", text, e.message, where,
                needle);
    config_free(cfg);
}

#define TOKEN                                                                                      \
    "token:\n"                                                                                     \
    "  module: /usr/lib/softhsm/libsofthsm2.so\n"                                                  \
    "  uri: \"pkcs11:token=t\"\n"                                                                  \
    "  pin-source: file:/etc/p11kms/pin\n"

static void test_minimal_and_defaults(void)
{
    p11kms_error e;
    service_config *cfg = load(TOKEN "policy: none\n", &e);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(strcmp(cfg->module, "/usr/lib/softhsm/libsofthsm2.so") == 0);
    CHECK(strcmp(cfg->token_uri, "pkcs11:token=t") == 0);
    CHECK(strcmp(cfg->pin_source, "file:/etc/p11kms/pin") == 0);
    CHECK(cfg->policy_none && cfg->policy_path == NULL);
    CHECK(cfg->sessions == 8);
    CHECK(cfg->iv_mode == P11_IV_HOST && cfg->gcm_layout == P11_GCM_V240);
    CHECK(cfg->rng == P11_RNG_TOKEN);
    CHECK(cfg->max_encryptions_per_version == CONFIG_DEFAULT_MAX_ENCRYPTIONS);
    CHECK(strcmp(cfg->region, "local") == 0 && strcmp(cfg->account, "000000000000") == 0);
    CHECK(strcmp(cfg->partition, "aws") == 0);
    CHECK(strcmp(cfg->key_arn_prefix, "arn:aws:kms:local:000000000000:key/") == 0);
    CHECK(strcmp(cfg->lock_file, CONFIG_DEFAULT_LOCK_FILE) == 0);
    CHECK(strcmp(cfg->store, CONFIG_DEFAULT_STORE) == 0);
    CHECK(cfg->orphan_grace_s == CONFIG_DEFAULT_ORPHAN_GRACE_S);
    CHECK(cfg->module_args == NULL); /* p11-kit's own C_Initialize arguments */
    config_free(cfg);
}

/* token.module-args: the string NSS softokn reads from C_Initialize, quotes and all. */
static void test_module_args(void)
{
    p11kms_error e;
    service_config *cfg = load(
        TOKEN "  module-args: 'configdir=''sql:/var/lib/nss'' flags=readOnly'\npolicy: none\n", &e);
    CHECK(cfg != NULL && cfg->module_args != NULL &&
          strcmp(cfg->module_args, "configdir='sql:/var/lib/nss' flags=readOnly") == 0);
    config_free(cfg);
    refused(TOKEN "  module-args: [a, b]\npolicy: none\n", "test.yaml:5:16", "");
    refused(TOKEN "  module-args: \"\"\npolicy: none\n", "test.yaml:5:16", "must not be empty");
    refused(TOKEN "  module-args: a\n  module-args: b\npolicy: none\n", "test.yaml:6:3",
            "duplicate");
}

static void test_store(void)
{
    p11kms_error e;
    service_config *cfg = load(TOKEN "store: sqlite:/var/tmp/k.db\npolicy: none\n", &e);
    CHECK(cfg != NULL && strcmp(cfg->store, "sqlite:/var/tmp/k.db") == 0);
    config_free(cfg);
    cfg = load(TOKEN "store: \"host=/tmp dbname=kms\"\npolicy: none\n", &e);
    CHECK(cfg != NULL && strcmp(cfg->store, "host=/tmp dbname=kms") == 0);
    config_free(cfg);
    cfg = load(TOKEN "store: postgresql://kms@db.example/kms\npolicy: none\n", &e);
    CHECK(cfg != NULL);
    config_free(cfg);
    refused(TOKEN "store: sqlite:relative.db\npolicy: none\n", "test.yaml:5:8", "absolute path");
    refused(TOKEN "store: mysql://x\npolicy: none\n", "test.yaml:5:8", "sqlite:/path");
    refused(TOKEN "store: \"\"\npolicy: none\n", "test.yaml:5:8", "must not be empty");
    refused(TOKEN "store: [a]\npolicy: none\n", "test.yaml:5:8", "");
    refused(TOKEN "keys:\n  orphan-grace-seconds: -1\npolicy: none\n", "test.yaml:6:25", "");
}

/* keys.partition: the first field of every ARN; malformed values are refused where they stand. */
static void test_partition(void)
{
    p11kms_error e;
    service_config *cfg = load(TOKEN "keys:\n  partition: aws-us-gov\npolicy: none\n", &e);
    CHECK(cfg != NULL && strcmp(cfg->partition, "aws-us-gov") == 0);
    config_free(cfg);
    const char *bad[] = {
        "\"\"",        "\"aws:x\"", "AWS",       "-aws",
        "aws-",        "aws/cn",    "\"a w s\"", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "\"aws\\0x\"", "[aws]",     "{a: b}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), TOKEN "keys:\n  partition: %s\npolicy: none\n", bad[i]);
        const char *why = bad[i][0] == '[' || bad[i][0] == '{' ? "a string"
                          : strstr(bad[i], "\\0") != NULL      ? "NUL"
                                                               : "partition must be";
        refused(text, "test.yaml:6:14", why);
    }
}

static void test_every_key(void)
{
    p11kms_error e;
    service_config *cfg = load(TOKEN "  sessions: 3\n"
                                     "  iv: token\n"
                                     "  gcm-params: legacy\n"
                                     "  rng: openssl\n"
                                     "  insecure-pin-file: true\n"
                                     "keys:\n"
                                     "  partition: aws-cn\n"
                                     "  region: eu-west-9\n"
                                     "  account: \"123456789012\"\n"
                                     "  lock-file: /tmp/x.lock\n"
                                     "  max-encryptions-per-version: 1000\n"
                                     "  count-batch: 10\n"
                                     "  state-refresh-ms: 0\n"
                                     "  orphan-grace-seconds: 7\n"
                                     "hierarchy:\n"
                                     "  ttl-seconds: 60\n"
                                     "  max-uses: 5\n"
                                     "  revocation-check-ms: 250\n"
                                     "policy: /etc/p11kms/policy.yaml\n"
                                     "secure-memory: required\n"
                                     "core-dumps: disabled\n"
                                     "memory-lock: disabled\n",
                               &e);
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "  %s\n", e.message);
        return;
    }
    CHECK(cfg->sessions == 3 && cfg->iv_mode == P11_IV_TOKEN);
    CHECK(cfg->gcm_layout == P11_GCM_LEGACY && cfg->rng == P11_RNG_OPENSSL);
    CHECK(strcmp(cfg->region, "eu-west-9") == 0 && strcmp(cfg->account, "123456789012") == 0);
    CHECK(strcmp(cfg->partition, "aws-cn") == 0);
    char arn[P11KMS_ARN_MAX];
    keyref_key_arn(cfg, "1234abcd-12ab-34cd-56ef-1234567890ab", arn);
    CHECK(strcmp(arn, "arn:aws-cn:kms:eu-west-9:123456789012:key/"
                      "1234abcd-12ab-34cd-56ef-1234567890ab") == 0);
    CHECK(strcmp(cfg->lock_file, "/tmp/x.lock") == 0);
    CHECK(cfg->max_encryptions_per_version == 1000 && cfg->count_batch == 10);
    CHECK(cfg->state_refresh_ms == 0);
    CHECK(cfg->orphan_grace_s == 7);
    CHECK(cfg->hierarchy_ttl_s == 60 && cfg->hierarchy_max_uses == 5);
    CHECK(cfg->revocation_check_ms == 250);
    CHECK(!cfg->policy_none && strcmp(cfg->policy_path, "/etc/p11kms/policy.yaml") == 0);
    CHECK(cfg->insecure_pin_file && cfg->secure_memory_required && cfg->core_dumps_disabled);
    CHECK(cfg->memory_lock_disabled);
    config_free(cfg);
}

/* The audit section: off without it, every key read with it (the values of conf/p11kms.yaml's
 * commented example, uncommented). */
static void test_audit_section(void)
{
    p11kms_error e;
    service_config *cfg = load(TOKEN "policy: none\n", &e);
    CHECK(cfg != NULL && cfg->audit_file == NULL);
    config_free(cfg);
    cfg = load(TOKEN "policy: none\n"
                     "audit:\n"
                     "  file: /var/log/p11kms/audit.log\n"
                     "  max-size: 1000000\n"
                     "  rotate: daily\n"
                     "  on-failure: continue\n"
                     "  sync-delay-ms: 5\n"
                     "  checkpoint-seconds: 30\n"
                     "  syslog: yes\n",
               &e);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(strcmp(cfg->audit_file, "/var/log/p11kms/audit.log") == 0);
    CHECK(cfg->audit_max_size == 1000000 && cfg->audit_daily && cfg->audit_continue);
    CHECK(cfg->audit_sync_delay_ms == 5 && cfg->audit_checkpoint_s == 30 && cfg->audit_syslog);
    config_free(cfg);
    cfg = load(TOKEN "policy: none\naudit:\n  file: /a.log\n", &e);
    CHECK(cfg != NULL && !cfg->audit_continue && !cfg->audit_daily && !cfg->audit_syslog);
    CHECK(cfg != NULL && cfg->audit_max_size == CONFIG_DEFAULT_AUDIT_MAX_SIZE &&
          cfg->audit_checkpoint_s == CONFIG_DEFAULT_AUDIT_CHECKPOINT_S);
    config_free(cfg);
}

static void test_malformed(void)
{
    refused("", "test.yaml", "empty");
    refused("- a\n- b\n", "test.yaml:1:1", "mapping");
    refused("policy: none\n", "test.yaml:1:1", "\"token\" is missing");
    refused(TOKEN, "test.yaml:1:1", "\"policy\" is missing");
    refused(TOKEN "policy: none\nbogus: 1\n", "test.yaml:6:1", "unknown section \"bogus\"");
    refused(TOKEN "  color: blue\npolicy: none\n", "test.yaml:5:3", "unknown key \"color\"");
    refused("token:\n  uri: \"pkcs11:token=t\"\n  pin-source: file:/p\npolicy: none\n",
            "test.yaml:2:3", "\"module\" is missing");
    refused(TOKEN "  sessions: many\npolicy: none\n", "test.yaml:5:13", "");
    refused(TOKEN "  sessions: 0\npolicy: none\n", "test.yaml:5:13", "");
    refused(TOKEN "  sessions: -1\npolicy: none\n", "test.yaml:5:13", "");
    refused(TOKEN "  session-keys: -1\npolicy: none\n", "test.yaml:5:17", "");
    refused(TOKEN "  session-keys: 0\npolicy: none\n", "test.yaml:5:17", "");
    refused(TOKEN "  session-keys: lots\npolicy: none\n", "test.yaml:5:17", "");
    refused(TOKEN "  key-cache: session\npolicy: none\n", "test.yaml:5:14",
            "session-copy, token-object");
    refused(TOKEN "  iv: random\npolicy: none\n", "test.yaml:5:7", "not one of: host, token");
    refused("token:\n  module: [a, b]\n  uri: u\n  pin-source: file:/p\npolicy: none\n",
            "test.yaml:2:11", "");
    refused("token:\n  module: \"\"\n  uri: u\n  pin-source: file:/p\npolicy: none\n",
            "test.yaml:2:11", "must not be empty");
    refused(TOKEN "  module: /other.so\npolicy: none\n", "test.yaml:5:3", "duplicate");
    refused(TOKEN "policy: relative/policy.yaml\n", "test.yaml:5:9", "absolute path");
    refused(TOKEN "policy: none\nlisteners: {}\n", "test.yaml:6:1", "reserved");
    refused(TOKEN "policy: none\naudit: {}\n", "test.yaml:6:8", "required key \"file\"");
    refused(TOKEN "policy: none\naudit:\n  file: rel.log\n", "test.yaml:7:9", "absolute path");
    refused(TOKEN "policy: none\naudit:\n  file: /a.log\n  on-failure: ignore\n", "test.yaml:8:15",
            "not one of: refuse, continue");
    refused(TOKEN "policy: none\naudit:\n  file: /a.log\n  sync-delay-ms: 5000\n", "test.yaml:8:18",
            "");
    refused(TOKEN "policy: none\naudit:\n  file: /a.log\n  colour: red\n", "test.yaml:8:3",
            "unknown key");
    refused(TOKEN "keys:\n  count-batch: 99999999999\npolicy: none\n", "test.yaml:6:16", "");
    refused(TOKEN "policy: none\npolicy: /x\n", "test.yaml:6:1", "duplicate");
    refused(TOKEN "policy: &p none\n", "test.yaml:5:9", "");
    /* Two processes started in different directories must share one lock file. */
    refused(TOKEN "keys:\n  lock-file: p11kms.lock\npolicy: none\n", "test.yaml:6:14", "absolute");
    refused(TOKEN "policy: none\nsecure-memory: maybe\n", "test.yaml:6:16",
            "not one of: preferred, required");
    refused(TOKEN "policy: none\ncore-dumps: yes\n", "test.yaml:6:13",
            "not one of: allowed, disabled");
    refused(TOKEN "policy: none\nmemory-lock: off\n", "test.yaml:6:14",
            "not one of: enabled, disabled");
    refused(TOKEN "  insecure-pin-file: sure\npolicy: none\n", "test.yaml:5:22", "");
}

/* A configuration file of the given mode must load (want_ok) or be refused naming the mode. */
static void check_mode(mode_t mode, bool want_ok)
{
    char path[] = "p11kms-mode-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    static const char text[] = TOKEN "policy: none\n";
    CHECK(write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1));
    close(fd);
    CHECK(chmod(path, mode) == 0);
    service_config *cfg = NULL;
    p11kms_error e = {0};
    p11kms_err rc = config_load(path, &cfg, &e);
    char octal[8];
    snprintf(octal, sizeof(octal), "%04o", (unsigned)mode);
    if (want_ok) {
        CHECK_OK(rc, &e);
    } else {
        CHECK(rc == P11KMS_E_CONFIG && cfg == NULL);
        CHECK(strstr(e.message, path) != NULL && strstr(e.message, octal) != NULL);
        if (strstr(e.message, octal) == NULL)
            fprintf(stderr, "  mode %s: got: %s\n", octal, e.message);
    }
    config_free(cfg);
    unlink(path);
}

/* The configuration names the module every process loads: no one but its owner may change it.
 * Nothing that is not a regular file is read, and opening one never blocks. */
static void test_file_modes(void)
{
    check_mode(0600, true);
    check_mode(0644, true);
    check_mode(0640, true);
    check_mode(0664, false);
    check_mode(0646, false);
    check_mode(0666, false);
    check_mode(0620, false);

    const char *not_regular[] = {"p11kms-fifo.yaml", "/dev/urandom", "/dev/null", "."};
    unlink(not_regular[0]);
    CHECK(mkfifo(not_regular[0], 0600) == 0);
    for (size_t i = 0; i < sizeof(not_regular) / sizeof(not_regular[0]); i++) {
        service_config *cfg = NULL;
        p11kms_error e = {0};
        CHECK(config_load(not_regular[i], &cfg, &e) == P11KMS_E_CONFIG);
        CHECK(cfg == NULL && strstr(e.message, "not a regular file") != NULL);
        if (strstr(e.message, "not a regular file") == NULL)
            fprintf(stderr, "  %s: got: %s\n", not_regular[i], e.message);
    }
    unlink(not_regular[0]);
}

static void test_file_errors(void)
{
    service_config *cfg = NULL;
    p11kms_error e = {0};
    CHECK(config_load("/nonexistent/p11kms.yaml", &cfg, &e) != P11KMS_OK);
    CHECK(cfg == NULL);
    CHECK(strstr(e.message, "/nonexistent/p11kms.yaml") != NULL);
}

/* The shipped samples must stay loadable. */
static void test_samples(void)
{
    const char *samples[] = {"conf/p11kms.yaml", "conf/softhsm-dev.yaml"};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", test_env("P11KMS_SRCDIR"), samples[i]);
        service_config *cfg = NULL;
        p11kms_error e = {0};
        CHECK_OK(config_load(path, &cfg, &e), &e);
        config_free(cfg);
    }
}

int main(void)
{
    test_samples();
    test_minimal_and_defaults();
    test_module_args();
    test_partition();
    test_every_key();
    test_malformed();
    test_audit_section();
    test_store();
    test_file_errors();
    alarm(60); /* a FIFO that blocked would hang here: fail instead */
    test_file_modes();
    return check_finish("service-config-test");
}
