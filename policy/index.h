/* A string-keyed hash index from exact names (key ids, aliases, principals, sids) to lists of
 * statement numbers, so that evaluating a request looks at the statements that name its key
 * instead of scanning them all. Built once at load, then read-only: safe to share. */
#ifndef P11KMS_POLICY_INDEX_H
#define P11KMS_POLICY_INDEX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct policy_index_slot {
    const char *key; /* borrowed: must outlive the index; NULL: empty slot */
    size_t *values;
    size_t count, cap;
} policy_index_slot;

typedef struct policy_index {
    policy_index_slot *slots;
    size_t mask; /* slot count - 1 (a power of two), 0 when empty */
    size_t used;
} policy_index;

/* Adds value under key (keys are compared by content). Returns false when out of memory. */
bool policy_index_add(policy_index *idx, const char *key, size_t value);
/* Values under key in insertion order, or NULL with *count 0. */
const size_t *policy_index_find(const policy_index *idx, const char *key, size_t *count);
void policy_index_free(policy_index *idx);

#endif
