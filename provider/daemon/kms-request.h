/* Decoding of AWS KMS JSON 1.1 requests: the operation named by X-Amz-Target and its input
 * members, checked strictly against the operation's shape (member types, lengths, ranges,
 * enums, required members) before anything is performed. Unknown members are ignored, as AWS
 * does, because newer SDKs send members an older server lacks.
 *
 * Depends only on json-c, OpenSSL (base64, secure heap) and the error currency, so that the
 * decoder is a fuzz target of its own (provider/daemon/fuzz-kms-request.c). */
#ifndef P11KMS_DAEMON_KMS_REQUEST_H
#define P11KMS_DAEMON_KMS_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define KMS_MAX_BODY (64 * 1024) /* larger requests are refused with 413 */
#define KMS_TARGET_PREFIX "TrentService."
#define KMS_CONTENT_TYPE "application/x-amz-json-1.1"

typedef enum kms_op {
    KMS_OP_CREATE_KEY,
    KMS_OP_DESCRIBE_KEY,
    KMS_OP_LIST_KEYS,
    KMS_OP_ENABLE_KEY,
    KMS_OP_DISABLE_KEY,
    KMS_OP_SCHEDULE_KEY_DELETION,
    KMS_OP_CANCEL_KEY_DELETION,
    KMS_OP_UPDATE_KEY_DESCRIPTION,
    KMS_OP_ROTATE_KEY_ON_DEMAND,
    KMS_OP_ENABLE_KEY_ROTATION,
    KMS_OP_DISABLE_KEY_ROTATION,
    KMS_OP_GET_KEY_ROTATION_STATUS,
    KMS_OP_LIST_KEY_ROTATIONS,
    KMS_OP_TAG_RESOURCE,
    KMS_OP_UNTAG_RESOURCE,
    KMS_OP_LIST_RESOURCE_TAGS,
    KMS_OP_CREATE_ALIAS,
    KMS_OP_UPDATE_ALIAS,
    KMS_OP_DELETE_ALIAS,
    KMS_OP_LIST_ALIASES,
    KMS_OP_ENCRYPT,
    KMS_OP_DECRYPT,
    KMS_OP_RE_ENCRYPT,
    KMS_OP_GENERATE_DATA_KEY,
    KMS_OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT,
    KMS_OP_GENERATE_RANDOM,
    KMS_OP_GET_PARAMETERS_FOR_IMPORT,
    KMS_OP_IMPORT_KEY_MATERIAL,
    KMS_OP_DELETE_IMPORTED_KEY_MATERIAL,
    KMS_OP__COUNT
} kms_op;

/* A refusal as the client sees it: HTTP status, exception class and message. */
typedef struct kms_fault {
    unsigned status;
    const char *klass;
    char message[512];
} kms_fault;

void kms_fault_set(kms_fault *f, unsigned status, const char *klass, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef enum kms_type {
    KMS_T_STRING,
    KMS_T_BLOB,        /* base64 in JSON, bytes after decoding */
    KMS_T_SECRET_BLOB, /* as KMS_T_BLOB, decoded into the secure heap */
    KMS_T_INT,
    KMS_T_BOOL,
    KMS_T_STRING_MAP, /* JSON object of strings (encryption context) */
    KMS_T_TAG_LIST,   /* [{"TagKey": .., "TagValue": ..}] */
    KMS_T_STRING_LIST,
    KMS_T_TIMESTAMP, /* epoch seconds, a JSON integer or number (fractions dropped) */
} kms_type;

typedef struct kms_member {
    const char *name;
    kms_type type;
    bool required;
    int64_t min, max;               /* length (characters or bytes), count or integer range */
    const char *const *enum_values; /* NULL-terminated, or NULL */
    int64_t item_min, item_max;     /* lists: length of each item */
} kms_member;

#define KMS_MAX_MEMBERS 10

typedef struct kms_value {
    bool present;
    const char *str; /* KMS_T_STRING; valid while the request lives */
    uint8_t *bytes;  /* blobs */
    size_t len;
    int64_t i;
    bool b;
    json_object *json; /* maps and lists, already checked */
} kms_value;

typedef struct kms_request {
    kms_op op;
    json_object *root;
    kms_value values[KMS_MAX_MEMBERS];
} kms_request;

/* The operation named by an X-Amz-Target header value ("TrentService.Encrypt"). Returns false
 * and fills f for a missing prefix or an unknown operation. */
bool kms_op_from_target(const char *target, kms_op *op, kms_fault *f);
/* "Encrypt" etc. */
const char *kms_op_name(kms_op op);

/* Parses and checks body (which need not be NUL-terminated) as the input of op. Returns false
 * with f filled (ValidationException or SerializationException, status 400); req then holds
 * nothing to clear. On success clear req with kms_request_clear. */
bool kms_request_decode(kms_op op, const char *body, size_t len, kms_request *req, kms_fault *f);

/* The value of a member of op's input shape (absent members have present == false). The name
 * must be one of the shape's members. */
const kms_value *kms_request_get(const kms_request *req, const char *name);

/* Wipes decoded secrets and the secret text inside the parsed JSON, then frees. */
void kms_request_clear(kms_request *req);

#endif
