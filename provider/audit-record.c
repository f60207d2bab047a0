/* The byte-level pieces of the audit chain: line hashes, MAC inputs, the audit key. */
#include "config.h"

#include <string.h>

#include <openssl/sha.h>

#include "provider/audit.h"

void audit_hash_line(const char *line, size_t len, uint8_t out[AUDIT_HASH_LEN])
{
    SHA256((const unsigned char *)line, len, out);
}

size_t audit_mac_input(const char *domain, const uint8_t chain[AUDIT_CHAIN_ID_LEN], uint64_t seq,
                       const uint8_t hash[AUDIT_HASH_LEN], uint8_t *out)
{
    size_t n = strlen(domain);
    memcpy(out, domain, n);
    out[n++] = 0;
    memcpy(out + n, chain, AUDIT_CHAIN_ID_LEN);
    n += AUDIT_CHAIN_ID_LEN;
    for (int i = 7; i >= 0; i--)
        out[n++] = (uint8_t)(seq >> (8 * i));
    memcpy(out + n, hash, AUDIT_HASH_LEN);
    return n + AUDIT_HASH_LEN;
}

p11kms_err audit_key_get(p11_token *t, bool create, p11_key **out, p11kms_error *err)
{
    const uint8_t *id = (const uint8_t *)AUDIT_KEY_ID;
    size_t id_len = strlen(AUDIT_KEY_ID);
    p11kms_error first = {0};
    p11kms_err rc = p11_hmac_find(t, id, id_len, out, &first);
    if (rc != P11KMS_E_NOT_FOUND || !create) {
        if (rc != P11KMS_OK && err != NULL)
            *err = first;
        return rc;
    }
    rc = p11_hmac_generate(t, id, id_len, AUDIT_KEY_ID, AUDIT_KEY_LEN, out, err);
    if (rc == P11KMS_E_ALREADY_EXISTS) /* another process created it meanwhile */
        rc = p11_hmac_find(t, id, id_len, out, err);
    return rc;
}
