#include "config.h"

#include "provider/decision-cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/hashmap.h"
#include "common/threads.h"

/* Sets are guarded by striped locks: threads deciding different requests rarely meet. */
#define STRIPES 64

/* A lookup reads one set's tags (one cache line) and only the body of a way whose hash matches:
 * with thousands of keys used at random nearly every lookup finds its set cold in the CPU caches,
 * and reading the four ways' bodies to find the match cost four more misses. */
typedef struct set_tags {
    _Alignas(64) uint64_t hash[DECISION_CACHE_WAYS];
    /* The set's clock when each way was last read or written: the oldest is replaced. 32 bits
     * keep the tags in one line; when a set's clock wraps, replacement picks a wrong victim for
     * a while (a miss more), never a wrong decision. */
    uint32_t last_used[DECISION_CACHE_WAYS];
    uint32_t clock;
} set_tags;

/* The fields a hit reads come first and the request right after them, each body on its own
 * cache lines: a ~100-byte request is then compared in two lines. The deciding statement's sid
 * is not kept: the caller names it from the policy of the same generation (decision-cache.h),
 * whose few statements stay in the CPU caches while a slot per key would not. */
typedef struct slot_body {
    _Alignas(64) uint64_t generation; /* 0: empty (generations start at 1) */
    int32_t statement;
    uint16_t len;
    bool allowed, explicit_deny, duty_conflict;
    uint8_t key[DECISION_KEY_MAX]; /* last: only len bytes of it are read */
} slot_body;
_Static_assert(DECISION_KEY_MAX <= UINT16_MAX, "a slot keeps its key's length in 16 bits");

struct decision_cache {
    pthread_mutex_t locks[STRIPES];
    size_t set_count;  /* a power of two */
    set_tags *tags;    /* set_count sets */
    void *tags_mem;    /* what tags was aligned in */
    slot_body *bodies; /* set_count * DECISION_CACHE_WAYS, read through body_of */
    void *bodies_mem;  /* what bodies was aligned in */
    _Atomic uint64_t hits, misses;
};

static void put_bytes(decision_key *k, const void *p, size_t n)
{
    if (!k->usable || n > DECISION_KEY_MAX - k->len) {
        k->usable = false;
        return;
    }
    if (n > 0) /* p may be NULL for an absent (empty) string */
        memcpy(k->bytes + k->len, p, n);
    k->len += n;
}

/* A string as u16 length || bytes. */
static void put_str(decision_key *k, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n > 0xffff) {
        k->usable = false;
        return;
    }
    uint8_t len[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    put_bytes(k, len, 2);
    put_bytes(k, s, n);
}

static void put_count(decision_key *k, size_t n)
{
    uint8_t b[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    if (n > 0xffffffffu)
        k->usable = false;
    put_bytes(k, b, 4);
}

static void put_context(decision_key *k, const policy_context *c)
{
    /* NULL and an empty context decide alike in policy_evaluate (the gate passes NULL for
     * both), but keep them apart anyway: 0xffffffff marks NULL. */
    if (c == NULL) {
        put_count(k, 0xffffffffu);
        return;
    }
    put_count(k, c->count);
    for (size_t i = 0; i < c->count; i++) {
        put_str(k, c->pairs[i].key);
        put_str(k, c->pairs[i].value);
    }
}

void decision_key_build(decision_key *k, policy_action action, const policy_principals *who,
                        const char *key_id, const char *const *aliases, size_t alias_count,
                        const policy_context *ctx, const policy_context *ctx2)
{
    k->len = 0;
    k->usable = true;
    put_count(k, (size_t)action);
    put_count(k, who->count);
    for (size_t i = 0; i < who->count; i++)
        put_str(k, who->names[i]);
    uint8_t has_key = key_id != NULL;
    put_bytes(k, &has_key, 1);
    put_str(k, key_id);
    put_count(k, alias_count);
    for (size_t i = 0; i < alias_count; i++)
        put_str(k, aliases[i]);
    put_context(k, ctx);
    put_context(k, ctx2);
    /* An index, not a check (slots compare the whole key). */
    k->hash = k->usable ? hash_bytes(k->bytes, k->len) : 0;
}

size_t decision_cache_slots_for(size_t wanted)
{
    size_t slots = DECISION_CACHE_MIN_SLOTS;
    while (slots < wanted && slots < DECISION_CACHE_MAX_SLOTS)
        slots *= 2;
    return slots;
}

/* Zeroed memory aligned by hand in a calloc: a large calloc gets zeroed pages from the system
 * lazily, where aligned_alloc + memset would write them all at every open (the tags of 16,384
 * slots are 256 KiB, the bodies megabytes). *mem is what to free. */
static void *calloc_aligned(size_t size, size_t align, void **mem)
{
    *mem = calloc(size + align - 1, 1);
    if (*mem == NULL)
        return NULL;
    return (void *)(((uintptr_t)*mem + align - 1) & ~(uintptr_t)(align - 1));
}

decision_cache *decision_cache_new(size_t wanted_slots)
{
    decision_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->set_count = decision_cache_slots_for(wanted_slots) / DECISION_CACHE_WAYS;
    c->tags = calloc_aligned(c->set_count * sizeof(*c->tags), _Alignof(set_tags), &c->tags_mem);
    c->bodies = calloc_aligned(c->set_count * DECISION_CACHE_WAYS * sizeof(*c->bodies),
                               _Alignof(slot_body), &c->bodies_mem);
    sync_obj locks[STRIPES];
    for (int i = 0; i < STRIPES; i++)
        locks[i] = (sync_obj){SYNC_MUTEX, &c->locks[i], "a decision cache lock"};
    p11kms_error err = {0};
    if (c->tags == NULL || c->bodies == NULL || sync_init_all(locks, STRIPES, &err) != P11KMS_OK) {
        free(c->tags_mem);
        free(c->bodies_mem);
        free(c); /* the caller reports it as out of memory, as for calloc */
        return NULL;
    }
    atomic_init(&c->hits, 0);
    atomic_init(&c->misses, 0);
    return c;
}

void decision_cache_free(decision_cache *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->locks[i]);
    free(c->tags_mem);
    free(c->bodies_mem);
    free(c);
}

size_t decision_cache_slots(const decision_cache *c)
{
    return c->set_count * DECISION_CACHE_WAYS;
}

size_t decision_cache_set_of(const decision_cache *c, const decision_key *k)
{
    return (size_t)(k->hash & (c->set_count - 1));
}

/* Way w of set i. */
static slot_body *body_of(const decision_cache *c, size_t i, int w)
{
    return &c->bodies[i * DECISION_CACHE_WAYS + (size_t)w];
}

static bool body_holds(const slot_body *b, uint64_t generation, const decision_key *k)
{
    return b->generation == generation && b->len == k->len && memcmp(b->key, k->bytes, k->len) == 0;
}

/* The way of set i holding k under generation, or -1. */
static int find_way(const decision_cache *c, size_t i, uint64_t generation, const decision_key *k)
{
    const set_tags *t = &c->tags[i];
    for (int w = 0; w < DECISION_CACHE_WAYS; w++)
        if (t->hash[w] == k->hash && body_holds(body_of(c, i, w), generation, k))
            return w;
    return -1;
}

bool decision_cache_get(decision_cache *c, uint64_t generation, const decision_key *k,
                        policy_decision *out)
{
    if (c == NULL || !k->usable || generation == 0)
        return false;
    size_t i = decision_cache_set_of(c, k);
    pthread_mutex_t *lock = &c->locks[i % STRIPES];
    pthread_mutex_lock(lock);
    int w = find_way(c, i, generation, k);
    if (w >= 0) {
        set_tags *t = &c->tags[i];
        t->last_used[w] = ++t->clock;
        const slot_body *b = body_of(c, i, w);
        memset(out, 0, sizeof(*out));
        out->allowed = b->allowed;
        out->explicit_deny = b->explicit_deny;
        out->duty_conflict = b->duty_conflict;
        out->statement = b->statement;
    }
    pthread_mutex_unlock(lock);
    atomic_fetch_add_explicit(w >= 0 ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return w >= 0;
}

/* Where a decision for k goes in set i: the way already holding k, else an empty way or one of
 * an older policy generation, else the least recently used. */
static int way_for(const decision_cache *c, size_t i, uint64_t generation, const decision_key *k)
{
    int held = find_way(c, i, generation, k);
    if (held >= 0)
        return held;
    const set_tags *t = &c->tags[i];
    const slot_body *b = body_of(c, i, 0);
    int victim = 0;
    for (int w = 1; w < DECISION_CACHE_WAYS; w++) {
        bool w_free = b[w].generation != generation,
             victim_free = b[victim].generation != generation;
        if ((w_free && !victim_free) ||
            (w_free == victim_free && t->last_used[w] < t->last_used[victim]))
            victim = w;
    }
    return victim;
}

void decision_cache_put(decision_cache *c, uint64_t generation, const decision_key *k,
                        const policy_decision *d)
{
    if (c == NULL || !k->usable || generation == 0 || d->waiver || d->statement > INT32_MAX ||
        d->statement < -1)
        return;
    size_t i = decision_cache_set_of(c, k);
    pthread_mutex_t *lock = &c->locks[i % STRIPES];
    pthread_mutex_lock(lock);
    int w = way_for(c, i, generation, k);
    set_tags *t = &c->tags[i];
    slot_body *b = body_of(c, i, w);
    t->hash[w] = k->hash;
    t->last_used[w] = ++t->clock;
    b->generation = generation;
    b->len = (uint16_t)k->len;
    memcpy(b->key, k->bytes, k->len);
    b->allowed = d->allowed;
    b->explicit_deny = d->explicit_deny;
    b->duty_conflict = d->duty_conflict;
    b->statement = (int32_t)d->statement;
    pthread_mutex_unlock(lock);
}

void decision_cache_stats(decision_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c != NULL ? atomic_load(&c->hits) : 0;
    *misses = c != NULL ? atomic_load(&c->misses) : 0;
}
