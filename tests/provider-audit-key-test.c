/* The audit key is made under the keystore lock (provider/audit-chain.c): a process opening an
 * audited service on a token without an audit key waits while another process holds the lock,
 * and then uses the key that process made, so that two processes starting together cannot
 * leave two audit keys with one CKA_ID (after which no audit log finds its key).
 *
 * A child holds the lock, makes the audit key after a pause and releases the lock; the parent
 * opens an audited service meanwhile. The open must not finish before the child released the
 * lock, and the token must then hold one audit key. */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/audit.h"
#include "provider/keystore.h"
#include "provider/service.h"

static p11kms_error e;
/* File-scope, so that the child's exit (under valgrind in CI) does not count them as lost. */
static char *config_path, *log_path;

static void child_holds_the_lock(int locked_fd, int released_fd)
{
    p11kms *svc = fx_open(NULL);
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    REQUIRE(write(locked_fd, "L", 1) == 1);
    fx_sleep_ms(700);
    p11_key *key = NULL;
    REQUIRE(audit_key_get(svc->token, true, &key, &e) == P11KMS_OK);
    keystore_unlock(svc);
    REQUIRE(write(released_fd, "R", 1) == 1);
    p11kms_close(svc);
    _exit(0);
}

int main(void)
{
    config_path = fx_config("audit-key.yaml", NULL, NULL, NULL);
    log_path = fx_write_file("audit-key.log", "");
    FILE *cfg = fopen(config_path, "a");
    REQUIRE(cfg != NULL);
    fprintf(cfg, "audit:\n  file: %s\n", log_path);
    REQUIRE(fclose(cfg) == 0);

    fx_say("the token has no audit key yet");
    p11kms *plain = fx_open(NULL);
    p11_key *key = NULL;
    CHECK_ERR(audit_key_get(plain->token, false, &key, &e), P11KMS_E_NOT_FOUND, &e);
    p11kms_close(plain);

    int locked[2], released[2];
    REQUIRE(pipe(locked) == 0 && pipe(released) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0)
        child_holds_the_lock(locked[1], released[1]);
    char byte;
    REQUIRE(read(locked[0], &byte, 1) == 1);

    fx_say("an audited open while another process holds the keystore lock waits for it");
    p11kms *audited = fx_open(config_path);
    struct pollfd done = {.fd = released[0], .events = POLLIN};
    CHECK(poll(&done, 1, 0) == 1); /* the child had released the lock before the open ended */
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    fx_say("one audit key: the one the other process made");
    CHECK_OK(audit_key_get(audited->token, false, &key, &e), &e);
    p11kms_principal *who = fx_principal("unix:user:audit-key-tester");
    p11kms_result random;
    CHECK_OK(p11kms_generate_random(audited, who, 8, &random, &e), &e); /* an audited request */
    p11kms_result_free(&random);
    p11kms_principal_free(who);
    p11kms_close(audited);
    free(config_path);
    free(log_path);
    return check_finish("provider-audit-key-test");
}
