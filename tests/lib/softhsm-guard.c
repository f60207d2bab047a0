#include "config.h"

#include "softhsm-guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char *token_object; /* path of token.object; NULL: not a SoftHSM token of the harness */
static char *saved;
static size_t saved_len;
static unsigned repairs;

/* directories.tokendir from the harness's softhsm2.conf (malloc'ed), or NULL. */
static char *token_dir_from_conf(const char *conf_path)
{
    FILE *f = fopen(conf_path, "r");
    REQUIRE(f != NULL);
    char line[4200];
    char *dir = NULL;
    while (dir == NULL && fgets(line, sizeof(line), f) != NULL) {
        char value[4200];
        if (sscanf(line, " directories.tokendir = %4199s", value) == 1)
            dir = strdup(value);
    }
    fclose(f);
    return dir;
}

/* The one token directory under tokendir (the harness initializes one token per test). */
static char *find_token_object(const char *tokendir)
{
    DIR *d = opendir(tokendir);
    REQUIRE(d != NULL);
    char *found = NULL;
    int count = 0;
    for (struct dirent *ent = readdir(d); ent != NULL; ent = readdir(d)) {
        if (ent->d_name[0] == '.')
            continue;
        size_t len = strlen(tokendir) + strlen(ent->d_name) + sizeof("//token.object");
        char *path = malloc(len);
        REQUIRE(path != NULL);
        snprintf(path, len, "%s/%s/token.object", tokendir, ent->d_name);
        if (access(path, F_OK) == 0) {
            count++;
            free(found);
            found = path;
        } else {
            free(path);
        }
    }
    closedir(d);
    REQUIRE(count == 1);
    return found;
}

bool softhsm_guard_own_token(void)
{
    const char *kind = getenv("P11KMS_TEST_TOKEN");
    const char *own = getenv("P11KMS_TEST_OWN_TOKEN");
    return (kind == NULL || strcmp(kind, "softhsm") == 0) && own != NULL && strcmp(own, "1") == 0 &&
           getenv("SOFTHSM2_CONF") != NULL;
}

void softhsm_guard_arm(void)
{
    if (token_object != NULL || !softhsm_guard_own_token())
        return;
    char *tokendir = token_dir_from_conf(getenv("SOFTHSM2_CONF"));
    REQUIRE(tokendir != NULL);
    token_object = find_token_object(tokendir);
    free(tokendir);
    saved = test_read_file(token_object, &saved_len);
    REQUIRE(saved_len > 0);
}

bool softhsm_guard_repair(void)
{
    struct stat st;
    if (token_object == NULL || stat(token_object, &st) != 0 || st.st_size != 0)
        return false;
    /* A new file renamed over the empty one: a SoftHSM process reading it sees either. */
    size_t len = strlen(token_object) + sizeof(".guard");
    char *tmp = malloc(len);
    REQUIRE(tmp != NULL);
    snprintf(tmp, len, "%s.guard", token_object);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, saved, saved_len) == (ssize_t)saved_len);
    REQUIRE(close(fd) == 0);
    REQUIRE(rename(tmp, token_object) == 0);
    free(tmp);
    repairs++;
    fprintf(stderr, "   SoftHSM's token.object was empty after a kill (SoftHSM rewrites it in "
                    "place at every C_Login): put back the copy taken before the kills\n");
    return true;
}

unsigned softhsm_guard_repairs(void)
{
    return repairs;
}
