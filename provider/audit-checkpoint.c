/* Where the audit checkpoint lives: a row of the key store (table audit_checkpoints, named by the
 * chain id), authenticated by the token's integrity key like every row, so that neither the
 * log's writer nor the database's administrator can roll it back or edit it without the token.
 * The value is text: "SEQ HASH MAC TIME\n" (hex), its MAC (the audit key's) checked by the
 * verifier. Earlier versions kept it in a token data object; audit_checkpoint_migrate moves
 * such objects into the store. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/audit.h"
#include "provider/keystore.h"

#define CHECKPOINT_TEXT_MAX 256

static void chain_name(const uint8_t chain[AUDIT_CHAIN_ID_LEN], char *out)
{
    hex_encode(chain, AUDIT_CHAIN_ID_LEN, out);
}

static int format(const audit_checkpoint *c, char text[CHECKPOINT_TEXT_MAX])
{
    char hash[2 * AUDIT_HASH_LEN + 1], mac[2 * P11_HMAC_SHA256_LEN + 1];
    hex_encode(c->hash, AUDIT_HASH_LEN, hash);
    hex_encode(c->mac, P11_HMAC_SHA256_LEN, mac);
    return snprintf(text, CHECKPOINT_TEXT_MAX, "%" PRIu64 " %s %s %" PRId64 "\n", c->seq, hash, mac,
                    c->time);
}

static bool parse(const uint8_t *value, size_t len, audit_checkpoint *c)
{
    char text[CHECKPOINT_TEXT_MAX], hash[2 * AUDIT_HASH_LEN + 2], mac[2 * P11_HMAC_SHA256_LEN + 2];
    if (len >= sizeof(text))
        return false;
    memcpy(text, value, len);
    text[len] = '\0';
    return sscanf(text, "%" SCNu64 " %65s %65s %" SCNd64, &c->seq, hash, mac, &c->time) == 4 &&
           hex_decode_str(hash, c->hash, AUDIT_HASH_LEN, HEX_LOWER_ONLY) &&
           hex_decode_str(mac, c->mac, P11_HMAC_SHA256_LEN, HEX_LOWER_ONLY);
}

p11kms_err audit_checkpoint_store(p11kms *svc, const audit_checkpoint *c, p11kms_error *err)
{
    char name[2 * AUDIT_CHAIN_ID_LEN + 1], text[CHECKPOINT_TEXT_MAX];
    chain_name(c->chain, name);
    int n = format(c, text);
    return keystore_audit_write(svc, name, text, (size_t)n, err);
}

/* The data object label an earlier version used: "p11kms-audit-checkpoint-CHAIN". */
#define LEGACY_LABEL_MAX (sizeof(AUDIT_CHECKPOINT_LABEL) + 2 * AUDIT_CHAIN_ID_LEN + 2)

static void legacy_label(const uint8_t chain[AUDIT_CHAIN_ID_LEN], char out[LEGACY_LABEL_MAX])
{
    char hex[2 * AUDIT_CHAIN_ID_LEN + 1];
    chain_name(chain, hex);
    snprintf(out, LEGACY_LABEL_MAX, "%s-%s", AUDIT_CHECKPOINT_LABEL, hex);
}

p11kms_err audit_checkpoint_load(p11kms *svc, audit_checkpoint *c, p11kms_error *err)
{
    char name[2 * AUDIT_CHAIN_ID_LEN + 1];
    chain_name(c->chain, name);
    uint8_t *value = NULL;
    size_t len = 0;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_audit_read(svc, name, &value, &len, &probe);
    if (rc == P11KMS_E_NOT_FOUND) {
        /* Not migrated yet (a process of an earlier version still writes the log). */
        char label[LEGACY_LABEL_MAX];
        legacy_label(c->chain, label);
        rc = p11_data_read(svc->token, label, &value, &len, &probe);
    }
    if (rc != P11KMS_OK) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    bool ok = parse(value, len, c);
    free(value);
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "the audit checkpoint of chain %s is malformed",
                            name);
    return P11KMS_OK;
}

typedef struct migration {
    p11kms *svc;
    char (*labels)[LEGACY_LABEL_MAX];
    size_t count;
    p11kms_err rc;
    p11kms_error *err;
} migration;

static int migrate_one(const char *label, const uint8_t *value, size_t len, void *arg)
{
    migration *m = arg;
    size_t prefix = strlen(AUDIT_CHECKPOINT_LABEL) + 1;
    audit_checkpoint old = {0}, now = {0};
    if (strlen(label) != prefix + 2 * AUDIT_CHAIN_ID_LEN ||
        !hex_decode_str(label + prefix, old.chain, AUDIT_CHAIN_ID_LEN, HEX_LOWER_ONLY) ||
        !parse(value, len, &old))
        return 0; /* not one of ours: left alone */
    char name[2 * AUDIT_CHAIN_ID_LEN + 1];
    chain_name(old.chain, name);
    uint8_t *stored = NULL;
    size_t stored_len = 0;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_audit_read(m->svc, name, &stored, &stored_len, &probe);
    /* The store's row wins when it is as new (a process of this version wrote it since). */
    bool newer = rc == P11KMS_OK && parse(stored, stored_len, &now) && now.seq >= old.seq;
    free(stored);
    if (!newer)
        m->rc = audit_checkpoint_store(m->svc, &old, m->err);
    if (m->rc != P11KMS_OK)
        return 1;
    char(*labels)[LEGACY_LABEL_MAX] = realloc(m->labels, (m->count + 1) * sizeof(*labels));
    if (labels == NULL) {
        m->rc = P11KMS_RAISE(m->err, P11KMS_E_NO_MEMORY, "out of memory");
        return 1;
    }
    m->labels = labels;
    snprintf(m->labels[m->count++], LEGACY_LABEL_MAX, "%s", label);
    return 0;
}

p11kms_err audit_checkpoint_migrate(p11kms *svc, p11kms_error *err)
{
    migration m = {.svc = svc, .err = err};
    p11kms_err rc = p11_data_list(svc->token, AUDIT_CHECKPOINT_LABEL, migrate_one, &m, err);
    if (rc == P11KMS_OK)
        rc = m.rc;
    /* Deleted only once every one is in the store: a failure leaves them to the next start. */
    for (size_t i = 0; rc == P11KMS_OK && i < m.count; i++) {
        p11kms_error ignored = {0};
        if (p11_data_delete(svc->token, m.labels[i], &ignored) == P11KMS_OK)
            fprintf(stderr, "p11kms: audit: checkpoint %s moved from the token to the store\n",
                    m.labels[i]);
    }
    free(m.labels);
    return rc;
}
