/* Key metadata: the record p11kms keeps in the token for each key (see doc/token-layout.md). */
#ifndef P11KMS_PROVIDER_KEYMETA_H
#define P11KMS_PROVIDER_KEYMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/uuid.h"
#include "p11kms.h"

#define KEY_UUID_LEN UUID_LEN
_Static_assert(P11KMS_KEY_ID_LEN == UUID_TEXT_LEN, "key ids are UUIDs in text form");

typedef enum rotation_type {
    ROTATION_INITIAL,
    ROTATION_AUTOMATIC,
    ROTATION_ON_DEMAND
} rotation_type;

typedef struct key_version {
    uint32_t number;
    int64_t created;
    rotation_type type;
    /* Encryptions reserved under this version by all processes together (batches); an upper
     * bound of the encryptions actually made. */
    uint64_t reserved;
} key_version;

/* Imported key material (origin EXTERNAL): whether and when it expires. */
typedef enum expiration_model {
    EXPIRATION_NONE = 0, /* no material imported yet, or origin AWS_KMS */
    EXPIRATION_EXPIRES,
    EXPIRATION_DOES_NOT_EXPIRE
} expiration_model;

/* IV, GCM ciphertext of a fixed label and tag (provider/import.c). */
#define KEYMETA_KCV_MAX 64

typedef struct key_meta {
    /* What every Encrypt reads comes first, to share the first two cache lines of its snapshot
     * with the reference count (provider/service.h); fields read only in some states follow. */
    p11kms_key_state state; /* never UNAVAILABLE in the token */
    p11kms_key_origin origin;
    bool rotation_enabled;
    expiration_model expiration; /* imported material (doc/import.md) */
    key_version *versions;       /* ascending; the last is current */
    size_t version_count;
    char **aliases; /* "alias/NAME" */
    size_t alias_count;
    uint8_t id[KEY_UUID_LEN];
    char id_text[P11KMS_KEY_ID_LEN + 1];
    int64_t deletion_date;
    int64_t next_rotation;
    int64_t valid_to; /* EXPIRATION_EXPIRES only, else 0 */
    char *description;
    int64_t created;
    unsigned pending_window_days;
    unsigned rotation_period_days;
    p11kms_tag *tags; /* owned strings */
    size_t tag_count;
    /* The store's row version this record was read at (0: not read from the store); not part
     * of the encoded record, but of its MAC (provider/keystore.c). */
    uint64_t row_version;
    /* The check value that lets a key whose imported material was deleted accept only the same
     * material again. */
    uint8_t material_kcv[KEYMETA_KCV_MAX];
    size_t material_kcv_len; /* 0: no material ever imported */
} key_meta;

/* Serialized form stored in the token (a JSON object, version 1). */
p11kms_err keymeta_encode(const key_meta *m, char **out, size_t *len, p11kms_error *err);
/* Strict: unknown fields, wrong types, bad ids or impossible values are refused
 * (P11KMS_E_INTERNAL: the token holds a record p11kms did not write). */
p11kms_err keymeta_decode(const uint8_t *data, size_t len, key_meta **out, p11kms_error *err);
key_meta *keymeta_clone(const key_meta *m);
void keymeta_free(key_meta *m);
/* Frees what m owns, not m itself (a record embedded in another structure). */
void keymeta_clear(key_meta *m);

const key_version *keymeta_current(const key_meta *m);
const key_version *keymeta_version(const key_meta *m, uint32_t number);
bool keymeta_has_alias(const key_meta *m, const char *alias);
/* Each returns false on allocation failure. */
bool keymeta_add_alias(key_meta *m, const char *alias);
void keymeta_remove_alias(key_meta *m, const char *alias);
bool keymeta_set_tag(key_meta *m, const char *key, const char *value);
void keymeta_remove_tag(key_meta *m, const char *key);
bool keymeta_add_version(key_meta *m, uint32_t number, int64_t created, rotation_type type);
bool keymeta_set_description(key_meta *m, const char *description);

const char *rotation_type_name(rotation_type t);
/* "KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE", or NULL for EXPIRATION_NONE. */
const char *expiration_model_name(expiration_model e);

/* UUID text <-> 16 bytes; text is lower-case canonical 8-4-4-4-12. */

#endif
