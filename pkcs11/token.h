/* Token layer: everything p11kms asks of a PKCS#11 module goes through here.
 *
 * Nothing outside pkcs11/ touches a CK_FUNCTION_LIST. Every function is thread-safe. Errors are
 * raised in the project's currency; when a PKCS#11 call failed, err->ckr holds its CKR_* value
 * and the message names it in words. */
#ifndef P11KMS_PKCS11_TOKEN_H
#define P11KMS_PKCS11_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>
#include <p11-kit/pkcs11.h>

#include "p11kms-error.h"

#define P11_GCM_IV_LEN 12
#define P11_GCM_TAG_LEN 16
#define P11_AES256_KEY_LEN 32

/* Who chooses the GCM IV. HOST: p11kms passes a fresh random IV. TOKEN: the token generates
 * it (FIPS-mode HSMs); p11kms passes a zeroed IV buffer and keeps whatever IV the token used. */
typedef enum p11_iv_mode { P11_IV_HOST = 0, P11_IV_TOKEN = 1 } p11_iv_mode;

/* CK_GCM_PARAMS layout: V240 has ulIvBits (PKCS#11 v2.40 errata, p11-kit, SoftHSM); LEGACY is
 * the older vendor layout {pIv, ulIvLen, pAAD, ulAADLen, ulTagBits}. */
typedef enum p11_gcm_layout { P11_GCM_V240 = 0, P11_GCM_LEGACY = 1 } p11_gcm_layout;

typedef enum p11_rng_source { P11_RNG_TOKEN = 0, P11_RNG_OPENSSL = 1 } p11_rng_source;

typedef struct p11_token_config {
    /* Absolute path of a module, or the name of a module registered in p11-kit's
     * configuration (so that its options, e.g. x-init-reserved, apply). */
    const char *module;
    /* A string C_Initialize passes to a module given by path, in CK_C_INITIALIZE_ARGS.pReserved
     * (NSS softokn takes its database parameters there); NULL for none. A module named in
     * p11-kit's configuration takes it from there instead (x-init-reserved). */
    const char *module_args;
    /* RFC 7512 URI selecting exactly one token (token, serial, manufacturer, model, slot-id). */
    const char *token_uri;
    /* "file:/path" (first line is the PIN); NULL takes the URI's pin-source attribute. */
    const char *pin_source;
    /* Development only: accept a PIN file of any owner and mode (a warning goes to stderr). It
     * never accepts a file that is not a regular file. */
    bool insecure_pin_file;
    unsigned pool_size; /* operation sessions; 0 = default (8); capped by ulMaxRwSessionCount */
    p11_iv_mode iv_mode;
    p11_gcm_layout gcm_layout;
    p11_rng_source rng;
    OSSL_LIB_CTX *libctx; /* private OpenSSL context for P11_RNG_OPENSSL (may be NULL) */
    /* Open a token that fails the capability check (to report it: `p11kms token info`). */
    bool skip_capability_check;
} p11_token_config;

typedef struct p11_token p11_token;
/* A secret key object in the token, known by its CKA_ID. Owned by the token (valid until
 * p11_key_destroy or p11_token_close); caches its object handle and re-finds it after the layer
 * re-initialized the module, so callers never call C_FindObjects per operation. */
typedef struct p11_key p11_key;

/* Loads the module, selects the token by URI, logs in with the PIN source and opens the session
 * pool. Fails (nothing left open) if the URI matches no token or more than one, if the PIN is
 * refused (never retried), or if the token reports the user PIN locked or on its final try.
 * The PIN stays in OpenSSL's secure heap until p11_token_close (recovery may have to log in again
 * after the token dropped every session); it is wiped at once if the token refuses it. fork() is
 * supported: it waits for operations in flight, and the child re-initializes on first use.
 * Environment: P11KMS_PKCS11_DEBUG=1 traces every PKCS#11 call on stderr. */
P11KMS_MUST_CHECK p11kms_err p11_token_open(const p11_token_config *cfg, p11_token **out,
                                            p11kms_error *err);
/* Closes sessions, finalizes the module (needed for clean leak reports). NULL is a no-op. */
void p11_token_close(p11_token *t);

typedef struct p11_token_info {
    char module[256];             /* path or p11-kit name as configured */
    char library_description[33]; /* CK_INFO, blank padding removed */
    char library_manufacturer[33];
    unsigned library_version_major, library_version_minor;
    unsigned cryptoki_major, cryptoki_minor;
    bool via_get_interface; /* function list came from C_GetInterface (PKCS#11 3.x) */
    char token_label[33];   /* CK_TOKEN_INFO, blank padding removed */
    char token_manufacturer[33];
    char token_model[17];
    char token_serial[17];
    unsigned long slot_id;
    unsigned long max_rw_sessions; /* as reported; CK_EFFECTIVELY_INFINITE etc. kept raw */
    unsigned pool_size;            /* operation sessions actually used */
} p11_token_info;

p11kms_err p11_token_get_info(p11_token *t, p11_token_info *info, p11kms_error *err);

/* The mechanisms p11kms relies on, and whether the token offers them for the use p11kms needs
 * (e.g. CKM_AES_GCM with CKF_ENCRYPT|CKF_DECRYPT). */
typedef struct p11_mechanism_report {
    CK_MECHANISM_TYPE mechanism;
    const char *name;    /* "CKM_AES_GCM" */
    const char *purpose; /* what p11kms uses it for */
    bool supported;
    unsigned long min_key_size, max_key_size;
} p11_mechanism_report;

/* Fills up to *count entries; sets *count to the number filled. */
p11kms_err p11_token_mechanisms(p11_token *t, p11_mechanism_report *out, size_t *count,
                                p11kms_error *err);

/* --- capability check (capability.c) ------------------------------------------------------ */
/* What p11kms needs of a token, checked with C_GetMechanismInfo and, for AES-GCM, a self-test on
 * a session key (a known vector through the configured IV mode and CK_GCM_PARAMS layout).
 * p11_token_open refuses a token that fails a required check, unless the configuration asks
 * for the report only (skip_capability_check, for `p11kms token info`). */
typedef struct p11_capability {
    const char *name;     /* "CKM_AES_GCM", "AES-GCM self-test" */
    const char *needed;   /* what p11kms needs of it, in words */
    bool required;        /* false: only some operations need it (importing key material) */
    bool mechanism_check; /* C_GetMechanismInfo (else the self-test) */
    bool passed;
    char detail[160]; /* what the token reported, or why the check failed */
} p11_capability;

#define P11_CAPABILITY_MAX 12

/* Runs every check (the self-test included) and fills up to *count entries. */
P11KMS_MUST_CHECK p11kms_err p11_token_capabilities(p11_token *t, p11_capability *out,
                                                    size_t *count, p11kms_error *err);
/* The checks needed before generating a master key (mechanism information only, no
 * self-test): a token that cannot both generate and use an AES-256-GCM key is refused before
 * a key exists. P11KMS_E_UNSUPPORTED with one line naming the token and the mechanism. */
P11KMS_MUST_CHECK p11kms_err p11_token_check_generate(p11_token *t, p11kms_error *err);

/* Random bytes from the configured source (C_GenerateRandom or the private OpenSSL context). */
P11KMS_MUST_CHECK p11kms_err p11_token_random(p11_token *t, uint8_t *buf, size_t len,
                                              p11kms_error *err);

/* Random bytes for key material (data keys) from the same source. With token.rng: token, requests
 * of up to P11_RANDOM_POOL_TAKE_MAX bytes are served from a per-thread block of
 * P11_RANDOM_POOL_BYTES drawn with one C_GenerateRandom, kept in the OpenSSL secure heap, wiped
 * as handed out, never used across a fork or for another token (pkcs11/random-pool.c). */
#define P11_RANDOM_POOL_BYTES 1024
#define P11_RANDOM_POOL_TAKE_MAX 64
P11KMS_MUST_CHECK p11kms_err p11_token_random_key(p11_token *t, uint8_t *buf, size_t len,
                                                  p11kms_error *err);

/* --- master keys -------------------------------------------------------------------------- */

/* Generates a persistent AES-256 key (CKM_AES_KEY_GEN): CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
 * CKA_EXTRACTABLE=FALSE, CKA_ENCRYPT/CKA_DECRYPT=TRUE, CKA_WRAP/UNWRAP/DERIVE/SIGN/VERIFY=FALSE,
 * CKA_MODIFIABLE=TRUE (usage is switched off when a key leaves Enabled). Reads the attributes
 * back and destroys the key, failing, unless CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE are
 * TRUE. Object creation is serialized inside the process. */
P11KMS_MUST_CHECK p11kms_err p11_key_generate(p11_token *t, const uint8_t *id, size_t id_len,
                                              const char *label, p11_key **out, p11kms_error *err);

/* Finds the secret key with this CKA_ID (cached after the first call). NOT_FOUND if none;
 * TOKEN error if more than one object carries the id. */
P11KMS_MUST_CHECK p11kms_err p11_key_find(p11_token *t, const uint8_t *id, size_t id_len,
                                          p11_key **out, p11kms_error *err);

/* Creates a session (non-token) AES key object from raw bytes. For tests and vectors only; the
 * value is never kept by p11kms. */
P11KMS_MUST_CHECK p11kms_err p11_key_create_session_aes(p11_token *t, const uint8_t *value,
                                                        size_t len, p11_key **out,
                                                        p11kms_error *err);

/* Copies a token key into a session object (C_CopyObject with CKA_TOKEN=FALSE; sensitivity and
 * extractability are inherited) made on the long-lived login session, so that it lives until
 * p11_key_destroy or the login ends; refused (TOKEN error, destroyed) unless the copy reads back
 * as a sensitive, non-extractable session object. Usable wherever source is, for the same
 * operations; if the token drops the login session the copy is made again on next use. The
 * source must outlive the copy. A token that refuses copies answers with its CKR_* in err->ckr
 * (CKR_ACTION_PROHIBITED for CKA_COPYABLE false, CKR_FUNCTION_NOT_SUPPORTED, ...). */
P11KMS_MUST_CHECK p11kms_err p11_key_copy_session(p11_token *t, p11_key *source, p11_key **out,
                                                  p11kms_error *err);

/* Destroys the object and forgets the cached handle; *key is invalid afterwards. */
p11kms_err p11_key_destroy(p11_token *t, p11_key *key, p11kms_error *err);

/* Sets CKA_ENCRYPT and CKA_DECRYPT together. Another process's cached handle sees it on its next
 * operation (CKR_KEY_FUNCTION_NOT_PERMITTED). */
p11kms_err p11_key_set_usage(p11_token *t, p11_key *key, bool allowed, p11kms_error *err);

typedef struct p11_key_attributes {
    bool token, private_, sensitive, extractable, always_sensitive, never_extractable;
    bool encrypt, decrypt, wrap, unwrap, derive, sign, verify, modifiable;
    unsigned long key_type, value_len;
    char label[128];
} p11_key_attributes;

p11kms_err p11_key_get_attributes(p11_token *t, p11_key *key, p11_key_attributes *attrs,
                                  p11kms_error *err);

/* Calls fn for each secret key object whose CKA_LABEL starts with label_prefix (maintenance
 * scans only; this is a full C_FindObjects pass). A non-zero return from fn stops the scan. */
p11kms_err p11_key_list(p11_token *t, const char *label_prefix,
                        int (*fn)(const uint8_t *id, size_t id_len, const char *label, void *arg),
                        void *arg, p11kms_error *err);

/* One secret key object of a scan: its CKA_ID, CKA_LABEL and the attributes maintenance checks. */
typedef struct p11_key_listing {
    const uint8_t *id;
    size_t id_len;
    const char *label;
    bool encrypt, decrypt, sensitive, extractable;
} p11_key_listing;

/* p11_key_list with the usage attributes of each key read in the same pass: one scan of the
 * token's objects, however many keys (maintenance). */
p11kms_err p11_key_scan(p11_token *t, const char *label_prefix,
                        int (*fn)(const p11_key_listing *k, void *arg), void *arg,
                        p11kms_error *err);

/* Finds the key again with a fresh C_FindObjects (ignoring the cached handle): a key reported
 * generated is only trusted once the token finds it again. NOT_FOUND if it does not. */
P11KMS_MUST_CHECK p11kms_err p11_key_confirm(p11_token *t, p11_key *key, p11kms_error *err);

/* --- AES-256-GCM through the token (C_Encrypt / C_Decrypt, single part) ------------------- */

/* iv: in HOST mode the IV to use (exactly P11_GCM_IV_LEN bytes); in TOKEN mode overwritten with
 * the IV the token generated. out receives ciphertext || tag (pt_len + P11_GCM_TAG_LEN bytes).
 * Checks the output length the token returns. */
P11KMS_MUST_CHECK p11kms_err p11_gcm_encrypt(p11_token *t, p11_key *key, uint8_t *iv, size_t iv_len,
                                             const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                                             size_t pt_len, uint8_t *out, size_t tag_len,
                                             p11kms_error *err);

/* in is ciphertext || tag. Any tag failure, whatever CKR_* the token uses for it, is
 * P11KMS_E_INVALID_CIPHERTEXT. pt receives in_len - tag_len bytes; nothing is written to pt
 * unless the tag verified. iv_len must be P11_GCM_IV_LEN and tag_len P11_GCM_TAG_LEN, otherwise
 * P11KMS_E_VALIDATION (other sizes are refused, never passed to the token). */
P11KMS_MUST_CHECK p11kms_err p11_gcm_decrypt(p11_token *t, p11_key *key, const uint8_t *iv,
                                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                                             const uint8_t *in, size_t in_len, size_t tag_len,
                                             uint8_t *pt, p11kms_error *err);

/* --- data objects (CKO_DATA, CKA_TOKEN, CKA_PRIVATE, CKA_APPLICATION "p11kms") -------------- */
/* The provider keeps key metadata, aliases and journals in these, so every process using the
 * token sees one truth. A label names exactly one object. */

P11KMS_MUST_CHECK p11kms_err p11_data_create(p11_token *t, const char *label, const uint8_t *value,
                                             size_t len, p11kms_error *err);
/* *value is malloc'ed (caller frees); NOT_FOUND if no object has this label. */
P11KMS_MUST_CHECK p11kms_err p11_data_read(p11_token *t, const char *label, uint8_t **value,
                                           size_t *len, p11kms_error *err);
/* Replaces CKA_VALUE (C_SetAttributeValue: one atomic update). NOT_FOUND if absent. */
P11KMS_MUST_CHECK p11kms_err p11_data_write(p11_token *t, const char *label, const uint8_t *value,
                                            size_t len, p11kms_error *err);
/* NOT_FOUND if absent. */
p11kms_err p11_data_delete(p11_token *t, const char *label, p11kms_error *err);
/* Calls fn for each p11kms data object whose label starts with label_prefix, with its value.
 * A non-zero return from fn stops the scan. */
p11kms_err p11_data_list(p11_token *t, const char *label_prefix,
                         int (*fn)(const char *label, const uint8_t *value, size_t len, void *arg),
                         void *arg, p11kms_error *err);

/* --- test support -------------------------------------------------------------------------- */
/* Closes every session of the slot behind the layer's back (C_CloseAllSessions), as a token
 * reset or another component would; the next operation must recover transparently. Waits until
 * no operation is in flight (SoftHSM crashes when a session is closed while another thread is
 * using it) and holds new ones back meanwhile. */
p11kms_err p11_token_test_close_all_sessions(p11_token *t, p11kms_error *err);

/* "CKR_PIN_INCORRECT" for CKR_PIN_INCORRECT; "CKR_0x..." for unknown values. */
const char *p11_ckr_name(CK_RV rv);

#endif
