/* Where the audit checkpoint lives: a token data object on this version. Kept behind two
 * functions so it can move to the key store (with its row MAC) without touching the writer or
 * the verifier. The value is text: "SEQ HASH MAC TIME\n" (hex), the MAC checked by the reader. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/audit.h"

static void label_of(const audit_checkpoint *c, char *out, size_t out_size)
{
    char chain[2 * AUDIT_CHAIN_ID_LEN + 1];
    audit_hex(c->chain, AUDIT_CHAIN_ID_LEN, chain);
    snprintf(out, out_size, "%s-%s", AUDIT_CHECKPOINT_LABEL, chain);
}

p11kms_err audit_checkpoint_store(p11_token *t, const audit_checkpoint *c, p11kms_error *err)
{
    char label[sizeof(AUDIT_CHECKPOINT_LABEL) + 2 * AUDIT_CHAIN_ID_LEN + 2];
    label_of(c, label, sizeof(label));
    char hash[2 * AUDIT_HASH_LEN + 1], mac[2 * P11_HMAC_SHA256_LEN + 1], text[256];
    audit_hex(c->hash, AUDIT_HASH_LEN, hash);
    audit_hex(c->mac, P11_HMAC_SHA256_LEN, mac);
    int n =
        snprintf(text, sizeof(text), "%" PRIu64 " %s %s %" PRId64 "\n", c->seq, hash, mac, c->time);
    p11kms_error first = {0};
    p11kms_err rc = p11_data_write(t, label, (const uint8_t *)text, (size_t)n, &first);
    if (rc == P11KMS_E_NOT_FOUND)
        return p11_data_create(t, label, (const uint8_t *)text, (size_t)n, err);
    if (rc != P11KMS_OK && err != NULL)
        *err = first;
    return rc;
}

p11kms_err audit_checkpoint_load(p11_token *t, audit_checkpoint *c, p11kms_error *err)
{
    char label[sizeof(AUDIT_CHECKPOINT_LABEL) + 2 * AUDIT_CHAIN_ID_LEN + 2];
    label_of(c, label, sizeof(label));
    uint8_t *value = NULL;
    size_t len = 0;
    p11kms_err rc = p11_data_read(t, label, &value, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    char text[256], hash[2 * AUDIT_HASH_LEN + 2], mac[2 * P11_HMAC_SHA256_LEN + 2];
    bool ok = len < sizeof(text);
    if (ok) {
        memcpy(text, value, len);
        text[len] = '\0';
        ok = sscanf(text, "%" SCNu64 " %65s %65s %" SCNd64, &c->seq, hash, mac, &c->time) == 4 &&
             audit_unhex(hash, c->hash, AUDIT_HASH_LEN) &&
             audit_unhex(mac, c->mac, P11_HMAC_SHA256_LEN);
    }
    free(value);
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "the audit checkpoint object is malformed");
    return P11KMS_OK;
}
