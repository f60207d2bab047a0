#include "config.h"

#include "cli-input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "cli-base64.h"

void cli_bytes_clear(cli_bytes *b)
{
    cli_bytes_free(b->data, b->len, b->secret);
    memset(b, 0, sizeof(*b));
}

static void *alloc_bytes(size_t n, bool secret)
{
    return secret ? OPENSSL_secure_malloc(n) : OPENSSL_malloc(n);
}

/* Grows buf (capacity *cap, used bytes len) to at least want bytes, wiping the old copy. */
static bool grow(uint8_t **buf, size_t *cap, size_t len, size_t want, bool secret)
{
    size_t n = *cap;
    while (n < want)
        n *= 2;
    uint8_t *p = alloc_bytes(n, secret);
    if (p == NULL)
        return false;
    if (len > 0)
        memcpy(p, *buf, len);
    cli_bytes_free(*buf, *cap, secret);
    *buf = p;
    *cap = n;
    return true;
}

p11kms_err cli_read_file(const char *option, const char *path, bool secret, cli_bytes *out,
                         p11kms_error *err)
{
    memset(out, 0, sizeof(*out));
    out->secret = secret;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot open %.200s: %s", option, path,
                            strerror(errno));
    p11kms_err rc = P11KMS_OK;
    struct stat st;
    size_t cap = 4096;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
        if ((uintmax_t)st.st_size > CLI_MAX_FILE) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "%s: %.200s is larger than the %zu-byte limit", option, path,
                              CLI_MAX_FILE);
            goto out;
        }
        cap = (size_t)st.st_size + 1; /* +1 lets the read loop see end of file at once */
    }
    size_t len = 0;
    uint8_t *buf = alloc_bytes(cap, secret);
    if (buf == NULL) {
        rc =
            P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory reading %.200s", option, path);
        goto out;
    }
    for (;;) {
        if (len == cap && !grow(&buf, &cap, len, cap + 1, secret)) {
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "%s: out of memory reading %.200s", option,
                              path);
            break;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = P11KMS_RAISE(err, P11KMS_E_IO, "%s: cannot read %.200s: %s", option, path,
                              strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > CLI_MAX_FILE) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "%s: %.200s is larger than the %zu-byte limit", option, path,
                              CLI_MAX_FILE);
            break;
        }
    }
    if (rc != P11KMS_OK) {
        cli_bytes_free(buf, cap, secret);
        goto out;
    }
    /* Keep the allocation size for the wipe: clear what was read, free with len. The unused
     * tail was never written, so wiping len bytes wipes every secret byte. */
    out->data = buf;
    out->len = len;
out:
    close(fd);
    return rc;
}

p11kms_err cli_blob_param(const char *option, const char *value, bool secret, cli_bytes *out,
                          p11kms_error *err)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(value, "fileb://", 8) == 0)
        return cli_read_file(option, value + 8, secret, out, err);
    out->secret = secret;
    if (strncmp(value, "file://", 7) == 0) {
        cli_bytes text;
        p11kms_err rc = cli_read_file(option, value + 7, secret, &text, err);
        if (rc != P11KMS_OK)
            return rc;
        rc = cli_base64_decode(option, (const char *)text.data, text.len, secret, &out->data,
                               &out->len, err);
        cli_bytes_clear(&text);
        return rc;
    }
    return cli_base64_decode(option, value, strlen(value), secret, &out->data, &out->len, err);
}

p11kms_err cli_text_param(const char *option, const char *value, const char **out, char **owned,
                          p11kms_error *err)
{
    *owned = NULL;
    *out = value;
    if (strncmp(value, "file://", 7) != 0)
        return P11KMS_OK;
    cli_bytes b;
    p11kms_err rc = cli_read_file(option, value + 7, false, &b, err);
    if (rc != P11KMS_OK)
        return rc;
    size_t n = b.len;
    if (memchr(b.data, '\0', n) != NULL) {
        cli_bytes_clear(&b);
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: %.200s contains a NUL byte", option,
                            value + 7);
    }
    if (n > 0 && b.data[n - 1] == '\n')
        n--;
    if (n > 0 && b.data[n - 1] == '\r')
        n--;
    char *s = malloc(n + 1);
    if (s == NULL) {
        cli_bytes_clear(&b);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    memcpy(s, b.data, n);
    s[n] = '\0';
    cli_bytes_clear(&b);
    *owned = s;
    *out = s;
    return P11KMS_OK;
}

p11kms_err cli_context_param(const char *option, const char *value, p11kms_context **out,
                             p11kms_error *err)
{
    *out = NULL;
    if (value == NULL)
        return P11KMS_OK;
    const char *text;
    char *owned;
    p11kms_err rc = cli_text_param(option, value, &text, &owned, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = p11kms_context_parse(text, out, err);
    if (rc != P11KMS_OK) {
        /* Name the option: the library's message only says what is wrong with the text. */
        char msg[sizeof(err->message)];
        snprintf(msg, sizeof(msg), "%s", err->message);
        P11KMS_RAISE(err, rc, "%s: %s", option, msg);
    }
    free(owned);
    return rc;
}

/* --- tags ------------------------------------------------------------------------------------ */

static char *keep_string(cli_tags *t, const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    t->strings[t->string_count++] = copy;
    return copy;
}

void cli_tags_clear(cli_tags *t)
{
    for (size_t i = 0; i < t->string_count; i++)
        free(t->strings[i]);
    free(t->strings);
    free(t->tags);
    memset(t, 0, sizeof(*t));
}

static p11kms_err tags_reserve(cli_tags *t, size_t n, p11kms_error *err)
{
    t->tags = calloc(n == 0 ? 1 : n, sizeof(*t->tags));
    t->strings = calloc(2 * n + 1, sizeof(*t->strings));
    if (t->tags == NULL || t->strings == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory parsing tags");
    return P11KMS_OK;
}

/* One shorthand item "TagKey=k,TagValue=v" (either order). */
static p11kms_err tag_shorthand(const char *option, const char *item, cli_tags *t,
                                p11kms_error *err)
{
    const char *key = NULL;
    const char *value = NULL;
    size_t key_len = 0;
    size_t value_len = 0;
    const char *p = item;
    for (;;) {
        size_t field = strcspn(p, ",");
        const char *eq = memchr(p, '=', field);
        if (eq == NULL)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "%s: '%.64s' is not TagKey=KEY,TagValue=VALUE", option, item);
        size_t name_len = (size_t)(eq - p);
        const char **slot;
        size_t *slot_len;
        if (name_len == 6 && strncmp(p, "TagKey", 6) == 0) {
            slot = &key;
            slot_len = &key_len;
        } else if (name_len == 8 && strncmp(p, "TagValue", 8) == 0) {
            slot = &value;
            slot_len = &value_len;
        } else {
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "%s: unknown field '%.*s' (want TagKey and TagValue)", option,
                                (int)(name_len > 32 ? 32 : name_len), p);
        }
        if (*slot != NULL)
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: '%.64s' repeats a field", option,
                                item);
        *slot = eq + 1;
        *slot_len = field - name_len - 1;
        if (p[field] == '\0')
            break;
        p += field + 1;
    }
    if (key == NULL || value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: '%.64s' needs both TagKey and TagValue",
                            option, item);
    p11kms_tag *tag = &t->tags[t->count];
    if ((tag->key = keep_string(t, key, key_len)) == NULL ||
        (tag->value = keep_string(t, value, value_len)) == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory parsing tags");
    t->count++;
    return P11KMS_OK;
}

static p11kms_err parse_json(const char *option, const char *text, json_object **out,
                             p11kms_error *err)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory parsing JSON");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    size_t len = strlen(text);
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (obj == NULL || jerr != json_tokener_success ||
        strspn(text + used, " \t\r\n") != len - used) {
        json_object_put(obj);
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: malformed JSON: %s", option,
                            jerr != json_tokener_success ? json_tokener_error_desc(jerr)
                                                         : "trailing characters");
    }
    *out = obj;
    return P11KMS_OK;
}

static p11kms_err tags_json(const char *option, const char *text, cli_tags *t, p11kms_error *err)
{
    json_object *list;
    p11kms_err rc = parse_json(option, text, &list, err);
    if (rc != P11KMS_OK)
        return rc;
    if (!json_object_is_type(list, json_type_array)) {
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: JSON form must be a list", option);
        goto out;
    }
    size_t n = json_object_array_length(list);
    if ((rc = tags_reserve(t, n, err)) != P11KMS_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(list, i);
        json_object *k = NULL;
        json_object *v = NULL;
        if (!json_object_is_type(item, json_type_object) || json_object_object_length(item) != 2 ||
            !json_object_object_get_ex(item, "TagKey", &k) ||
            !json_object_object_get_ex(item, "TagValue", &v) ||
            !json_object_is_type(k, json_type_string) ||
            !json_object_is_type(v, json_type_string)) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "%s: item %zu is not {\"TagKey\": \"...\", \"TagValue\": \"...\"}",
                              option, i);
            goto out;
        }
        const char *ks = json_object_get_string(k);
        const char *vs = json_object_get_string(v);
        size_t kl = (size_t)json_object_get_string_len(k);
        size_t vl = (size_t)json_object_get_string_len(v);
        if (memchr(ks, '\0', kl) != NULL || memchr(vs, '\0', vl) != NULL) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: item %zu contains a NUL", option, i);
            goto out;
        }
        p11kms_tag *tag = &t->tags[t->count];
        if ((tag->key = keep_string(t, ks, kl)) == NULL ||
            (tag->value = keep_string(t, vs, vl)) == NULL) {
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory parsing tags");
            goto out;
        }
        t->count++;
    }
out:
    json_object_put(list);
    return rc;
}

p11kms_err cli_tags_param(const char *option, const char *const *values, size_t n, cli_tags *out,
                          p11kms_error *err)
{
    memset(out, 0, sizeof(*out));
    p11kms_err rc;
    if (n == 1 && (values[0][0] == '[' || strncmp(values[0], "file://", 7) == 0)) {
        const char *text;
        char *owned;
        if ((rc = cli_text_param(option, values[0], &text, &owned, err)) != P11KMS_OK)
            return rc;
        rc = tags_json(option, text, out, err);
        free(owned);
    } else {
        rc = tags_reserve(out, n, err);
        for (size_t i = 0; rc == P11KMS_OK && i < n; i++)
            rc = tag_shorthand(option, values[i], out, err);
    }
    if (rc != P11KMS_OK)
        cli_tags_clear(out);
    return rc;
}

void cli_strings_clear(cli_strings *s)
{
    for (size_t i = 0; s->owned != NULL && i < s->owned_count; i++)
        free(s->owned[i]);
    free(s->owned);
    free(s->items);
    memset(s, 0, sizeof(*s));
}

p11kms_err cli_tag_keys_param(const char *option, const char *const *values, size_t n,
                              cli_strings *out, p11kms_error *err)
{
    memset(out, 0, sizeof(*out));
    if (n != 1 || values[0][0] != '[') {
        if ((out->items = calloc(n + 1, sizeof(*out->items))) == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < n; i++)
            out->items[i] = values[i];
        out->count = n;
        return P11KMS_OK;
    }
    json_object *list;
    p11kms_err rc = parse_json(option, values[0], &list, err);
    if (rc != P11KMS_OK)
        return rc;
    size_t len = json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    if (len == 0) {
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: JSON form must be a non-empty list",
                          option);
        goto out;
    }
    out->items = calloc(len, sizeof(*out->items));
    out->owned = calloc(len, sizeof(*out->owned));
    if (out->items == NULL || out->owned == NULL) {
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        json_object *s = json_object_array_get_idx(list, i);
        if (!json_object_is_type(s, json_type_string)) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "%s: item %zu is not a string", option, i);
            goto out;
        }
        if ((out->owned[i] = strdup(json_object_get_string(s))) == NULL) {
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
            goto out;
        }
        out->owned_count++;
        out->items[i] = out->owned[i];
        out->count++;
    }
out:
    json_object_put(list);
    if (rc != P11KMS_OK)
        cli_strings_clear(out);
    return rc;
}
