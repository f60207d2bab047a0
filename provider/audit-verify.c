/* p11kms audit verify: re-walks the chain of a set of log files, checks every seal with the
 * token's audit key and the last sealed state against the stored checkpoint, and names the
 * first line that breaks any of them. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "provider/audit.h"

typedef struct vfile {
    const char *path;
    char *data;
    size_t len;
    uint64_t first_seq; /* UINT64_MAX: empty or unreadable first line */
} vfile;

typedef struct verifier {
    p11kms *svc;
    p11_key *key;
    void (*fn)(const char *line, void *arg);
    void *arg;
    bool bad;
    /* the walk */
    uint64_t expected; /* next record's seq */
    uint8_t hash[AUDIT_HASH_LEN];
    const char *last_path;
    size_t last_line;
    uint64_t last_sealed, unsealed_from, records, seals;
    bool have_checkpoint, checkpoint_loaded, have_chain;
    uint8_t chain[AUDIT_CHAIN_ID_LEN];
    audit_checkpoint ckpt;
} verifier;

static void say(verifier *v, const char *fmt, ...) P11KMS_PRINTF(2, 3);
static void say(verifier *v, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (v->fn != NULL)
        v->fn(line, v->arg);
}

static p11kms_err read_file(const char *path, vfile *f, p11kms_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: %s", path, strerror(errno));
    f->path = path;
    size_t cap = 0;
    f->data = NULL;
    f->len = 0;
    for (;;) {
        if (f->len + 65536 + 1 > cap) {
            cap = (cap + 65536) * 2;
            char *p = realloc(f->data, cap);
            if (p == NULL) {
                fclose(fp);
                return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading %s", path);
            }
            f->data = p;
        }
        size_t n = fread(f->data + f->len, 1, 65536, fp);
        f->len += n;
        if (n == 0)
            break;
    }
    bool failed = ferror(fp);
    fclose(fp);
    if (failed)
        return P11KMS_RAISE(err, P11KMS_E_IO, "%s: read error", path);
    f->data[f->len] = '\0';
    return P11KMS_OK;
}

static json_object *parse_line(const char *line, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, line, (int)len) : NULL;
    if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
                      tok->char_offset != (int)len || !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static bool get_u64(json_object *o, const char *name, uint64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0)
        return false;
    *out = (uint64_t)json_object_get_int64(v);
    return true;
}

static const char *get_str(json_object *o, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static void first_seq(vfile *f)
{
    f->first_seq = UINT64_MAX;
    const char *nl = memchr(f->data, '\n', f->len);
    size_t n = nl ? (size_t)(nl - f->data) : f->len;
    json_object *o = n ? parse_line(f->data, n) : NULL;
    uint64_t s;
    if (o != NULL && get_u64(o, "seq", &s))
        f->first_seq = s;
    else if (o != NULL && get_u64(o, "seal", &s))
        f->first_seq = s + 1;
    else if (n > 0)
        f->first_seq = 0; /* unreadable: walk it first so its problem is reported */
    json_object_put(o);
}

static int by_first_seq(const void *a, const void *b)
{
    const vfile *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

static void fail(verifier *v, const char *path, size_t line, const char *fmt, ...)
    P11KMS_PRINTF(4, 5);
static void fail(verifier *v, const char *path, size_t line, const char *fmt, ...)
{
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    say(v, "INVALID %s:%zu: %s", path, line, what);
    v->bad = true;
}

static bool check_prev(verifier *v, json_object *o, const char *path, size_t line, const char *what)
{
    uint8_t prev[AUDIT_HASH_LEN];
    if (!hex_decode_str(get_str(o, "prev"), prev, sizeof(prev), HEX_LOWER_ONLY)) {
        fail(v, path, line, "%s has no valid \"prev\" hash (edited)", what);
        return false;
    }
    if (CRYPTO_memcmp(prev, v->hash, sizeof(prev)) != 0) {
        if (v->last_path != NULL)
            fail(v, path, line,
                 "%s does not follow the line before it (%s:%zu): that line was edited, or this "
                 "one was inserted or spliced in from another log",
                 what, v->last_path, v->last_line);
        else
            fail(v, path, line, "%s does not start the chain (earlier lines are missing)", what);
        return false;
    }
    return true;
}

static p11kms_err load_checkpoint(verifier *v, p11kms_error *err);

static void walk_record(verifier *v, json_object *o, uint64_t seq, const uint8_t *lh,
                        const char *path, size_t line)
{
    char what[64];
    snprintf(what, sizeof(what), "record seq %" PRIu64, seq);
    if (seq > v->expected) {
        fail(v, path, line,
             "%s where seq %" PRIu64 " was expected: records %" PRIu64 "..%" PRIu64
             " are missing (deleted)",
             what, v->expected, v->expected, seq - 1);
        return;
    }
    if (seq < v->expected) {
        fail(v, path, line,
             "%s where seq %" PRIu64 " was expected: out of order (reordered, or inserted)", what,
             v->expected);
        return;
    }
    if (!check_prev(v, o, path, line, what))
        return;
    if (v->unsealed_from == 0)
        v->unsealed_from = seq;
    v->expected++;
    v->records++;
    memcpy(v->hash, lh, AUDIT_HASH_LEN);
}

static void walk_seal(verifier *v, json_object *o, uint64_t seq, const uint8_t *lh,
                      const char *path, size_t line)
{
    char what[64];
    snprintf(what, sizeof(what), "seal of seq %" PRIu64, seq);
    if (seq + 1 > v->expected) {
        fail(v, path, line,
             "%s, but the last record is seq %" PRIu64 ": records %" PRIu64 "..%" PRIu64
             " are missing (deleted)",
             what, v->expected - 1, v->expected, seq);
        return;
    }
    if (seq + 1 < v->expected) {
        fail(v, path, line,
             "%s, but the last record is seq %" PRIu64 ": out of order (reordered, or inserted)",
             what, v->expected - 1);
        return;
    }
    if (!check_prev(v, o, path, line, what))
        return;
    uint8_t chain[AUDIT_CHAIN_ID_LEN];
    if (!hex_decode_str(get_str(o, "chain"), chain, sizeof(chain), HEX_LOWER_ONLY)) {
        fail(v, path, line, "%s has no valid chain id (edited)", what);
        return;
    }
    if (v->have_chain && memcmp(chain, v->chain, sizeof(chain)) != 0) {
        fail(v, path, line, "%s belongs to another log (its chain id differs): spliced in", what);
        return;
    }
    if (!v->have_chain) {
        memcpy(v->chain, chain, sizeof(chain));
        v->have_chain = true;
    }
    uint8_t mac[P11_HMAC_SHA256_LEN], want[P11_HMAC_SHA256_LEN], in[AUDIT_MAC_INPUT_MAX];
    size_t n = audit_mac_input(AUDIT_SEAL_DOMAIN, chain, seq, v->hash, in);
    p11kms_error err = {0};
    if (!hex_decode_str(get_str(o, "mac"), mac, sizeof(mac), HEX_LOWER_ONLY)) {
        fail(v, path, line, "%s has no valid MAC (edited)", what);
        return;
    }
    if (p11_hmac_sha256(v->svc->token, v->key, in, n, want, &err) != P11KMS_OK) {
        fail(v, path, line, "%s: the token could not compute the MAC: %s", what, err.message);
        return;
    }
    if (CRYPTO_memcmp(mac, want, sizeof(mac)) != 0) {
        const char *token = get_str(o, "token");
        fail(v, path, line,
             "%s: its MAC does not verify with this token's audit key: forged, or written by "
             "another token (the seal names token \"%s\")",
             what, token ? token : "?");
        return;
    }
    if (!v->checkpoint_loaded) {
        v->checkpoint_loaded = true;
        if (load_checkpoint(v, &err) != P11KMS_OK)
            fail(v, path, line, "the stored checkpoint cannot be read: %s", err.message);
        if (v->bad)
            return;
    }
    v->seals++;
    v->last_sealed = seq;
    v->unsealed_from = 0;
    memcpy(v->hash, lh, AUDIT_HASH_LEN);
    if (v->have_checkpoint && seq == v->ckpt.seq &&
        CRYPTO_memcmp(lh, v->ckpt.hash, AUDIT_HASH_LEN) != 0)
        fail(v, path, line,
             "%s is not the seal the stored checkpoint recorded (the log was rewritten)", what);
}

static void walk_file(verifier *v, const vfile *f, bool last_file)
{
    size_t line = 0;
    for (size_t pos = 0; pos < f->len && !v->bad;) {
        line++;
        const char *start = f->data + pos;
        const char *nl = memchr(start, '\n', f->len - pos);
        size_t n = nl ? (size_t)(nl - start) : f->len - pos;
        if (nl == NULL) {
            if (last_file)
                say(v,
                    "note %s:%zu: incomplete last line (a write cut short by a crash; never "
                    "acknowledged, the next writer removes it)",
                    f->path, line);
            else
                fail(v, f->path, line, "unterminated line inside the set (truncated file)");
            return;
        }
        json_object *o = parse_line(start, n);
        uint8_t lh[AUDIT_HASH_LEN];
        audit_hash_line(start, n, lh);
        uint64_t seq;
        if (o == NULL)
            fail(v, f->path, line,
                 "not a JSON audit record (edited or corrupt; after seq %" PRIu64 ")",
                 v->expected - 1);
        else if (get_u64(o, "seq", &seq))
            walk_record(v, o, seq, lh, f->path, line);
        else if (get_u64(o, "seal", &seq))
            walk_seal(v, o, seq, lh, f->path, line);
        else
            fail(v, f->path, line, "neither a record nor a seal (edited)");
        json_object_put(o);
        if (v->bad)
            return;
        v->last_path = f->path;
        v->last_line = line;
        pos += n + 1;
    }
}

static p11kms_err load_checkpoint(verifier *v, p11kms_error *err)
{
    p11kms_error e = {0};
    memcpy(v->ckpt.chain, v->chain, AUDIT_CHAIN_ID_LEN);
    p11kms_err rc = audit_checkpoint_load(v->svc, &v->ckpt, &e);
    if (rc == P11KMS_E_NOT_FOUND) {
        say(v, "note: the store holds no checkpoint of this log yet: a cut tail cannot be "
               "detected");
        return P11KMS_OK;
    }
    if (rc == P11KMS_E_INTERNAL) {
        fail(v, "checkpoint", 0, "%s", e.message);
        return P11KMS_OK;
    }
    if (rc != P11KMS_OK) {
        if (err != NULL)
            *err = e;
        return rc;
    }
    uint8_t in[AUDIT_MAC_INPUT_MAX], want[P11_HMAC_SHA256_LEN];
    size_t n = audit_mac_input(AUDIT_CHECKPOINT_DOMAIN, v->chain, v->ckpt.seq, v->ckpt.hash, in);
    rc = p11_hmac_sha256(v->svc->token, v->key, in, n, want, err);
    if (rc != P11KMS_OK)
        return rc;
    if (CRYPTO_memcmp(want, v->ckpt.mac, sizeof(want)) != 0)
        fail(v, "checkpoint", 0, "the token's audit checkpoint has an invalid MAC");
    else
        v->have_checkpoint = true;
    return P11KMS_OK;
}

p11kms_err p11kms_audit_verify(p11kms *svc, const char *const *files, size_t count,
                               void (*fn)(const char *line, void *arg), void *arg, bool *valid,
                               p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    *valid = false;
    if (count == 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "no audit log file given");
    verifier v = {.svc = svc, .fn = fn, .arg = arg, .expected = 1};
    vfile *set = calloc(count, sizeof(*set));
    if (set == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p11kms_err rc = P11KMS_OK;
    for (size_t i = 0; i < count && rc == P11KMS_OK; i++) {
        rc = read_file(files[i], &set[i], err);
        if (rc == P11KMS_OK)
            first_seq(&set[i]);
    }
    if (rc == P11KMS_OK) {
        p11kms_error e = {0};
        rc = audit_key_get(svc->token, false, &v.key, &e);
        if (rc == P11KMS_E_NOT_FOUND) {
            fail(&v, files[0], 0,
                 "this token has no audit key: the log was written with another token");
            rc = P11KMS_OK;
        } else if (rc != P11KMS_OK && err != NULL) {
            *err = e;
        }
    }
    if (rc == P11KMS_OK && !v.bad) {
        qsort(set, count, sizeof(*set), by_first_seq);
        for (size_t i = 0; i < count && !v.bad; i++)
            walk_file(&v, &set[i], i + 1 == count);
    }
    if (rc == P11KMS_OK && !v.bad) {
        if (v.unsealed_from != 0)
            say(&v,
                "note: records %" PRIu64 "..%" PRIu64 " at the end are not sealed: their writer "
                "stopped before syncing them, so none of them was acknowledged",
                v.unsealed_from, v.expected - 1);
        if (v.have_checkpoint && v.last_sealed < v.ckpt.seq)
            fail(&v, set[count - 1].path, 0,
                 "truncated: the log ends at sealed seq %" PRIu64 " but the stored checkpoint "
                 "records seq %" PRIu64 ": later records were removed",
                 v.last_sealed, v.ckpt.seq);
    }
    if (rc == P11KMS_OK) {
        *valid = !v.bad;
        if (v.bad)
            say(&v, "invalid");
        else {
            char ckpt[64] = ", no checkpoint";
            if (v.have_checkpoint)
                snprintf(ckpt, sizeof(ckpt), ", checkpoint at seq %" PRIu64, v.ckpt.seq);
            say(&v, "valid: %" PRIu64 " records in %zu file%s, sealed through seq %" PRIu64 "%s",
                v.records, count, count == 1 ? "" : "s", v.last_sealed, ckpt);
        }
    }
    for (size_t i = 0; i < count; i++)
        free(set[i].data);
    free(set);
    return rc;
}
