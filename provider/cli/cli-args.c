#include "config.h"

#include "cli-args.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

p11kms_err cli_args_init(cli_args *a, const cli_option *options, size_t max_values,
                         p11kms_error *err)
{
    memset(a, 0, sizeof(*a));
    a->options = options;
    while (options != NULL && options[a->option_count].name != NULL)
        a->option_count++;
    /* One slot per argv word is always enough: a word is at most one value. */
    size_t slots = max_values + 1;
    a->values = calloc(a->option_count + 1, sizeof(*a->values));
    a->counts = calloc(a->option_count + 1, sizeof(*a->counts));
    a->positionals = calloc(slots, sizeof(*a->positionals));
    if (a->values == NULL || a->counts == NULL || a->positionals == NULL)
        goto oom;
    for (size_t i = 0; i < a->option_count; i++)
        if ((a->values[i] = calloc(slots, sizeof(**a->values))) == NULL)
            goto oom;
    return P11KMS_OK;
oom:
    cli_args_clear(a);
    return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory parsing the command line");
}

void cli_args_clear(cli_args *a)
{
    if (a->values != NULL)
        for (size_t i = 0; i < a->option_count; i++)
            free(a->values[i]);
    free(a->values);
    free(a->counts);
    free(a->positionals);
    memset(a, 0, sizeof(*a));
}

/* "--name" or "--name=value": does argv word match name? *inline_value gets the part after '='. */
static bool option_matches(const char *word, const char *name, const char **inline_value)
{
    size_t n = strlen(name);
    if (strncmp(word, "--", 2) != 0 || strncmp(word + 2, name, n) != 0)
        return false;
    if (word[2 + n] == '\0') {
        *inline_value = NULL;
        return true;
    }
    if (word[2 + n] == '=') {
        *inline_value = word + 3 + n;
        return true;
    }
    return false;
}

static p11kms_err take_value(const char *shown, int argc, char **argv, int *i,
                             const char *inline_value, const char *hint, const char **out,
                             p11kms_error *err)
{
    if (inline_value != NULL) {
        *out = inline_value;
        return P11KMS_OK;
    }
    if (*i + 1 >= argc)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s needs a value (see %s)", shown,
                            hint);
    *out = argv[++*i];
    return P11KMS_OK;
}

p11kms_err cli_global_option(cli_globals *g, int argc, char **argv, int *i, bool *taken,
                             p11kms_error *err)
{
    const char *word = argv[*i];
    const char *inline_value;
    const char *value = NULL;
    p11kms_err rc;
    *taken = true;
    if (option_matches(word, "config", &inline_value)) {
        if (g->config_path != NULL)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --config given twice");
        rc = take_value("config", argc, argv, i, inline_value, "p11kms --help", &value, err);
        if (rc != P11KMS_OK)
            return rc;
        if (value[0] == '\0')
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --config: empty path");
        g->config_path = value;
        return P11KMS_OK;
    }
    if (option_matches(word, "output", &inline_value)) {
        rc = take_value("output", argc, argv, i, inline_value, "p11kms --help", &value, err);
        if (rc != P11KMS_OK)
            return rc;
        if (strcmp(value, "json") == 0)
            g->output = CLI_OUTPUT_JSON;
        else if (strcmp(value, "text") == 0)
            g->output = CLI_OUTPUT_TEXT;
        else
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "option --output: '%.64s' is not json or text", value);
        return P11KMS_OK;
    }
    if (strcmp(word, "--help") == 0) {
        g->help = true;
        return P11KMS_OK;
    }
    if (strcmp(word, "--version") == 0) {
        g->version = true;
        return P11KMS_OK;
    }
    if (strcmp(word, "--insecure-pin-file") == 0) {
        g->insecure_pin_file = true;
        return P11KMS_OK;
    }
    static const char *const client_options[] = {"endpoint", "ca-bundle", "client-cert",
                                                 "client-key"};
    const char **client_values[] = {&g->endpoint, &g->ca_bundle, &g->client_cert, &g->client_key};
    for (size_t k = 0; k < sizeof(client_options) / sizeof(client_options[0]); k++) {
        if (!option_matches(word, client_options[k], &inline_value))
            continue;
        if (*client_values[k] != NULL)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s given twice",
                                client_options[k]);
        rc = take_value(client_options[k], argc, argv, i, inline_value, "p11kms --help", &value,
                        err);
        if (rc != P11KMS_OK)
            return rc;
        if (value[0] == '\0')
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s: empty value",
                                client_options[k]);
        *client_values[k] = value;
        return P11KMS_OK;
    }
    *taken = false;
    return P11KMS_OK;
}

static ptrdiff_t find_option(const cli_args *a, const char *word, const char **inline_value)
{
    for (size_t k = 0; k < a->option_count; k++)
        if (option_matches(word, a->options[k].name, inline_value))
            return (ptrdiff_t)k;
    return -1;
}

p11kms_err cli_command_option(cli_args *a, const char *command, int argc, char **argv, int *i,
                              p11kms_error *err)
{
    const char *inline_value;
    char hint[96];
    snprintf(hint, sizeof(hint), "'p11kms %s --help'", command);
    ptrdiff_t k = find_option(a, argv[*i], &inline_value);
    if (k < 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "unknown option %.64s for %s (see %s)",
                            argv[*i], command, hint);
    const cli_option *opt = &a->options[k];
    const char *value = NULL;
    p11kms_err rc;
    switch (opt->kind) {
    case CLI_OPT_FLAG:
        if (inline_value != NULL)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s takes no value (see %s)",
                                opt->name, hint);
        a->counts[k] = 1;
        return P11KMS_OK;
    case CLI_OPT_VALUE:
        if (a->counts[k] != 0)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s given twice (see %s)",
                                opt->name, hint);
        /* fall through */
    case CLI_OPT_REPEAT:
        rc = take_value(opt->name, argc, argv, i, inline_value, hint, &value, err);
        if (rc != P11KMS_OK)
            return rc;
        a->values[k][a->counts[k]++] = value;
        return P11KMS_OK;
    case CLI_OPT_LIST:
        if (inline_value != NULL)
            a->values[k][a->counts[k]++] = inline_value;
        while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
            a->values[k][a->counts[k]++] = argv[++*i];
        if (a->counts[k] == 0)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "option --%s needs at least one value (see %s)", opt->name, hint);
        return P11KMS_OK;
    }
    return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "option --%s: unknown kind", opt->name);
}

p11kms_err cli_args_check_required(const cli_args *a, const char *command, p11kms_error *err)
{
    for (size_t k = 0; k < a->option_count; k++)
        if (a->options[k].required && a->counts[k] == 0)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "%s: missing required option --%s (see 'p11kms %s --help')",
                                command, a->options[k].name, command);
    return P11KMS_OK;
}

static ptrdiff_t option_index(const cli_args *a, const char *name)
{
    for (size_t k = 0; k < a->option_count; k++)
        if (strcmp(a->options[k].name, name) == 0)
            return (ptrdiff_t)k;
    return -1;
}

const char *cli_arg(const cli_args *a, const char *name)
{
    ptrdiff_t k = option_index(a, name);
    return k >= 0 && a->counts[k] > 0 ? a->values[k][0] : NULL;
}

const char *const *cli_arg_list(const cli_args *a, const char *name, size_t *count)
{
    ptrdiff_t k = option_index(a, name);
    *count = k >= 0 ? a->counts[k] : 0;
    return k >= 0 ? a->values[k] : NULL;
}

bool cli_arg_flag(const cli_args *a, const char *name)
{
    ptrdiff_t k = option_index(a, name);
    return k >= 0 && a->counts[k] > 0;
}

p11kms_err cli_parse_unsigned(const char *option, const char *text, unsigned long min,
                              unsigned long max, unsigned long *out, p11kms_error *err)
{
    if (text[0] == '\0' || strspn(text, "0123456789") != strlen(text))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s: '%.32s' is not a whole number",
                            option, text);
    errno = 0;
    char *end = NULL;
    unsigned long v = strtoul(text, &end, 10);
    if (errno == ERANGE || end == NULL || *end != '\0' || v < min || v > max)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "option --%s: %.32s is not in %lu..%lu",
                            option, text, min, max);
    *out = v;
    return P11KMS_OK;
}
