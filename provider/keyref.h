/* Key references as callers write them: key id, alias/NAME, key ARN or alias ARN. */
#ifndef P11KMS_PROVIDER_KEYREF_H
#define P11KMS_PROVIDER_KEYREF_H

#include <stddef.h>

#include "p11kms.h"
#include "provider/service-config.h"

typedef enum keyref_kind { KEYREF_ID, KEYREF_ALIAS } keyref_kind;

/* Splits ref into a key id (lower-case UUID text) or an alias name "alias/NAME". An ARN must be
 * a KMS ARN of this service's partition, region and account. Refused: P11KMS_E_NOT_FOUND for a
 * well-formed reference to nothing here (including a KMS ARN of another partition, region or
 * account), P11KMS_E_INVALID_ARN / P11KMS_E_VALIDATION for malformed ones. */
P11KMS_MUST_CHECK p11kms_err keyref_parse(const service_config *cfg, const char *ref,
                                          keyref_kind *kind, char out[P11KMS_ALIAS_MAX],
                                          p11kms_error *err);
/* "arn:PARTITION:kms:REGION:ACCOUNT:key/ID" */
void keyref_key_arn(const service_config *cfg, const char *id_text, char out[P11KMS_ARN_MAX]);
/* "arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME" for "alias/NAME" */
void keyref_alias_arn(const service_config *cfg, const char *alias, char out[P11KMS_ARN_MAX]);
/* alias/ followed by 1..250 of [A-Za-z0-9/_-]; alias/aws/ is reserved. */
P11KMS_MUST_CHECK p11kms_err keyref_check_alias_name(const char *alias, p11kms_error *err);

#endif
