/* Process protection: core dumps off, secure heap locked (see p11kms_protect_process). */
#ifndef P11KMS_PROVIDER_PROTECT_H
#define P11KMS_PROVIDER_PROTECT_H

#include <stdbool.h>

#include "p11kms.h"

typedef enum protect_heap_state {
    PROTECT_HEAP_NONE,     /* no secure heap: secure allocations are ordinary (still wiped) */
    PROTECT_HEAP_UNLOCKED, /* a heap whose pages could not be locked (mlock failed) */
    PROTECT_HEAP_LOCKED,   /* locked and excluded from core dumps */
    PROTECT_HEAP_FOREIGN,  /* created by someone else in the process: its state is unknown */
} protect_heap_state;

/* Creates the process-wide secure heap once; reports on stderr, once, when it is not locked. */
protect_heap_state protect_secure_heap(void);
/* prctl(PR_SET_DUMPABLE, 0) and RLIMIT_CORE 0. */
P11KMS_MUST_CHECK p11kms_err protect_no_core_dumps(p11kms_error *err);

#endif
