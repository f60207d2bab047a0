/* String-keyed hash map (open addressing) for the provider's caches. Not thread-safe: the owner
 * holds its own lock. Keys are copied; values are opaque pointers owned by the caller. */
#ifndef P11KMS_COMMON_HASHMAP_H
#define P11KMS_COMMON_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FNV-1a (64 bits), the one hash function of p11kms's tables: keys are short (UUIDs, alias and
 * principal names, token labels and ids) and chosen by the deployment, not by an attacker in
 * bulk, so a simple hash is enough. */
uint64_t hash_fnv1a(const void *data, size_t len);

typedef struct hashmap hashmap;

hashmap *hashmap_new(void);
/* free_value (may be NULL) is called on every remaining value. */
void hashmap_free(hashmap *map, void (*free_value)(void *value));
void *hashmap_get(const hashmap *map, const char *key);
/* Inserts or replaces; returns the replaced value (or NULL) through *old when old != NULL.
 * Returns false on allocation failure (the map is unchanged). */
bool hashmap_put(hashmap *map, const char *key, void *value, void **old);
/* Removes and returns the value, or NULL. */
void *hashmap_remove(hashmap *map, const char *key);
size_t hashmap_count(const hashmap *map);
/* Calls fn for each entry; a non-zero return stops. */
int hashmap_each(const hashmap *map, int (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
