/* The SigV4 verifier (provider/daemon/sigv4.c) against requests signed by botocore's own signer
 * (tests/daemon-sigv4-gen.py writes them; argv[1] is that file): every one must verify; then
 * every refusal, each with its own error class and message: a changed body, a signature replayed
 * over another body, changed and unsigned headers, stale and future x-amz-date, wrong region,
 * service and scope date, unknown and deleted access keys, payload hash mismatches, missing
 * host / x-amz-date in SignedHeaders and a set of hostile Authorization headers. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/check.h"
#include "provider/daemon/sigv4.h"

#define MAX_HEADERS 24

typedef struct tcase {
    char name[64];
    char method[8];
    char path[256];
    char query[256];
    size_t header_count;
    char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
    uint8_t *body;
    size_t body_len;
    long long now;
    char region[32], service[32], akid[32], secret[64];
} tcase;

/* --- the credentials the signing-key callback knows ---------------------------------------- */

typedef struct keyring {
    const char *akid[4];
    const char *secret[4];
    bool deleted[4];
    bool token_down; /* every derivation fails as a token failure would */
    size_t count;
    int calls;
} keyring;

static void hmac(const uint8_t *key, size_t key_len, const char *msg, uint8_t out[32])
{
    unsigned n = 0;
    REQUIRE(HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)msg, strlen(msg), out, &n) !=
            NULL);
    REQUIRE(n == 32);
}

static p11kms_err signing_key(void *arg, const char *akid, const char *date, const char *region,
                              const char *service, uint8_t key[32], char *principal_name,
                              size_t size, p11kms_error *err)
{
    keyring *k = arg;
    k->calls++;
    if (k->token_down)
        return P11KMS_RAISE(err, P11KMS_E_TOKEN, "C_Sign failed: CKR_DEVICE_ERROR");
    for (size_t i = 0; i < k->count; i++) {
        if (strcmp(k->akid[i], akid) != 0 || k->deleted[i])
            continue;
        char first[80];
        snprintf(first, sizeof(first), "AWS4%s", k->secret[i]);
        uint8_t a[32], b[32];
        hmac((const uint8_t *)first, strlen(first), date, a);
        hmac(a, 32, region, b);
        hmac(b, 32, service, a);
        hmac(a, 32, "aws4_request", key);
        OPENSSL_cleanse(first, sizeof(first));
        snprintf(principal_name, size, "name-of-%s", akid);
        return P11KMS_OK;
    }
    return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "no such access key");
}

static keyring ring;

/* --- cases ----------------------------------------------------------------------------------- */

static char *dup_s(const char *s)
{
    char *d = strdup(s);
    REQUIRE(d != NULL);
    return d;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    REQUIRE(strlen(src) < size);
    memcpy(dst, src, strlen(src) + 1);
}

static tcase *case_from_json(json_object *o)
{
    tcase *c = calloc(1, sizeof(*c));
    REQUIRE(c != NULL);
    json_object *v;
#define STR(field, key)                                                                            \
    REQUIRE(json_object_object_get_ex(o, key, &v));                                                \
    copy_str(c->field, sizeof(c->field), json_object_get_string(v))
    STR(name, "name");
    STR(method, "method");
    STR(path, "path");
    STR(query, "query");
    STR(region, "region");
    STR(service, "service");
    STR(akid, "access_key_id");
    STR(secret, "secret");
#undef STR
    REQUIRE(json_object_object_get_ex(o, "now", &v));
    c->now = json_object_get_int64(v);
    REQUIRE(json_object_object_get_ex(o, "headers", &v));
    size_t n = json_object_array_length(v);
    REQUIRE(n <= MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        json_object *pair = json_object_array_get_idx(v, i);
        c->hname[i] = dup_s(json_object_get_string(json_object_array_get_idx(pair, 0)));
        c->hvalue[i] = dup_s(json_object_get_string(json_object_array_get_idx(pair, 1)));
    }
    c->header_count = n;
    REQUIRE(json_object_object_get_ex(o, "body", &v));
    const char *b64 = json_object_get_string(v);
    size_t blen = strlen(b64);
    c->body = malloc(blen + 1);
    REQUIRE(c->body != NULL);
    int dec = EVP_DecodeBlock(c->body, (const uint8_t *)b64, (int)blen);
    REQUIRE(dec >= 0);
    size_t len = (size_t)dec;
    if (blen >= 1 && b64[blen - 1] == '=')
        len--;
    if (blen >= 2 && b64[blen - 2] == '=')
        len--;
    c->body_len = len;
    return c;
}

static tcase *case_copy(const tcase *c)
{
    tcase *d = malloc(sizeof(*d));
    REQUIRE(d != NULL);
    *d = *c;
    for (size_t i = 0; i < c->header_count; i++) {
        d->hname[i] = dup_s(c->hname[i]);
        d->hvalue[i] = dup_s(c->hvalue[i]);
    }
    d->body = malloc(c->body_len + 1);
    REQUIRE(d->body != NULL);
    memcpy(d->body, c->body, c->body_len);
    return d;
}

static void case_free(tcase *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->header_count; i++) {
        free(c->hname[i]);
        free(c->hvalue[i]);
    }
    free(c->body);
    free(c);
}

static int find_header(const tcase *c, const char *name)
{
    for (size_t i = 0; i < c->header_count; i++)
        if (strcasecmp(c->hname[i], name) == 0)
            return (int)i;
    return -1;
}

static void set_header(tcase *c, const char *name, const char *value)
{
    int i = find_header(c, name);
    REQUIRE(i >= 0);
    free(c->hvalue[i]);
    c->hvalue[i] = dup_s(value);
}

static void add_header(tcase *c, const char *name, const char *value)
{
    REQUIRE(c->header_count < MAX_HEADERS);
    c->hname[c->header_count] = dup_s(name);
    c->hvalue[c->header_count] = dup_s(value);
    c->header_count++;
}

static void remove_header(tcase *c, const char *name)
{
    int i = find_header(c, name);
    REQUIRE(i >= 0);
    free(c->hname[i]);
    free(c->hvalue[i]);
    for (size_t j = (size_t)i; j + 1 < c->header_count; j++) {
        c->hname[j] = c->hname[j + 1];
        c->hvalue[j] = c->hvalue[j + 1];
    }
    c->header_count--;
}

/* Verifies c with the server's clock at c->now + skew, expecting region/service. */
static sigv4_status run(const tcase *c, long long skew, const char *region, const char *service,
                        sigv4_result *res)
{
    sigv4_header hs[MAX_HEADERS];
    for (size_t i = 0; i < c->header_count; i++)
        hs[i] =
            (sigv4_header){c->hname[i], strlen(c->hname[i]), c->hvalue[i], strlen(c->hvalue[i])};
    sigv4_request req = {c->method, c->path, c->query, hs, c->header_count, c->body, c->body_len};
    sigv4_expect ex = {region != NULL ? region : c->region,
                       service != NULL ? service : "kms",
                       (time_t)(c->now + skew),
                       NULL,
                       signing_key,
                       &ring};
    return sigv4_verify(&req, &ex, res);
}

/* The verdict must be want, with error class cls and a message containing text. */
static void expect(const char *what, const tcase *c, long long skew, const char *region,
                   const char *service, sigv4_status want, const char *text)
{
    sigv4_result res;
    sigv4_status got = run(c, skew, region, service, &res);
    check_count++;
    bool ok = got == want && res.status == got;
    if (want == SIGV4_OK) {
        char principal[64];
        snprintf(principal, sizeof(principal), "sigv4:%s", c->akid);
        ok = ok && strcmp(res.access_key_id, c->akid) == 0 &&
             strcmp(res.principal, principal) == 0 &&
             strncmp(res.principal_name, "name-of-", 8) == 0 && res.http_status == 200 &&
             res.error_class == NULL;
    } else {
        ok = ok && res.error_class != NULL &&
             strcmp(res.error_class, sigv4_error_class(want)) == 0 &&
             res.http_status == (want == SIGV4_INTERNAL ? 500 : 400) && res.message[0] != '\0' &&
             res.principal[0] == '\0' && (text == NULL || strcasestr(res.message, text) != NULL);
    }
    if (!ok) {
        check_failures++;
        fprintf(stderr, "FAIL %s (%s): want %s, got %s: %s\n", what, c->name,
                want == SIGV4_OK ? "OK" : sigv4_error_class(want),
                got == SIGV4_OK ? "OK" : sigv4_error_class(got), res.message);
    } else if (want != SIGV4_OK) {
        fprintf(stderr, "  refused %-40s %s: %s\n", what, res.error_class, res.message);
    }
}

/* --- the cases ---------------------------------------------------------------------------------
 */

static const tcase *by_name(tcase **cs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cs[i]->name, name) == 0)
            return cs[i];
    fprintf(stderr, "no case %s in the signed requests\n", name);
    exit(99);
}

static void test_accepted(tcase **cs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cs[i]->name, "signed-for-dynamodb") == 0)
            continue;
        const char *service = strcmp(cs[i]->service, "kms") == 0 ? "kms" : cs[i]->service;
        expect("botocore-signed request", cs[i], 0, NULL, service, SIGV4_OK, NULL);
    }
}

static void test_body_and_replay(const tcase *k, const tcase *other)
{
    tcase *c = case_copy(k);
    c->body[c->body_len / 2] ^= 1;
    expect("body changed (one bit)", c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
    case_free(c);

    c = case_copy(k);
    c->body_len--;
    expect("body truncated", c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
    case_free(c);

    /* the Authorization (and x-amz-date) of one request over the body of another */
    c = case_copy(other);
    set_header(c, "authorization", k->hvalue[find_header(k, "authorization")]);
    set_header(c, "x-amz-date", k->hvalue[find_header(k, "x-amz-date")]);
    expect("replayed signature, another body", c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
    case_free(c);
}

static void test_headers(const tcase *k)
{
    struct {
        const char *name, *value, *what;
    } changed[] = {
        {"x-amz-target", "TrentService.Decrypt", "x-amz-target changed"},
        {"host", "evil.example:8443", "host changed"},
        {"content-type", "application/json", "content-type changed"},
    };
    for (size_t i = 0; i < sizeof(changed) / sizeof(changed[0]); i++) {
        tcase *c = case_copy(k);
        set_header(c, changed[i].name, changed[i].value);
        expect(changed[i].what, c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
        case_free(c);
    }
    tcase *c = case_copy(k);
    set_header(c, "User-Agent", "something else");
    expect("unsigned User-Agent changed", c, 0, NULL, NULL, SIGV4_OK, NULL);
    add_header(c, "X-Forwarded-For", "10.0.0.1");
    expect("unsigned non-AWS header added", c, 0, NULL, NULL, SIGV4_OK, NULL);
    case_free(c);

    /* whitespace that canonicalization removes must not matter */
    c = case_copy(k);
    char spaced[128];
    snprintf(spaced, sizeof(spaced), "  %s  ", k->hvalue[find_header(k, "x-amz-target")]);
    set_header(c, "x-amz-target", spaced);
    expect("signed value with extra outer spaces", c, 0, NULL, NULL, SIGV4_OK, NULL);
    case_free(c);

    c = case_copy(k);
    add_header(c, "X-Amz-Target", "TrentService.Decrypt");
    expect("second x-amz-target added", c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
    case_free(c);

    c = case_copy(k);
    add_header(c, "X-Amz-Foo", "1");
    expect("unsigned x-amz-* header", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "x-amz-foo");
    case_free(c);

    c = case_copy(k);
    remove_header(c, "content-type");
    expect("signed header missing", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "not in the request");
    case_free(c);

    c = case_copy(k);
    remove_header(c, "authorization");
    expect("no Authorization", c, 0, NULL, NULL, SIGV4_MISSING, "Missing Authentication Token");
    snprintf(c->query, sizeof(c->query), "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00");
    expect("presigned URL", c, 0, NULL, NULL, SIGV4_MISSING, "presigned");
    case_free(c);

    c = case_copy(k);
    add_header(c, "authorization", k->hvalue[find_header(k, "authorization")]);
    expect("two Authorization headers", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "more than one");
    case_free(c);

    c = case_copy(k);
    add_header(c, "X-Amz-Security-Token", "token");
    expect("session token", c, 0, NULL, NULL, SIGV4_UNKNOWN_KEY, "session tokens");
    case_free(c);

    c = case_copy(k);
    remove_header(c, "x-amz-date");
    add_header(c, "Date", "Mon, 30 Nov 2026 20:00:00 GMT");
    expect("Date instead of x-amz-date", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "not in the request");
    case_free(c);

    c = case_copy(k);
    add_header(c, "x-amz-date", k->hvalue[find_header(k, "x-amz-date")]);
    expect("two x-amz-date headers", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "exactly one x-amz-date");
    case_free(c);
}

/* Rewrites SignedHeaders in the Authorization header to list. */
static tcase *with_signed_headers(const tcase *k, const char *list)
{
    tcase *c = case_copy(k);
    const char *auth = k->hvalue[find_header(k, "authorization")];
    const char *sh = strstr(auth, "SignedHeaders=");
    const char *end = strchr(sh, ',');
    REQUIRE(sh != NULL && end != NULL);
    char buf[1024];
    snprintf(buf, sizeof(buf), "%.*sSignedHeaders=%s%s", (int)(sh - auth), auth, list, end);
    set_header(c, "authorization", buf);
    return c;
}

static void test_signed_headers(const tcase *k)
{
    tcase *c = with_signed_headers(k, "content-type;x-amz-date;x-amz-target");
    expect("host not signed", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "must include host");
    case_free(c);
    c = with_signed_headers(k, "content-type;host;x-amz-target");
    expect("x-amz-date not signed", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "must include x-amz-date");
    case_free(c);
    c = with_signed_headers(k, "content-type;host;x-amz-date");
    expect("x-amz-target not signed", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "x-amz-target");
    case_free(c);
    c = with_signed_headers(k, "host;x-amz-date;x-amz-target");
    expect("content-type not signed", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "content-type");
    case_free(c);
    /* a header listed but signed over another list: the signature fails */
    c = with_signed_headers(k, "content-type;host;user-agent;x-amz-date;x-amz-target");
    expect("extra header claimed signed", c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
    case_free(c);
}

static void test_time(const tcase *k)
{
    expect("300 s slow clock", k, 300, NULL, NULL, SIGV4_OK, NULL);
    expect("300 s fast clock", k, -300, NULL, NULL, SIGV4_OK, NULL);
    expect("stale x-amz-date (301 s)", k, 301, NULL, NULL, SIGV4_INVALID, "expired");
    expect("future x-amz-date (301 s)", k, -301, NULL, NULL, SIGV4_INVALID, "not yet current");
    expect("stale x-amz-date (1 day)", k, 86400, NULL, NULL, SIGV4_INVALID, "expired");

    tcase *c = case_copy(k);
    char date[32];
    snprintf(date, sizeof(date), "%s", k->hvalue[find_header(k, "x-amz-date")]);
    /* another day of the same month */
    bool fifteenth = date[6] == '1' && date[7] == '5';
    date[6] = '1';
    date[7] = fifteenth ? '6' : '5';
    set_header(c, "x-amz-date", date);
    expect("x-amz-date of another day than the scope", c, 0, NULL, NULL, SIGV4_INVALID,
           "does not match YYYYMMDD");
    static const char *const bad[] = {
        "",
        "20261130T204233",
        "2026-11-30T20:42:33Z",
        "20261130t204233Z",
        "20261131T204233Z",
        "20260230T000000Z",
        "20261130T244233Z",
        "20261130T206033Z",
        "20261130T204260Z",
        "19691231T235959Z",
        "2026113OT204233Z",
        "20261130T204233Z ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_header(c, "x-amz-date", bad[i]);
        expect("malformed x-amz-date", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "YYYYMMDDTHHMMSSZ");
    }
    case_free(c);
}

static void test_scope(const tcase *k, const tcase *eu, const tcase *dynamo)
{
    expect("wrong region", k, 0, "eu-west-1", NULL, SIGV4_INVALID, "valid region, not 'us-east-1'");
    expect("signed for eu-west-1, server us-east-1", eu, 0, "us-east-1", NULL, SIGV4_INVALID,
           "valid region");
    expect("signed for dynamodb", dynamo, 0, NULL, "kms", SIGV4_INVALID, "correct service");
    expect("server expects another service", k, 0, NULL, "dynamodb", SIGV4_INVALID,
           "correct service");
}

static void test_keys(const tcase *k)
{
    ring.deleted[0] = true;
    expect("deleted credential", k, 0, NULL, NULL, SIGV4_UNKNOWN_KEY, "security token");
    ring.deleted[0] = false;
    size_t saved = ring.count;
    ring.count = 0;
    expect("unknown access key", k, 0, NULL, NULL, SIGV4_UNKNOWN_KEY, "security token");
    ring.count = saved;
    expect("credential back", k, 0, NULL, NULL, SIGV4_OK, NULL);

    /* another known key id in the credential: its signature does not match */
    tcase *c = case_copy(k);
    const char *auth = k->hvalue[find_header(k, "authorization")];
    char buf[1024];
    const char *slash = strchr(auth, '/');
    snprintf(buf, sizeof(buf), "AWS4-HMAC-SHA256 Credential=%s%s", ring.akid[1], slash);
    set_header(c, "authorization", buf);
    expect("another access key id", c, 0, NULL, NULL, SIGV4_INVALID, "does not match");
    case_free(c);

    /* the derivation fails for another reason (token down): a server error, not the client's */
    ring.token_down = true;
    expect("token down", k, 0, NULL, NULL, SIGV4_INTERNAL, "could not be derived");
    ring.token_down = false;

    /* a refused request never reaches the key: stale requests cost no token work */
    int before = ring.calls;
    expect("stale, before any key lookup", k, 3600, NULL, NULL, SIGV4_INVALID, "expired");
    CHECK(ring.calls == before);
}

static void test_payload_hash(const tcase *p)
{
    tcase *c = case_copy(p);
    set_header(c, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    expect("UNSIGNED-PAYLOAD", c, 0, NULL, NULL, SIGV4_INVALID, "x-amz-content-sha256");
    case_free(c);
    c = case_copy(p);
    c->body[0] ^= 1;
    expect("body changed under x-amz-content-sha256", c, 0, NULL, NULL, SIGV4_INVALID,
           "x-amz-content-sha256");
    case_free(c);
    c = case_copy(p);
    char upper[65];
    snprintf(upper, sizeof(upper), "%s", p->hvalue[find_header(p, "x-amz-content-sha256")]);
    for (char *q = upper; *q; q++)
        if (*q >= 'a' && *q <= 'f')
            *q = (char)(*q - 'a' + 'A');
    set_header(c, "x-amz-content-sha256", upper);
    expect("x-amz-content-sha256 in upper case", c, 0, NULL, NULL, SIGV4_INVALID,
           "x-amz-content-sha256");
    case_free(c);
}

/* Hostile Authorization headers: each refused as IncompleteSignature, with a message. */
static void test_hostile(const tcase *k)
{
    const char *auth = k->hvalue[find_header(k, "authorization")];
    const char *cred = strstr(auth, "Credential=") + 11;
    const char *sig = strstr(auth, "Signature=") + 10;
    char good_cred[160], good_sig[80];
    snprintf(good_cred, sizeof(good_cred), "%.*s", (int)(strchr(cred, ',') - cred), cred);
    snprintf(good_sig, sizeof(good_sig), "%s", sig);
    char long_akid[200], many[1200], huge[5000];
    memset(long_akid, 'A', 129);
    long_akid[129] = '\0';
    size_t o = 0;
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "%sh%03d", i ? ";" : "", i);
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge, "AWS4-HMAC-SHA256 ", 17);

    char bufs[48][2600];
    size_t n = 0;
#define H(...) snprintf(bufs[n++], sizeof(bufs[0]), __VA_ARGS__)
    H("%s", "");
    H("AWS4-HMAC-SHA256");
    H("AWS4-HMAC-SHA256 ");
    H("AWS4-HMAC-SHA256 Credential=");
    H("AWS4-HMAC-SHA256Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA1 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("Basic dXNlcjpwYXNzd29yZA==");
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date", good_cred);
    H("AWS4-HMAC-SHA256 Credential=%s, Signature=%s", good_cred, good_sig);
    H("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=%s", good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s",
      good_cred, good_cred, good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s, Foo=bar",
      good_cred, good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s,", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 , Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s,, SignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential %s, SignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS/20261130/us-east-1/kms, SignedHeaders=host;x-amz-date, "
      "Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS/20261130/us-east-1/kms/aws4_request/x, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS/2026113/us-east-1/kms/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS/2026113x/us-east-1/kms/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS/20261130/US-EAST-1/kms/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS/20261130/us-east-1/kms/aws4_requests, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=host;x-amz-date, Signature=%s", good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s/20261130/us-east-1/kms/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      long_akid, good_sig);
    H("AWS4-HMAC-SHA256 Credential=PKMS-1/20261130/us-east-1/kms/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=%s",
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%.63s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s0", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, "
      "Signature=ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
      good_cred);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, "
      "Signature=g000000000000000000000000000000000000000000000000000000000000000",
      good_cred);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=x-amz-date;host, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=Host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date;, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host:x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s", good_cred, many, good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s\x01", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-dat\xc3\xa9, Signature=%s",
      good_cred, good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s,\tSignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
    H("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=", good_cred);
    H("AWS4-HMAC-SHA256 =, SignedHeaders=host;x-amz-date, Signature=%s", good_sig);
    H("aws4-hmac-sha256 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s", good_cred,
      good_sig);
#undef H
    tcase *c = case_copy(k);
    for (size_t i = 0; i < n; i++) {
        set_header(c, "authorization", bufs[i]);
        char what[64];
        snprintf(what, sizeof(what), "hostile Authorization #%zu", i);
        expect(what, c, 0, NULL, NULL, SIGV4_INCOMPLETE, NULL);
    }
    set_header(c, "authorization", huge);
    expect("Authorization of 5000 bytes", c, 0, NULL, NULL, SIGV4_INCOMPLETE, "longer than");
    /* a NUL inside the value (length-delimited input) */
    free(c->hvalue[find_header(c, "authorization")]);
    c->hvalue[find_header(c, "authorization")] = dup_s(auth);
    sigv4_authorization parsed;
    char why[200];
    size_t len = strlen(auth);
    char *with_nul = dup_s(auth);
    with_nul[20] = '\0';
    check_count++;
    if (sigv4_parse_authorization(with_nul, len, &parsed, why, sizeof(why)) != SIGV4_INCOMPLETE) {
        check_failures++;
        fprintf(stderr, "FAIL: an Authorization with a NUL byte was accepted\n");
    }
    free(with_nul);
    /* the untouched header still parses, and the components may come in any order */
    CHECK(sigv4_parse_authorization(auth, len, &parsed, why, sizeof(why)) == SIGV4_OK);
    CHECK(strcmp(parsed.access_key_id, k->akid) == 0 && parsed.header_count == 4);
    char reordered[1024];
    snprintf(reordered, sizeof(reordered),
             "AWS4-HMAC-SHA256 Signature=%s,SignedHeaders=content-type;host;x-amz-date;"
             "x-amz-target,   Credential=%s",
             good_sig, good_cred);
    set_header(c, "authorization", reordered);
    expect("components reordered, spacing varied", c, 0, NULL, NULL, SIGV4_OK, NULL);
    case_free(c);
}

static void test_arguments(const tcase *k)
{
    sigv4_result res;
    sigv4_expect ex = {"us-east-1", "kms", 0, NULL, NULL, &ring};
    sigv4_request req = {"POST", "/", "", NULL, 0, NULL, 0};
    CHECK(sigv4_verify(&req, &ex, &res) == SIGV4_INTERNAL);
    CHECK(res.http_status == 500);
    CHECK(sigv4_verify(NULL, &ex, &res) == SIGV4_INTERNAL);
    (void)k;
}

/* Without an argument: runs tests/daemon-sigv4-gen.py with Debian's python3 (botocore) into the
 * test's scratch directory. A missing botocore is a hard error, never a skip. */
static const char *signed_requests(int argc, char **argv)
{
    if (argc == 2)
        return argv[1];
    static char path[4096];
    char cmd[8192];
    snprintf(path, sizeof(path), "%s/signed-requests.json", test_env("P11KMS_TEST_ROOT"));
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/tests/daemon-sigv4-gen.py' > '%s'",
             test_env("P11KMS_SRCDIR"), path);
    if (system(cmd) != 0) {
        fprintf(stderr, "daemon-sigv4-test: %s failed (apt-get install python3-botocore)\n", cmd);
        exit(99);
    }
    return path;
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: daemon-sigv4-test [SIGNED-REQUESTS.json]\n");
        return 99;
    }
    json_object *root = json_object_from_file(signed_requests(argc, argv));
    REQUIRE(root != NULL && json_object_is_type(root, json_type_array));
    size_t n = json_object_array_length(root);
    REQUIRE(n > 0 && n < 64);
    tcase *cs[64];
    for (size_t i = 0; i < n; i++)
        cs[i] = case_from_json(json_object_array_get_idx(root, i));
    json_object_put(root);

    const tcase *k = by_name(cs, n, "kms-encrypt");
    ring.akid[0] = k->akid;
    ring.secret[0] = k->secret;
    ring.akid[1] = "PKMSOTHERKEYAAAAAAAA";
    ring.secret[1] = "another/secret+key0123456789abcdefGHIJKL";
    const tcase *vanilla = by_name(cs, n, "aws-get-vanilla");
    ring.akid[2] = vanilla->akid;
    ring.secret[2] = vanilla->secret;
    ring.count = 3;

    test_accepted(cs, n);
    test_body_and_replay(k, by_name(cs, n, "kms-encrypt-other-body"));
    test_headers(k);
    test_signed_headers(k);
    test_time(k);
    test_scope(k, by_name(cs, n, "kms-list-keys-eu"), by_name(cs, n, "signed-for-dynamodb"));
    test_keys(k);
    test_payload_hash(by_name(cs, n, "payload-hash-and-multi-values"));
    test_hostile(k);
    test_arguments(k);
    for (size_t i = 0; i < n; i++)
        case_free(cs[i]);
    return check_finish("daemon-sigv4-test");
}
