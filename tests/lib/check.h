/* Minimal checks for p11kms's C tests: each failed check prints where and why and the test
 * exits 1 at the end; a broken environment exits 99 (hard error, never a skip). */
#ifndef P11KMS_TEST_CHECK_H
#define P11KMS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms-error.h"

extern int check_failures;
extern int check_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

/* expr is a p11kms_err call that must succeed; e is the p11kms_error it fills. */
#define CHECK_OK(expr, e)                                                                          \
    do {                                                                                           \
        check_count++;                                                                             \
        p11kms_err check_rc_ = (expr);                                                             \
        if (check_rc_ != P11KMS_OK) {                                                              \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s failed: %s: %s (raised at %s:%d)\n", __FILE__, __LINE__,    \
                    #expr, p11kms_error_class(check_rc_), (e)->message,                            \
                    (e)->file ? (e)->file : "?", (e)->line);                                       \
        }                                                                                          \
    } while (0)

/* expr must fail with exactly the code want. */
#define CHECK_ERR(expr, want, e)                                                                   \
    do {                                                                                           \
        check_count++;                                                                             \
        p11kms_err check_rc_ = (expr);                                                             \
        if (check_rc_ != (want)) {                                                                 \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s: want %s, got %s (%s)\n", __FILE__, __LINE__, #expr,        \
                    p11kms_error_class(want), p11kms_error_class(check_rc_), (e)->message);        \
        }                                                                                          \
    } while (0)

/* Aborts the test with a hard error when the environment is unusable. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond);         \
            exit(99);                                                                              \
        }                                                                                          \
    } while (0)

/* Value of an environment variable set by tests/lib/with-token.sh; hard error if missing. */
const char *test_env(const char *name);
/* Reads a whole file (malloc'ed, NUL-terminated); hard error if unreadable. */
char *test_read_file(const char *path, size_t *len);
/* Path of a test vector file under tests/vectors of the source tree ($P11KMS_SRCDIR). */
const char *test_vector_path(const char *relative);
/* Prints a summary and returns the exit status for main(). */
int check_finish(const char *test_name);

#endif
