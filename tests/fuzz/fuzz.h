/* Shared by the fuzz targets under tests/fuzz/ and policy/fuzz-policy.c.
 *
 * Each target defines LLVMFuzzerTestOneInput and is built two ways: with clang
 * -fsanitize=fuzzer as a libFuzzer program (`make fuzz`, configure --enable-fuzzing), and linked
 * with tests/fuzz/driver.c as a plain check program that `make check` runs over the target's
 * seed corpus in the repository, with whatever compiler and sanitizers the build uses.
 *
 * Targets check invariants, not only the absence of crashes: a broken invariant calls
 * FUZZ_ASSERT, which prints what failed and aborts (libFuzzer then saves the input). */
#ifndef P11KMS_FUZZ_H
#define P11KMS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional: a target may define this to run inputs too large to keep in the repository; the
 * check driver calls it after the corpus. */
void fuzz_generated_inputs(void);

static inline _Noreturn void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(#cond, __FILE__, __LINE__);                                                  \
    } while (0)

#endif
