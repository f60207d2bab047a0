/* AWS Signature Version 4 verification (see sigv4.h). */
#include "config.h"

#include "provider/daemon/sigv4.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/hex.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"

/* --- a growable string -------------------------------------------------------------------------
 */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n + 1 > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (n + 1 > cap - b->len) {
            if (cap > ((size_t)1 << 30)) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_addc(sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

/* --- results -----------------------------------------------------------------------------------
 */

const char *sigv4_error_class(sigv4_status status)
{
    switch (status) {
    case SIGV4_OK:
        return NULL;
    case SIGV4_MISSING:
        return "MissingAuthenticationTokenException";
    case SIGV4_INCOMPLETE:
        return "IncompleteSignatureException";
    case SIGV4_INVALID:
        return "InvalidSignatureException";
    case SIGV4_UNKNOWN_KEY:
        return "UnrecognizedClientException";
    case SIGV4_INTERNAL:
        return "KMSInternalException";
    }
    return "KMSInternalException";
}

P11KMS_PRINTF(3, 4)
static sigv4_status fail(sigv4_result *res, sigv4_status status, const char *fmt, ...)
{
    res->status = status;
    res->http_status = status == SIGV4_INTERNAL ? 500 : 400;
    res->error_class = sigv4_error_class(status);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    res->access_key_id[0] = res->principal_name[0] = res->principal[0] = '\0';
    return status;
}

P11KMS_PRINTF(3, 4)
static sigv4_status parse_fail(char *why, size_t size, const char *fmt, ...)
{
    if (why != NULL && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, size, fmt, ap);
        va_end(ap);
    }
    return SIGV4_INCOMPLETE;
}

/* --- character classes -------------------------------------------------------------------------
 */

static bool is_lower_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum_c(unsigned char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit_c(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_unreserved(unsigned char c)
{
    return is_alnum_c(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static bool is_space_c(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Printable ASCII only (for quoting client input in messages). */
static void printable(char *out, size_t size, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

/* --- Authorization header ----------------------------------------------------------------------
 */

static bool copy_field(char *dst, size_t size, const char *s, size_t n)
{
    if (n == 0 || n >= size)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

static sigv4_status parse_credential(const char *v, size_t n, sigv4_authorization *out, char *why,
                                     size_t ws)
{
    const char *part[5];
    size_t plen[5];
    size_t count = 0;
    const char *start = v;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || v[i] == '/') {
            if (count == 5)
                return parse_fail(why, ws,
                                  "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/"
                                  "aws4_request (too many parts)");
            part[count] = start;
            plen[count] = (size_t)(v + i - start);
            count++;
            start = v + i + 1;
        }
    }
    if (count != 5)
        return parse_fail(why, ws,
                          "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request "
                          "(%zu parts)",
                          count);
    for (size_t i = 0; i < plen[0]; i++)
        if (!is_alnum_c((unsigned char)part[0][i]))
            return parse_fail(why, ws, "the access key id has only letters and digits");
    if (!copy_field(out->access_key_id, sizeof(out->access_key_id), part[0], plen[0]))
        return parse_fail(why, ws, "the access key id must be 1 to %d characters",
                          SIGV4_ACCESS_KEY_ID_MAX);
    bool digits = plen[1] == 8;
    for (size_t i = 0; digits && i < 8; i++)
        digits = is_digit_c((unsigned char)part[1][i]);
    if (!digits || !copy_field(out->date, sizeof(out->date), part[1], 8))
        return parse_fail(why, ws, "the credential scope date must be YYYYMMDD");
    for (size_t i = 0; i < plen[2]; i++)
        if (!is_lower_alnum((unsigned char)part[2][i]) && part[2][i] != '-')
            return parse_fail(why, ws, "the credential scope region has only a-z, 0-9 and '-'");
    if (!copy_field(out->region, sizeof(out->region), part[2], plen[2]))
        return parse_fail(why, ws, "the credential scope region must be 1 to 64 characters");
    for (size_t i = 0; i < plen[3]; i++)
        if (!is_lower_alnum((unsigned char)part[3][i]) && part[3][i] != '-')
            return parse_fail(why, ws, "the credential scope service has only a-z, 0-9 and '-'");
    if (!copy_field(out->service, sizeof(out->service), part[3], plen[3]))
        return parse_fail(why, ws, "the credential scope service must be 1 to 32 characters");
    if (plen[4] != strlen(TERMINATOR) || memcmp(part[4], TERMINATOR, plen[4]) != 0)
        return parse_fail(why, ws, "the credential scope must end with aws4_request");
    return SIGV4_OK;
}

static bool header_name_char(unsigned char c)
{
    return is_lower_alnum(c) || c == '-' || c == '_' || c == '.';
}

static sigv4_status parse_signed_headers(const char *v, size_t n, sigv4_authorization *out,
                                         char *why, size_t ws)
{
    if (n >= sizeof(out->signed_headers))
        return parse_fail(why, ws, "SignedHeaders is longer than %zu bytes",
                          sizeof(out->signed_headers) - 1);
    memcpy(out->signed_headers, v, n);
    out->signed_headers[n] = '\0';
    memcpy(out->names, v, n);
    out->names[n] = '\0';
    out->header_count = 0;
    char *s = out->names;
    for (;;) {
        char *semi = strchr(s, ';');
        if (semi != NULL)
            *semi = '\0';
        if (*s == '\0')
            return parse_fail(why, ws, "SignedHeaders has an empty header name");
        for (const char *c = s; *c != '\0'; c++)
            if (!header_name_char((unsigned char)*c))
                return parse_fail(
                    why, ws, "SignedHeaders names must be lowercase (a-z, 0-9, '-', '_', '.')");
        if (out->header_count == SIGV4_SIGNED_HEADERS_MAX)
            return parse_fail(why, ws, "SignedHeaders names more than %d headers",
                              SIGV4_SIGNED_HEADERS_MAX);
        if (out->header_count > 0 && strcmp(out->headers[out->header_count - 1], s) >= 0)
            return parse_fail(why, ws, "SignedHeaders must be sorted and without duplicates");
        out->headers[out->header_count++] = s;
        if (semi == NULL)
            break;
        s = semi + 1;
    }
    return SIGV4_OK;
}

static sigv4_status parse_signature(const char *v, size_t n, sigv4_authorization *out, char *why,
                                    size_t ws)
{
    if (n != 64)
        return parse_fail(why, ws, "Signature must be 64 lowercase hex digits");
    if (!hex_decode(v, n, out->signature, sizeof(out->signature), HEX_LOWER_ONLY))
        return parse_fail(why, ws, "Signature must be 64 lowercase hex digits");
    return SIGV4_OK;
}

sigv4_status sigv4_parse_authorization(const char *value, size_t len, sigv4_authorization *out,
                                       char *why, size_t why_size)
{
    memset(out, 0, sizeof(*out));
    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (value == NULL)
        return parse_fail(why, why_size, "no Authorization header");
    if (len > SIGV4_AUTHORIZATION_MAX)
        return parse_fail(why, why_size, "the Authorization header is longer than %d bytes",
                          SIGV4_AUTHORIZATION_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c >= 0x7f)
            return parse_fail(why, why_size,
                              "the Authorization header contains a control or non-ASCII byte");
    }
    size_t alg = strlen(ALGORITHM);
    if (len < alg || memcmp(value, ALGORITHM, alg) != 0 || (len > alg && value[alg] != ' '))
        return parse_fail(why, why_size,
                          "unsupported authorization scheme: only AWS4-HMAC-SHA256 is accepted");
    size_t pos = alg;
    bool seen[3] = {false, false, false};
    static const char *const names[3] = {"Credential", "SignedHeaders", "Signature"};
    while (pos < len) {
        /* one component: [spaces] Name=value [spaces] (',' | end) */
        while (pos < len && value[pos] == ' ')
            pos++;
        size_t end = pos;
        while (end < len && value[end] != ',')
            end++;
        size_t stop = end;
        while (stop > pos && value[stop - 1] == ' ')
            stop--;
        if (stop == pos)
            return parse_fail(why, why_size, "the Authorization header has an empty component");
        const char *eq = memchr(value + pos, '=', stop - pos);
        if (eq == NULL)
            return parse_fail(why, why_size, "an Authorization component is not Name=value");
        size_t name_len = (size_t)(eq - (value + pos));
        const char *v = eq + 1;
        size_t vlen = (size_t)(value + stop - v);
        int which = -1;
        for (int i = 0; i < 3; i++)
            if (name_len == strlen(names[i]) && memcmp(value + pos, names[i], name_len) == 0)
                which = i;
        if (which < 0) {
            char shown[40];
            printable(shown, sizeof(shown), value + pos, name_len);
            return parse_fail(why, why_size, "unknown Authorization component '%s'", shown);
        }
        if (seen[which])
            return parse_fail(why, why_size, "Authorization component %s appears twice",
                              names[which]);
        seen[which] = true;
        if (vlen == 0)
            return parse_fail(why, why_size, "Authorization component %s is empty", names[which]);
        sigv4_status st = which == 0   ? parse_credential(v, vlen, out, why, why_size)
                          : which == 1 ? parse_signed_headers(v, vlen, out, why, why_size)
                                       : parse_signature(v, vlen, out, why, why_size);
        if (st != SIGV4_OK)
            return st;
        pos = end < len ? end + 1 : end;
        if (end < len && pos == len)
            return parse_fail(why, why_size, "the Authorization header ends with ','");
    }
    for (int i = 0; i < 3; i++)
        if (!seen[i])
            return parse_fail(why, why_size, "Authorization header requires '%s' parameter",
                              names[i]);
    return SIGV4_OK;
}

/* --- request helpers ---------------------------------------------------------------------------
 */

static bool name_is(const sigv4_header *h, const char *lower)
{
    size_t n = strlen(lower);
    if (h->name_len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)h->name[i]) != (unsigned char)lower[i])
            return false;
    return true;
}

static size_t count_headers(const sigv4_request *req, const char *lower, const sigv4_header **first)
{
    size_t n = 0;
    *first = NULL;
    for (size_t i = 0; i < req->header_count; i++) {
        if (name_is(&req->headers[i], lower)) {
            if (n++ == 0)
                *first = &req->headers[i];
        }
    }
    return n;
}

/* Whether the request's header h must be signed: it names the operation or the payload. */
static bool must_be_signed(const sigv4_header *h)
{
    if (name_is(h, "content-type"))
        return true;
    if (h->name_len < 6)
        return false;
    static const char prefix[] = "x-amz-";
    for (size_t i = 0; i < 6; i++)
        if (tolower((unsigned char)h->name[i]) != (unsigned char)prefix[i])
            return false;
    return true;
}

static bool in_signed(const sigv4_authorization *a, const sigv4_header *h)
{
    for (size_t i = 0; i < a->header_count; i++)
        if (name_is(h, a->headers[i]))
            return true;
    return false;
}

/* The value trimmed, with every run of whitespace collapsed to one space (as botocore and the
 * AWS documentation do). */
static void canonical_value(sbuf *b, const char *v, size_t n)
{
    size_t i = 0;
    bool first = true;
    while (i < n) {
        while (i < n && is_space_c((unsigned char)v[i]))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && !is_space_c((unsigned char)v[i]))
            i++;
        if (!first)
            sb_addc(b, ' ');
        sb_add(b, v + start, i - start);
        first = false;
    }
}

static void uri_encode(sbuf *b, const char *s, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            sb_addc(b, (char)c);
        } else {
            char e[3] = {'%', digits[c >> 4], digits[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

/* Canonical URI of a non-S3 service: dot segments and empty segments removed (RFC 3986 5.2.4,
 * as botocore), then every byte but unreserved ones and '/' percent-encoded once more (the raw
 * path is already encoded, so this is AWS's "double encoding"). */
static void canonical_uri(sbuf *b, const char *path)
{
    if (path == NULL || path[0] == '\0') {
        sb_addc(b, '/');
        return;
    }
    size_t n = strlen(path);
    sbuf norm = {0};
    if (path[0] == '/')
        sb_addc(&norm, '/');
    size_t segments = 0;
    size_t i = 0;
    /* positions where each kept segment starts in norm, to pop on ".." */
    size_t *starts = calloc(n + 1, sizeof(*starts));
    if (starts == NULL) {
        free(norm.p);
        b->oom = true;
        return;
    }
    while (i < n) {
        size_t s = i;
        while (i < n && path[i] != '/')
            i++;
        size_t len = i - s;
        if (i < n)
            i++; /* the '/' */
        if (len == 0 || (len == 1 && path[s] == '.'))
            continue;
        if (len == 2 && path[s] == '.' && path[s + 1] == '.') {
            if (segments > 0) {
                segments--;
                norm.len = starts[segments];
                if (norm.p != NULL)
                    norm.p[norm.len] = '\0';
            }
            continue;
        }
        size_t at = norm.len;
        if (segments > 0)
            sb_addc(&norm, '/');
        starts[segments++] = at;
        sb_add(&norm, path + s, len);
    }
    if (path[n - 1] == '/' && segments > 0)
        sb_addc(&norm, '/');
    free(starts);
    if (norm.oom) {
        b->oom = true;
    } else if (norm.len == 0) {
        sb_addc(b, '/');
    } else {
        uri_encode(b, norm.p, norm.len, true);
    }
    free(norm.p);
}

typedef struct qparam {
    char *key, *value; /* canonical (encoded) */
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Decodes %XX escapes of s[0..n) and encodes the result the AWS way; false for a malformed
 * escape. */
static bool reencode(sbuf *out, const char *s, size_t n)
{
    sbuf raw = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hex_nibble(s[i + 1]) : -1;
            int lo = i + 2 < n ? hex_nibble(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(raw.p);
                return false;
            }
            sb_addc(&raw, (char)(hi << 4 | lo));
            i += 2;
        } else {
            sb_addc(&raw, s[i]);
        }
    }
    if (raw.oom) {
        free(raw.p);
        out->oom = true;
        return true;
    }
    uri_encode(out, raw.p != NULL ? raw.p : "", raw.len, false);
    free(raw.p);
    return true;
}

/* Canonical query string: each name=value decoded and re-encoded, sorted by name then value. */
static sigv4_status canonical_query(sbuf *b, const char *query, sigv4_result *res)
{
    if (query == NULL || query[0] == '\0')
        return SIGV4_OK;
    size_t n = strlen(query), count = 0;
    for (size_t i = 0; i < n; i++)
        count += query[i] == '&';
    qparam *ps = calloc(count + 1, sizeof(*ps));
    if (ps == NULL) {
        b->oom = true;
        return SIGV4_OK;
    }
    size_t used = 0;
    sigv4_status st = SIGV4_OK;
    const char *p = query;
    while (st == SIGV4_OK && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t klen = eq != NULL ? (size_t)(eq - p) : len;
            sbuf k = {0}, v = {0};
            bool ok = reencode(&k, p, klen);
            if (ok && eq != NULL)
                ok = reencode(&v, eq + 1, len - klen - 1);
            if (!ok) {
                free(k.p);
                free(v.p);
                st = fail(res, SIGV4_INCOMPLETE, "the query string has a malformed %%-escape");
                break;
            }
            if (k.oom || v.oom) {
                free(k.p);
                free(v.p);
                b->oom = true;
                break;
            }
            ps[used].key = k.p != NULL ? k.p : strdup("");
            ps[used].value = v.p != NULL ? v.p : strdup("");
            used++;
            if (ps[used - 1].key == NULL || ps[used - 1].value == NULL) {
                b->oom = true;
                break;
            }
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    if (st == SIGV4_OK && !b->oom) {
        qsort(ps, used, sizeof(*ps), qparam_cmp);
        for (size_t i = 0; i < used; i++) {
            if (i > 0)
                sb_addc(b, '&');
            sb_adds(b, ps[i].key);
            sb_addc(b, '=');
            sb_adds(b, ps[i].value);
        }
    }
    for (size_t i = 0; i < used; i++) {
        free(ps[i].key);
        free(ps[i].value);
    }
    free(ps);
    return st;
}

static bool query_has_presign(const char *query)
{
    if (query == NULL)
        return false;
    for (const char *p = query; *p != '\0';) {
        if (strncmp(p, "X-Amz-Signature=", 16) == 0 || strncmp(p, "X-Amz-Credential=", 17) == 0 ||
            strncmp(p, "X-Amz-Algorithm=", 16) == 0)
            return true;
        const char *amp = strchr(p, '&');
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return false;
}

/* YYYYMMDDTHHMMSSZ, a real UTC time. */
static bool parse_amz_date(const char *v, size_t n, time_t *out)
{
    if (n != 16 || v[8] != 'T' || v[15] != 'Z')
        return false;
    int f[6];
    static const int at[6] = {0, 4, 6, 9, 11, 13}, width[6] = {4, 2, 2, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        f[i] = 0;
        for (int j = 0; j < width[i]; j++) {
            unsigned char c = (unsigned char)v[at[i] + j];
            if (!is_digit_c(c))
                return false;
            f[i] = f[i] * 10 + (c - '0');
        }
    }
    if (f[0] < 1970 || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 ||
        f[5] > 59)
        return false;
    struct tm tm = {0};
    tm.tm_year = f[0] - 1900;
    tm.tm_mon = f[1] - 1;
    tm.tm_mday = f[2];
    tm.tm_hour = f[3];
    tm.tm_min = f[4];
    tm.tm_sec = f[5];
    time_t t = timegm(&tm);
    struct tm back;
    if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_mday != f[2] ||
        back.tm_mon != f[1] - 1)
        return false; /* e.g. February 30 */
    *out = t;
    return true;
}

static bool sha256(OSSL_LIB_CTX *libctx, const void *data, size_t len, uint8_t out[32])
{
    EVP_MD *md = EVP_MD_fetch(libctx, "SHA256", NULL);
    unsigned int n = 0;
    bool ok = md != NULL && EVP_Digest(data, len, out, &n, md, NULL) == 1 && n == 32;
    EVP_MD_free(md);
    return ok;
}

static bool hmac_sha256(OSSL_LIB_CTX *libctx, const uint8_t *key, size_t key_len, const void *data,
                        size_t len, uint8_t out[32])
{
    size_t n = 0;
    return EVP_Q_mac(libctx, "HMAC", NULL, "SHA256", NULL, key, key_len, data, len, out, 32, &n) !=
               NULL &&
           n == 32;
}

/* --- verification ------------------------------------------------------------------------------
 */

static sigv4_status check_headers(const sigv4_request *req, const sigv4_authorization *a,
                                  sigv4_result *res)
{
    bool has_host = false, has_date = false;
    for (size_t i = 0; i < a->header_count; i++) {
        has_host |= strcmp(a->headers[i], "host") == 0;
        has_date |= strcmp(a->headers[i], "x-amz-date") == 0;
    }
    if (!has_host)
        return fail(res, SIGV4_INCOMPLETE, "SignedHeaders must include host");
    if (!has_date)
        return fail(res, SIGV4_INCOMPLETE, "SignedHeaders must include x-amz-date");
    for (size_t i = 0; i < req->header_count; i++) {
        const sigv4_header *h = &req->headers[i];
        if (must_be_signed(h) && !in_signed(a, h)) {
            char shown[64];
            printable(shown, sizeof(shown), h->name, h->name_len);
            return fail(res, SIGV4_INCOMPLETE,
                        "header '%s' is in the request but not in SignedHeaders", shown);
        }
    }
    for (size_t i = 0; i < a->header_count; i++) {
        const sigv4_header *first;
        if (count_headers(req, a->headers[i], &first) == 0)
            return fail(res, SIGV4_INCOMPLETE, "signed header '%s' is not in the request",
                        a->headers[i]);
    }
    return SIGV4_OK;
}

static void build_canonical_request(sbuf *cr, const sigv4_request *req,
                                    const sigv4_authorization *a, const char *payload_hex,
                                    sigv4_result *res, sigv4_status *st)
{
    sb_adds(cr, req->method);
    sb_addc(cr, '\n');
    canonical_uri(cr, req->path);
    sb_addc(cr, '\n');
    *st = canonical_query(cr, req->query, res);
    if (*st != SIGV4_OK)
        return;
    sb_addc(cr, '\n');
    for (size_t i = 0; i < a->header_count; i++) {
        sb_adds(cr, a->headers[i]);
        sb_addc(cr, ':');
        bool first = true;
        for (size_t j = 0; j < req->header_count; j++) {
            const sigv4_header *h = &req->headers[j];
            if (!name_is(h, a->headers[i]))
                continue;
            if (!first)
                sb_addc(cr, ',');
            canonical_value(cr, h->value, h->value_len);
            first = false;
        }
        sb_addc(cr, '\n');
    }
    sb_addc(cr, '\n');
    sb_adds(cr, a->signed_headers);
    sb_addc(cr, '\n');
    sb_adds(cr, payload_hex);
}

sigv4_status sigv4_verify(const sigv4_request *req, const sigv4_expect *ex, sigv4_result *res)
{
    memset(res, 0, sizeof(*res));
    if (req == NULL || ex == NULL || ex->signing_key == NULL || ex->region == NULL ||
        ex->service == NULL || req->method == NULL || (req->headers == NULL && req->header_count) ||
        (req->body == NULL && req->body_len > 0))
        return fail(res, SIGV4_INTERNAL, "sigv4_verify: missing argument");

    /* 1. the Authorization header */
    const sigv4_header *auth_h;
    size_t n_auth = count_headers(req, "authorization", &auth_h);
    if (n_auth == 0)
        return fail(res, SIGV4_MISSING,
                    query_has_presign(req->query)
                        ? "presigned URLs are not accepted: sign the Authorization header"
                        : "Missing Authentication Token");
    if (n_auth > 1)
        return fail(res, SIGV4_INCOMPLETE, "more than one Authorization header");
    const sigv4_header *tok;
    if (count_headers(req, "x-amz-security-token", &tok) > 0)
        return fail(res, SIGV4_UNKNOWN_KEY,
                    "session tokens (X-Amz-Security-Token) are not supported: use a long-term "
                    "access key");
    sigv4_authorization *a = malloc(sizeof(*a));
    if (a == NULL)
        return fail(res, SIGV4_INTERNAL, "out of memory");
    char why[200];
    if (sigv4_parse_authorization(auth_h->value, auth_h->value_len, a, why, sizeof(why)) !=
        SIGV4_OK) {
        free(a);
        return fail(res, SIGV4_INCOMPLETE, "%s", why);
    }

    /* 2. signed headers */
    sigv4_status st = check_headers(req, a, res);
    if (st != SIGV4_OK) {
        free(a);
        return st;
    }

    /* 3. x-amz-date */
    const sigv4_header *date_h;
    size_t n_date = count_headers(req, "x-amz-date", &date_h);
    time_t when = 0;
    char amz_date[17];
    if (n_date != 1) {
        free(a);
        return fail(res, SIGV4_INCOMPLETE, "exactly one x-amz-date header is required, not %zu",
                    n_date);
    }
    if (!parse_amz_date(date_h->value, date_h->value_len, &when)) {
        char shown[40];
        printable(shown, sizeof(shown), date_h->value, date_h->value_len);
        free(a);
        return fail(res, SIGV4_INCOMPLETE, "x-amz-date '%s' is not YYYYMMDDTHHMMSSZ", shown);
    }
    memcpy(amz_date, date_h->value, 16);
    amz_date[16] = '\0';
    if (memcmp(amz_date, a->date, 8) != 0) {
        st = fail(res, SIGV4_INVALID,
                  "Date in Credential scope (%s) does not match YYYYMMDD from x-amz-date (%.8s)",
                  a->date, amz_date);
        free(a);
        return st;
    }
    if (when < ex->now - SIGV4_MAX_SKEW_SECONDS || when > ex->now + SIGV4_MAX_SKEW_SECONDS) {
        st = fail(res, SIGV4_INVALID,
                  "Signature %s: x-amz-date %s is more than %d seconds %s the server's time",
                  when < ex->now ? "expired" : "not yet current", amz_date, SIGV4_MAX_SKEW_SECONDS,
                  when < ex->now ? "before" : "after");
        free(a);
        return st;
    }

    /* 4. scope */
    if (strcmp(a->region, ex->region) != 0) {
        st = fail(res, SIGV4_INVALID, "Credential should be scoped to a valid region, not '%s'",
                  a->region);
        free(a);
        return st;
    }
    if (strcmp(a->service, ex->service) != 0) {
        st = fail(res, SIGV4_INVALID, "Credential should be scoped to correct service: '%s'",
                  ex->service);
        free(a);
        return st;
    }

    /* 5. the payload */
    uint8_t digest[32];
    char payload_hex[65];
    if (!sha256(ex->libctx, req->body_len > 0 ? req->body : (const uint8_t *)"", req->body_len,
                digest)) {
        free(a);
        return fail(res, SIGV4_INTERNAL, "SHA-256 is not available");
    }
    hex_encode(digest, 32, payload_hex);
    const sigv4_header *ch;
    if (count_headers(req, "x-amz-content-sha256", &ch) > 0) {
        const sigv4_header *other;
        if (count_headers(req, "x-amz-content-sha256", &other) != 1 || ch->value_len != 64 ||
            CRYPTO_memcmp(ch->value, payload_hex, 64) != 0) {
            free(a);
            return fail(res, SIGV4_INVALID,
                        "x-amz-content-sha256 is not the SHA-256 of the body (unsigned payloads "
                        "are refused)");
        }
    }

    /* 6. the signature */
    sbuf cr = {0};
    build_canonical_request(&cr, req, a, payload_hex, res, &st);
    if (st != SIGV4_OK || cr.oom) {
        free(cr.p);
        free(a);
        return st != SIGV4_OK ? st : fail(res, SIGV4_INTERNAL, "out of memory");
    }
    uint8_t cr_hash[32];
    char cr_hex[65];
    bool ok = sha256(ex->libctx, cr.p, cr.len, cr_hash);
    free(cr.p);
    if (!ok) {
        free(a);
        return fail(res, SIGV4_INTERNAL, "SHA-256 is not available");
    }
    hex_encode(cr_hash, 32, cr_hex);
    char sts[256];
    int sts_len = snprintf(sts, sizeof(sts), "%s\n%s\n%s/%s/%s/%s\n%s", ALGORITHM, amz_date,
                           a->date, a->region, a->service, TERMINATOR, cr_hex);
    if (sts_len < 0 || (size_t)sts_len >= sizeof(sts)) {
        free(a);
        return fail(res, SIGV4_INTERNAL, "string to sign too long");
    }

    uint8_t key[32];
    char principal_name[SIGV4_PRINCIPAL_NAME_MAX + 1] = "";
    p11kms_error kerr = {0};
    p11kms_err krc = ex->signing_key(ex->arg, a->access_key_id, a->date, a->region, a->service, key,
                                     principal_name, sizeof(principal_name), &kerr);
    if (krc == P11KMS_E_NOT_FOUND) {
        OPENSSL_cleanse(key, sizeof(key));
        free(a);
        return fail(res, SIGV4_UNKNOWN_KEY,
                    "The security token included in the request is invalid");
    }
    if (krc != P11KMS_OK) {
        OPENSSL_cleanse(key, sizeof(key));
        free(a);
        return fail(res, SIGV4_INTERNAL, "the signing key could not be derived: %s",
                    p11kms_error_class(krc));
    }
    uint8_t mac[32];
    ok = hmac_sha256(ex->libctx, key, sizeof(key), sts, (size_t)sts_len, mac);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok) {
        free(a);
        return fail(res, SIGV4_INTERNAL, "HMAC-SHA256 is not available");
    }
    bool equal = CRYPTO_memcmp(mac, a->signature, 32) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    if (!equal) {
        free(a);
        return fail(res, SIGV4_INVALID,
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your AWS Secret Access Key and signing method.");
    }
    res->status = SIGV4_OK;
    res->http_status = 200;
    res->error_class = NULL;
    res->message[0] = '\0';
    snprintf(res->access_key_id, sizeof(res->access_key_id), "%s", a->access_key_id);
    principal_name[sizeof(principal_name) - 1] = '\0';
    snprintf(res->principal_name, sizeof(res->principal_name), "%s", principal_name);
    snprintf(res->principal, sizeof(res->principal), "sigv4:%s", a->access_key_id);
    free(a);
    return SIGV4_OK;
}
