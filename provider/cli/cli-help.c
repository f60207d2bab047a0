#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_overview(void)
{
    printf("usage: p11kms [--config PATH] [--output json|text] COMMAND [OPTIONS]\n"
           "       p11kms COMMAND --help\n"
           "       p11kms --version\n"
           "\n"
           "Manages and uses keys whose master keys never leave a PKCS#11 token, with the\n"
           "commands, options and output field names of \"aws kms\". The caller is the OS user\n"
           "running p11kms; no option takes a PIN or a principal.\n"
           "\n"
           "Global options (before or after the command):\n"
           "  --config PATH        configuration file (default: $P11KMS_CONFIG,\n"
           "                       else %s)\n"
           "  --output json|text   output format (default: json)\n"
           "  --help               this overview, or the help of a command\n"
           "  --version            print the version\n"
           "  --insecure-pin-file  accept a PIN file readable by others (development only)\n"
           "  --endpoint URL       client mode: send the command to p11kmsd at\n"
           "                       unix:/PATH, https://HOST:PORT or http://127.0.0.1:PORT\n"
           "                       (default: $P11KMS_ENDPOINT, else endpoint: in the config);\n"
           "                       the token module and the PIN are never touched\n"
           "  --ca-bundle FILE     client mode over https: CA certificates (PEM) to trust\n"
           "  --client-cert FILE   client mode over https: client certificate (PEM)\n"
           "  --client-key FILE    client mode over https: its private key (PEM)\n"
           "\n"
           "Commands:\n",
           P11KMS_DEFAULT_CONFIG);
    for (const cli_command *c = cli_commands; c->name != NULL; c++)
        printf("  %-36s %s\n", c->name, c->summary);
    printf(
        "\n"
        "Chains of keys below a master key (generate-child-key, unwrap-child-key) are named\n"
        "with repeated --parent BLOB[@CONTEXT], from the top: see 'p11kms generate-child-key\n"
        "--help'.\n"
        "\n"
        "A failure prints one line on stderr, \"p11kms: EXCEPTION: MESSAGE\", and exits with\n"
        "the error's code (1 ValidationException ... 24 KMSInternalException, see p11kms(1)).\n");
}

#define HELP_WIDTH 92
#define HELP_INDENT 28

/* "  LEFT  text..." with text wrapped at word boundaries under its own column. */
static void print_wrapped(const char *left, const char *text)
{
    int col = printf("  %s", left);
    if (col >= HELP_INDENT) {
        printf("\n");
        col = 0;
    }
    printf("%*s", HELP_INDENT - col, "");
    col = HELP_INDENT;
    const char *p = text;
    while (*p != '\0') {
        size_t word = strcspn(p, " ");
        if (col > HELP_INDENT && col + 1 + (int)word > HELP_WIDTH) {
            printf("\n%*s", HELP_INDENT, "");
            col = HELP_INDENT;
        } else if (col > HELP_INDENT) {
            printf(" ");
            col++;
        }
        printf("%.*s", (int)word, p);
        col += (int)word;
        p += word;
        while (*p == ' ')
            p++;
    }
    printf("\n");
}

static void print_command(const cli_command *cmd)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "usage: p11kms [global options] %s", cmd->name);
    printf("%s", line);
    size_t width = (size_t)n;
    for (const cli_option *o = cmd->options; o->name != NULL; o++) {
        char part[160];
        const char *dots = o->kind == CLI_OPT_REPEAT ? " ..." : "";
        if (o->kind == CLI_OPT_FLAG)
            snprintf(part, sizeof(part), " [--%s]", o->name);
        else if (o->required)
            snprintf(part, sizeof(part), " --%s %s%s", o->name, o->meta, dots);
        else
            snprintf(part, sizeof(part), " [--%s %s]%s", o->name, o->meta, dots);
        if (width + strlen(part) > HELP_WIDTH) {
            printf("\n       ");
            width = 7;
        }
        printf("%s", part);
        width += strlen(part);
    }
    if (cmd->usage != NULL)
        printf(" %s", cmd->usage);
    printf("\n\n%s.\n", cmd->summary);
    if (cmd->options[0].name != NULL) {
        printf("\nOptions:\n");
        for (const cli_option *o = cmd->options; o->name != NULL; o++) {
            char left[96];
            char text[512];
            snprintf(left, sizeof(left), "--%s%s%s", o->name, o->meta != NULL ? " " : "",
                     o->meta != NULL ? o->meta : "");
            snprintf(text, sizeof(text), "%s%s", o->help, o->required ? " (required)" : "");
            print_wrapped(left, text);
        }
    }
    if (cmd->details != NULL)
        printf("\n%s", cmd->details);
}

void cli_print_help(const cli_command *cmd)
{
    if (cmd == NULL)
        print_overview();
    else
        print_command(cmd);
}
