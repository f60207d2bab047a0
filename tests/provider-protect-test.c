/* Secrets in memory: a process that opened a key with P11KMS_OPEN_NO_CORE_DUMPS (or a
 * configuration saying "core-dumps: disabled") is not dumpable and has RLIMIT_CORE 0; without
 * either, the library leaves the process as its caller set it. Each case runs in a child of its
 * own, because both settings are process-wide. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"

/* Opens the service, opens a cluster key under a fresh master key, and reports (exit status)
 * whether the process is then dumpable: 0 not dumpable with RLIMIT_CORE 0, 1 dumpable with the
 * core limit untouched, 2 anything else, 99 setup failure. */
static int child(const char *config, unsigned flags)
{
    p11kms *svc = NULL;
    p11kms_error e = {0};
    if (p11kms_open_with(config, flags, &svc, &e) != P11KMS_OK) {
        fprintf(stderr, "  open: %s\n", e.message);
        return 99;
    }
    p11kms_principal *who = fx_principal("unix:user:protect-test");
    char master[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "protect", master);
    p11kms_context *ctx = fx_ctx("tier", "cluster", NULL);
    p11kms_result r;
    p11kms_opened_key *k = NULL;
    if (p11kms_generate_data_key(svc, who, master, ctx, "AES_256", 0, false, &r, &e) != P11KMS_OK)
        return 99;
    p11kms_err rc = p11kms_open_key(svc, who, ctx, r.ciphertext, r.ciphertext_len, &k, &e);
    p11kms_result_free(&r);
    if (rc != P11KMS_OK) {
        fprintf(stderr, "  open key: %s\n", e.message);
        return 99;
    }
    /* Asked while the key is open: this is the moment a core file would hold it. */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    struct rlimit core;
    if (getrlimit(RLIMIT_CORE, &core) != 0)
        return 99;
    fprintf(stderr, "  dumpable %d, RLIMIT_CORE %llu/%llu\n", dumpable,
            (unsigned long long)core.rlim_cur, (unsigned long long)core.rlim_max);
    p11kms_opened_key_close(k);
    p11kms_context_free(ctx);
    p11kms_principal_free(who);
    p11kms_close(svc);
    if (dumpable == 0 && core.rlim_cur == 0 && core.rlim_max == 0)
        return 0;
    if (dumpable == 1 && core.rlim_max != 0)
        return 1;
    return 2;
}

static int run_child(const char *config, unsigned flags)
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(child(config, flags));
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) != 99);
    return WEXITSTATUS(status);
}

int main(void)
{
    /* The test must start dumpable with a core limit, or it could not tell anything apart. */
    struct rlimit core = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_CORE, &core) != 0) {
        getrlimit(RLIMIT_CORE, &core);
        core.rlim_cur = core.rlim_max;
        REQUIRE(setrlimit(RLIMIT_CORE, &core) == 0);
    }
    REQUIRE(core.rlim_max != 0);
    REQUIRE(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0);

    fx_say("P11KMS_OPEN_NO_CORE_DUMPS: not dumpable, RLIMIT_CORE 0, while a key is open");
    CHECK(run_child(NULL, P11KMS_OPEN_NO_CORE_DUMPS) == 0);

    fx_say("core-dumps: disabled in the configuration does the same");
    char *base = test_read_file(test_env("P11KMS_CONFIG"), NULL);
    size_t n = strlen(base) + 64;
    char *text = malloc(n);
    REQUIRE(text != NULL);
    snprintf(text, n, "%score-dumps: disabled\n", base);
    char *disabled = fx_write_file("core-dumps-disabled.yaml", text);
    CHECK(run_child(disabled, 0) == 0);

    fx_say("neither: the library leaves the caller's process as it was");
    CHECK(run_child(NULL, 0) == 1);

    free(disabled);
    free(text);
    free(base);
    return check_finish("provider-protect-test");
}
