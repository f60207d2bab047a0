/* Command results: built as a json-c object with the KMS API's field names, printed as pretty
 * JSON or as the AWS CLI's tab-separated text. A secret (a base64 plaintext) never enters json-c
 * or stdio: the object holds a random marker, and the secret is spliced in while writing
 * straight to file descriptor 1, then wiped. */
#ifndef P11KMS_CLI_OUTPUT_H
#define P11KMS_CLI_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "cli-args.h"
#include "p11kms-error.h"

typedef struct cli_out cli_out;

cli_out *cli_out_new(void);
void cli_out_free(cli_out *o);
json_object *cli_out_root(cli_out *o);

/* Builders: an allocation failure is remembered and reported by cli_out_print. */
void cli_json_string(cli_out *o, json_object *obj, const char *key, const char *value);
void cli_json_int(cli_out *o, json_object *obj, const char *key, int64_t value);
void cli_json_bool(cli_out *o, json_object *obj, const char *key, bool value);
json_object *cli_json_object(cli_out *o, json_object *obj, const char *key);
json_object *cli_json_array(cli_out *o, json_object *obj, const char *key);
json_object *cli_json_append_object(cli_out *o, json_object *array);
void cli_json_append_string(cli_out *o, json_object *array, const char *value);
/* Non-secret bytes as base64 (CiphertextBlob). */
void cli_json_base64(cli_out *o, json_object *obj, const char *key, const uint8_t *bytes,
                     size_t len);
/* The one secret of a result (Plaintext), as base64. */
void cli_json_secret(cli_out *o, json_object *obj, const char *key, const uint8_t *bytes,
                     size_t len);

/* The one secret of a result given as text (a secret access key), copied to the secure heap. */
void cli_json_secret_text(cli_out *o, json_object *obj, const char *key, const char *text);
/* Writes the result; an empty root object prints nothing (like the AWS CLI for actions without
 * output). */
p11kms_err cli_out_print(cli_out *o, cli_output_mode mode, p11kms_error *err);

/* Writes all of buf to fd, retrying short writes. */
p11kms_err cli_write_all(int fd, const void *buf, size_t len, p11kms_error *err);

#endif
