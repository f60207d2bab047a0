/* Command-line options of p11kms: the option tables each command declares, and the parser that
 * fills them from argv the way the AWS CLI does (global options anywhere, "--name value",
 * "--name=value", list options taking every following word up to the next "--option"). */
#ifndef P11KMS_CLI_ARGS_H
#define P11KMS_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "p11kms-error.h"

typedef enum cli_opt_kind {
    CLI_OPT_VALUE,  /* exactly one value, given at most once */
    CLI_OPT_LIST,   /* one or more values: --tag-keys a b c */
    CLI_OPT_REPEAT, /* one value per occurrence, kept in order: --parent A --parent B */
    CLI_OPT_FLAG,   /* no value */
} cli_opt_kind;

typedef struct cli_option {
    const char *name; /* without the leading "--" */
    cli_opt_kind kind;
    bool required;
    const char *meta; /* how the value is shown in help, e.g. "KEY_ID" */
    const char *help;
} cli_option;

/* The parsed values of one command's options; values point into argv. */
typedef struct cli_args {
    const cli_option *options;
    size_t option_count;
    const char ***values; /* values[i]: the values given for options[i] */
    size_t *counts;
    const char **positionals;
    size_t positional_count;
} cli_args;

/* Global options, recognised before or after the command. */
typedef enum cli_output_mode { CLI_OUTPUT_JSON, CLI_OUTPUT_TEXT } cli_output_mode;

typedef struct cli_globals {
    const char *config_path; /* NULL: the library's default ($P11KMS_CONFIG, then /etc) */
    cli_output_mode output;
    bool help;
    bool version;
    bool insecure_pin_file; /* --insecure-pin-file: development only */
    /* Client mode (provider/cli/cli-remote.h): the daemon's endpoint and TLS files. */
    const char *endpoint;
    const char *ca_bundle;
    const char *client_cert;
    const char *client_key;
} cli_globals;

p11kms_err cli_args_init(cli_args *a, const cli_option *options, size_t max_values,
                         p11kms_error *err);
void cli_args_clear(cli_args *a);

/* Consumes the option argv[*i] (which starts with "--") if it is a global option. Returns
 * P11KMS_OK and sets *taken when it was one; an error for a global option without its value. */
p11kms_err cli_global_option(cli_globals *g, int argc, char **argv, int *i, bool *taken,
                             p11kms_error *err);

/* Consumes the command option argv[*i] into a. command names the command for messages. */
p11kms_err cli_command_option(cli_args *a, const char *command, int argc, char **argv, int *i,
                              p11kms_error *err);

/* Checks that every required option was given. */
p11kms_err cli_args_check_required(const cli_args *a, const char *command, p11kms_error *err);

/* The single value of an option, or NULL when absent. */
const char *cli_arg(const cli_args *a, const char *name);
/* All values of a list or repeated option (count 0 when absent). */
const char *const *cli_arg_list(const cli_args *a, const char *name, size_t *count);
bool cli_arg_flag(const cli_args *a, const char *name);

/* Strict unsigned decimal: digits only, no sign or spaces, min..max. option names the option for
 * the message. */
p11kms_err cli_parse_unsigned(const char *option, const char *text, unsigned long min,
                              unsigned long max, unsigned long *out, p11kms_error *err);

#endif
