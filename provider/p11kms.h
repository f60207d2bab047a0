/* libp11kms: a key management service with AWS KMS semantics whose master keys never leave a
 * PKCS#11 token.
 *
 * Every type is opaque or a plain output struct. Every function is thread-safe on one service
 * handle, takes the caller's principal (checked against the key policy before the token is
 * touched) and reports failures as a p11kms_err with details in a p11kms_error. Key references
 * ("key_ref") may be a key id (UUID), "alias/NAME", a key ARN
 * ("arn:PARTITION:kms:REGION:ACCOUNT:key/ID") or an alias ARN
 * ("arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME").
 * Binary outputs are malloc'ed; plaintext outputs live in OpenSSL's secure heap and are wiped
 * when freed with p11kms_result_free. */
#ifndef P11KMS_H
#define P11KMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p11kms-error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P11KMS_KEY_ID_LEN 36      /* UUID text, without the terminating NUL */
#define P11KMS_ARN_MAX 512        /* longest key or alias ARN, with NUL */
#define P11KMS_ALIAS_MAX 257      /* "alias/" + name (at most 256 characters), with NUL */
#define P11KMS_MAX_PLAINTEXT 4096 /* Encrypt limit */
#define P11KMS_MAX_DATA_KEY 1024  /* GenerateDataKey / GenerateRandom limit */
#define P11KMS_MAX_ALIASES_PER_KEY 50
#define P11KMS_MAX_TAGS_PER_KEY 50
#define P11KMS_DESCRIPTION_MAX 8192
#define P11KMS_DEFAULT_CONFIG "/etc/p11kms/p11kms.yaml"

typedef struct p11kms p11kms;                       /* an open service (config, token, policy) */
typedef struct p11kms_principal p11kms_principal;   /* who is calling: a set of names */
typedef struct p11kms_context p11kms_context;       /* an encryption context */
typedef struct p11kms_opened_key p11kms_opened_key; /* a key of the hierarchy in locked memory */

/* --- service -------------------------------------------------------------------------------- */

/* Opens the service described by a YAML configuration file. config_path NULL means
 * $P11KMS_CONFIG, else P11KMS_DEFAULT_CONFIG. Loads the token and the policy, and runs the
 * start-up reconciliation of half-finished operations. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_open(const char *config_path, p11kms **out,
                                                    p11kms_error *err);

/* Flags of p11kms_open_with and p11kms_protect_process. */
/* Disable core dumps of the whole process: prctl(PR_SET_DUMPABLE, 0) and RLIMIT_CORE 0. Also
 * set by "core-dumps: disabled" in the configuration. The p11kms CLI always sets it. */
#define P11KMS_OPEN_NO_CORE_DUMPS 0x1u
/* Development only: accept a PIN file of any owner and mode, with a warning on stderr. Also
 * set by "insecure-pin-file: true" in the token section. */
#define P11KMS_OPEN_INSECURE_PIN_FILE 0x2u
/* Refuse to open when OpenSSL's secure heap is not locked in memory. Also set by
 * "secure-memory: required" in the configuration. */
#define P11KMS_OPEN_REQUIRE_LOCKED_MEMORY 0x4u
/* Open a token that fails the capability check (doc/tokens.md) instead of refusing it, so
 * that p11kms_token_info can report which check failed. `p11kms token info` sets it. */
#define P11KMS_OPEN_TOKEN_REPORT 0x8u

/* p11kms_open with flags (P11KMS_OPEN_*). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_open_with(const char *config_path, unsigned flags,
                                                         p11kms **out, p11kms_error *err);
/* Protects the calling process before it reads any secret: creates OpenSSL's secure heap (a
 * heap that could not be locked is reported on stderr, once) and, with
 * P11KMS_OPEN_NO_CORE_DUMPS, disables core dumps. p11kms_open does this itself; call it first
 * when the program reads secrets (plaintext, key material) before opening the service. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_protect_process(unsigned flags, p11kms_error *err);
/* The endpoint named by "endpoint:" in a configuration file (config_path NULL as in
 * p11kms_open), or NULL in *endpoint when it names none; free it with free(). Reads the file
 * only: no token module is loaded and no PIN is read. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_config_endpoint(const char *config_path,
                                                               char **endpoint, p11kms_error *err);
/* Whether the configuration (config_path NULL as in p11kms_open) asks p11kmsd to lock its memory
 * with mlockall: "memory-lock: enabled" (the default) or "disabled". Reads the file only. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_config_memory_lock(const char *config_path,
                                                                  bool *lock, p11kms_error *err);
/* Close every opened key (p11kms_opened_key_close) first. NULL is a no-op. */
P11KMS_API void p11kms_close(p11kms *svc);

/* Re-reads the policy file named by the configuration. A file that fails to load leaves the
 * policy in force and the error says why. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_reload_policy(p11kms *svc, p11kms_error *err);

/* The region of the configuration (keys.region, default "local"): ARNs name it, and p11kmsd
 * accepts only SigV4 signatures scoped to it. Valid while svc is open. */
P11KMS_API const char *p11kms_region(const p11kms *svc);

/* --- principals ------------------------------------------------------------------------------ */

P11KMS_API p11kms_principal *p11kms_principal_new(void);
/* Adds one name, e.g. "unix:user:alice" (see p11kms-policy(5) for the forms). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_principal_add(p11kms_principal *p, const char *name,
                                                             p11kms_error *err);
/* The calling process's OS identity: unix:user:NAME, unix:uid:N and unix:group:NAME for the
 * primary and every supplementary group. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_principal_from_process(p11kms_principal **out,
                                                                      p11kms_error *err);
P11KMS_API size_t p11kms_principal_count(const p11kms_principal *p);
P11KMS_API const char *p11kms_principal_name(const p11kms_principal *p, size_t i);
P11KMS_API void p11kms_principal_free(p11kms_principal *p);

/* --- encryption context ---------------------------------------------------------------------- */

P11KMS_API p11kms_context *p11kms_context_new(void);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_context_add(p11kms_context *ctx, const char *key,
                                                           const char *value, p11kms_error *err);
/* Parses the AWS CLI forms: shorthand "k=v,k2=v2" or a JSON object {"k":"v"}. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_context_parse(const char *text, p11kms_context **out,
                                                             p11kms_error *err);
P11KMS_API size_t p11kms_context_count(const p11kms_context *ctx);
/* Pairs in canonical (sorted) order. */
P11KMS_API const char *p11kms_context_key(const p11kms_context *ctx, size_t i);
P11KMS_API const char *p11kms_context_value(const p11kms_context *ctx, size_t i);
P11KMS_API void p11kms_context_free(p11kms_context *ctx);

/* --- results --------------------------------------------------------------------------------- */

typedef struct p11kms_result {
    char key_id[P11KMS_ARN_MAX];        /* ARN of the key that encrypted (or decrypted) */
    char source_key_id[P11KMS_ARN_MAX]; /* ReEncrypt: ARN of the key that decrypted */
    uint32_t key_version;               /* master key version used */
    uint8_t *ciphertext;                /* malloc'ed */
    size_t ciphertext_len;
    uint8_t *plaintext; /* OpenSSL secure heap; wiped by p11kms_result_free */
    size_t plaintext_len;
} p11kms_result;

P11KMS_API void p11kms_result_free(p11kms_result *r);

/* --- cryptographic operations ---------------------------------------------------------------- */

/* Encrypt up to P11KMS_MAX_PLAINTEXT bytes under the key's current version. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_encrypt(p11kms *svc, const p11kms_principal *who,
                                                       const char *key_ref,
                                                       const p11kms_context *ctx,
                                                       const uint8_t *plaintext, size_t len,
                                                       p11kms_result *out, p11kms_error *err);

/* The key is found from the blob; key_ref (may be NULL) must name the same key, else
 * P11KMS_E_INCORRECT_KEY. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_decrypt(p11kms *svc, const p11kms_principal *who,
                                                       const char *key_ref,
                                                       const p11kms_context *ctx,
                                                       const uint8_t *blob, size_t blob_len,
                                                       p11kms_result *out, p11kms_error *err);

/* The id of the master key a blob of p11kms_encrypt or p11kms_generate_data_key names, read
 * from its header: nothing is decrypted or checked for integrity, and no policy is asked (what
 * DryRun needs to name the key a Decrypt would use). InvalidCiphertextException for a blob that
 * is malformed or made under an opened key of the hierarchy. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_ciphertext_key_id(const uint8_t *blob,
                                                                 size_t blob_len,
                                                                 char key_id[P11KMS_KEY_ID_LEN + 1],
                                                                 p11kms_error *err);

/* Decrypts under the source context and encrypts under dest_key_ref and dest_ctx; the plaintext
 * never leaves the library. source_key_ref may be NULL. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_re_encrypt(p11kms *svc, const p11kms_principal *who,
                                                          const char *source_key_ref,
                                                          const p11kms_context *source_ctx,
                                                          const uint8_t *blob, size_t blob_len,
                                                          const char *dest_key_ref,
                                                          const p11kms_context *dest_ctx,
                                                          p11kms_result *out, p11kms_error *err);

/* key_spec "AES_128" or "AES_256", or NULL with number_of_bytes 1..1024. The wrapped key is
 * trial-decrypted before it is returned. With want_plaintext false this is
 * GenerateDataKeyWithoutPlaintext. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err
p11kms_generate_data_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                         const p11kms_context *ctx, const char *key_spec, size_t number_of_bytes,
                         bool want_plaintext, p11kms_result *out, p11kms_error *err);

/* 1..1024 random bytes (into out->plaintext). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_generate_random(p11kms *svc,
                                                               const p11kms_principal *who,
                                                               size_t number_of_bytes,
                                                               p11kms_result *out,
                                                               p11kms_error *err);

/* --- key metadata and lifecycle -------------------------------------------------------------- */

typedef enum p11kms_key_state {
    P11KMS_KEY_ENABLED,
    P11KMS_KEY_DISABLED,
    P11KMS_KEY_PENDING_DELETION,
    P11KMS_KEY_PENDING_IMPORT,
    P11KMS_KEY_UNAVAILABLE,
} p11kms_key_state;

typedef enum p11kms_key_origin { P11KMS_ORIGIN_TOKEN, P11KMS_ORIGIN_EXTERNAL } p11kms_key_origin;

typedef struct p11kms_key_metadata {
    char key_id[P11KMS_KEY_ID_LEN + 1];
    char arn[P11KMS_ARN_MAX];
    p11kms_key_state state;
    p11kms_key_origin origin;
    char description[P11KMS_DESCRIPTION_MAX + 1];
    int64_t creation_date; /* seconds since the epoch */
    int64_t deletion_date; /* PendingDeletion only, else 0 */
    unsigned pending_window_days;
    bool rotation_enabled;
    unsigned rotation_period_days;
    int64_t next_rotation_date; /* when rotation is enabled, else 0 */
    uint32_t current_version;
    uint32_t version_count;
    uint64_t current_version_encryptions; /* reserved count, persisted in batches */
    /* Imported material: "KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE" or "" (origin
     * AWS_KMS, or nothing imported yet); valid_to is set only for KEY_MATERIAL_EXPIRES. */
    char expiration_model[32];
    int64_t valid_to;
} p11kms_key_metadata;

/* "Enabled", "Disabled", "PendingDeletion", "PendingImport", "Unavailable". */
P11KMS_API const char *p11kms_key_state_name(p11kms_key_state state);
/* "AWS_KMS" (generated in the token) or "EXTERNAL". */
P11KMS_API const char *p11kms_key_origin_name(p11kms_key_origin origin);

typedef struct p11kms_tag {
    const char *key;
    const char *value;
} p11kms_tag;

typedef struct p11kms_create_key_input {
    const char *description; /* may be NULL */
    const char *key_spec;    /* NULL or "SYMMETRIC_DEFAULT"; anything else is unsupported */
    const char *key_usage;   /* NULL or "ENCRYPT_DECRYPT" */
    const char *origin;      /* NULL, "AWS_KMS" or "EXTERNAL" (creates PendingImport) */
    const p11kms_tag *tags;
    size_t tag_count;
} p11kms_create_key_input;

P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_create_key(p11kms *svc, const p11kms_principal *who,
                                                          const p11kms_create_key_input *in,
                                                          p11kms_key_metadata *out,
                                                          p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_describe_key(p11kms *svc,
                                                            const p11kms_principal *who,
                                                            const char *key_ref,
                                                            p11kms_key_metadata *out,
                                                            p11kms_error *err);
/* Calls fn for every key the principal may list; a non-zero return stops the listing. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_list_keys(p11kms *svc, const p11kms_principal *who,
                                                         int (*fn)(const char *key_id,
                                                                   const char *arn, void *arg),
                                                         void *arg, p11kms_error *err);

P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_enable_key(p11kms *svc, const p11kms_principal *who,
                                                          const char *key_ref, p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_disable_key(p11kms *svc, const p11kms_principal *who,
                                                           const char *key_ref, p11kms_error *err);
/* pending_window_days 7..30, 0 means the default 30. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_schedule_key_deletion(
    p11kms *svc, const p11kms_principal *who, const char *key_ref, unsigned pending_window_days,
    p11kms_key_metadata *out, p11kms_error *err);
/* The key becomes Disabled. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_cancel_key_deletion(p11kms *svc,
                                                                   const p11kms_principal *who,
                                                                   const char *key_ref,
                                                                   p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_update_key_description(p11kms *svc,
                                                                      const p11kms_principal *who,
                                                                      const char *key_ref,
                                                                      const char *description,
                                                                      p11kms_error *err);

/* --- rotation -------------------------------------------------------------------------------- */

P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_rotate_key_on_demand(p11kms *svc,
                                                                    const p11kms_principal *who,
                                                                    const char *key_ref,
                                                                    p11kms_key_metadata *out,
                                                                    p11kms_error *err);
/* period 90..2560 days, 0 means the default 365. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_enable_key_rotation(p11kms *svc,
                                                                   const p11kms_principal *who,
                                                                   const char *key_ref,
                                                                   unsigned period_days,
                                                                   p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_disable_key_rotation(p11kms *svc,
                                                                    const p11kms_principal *who,
                                                                    const char *key_ref,
                                                                    p11kms_error *err);

typedef struct p11kms_rotation {
    uint32_t version;
    int64_t rotation_date;
    const char *rotation_type; /* "INITIAL", "AUTOMATIC" or "ON_DEMAND" */
} p11kms_rotation;

P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_list_key_rotations(
    p11kms *svc, const p11kms_principal *who, const char *key_ref,
    int (*fn)(const p11kms_rotation *r, void *arg), void *arg, p11kms_error *err);

/* --- imported key material (BYOK, doc/import.md) --------------------------------------------- */

typedef struct p11kms_import_parameters {
    char key_id[P11KMS_ARN_MAX];
    uint8_t *public_key; /* DER SubjectPublicKeyInfo of the RSA wrapping key; malloc'ed */
    size_t public_key_len;
    uint8_t *import_token; /* opaque, authenticated; malloc'ed */
    size_t import_token_len;
    int64_t parameters_valid_to; /* seconds since the epoch (24 hours from now) */
} p11kms_import_parameters;

P11KMS_API void p11kms_import_parameters_free(p11kms_import_parameters *p);

/* GetParametersForImport for a key of origin EXTERNAL: generates an RSA wrapping key pair in the
 * token (the private key never leaves it) and an import token binding key, wrapping key,
 * algorithm and expiry. wrapping_algorithm: "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256",
 * "RSA_AES_KEY_WRAP_SHA_1" or "RSA_AES_KEY_WRAP_SHA_256"; an algorithm the token cannot perform
 * is P11KMS_E_UNSUPPORTED (checked here with a test unwrap, never discovered at import).
 * wrapping_key_spec: "RSA_2048", "RSA_3072" or "RSA_4096". */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_get_parameters_for_import(
    p11kms *svc, const p11kms_principal *who, const char *key_ref, const char *wrapping_algorithm,
    const char *wrapping_key_spec, p11kms_import_parameters *out, p11kms_error *err);

typedef struct p11kms_import_input {
    const uint8_t *encrypted_key_material;
    size_t encrypted_key_material_len;
    const uint8_t *import_token;
    size_t import_token_len;
    const char *expiration_model; /* NULL or "KEY_MATERIAL_DOES_NOT_EXPIRE" (default), or
                                     "KEY_MATERIAL_EXPIRES" with valid_to */
    int64_t valid_to;             /* seconds since the epoch; only with KEY_MATERIAL_EXPIRES */
} p11kms_import_input;

/* ImportKeyMaterial: C_UnwrapKey straight into a token AES-256 key object (sensitive, never
 * extractable, encrypt/decrypt only); the key becomes Enabled. Refusals: INVALID_IMPORT_TOKEN,
 * EXPIRED_IMPORT_TOKEN, INVALID_CIPHERTEXT (wrong wrapping, not 32 bytes, tampered: the key stays
 * PendingImport), INCORRECT_KEY_MATERIAL (a key whose material was deleted accepts only the same
 * material again). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_import_key_material(p11kms *svc,
                                                                   const p11kms_principal *who,
                                                                   const char *key_ref,
                                                                   const p11kms_import_input *in,
                                                                   p11kms_error *err);

/* DeleteImportedKeyMaterial: destroys the material in the token at once; the key becomes
 * PendingImport until the same material is imported again. */
P11KMS_API p11kms_err p11kms_delete_imported_key_material(p11kms *svc, const p11kms_principal *who,
                                                          const char *key_ref, p11kms_error *err);

/* --- tags and aliases ------------------------------------------------------------------------ */

P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_tag_resource(p11kms *svc,
                                                            const p11kms_principal *who,
                                                            const char *key_ref,
                                                            const p11kms_tag *tags, size_t count,
                                                            p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_untag_resource(p11kms *svc,
                                                              const p11kms_principal *who,
                                                              const char *key_ref,
                                                              const char *const *tag_keys,
                                                              size_t count, p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_list_resource_tags(
    p11kms *svc, const p11kms_principal *who, const char *key_ref,
    int (*fn)(const p11kms_tag *tag, void *arg), void *arg, p11kms_error *err);

/* alias_name is "alias/NAME" (NAME: letters, digits, / _ -; "alias/aws/" is reserved). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_create_alias(p11kms *svc,
                                                            const p11kms_principal *who,
                                                            const char *alias_name,
                                                            const char *target_key_ref,
                                                            p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_update_alias(p11kms *svc,
                                                            const p11kms_principal *who,
                                                            const char *alias_name,
                                                            const char *target_key_ref,
                                                            p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_delete_alias(p11kms *svc,
                                                            const p11kms_principal *who,
                                                            const char *alias_name,
                                                            p11kms_error *err);
/* key_ref NULL lists every alias. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_list_aliases(
    p11kms *svc, const p11kms_principal *who, const char *key_ref,
    int (*fn)(const char *alias_name, const char *alias_arn, const char *target_key_id, void *arg),
    void *arg, p11kms_error *err);

/* --- the key hierarchy (in-memory tiers below a master key) ----------------------------------- */

/* Decrypts a blob made by p11kms_generate_data_key / p11kms_encrypt (policy action "decrypt")
 * into a handle whose key bytes live only in the secure heap. The handle expires after the
 * configured TTL or number of uses, and is revoked when its master key leaves Enabled. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_open_key(p11kms *svc, const p11kms_principal *who,
                                                        const p11kms_context *ctx,
                                                        const uint8_t *blob, size_t blob_len,
                                                        p11kms_opened_key **out, p11kms_error *err);

/* Generates a child key of key_len bytes (1..1024), wraps it under parent with AES-256-GCM and
 * ctx as AAD (in memory). out->ciphertext is the child blob; out->plaintext the child key
 * unless want_plaintext is false. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err
p11kms_generate_child_key(p11kms_opened_key *parent, const p11kms_context *ctx, size_t key_len,
                          bool want_plaintext, p11kms_result *out, p11kms_error *err);

/* Unwraps a child blob into the plaintext key (out->plaintext). A blob made under another
 * parent is P11KMS_E_INCORRECT_KEY; a tampered one or a wrong context
 * P11KMS_E_INVALID_CIPHERTEXT. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_unwrap_child_key(p11kms_opened_key *parent,
                                                                const p11kms_context *ctx,
                                                                const uint8_t *blob,
                                                                size_t blob_len, p11kms_result *out,
                                                                p11kms_error *err);

/* Opens a child blob as a key of the next tier (its lifetime is bounded by its parent's). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_open_child_key(p11kms_opened_key *parent,
                                                              const p11kms_context *ctx,
                                                              const uint8_t *blob, size_t blob_len,
                                                              p11kms_opened_key **out,
                                                              p11kms_error *err);

/* Non-secret key check value (8 bytes) that child blobs carry to name their parent. */
P11KMS_API void p11kms_opened_key_check_value(const p11kms_opened_key *key, uint8_t kcv[8]);
/* Wipes the key bytes; children opened from it stay usable until their own close. NULL ok.
 * Every opened key must be closed before the service it came from (p11kms_close). */
P11KMS_API void p11kms_opened_key_close(p11kms_opened_key *key);

/* --- maintenance, token, policy tools -------------------------------------------------------- */

/* Reconciles half-finished operations, purges keys whose deletion date has passed and performs
 * due automatic rotations. fn receives one human-readable line per action taken or leftover
 * found. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_maintain(p11kms *svc, const p11kms_principal *who,
                                                        void (*fn)(const char *line, void *arg),
                                                        void *arg, p11kms_error *err);

/* Moves the key records, aliases and counters a token holds in the previous layout (format 1:
 * CKO_DATA objects) into the configured store, verifies them there, then destroys the data
 * objects; key version objects stay. Idempotent. fn receives one line per action. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_store_migrate(
    p11kms *svc, void (*fn)(const char *line, void *arg), void *arg, p11kms_error *err);

typedef struct p11kms_token_mechanism {
    const char *name;
    const char *purpose;
    bool supported;
} p11kms_token_mechanism;

typedef struct p11kms_token_report {
    char module[256];
    char library_description[33];
    char library_manufacturer[33];
    char library_version[16];
    char cryptoki_version[16];
    bool via_get_interface;
    char token_label[33];
    char token_manufacturer[33];
    char token_model[17];
    char token_serial[17];
    unsigned long slot_id;
    unsigned pool_size;
    size_t mechanism_count;
    p11kms_token_mechanism mechanisms[16];
    /* The capability check (doc/tokens.md): each need, whether p11kms requires it to open the
     * token, and what the token answered. */
    size_t capability_count;
    struct p11kms_token_capability {
        const char *name;
        const char *needed;
        bool required;
        bool passed;
        char detail[160];
    } capabilities[12];
    /* token.key-cache in force: "session-copy" (hot key versions used through session copies
     * made inside the token) or "token-object"; key_cache_reason says why when the token forced
     * the latter (it refused a probe copy or a key's copy), "" otherwise. */
    char key_cache[16];
    char key_cache_reason[300];
    unsigned session_keys; /* token.session-keys: at most this many copies per process */
    size_t session_copies; /* copies this process holds now */
    unsigned refused_keys; /* keys of this process that use their token object: copy refused */
} p11kms_token_report;

P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_token_info(p11kms *svc, p11kms_token_report *out,
                                                          p11kms_error *err);

/* Validates a policy file without opening a service; fn gets every error as
 * "file:line:column: message". Returns P11KMS_OK only for a valid policy. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_policy_check_file(
    const char *path, void (*fn)(const char *line, void *arg), void *arg, p11kms_error *err);

/* Decides whether subject may perform action on key_ref (resolved to its key id and aliases
 * when the key exists) with ctx, and writes a one-paragraph explanation naming the deciding
 * statement. *allowed receives the decision. caller is who asks: it may always ask about itself
 * (subject NULL, or every name of subject one of caller's); asking about another principal
 * needs the policy action "explain-policy" (an administrator's, account level), else
 * P11KMS_E_ACCESS_DENIED that says nothing of the subject's decision. Only questions about
 * another principal are audited (event ExplainPolicy). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err
p11kms_policy_explain(p11kms *svc, const p11kms_principal *caller, const p11kms_principal *subject,
                      const char *action, const char *key_ref, const p11kms_context *ctx,
                      bool *allowed, char *explanation, size_t explanation_size, p11kms_error *err);

/* --- audit ---------------------------------------------------------------------------------- */

/* What a front end knows of a request, for its audit record (see doc/audit.md): the source
 * (e.g. "unix pid=42 uid=1000" or "tcp 127.0.0.1:50412") and the request id it answers with.
 * Without them the record says "local pid=N uid=U" and carries an id the library makes. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_principal_set_source(p11kms_principal *p,
                                                                    const char *source,
                                                                    p11kms_error *err);
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_principal_set_request_id(p11kms_principal *p,
                                                                        const char *request_id,
                                                                        p11kms_error *err);

/* Verifies a set of audit log files (any order; rotated files of one chain) against the token's
 * audit key and checkpoint: fn gets one line per finding and a last summary line. *valid says
 * whether the set is intact. Returns P11KMS_OK when the verification ran (whatever it found). */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_audit_verify(p11kms *svc, const char *const *files,
                                                            size_t count,
                                                            void (*fn)(const char *line, void *arg),
                                                            void *arg, bool *valid,
                                                            p11kms_error *err);
/* --- SigV4 credentials of p11kmsd callers -------------------------------------------------- */

/* An access key id is "PKMS" followed by 16 characters of A-Z and 2-7 (80 random bits, base32),
 * 20 characters like AWS's; the secret access key is 40 characters of base64 (240 random bits).
 * The token keeps "AWS4" + secret as a non-extractable HMAC key (CKK_GENERIC_SECRET, sign and
 * verify only, unmodifiable) whose CKA_ID is "p11kms-sigv4:" + access key id and whose CKA_LABEL
 * is "p11kms-sigv4:" + access key id + ":" + principal name: the mapping from access key id to
 * principal lives in the token, never in a file. The caller authenticated with such a key is
 * the policy principal "sigv4:<access key id>". */
#define P11KMS_ACCESS_KEY_ID_LEN 20
#define P11KMS_SECRET_ACCESS_KEY_LEN 40
#define P11KMS_PRINCIPAL_NAME_MAX 64 /* letters, digits and + = , . @ _ - (as IAM user names) */

typedef struct p11kms_credential {
    char access_key_id[P11KMS_ACCESS_KEY_ID_LEN + 1];
    char principal_name[P11KMS_PRINCIPAL_NAME_MAX + 1];
} p11kms_credential;

/* Creates an access key for principal_name (policy action "create-credentials"). *secret
 * receives the secret access key (NUL-terminated, in OpenSSL's secure heap): show it once, then
 * free it with p11kms_secret_free, which wipes it. p11kms keeps no other copy. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_credentials_create(p11kms *svc,
                                                                  const p11kms_principal *who,
                                                                  const char *principal_name,
                                                                  p11kms_credential *out,
                                                                  char **secret, p11kms_error *err);
/* Wipes and frees a secret returned by p11kms_credentials_create. NULL is a no-op. */
P11KMS_API void p11kms_secret_free(char *secret);
/* Calls fn for every credential (policy action "list-credentials"); a non-zero return stops. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_credentials_list(
    p11kms *svc, const p11kms_principal *who, int (*fn)(const p11kms_credential *c, void *arg),
    void *arg, p11kms_error *err);
/* Destroys the access key in the token (policy action "delete-credentials"): requests signed
 * with it fail from then on, in every process. NotFoundException if there is none. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err p11kms_credentials_delete(p11kms *svc,
                                                                  const p11kms_principal *who,
                                                                  const char *access_key_id,
                                                                  p11kms_error *err);

/* The SigV4 signing key of an access key for one day, region and service:
 * kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, yyyymmdd), region), service), "aws4_request").
 * The first HMAC runs in the token (CKM_SHA256_HMAC); the rest in the provider's private OpenSSL
 * context, in the secure heap. principal_name receives the name stored with the credential.
 * No policy check: this is the authentication step of p11kmsd, before a caller is known.
 * P11KMS_E_NOT_FOUND for an unknown or deleted access key id. */
P11KMS_API P11KMS_MUST_CHECK p11kms_err
p11kms_sigv4_signing_key(p11kms *svc, const char *access_key_id, const char *yyyymmdd,
                         const char *region, const char *service, uint8_t out[32],
                         char *principal_name, size_t principal_name_size, p11kms_error *err);

#ifdef __cplusplus
}
#endif
#endif
