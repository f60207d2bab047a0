#include "config.h"

/* Fuzz target for p11kmsd's request decoder (X-Amz-Target and JSON body -> operation input).
 *
 * Input: the operation name, a newline, then the request body. Built two ways, like
 * policy/fuzz-policy.c: with clang -fsanitize=fuzzer as a libFuzzer target
 * (`make fuzz-kms-request`), and with -DFUZZ_DRIVER as a plain program that `make check` runs
 * over the seed corpus (tests/kms-request-fuzz-corpus/); `fuzz-kms-request -` reads one input
 * from stdin. */

#include "kms-request.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fault(const kms_fault *f)
{
    /* Every refusal is a client error or 413/500 with a class and a one-line message. */
    if (f->klass == NULL || f->klass[0] == '\0' ||
        (f->status != 400 && f->status != 413 && f->status != 500))
        abort();
    if (strchr(f->message, '\n') != NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 64 ? size : 64);
    char target[128];
    size_t name_len = nl != NULL ? (size_t)(nl - data) : 0;
    snprintf(target, sizeof(target), "%s%.*s", KMS_TARGET_PREFIX, (int)name_len,
             (const char *)data);
    const char *body = nl != NULL ? (const char *)nl + 1 : (const char *)data;
    size_t body_len = nl != NULL ? size - name_len - 1 : size;

    kms_op op;
    kms_fault f = {0};
    if (!kms_op_from_target(target, &op, &f)) {
        check_fault(&f);
        op = KMS_OP_ENCRYPT; /* still exercise the decoder */
    }
    kms_request req;
    if (kms_request_decode(op, body, body_len, &req, &f)) {
        /* Every member reads back with the type the shape gives it. */
        static const char *const names[] = {
            "KeyId", "Plaintext", "CiphertextBlob", "EncryptionContext", "Tags", "TagKeys",
            "Limit", "Marker",    "DryRun",         "NumberOfBytes"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            const kms_value *v = kms_request_get(&req, names[i]);
            if (v->present && v->str != NULL && strlen(v->str) > v->len)
                abort();
        }
        kms_request_clear(&req);
    } else {
        check_fault(&f);
    }
    return 0;
}

#ifdef FUZZ_DRIVER
#include <dirent.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz-kms-request: cannot open %s\n", path);
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
    fclose(f);
    if (buf == NULL) {
        fprintf(stderr, "fuzz-kms-request: out of memory reading %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
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
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **grown = realloc(names, (n + 1) * sizeof(*names));
        if (grown == NULL)
            break;
        names = grown;
        names[n] = strdup(e->d_name);
        if (names[n] != NULL)
            n++;
    }
    closedir(d);
    if (n > 0) /* qsort's base must not be NULL, even for zero elements */
        qsort(names, n, sizeof(*names), cmp_names);
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096 + 260];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) != 0)
                count = -1;
            else if (count >= 0)
                count++;
        }
        free(names[i]);
    }
    free(names);
    return count;
}

/* Inputs too big to keep in the repository, made at run time. */
static void run_generated(void)
{
    size_t len = 2 * KMS_MAX_BODY;
    char *big = malloc(len + 16);
    if (big == NULL)
        abort();
    /* Just over the body limit. */
    size_t o = (size_t)snprintf(big, 16, "Encrypt\n");
    memset(big + o, ' ', KMS_MAX_BODY + 1);
    LLVMFuzzerTestOneInput((const uint8_t *)big, o + KMS_MAX_BODY + 1);
    /* Deep nesting past json-c's depth bound. */
    memset(big + o, '[', KMS_MAX_BODY - 1);
    LLVMFuzzerTestOneInput((const uint8_t *)big, o + KMS_MAX_BODY - 1);
    /* A plaintext just over 4096 bytes, in valid base64. */
    o += (size_t)snprintf(big + o, 64, "{\"KeyId\":\"k\",\"Plaintext\":\"");
    for (size_t i = 0; i < 5464; i++)
        big[o++] = 'A';
    o += (size_t)snprintf(big + o, 8, "\"}");
    LLVMFuzzerTestOneInput((const uint8_t *)big, o);
    free(big);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "-") == 0)
        return run_file("/dev/stdin") == 0 ? 0 : 99;
    const char *srcdir = getenv("P11KMS_SRCDIR");
    char corpus[4096];
    if (argc >= 2)
        snprintf(corpus, sizeof(corpus), "%s", argv[1]);
    else
        snprintf(corpus, sizeof(corpus), "%s/tests/kms-request-fuzz-corpus", srcdir ? srcdir : ".");
    long total = run_dir(corpus);
    if (total <= 0) {
        fprintf(stderr, "fuzz-kms-request: no seeds in %s\n", corpus);
        return 99;
    }
    run_generated();
    printf("fuzz-kms-request: %ld seeds and 3 generated inputs processed\n", total);
    return 0;
}
#endif
