/* The check-time driver shared by every fuzz target: runs LLVMFuzzerTestOneInput over each file
 * of the target's seed corpus (FUZZ_CORPUS, a directory relative to $P11KMS_SRCDIR, set by the
 * build), then over the target's generated inputs if it has any. With arguments it runs the
 * given files and directories instead ("-" is standard input), which replays a crash that
 * libFuzzer saved. A broken invariant aborts, so the test fails with the input's name printed
 * just before. */
#include "config.h"

#include "fuzz.h"

#include <dirent.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_CORPUS
#error "FUZZ_CORPUS must name the seed corpus directory"
#endif

/* Weak: only some targets have generated inputs. */
__attribute__((weak)) void fuzz_generated_inputs(void);

static int run_file(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz driver: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, len = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf != NULL && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf == NULL) {
        fprintf(stderr, "fuzz driver: out of memory reading %s\n", path);
        return -1;
    }
    /* Named first, so that an abort is attributed to its input. */
    fprintf(stderr, "fuzz driver: %s (%zu bytes)\n", path, len);
    /* An exact-size copy: ASan then catches a read one byte past the input. */
    uint8_t *exact = malloc(len > 0 ? len : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of a directory, in name order. Returns the count or -1. */
static long run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "fuzz driver: cannot open directory %s\n", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    bool failed = false;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **grown = realloc(names, (n + 1) * sizeof(*names));
        if (grown == NULL || (grown[n] = strdup(e->d_name)) == NULL) {
            names = grown != NULL ? grown : names;
            failed = true;
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_names);
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        if (!failed && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) != 0)
                failed = true;
            else
                count++;
        }
        free(names[i]);
    }
    free(names);
    return failed ? -1 : count;
}

int main(int argc, char **argv)
{
    long total = 0;
    if (argc < 2) {
        const char *srcdir = getenv("P11KMS_SRCDIR");
        char corpus[4096];
        snprintf(corpus, sizeof(corpus), "%s/%s", srcdir != NULL ? srcdir : ".", FUZZ_CORPUS);
        total = run_dir(corpus);
        if (total <= 0) {
            fprintf(stderr, "fuzz driver: no seeds in %s\n", corpus);
            return 99;
        }
        if (fuzz_generated_inputs != NULL)
            fuzz_generated_inputs();
        printf("%s: %ld seeds%s processed\n", FUZZ_CORPUS, total,
               fuzz_generated_inputs != NULL ? " and the generated inputs" : "");
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n;
        if (strcmp(argv[i], "-") != 0 && stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            n = run_dir(argv[i]);
        else
            n = run_file(argv[i]) == 0 ? 1 : -1;
        if (n < 0)
            return 99;
        total += n;
    }
    printf("fuzz driver: %ld inputs processed\n", total);
    return 0;
}
