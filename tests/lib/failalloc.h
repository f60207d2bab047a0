/* Allocation failure for C tests: failalloc.c replaces malloc, calloc, realloc, aligned_alloc and
 * free for the whole process (glibc allows a program to) and, while armed, counts the allocations,
 * fails the chosen one, and keeps the balance of allocations and frees, so a test can make each
 * allocation of a call fail in turn and see that nothing leaked. Only built without
 * AddressSanitizer, which owns malloc (FAILALLOC_AVAILABLE says which); a test using it cannot run
 * under valgrind either, since valgrind replaces malloc itself. */
#ifndef P11KMS_TEST_FAILALLOC_H
#define P11KMS_TEST_FAILALLOC_H

#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAILALLOC_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FAILALLOC_ASAN 1
#endif
#ifndef FAILALLOC_ASAN
#define FAILALLOC_AVAILABLE 1
#endif

#ifdef FAILALLOC_AVAILABLE
/* Starts counting from zero; allocation number fail (from 0) fails, -1: none fails. */
void failalloc_arm(long fail);
void failalloc_disarm(void);
/* Between these, allocations are neither counted nor failed (a library call the test does not
 * cover); arming state and counts are kept. */
void failalloc_pause(void);
void failalloc_resume(void);
/* Since the last failalloc_arm: allocations attempted (the failed one included), allocations
 * minus frees (of any block; blocks allocated before arming count when freed), and the largest
 * calloc in bytes. */
long failalloc_attempts(void);
long failalloc_live(void);
size_t failalloc_largest(void);
#endif

#endif
