#include "config.h"

/* IVs drawn in blocks per thread (provider/ivbuf.c): every IV handed out differs from the others,
 * and a block drawn before a fork is not used by the child, so parent and child never hand out
 * the same IV (the next IV of the parent's block would otherwise be the child's too). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/check.h"
#include "provider/ivbuf.h"

#define MANY (3 * IVBUF_COUNT + 5) /* crosses block refills */

int main(void)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    REQUIRE(libctx != NULL);
    p11kms_error e = {0};

    fprintf(stderr, "== %d IVs in a row are all different\n", MANY);
    static uint8_t ivs[MANY][IVBUF_IV_LEN];
    for (int i = 0; i < MANY; i++)
        CHECK_OK(ivbuf_take(libctx, ivs[i], &e), &e);
    int same = 0;
    for (int i = 0; i < MANY; i++)
        for (int j = i + 1; j < MANY; j++)
            same += memcmp(ivs[i], ivs[j], IVBUF_IV_LEN) == 0;
    CHECK(same == 0);

    fprintf(stderr, "== after a fork, parent and child hand out different IVs\n");
    uint8_t first[IVBUF_IV_LEN], parent_iv[IVBUF_IV_LEN], child_iv[IVBUF_IV_LEN];
    CHECK_OK(ivbuf_take(libctx, first, &e), &e); /* the parent's block is partly used */
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        uint8_t iv[IVBUF_IV_LEN];
        p11kms_error ce = {0};
        int ok = ivbuf_take(libctx, iv, &ce) == P11KMS_OK &&
                 write(fds[1], iv, sizeof(iv)) == (ssize_t)sizeof(iv);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    CHECK_OK(ivbuf_take(libctx, parent_iv, &e), &e);
    CHECK(read(fds[0], child_iv, sizeof(child_iv)) == (ssize_t)sizeof(child_iv));
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(parent_iv, child_iv, IVBUF_IV_LEN) != 0);
    CHECK(memcmp(first, parent_iv, IVBUF_IV_LEN) != 0);

    OSSL_LIB_CTX_free(libctx);
    return check_finish("provider-ivbuf-test");
}
