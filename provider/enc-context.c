#include "config.h"

#include "enc-context.h"
#include "common/utf8.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct enc_context {
    enc_context_pair *pairs; /* always in canonical order: ascending key bytes, unique */
    size_t count;
    size_t cap;
    size_t serialized_len; /* kept up to date so buffers can be sized in O(1) */
    /* The canonical bytes, rebuilt whenever the pairs change (never while the context is being
     * read), so that serializing on the encrypt path is one copy. */
    uint8_t *canon;
    size_t canon_cap;
};

#define PAIR_OVERHEAD 4 /* u16 key_len + u16 value_len */
#define COUNT_LEN 2

/* --- UTF-8 ---------------------------------------------------------------------------------- */

bool enc_context_utf8_valid(const uint8_t *s, size_t len)
{
    /* One UTF-8 definition for the project: the policy layer's (RFC 3629, strict). */
    return policy_utf8_valid((const char *)s, len);
}

/* --- messages ------------------------------------------------------------------------------- */

/* A key quoted for a one-line message (p11kms_escape: controls and invalid UTF-8 as \xNN, long
 * keys cut). Context keys are not secret (they appear in audit logs), but they may hold
 * anything. */
static const char *quote(const char *s, size_t len, char out[96])
{
    return p11kms_escape(out, 96, s, len, P11KMS_ESCAPE_QUOTED);
}

/* --- building ------------------------------------------------------------------------------- */

enc_context *enc_context_new(void)
{
    return calloc(1, sizeof(enc_context));
}

void enc_context_free(enc_context *ctx)
{
    if (ctx == NULL)
        return;
    for (size_t i = 0; i < ctx->count; i++)
        free((char *)ctx->pairs[i].key); /* value shares the key's allocation */
    free(ctx->pairs);
    free(ctx->canon);
    free(ctx);
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Index of key if present (*found), else where it would be inserted. */
static size_t find(const enc_context *ctx, const char *key, size_t key_len, bool *found)
{
    size_t lo = 0, hi = ctx->count;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(ctx->pairs[mid].key, ctx->pairs[mid].key_len, key, key_len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static p11kms_err check_string(const char *what, const char *key, size_t key_len, const char *s,
                               size_t len, p11kms_error *err)
{
    char q[96];
    if (memchr(s, '\0', len) != NULL)
        return P11KMS_RAISE(
            err, P11KMS_E_VALIDATION, "encryption context: %s%s%s contains a NUL character", what,
            key != NULL ? " of key " : "", key != NULL ? quote(key, key_len, q) : "");
    if (!enc_context_utf8_valid((const uint8_t *)s, len))
        return P11KMS_RAISE(
            err, P11KMS_E_VALIDATION, "encryption context: %s%s%s is not valid UTF-8", what,
            key != NULL ? " of key " : "", key != NULL ? quote(key, key_len, q) : "");
    return P11KMS_OK;
}

/* Validates a pair and builds its storage (one allocation: key NUL value NUL). */
static p11kms_err make_pair(const enc_context *ctx, const char *key, size_t key_len,
                            const char *value, size_t value_len, enc_context_pair *pair,
                            size_t *new_len, p11kms_error *err)
{
    p11kms_err rc;
    char q[96];
    if ((key == NULL && key_len > 0) || (value == NULL && value_len > 0))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: missing key or value");
    if (key == NULL)
        key = "";
    if (value == NULL)
        value = "";
    if ((rc = check_string("key", NULL, 0, key, key_len, err)) != P11KMS_OK)
        return rc;
    if ((rc = check_string("value", key, key_len, value, value_len, err)) != P11KMS_OK)
        return rc;
    /* Compared before adding so that nothing can overflow: each term is checked on its own. */
    size_t base = ctx->count > 0 ? ctx->serialized_len : COUNT_LEN;
    if (key_len > ENC_CONTEXT_MAX_SERIALIZED || value_len > ENC_CONTEXT_MAX_SERIALIZED ||
        base + PAIR_OVERHEAD + key_len + value_len > ENC_CONTEXT_MAX_SERIALIZED)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "encryption context: adding key \"%s\" makes it longer than %d "
                            "bytes serialized",
                            quote(key, key_len, q), ENC_CONTEXT_MAX_SERIALIZED);
    char *mem = malloc(key_len + value_len + 2);
    if (mem == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    memcpy(mem, key, key_len);
    mem[key_len] = '\0';
    memcpy(mem + key_len + 1, value, value_len);
    mem[key_len + 1 + value_len] = '\0';
    pair->key = mem;
    pair->key_len = key_len;
    pair->value = mem + key_len + 1;
    pair->value_len = value_len;
    *new_len = base + PAIR_OVERHEAD + key_len + value_len;
    return P11KMS_OK;
}

static p11kms_err reserve_one(enc_context *ctx, p11kms_error *err)
{
    if (ctx->count < ctx->cap)
        return P11KMS_OK;
    size_t cap = ctx->cap ? ctx->cap * 2 : 4;
    enc_context_pair *p = realloc(ctx->pairs, cap * sizeof(*p));
    if (p == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    ctx->pairs = p;
    ctx->cap = cap;
    return P11KMS_OK;
}

static p11kms_err duplicate(const char *key, size_t key_len, p11kms_error *err)
{
    char q[96];
    return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: duplicate key \"%s\"",
                        quote(key, key_len, q));
}

static p11kms_err reserve_canon(enc_context *ctx, size_t need, p11kms_error *err)
{
    if (need <= ctx->canon_cap)
        return P11KMS_OK;
    uint8_t *p = realloc(ctx->canon, need);
    if (p == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    ctx->canon = p;
    ctx->canon_cap = need;
    return P11KMS_OK;
}

/* Rewrites the canonical bytes from the sorted pairs; capacity was reserved by the caller. The
 * count and lengths fit in u16: make_pair bounds the whole serialization by 65,535. */
static void write_canon(enc_context *ctx)
{
    if (ctx->count == 0)
        return;
    buf_writer w;
    buf_writer_init(&w, ctx->canon, ctx->canon_cap);
    buf_write_u16be(&w, (uint16_t)ctx->count);
    for (size_t i = 0; i < ctx->count; i++) {
        const enc_context_pair *p = &ctx->pairs[i];
        buf_write_u16be(&w, (uint16_t)p->key_len);
        buf_write_bytes(&w, p->key, p->key_len);
        buf_write_u16be(&w, (uint16_t)p->value_len);
        buf_write_bytes(&w, p->value, p->value_len);
    }
}

p11kms_err enc_context_add_n(enc_context *ctx, const char *key, size_t key_len, const char *value,
                             size_t value_len, p11kms_error *err)
{
    if (ctx == NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "encryption context: NULL context");
    enc_context_pair pair;
    size_t new_len;
    p11kms_err rc = make_pair(ctx, key, key_len, value, value_len, &pair, &new_len, err);
    if (rc != P11KMS_OK)
        return rc;
    bool found;
    size_t at = find(ctx, pair.key, pair.key_len, &found);
    if (found)
        rc = duplicate(pair.key, pair.key_len, err);
    if (rc == P11KMS_OK)
        rc = reserve_one(ctx, err);
    if (rc == P11KMS_OK)
        rc = reserve_canon(ctx, new_len, err);
    if (rc != P11KMS_OK) {
        free((char *)pair.key);
        return rc;
    }
    memmove(ctx->pairs + at + 1, ctx->pairs + at, (ctx->count - at) * sizeof(pair));
    ctx->pairs[at] = pair;
    ctx->count++;
    ctx->serialized_len = new_len;
    write_canon(ctx);
    return P11KMS_OK;
}

p11kms_err enc_context_add(enc_context *ctx, const char *key, const char *value, p11kms_error *err)
{
    if (key == NULL || value == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: missing key or value");
    return enc_context_add_n(ctx, key, strlen(key), value, strlen(value), err);
}

/* Bulk building for the parsers: pairs are appended in input order, then sorted once and checked
 * for duplicates, so a large input costs O(n log n) rather than one insertion per pair. */
static p11kms_err append(enc_context *ctx, const char *key, size_t key_len, const char *value,
                         size_t value_len, p11kms_error *err)
{
    enc_context_pair pair;
    size_t new_len;
    p11kms_err rc = make_pair(ctx, key, key_len, value, value_len, &pair, &new_len, err);
    if (rc != P11KMS_OK)
        return rc;
    if ((rc = reserve_one(ctx, err)) != P11KMS_OK) {
        free((char *)pair.key);
        return rc;
    }
    ctx->pairs[ctx->count++] = pair;
    ctx->serialized_len = new_len;
    return P11KMS_OK;
}

static int pair_cmp(const void *a, const void *b)
{
    const enc_context_pair *x = a, *y = b;
    return key_cmp(x->key, x->key_len, y->key, y->key_len);
}

static p11kms_err sort_and_check(enc_context *ctx, p11kms_error *err)
{
    if (ctx->count > 1)
        qsort(ctx->pairs, ctx->count, sizeof(ctx->pairs[0]), pair_cmp);
    for (size_t i = 1; i < ctx->count; i++)
        if (pair_cmp(&ctx->pairs[i - 1], &ctx->pairs[i]) == 0)
            return duplicate(ctx->pairs[i].key, ctx->pairs[i].key_len, err);
    return P11KMS_OK;
}

static p11kms_err new_context(enc_context **out, p11kms_error *err)
{
    *out = enc_context_new();
    if (*out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    return P11KMS_OK;
}

/* Completes a bulk-built context (sorted, duplicates refused, canonical bytes written) and hands
 * it to *out; frees it on any failure. */
static p11kms_err finish(enc_context *ctx, p11kms_err rc, enc_context **out, p11kms_error *err)
{
    if (rc == P11KMS_OK && ctx != NULL)
        rc = sort_and_check(ctx, err);
    if (rc == P11KMS_OK && ctx != NULL)
        rc = reserve_canon(ctx, ctx->serialized_len, err);
    if (rc != P11KMS_OK) {
        enc_context_free(ctx);
        return rc;
    }
    write_canon(ctx);
    *out = ctx;
    return P11KMS_OK;
}

p11kms_err enc_context_copy(const enc_context *src, enc_context **out, p11kms_error *err)
{
    *out = NULL;
    enc_context *ctx;
    p11kms_err rc = new_context(&ctx, err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; src != NULL && i < src->count && rc == P11KMS_OK; i++)
        rc = append(ctx, src->pairs[i].key, src->pairs[i].key_len, src->pairs[i].value,
                    src->pairs[i].value_len, err);
    return finish(ctx, rc, out, err);
}

/* --- shorthand ------------------------------------------------------------------------------ */

p11kms_err enc_context_parse_shorthand(const char *text, enc_context **out, p11kms_error *err)
{
    *out = NULL;
    if (text == NULL || *text == '\0')
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "encryption context: empty text (use {} for an empty context)");
    enc_context *ctx;
    p11kms_err rc = new_context(&ctx, err);
    if (rc != P11KMS_OK)
        return rc;
    const char *p = text;
    for (size_t piece = 1; rc == P11KMS_OK; piece++) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char q[96];
        if (len == 0)
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "encryption context: empty pair %zu in shorthand (a value "
                              "containing ',' needs the JSON form)",
                              piece);
        else if (eq == NULL)
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "encryption context: shorthand pair \"%s\" has no '=' (write "
                              "key=value)",
                              quote(p, len, q));
        else
            rc = append(ctx, p, (size_t)(eq - p), eq + 1, len - (size_t)(eq - p) - 1, err);
        if (end == NULL)
            break;
        p = end + 1;
    }
    return finish(ctx, rc, out, err);
}

/* --- JSON ----------------------------------------------------------------------------------- */

p11kms_err enc_context_from_json_object(struct json_object *obj, enc_context **out,
                                        p11kms_error *err)
{
    *out = NULL;
    if (!json_object_is_type(obj, json_type_object))
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "encryption context: JSON must be an object of strings");
    enc_context *ctx;
    p11kms_err rc = new_context(&ctx, err);
    if (rc != P11KMS_OK)
        return rc;
    json_object_object_foreach(obj, key, val)
    {
        char q[96];
        if (!json_object_is_type(val, json_type_string)) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "encryption context: value of key \"%s\" is a JSON %s, not a string",
                              quote(key, strlen(key), q),
                              json_type_to_name(json_object_get_type(val)));
            break;
        }
        rc = append(ctx, key, strlen(key), json_object_get_string(val),
                    (size_t)json_object_get_string_len(val), err);
        if (rc != P11KMS_OK)
            break;
    }
    return finish(ctx, rc, out, err);
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

typedef p11kms_err (*string_fn)(void *arg, size_t index, const char *start, size_t len,
                                p11kms_error *err);

/* Walks the string literals of JSON text that json-c has already accepted, checking what json-c
 * lets through: it turns \u escapes of lone surrogates into U+FFFD, cuts keys at \u0000,
 * accepts raw control characters and single-quoted member names. fn (optional) gets each literal,
 * quotes included. */
static p11kms_err scan_strings(const char *text, size_t end, size_t *count, string_fn fn, void *arg,
                               p11kms_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < end; i++) {
        /* json-c takes a single-quoted member name even in strict mode; JSON has none. */
        if (text[i] == '\'')
            return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                "encryption context: single-quoted string in JSON (use \")");
        if (text[i] != '"')
            continue;
        size_t start = i++;
        for (; i < end && text[i] != '"'; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c < 0x20)
                return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                    "encryption context: raw control character 0x%02x in a JSON "
                                    "string (escape it)",
                                    c);
            if (c != '\\')
                continue;
            if (i + 1 < end && text[i + 1] != 'u') {
                i++;
                continue;
            }
            int cp = i + 5 < end ? hex4(text + i + 2) : -1;
            if (cp == 0)
                return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                    "encryption context: \\u0000 (NUL) is not allowed");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                    "encryption context: lone low surrogate \\u%04x in JSON", cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo = i + 11 < end && text[i + 6] == '\\' && text[i + 7] == 'u'
                             ? hex4(text + i + 8)
                             : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                        "encryption context: lone high surrogate \\u%04x in JSON",
                                        cp);
                i += 6;
            }
            i += 5;
        }
        if (fn != NULL) {
            p11kms_err rc = fn(arg, n, text + start, i + 1 - start, err);
            if (rc != P11KMS_OK)
                return rc;
        }
        n++;
    }
    *count = n;
    return P11KMS_OK;
}

/* Keys are the literals followed by ':' (not the even-numbered ones: a repeated key may first
 * have had a non-string value, which json-c's last value replaced). Each is decoded by json-c
 * and added to a scratch context, which names the first repeated key. The text is
 * NUL-terminated, so looking past the literal stays inside it. */
static p11kms_err find_duplicate(void *arg, size_t index, const char *start, size_t len,
                                 p11kms_error *err)
{
    (void)index;
    const char *after = start + len;
    after += strspn(after, " \t\r\n");
    if (*after != ':')
        return P11KMS_OK;
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    json_object *s = json_tokener_parse_ex(tok, start, (int)len);
    json_tokener_free(tok);
    p11kms_err rc = P11KMS_OK;
    if (!json_object_is_type(s, json_type_string))
        rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL, "encryption context: cannot re-read a JSON key");
    else
        rc = enc_context_add_n(arg, json_object_get_string(s),
                               (size_t)json_object_get_string_len(s), "", 0, err);
    json_object_put(s);
    return rc;
}

p11kms_err enc_context_parse_json(const char *text, enc_context **out, p11kms_error *err)
{
    *out = NULL;
    if (text == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: no JSON text");
    size_t len = strlen(text);
    if (len > INT32_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: JSON text too long");
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);

    p11kms_err rc = P11KMS_OK;
    size_t strings = 0;
    enc_context *ctx = NULL;
    if (jerr != json_tokener_success)
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: malformed JSON: %s",
                          jerr == json_tokener_continue ? "unexpected end of text"
                                                        : json_tokener_error_desc(jerr));
    else if (obj == NULL) /* the text was the JSON literal null */
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                          "encryption context: JSON must be an object of strings, not null");
    for (size_t i = end; rc == P11KMS_OK && i < len; i++)
        if (strchr(" \t\r\n", text[i]) == NULL)
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "encryption context: text after the JSON object at offset %zu", i);
    if (rc == P11KMS_OK)
        rc = scan_strings(text, end, &strings, NULL, NULL, err);
    if (rc == P11KMS_OK)
        rc = enc_context_from_json_object(obj, &ctx, err);
    if (rc == P11KMS_OK && strings != 2 * ctx->count) {
        /* json-c kept only the last of repeated keys; find and name the first repeat. */
        enc_context *seen;
        if ((rc = new_context(&seen, err)) == P11KMS_OK) {
            rc = scan_strings(text, end, &strings, find_duplicate, seen, err);
            enc_context_free(seen);
        }
        if (rc == P11KMS_OK)
            rc = P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                              "encryption context: JSON member count does not add up");
    }
    json_object_put(obj);
    return finish(ctx, rc, out, err);
}

p11kms_err enc_context_parse_cli(const char *text, enc_context **out, p11kms_error *err)
{
    *out = NULL;
    if (text == NULL)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "encryption context: no text");
    const char *p = text + strspn(text, " \t\r\n");
    if (*p == '{')
        return enc_context_parse_json(text, out, err);
    return enc_context_parse_shorthand(text, out, err);
}

/* --- canonical bytes ------------------------------------------------------------------------ */

size_t enc_context_serialized_len(const enc_context *ctx)
{
    return ctx != NULL && ctx->count > 0 ? ctx->serialized_len : 0;
}

bool enc_context_write(const enc_context *ctx, buf_writer *w)
{
    if (ctx == NULL || ctx->count == 0)
        return buf_writer_ok(w);
    return buf_write_bytes(w, ctx->canon, ctx->serialized_len);
}

p11kms_err enc_context_serialize(const enc_context *ctx, uint8_t *out, size_t cap, size_t *len,
                                 p11kms_error *err)
{
    buf_writer w;
    buf_writer_init(&w, out, cap);
    if (!enc_context_write(ctx, &w))
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "encryption context: buffer of %zu bytes too small for %zu", cap,
                            buf_writer_len(&w));
    *len = buf_writer_len(&w);
    return P11KMS_OK;
}

p11kms_err enc_context_serialize_alloc(const enc_context *ctx, uint8_t **out, size_t *len,
                                       p11kms_error *err)
{
    *out = NULL;
    *len = 0;
    size_t n = enc_context_serialized_len(ctx);
    if (n == 0)
        return P11KMS_OK;
    uint8_t *mem = malloc(n);
    if (mem == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "encryption context: out of memory");
    p11kms_err rc = enc_context_serialize(ctx, mem, n, len, err);
    if (rc != P11KMS_OK) {
        free(mem);
        return rc;
    }
    *out = mem;
    return P11KMS_OK;
}

p11kms_err enc_context_parse_canonical(const uint8_t *bytes, size_t len, enc_context **out,
                                       p11kms_error *err)
{
    *out = NULL;
    enc_context *ctx;
    p11kms_err rc = new_context(&ctx, err);
    if (rc != P11KMS_OK || len == 0)
        return finish(ctx, rc, out, err);
    if (len > ENC_CONTEXT_MAX_SERIALIZED)
        return finish(ctx,
                      P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                   "encryption context: canonical bytes: %zu bytes, more than %d",
                                   len, ENC_CONTEXT_MAX_SERIALIZED),
                      out, err);
    buf_reader r;
    buf_reader_init(&r, bytes, len);
    uint16_t count;
    if (!buf_read_u16be(&r, &count))
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                          "encryption context: canonical bytes: truncated in the pair count");
    else if (count == 0)
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                          "encryption context: canonical bytes: pair count 0 (an empty context "
                          "is zero bytes)");
    for (unsigned i = 0; rc == P11KMS_OK && i < count; i++) {
        uint16_t kl, vl;
        const uint8_t *k, *v;
        const char *field = !buf_read_u16be(&r, &kl)    ? "key length"
                            : !buf_read_ref(&r, kl, &k) ? "key"
                            : !buf_read_u16be(&r, &vl)  ? "value length"
                            : !buf_read_ref(&r, vl, &v) ? "value"
                                                        : NULL;
        if (field != NULL) {
            rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                              "encryption context: canonical bytes: truncated in the %s of pair %u",
                              field, i + 1);
            break;
        }
        if (i > 0) {
            const enc_context_pair *prev = &ctx->pairs[i - 1];
            int c = key_cmp(prev->key, prev->key_len, (const char *)k, kl);
            char q[96];
            if (c == 0) {
                rc = duplicate((const char *)k, kl, err);
                break;
            }
            if (c > 0) {
                rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                                  "encryption context: canonical bytes: key \"%s\" of pair %u is "
                                  "out of order",
                                  quote((const char *)k, kl, q), i + 1);
                break;
            }
        }
        rc = append(ctx, (const char *)k, kl, (const char *)v, vl, err);
    }
    if (rc == P11KMS_OK && buf_reader_remaining(&r) != 0)
        rc = P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                          "encryption context: canonical bytes: %zu trailing bytes",
                          buf_reader_remaining(&r));
    return finish(ctx, rc, out, err);
}

/* --- reading -------------------------------------------------------------------------------- */

size_t enc_context_count(const enc_context *ctx)
{
    return ctx != NULL ? ctx->count : 0;
}

const enc_context_pair *enc_context_pairs(const enc_context *ctx)
{
    return ctx != NULL && ctx->count > 0 ? ctx->pairs : NULL;
}

const char *enc_context_get(const enc_context *ctx, const char *key)
{
    if (ctx == NULL || key == NULL)
        return NULL;
    bool found;
    size_t at = find(ctx, key, strlen(key), &found);
    return found ? ctx->pairs[at].value : NULL;
}

bool enc_context_equal(const enc_context *a, const enc_context *b)
{
    size_t n = enc_context_count(a);
    if (n != enc_context_count(b))
        return false;
    for (size_t i = 0; i < n; i++) {
        const enc_context_pair *x = &a->pairs[i], *y = &b->pairs[i];
        if (x->key_len != y->key_len || x->value_len != y->value_len ||
            memcmp(x->key, y->key, x->key_len) != 0 ||
            memcmp(x->value, y->value, x->value_len) != 0)
            return false;
    }
    return true;
}

struct json_object *enc_context_to_json(const enc_context *ctx)
{
    json_object *obj = json_object_new_object();
    for (size_t i = 0; obj != NULL && i < enc_context_count(ctx); i++) {
        const enc_context_pair *p = &ctx->pairs[i];
        json_object *v = json_object_new_string_len(p->value, (int)p->value_len);
        if (v == NULL ||
            json_object_object_add_ex(obj, p->key, v, JSON_C_OBJECT_ADD_KEY_IS_NEW) != 0) {
            json_object_put(v);
            json_object_put(obj);
            obj = NULL;
        }
    }
    return obj;
}
