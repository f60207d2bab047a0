/* p11kms maintain repairs aliases (provider/maintain.c): an alias row whose key is gone is
 * removed, a record that lists an alias pointing elsewhere (or nowhere) forgets it. It reads
 * the aliases and records without the lock, so every repair is decided again under the lock:
 * here a child process holds the lock while maintain reads, and moves a dangling alias to a live
 * key before letting maintain go on; the alias must survive. The rows are changed through the
 * provider's internal key store, as hand edits with the token would. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/provider-fixture.h"
#include "p11kms.h"
#include "provider/keymeta.h"
#include "provider/keystore.h"
#include "provider/service.h"

static p11kms_error e;
static p11kms_principal *who;

/* Deletes a key's record and nothing else, leaving its aliases dangling. */
static void drop_record(const char *id)
{
    p11kms *svc = fx_open(NULL);
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    REQUIRE(keystore_meta_delete(svc, id, &e) == P11KMS_OK);
    keystore_unlock(svc);
    p11kms_close(svc);
}

/* Under a lock already held: the alias row points to id, and id's record lists it. */
static void point_alias(p11kms *svc, const char *alias, const char *id)
{
    REQUIRE(keystore_alias_put(svc, alias, id, &e) == P11KMS_OK);
    key_meta *m = NULL;
    REQUIRE(keystore_meta_read(svc, id, &m, &e) == P11KMS_OK);
    REQUIRE(keymeta_add_alias(m, alias));
    REQUIRE(keystore_meta_write(svc, m, &e) == P11KMS_OK);
    keymeta_free(m);
}

static void child_moves_alias(int locked_fd, const char *alias, const char *to)
{
    p11kms *svc = fx_open(NULL);
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    REQUIRE(write(locked_fd, "L", 1) == 1);
    fx_sleep_ms(1500); /* maintain reads the listings meanwhile */
    point_alias(svc, alias, to);
    keystore_unlock(svc);
    p11kms_close(svc);
    _exit(0);
}

static const char *alias_target(p11kms *svc, const char *alias, p11kms_key_metadata *md)
{
    return p11kms_describe_key(svc, who, alias, md, &e) == P11KMS_OK ? md->key_id : NULL;
}

int main(void)
{
    who = fx_principal("unix:user:maintain-alias-tester");
    p11kms *svc = fx_open(NULL);
    char gone[P11KMS_KEY_ID_LEN + 1], live[P11KMS_KEY_ID_LEN + 1], other[P11KMS_KEY_ID_LEN + 1];
    fx_create_key(svc, who, "its record is deleted", gone);
    fx_create_key(svc, who, "the alias moves here", live);
    fx_create_key(svc, who, "lists an alias that does not exist", other);
    CHECK_OK(p11kms_create_alias(svc, who, "alias/moving", gone, &e), &e);
    p11kms_close(svc);
    drop_record(gone);

    fx_say("maintain reads a dangling alias; another process moves it to a live key first");
    int locked[2];
    REQUIRE(pipe(locked) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0)
        child_moves_alias(locked[1], "alias/moving", live);
    char byte;
    REQUIRE(read(locked[0], &byte, 1) == 1);
    svc = fx_open(NULL);
    fx_list lines = {0};
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, "alias/moving") < 0);
    fx_list_free(&lines);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    p11kms_key_metadata md;
    const char *target = alias_target(svc, "alias/moving", &md);
    CHECK(target != NULL && strcmp(target, live) == 0);

    fx_say("a dangling alias is removed; an alias a record lists but no row has leaves the record");
    REQUIRE(keystore_lock(svc, &e) == P11KMS_OK);
    REQUIRE(keystore_alias_put(svc, "alias/dangling", gone, &e) == P11KMS_OK);
    key_meta *m = NULL;
    REQUIRE(keystore_meta_read(svc, other, &m, &e) == P11KMS_OK);
    REQUIRE(keymeta_add_alias(m, "alias/ghost"));
    REQUIRE(keystore_meta_write(svc, m, &e) == P11KMS_OK);
    keymeta_free(m);
    keystore_unlock(svc);
    p11kms_close(svc);
    svc = fx_open(NULL);
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, "alias alias/dangling pointed to deleted key") >= 0);
    CHECK(fx_list_find_sub(&lines, "listed alias/ghost, which does not exist") >= 0);
    fx_list_free(&lines);
    CHECK(alias_target(svc, "alias/dangling", &md) == NULL);
    REQUIRE(keystore_meta_read(svc, other, &m, &e) == P11KMS_OK);
    CHECK(!keymeta_has_alias(m, "alias/ghost"));
    keymeta_free(m);
    target = alias_target(svc, "alias/moving", &md);
    CHECK(target != NULL && strcmp(target, live) == 0);

    fx_say("a second maintain finds no alias to repair");
    CHECK_OK(p11kms_maintain(svc, who, fx_collect_line, &lines, &e), &e);
    CHECK(fx_list_find_sub(&lines, "alias") < 0);
    fx_list_free(&lines);
    p11kms_close(svc);
    p11kms_principal_free(who);
    return check_finish("provider-maintain-alias-test");
}
