#include "config.h"

#include "check.h"

int check_failures;
int check_count;

const char *test_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr,
                "environment variable %s is not set: run this test through make check "
                "(tests/lib/with-token.sh)\n",
                name);
        exit(99);
    }
    return v;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(99);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    REQUIRE(buf != NULL);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            REQUIRE(buf != NULL);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

const char *test_vector_path(const char *relative)
{
    static char path[4096];
    const char *dir = test_env("P11KMS_SRCDIR");
    int n = snprintf(path, sizeof(path), "%s/tests/vectors/%s", dir, relative);
    REQUIRE(n > 0 && (size_t)n < sizeof(path));
    return path;
}

int check_finish(const char *test_name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", test_name, check_count, check_failures);
    if (check_count == 0)
        return 99; /* a test that checked nothing cannot fail: treat as broken */
    return check_failures == 0 ? 0 : 1;
}
