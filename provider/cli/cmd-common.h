/* Helpers shared by the command implementations. */
#ifndef P11KMS_CLI_CMD_COMMON_H
#define P11KMS_CLI_CMD_COMMON_H

#include <limits.h>
#include <stdlib.h>

#include "cli.h"

/* {"KeyMetadata": {...}} with the KMS API's field names, added to parent. */
void cli_key_metadata_json(cli_out *o, json_object *parent, const p11kms_key_metadata *m);

#endif
