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

typedef struct slot {
    uint64_t generation; /* 0: empty (generations start at 1) */
    uint64_t last_used;  /* the set's clock when last read or written: the oldest is replaced */
    uint64_t hash;
    size_t len;
    uint8_t key[DECISION_KEY_MAX];
    bool allowed, explicit_deny, duty_conflict;
    long statement;
    char sid[POLICY_SID_MAX + 1];
} slot;

typedef struct set {
    uint64_t clock;
    slot ways[DECISION_CACHE_WAYS];
} set;

struct decision_cache {
    pthread_mutex_t locks[STRIPES];
    set sets[DECISION_CACHE_SETS];
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

decision_cache *decision_cache_new(void)
{
    decision_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    sync_obj locks[STRIPES];
    for (int i = 0; i < STRIPES; i++)
        locks[i] = (sync_obj){SYNC_MUTEX, &c->locks[i], "a decision cache lock"};
    p11kms_error err = {0};
    if (sync_init_all(locks, STRIPES, &err) != P11KMS_OK) {
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
    free(c);
}

size_t decision_cache_set_of(const decision_key *k)
{
    return (size_t)(k->hash % DECISION_CACHE_SETS);
}

static bool slot_holds(const slot *s, uint64_t generation, const decision_key *k)
{
    return s->generation == generation && s->hash == k->hash && s->len == k->len &&
           memcmp(s->key, k->bytes, k->len) == 0;
}

bool decision_cache_get(decision_cache *c, uint64_t generation, const decision_key *k,
                        policy_decision *out)
{
    if (c == NULL || !k->usable || generation == 0)
        return false;
    size_t i = decision_cache_set_of(k);
    pthread_mutex_t *lock = &c->locks[i % STRIPES];
    pthread_mutex_lock(lock);
    set *st = &c->sets[i];
    slot *s = NULL;
    for (int w = 0; w < DECISION_CACHE_WAYS && s == NULL; w++)
        if (slot_holds(&st->ways[w], generation, k))
            s = &st->ways[w];
    if (s != NULL) {
        s->last_used = ++st->clock;
        memset(out, 0, sizeof(*out));
        out->allowed = s->allowed;
        out->explicit_deny = s->explicit_deny;
        out->duty_conflict = s->duty_conflict;
        out->statement = s->statement;
        memcpy(out->sid, s->sid, sizeof(out->sid));
    }
    pthread_mutex_unlock(lock);
    atomic_fetch_add_explicit(s != NULL ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return s != NULL;
}

/* Where a decision for k goes in st: the slot already holding k, else an empty slot or one of an
 * older policy generation, else the least recently used. */
static slot *slot_for(set *st, uint64_t generation, const decision_key *k)
{
    slot *victim = &st->ways[0];
    for (int w = 0; w < DECISION_CACHE_WAYS; w++) {
        slot *s = &st->ways[w];
        if (slot_holds(s, generation, k))
            return s;
        bool s_free = s->generation != generation, victim_free = victim->generation != generation;
        if ((s_free && !victim_free) || (s_free == victim_free && s->last_used < victim->last_used))
            victim = s;
    }
    return victim;
}

void decision_cache_put(decision_cache *c, uint64_t generation, const decision_key *k,
                        const policy_decision *d)
{
    if (c == NULL || !k->usable || generation == 0 || d->waiver)
        return;
    size_t i = decision_cache_set_of(k);
    pthread_mutex_t *lock = &c->locks[i % STRIPES];
    pthread_mutex_lock(lock);
    set *st = &c->sets[i];
    slot *s = slot_for(st, generation, k);
    s->generation = generation;
    s->last_used = ++st->clock;
    s->hash = k->hash;
    s->len = k->len;
    memcpy(s->key, k->bytes, k->len);
    s->allowed = d->allowed;
    s->explicit_deny = d->explicit_deny;
    s->duty_conflict = d->duty_conflict;
    s->statement = d->statement;
    memcpy(s->sid, d->sid, sizeof(s->sid));
    pthread_mutex_unlock(lock);
}

void decision_cache_stats(decision_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c != NULL ? atomic_load(&c->hits) : 0;
    *misses = c != NULL ? atomic_load(&c->misses) : 0;
}
