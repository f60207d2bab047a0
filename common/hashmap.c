#include "config.h"

#include "common/hashmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    char *key; /* NULL: empty; TOMBSTONE: removed */
    void *value;
    uint64_t hash;
} slot;

struct hashmap {
    slot *slots;
    size_t capacity; /* power of two */
    size_t count;    /* live entries */
    size_t used;     /* live entries + tombstones */
};

static char tombstone_marker;
#define TOMBSTONE (&tombstone_marker)

uint64_t hash_fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static uint64_t hash_key(const char *key)
{
    return hash_fnv1a(key, strlen(key));
}

hashmap *hashmap_new(void)
{
    hashmap *map = calloc(1, sizeof(*map));
    if (map == NULL)
        return NULL;
    map->capacity = 16;
    map->slots = calloc(map->capacity, sizeof(slot));
    if (map->slots == NULL) {
        free(map);
        return NULL;
    }
    return map;
}

void hashmap_free(hashmap *map, void (*free_value)(void *value))
{
    if (map == NULL)
        return;
    for (size_t i = 0; i < map->capacity; i++) {
        slot *s = &map->slots[i];
        if (s->key != NULL && s->key != TOMBSTONE) {
            if (free_value != NULL)
                free_value(s->value);
            free(s->key);
        }
    }
    free(map->slots);
    free(map);
}

/* Index of the slot holding key, or of the slot where it would be inserted. */
static size_t probe(const hashmap *map, const char *key, uint64_t h, bool *found)
{
    size_t mask = map->capacity - 1;
    size_t i = (size_t)h & mask;
    size_t first_free = SIZE_MAX;
    for (;;) {
        slot *s = &map->slots[i];
        if (s->key == NULL) {
            *found = false;
            return first_free != SIZE_MAX ? first_free : i;
        }
        if (s->key == TOMBSTONE) {
            if (first_free == SIZE_MAX)
                first_free = i;
        } else if (s->hash == h && strcmp(s->key, key) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static bool grow(hashmap *map)
{
    size_t capacity = map->capacity * 2;
    slot *slots = calloc(capacity, sizeof(slot));
    if (slots == NULL)
        return false;
    for (size_t i = 0; i < map->capacity; i++) {
        slot *s = &map->slots[i];
        if (s->key == NULL || s->key == TOMBSTONE)
            continue;
        size_t j = (size_t)s->hash & (capacity - 1);
        while (slots[j].key != NULL)
            j = (j + 1) & (capacity - 1);
        slots[j] = *s;
    }
    free(map->slots);
    map->slots = slots;
    map->capacity = capacity;
    map->used = map->count;
    return true;
}

void *hashmap_get(const hashmap *map, const char *key)
{
    bool found;
    size_t i = probe(map, key, hash_key(key), &found);
    return found ? map->slots[i].value : NULL;
}

bool hashmap_put(hashmap *map, const char *key, void *value, void **old)
{
    if (old != NULL)
        *old = NULL;
    if ((map->used + 1) * 4 > map->capacity * 3 && !grow(map))
        return false;
    uint64_t h = hash_key(key);
    bool found;
    size_t i = probe(map, key, h, &found);
    slot *s = &map->slots[i];
    if (found) {
        if (old != NULL)
            *old = s->value;
        s->value = value;
        return true;
    }
    char *copy = strdup(key);
    if (copy == NULL)
        return false;
    if (s->key == NULL)
        map->used++;
    s->key = copy;
    s->value = value;
    s->hash = h;
    map->count++;
    return true;
}

void *hashmap_remove(hashmap *map, const char *key)
{
    bool found;
    size_t i = probe(map, key, hash_key(key), &found);
    if (!found)
        return NULL;
    slot *s = &map->slots[i];
    void *value = s->value;
    free(s->key);
    s->key = TOMBSTONE;
    s->value = NULL;
    map->count--;
    return value;
}

size_t hashmap_count(const hashmap *map)
{
    return map->count;
}

int hashmap_each(const hashmap *map, int (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < map->capacity; i++) {
        slot *s = &map->slots[i];
        if (s->key == NULL || s->key == TOMBSTONE)
            continue;
        int rc = fn(s->key, s->value, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}
