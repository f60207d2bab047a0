#include "config.h"

#include "pkcs11/map.h"
#include "common/hashmap.h"

#include <stdlib.h>
#include <string.h>

struct p11_map_entry {
    p11_map_entry *next;
    uint64_t hash;
    void *value;
    size_t key_len;
    unsigned char key[];
};

static uint64_t hash_bytes(const void *key, size_t len)
{
    return hash_fnv1a(key, len);
}

void p11_map_init(p11_map *m)
{
    memset(m, 0, sizeof(*m));
}

void p11_map_clear(p11_map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        p11_map_entry *e = m->buckets[i];
        while (e != NULL) {
            p11_map_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    p11_map_init(m);
}

static p11_map_entry **find_slot(const p11_map *m, const void *key, size_t key_len, uint64_t h)
{
    if (m->nbuckets == 0)
        return NULL;
    p11_map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        p11_map_entry *e = *pp;
        if (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
            return pp;
    }
    return pp;
}

void *p11_map_get(const p11_map *m, const void *key, size_t key_len)
{
    p11_map_entry **pp = find_slot(m, key, key_len, hash_bytes(key, key_len));
    return pp != NULL && *pp != NULL ? (*pp)->value : NULL;
}

static bool grow(p11_map *m)
{
    size_t n = m->nbuckets == 0 ? 16 : m->nbuckets * 2;
    p11_map_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return false;
    for (size_t i = 0; i < m->nbuckets; i++) {
        p11_map_entry *e = m->buckets[i];
        while (e != NULL) {
            p11_map_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return true;
}

bool p11_map_put(p11_map *m, const void *key, size_t key_len, void *value)
{
    if ((m->count + 1) * 4 > m->nbuckets * 3 && !grow(m))
        return false;
    uint64_t h = hash_bytes(key, key_len);
    p11_map_entry **pp = find_slot(m, key, key_len, h);
    if (*pp != NULL) {
        (*pp)->value = value;
        return true;
    }
    p11_map_entry *e = malloc(sizeof(*e) + key_len);
    if (e == NULL)
        return false;
    e->next = NULL;
    e->hash = h;
    e->value = value;
    e->key_len = key_len;
    if (key_len > 0)
        memcpy(e->key, key, key_len);
    *pp = e;
    m->count++;
    return true;
}

void *p11_map_remove(p11_map *m, const void *key, size_t key_len)
{
    p11_map_entry **pp = find_slot(m, key, key_len, hash_bytes(key, key_len));
    if (pp == NULL || *pp == NULL)
        return NULL;
    p11_map_entry *e = *pp;
    void *value = e->value;
    *pp = e->next;
    free(e);
    m->count--;
    return value;
}

void p11_map_each(p11_map *m, void (*fn)(void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (p11_map_entry *e = m->buckets[i]; e != NULL; e = e->next)
            fn(e->value, arg);
}
