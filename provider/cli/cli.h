/* The p11kms command line: what every command receives, and the command table. */
#ifndef P11KMS_CLI_H
#define P11KMS_CLI_H

#include <stdbool.h>

#include "cli-args.h"
#include "cli-input.h"
#include "cli-output.h"
#include "p11kms.h"

typedef struct cli cli;

typedef struct cli_command {
    const char *name;     /* "encrypt", or "token info" for a two-word command */
    const char *summary;  /* one line for the command list */
    const char *usage;    /* positional arguments in the synopsis ("FILE"), or NULL */
    unsigned positionals; /* exactly this many positional arguments */
    const char *details;  /* paragraph printed by "p11kms COMMAND --help", may be NULL */
    const cli_option *options;
    p11kms_err (*run)(cli *c, p11kms_error *err);
} cli_command;

struct cli {
    cli_globals globals;
    const cli_command *command;
    cli_args args;
    cli_out *out;
    p11kms *svc;           /* opened by cli_service on first use */
    p11kms_principal *who; /* the OS user running the CLI */
};

/* Opens the service and the caller's principal (once). Commands that need neither, such as
 * "policy check", never call it, so they work without a configuration or a token. */
p11kms_err cli_service(cli *c, p11kms_error *err);
/* cli_service with more P11KMS_OPEN_* flags (token info: P11KMS_OPEN_TOKEN_REPORT). */
p11kms_err cli_service_with(cli *c, unsigned extra_flags, p11kms_error *err);

/* Every command, in the order of the help listing; terminated by name NULL. */
extern const cli_command cli_commands[];

/* Finds a command by its words (argv[0], and argv[1] for two-word commands). *used receives how
 * many words the name took. */
const cli_command *cli_find_command(int argc, char **argv, int *used, p11kms_error *err);

/* Help for one command, or the overview when cmd is NULL, on stdout. */
void cli_print_help(const cli_command *cmd);

/* Commands (one file per family). */
p11kms_err cli_cmd_create_key(cli *c, p11kms_error *err);
p11kms_err cli_cmd_describe_key(cli *c, p11kms_error *err);
p11kms_err cli_cmd_list_keys(cli *c, p11kms_error *err);
p11kms_err cli_cmd_enable_key(cli *c, p11kms_error *err);
p11kms_err cli_cmd_disable_key(cli *c, p11kms_error *err);
p11kms_err cli_cmd_schedule_key_deletion(cli *c, p11kms_error *err);
p11kms_err cli_cmd_cancel_key_deletion(cli *c, p11kms_error *err);
p11kms_err cli_cmd_update_key_description(cli *c, p11kms_error *err);

p11kms_err cli_cmd_rotate_key_on_demand(cli *c, p11kms_error *err);
p11kms_err cli_cmd_enable_key_rotation(cli *c, p11kms_error *err);
p11kms_err cli_cmd_disable_key_rotation(cli *c, p11kms_error *err);
p11kms_err cli_cmd_get_key_rotation_status(cli *c, p11kms_error *err);
p11kms_err cli_cmd_list_key_rotations(cli *c, p11kms_error *err);

p11kms_err cli_cmd_tag_resource(cli *c, p11kms_error *err);
p11kms_err cli_cmd_untag_resource(cli *c, p11kms_error *err);
p11kms_err cli_cmd_list_resource_tags(cli *c, p11kms_error *err);
p11kms_err cli_cmd_create_alias(cli *c, p11kms_error *err);
p11kms_err cli_cmd_update_alias(cli *c, p11kms_error *err);
p11kms_err cli_cmd_delete_alias(cli *c, p11kms_error *err);
p11kms_err cli_cmd_list_aliases(cli *c, p11kms_error *err);

p11kms_err cli_cmd_encrypt(cli *c, p11kms_error *err);
p11kms_err cli_cmd_decrypt(cli *c, p11kms_error *err);
p11kms_err cli_cmd_re_encrypt(cli *c, p11kms_error *err);
p11kms_err cli_cmd_generate_data_key(cli *c, p11kms_error *err);
p11kms_err cli_cmd_generate_data_key_without_plaintext(cli *c, p11kms_error *err);
p11kms_err cli_cmd_generate_random(cli *c, p11kms_error *err);

p11kms_err cli_cmd_generate_child_key(cli *c, p11kms_error *err);
p11kms_err cli_cmd_unwrap_child_key(cli *c, p11kms_error *err);

p11kms_err cli_cmd_get_parameters_for_import(cli *c, p11kms_error *err);
p11kms_err cli_cmd_import_key_material(cli *c, p11kms_error *err);
p11kms_err cli_cmd_delete_imported_key_material(cli *c, p11kms_error *err);

p11kms_err cli_cmd_token_info(cli *c, p11kms_error *err);
p11kms_err cli_cmd_maintain(cli *c, p11kms_error *err);
p11kms_err cli_cmd_store_migrate(cli *c, p11kms_error *err);
p11kms_err cli_cmd_policy_check(cli *c, p11kms_error *err);
p11kms_err cli_cmd_policy_explain(cli *c, p11kms_error *err);
p11kms_err cli_cmd_audit_verify(cli *c, p11kms_error *err);
p11kms_err cli_cmd_audit_show(cli *c, p11kms_error *err);

/* positionals value of commands taking one or more arguments (FILE...). */
#define CLI_ONE_OR_MORE 4096u

p11kms_err cli_cmd_credentials_create(cli *c, p11kms_error *err);
p11kms_err cli_cmd_credentials_list(cli *c, p11kms_error *err);
p11kms_err cli_cmd_credentials_delete(cli *c, p11kms_error *err);

#endif
