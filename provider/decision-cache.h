/* A bounded cache of policy decisions for the hot path: a decision depends only on the policy
 * (its generation), the principal set, the action, the key (id and aliases) and the encryption
 * context(s), so the same request under the same policy is decided once. */
#ifndef P11KMS_PROVIDER_DECISION_CACHE_H
#define P11KMS_PROVIDER_DECISION_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

/* Entries of the cache: sets of DECISION_CACHE_WAYS, a full set replacing its least recently used
 * entry. Direct-mapped, 300 keys used at random missed 12.5 % of the time (two keys sharing a
 * slot evict each other); four ways miss under 1 %. The number of entries is a power of two from
 * DECISION_CACHE_MIN_SLOTS to DECISION_CACHE_MAX_SLOTS (whatever the configuration asks), sized by
 * the caller for the keys it expects to keep hot. */
#define DECISION_CACHE_MIN_SLOTS 1024
#define DECISION_CACHE_MAX_SLOTS 16384
#define DECISION_CACHE_WAYS 4
/* Requests whose key would be longer are decided every time, never cached. */
#define DECISION_KEY_MAX 448

/* Everything policy_evaluate reads, serialized with lengths (no two requests share bytes). */
typedef struct decision_key {
    uint8_t bytes[DECISION_KEY_MAX];
    size_t len;
    uint64_t hash;
    bool usable; /* false: too long to cache */
} decision_key;

void decision_key_build(decision_key *k, policy_action action, const policy_principals *who,
                        const char *key_id, const char *const *aliases, size_t alias_count,
                        const policy_context *ctx, const policy_context *ctx2);

typedef struct decision_cache decision_cache;

/* The number of entries a cache asked for wanted_slots gets. */
size_t decision_cache_slots_for(size_t wanted_slots);
decision_cache *decision_cache_new(size_t wanted_slots);
size_t decision_cache_slots(const decision_cache *c);
void decision_cache_free(decision_cache *c);
/* A hit fills out with the cached decision, except its explanation (not kept: empty) and its sid
 * (empty: the caller names it with policy_statement_sid from the policy of that generation). */
bool decision_cache_get(decision_cache *c, uint64_t generation, const decision_key *k,
                        policy_decision *out);
/* Keeps d for (generation, k); decisions under a waiver are not kept (their reason is long), nor
 * those of a statement index beyond 32 bits. */
void decision_cache_put(decision_cache *c, uint64_t generation, const decision_key *k,
                        const policy_decision *d);
void decision_cache_stats(decision_cache *c, uint64_t *hits, uint64_t *misses);
/* The set a request's decision is kept in (for tests that fill one set). */
size_t decision_cache_set_of(const decision_cache *c, const decision_key *k);

#endif
