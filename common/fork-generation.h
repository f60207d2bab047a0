/* A process-wide counter that changes in the child of every fork. Per-thread buffers of random
 * bytes (GCM IVs, token randomness for keys) remember the value they were filled under and throw
 * their contents away when it differs: parent and child must never hand out the same bytes. */
#ifndef P11KMS_COMMON_FORK_GENERATION_H
#define P11KMS_COMMON_FORK_GENERATION_H

/* The current generation, never 0 while forks are tracked. 0 when the fork handler could not be
 * registered: forks are then invisible and callers must not keep bytes between calls. */
unsigned long fork_generation(void);

#endif
