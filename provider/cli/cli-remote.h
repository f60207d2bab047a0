/* Client mode of the p11kms command line: the command goes to p11kmsd over the AWS KMS JSON 1.1
 * protocol (POST /, X-Amz-Target: TrentService.OPERATION) instead of to a token this process
 * opens. The daemon authenticates the caller (SO_PEERCRED on its Unix socket, the client
 * certificate over TLS); this process never loads the token module nor reads the PIN. */
#ifndef P11KMS_CLI_REMOTE_H
#define P11KMS_CLI_REMOTE_H

#include <stdbool.h>

#include "cli.h"

/* Whether the endpoint matters to this command: false for commands that need neither the
 * service nor the daemon (policy check, audit show), which run the same in both modes. */
bool cli_remote_applies(const cli_command *cmd);

/* The endpoint: --endpoint, else $P11KMS_ENDPOINT, else "endpoint:" in the configuration.
 * *endpoint is NULL for local mode; free it with free(). */
p11kms_err cli_remote_endpoint(const cli *c, char **endpoint, p11kms_error *err);

/* Runs c->command against the daemon at endpoint, filling c->out with the API's response (the
 * Plaintext of a response as the one secret of the result). Commands the daemon does not serve
 * are refused with a message saying so. */
p11kms_err cli_remote_run(cli *c, const char *endpoint, p11kms_error *err);

#endif
