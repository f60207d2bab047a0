/* p11kms: the command-line front end of libp11kms, shaped like "aws kms". */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-remote.h"
#include "cli.h"

p11kms_err cli_service(cli *c, p11kms_error *err)
{
    return cli_service_with(c, 0, err);
}

p11kms_err cli_service_with(cli *c, unsigned extra_flags, p11kms_error *err)
{
    if (c->svc != NULL)
        return P11KMS_OK;
    p11kms_err rc = p11kms_principal_from_process(&c->who, err);
    if (rc != P11KMS_OK)
        return rc;
    unsigned flags = P11KMS_OPEN_NO_CORE_DUMPS | extra_flags;
    if (c->globals.insecure_pin_file)
        flags |= P11KMS_OPEN_INSECURE_PIN_FILE;
    return p11kms_open_with(c->globals.config_path, flags, &c->svc, err);
}

static p11kms_err parse(cli *c, int argc, char **argv, p11kms_error *err)
{
    bool help_word = false;
    p11kms_err rc;
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        if (strncmp(word, "--", 2) == 0) {
            bool taken;
            if ((rc = cli_global_option(&c->globals, argc, argv, &i, &taken, err)) != P11KMS_OK)
                return rc;
            if (taken)
                continue;
            if (c->command == NULL)
                return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                    "unknown option %.64s (see 'p11kms --help')", word);
            if ((rc = cli_command_option(&c->args, c->command->name, argc, argv, &i, err)) !=
                P11KMS_OK)
                return rc;
            continue;
        }
        if (c->command == NULL) {
            if (!help_word && strcmp(word, "help") == 0) {
                help_word = true;
                c->globals.help = true;
                continue;
            }
            int used = 1;
            c->command = cli_find_command(argc - i, argv + i, &used, err);
            if (c->command == NULL)
                return err->code;
            if ((rc = cli_args_init(&c->args, c->command->options, (size_t)argc, err)) !=
                P11KMS_OK) {
                c->command = NULL;
                return rc;
            }
            i += used - 1;
            continue;
        }
        if (c->args.positional_count >= c->command->positionals)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "%s: unexpected argument '%.64s' (see 'p11kms %s --help')",
                                c->command->name, word, c->command->name);
        c->args.positionals[c->args.positional_count++] = word;
    }
    return P11KMS_OK;
}

static p11kms_err check_complete(const cli *c, p11kms_error *err)
{
    if (c->command == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "no command given (see 'p11kms --help')");
    p11kms_err rc = cli_args_check_required(&c->args, c->command->name, err);
    bool count_ok = c->command->positionals == CLI_ONE_OR_MORE
                        ? c->args.positional_count > 0
                        : c->args.positional_count == c->command->positionals;
    if (rc == P11KMS_OK && !count_ok)
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: missing %s (see 'p11kms %s --help')",
                          c->command->name, c->command->usage != NULL ? c->command->usage : "",
                          c->command->name);
    return rc;
}

/* Exactly one line on stderr, whatever the message holds: messages quote user input (key ids,
 * option values, file names), and no byte of it may reach the terminal as a control. */
static void report(p11kms_err rc, const p11kms_error *err)
{
    const char *text = err->message[0] != '\0' ? err->message : p11kms_strerror(rc);
    char msg[4 * sizeof(err->message)];
    p11kms_escape(msg, sizeof(msg), text, strnlen(text, sizeof(err->message)), 0);
    fprintf(stderr, "p11kms: %s: %s\n", p11kms_error_class(rc), msg);
}

int main(int argc, char **argv)
{
    cli c;
    p11kms_error err;
    memset(&c, 0, sizeof(c));
    memset(&err, 0, sizeof(err));
    bool help_anywhere = false;
    for (int i = 1; i < argc; i++)
        help_anywhere = help_anywhere || strcmp(argv[i], "--help") == 0;

    p11kms_err rc = parse(&c, argc, argv, &err);
    if (help_anywhere || c.globals.help) {
        /* Help wins over a half-typed command line. */
        cli_print_help(c.command);
        rc = P11KMS_OK;
        goto done;
    }
    if (rc == P11KMS_OK && c.globals.version) {
        printf("p11kms %s\n", PACKAGE_VERSION);
        goto done;
    }
    if (rc == P11KMS_OK)
        rc = check_complete(&c, &err);
    /* Before any command reads a secret (--plaintext, key material): no core dumps, and the
     * secure heap exists, so that secret inputs go straight into it. */
    if (rc == P11KMS_OK)
        rc = p11kms_protect_process(P11KMS_OPEN_NO_CORE_DUMPS, &err);
    if (rc == P11KMS_OK && (c.out = cli_out_new()) == NULL)
        rc = P11KMS_RAISE(&err, P11KMS_E_NO_MEMORY, "out of memory");
    /* Client mode when an endpoint is named: the daemon does the work, and this process never
     * loads the token module nor reads the PIN. */
    char *endpoint = NULL;
    if (rc == P11KMS_OK && cli_remote_applies(c.command))
        rc = cli_remote_endpoint(&c, &endpoint, &err);
    if (rc == P11KMS_OK)
        rc = endpoint != NULL ? cli_remote_run(&c, endpoint, &err) : c.command->run(&c, &err);
    free(endpoint);
    if (rc == P11KMS_OK)
        rc = cli_out_print(c.out, c.globals.output, &err);
done:
    cli_out_free(c.out);
    p11kms_close(c.svc);
    p11kms_principal_free(c.who);
    cli_args_clear(&c.args);
    if (rc != P11KMS_OK) {
        report(rc, &err);
        if (rc < P11KMS_OK || rc >= P11KMS_E__COUNT)
            rc = P11KMS_E_INTERNAL;
    }
    return (int)rc;
}
