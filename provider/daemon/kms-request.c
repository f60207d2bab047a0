#include "config.h"

#include "kms-request.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli/cli-base64.h"

void kms_fault_set(kms_fault *f, unsigned status, const char *klass, const char *fmt, ...)
{
    f->status = status;
    f->klass = klass;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
}

/* --- the input shapes, as botocore's KMS model (2014-11-01) states them --------------------- */

static const char *const key_spec_enum[] = {"RSA_2048",
                                            "RSA_3072",
                                            "RSA_4096",
                                            "ECC_NIST_P256",
                                            "ECC_NIST_P384",
                                            "ECC_NIST_P521",
                                            "ECC_SECG_P256K1",
                                            "SYMMETRIC_DEFAULT",
                                            "HMAC_224",
                                            "HMAC_256",
                                            "HMAC_384",
                                            "HMAC_512",
                                            "SM2",
                                            NULL};
static const char *const key_usage_enum[] = {"SIGN_VERIFY", "ENCRYPT_DECRYPT",
                                             "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", NULL};
static const char *const origin_enum[] = {"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM",
                                          "EXTERNAL_KEY_STORE", NULL};
static const char *const data_key_spec_enum[] = {"AES_256", "AES_128", NULL};
static const char *const algorithm_enum[] = {"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1",
                                             "RSAES_OAEP_SHA_256", "SM2PKE", NULL};

#define KEY_ID(name, req)                                                                          \
    {                                                                                              \
        name, KMS_T_STRING, req, 1, 2048, NULL, 0, 0                                               \
    }
#define CONTEXT(name)                                                                              \
    {                                                                                              \
        name, KMS_T_STRING_MAP, false, 0, INT64_MAX, NULL, 0, 0                                    \
    }
#define GRANT_TOKENS                                                                               \
    {                                                                                              \
        "GrantTokens", KMS_T_STRING_LIST, false, 0, 10, NULL, 1, 8192                              \
    }
#define ALGORITHM(name)                                                                            \
    {                                                                                              \
        name, KMS_T_STRING, false, 0, INT64_MAX, algorithm_enum, 0, 0                              \
    }
#define DRY_RUN                                                                                    \
    {                                                                                              \
        "DryRun", KMS_T_BOOL, false, 0, 0, NULL, 0, 0                                              \
    }
#define LIMIT                                                                                      \
    {                                                                                              \
        "Limit", KMS_T_INT, false, 1, 1000, NULL, 0, 0                                             \
    }
#define MARKER                                                                                     \
    {                                                                                              \
        "Marker", KMS_T_STRING, false, 1, 1024, NULL, 0, 0                                         \
    }
#define ALIAS_NAME                                                                                 \
    {                                                                                              \
        "AliasName", KMS_T_STRING, true, 1, 256, NULL, 0, 0                                        \
    }
#define NUMBER_OF_BYTES                                                                            \
    {                                                                                              \
        "NumberOfBytes", KMS_T_INT, false, 1, 1024, NULL, 0, 0                                     \
    }
#define DATA_KEY_SPEC                                                                              \
    {                                                                                              \
        "KeySpec", KMS_T_STRING, false, 0, INT64_MAX, data_key_spec_enum, 0, 0                     \
    }
#define CIPHERTEXT                                                                                 \
    {                                                                                              \
        "CiphertextBlob", KMS_T_BLOB, true, 1, 6144, NULL, 0, 0                                    \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, KMS_T_STRING, false, 0, 0, NULL, 0, 0                                                \
    }

static const kms_member key_only[] = {KEY_ID("KeyId", true), END};

static const kms_member create_key[] = {
    {"Policy", KMS_T_STRING, false, 1, 131072, NULL, 0, 0},
    {"Description", KMS_T_STRING, false, 0, 8192, NULL, 0, 0},
    {"KeyUsage", KMS_T_STRING, false, 0, INT64_MAX, key_usage_enum, 0, 0},
    {"CustomerMasterKeySpec", KMS_T_STRING, false, 0, INT64_MAX, key_spec_enum, 0, 0},
    {"KeySpec", KMS_T_STRING, false, 0, INT64_MAX, key_spec_enum, 0, 0},
    {"Origin", KMS_T_STRING, false, 0, INT64_MAX, origin_enum, 0, 0},
    {"CustomKeyStoreId", KMS_T_STRING, false, 1, 64, NULL, 0, 0},
    {"BypassPolicyLockoutSafetyCheck", KMS_T_BOOL, false, 0, 0, NULL, 0, 0},
    {"Tags", KMS_T_TAG_LIST, false, 0, INT64_MAX, NULL, 0, 0},
    {"MultiRegion", KMS_T_BOOL, false, 0, 0, NULL, 0, 0},
    END};
static const kms_member describe_key[] = {KEY_ID("KeyId", true), GRANT_TOKENS, END};
static const kms_member list_keys[] = {LIMIT, MARKER, END};
static const kms_member schedule_deletion[] = {
    KEY_ID("KeyId", true), {"PendingWindowInDays", KMS_T_INT, false, 1, 365, NULL, 0, 0}, END};
static const kms_member update_description[] = {
    KEY_ID("KeyId", true), {"Description", KMS_T_STRING, true, 0, 8192, NULL, 0, 0}, END};
static const kms_member enable_rotation[] = {
    KEY_ID("KeyId", true), {"RotationPeriodInDays", KMS_T_INT, false, 90, 2560, NULL, 0, 0}, END};
static const kms_member key_paged[] = {KEY_ID("KeyId", true), LIMIT, MARKER, END};
static const kms_member tag_resource[] = {
    KEY_ID("KeyId", true), {"Tags", KMS_T_TAG_LIST, true, 0, INT64_MAX, NULL, 0, 0}, END};
static const kms_member untag_resource[] = {
    KEY_ID("KeyId", true), {"TagKeys", KMS_T_STRING_LIST, true, 0, INT64_MAX, NULL, 1, 128}, END};
static const kms_member alias_target[] = {ALIAS_NAME, KEY_ID("TargetKeyId", true), END};
static const kms_member alias_only[] = {ALIAS_NAME, END};
static const kms_member list_aliases[] = {KEY_ID("KeyId", false), LIMIT, MARKER, END};
static const kms_member encrypt[] = {KEY_ID("KeyId", true),
                                     {"Plaintext", KMS_T_SECRET_BLOB, true, 1, 4096, NULL, 0, 0},
                                     CONTEXT("EncryptionContext"),
                                     GRANT_TOKENS,
                                     ALGORITHM("EncryptionAlgorithm"),
                                     DRY_RUN,
                                     END};
static const kms_member decrypt[] = {CIPHERTEXT,
                                     CONTEXT("EncryptionContext"),
                                     GRANT_TOKENS,
                                     KEY_ID("KeyId", false),
                                     ALGORITHM("EncryptionAlgorithm"),
                                     DRY_RUN,
                                     END};
static const kms_member re_encrypt[] = {CIPHERTEXT,
                                        CONTEXT("SourceEncryptionContext"),
                                        KEY_ID("SourceKeyId", false),
                                        KEY_ID("DestinationKeyId", true),
                                        CONTEXT("DestinationEncryptionContext"),
                                        ALGORITHM("SourceEncryptionAlgorithm"),
                                        ALGORITHM("DestinationEncryptionAlgorithm"),
                                        GRANT_TOKENS,
                                        DRY_RUN,
                                        END};
static const kms_member data_key[] = {KEY_ID("KeyId", true),
                                      CONTEXT("EncryptionContext"),
                                      NUMBER_OF_BYTES,
                                      DATA_KEY_SPEC,
                                      GRANT_TOKENS,
                                      DRY_RUN,
                                      END};
static const kms_member generate_random[] = {
    NUMBER_OF_BYTES, {"CustomKeyStoreId", KMS_T_STRING, false, 1, 64, NULL, 0, 0}, END};

static const char *const wrapping_algorithm_enum[] = {"RSAES_PKCS1_V1_5",
                                                      "RSAES_OAEP_SHA_1",
                                                      "RSAES_OAEP_SHA_256",
                                                      "RSA_AES_KEY_WRAP_SHA_1",
                                                      "RSA_AES_KEY_WRAP_SHA_256",
                                                      "SM2PKE",
                                                      NULL};
static const char *const wrapping_key_spec_enum[] = {"RSA_2048", "RSA_3072", "RSA_4096", "SM2",
                                                     NULL};
static const char *const expiration_model_enum[] = {"KEY_MATERIAL_EXPIRES",
                                                    "KEY_MATERIAL_DOES_NOT_EXPIRE", NULL};
static const kms_member get_parameters_for_import[] = {
    KEY_ID("KeyId", true),
    {"WrappingAlgorithm", KMS_T_STRING, true, 0, INT64_MAX, wrapping_algorithm_enum, 0, 0},
    {"WrappingKeySpec", KMS_T_STRING, true, 0, INT64_MAX, wrapping_key_spec_enum, 0, 0},
    END};
static const kms_member import_key_material[] = {
    KEY_ID("KeyId", true),
    {"ImportToken", KMS_T_BLOB, true, 1, 6144, NULL, 0, 0},
    {"EncryptedKeyMaterial", KMS_T_BLOB, true, 1, 6144, NULL, 0, 0},
    {"ValidTo", KMS_T_TIMESTAMP, false, 0, 0, NULL, 0, 0},
    {"ExpirationModel", KMS_T_STRING, false, 0, INT64_MAX, expiration_model_enum, 0, 0},
    END};

static const struct {
    const char *name;
    const kms_member *members;
} operations[KMS_OP__COUNT] = {
    [KMS_OP_CREATE_KEY] = {"CreateKey", create_key},
    [KMS_OP_DESCRIBE_KEY] = {"DescribeKey", describe_key},
    [KMS_OP_LIST_KEYS] = {"ListKeys", list_keys},
    [KMS_OP_ENABLE_KEY] = {"EnableKey", key_only},
    [KMS_OP_DISABLE_KEY] = {"DisableKey", key_only},
    [KMS_OP_SCHEDULE_KEY_DELETION] = {"ScheduleKeyDeletion", schedule_deletion},
    [KMS_OP_CANCEL_KEY_DELETION] = {"CancelKeyDeletion", key_only},
    [KMS_OP_UPDATE_KEY_DESCRIPTION] = {"UpdateKeyDescription", update_description},
    [KMS_OP_ROTATE_KEY_ON_DEMAND] = {"RotateKeyOnDemand", key_only},
    [KMS_OP_ENABLE_KEY_ROTATION] = {"EnableKeyRotation", enable_rotation},
    [KMS_OP_DISABLE_KEY_ROTATION] = {"DisableKeyRotation", key_only},
    [KMS_OP_GET_KEY_ROTATION_STATUS] = {"GetKeyRotationStatus", key_only},
    [KMS_OP_LIST_KEY_ROTATIONS] = {"ListKeyRotations", key_paged},
    [KMS_OP_TAG_RESOURCE] = {"TagResource", tag_resource},
    [KMS_OP_UNTAG_RESOURCE] = {"UntagResource", untag_resource},
    [KMS_OP_LIST_RESOURCE_TAGS] = {"ListResourceTags", key_paged},
    [KMS_OP_CREATE_ALIAS] = {"CreateAlias", alias_target},
    [KMS_OP_UPDATE_ALIAS] = {"UpdateAlias", alias_target},
    [KMS_OP_DELETE_ALIAS] = {"DeleteAlias", alias_only},
    [KMS_OP_LIST_ALIASES] = {"ListAliases", list_aliases},
    [KMS_OP_ENCRYPT] = {"Encrypt", encrypt},
    [KMS_OP_DECRYPT] = {"Decrypt", decrypt},
    [KMS_OP_RE_ENCRYPT] = {"ReEncrypt", re_encrypt},
    [KMS_OP_GENERATE_DATA_KEY] = {"GenerateDataKey", data_key},
    [KMS_OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT] = {"GenerateDataKeyWithoutPlaintext", data_key},
    [KMS_OP_GENERATE_RANDOM] = {"GenerateRandom", generate_random},
    [KMS_OP_GET_PARAMETERS_FOR_IMPORT] = {"GetParametersForImport", get_parameters_for_import},
    [KMS_OP_IMPORT_KEY_MATERIAL] = {"ImportKeyMaterial", import_key_material},
    [KMS_OP_DELETE_IMPORTED_KEY_MATERIAL] = {"DeleteImportedKeyMaterial", key_only},
};

const char *kms_op_name(kms_op op)
{
    return (unsigned)op < KMS_OP__COUNT ? operations[op].name : "Unknown";
}

bool kms_op_from_target(const char *target, kms_op *op, kms_fault *f)
{
    size_t plen = strlen(KMS_TARGET_PREFIX);
    if (target == NULL || strncmp(target, KMS_TARGET_PREFIX, plen) != 0) {
        kms_fault_set(f, 400, "UnknownOperationException",
                      "X-Amz-Target must be TrentService.<Operation>");
        return false;
    }
    for (unsigned i = 0; i < KMS_OP__COUNT; i++)
        if (strcmp(target + plen, operations[i].name) == 0) {
            *op = (kms_op)i;
            return true;
        }
    kms_fault_set(f, 400, "UnknownOperationException", "unknown or unsupported operation");
    return false;
}

/* --- member checks ---------------------------------------------------------------------------- */

static const char *type_name(kms_type t)
{
    switch (t) {
    case KMS_T_STRING:
        return "a string";
    case KMS_T_BLOB:
    case KMS_T_SECRET_BLOB:
        return "a base64 string";
    case KMS_T_INT:
        return "an integer";
    case KMS_T_BOOL:
        return "a boolean";
    case KMS_T_STRING_MAP:
        return "an object of strings";
    case KMS_T_TAG_LIST:
        return "a list of tags";
    case KMS_T_STRING_LIST:
        return "a list of strings";
    case KMS_T_TIMESTAMP:
        return "a timestamp (seconds since the epoch)";
    }
    return "?";
}

/* Length in characters (code points) of valid UTF-8, as AWS counts string lengths. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

static bool string_ok(const kms_member *m, const char *what, json_object *v, int64_t min,
                      int64_t max, kms_fault *f)
{
    if (!json_object_is_type(v, json_type_string)) {
        kms_fault_set(f, 400, "ValidationException", "%s must be a string", what);
        return false;
    }
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', n) != NULL) {
        kms_fault_set(f, 400, "ValidationException", "%s must not contain NUL characters", what);
        return false;
    }
    size_t chars = utf8_chars(s, n);
    if ((int64_t)chars < min || (int64_t)chars > max) {
        kms_fault_set(f, 400, "ValidationException",
                      "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                      "Member must have length between %lld and %lld",
                      what, (long long)min, (long long)max);
        return false;
    }
    if (m != NULL && m->enum_values != NULL) {
        for (const char *const *e = m->enum_values; *e != NULL; e++)
            if (strcmp(*e, s) == 0)
                return true;
        kms_fault_set(f, 400, "ValidationException",
                      "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                      "Member must satisfy enum value set",
                      what);
        return false;
    }
    return true;
}

static bool check_member(const kms_member *m, json_object *v, kms_value *out, kms_fault *f)
{
    const char *what = m->name;
    switch (m->type) {
    case KMS_T_STRING:
        if (!string_ok(m, what, v, m->min, m->max, f))
            return false;
        out->str = json_object_get_string(v);
        out->len = (size_t)json_object_get_string_len(v);
        return true;
    case KMS_T_BLOB:
    case KMS_T_SECRET_BLOB: {
        if (!json_object_is_type(v, json_type_string)) {
            kms_fault_set(f, 400, "ValidationException", "%s must be %s", what, type_name(m->type));
            return false;
        }
        p11kms_error err = {0};
        bool secret = m->type == KMS_T_SECRET_BLOB;
        if (cli_base64_decode(what, json_object_get_string(v),
                              (size_t)json_object_get_string_len(v), secret, &out->bytes, &out->len,
                              &err) != P11KMS_OK) {
            if (err.code == P11KMS_E_NO_MEMORY)
                kms_fault_set(f, 500, "KMSInternalException", "out of memory");
            else
                kms_fault_set(f, 400, "SerializationException", "%s is not valid base64", what);
            return false;
        }
        if ((int64_t)out->len < m->min || (int64_t)out->len > m->max) {
            kms_fault_set(f, 400, "ValidationException",
                          "1 validation error detected: Value at '%s' failed to satisfy "
                          "constraint: Member must have length between %lld and %lld",
                          what, (long long)m->min, (long long)m->max);
            return false; /* the caller clears the decoded bytes */
        }
        return true;
    }
    case KMS_T_INT: {
        /* JSON numbers only: 12.0, "12" and true are not integers. */
        if (!json_object_is_type(v, json_type_int)) {
            kms_fault_set(f, 400, "ValidationException", "%s must be an integer", what);
            return false;
        }
        errno = 0;
        int64_t i = json_object_get_int64(v);
        if (errno != 0 || i < m->min || i > m->max) {
            kms_fault_set(f, 400, "ValidationException",
                          "1 validation error detected: Value at '%s' failed to satisfy "
                          "constraint: Member must have value between %lld and %lld",
                          what, (long long)m->min, (long long)m->max);
            return false;
        }
        out->i = i;
        return true;
    }
    case KMS_T_TIMESTAMP: {
        /* The JSON protocol sends timestamps as epoch seconds, with a fraction when there is
         * one. Bounded to years 1970..9999 so that later arithmetic cannot overflow. */
        double d;
        if (json_object_is_type(v, json_type_int)) {
            d = (double)json_object_get_int64(v);
        } else if (json_object_is_type(v, json_type_double)) {
            d = json_object_get_double(v);
        } else {
            kms_fault_set(f, 400, "ValidationException", "%s must be %s", what, type_name(m->type));
            return false;
        }
        if (!(d >= 0 && d < 253402300800.0)) {
            kms_fault_set(f, 400, "ValidationException", "%s is out of range", what);
            return false;
        }
        out->i = (int64_t)d;
        return true;
    }
    case KMS_T_BOOL:
        if (!json_object_is_type(v, json_type_boolean)) {
            kms_fault_set(f, 400, "ValidationException", "%s must be a boolean", what);
            return false;
        }
        out->b = json_object_get_boolean(v);
        return true;
    case KMS_T_STRING_MAP: {
        if (!json_object_is_type(v, json_type_object)) {
            kms_fault_set(f, 400, "ValidationException", "%s must be %s", what, type_name(m->type));
            return false;
        }
        json_object_object_foreach(v, key, value)
        {
            char name[128];
            snprintf(name, sizeof(name), "%s entry", what);
            (void)key;
            if (!string_ok(NULL, name, value, 0, INT64_MAX, f))
                return false;
        }
        out->json = v;
        return true;
    }
    case KMS_T_TAG_LIST:
    case KMS_T_STRING_LIST: {
        if (!json_object_is_type(v, json_type_array)) {
            kms_fault_set(f, 400, "ValidationException", "%s must be %s", what, type_name(m->type));
            return false;
        }
        size_t n = json_object_array_length(v);
        if ((int64_t)n < m->min || (int64_t)n > m->max) {
            kms_fault_set(f, 400, "ValidationException",
                          "1 validation error detected: Value at '%s' failed to satisfy "
                          "constraint: Member must have length between %lld and %lld",
                          what, (long long)m->min, (long long)m->max);
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            char name[128];
            snprintf(name, sizeof(name), "%s.%zu", what, i + 1);
            if (m->type == KMS_T_STRING_LIST) {
                if (!string_ok(NULL, name, e, m->item_min, m->item_max, f))
                    return false;
                continue;
            }
            json_object *k = NULL, *val = NULL;
            if (!json_object_is_type(e, json_type_object)) {
                kms_fault_set(f, 400, "ValidationException", "%s must be a tag object", name);
                return false;
            }
            if (!json_object_object_get_ex(e, "TagKey", &k) ||
                !json_object_object_get_ex(e, "TagValue", &val)) {
                kms_fault_set(f, 400, "ValidationException", "%s must have TagKey and TagValue",
                              name);
                return false;
            }
            char kname[160], vname[160];
            snprintf(kname, sizeof(kname), "%s.TagKey", name);
            snprintf(vname, sizeof(vname), "%s.TagValue", name);
            if (!string_ok(NULL, kname, k, 1, 128, f) || !string_ok(NULL, vname, val, 0, 256, f))
                return false;
        }
        out->json = v;
        return true;
    }
    }
    kms_fault_set(f, 500, "KMSInternalException", "internal error");
    return false;
}

static void clear_values(kms_request *req)
{
    const kms_member *members = operations[req->op].members;
    for (size_t i = 0; i < KMS_MAX_MEMBERS && members[i].name != NULL; i++) {
        kms_value *v = &req->values[i];
        if (v->bytes != NULL)
            cli_bytes_free(v->bytes, v->len + 1, members[i].type == KMS_T_SECRET_BLOB);
        v->bytes = NULL;
        /* The base64 text of a secret is as secret as its bytes. */
        if (members[i].type == KMS_T_SECRET_BLOB && v->present && req->root != NULL) {
            json_object *j = NULL;
            if (json_object_object_get_ex(req->root, members[i].name, &j) &&
                json_object_is_type(j, json_type_string))
                OPENSSL_cleanse((char *)json_object_get_string(j),
                                (size_t)json_object_get_string_len(j));
        }
    }
}

void kms_request_clear(kms_request *req)
{
    if (req == NULL || (unsigned)req->op >= KMS_OP__COUNT)
        return;
    clear_values(req);
    json_object_put(req->root);
    memset(req, 0, sizeof(*req));
}

bool kms_request_decode(kms_op op, const char *body, size_t len, kms_request *req, kms_fault *f)
{
    memset(req, 0, sizeof(*req));
    req->op = op;
    if ((unsigned)op >= KMS_OP__COUNT) {
        kms_fault_set(f, 400, "UnknownOperationException", "unknown operation");
        return false;
    }
    if (len > KMS_MAX_BODY) {
        kms_fault_set(f, 413, "ValidationException", "request body is larger than %d bytes",
                      KMS_MAX_BODY);
        return false;
    }
    json_tokener *tok = json_tokener_new_ex(16);
    if (tok == NULL) {
        kms_fault_set(f, 500, "KMSInternalException", "out of memory");
        return false;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* An empty body is an empty input, as botocore sends for operations without members. */
    json_object *root =
        len == 0 ? json_object_new_object() : json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = len == 0 ? json_tokener_success : json_tokener_get_error(tok);
    /* Everything must be consumed: one value, nothing after it. */
    bool complete = len == 0 || (jerr == json_tokener_success &&
                                 (size_t)json_tokener_get_parse_end(tok) == len);
    json_tokener_free(tok);
    if (root == NULL || !complete) {
        json_object_put(root);
        kms_fault_set(f, 400, "SerializationException", "the request body is not valid JSON%s%s",
                      jerr != json_tokener_success ? ": " : "",
                      jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "");
        return false;
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        kms_fault_set(f, 400, "SerializationException", "the request body must be a JSON object");
        return false;
    }
    req->root = root;
    const kms_member *members = operations[op].members;
    for (size_t i = 0; i < KMS_MAX_MEMBERS && members[i].name != NULL; i++) {
        json_object *v = NULL;
        /* A null member is an absent member, as botocore's serializer would never send it. */
        if (!json_object_object_get_ex(root, members[i].name, &v) || v == NULL) {
            if (members[i].required) {
                kms_fault_set(f, 400, "ValidationException",
                              "1 validation error detected: Value null at '%s' failed to "
                              "satisfy constraint: Member must not be null",
                              members[i].name);
                kms_request_clear(req);
                return false;
            }
            continue;
        }
        req->values[i].present = true;
        if (!check_member(&members[i], v, &req->values[i], f)) {
            kms_request_clear(req);
            return false;
        }
    }
    return true;
}

const kms_value *kms_request_get(const kms_request *req, const char *name)
{
    static const kms_value absent;
    const kms_member *members = operations[req->op].members;
    for (size_t i = 0; i < KMS_MAX_MEMBERS && members[i].name != NULL; i++)
        if (strcmp(members[i].name, name) == 0)
            return &req->values[i];
    return &absent;
}
