/* Fuzz target: the command-line option parser (provider/cli/cli-args.c), driven the way
 * p11kms's main loop drives it: global options anywhere, then the command's options, the other
 * words positional. Input: the argv words, each ended by a NUL byte (argv[0] is implicit).
 *
 * Invariants: every value points into an argv word (the whole word, or the part after '=');
 * single-value options and flags are counted at most once; a parsed command line written back in
 * canonical form ("--name=value") parses to the same values; a refusal is a validation error
 * with a message; cli_parse_unsigned agrees with a reference decimal reader. */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "provider/cli/cli-args.h"

#define MAX_WORDS 256
#define POSITIONALS 2

static const cli_option options[] = {
    {"key-id", CLI_OPT_VALUE, true, "KEY_ID", "a required single value"},
    {"key", CLI_OPT_VALUE, false, "K", "a prefix of another option's name"},
    {"encryption-context", CLI_OPT_VALUE, false, "CONTEXT", "an optional single value"},
    {"tag-keys", CLI_OPT_LIST, false, "KEY...", "a list"},
    {"parent", CLI_OPT_REPEAT, false, "KEY_ID", "repeated"},
    {"dry-run", CLI_OPT_FLAG, false, NULL, "a flag"},
    {NULL, CLI_OPT_FLAG, false, NULL, NULL},
};
#define OPTION_COUNT (sizeof(options) / sizeof(options[0]) - 1)

typedef struct parsed {
    cli_globals globals;
    cli_args args;
} parsed;

/* p11kms-main.c's loop, without the command lookup (a fixed command takes these options). */
static p11kms_err parse(parsed *p, int argc, char **argv, p11kms_error *err)
{
    memset(p, 0, sizeof(*p));
    p11kms_err rc = cli_args_init(&p->args, options, (size_t)argc, err);
    if (rc != P11KMS_OK)
        return rc;
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        int before = i;
        if (strncmp(word, "--", 2) == 0) {
            bool taken;
            if ((rc = cli_global_option(&p->globals, argc, argv, &i, &taken, err)) != P11KMS_OK)
                return rc;
            if (!taken &&
                (rc = cli_command_option(&p->args, "fuzz", argc, argv, &i, err)) != P11KMS_OK)
                return rc;
            FUZZ_ASSERT(i >= before && i < argc);
            continue;
        }
        if (p->args.positional_count >= POSITIONALS)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "fuzz: unexpected argument");
        p->args.positionals[p->args.positional_count++] = word;
    }
    return cli_args_check_required(&p->args, "fuzz", err);
}

/* A value is a whole argv word or the tail of one after "--name=". */
static bool points_into_argv(const char *v, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (v == argv[i])
            return true;
        if (v > argv[i] && v <= argv[i] + n && v[-1] == '=' && strncmp(argv[i], "--", 2) == 0)
            return true;
    }
    return false;
}

static void check_parsed(const parsed *p, int argc, char **argv)
{
    size_t total = p->args.positional_count;
    FUZZ_ASSERT(p->args.option_count == OPTION_COUNT);
    for (size_t k = 0; k < OPTION_COUNT; k++) {
        size_t n = p->args.counts[k];
        total += n;
        if (options[k].kind == CLI_OPT_VALUE || options[k].kind == CLI_OPT_FLAG)
            FUZZ_ASSERT(n <= 1);
        if (options[k].required)
            FUZZ_ASSERT(n >= 1);
        for (size_t j = 0; options[k].kind != CLI_OPT_FLAG && j < n; j++)
            FUZZ_ASSERT(points_into_argv(p->args.values[k][j], argc, argv));
    }
    FUZZ_ASSERT(total <= (size_t)argc);
    FUZZ_ASSERT(p->globals.config_path == NULL ||
                (p->globals.config_path[0] != '\0' &&
                 points_into_argv(p->globals.config_path, argc, argv)));
    FUZZ_ASSERT(p->globals.output == CLI_OUTPUT_JSON || p->globals.output == CLI_OUTPUT_TEXT);
    FUZZ_ASSERT(cli_arg_flag(&p->args, "dry-run") == (p->args.counts[5] > 0));
    FUZZ_ASSERT(cli_arg(&p->args, "key-id") == p->args.values[0][0]);
    FUZZ_ASSERT(cli_arg(&p->args, "no-such-option") == NULL);
}

/* Words of the canonical spelling; NULL when a list value cannot be written back (a list takes
 * following words only up to the next "--"). */
static char **canonical(const parsed *p, int *argc_out)
{
    size_t cap = 8 + (size_t)p->args.positional_count;
    for (size_t k = 0; k < OPTION_COUNT; k++)
        cap += p->args.counts[k];
    char **words = calloc(cap + 1, sizeof(*words));
    FUZZ_ASSERT(words != NULL);
    int n = 0;
    bool ok = true;
    words[n++] = strdup("p11kms");
    if (p->globals.config_path != NULL) {
        size_t size = strlen(p->globals.config_path) + 10;
        words[n] = malloc(size);
        FUZZ_ASSERT(words[n] != NULL);
        snprintf(words[n++], size, "--config=%s", p->globals.config_path);
    }
    words[n++] = strdup(p->globals.output == CLI_OUTPUT_TEXT ? "--output=text" : "--output=json");
    if (p->globals.help)
        words[n++] = strdup("--help");
    if (p->globals.version)
        words[n++] = strdup("--version");
    /* Positionals first: after a list option they would be taken as its values. */
    for (size_t j = 0; j < p->args.positional_count; j++)
        words[n++] = strdup(p->args.positionals[j]);
    for (size_t k = 0; k < OPTION_COUNT; k++) {
        for (size_t j = 0; j < p->args.counts[k]; j++) {
            const char *v = p->args.values[k][j];
            const char *name = options[k].name;
            if (options[k].kind == CLI_OPT_FLAG) {
                size_t size = strlen(name) + 3;
                words[n] = malloc(size);
                FUZZ_ASSERT(words[n] != NULL);
                snprintf(words[n++], size, "--%s", name);
            } else if (options[k].kind == CLI_OPT_LIST && j > 0) {
                ok = ok && strncmp(v, "--", 2) != 0;
                words[n++] = strdup(v);
            } else {
                size_t size = strlen(name) + strlen(v) + 4;
                words[n] = malloc(size);
                FUZZ_ASSERT(words[n] != NULL);
                snprintf(words[n++], size, "--%s=%s", name, v);
            }
        }
    }
    for (int i = 0; i < n; i++)
        FUZZ_ASSERT(words[i] != NULL);
    *argc_out = n;
    if (!ok) {
        for (int i = 0; i < n; i++)
            free(words[i]);
        free(words);
        return NULL;
    }
    return words;
}

static void check_round_trip(const parsed *p)
{
    int argc;
    char **argv = canonical(p, &argc);
    if (argv == NULL)
        return;
    parsed q;
    p11kms_error err = {0};
    if (parse(&q, argc, argv, &err) != P11KMS_OK) {
        fprintf(stderr, "canonical command line refused: %s\n", err.message);
        FUZZ_ASSERT(!"the canonical spelling of a parsed command line parses");
    }
    FUZZ_ASSERT(q.globals.output == p->globals.output && q.globals.help == p->globals.help &&
                q.globals.version == p->globals.version);
    FUZZ_ASSERT((q.globals.config_path == NULL) == (p->globals.config_path == NULL));
    FUZZ_ASSERT(q.globals.config_path == NULL ||
                strcmp(q.globals.config_path, p->globals.config_path) == 0);
    FUZZ_ASSERT(q.args.positional_count == p->args.positional_count);
    for (size_t j = 0; j < p->args.positional_count; j++)
        FUZZ_ASSERT(strcmp(q.args.positionals[j], p->args.positionals[j]) == 0);
    for (size_t k = 0; k < OPTION_COUNT; k++) {
        FUZZ_ASSERT(q.args.counts[k] == p->args.counts[k]);
        for (size_t j = 0; options[k].kind != CLI_OPT_FLAG && j < p->args.counts[k]; j++)
            FUZZ_ASSERT(strcmp(q.args.values[k][j], p->args.values[k][j]) == 0);
    }
    cli_args_clear(&q.args);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}

/* Reference: digits only, no sign or blanks, value in min..max without overflow. */
static void check_unsigned(const char *text)
{
    unsigned long v = 0;
    p11kms_error err = {0};
    bool ok = cli_parse_unsigned("n", text, 1, 2560, &v, &err) == P11KMS_OK;
    bool digits = text[0] != '\0' && strspn(text, "0123456789") == strlen(text);
    unsigned long expect = 0;
    bool in_range = digits;
    for (const char *c = text; digits && *c != '\0' && in_range; c++) {
        expect = expect * 10 + (unsigned long)(*c - '0');
        in_range = expect <= 2560;
    }
    in_range = in_range && expect >= 1;
    FUZZ_ASSERT(ok == in_range);
    FUZZ_ASSERT(!ok || v == expect);
    FUZZ_ASSERT(ok || (err.code == P11KMS_E_VALIDATION && err.message[0] != '\0'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The words are copied into one buffer; a missing final NUL is supplied. */
    char *buf = malloc(size + 1);
    char **argv = calloc(MAX_WORDS + 2, sizeof(*argv));
    if (buf == NULL || argv == NULL) {
        free(buf);
        free(argv);
        return 0;
    }
    memcpy(buf, data, size);
    buf[size] = '\0';
    int argc = 0;
    argv[argc++] = "p11kms";
    for (size_t o = 0; o < size && argc <= MAX_WORDS; o += strlen(buf + o) + 1)
        argv[argc++] = buf + o;
    argv[argc] = NULL;

    parsed p;
    p11kms_error err = {0};
    p11kms_err rc = parse(&p, argc, argv, &err);
    if (rc == P11KMS_OK) {
        check_parsed(&p, argc, argv);
        check_round_trip(&p);
    } else {
        FUZZ_ASSERT(rc == P11KMS_E_VALIDATION && err.message[0] != '\0');
    }
    cli_args_clear(&p.args);
    for (int i = 1; i < argc; i++)
        check_unsigned(argv[i]);
    free(argv);
    free(buf);
    return 0;
}
