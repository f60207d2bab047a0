#include "config.h"

#include "common/fork-generation.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static _Atomic unsigned long generation = 1;
static bool tracked;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void in_child(void)
{
    atomic_fetch_add(&generation, 1);
}

static void register_atfork(void)
{
    tracked = pthread_atfork(NULL, NULL, in_child) == 0;
}

unsigned long fork_generation(void)
{
    pthread_once(&atfork_once, register_atfork);
    return tracked ? atomic_load_explicit(&generation, memory_order_relaxed) : 0;
}
