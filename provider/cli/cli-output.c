#include "config.h"

#include "cli-output.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli-base64.h"
#include "secret-marker.h"

#define MARKER_PREFIX "p11kms-secret-"
#define MARKER_LEN (SECRET_MARKER_SIZE(MARKER_PREFIX) - 1)

struct cli_out {
    json_object *root;
    bool failed;  /* an allocation failed while building */
    char *secret; /* base64 of the secret, secure heap */
    char marker[MARKER_LEN + 1];
};

cli_out *cli_out_new(void)
{
    cli_out *o = calloc(1, sizeof(*o));
    if (o != NULL && (o->root = json_object_new_object()) == NULL) {
        free(o);
        o = NULL;
    }
    return o;
}

void cli_out_free(cli_out *o)
{
    if (o == NULL)
        return;
    cli_base64_free(o->secret, true);
    json_object_put(o->root);
    free(o);
}

json_object *cli_out_root(cli_out *o)
{
    return o->root;
}

static void add(cli_out *o, json_object *obj, const char *key, json_object *value)
{
    if (obj == NULL || value == NULL || json_object_object_add(obj, key, value) != 0) {
        json_object_put(value);
        o->failed = true;
    }
}

void cli_json_string(cli_out *o, json_object *obj, const char *key, const char *value)
{
    add(o, obj, key, json_object_new_string(value));
}

void cli_json_int(cli_out *o, json_object *obj, const char *key, int64_t value)
{
    add(o, obj, key, json_object_new_int64(value));
}

void cli_json_bool(cli_out *o, json_object *obj, const char *key, bool value)
{
    add(o, obj, key, json_object_new_boolean(value));
}

json_object *cli_json_object(cli_out *o, json_object *obj, const char *key)
{
    json_object *child = json_object_new_object();
    add(o, obj, key, json_object_get(child));
    if (o->failed) {
        json_object_put(child);
        return NULL;
    }
    json_object_put(child); /* the parent holds it now */
    return child;
}

json_object *cli_json_array(cli_out *o, json_object *obj, const char *key)
{
    json_object *child = json_object_new_array();
    add(o, obj, key, json_object_get(child));
    if (o->failed) {
        json_object_put(child);
        return NULL;
    }
    json_object_put(child);
    return child;
}

json_object *cli_json_append_object(cli_out *o, json_object *array)
{
    json_object *child = json_object_new_object();
    if (array == NULL || child == NULL || json_object_array_add(array, child) != 0) {
        json_object_put(child);
        o->failed = true;
        return NULL;
    }
    return child;
}

void cli_json_append_string(cli_out *o, json_object *array, const char *value)
{
    json_object *s = json_object_new_string(value);
    if (array == NULL || s == NULL || json_object_array_add(array, s) != 0) {
        json_object_put(s);
        o->failed = true;
    }
}

void cli_json_base64(cli_out *o, json_object *obj, const char *key, const uint8_t *bytes,
                     size_t len)
{
    char *b64;
    p11kms_error ignored;
    if (cli_base64_encode(bytes, len, false, &b64, &ignored) != P11KMS_OK) {
        o->failed = true;
        return;
    }
    cli_json_string(o, obj, key, b64);
    cli_base64_free(b64, false);
}

void cli_json_secret(cli_out *o, json_object *obj, const char *key, const uint8_t *bytes,
                     size_t len)
{
    p11kms_error ignored;
    if (o->secret != NULL || !secret_marker_new(MARKER_PREFIX, o->marker, sizeof(o->marker))) {
        o->failed = true; /* one secret per result, and the marker must be unguessable */
        return;
    }
    if (cli_base64_encode(bytes, len, true, &o->secret, &ignored) != P11KMS_OK) {
        o->failed = true;
        return;
    }
    cli_json_string(o, obj, key, o->marker);
}

void cli_json_secret_text(cli_out *o, json_object *obj, const char *key, const char *text)
{
    size_t n = text != NULL ? strlen(text) : 0;
    if (o->secret != NULL || text == NULL ||
        !secret_marker_new(MARKER_PREFIX, o->marker, sizeof(o->marker))) {
        o->failed = true; /* one secret per result, and the marker must be unguessable */
        return;
    }
    /* freed like a base64 secret: cli_base64_free(o->secret, true) wipes strlen + 1 bytes */
    o->secret = OPENSSL_secure_malloc(n + 1);
    if (o->secret == NULL) {
        o->failed = true;
        return;
    }
    memcpy(o->secret, text, n + 1);
    cli_json_string(o, obj, key, o->marker);
}

p11kms_err cli_write_all(int fd, const void *buf, size_t len, p11kms_error *err)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return P11KMS_RAISE(err, P11KMS_E_IO, "cannot write the output: %s",
                                w < 0 ? strerror(errno) : "nothing written");
        p += w;
        len -= (size_t)w;
    }
    return P11KMS_OK;
}

/* --- text output: the AWS CLI's rules -------------------------------------------------------
 * An object prints its scalar values on one line, sorted by key and prefixed by its key name in
 * capitals when nested; then each nested object or list under its capitalised key. A list of
 * scalars prints one "NAME\tvalue" line per element. */

typedef struct text_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} text_buf;

static void tb_add(text_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void tb_str(text_buf *b, const char *s)
{
    tb_add(b, s, strlen(s));
}

static void tb_upper(text_buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        char c = *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
        tb_add(b, &c, 1);
    }
}

static bool is_scalar(json_object *v)
{
    return !json_object_is_type(v, json_type_object) && !json_object_is_type(v, json_type_array);
}

static void tb_scalar(text_buf *b, json_object *v)
{
    if (v == NULL) {
        tb_str(b, "None");
    } else if (json_object_is_type(v, json_type_boolean)) {
        tb_str(b, json_object_get_boolean(v) ? "True" : "False");
    } else {
        tb_str(b, json_object_get_string(v));
    }
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted keys of obj (scalar or not). */
static const char **sorted_keys(json_object *obj, size_t *n)
{
    *n = 0;
    size_t len = (size_t)json_object_object_length(obj);
    const char **keys = calloc(len + 1, sizeof(*keys));
    if (keys == NULL)
        return NULL;
    json_object_object_foreach(obj, k, v)
    {
        (void)v;
        keys[(*n)++] = k;
    }
    qsort(keys, *n, sizeof(*keys), compare_keys);
    return keys;
}

static void text_value(text_buf *b, json_object *v, const char *ident, const char **scalar_keys,
                       size_t scalar_count);

static void text_object(text_buf *b, json_object *obj, const char *ident, const char **scalar_keys,
                        size_t scalar_count)
{
    size_t n;
    const char **keys = sorted_keys(obj, &n);
    if (keys == NULL) {
        b->failed = true;
        return;
    }
    bool any = false;
    if (scalar_keys != NULL) {
        /* Elements of a list of objects: same columns for every element. */
        for (size_t i = 0; i < scalar_count; i++) {
            json_object *v = NULL;
            json_object_object_get_ex(obj, scalar_keys[i], &v);
            if (!any && ident != NULL) {
                tb_upper(b, ident);
                tb_str(b, "\t");
            } else if (any) {
                tb_str(b, "\t");
            }
            tb_scalar(b, v);
            any = true;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_object_get(obj, keys[i]);
            if (!is_scalar(v))
                continue;
            if (!any && ident != NULL) {
                tb_upper(b, ident);
                tb_str(b, "\t");
            } else if (any) {
                tb_str(b, "\t");
            }
            tb_scalar(b, v);
            any = true;
        }
    }
    if (any)
        tb_str(b, "\n");
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_object_get(obj, keys[i]);
        if (!is_scalar(v))
            text_value(b, v, keys[i], NULL, 0);
    }
    free(keys);
}

static void text_list(text_buf *b, json_object *list, const char *ident)
{
    size_t n = json_object_array_length(list);
    bool objects = false;
    for (size_t i = 0; i < n; i++)
        objects =
            objects || json_object_is_type(json_object_array_get_idx(list, i), json_type_object);
    if (!objects) {
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_array_get_idx(list, i);
            if (!is_scalar(v)) {
                text_value(b, v, ident, NULL, 0);
                continue;
            }
            if (ident != NULL) {
                tb_upper(b, ident);
                tb_str(b, "\t");
            }
            tb_scalar(b, v);
            tb_str(b, "\n");
        }
        return;
    }
    /* Columns: the union of the scalar keys of every element, sorted. */
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (json_object_is_type(e, json_type_object))
            cap += (size_t)json_object_object_length(e);
    }
    const char **cols = calloc(cap + 1, sizeof(*cols));
    if (cols == NULL) {
        b->failed = true;
        return;
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (!json_object_is_type(e, json_type_object))
            continue;
        json_object_object_foreach(e, k, v)
        {
            if (!is_scalar(v))
                continue;
            bool seen = false;
            for (size_t c = 0; c < count && !seen; c++)
                seen = strcmp(cols[c], k) == 0;
            if (!seen)
                cols[count++] = k;
        }
    }
    qsort(cols, count, sizeof(*cols), compare_keys);
    for (size_t i = 0; i < n; i++)
        text_value(b, json_object_array_get_idx(list, i), ident, cols, count);
    free(cols);
}

static void text_value(text_buf *b, json_object *v, const char *ident, const char **scalar_keys,
                       size_t scalar_count)
{
    if (json_object_is_type(v, json_type_object)) {
        text_object(b, v, ident, scalar_keys, scalar_count);
    } else if (json_object_is_type(v, json_type_array)) {
        text_list(b, v, ident);
    } else {
        if (ident != NULL) {
            tb_upper(b, ident);
            tb_str(b, "\t");
        }
        tb_scalar(b, v);
        tb_str(b, "\n");
    }
}

/* Writes text to stdout with the secret in place of its marker. */
static p11kms_err write_with_secret(cli_out *o, const char *text, size_t len, p11kms_error *err)
{
    if (o->secret == NULL)
        return cli_write_all(STDOUT_FILENO, text, len, err);
    const char *at = strstr(text, o->marker);
    if (at == NULL || strstr(at + MARKER_LEN, o->marker) != NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "output: secret marker not found once");
    size_t before = (size_t)(at - text);
    p11kms_err rc = cli_write_all(STDOUT_FILENO, text, before, err);
    if (rc == P11KMS_OK)
        rc = cli_write_all(STDOUT_FILENO, o->secret, strlen(o->secret), err);
    if (rc == P11KMS_OK)
        rc = cli_write_all(STDOUT_FILENO, at + MARKER_LEN, len - before - MARKER_LEN, err);
    return rc;
}

p11kms_err cli_out_print(cli_out *o, cli_output_mode mode, p11kms_error *err)
{
    if (o->failed)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory building the output");
    if (json_object_object_length(o->root) == 0)
        return P11KMS_OK;
    if (mode == CLI_OUTPUT_JSON) {
        size_t len = 0;
        const char *s = json_object_to_json_string_length(
            o->root,
            JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE,
            &len);
        if (s == NULL)
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory printing JSON");
        p11kms_err rc = write_with_secret(o, s, len, err);
        return rc != P11KMS_OK ? rc : cli_write_all(STDOUT_FILENO, "\n", 1, err);
    }
    text_buf b = {0};
    text_value(&b, o->root, NULL, NULL, 0);
    p11kms_err rc = P11KMS_OK;
    if (b.failed)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory printing text");
    else if (b.len > 0)
        rc = write_with_secret(o, b.data, b.len, err);
    free(b.data);
    return rc;
}
