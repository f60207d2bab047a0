/* A string-keyed index from exact names (key ids, aliases, principals, sids) to lists of
 * statement numbers, so that evaluating a request looks at the statements that name its key
 * instead of scanning them all: a common/hashmap whose values are growable arrays of size_t.
 * Built once at load, then read-only: policy_index_find writes nothing, so the loaded policy
 * shares its indexes between threads without a lock. A zeroed policy_index is an empty index. */
#ifndef P11KMS_POLICY_INDEX_H
#define P11KMS_POLICY_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "common/hashmap.h"

typedef struct policy_index {
    hashmap *map; /* NULL until the first policy_index_add */
} policy_index;

/* Adds value under key (keys are compared by content and copied). Returns false when out of
 * memory; the index is then as it was. */
bool policy_index_add(policy_index *idx, const char *key, size_t value);
/* Values under key in insertion order, or NULL with *count 0. */
const size_t *policy_index_find(const policy_index *idx, const char *key, size_t *count);
void policy_index_free(policy_index *idx);

#endif
