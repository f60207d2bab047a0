#include "config.h"

#include "policy/index.h"

#include <stdint.h>
#include <stdlib.h>

/* The value under a key: one allocation, so that a lookup reaches the statement numbers with a
 * single pointer from the map. */
typedef struct index_list {
    size_t count, cap;
    size_t values[];
} index_list;

/* A failed first add takes its map back, so that a failure leaves the index as it was. */
static bool undo_first(policy_index *idx, bool created)
{
    if (created) {
        hashmap_free(idx->map, NULL);
        idx->map = NULL;
    }
    return false;
}

bool policy_index_add(policy_index *idx, const char *key, size_t value)
{
    bool created = false;
    if (idx->map == NULL) {
        if ((idx->map = hashmap_new()) == NULL)
            return false;
        created = true;
    }
    index_list *list = hashmap_get(idx->map, key);
    if (list == NULL) {
        list = malloc(sizeof(*list) + 2 * sizeof(size_t));
        if (list == NULL)
            return undo_first(idx, created);
        list->count = 0;
        list->cap = 2;
        if (!hashmap_put(idx->map, key, list, NULL)) {
            free(list);
            return undo_first(idx, created);
        }
    } else if (list->count == list->cap) {
        if (list->cap > (SIZE_MAX - sizeof(*list)) / sizeof(size_t) / 2)
            return false;
        size_t cap = list->cap * 2;
        index_list *grown = realloc(list, sizeof(*list) + cap * sizeof(size_t));
        if (grown == NULL)
            return false;
        grown->cap = cap;
        list = grown;
        /* Replacing the value of a present key allocates nothing and cannot fail. */
        hashmap_put(idx->map, key, list, NULL);
    }
    list->values[list->count++] = value;
    return true;
}

const size_t *policy_index_find(const policy_index *idx, const char *key, size_t *count)
{
    *count = 0;
    if (idx->map == NULL || key == NULL)
        return NULL;
    const index_list *list = hashmap_get(idx->map, key);
    if (list == NULL)
        return NULL;
    *count = list->count;
    return list->values;
}

void policy_index_free(policy_index *idx)
{
    hashmap_free(idx->map, free);
    idx->map = NULL;
}
