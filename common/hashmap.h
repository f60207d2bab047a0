/* Hash map from byte-string keys to pointers (open addressing), the one table of p11kms: the
 * provider's caches, the token's handle caches and the policy's indexes. Not thread-safe: the
 * owner holds its own lock. Readers that only call hashmap_get, hashmap_get_bytes,
 * hashmap_count and hashmap_each may share a map without a lock, since none of them writes
 * (the policy shares its indexes this way once loaded). Keys are copied (but see
 * hashmap_new_borrowing); values are opaque pointers owned by the caller. */
#ifndef P11KMS_COMMON_HASHMAP_H
#define P11KMS_COMMON_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one hash function of p11kms's tables (64 bits, FNV-1a steps over 8-byte words and a
 * final mix): keys are short (UUIDs, alias and principal names, token labels and ids, decision
 * cache requests) and chosen by the deployment, not by an attacker in bulk, so a simple hash is
 * enough. Tables compare whole keys: the hash only places them. */
uint64_t hash_bytes(const void *data, size_t len);

typedef struct hashmap hashmap;

hashmap *hashmap_new(void);
/* A map that does not copy its keys: each key stays the caller's, unchanged, alive and followed
 * by a NUL for as long as it is in the map, as a key stored inside its own value is. A lookup
 * then compares against the value's memory instead of a separate copy (one cache line less per
 * lookup of the key cache, whose keys are random). */
hashmap *hashmap_new_borrowing(void);
/* free_value (may be NULL) is called on every remaining value. map may be NULL. */
void hashmap_free(hashmap *map, void (*free_value)(void *value));

/* Byte-string keys: any len bytes, NUL bytes included (key may be NULL when len is 0). Two keys
 * are equal when they have the same length and bytes. */
void *hashmap_get_bytes(const hashmap *map, const void *key, size_t len);
/* Inserts or replaces; returns the replaced value (or NULL) through *old when old != NULL.
 * Returns false on allocation failure (the map is unchanged). Replacing the value of a key
 * already present never allocates, so it cannot fail. */
bool hashmap_put_bytes(hashmap *map, const void *key, size_t len, void *value, void **old);
/* Removes and returns the value, or NULL. */
void *hashmap_remove_bytes(hashmap *map, const void *key, size_t len);

/* The same for NUL-terminated string keys (the key is its bytes without the NUL). */
void *hashmap_get(const hashmap *map, const char *key);
bool hashmap_put(hashmap *map, const char *key, void *value, void **old);
void *hashmap_remove(hashmap *map, const char *key);

size_t hashmap_count(const hashmap *map);
/* Calls fn for each entry; a non-zero return stops. The key is the stored copy (or borrowed key),
 * followed by a NUL: a byte key that holds NUL bytes is seen only up to the first of them. */
int hashmap_each(const hashmap *map, int (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
