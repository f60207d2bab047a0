/* The audit trail: one record per request, hash-chained, sealed with an HMAC key held in the
 * token, written with group commit. See doc/audit.md for the format. Internal to the provider. */
#ifndef P11KMS_PROVIDER_AUDIT_H
#define P11KMS_PROVIDER_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "p11kms.h"
#include "common/hex.h"
#include "pkcs11/hmac.h"
#include "provider/service.h"

struct policy_decision;
typedef struct audit_log audit_log;

#define AUDIT_SID_MAX 128
#define AUDIT_WAIVER_MAX 256
#define AUDIT_HASH_LEN 32
#define AUDIT_KEY_LEN 32      /* bytes of the audit HMAC key */
#define AUDIT_CHAIN_ID_LEN 16 /* random, drawn when a log starts: names its checkpoint */
/* The CKA_ID and label of the audit key, and the label prefix of the checkpoint objects of
 * earlier versions (now in the store: audit-checkpoint.c). */
#define AUDIT_KEY_ID "p11kms-audit-key-v1"
#define AUDIT_CHECKPOINT_LABEL "p11kms-audit-checkpoint"

/* One request in flight on this thread, from its public entry to its answer. */
typedef struct audit_req {
    p11kms *svc;
    const char *event; /* CloudTrail eventName, e.g. "Encrypt" */
    const p11kms_principal *who;
    const char *key_ref; /* as the caller wrote it (may be NULL) */
    const p11kms_context *ctx;
    const char *dest_key_ref; /* ReEncrypt, CreateAlias/UpdateAlias target */
    const p11kms_context *dest_ctx;
    bool nested; /* a public operation called by another: the outer one records */
    struct audit_req *outer;
    /* filled by the gate */
    unsigned decisions;
    bool denied;
    bool waiver;
    char sid[AUDIT_SID_MAX];
    char waiver_reason[AUDIT_WAIVER_MAX];
    char key_id[P11KMS_KEY_ID_LEN + 1];      /* first key the gate decided on */
    char dest_key_id[P11KMS_KEY_ID_LEN + 1]; /* second one (ReEncrypt) */
    /* filled by the operation's wrapper */
    uint32_t key_version;
    char created_key_id[P11KMS_KEY_ID_LEN + 1];
} audit_req;

/* Starts the record of a public operation (no-op when the service has no audit log). */
void audit_begin(audit_req *a, p11kms *svc, const char *event, const p11kms_principal *who,
                 const char *key_ref, const p11kms_context *ctx);
/* Writes the record (waiting for it to be durable) and returns the operation's answer: rc, or
 * P11KMS_E_INTERNAL when the record could not be written and audit.on-failure is refuse. */
P11KMS_MUST_CHECK p11kms_err audit_end(audit_req *a, p11kms_err rc, p11kms_error *err);
/* Whether audit_end refused the operation that succeeded (the caller then discards outputs). */
static inline bool audit_refused(p11kms_err before, p11kms_err after)
{
    return before == P11KMS_OK && after != P11KMS_OK;
}
/* Called by the gate for every decision of the request this thread is running. dest_key: the
 * decision was about the destination key of a re-encrypt (key_id goes to its own resource). */
void audit_note_decision(bool dest_key, bool allowed, const char *sid, bool waiver,
                         const char *waiver_reason, const char *key_id);

/* --- the log (audit-chain.c) ---------------------------------------------------------------- */

P11KMS_MUST_CHECK p11kms_err audit_log_open(p11kms *svc, audit_log **out, p11kms_error *err);
/* Flushes, writes a checkpoint, stops the writer. NULL is a no-op. */
void audit_log_close(audit_log *log);
/* Appends one record body (JSON members without braces) and waits until it is durable. */
P11KMS_MUST_CHECK p11kms_err audit_log_write(audit_log *log, const char *body, p11kms_error *err);
bool audit_log_refuses(const audit_log *log);

/* --- the chain and its MACs (audit-record.c) ------------------------------------------------ */

void audit_hash_line(const char *line, size_t len, uint8_t out[AUDIT_HASH_LEN]);
/* HMAC input of a seal or checkpoint:
 * domain || 0x00 || chain id (16 bytes) || seq (8 bytes big-endian) || hash (32 bytes). */
size_t audit_mac_input(const char *domain, const uint8_t chain[AUDIT_CHAIN_ID_LEN], uint64_t seq,
                       const uint8_t hash[AUDIT_HASH_LEN], uint8_t *out);
#define AUDIT_SEAL_DOMAIN "p11kms-audit-seal-v1"
#define AUDIT_CHECKPOINT_DOMAIN "p11kms-audit-checkpoint-v1"
#define AUDIT_MAC_INPUT_MAX 128
/* The audit key, created in the token on first use. */
P11KMS_MUST_CHECK p11kms_err audit_key_get(p11_token *t, bool create, p11_key **out,
                                           p11kms_error *err);

/* --- the checkpoint (audit-checkpoint.c): where the last sealed state is kept --------------- */

typedef struct audit_checkpoint {
    uint8_t chain[AUDIT_CHAIN_ID_LEN];
    uint64_t seq;                 /* last record sealed */
    uint8_t hash[AUDIT_HASH_LEN]; /* hash of the seal line after it */
    uint8_t mac[P11_HMAC_SHA256_LEN];
    int64_t time; /* when written (seconds since the epoch) */
} audit_checkpoint;

P11KMS_MUST_CHECK p11kms_err audit_checkpoint_store(p11kms *svc, const audit_checkpoint *c,
                                                    p11kms_error *err);
/* The checkpoint of chain c->chain; NOT_FOUND when there is none yet. */
P11KMS_MUST_CHECK p11kms_err audit_checkpoint_load(p11kms *svc, audit_checkpoint *c,
                                                   p11kms_error *err);
/* Moves checkpoints an earlier version kept in token data objects into the store. */
P11KMS_MUST_CHECK p11kms_err audit_checkpoint_migrate(p11kms *svc, p11kms_error *err);

#endif
