#include "config.h"

#include "failalloc.h"

#ifdef FAILALLOC_AVAILABLE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

/* glibc's own allocator, which the replacements below call. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

/* The build hides symbols by default; these must be seen by libc. */
#define REPLACEMENT __attribute__((visibility("default")))

static bool armed;
static bool paused; /* armed, but a call the test does not count runs */
static long attempts;
static long fail_at = -1;
static long live;
static size_t largest;

static bool counting(void)
{
    return armed && !paused;
}

static bool fail_now(void)
{
    return armed && !paused && attempts++ == fail_at;
}

REPLACEMENT void *malloc(size_t size)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_malloc(size);
    if (counting() && p != NULL)
        live++;
    return p;
}

REPLACEMENT void *calloc(size_t n, size_t size)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_calloc(n, size);
    if (counting() && p != NULL) {
        live++;
        if (n * size > largest)
            largest = n * size;
    }
    return p;
}

REPLACEMENT void *realloc(void *p, size_t size)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    void *q = __libc_realloc(p, size);
    /* Moving a block keeps the balance; only realloc(NULL, n) is a new one. */
    if (counting() && p == NULL && q != NULL)
        live++;
    return q;
}

/* The provider lays out its per-key records on cache lines (provider/service.h). */
REPLACEMENT void *aligned_alloc(size_t alignment, size_t size)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __libc_memalign(alignment, size);
    if (counting() && p != NULL)
        live++;
    return p;
}

REPLACEMENT void free(void *p)
{
    if (counting() && p != NULL)
        live--;
    __libc_free(p);
}

void failalloc_arm(long fail)
{
    attempts = 0;
    live = 0;
    largest = 0;
    fail_at = fail;
    armed = true;
}

void failalloc_pause(void)
{
    paused = true;
}

void failalloc_resume(void)
{
    paused = false;
}

void failalloc_disarm(void)
{
    armed = false;
    paused = false;
    fail_at = -1;
}

long failalloc_attempts(void)
{
    return attempts;
}

long failalloc_live(void)
{
    return live;
}

size_t failalloc_largest(void)
{
    return largest;
}
#endif
