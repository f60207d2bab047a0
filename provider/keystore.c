#include "config.h"

#include "provider/keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pkcs11/hmac.h"
#include "provider/store.h"

#define LABEL_VERSION "p11kms/"
#define VERSION_ID_LEN (KEY_UUID_LEN + 4)

p11kms_err keystore_lock(p11kms *svc, p11kms_error *err)
{
    pthread_mutex_lock(&svc->mutation_lock);
    while (flock(svc->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            pthread_mutex_unlock(&svc->mutation_lock);
            return P11KMS_RAISE(err, P11KMS_E_IO, "cannot lock %s: %s", svc->cfg->lock_file,
                                strerror(e));
        }
    }
    /* Processes on other hosts share the store, not the lock file (PostgreSQL). */
    p11kms_err rc = store_lock(svc->store, err);
    if (rc != P11KMS_OK) {
        flock(svc->lock_fd, LOCK_UN);
        pthread_mutex_unlock(&svc->mutation_lock);
    }
    return rc;
}

void keystore_unlock(p11kms *svc)
{
    /* After the writes committed, before other processes may write: a process that sees the new
     * generation (or the store's notification) re-reads records that are already complete. */
    store_unlock(svc->store, svc->lock_dirty);
    if (svc->lock_dirty && svc->generation != NULL)
        __atomic_fetch_add(svc->generation, 1, __ATOMIC_RELEASE);
    svc->lock_dirty = false;
    flock(svc->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&svc->mutation_lock);
}

/* --- rows authenticated by the token ------------------------------------------------------ */

/* The integrity key: one HMAC-SHA256 key per token, made on first write (under the lock, so two
 * processes sharing the lock file never make two). Its CKA_ID is 16 bytes, never the 20 of a
 * key version. */
static const uint8_t integrity_id[] = "p11kms/integrity";
#define INTEGRITY_ID_LEN (sizeof(integrity_id) - 1)
#define INTEGRITY_LABEL "p11kms/integrity"

/* What signs rows: a session copy of the integrity key, made once, as the key cache copies
 * master keys (doc/token-layout.md, "Session copies"; the same token.key-cache setting). A token
 * that reads a token key's stored value back on every use pays for it on every row written or
 * first read: NSS softokn decrypts and checks it on each C_SignInit (about 5 ms of CPU per
 * create-key, measured). Where the token refuses the copy (SoftHSM: CKR_ATTRIBUTE_READ_ONLY, as
 * the key is not modifiable), the token object signs, and the copy is not asked for again. */
static p11_key *integrity_signer(p11kms *svc, p11_key *token_key)
{
    if (svc->cfg->key_cache_token_object)
        return token_key;
    p11_key *copy = NULL;
    p11kms_error refused = {0};
    if (p11_key_copy_session(svc->token, token_key, &copy, &refused) != P11KMS_OK)
        return token_key;
    return copy;
}

static p11kms_err integrity_key(p11kms *svc, bool create, p11_key **out, p11kms_error *err)
{
    pthread_mutex_lock(&svc->integrity_lock);
    p11kms_err rc = P11KMS_OK;
    if (svc->integrity == NULL) {
        p11kms_error probe = {0};
        rc = p11_hmac_find(svc->token, integrity_id, INTEGRITY_ID_LEN, &svc->integrity, &probe);
        if (rc == P11KMS_E_NOT_FOUND && create)
            rc = p11_hmac_generate(svc->token, integrity_id, INTEGRITY_ID_LEN, INTEGRITY_LABEL,
                                   P11_HMAC_SHA256_LEN, &svc->integrity, err);
        else if (rc != P11KMS_OK && err != NULL)
            *err = probe;
        if (rc == P11KMS_OK)
            svc->integrity_signer = integrity_signer(svc, svc->integrity);
    }
    *out = svc->integrity_signer;
    pthread_mutex_unlock(&svc->integrity_lock);
    return rc;
}

static const char *table_label(store_table t)
{
    return t == STORE_KEYS ? "key" : t == STORE_AUDIT ? "audit" : "alias";
}

/* The MAC covers the table, the row's name (key id or alias), its version and its canonical
 * bytes: a row moved to another name, another table or another version no longer verifies. */
static uint8_t *mac_input_labeled(const char *tl, const store_row *row, size_t *len)
{
    size_t n = sizeof("p11kms-row-1") + strlen(tl) + 1 + strlen(row->name) + 1 + 8 + 8 + row->len;
    uint8_t *in = malloc(n);
    if (in == NULL)
        return NULL;
    size_t o = 0;
    memcpy(in + o, "p11kms-row-1", sizeof("p11kms-row-1"));
    o += sizeof("p11kms-row-1");
    memcpy(in + o, tl, strlen(tl) + 1);
    o += strlen(tl) + 1;
    memcpy(in + o, row->name, strlen(row->name) + 1);
    o += strlen(row->name) + 1;
    for (int i = 7; i >= 0; i--)
        in[o++] = (uint8_t)(row->version >> (8 * i));
    for (int i = 7; i >= 0; i--)
        in[o++] = (uint8_t)((uint64_t)row->len >> (8 * i));
    if (row->len > 0)
        memcpy(in + o, row->value, row->len);
    *len = n;
    return in;
}

static uint8_t *mac_input(store_table t, const store_row *row, size_t *len)
{
    return mac_input_labeled(table_label(t), row, len);
}

static p11kms_err row_sign(p11kms *svc, store_table t, store_row *row, p11kms_error *err)
{
    p11_key *key = NULL;
    /* Key and alias rows are written under the keystore lock, which makes the integrity key
     * once. Audit checkpoints are written under the audit log's lock only: were they to make it,
     * a checkpoint and another process's first key could make two (find, then generate), and
     * from then on no row would verify anywhere. Before the first key record there is nothing
     * to anchor; the checkpoint waits for its next turn. */
    p11kms_err rc = integrity_key(svc, t != STORE_AUDIT, &key, err);
    if (rc == P11KMS_E_NOT_FOUND && t == STORE_AUDIT)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                            "no integrity key yet (it is made with the first key record)");
    if (rc != P11KMS_OK)
        return rc;
    size_t len = 0;
    uint8_t *in = mac_input(t, row, &len);
    if (in == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    rc = p11_hmac_sha256(svc->token, key, in, len, row->mac, err);
    free(in);
    return rc;
}

/* What the row is about, for messages: "key <id>" or "alias/NAME". */
static void row_subject(store_table t, const char *name, char *out, size_t size)
{
    if (t == STORE_KEYS)
        snprintf(out, size, "key %s", name);
    else if (t == STORE_AUDIT)
        snprintf(out, size, "audit %s", name);
    else
        snprintf(out, size, "%s", name);
}

/* Verifies a row read from the store. A verified row's digest (SHA-256 of its MAC input and
 * MAC) is remembered, so reading the same row version again costs no token round trip. */
static p11kms_err row_verify(p11kms *svc, store_table t, const store_row *row, p11kms_error *err)
{
    size_t len = 0;
    uint8_t *in = mac_input(t, row, &len);
    if (in == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    uint8_t digest[32];
    char cache_key[STORE_NAME_MAX + 16];
    snprintf(cache_key, sizeof(cache_key), "%s:%s", table_label(t), row->name);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool hashed = md != NULL && svc->sha256 != NULL && EVP_DigestInit_ex(md, svc->sha256, NULL) &&
                  EVP_DigestUpdate(md, in, len) && EVP_DigestUpdate(md, row->mac, STORE_MAC_LEN) &&
                  EVP_DigestFinal_ex(md, digest, NULL);
    EVP_MD_CTX_free(md);
    if (hashed) {
        pthread_mutex_lock(&svc->integrity_lock);
        const uint8_t *seen = hashmap_get(svc->verified, cache_key);
        bool known = seen != NULL && CRYPTO_memcmp(seen, digest, sizeof(digest)) == 0;
        pthread_mutex_unlock(&svc->integrity_lock);
        if (known) {
            free(in);
            return P11KMS_OK;
        }
    }
    char subject[STORE_NAME_MAX + 8];
    row_subject(t, row->name, subject, sizeof(subject));
    p11_key *key = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = integrity_key(svc, false, &key, &probe);
    if (rc == P11KMS_E_NOT_FOUND) {
        free(in);
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "%s: its record cannot be authenticated: the token holds no "
                            "integrity key (%s)",
                            subject, INTEGRITY_LABEL);
    }
    uint8_t mac[STORE_MAC_LEN];
    if (rc == P11KMS_OK)
        rc = p11_hmac_sha256(svc->token, key, in, len, mac, &probe);
    free(in);
    if (rc != P11KMS_OK) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    if (CRYPTO_memcmp(mac, row->mac, STORE_MAC_LEN) != 0) {
        fprintf(stderr,
                "p11kms: %s: the %s row in the store fails its integrity check (changed "
                "without the token)\n",
                subject, table_label(t));
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "%s: its %s row in the store fails its integrity check: it was "
                            "changed by something other than p11kms with this token",
                            subject, table_label(t));
    }
    if (hashed) {
        uint8_t *copy = malloc(sizeof(digest));
        if (copy != NULL) {
            memcpy(copy, digest, sizeof(digest));
            void *old = NULL;
            pthread_mutex_lock(&svc->integrity_lock);
            if (!hashmap_put(svc->verified, cache_key, copy, &old))
                old = copy;
            pthread_mutex_unlock(&svc->integrity_lock);
            free(old);
        }
    }
    return P11KMS_OK;
}

/* Reads and verifies one row. */
static p11kms_err row_read(p11kms *svc, store_table t, const char *name, store_row *row,
                           p11kms_error *err)
{
    p11kms_err rc = store_get(svc->store, t, name, row, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = row_verify(svc, t, row, err);
    if (rc != P11KMS_OK)
        store_row_clear(row);
    return rc;
}

/* Writes value as the next version of the row (version 1 creates it). */
static p11kms_err row_write(p11kms *svc, store_table t, const char *name, uint64_t version,
                            const void *value, size_t len, p11kms_error *err)
{
    store_row row;
    memset(&row, 0, sizeof(row));
    snprintf(row.name, sizeof(row.name), "%s", name);
    row.version = version;
    row.value = (uint8_t *)value;
    row.len = len;
    p11kms_err rc = row_sign(svc, t, &row, err);
    if (rc == P11KMS_OK)
        rc = store_put(svc->store, t, &row, err);
    return rc;
}

/* The version the row has now (0 when absent). */
static p11kms_err row_version_now(p11kms *svc, store_table t, const char *name, uint64_t *version,
                                  p11kms_error *err)
{
    store_row row;
    p11kms_error probe = {0};
    p11kms_err rc = store_get(svc->store, t, name, &row, &probe);
    *version = rc == P11KMS_OK ? row.version : 0;
    store_row_clear(&row);
    if (rc == P11KMS_E_NOT_FOUND)
        return P11KMS_OK;
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

/* --- key records ---------------------------------------------------------------------------- */

static p11kms_err decode_row(const store_row *row, key_meta **out, p11kms_error *err)
{
    p11kms_err rc = keymeta_decode(row->value, row->len, out, err);
    if (rc != P11KMS_OK)
        return rc;
    if (strcmp((*out)->id_text, row->name) != 0) {
        keymeta_free(*out);
        *out = NULL;
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "key %s: its row holds the record of another key", row->name);
    }
    (*out)->row_version = row->version;
    return P11KMS_OK;
}

p11kms_err keystore_meta_read(p11kms *svc, const char *id_text, key_meta **out, p11kms_error *err)
{
    store_row row;
    p11kms_err rc = row_read(svc, STORE_KEYS, id_text, &row, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = decode_row(&row, out, err);
    store_row_clear(&row);
    return rc;
}

static p11kms_err meta_store(p11kms *svc, key_meta *m, bool create, p11kms_error *err)
{
    svc->lock_dirty = true;
    uint64_t current = m->row_version;
    p11kms_err rc = P11KMS_OK;
    if (create)
        current = 0;
    else if (current == 0)
        rc = row_version_now(svc, STORE_KEYS, m->id_text, &current, err);
    if (rc == P11KMS_OK && !create && current == 0)
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "key %s does not exist", m->id_text);
    char *text = NULL;
    size_t len = 0;
    if (rc == P11KMS_OK)
        rc = keymeta_encode(m, &text, &len, err);
    if (rc == P11KMS_OK)
        rc = row_write(svc, STORE_KEYS, m->id_text, current + 1, text, len, err);
    free(text);
    if (rc == P11KMS_OK)
        m->row_version = current + 1;
    return rc;
}

p11kms_err keystore_meta_create(p11kms *svc, key_meta *m, p11kms_error *err)
{
    return meta_store(svc, m, true, err);
}

p11kms_err keystore_meta_write(p11kms *svc, key_meta *m, p11kms_error *err)
{
    return meta_store(svc, m, false, err);
}

p11kms_err keystore_meta_delete(p11kms *svc, const char *id_text, p11kms_error *err)
{
    svc->lock_dirty = true;
    return store_delete(svc->store, STORE_KEYS, id_text, err);
}

typedef struct meta_list_ctx {
    p11kms *svc;
    int (*fn)(const key_meta *m, void *arg);
    void (*bad)(const char *label, const p11kms_error *why, void *arg);
    void *arg;
} meta_list_ctx;

static int meta_list_one(const store_row *row, void *arg)
{
    meta_list_ctx *c = arg;
    key_meta *m = NULL;
    p11kms_error why = {0};
    if (row_verify(c->svc, STORE_KEYS, row, &why) != P11KMS_OK ||
        decode_row(row, &m, &why) != P11KMS_OK) {
        if (c->bad != NULL)
            c->bad(row->name, &why, c->arg);
        return 0;
    }
    int rc = c->fn(m, c->arg);
    keymeta_free(m);
    return rc;
}

p11kms_err keystore_meta_list(p11kms *svc, int (*fn)(const key_meta *m, void *arg),
                              void (*bad)(const char *label, const p11kms_error *why, void *arg),
                              void *arg, p11kms_error *err)
{
    meta_list_ctx c = {svc, fn, bad, arg};
    return store_list(svc->store, STORE_KEYS, meta_list_one, &c, err);
}

/* --- aliases ------------------------------------------------------------------------------- */

static bool alias_value_ok(const store_row *row, char id_text[P11KMS_KEY_ID_LEN + 1])
{
    uint8_t id[KEY_UUID_LEN];
    if (row->len != P11KMS_KEY_ID_LEN)
        return false;
    memcpy(id_text, row->value, row->len);
    id_text[row->len] = '\0';
    return uuid_parse(id_text, id);
}

p11kms_err keystore_alias_read(p11kms *svc, const char *alias, char id_text[P11KMS_KEY_ID_LEN + 1],
                               p11kms_error *err)
{
    store_row row;
    p11kms_err rc = row_read(svc, STORE_ALIASES, alias, &row, err);
    if (rc != P11KMS_OK)
        return rc;
    bool ok = alias_value_ok(&row, id_text);
    store_row_clear(&row);
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "%s holds no valid key id", alias);
    return P11KMS_OK;
}

p11kms_err keystore_alias_put(p11kms *svc, const char *alias, const char *id_text,
                              p11kms_error *err)
{
    svc->lock_dirty = true;
    uint64_t current = 0;
    p11kms_err rc = row_version_now(svc, STORE_ALIASES, alias, &current, err);
    if (rc == P11KMS_OK)
        rc = row_write(svc, STORE_ALIASES, alias, current + 1, id_text, strlen(id_text), err);
    return rc;
}

p11kms_err keystore_alias_delete(p11kms *svc, const char *alias, p11kms_error *err)
{
    svc->lock_dirty = true;
    return store_delete(svc->store, STORE_ALIASES, alias, err);
}

typedef struct alias_list_ctx {
    p11kms *svc;
    int (*fn)(const char *alias, const char *id_text, void *arg);
    void (*bad)(const char *alias, const p11kms_error *why, void *arg);
    void *arg;
} alias_list_ctx;

static int alias_list_one(const store_row *row, void *arg)
{
    alias_list_ctx *c = arg;
    char id_text[P11KMS_KEY_ID_LEN + 1];
    p11kms_error why = {0};
    p11kms_err rc = row_verify(c->svc, STORE_ALIASES, row, &why);
    if (rc == P11KMS_OK && !alias_value_ok(row, id_text))
        rc = P11KMS_RAISE(&why, P11KMS_E_INTERNAL, "%s holds no valid key id", row->name);
    if (rc != P11KMS_OK) {
        if (c->bad != NULL)
            c->bad(row->name, &why, c->arg);
        return 0;
    }
    return c->fn(row->name, id_text, c->arg);
}

p11kms_err keystore_alias_scan(p11kms *svc,
                               int (*fn)(const char *alias, const char *id_text, void *arg),
                               void (*bad)(const char *alias, const p11kms_error *why, void *arg),
                               void *arg, p11kms_error *err)
{
    alias_list_ctx c = {svc, fn, bad, arg};
    return store_list(svc->store, STORE_ALIASES, alias_list_one, &c, err);
}

p11kms_err keystore_alias_list(p11kms *svc,
                               int (*fn)(const char *alias, const char *id_text, void *arg),
                               void *arg, p11kms_error *err)
{
    return keystore_alias_scan(svc, fn, NULL, arg, err);
}

/* --- transactions -------------------------------------------------------------------------- */

p11kms_err keystore_begin(p11kms *svc, p11kms_error *err)
{
    return store_begin(svc->store, err);
}

p11kms_err keystore_commit(p11kms *svc, p11kms_error *err)
{
    return store_commit(svc->store, err);
}

void keystore_rollback(p11kms *svc)
{
    store_rollback(svc->store);
}

/* --- key versions in the token -------------------------------------------------------------- */

static void version_id(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                       uint8_t out[VERSION_ID_LEN])
{
    memcpy(out, id, KEY_UUID_LEN);
    out[16] = (uint8_t)(version >> 24);
    out[17] = (uint8_t)(version >> 16);
    out[18] = (uint8_t)(version >> 8);
    out[19] = (uint8_t)version;
}

/* A claim's seal: the integrity key's MAC over the claim, as a row of its own kind named
 * "KEYID/vN" whose version is the claim's time. */
static p11kms_err claim_mac(p11kms *svc, p11_key *key, const store_claim *c,
                            uint8_t mac[STORE_MAC_LEN], p11kms_error *err)
{
    store_row row = {.version = (uint64_t)c->claimed, .value = (uint8_t *)"pending", .len = 7};
    snprintf(row.name, sizeof(row.name), "%s/v%u", c->key_id, c->version);
    size_t len = 0;
    uint8_t *in = mac_input_labeled("claim", &row, &len);
    if (in == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    p11kms_err rc = p11_hmac_sha256(svc->token, key, in, len, mac, err);
    free(in);
    return rc;
}

/* A sealed claim of the version, dated now. Under the keystore lock (it may make the integrity
 * key). */
static p11kms_err sealed_claim(p11kms *svc, const char *id_text, uint32_t version, store_claim *c,
                               p11kms_error *err)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->key_id, sizeof(c->key_id), "%s", id_text);
    c->version = version;
    c->claimed = service_now();
    p11_key *key = NULL;
    p11kms_err rc = integrity_key(svc, true, &key, err);
    if (rc == P11KMS_OK)
        rc = claim_mac(svc, key, c, c->seal, err);
    c->sealed = rc == P11KMS_OK;
    return rc;
}

p11kms_err keystore_version_generate(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                     p11_key **out, p11kms_error *err)
{
    uint8_t vid[VERSION_ID_LEN];
    char id_text[P11KMS_KEY_ID_LEN + 1], label[KEYSTORE_LABEL_MAX];
    version_id(id, version, vid);
    uuid_format(id, id_text);
    snprintf(label, sizeof(label), LABEL_VERSION "%s/v%u", id_text, version);
    /* The claim is committed before the object exists: whatever happened to local files, no
     * two writers can make two objects for one version. */
    store_claim claim;
    p11kms_err rc = sealed_claim(svc, id_text, version, &claim, err);
    if (rc == P11KMS_OK)
        rc = store_claim_version(svc->store, &claim, err);
    if (rc != P11KMS_OK)
        return rc;
    p11_key *key = NULL;
    rc = p11_key_generate(svc->token, vid, sizeof(vid), label, &key, err);
    /* Trusted only once the token finds it again (a token may report success for an object it
     * could not store). The claim is released only once no object of the version can be left:
     * an object that outlives its claim is one maintain never destroys, and it blocks the
     * version number. */
    bool object_left = false;
    if (rc == P11KMS_OK) {
        p11kms_error probe = {0};
        rc = p11_key_confirm(svc->token, key, &probe);
        if (rc != P11KMS_OK) {
            p11kms_error ignored = {0};
            object_left = p11_key_destroy(svc->token, key, &ignored) != P11KMS_OK;
            rc = P11KMS_RAISE(err, P11KMS_E_KEY_UNAVAILABLE,
                              "key %s: the token reported version %u generated but does not "
                              "find it again (%s); nothing was recorded%s",
                              id_text, version, probe.message,
                              object_left ? "; maintain destroys the object once it can" : "");
        }
    }
    if (rc != P11KMS_OK) {
        p11kms_error ignored = {0};
        if (!object_left)
            (void)store_release_version(svc->store, id_text, version, &ignored);
        return rc;
    }
    *out = key;
    return P11KMS_OK;
}

p11kms_err keystore_meta_commit_version(p11kms *svc, key_meta *m, bool create, uint32_t version,
                                        p11kms_error *err)
{
    p11kms_err rc = keystore_begin(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    uint64_t row_version = m->row_version; /* meta_store moves it on; restored if not committed */
    rc = meta_store(svc, m, create, err);
    if (rc == P11KMS_OK && version > 0) {
        store_claim named = {.version = version, .claimed = service_now(), .sealed = false};
        snprintf(named.key_id, sizeof(named.key_id), "%s", m->id_text);
        p11kms_error probe = {0};
        rc = store_reseal_claim(svc->store, &named, &probe);
        if (rc == P11KMS_E_NOT_FOUND) /* a version made before claims were sealed */
            rc = P11KMS_OK;
        else if (rc != P11KMS_OK && err != NULL)
            *err = probe;
    }
    if (rc == P11KMS_OK)
        rc = keystore_commit(svc, err);
    else
        keystore_rollback(svc);
    if (rc != P11KMS_OK)
        m->row_version = row_version;
    return rc;
}

p11kms_err keystore_version_hand_back(p11kms *svc, const char *id_text, uint32_t version,
                                      p11kms_error *err)
{
    store_claim claim;
    p11kms_err rc = sealed_claim(svc, id_text, version, &claim, err);
    if (rc != P11KMS_OK)
        return rc;
    p11kms_error probe = {0};
    rc = store_reseal_claim(svc->store, &claim, &probe);
    if (rc == P11KMS_E_NOT_FOUND)
        return store_claim_version(svc->store, &claim, err);
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

void keystore_version_discard(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t version)
{
    p11_key *key = NULL;
    p11kms_error ignored = {0};
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uuid_format(id, id_text);
    p11kms_err rc = keystore_version_find(svc, id, version, &key, &ignored);
    if (rc == P11KMS_OK)
        rc = p11_key_destroy(svc->token, key, &ignored);
    /* Released only when the object is known gone; otherwise the claim stays and maintain
     * destroys the object after the grace period. */
    if (rc == P11KMS_OK || rc == P11KMS_E_NOT_FOUND)
        (void)store_release_version(svc->store, id_text, version, &ignored);
}

void keystore_version_discard_unnamed(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t version)
{
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uuid_format(id, id_text);
    key_meta *m = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_meta_read(svc, id_text, &m, &probe);
    bool named = rc == P11KMS_OK && keymeta_version(m, version) != NULL;
    keymeta_free(m);
    if (rc == P11KMS_E_NOT_FOUND || (rc == P11KMS_OK && !named)) {
        keystore_version_discard(svc, id, version);
        return;
    }
    fprintf(stderr,
            "p11kms: key %s: version %u kept although its record write reported failure: %s\n",
            id_text, version,
            named ? "the record names it (the write was committed)"
                  : "the record could not be read to tell (maintain decides later)");
}

p11kms_err keystore_version_release(p11kms *svc, const char *id_text, uint32_t version,
                                    p11kms_error *err)
{
    return store_release_version(svc->store, id_text, version, err);
}

typedef struct claims_list_ctx {
    p11kms *svc;
    p11_key *key; /* NULL: no integrity key, so no seal verifies */
    int (*fn)(const char *id_text, uint32_t version, int64_t claimed, keystore_claim_state state,
              void *arg);
    void *arg;
} claims_list_ctx;

static int claims_list_one(const store_claim *c, void *arg)
{
    claims_list_ctx *ctx = arg;
    keystore_claim_state state = CLAIM_NAMED;
    if (c->sealed) {
        uint8_t mac[STORE_MAC_LEN];
        p11kms_error ignored = {0};
        state = ctx->key != NULL && claim_mac(ctx->svc, ctx->key, c, mac, &ignored) == P11KMS_OK &&
                        CRYPTO_memcmp(mac, c->seal, STORE_MAC_LEN) == 0
                    ? CLAIM_PENDING
                    : CLAIM_BAD_SEAL;
        OPENSSL_cleanse(mac, sizeof(mac));
    }
    return ctx->fn(c->key_id, c->version, c->claimed, state, ctx->arg);
}

p11kms_err keystore_claims_list(p11kms *svc,
                                int (*fn)(const char *id_text, uint32_t version, int64_t claimed,
                                          keystore_claim_state state, void *arg),
                                void *arg, p11kms_error *err)
{
    claims_list_ctx ctx = {svc, NULL, fn, arg};
    p11kms_error probe = {0};
    p11kms_err rc = integrity_key(svc, false, &ctx.key, &probe);
    if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    return store_list_claims(svc->store, claims_list_one, &ctx, err);
}

p11kms_err keystore_version_find(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                 p11_key **out, p11kms_error *err)
{
    uint8_t vid[VERSION_ID_LEN];
    version_id(id, version, vid);
    return p11_key_find(svc->token, vid, sizeof(vid), out, err);
}

typedef struct version_list_ctx {
    int (*fn)(const uint8_t id[KEY_UUID_LEN], uint32_t version, void *arg);
    void *arg;
} version_list_ctx;

static int version_list_one(const uint8_t *id, size_t id_len, const char *label, void *arg)
{
    version_list_ctx *c = arg;
    (void)label;
    if (id_len != VERSION_ID_LEN)
        return 0;
    uint32_t version =
        (uint32_t)id[16] << 24 | (uint32_t)id[17] << 16 | (uint32_t)id[18] << 8 | id[19];
    return c->fn(id, version, c->arg);
}

p11kms_err keystore_version_list(p11kms *svc,
                                 int (*fn)(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                           void *arg),
                                 void *arg, p11kms_error *err)
{
    version_list_ctx c = {fn, arg};
    return p11_key_list(svc->token, LABEL_VERSION, version_list_one, &c, err);
}

typedef struct version_scan_ctx {
    int (*fn)(const uint8_t id[KEY_UUID_LEN], uint32_t version, const p11_key_listing *k,
              void *arg);
    void *arg;
} version_scan_ctx;

static int version_scan_one(const p11_key_listing *k, void *arg)
{
    version_scan_ctx *c = arg;
    if (k->id_len != VERSION_ID_LEN)
        return 0;
    const uint8_t *id = k->id;
    uint32_t version =
        (uint32_t)id[16] << 24 | (uint32_t)id[17] << 16 | (uint32_t)id[18] << 8 | id[19];
    return c->fn(id, version, k, c->arg);
}

p11kms_err keystore_version_scan(p11kms *svc,
                                 int (*fn)(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                           const p11_key_listing *k, void *arg),
                                 void *arg, p11kms_error *err)
{
    version_scan_ctx c = {fn, arg};
    return p11_key_scan(svc->token, LABEL_VERSION, version_scan_one, &c, err);
}

/* --- audit checkpoints ---------------------------------------------------------------------- */

p11kms_err keystore_audit_read(p11kms *svc, const char *chain, uint8_t **value, size_t *len,
                               p11kms_error *err)
{
    store_row row;
    p11kms_err rc = row_read(svc, STORE_AUDIT, chain, &row, err);
    if (rc != P11KMS_OK)
        return rc;
    *value = row.value;
    *len = row.len;
    return P11KMS_OK;
}

p11kms_err keystore_audit_write(p11kms *svc, const char *chain, const void *value, size_t len,
                                p11kms_error *err)
{
    /* Only the writer holding the audit log's lock writes its checkpoint; a second try covers
     * a process of another host that shares the store and the log. */
    p11kms_err rc = P11KMS_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t version = 0;
        rc = row_version_now(svc, STORE_AUDIT, chain, &version, err);
        if (rc == P11KMS_OK)
            rc = row_write(svc, STORE_AUDIT, chain, version + 1, value, len, err);
        if (rc != P11KMS_E_ALREADY_EXISTS && rc != P11KMS_E_INTERNAL)
            break;
    }
    return rc;
}
