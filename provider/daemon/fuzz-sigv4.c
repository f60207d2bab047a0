#include "config.h"

/* Fuzz target for the SigV4 Authorization header parser and the verifier around it.
 *
 * Built two ways, like policy/fuzz-policy.c: with clang -fsanitize=fuzzer as a libFuzzer target
 * (`make fuzz-sigv4`), and with -DFUZZ_DRIVER as a plain program that `make check` runs over the
 * seed corpus (tests/daemon-sigv4-fuzz-corpus/), so every seed keeps being checked under ASan and
 * valgrind. The input is one Authorization header value. */

#include "provider/daemon/sigv4.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static p11kms_err fixed_key(void *arg, const char *akid, const char *date, const char *region,
                            const char *service, uint8_t key[32], char *principal_name, size_t size,
                            p11kms_error *err)
{
    (void)arg;
    (void)date;
    (void)region;
    (void)service;
    if (strcmp(akid, "PKMSFUZZKEYAAAAAAAAA") != 0)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "unknown");
    memset(key, 0x5a, 32);
    snprintf(principal_name, size, "fuzz");
    return P11KMS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sigv4_authorization a;
    char why[200];
    sigv4_status st = sigv4_parse_authorization((const char *)data, size, &a, why, sizeof(why));
    if (st != SIGV4_OK && st != SIGV4_INCOMPLETE)
        abort();
    if (st == SIGV4_INCOMPLETE && why[0] == '\0')
        abort(); /* every refusal says why */
    if (st == SIGV4_OK) {
        /* what the parser accepted is well-formed */
        if (a.access_key_id[0] == '\0' || strlen(a.date) != 8 || a.header_count == 0 ||
            a.header_count > SIGV4_SIGNED_HEADERS_MAX)
            abort();
        for (size_t i = 1; i < a.header_count; i++)
            if (strcmp(a.headers[i - 1], a.headers[i]) >= 0)
                abort();
    }
    /* the whole verifier with this header: never accepted without the right signature */
    sigv4_header hs[] = {
        {"Host", 4, "localhost", 9},
        {"X-Amz-Date", 10, "20261130T120000Z", 16},
        {"Content-Type", 12, "application/x-amz-json-1.1", 26},
        {"X-Amz-Target", 12, "TrentService.ListKeys", 21},
        {"Authorization", 13, (const char *)data, size},
    };
    sigv4_request req = {"POST", "/", "", hs, 5, (const uint8_t *)"{}", 2};
    sigv4_expect ex = {"us-east-1", "kms", 1796040000, NULL, fixed_key, NULL};
    sigv4_result res;
    sigv4_status v = sigv4_verify(&req, &ex, &res);
    if (v != SIGV4_OK && (res.error_class == NULL || res.message[0] == '\0'))
        abort();
    return 0;
}

#ifdef FUZZ_DRIVER
#include <dirent.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz-sigv4: cannot open %s\n", path);
        return -1;
    }
    static uint8_t buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static long run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    char *names[1024];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 1024)
        if (e->d_name[0] != '.' && (names[n] = strdup(e->d_name)) != NULL)
            n++;
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            count = run_file(path) != 0 || count < 0 ? -1 : count + 1;
        free(names[i]);
    }
    return count;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "-") == 0)
        return run_file("/dev/stdin") == 0 ? 0 : 99;
    long total = 0;
    if (argc < 2) {
        const char *srcdir = getenv("P11KMS_SRCDIR");
        char corpus[4096];
        snprintf(corpus, sizeof(corpus), "%s/tests/daemon-sigv4-fuzz-corpus",
                 srcdir ? srcdir : ".");
        total = run_dir(corpus);
        if (total <= 0) {
            fprintf(stderr, "fuzz-sigv4: no seeds in %s\n", corpus);
            return 99;
        }
        printf("fuzz-sigv4: %ld seeds processed\n", total);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode) ? run_dir(argv[i])
                 : run_file(argv[i]) == 0                       ? 1
                                                                : -1;
        if (n < 0)
            return 99;
        total += n;
    }
    printf("fuzz-sigv4: %ld inputs processed\n", total);
    return 0;
}
#endif
