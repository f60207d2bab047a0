/* A small hash map from byte strings to pointers, for the token's handle caches (keys by CKA_ID,
 * data objects by label). Not thread-safe: the token guards each map with its cache lock. */
#ifndef P11KMS_PKCS11_MAP_H
#define P11KMS_PKCS11_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct p11_map_entry p11_map_entry;
typedef struct p11_map {
    p11_map_entry **buckets;
    size_t nbuckets;
    size_t count;
} p11_map;

void p11_map_init(p11_map *m);
/* Frees the map's own memory; values are the caller's (free them first with p11_map_each). */
void p11_map_clear(p11_map *m);
void *p11_map_get(const p11_map *m, const void *key, size_t key_len);
/* Copies the key; false on allocation failure. Replaces an existing value. */
bool p11_map_put(p11_map *m, const void *key, size_t key_len, void *value);
/* Returns the removed value, NULL if absent. */
void *p11_map_remove(p11_map *m, const void *key, size_t key_len);
void p11_map_each(p11_map *m, void (*fn)(void *value, void *arg), void *arg);

#endif
