/* The KMS operations of p11kmsd: a decoded request performed through the public API in
 * p11kms.h as one principal, and its response body or error as AWS KMS JSON 1.1 states them. */
#ifndef P11KMS_DAEMON_KMS_OPS_H
#define P11KMS_DAEMON_KMS_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "kms-request.h"
#include "p11kms.h"

typedef struct kms_reply {
    unsigned status; /* HTTP status */
    char *body;      /* JSON; secure heap when secret */
    size_t len;
    bool secret;              /* the body holds plaintext key material */
    const char *klass;        /* exception class, NULL on success (for the log) */
    char key[P11KMS_ARN_MAX]; /* key the request named or used, for the log; may be empty */
} kms_reply;

/* Performs req as who and fills reply (status, body). Never fails: every error becomes an
 * error body. */
void kms_ops_perform(p11kms *svc, const p11kms_principal *who, const kms_request *req,
                     kms_reply *reply);

/* Fills reply with the error body of a fault. */
void kms_reply_fault(kms_reply *reply, const kms_fault *f);

/* Frees the body (wiping it when secret). */
void kms_reply_clear(kms_reply *reply);

/* The client-visible fault for a library error: the model's exception class, AWS's status,
 * and for server-side failures a generic message (the details go to the log only). */
void kms_fault_from_error(p11kms_err rc, const p11kms_error *err, kms_fault *f);

#endif
