#include "config.h"

#include "policy/index.h"
#include "common/hashmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_text(const char *s)
{
    uint64_t h = hash_fnv1a(s, strlen(s));
    return (size_t)(h ^ (h >> 32));
}

static policy_index_slot *probe(policy_index_slot *slots, size_t mask, const char *key)
{
    size_t i = hash_text(key) & mask;
    while (slots[i].key != NULL && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & mask;
    return &slots[i];
}

static bool grow(policy_index *idx)
{
    size_t n = idx->mask == 0 ? 16 : (idx->mask + 1) * 2;
    if (n > SIZE_MAX / sizeof(policy_index_slot))
        return false;
    policy_index_slot *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return false;
    for (size_t i = 0; idx->mask != 0 && i <= idx->mask; i++)
        if (idx->slots[i].key != NULL)
            *probe(slots, n - 1, idx->slots[i].key) = idx->slots[i];
    free(idx->slots);
    idx->slots = slots;
    idx->mask = n - 1;
    return true;
}

bool policy_index_add(policy_index *idx, const char *key, size_t value)
{
    /* Keep the load under one half so probes stay short. */
    if ((idx->used + 1) * 2 > idx->mask + 1 && !grow(idx))
        return false;
    policy_index_slot *slot = probe(idx->slots, idx->mask, key);
    if (slot->count == slot->cap) {
        size_t cap = slot->cap == 0 ? 2 : slot->cap * 2;
        size_t *values = realloc(slot->values, cap * sizeof(size_t));
        if (values == NULL)
            return false;
        slot->values = values;
        slot->cap = cap;
    }
    if (slot->key == NULL) {
        slot->key = key;
        idx->used++;
    }
    slot->values[slot->count++] = value;
    return true;
}

const size_t *policy_index_find(const policy_index *idx, const char *key, size_t *count)
{
    *count = 0;
    if (idx->mask == 0 || key == NULL)
        return NULL;
    const policy_index_slot *slot = probe(idx->slots, idx->mask, key);
    if (slot->key == NULL)
        return NULL;
    *count = slot->count;
    return slot->values;
}

void policy_index_free(policy_index *idx)
{
    for (size_t i = 0; idx->mask != 0 && i <= idx->mask; i++)
        free(idx->slots[i].values);
    free(idx->slots);
    memset(idx, 0, sizeof(*idx));
}
