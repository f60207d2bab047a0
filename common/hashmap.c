#include "config.h"

#include "common/hashmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    char *key; /* NULL: empty; TOMBSTONE: removed; else len bytes and a NUL */
    void *value;
    uint64_t hash;
    size_t len;
} slot;

struct hashmap {
    slot *slots;
    size_t capacity;  /* power of two */
    size_t count;     /* live entries */
    size_t used;      /* live entries + tombstones */
    bool borrow_keys; /* hashmap_new_borrowing: keys belong to the caller */
};

static char tombstone_marker;
#define TOMBSTONE (&tombstone_marker)

/* hash_bytes is kept out of line: inlined into hashmap_get, GCC 12 spent a register move more
 * per byte of key on the byte-wise FNV-1a this replaced (measured with callgrind on
 * tests/policy-bench's decisions), more than the call costs. */
#if defined(__GNUC__)
#define HASH_NOINLINE __attribute__((noinline))
#else
#define HASH_NOINLINE
#endif

/* FNV-1a's multiply-xor step applied to 8-byte words instead of bytes (the byte-wise loop was
 * 2 % of an Encrypt, hashing the policy decision cache's ~150-byte request), then MurmurHash3's
 * 64-bit finalizer: word steps leave the low bits depending only on the words' low bytes, and
 * tables index with the low bits. */
HASH_NOINLINE uint64_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = UINT64_C(14695981039346656037) ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * UINT64_C(1099511628211);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        h = (h ^ w) * UINT64_C(1099511628211);
    }
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

static hashmap *map_new(bool borrow_keys)
{
    hashmap *map = calloc(1, sizeof(*map));
    if (map == NULL)
        return NULL;
    map->capacity = 16;
    map->borrow_keys = borrow_keys;
    map->slots = calloc(map->capacity, sizeof(slot));
    if (map->slots == NULL) {
        free(map);
        return NULL;
    }
    return map;
}

hashmap *hashmap_new(void)
{
    return map_new(false);
}

hashmap *hashmap_new_borrowing(void)
{
    return map_new(true);
}

static void release_key(const hashmap *map, char *key)
{
    if (!map->borrow_keys)
        free(key);
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
            release_key(map, s->key);
        }
    }
    free(map->slots);
    free(map);
}

/* Index of the slot holding key, or of the slot where it would be inserted (the first tombstone
 * on the way, so that removals do not lengthen the probes of later insertions). */
static size_t probe(const hashmap *map, const void *key, size_t len, uint64_t h, bool *found)
{
    size_t mask = map->capacity - 1;
    size_t i = (size_t)h & mask;
    size_t first_free = SIZE_MAX;
    for (;;) {
        const slot *s = &map->slots[i];
        if (s->key == NULL) {
            *found = false;
            return first_free != SIZE_MAX ? first_free : i;
        }
        if (s->key == TOMBSTONE) {
            if (first_free == SIZE_MAX)
                first_free = i;
        } else if (s->hash == h && s->len == len && (len == 0 || memcmp(s->key, key, len) == 0)) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* The live slot holding key, or NULL: the lookup alone, without probe's bookkeeping of
 * tombstones, since lookups are the policy decision's hot path. Writes nothing. */
static inline const slot *find(const hashmap *map, const void *key, size_t len, uint64_t h)
{
    size_t mask = map->capacity - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const slot *s = &map->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->hash == h && s->len == len && s->key != TOMBSTONE &&
            (len == 0 || memcmp(s->key, key, len) == 0))
            return s;
    }
}

/* Rebuilds the table without its tombstones: at the same size when at most half of it is live
 * (a map whose keys come and go, like the token's key cache, would otherwise double at every
 * round of tombstones while holding the same few entries), else at twice the size. */
static bool rehash(hashmap *map)
{
    size_t capacity = map->capacity;
    if (map->count + 1 > capacity / 2) {
        if (capacity > SIZE_MAX / 2 / sizeof(slot))
            return false;
        capacity *= 2;
    }
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

void *hashmap_get_bytes(const hashmap *map, const void *key, size_t len)
{
    const slot *s = find(map, key, len, hash_bytes(key, len));
    return s != NULL ? s->value : NULL;
}

bool hashmap_put_bytes(hashmap *map, const void *key, size_t len, void *value, void **old)
{
    if (old != NULL)
        *old = NULL;
    uint64_t h = hash_bytes(key, len);
    bool found;
    size_t i = probe(map, key, len, h, &found);
    if (found) {
        /* Before any growth: replacing must not fail, or an owner that has already freed the
         * old value (a realloc'ed array, say) would be left with a dangling entry. */
        if (old != NULL)
            *old = map->slots[i].value;
        map->slots[i].value = value;
        return true;
    }
    if (len == SIZE_MAX)
        return false;
    bool borrow = map->borrow_keys;
    char *stored = (char *)key;
    if (!borrow) {
        stored = malloc(len + 1);
        if (stored == NULL)
            return false;
        if (len > 0)
            memcpy(stored, key, len);
        stored[len] = '\0';
    }
    /* A new key that fills a never-used slot raises the load; keep it at most 3/4 so that
     * probes stay short and always end at an empty slot. */
    if (map->slots[i].key == NULL && (map->used + 1) * 4 > map->capacity * 3) {
        if (!rehash(map)) {
            if (!borrow)
                free(stored);
            return false;
        }
        i = probe(map, key, len, h, &found);
    }
    slot *s = &map->slots[i];
    if (s->key == NULL)
        map->used++;
    s->key = stored;
    s->value = value;
    s->hash = h;
    s->len = len;
    map->count++;
    return true;
}

void *hashmap_remove_bytes(hashmap *map, const void *key, size_t len)
{
    bool found;
    size_t i = probe(map, key, len, hash_bytes(key, len), &found);
    if (!found)
        return NULL;
    slot *s = &map->slots[i];
    void *value = s->value;
    release_key(map, s->key);
    s->key = TOMBSTONE;
    s->value = NULL;
    map->count--;
    return value;
}

/* Not a call of hashmap_get_bytes: one call less per lookup on the policy's hot path. */
void *hashmap_get(const hashmap *map, const char *key)
{
    size_t len = strlen(key);
    const slot *s = find(map, key, len, hash_bytes(key, len));
    return s != NULL ? s->value : NULL;
}

bool hashmap_put(hashmap *map, const char *key, void *value, void **old)
{
    return hashmap_put_bytes(map, key, strlen(key), value, old);
}

void *hashmap_remove(hashmap *map, const char *key)
{
    return hashmap_remove_bytes(map, key, strlen(key));
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
