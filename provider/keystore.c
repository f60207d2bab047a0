#include "config.h"

#include "provider/keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define LABEL_KEY "p11kms/key/"
#define LABEL_ALIAS "p11kms/alias/"
#define LABEL_JOURNAL "p11kms/journal"
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
    return P11KMS_OK;
}

void keystore_unlock(p11kms *svc)
{
    /* After the token writes, before other processes may write: a process that sees the new
     * generation re-reads records that are already complete. */
    if (svc->lock_dirty && svc->generation != NULL)
        __atomic_fetch_add(svc->generation, 1, __ATOMIC_RELEASE);
    svc->lock_dirty = false;
    flock(svc->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&svc->mutation_lock);
}

static void label_of(char *out, const char *prefix, const char *name)
{
    snprintf(out, KEYSTORE_LABEL_MAX, "%s%s", prefix, name);
}

p11kms_err keystore_meta_read(p11kms *svc, const char *id_text, key_meta **out, p11kms_error *err)
{
    char label[KEYSTORE_LABEL_MAX];
    label_of(label, LABEL_KEY, id_text);
    uint8_t *value = NULL;
    size_t len = 0;
    p11kms_err rc = p11_data_read(svc->token, label, &value, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = keymeta_decode(value, len, out, err);
    free(value);
    if (rc == P11KMS_OK && strcmp((*out)->id_text, id_text) != 0) {
        keymeta_free(*out);
        *out = NULL;
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "key metadata object %s holds the record of another key", label);
    }
    return rc;
}

static p11kms_err meta_store(p11kms *svc, const key_meta *m, bool create, p11kms_error *err)
{
    svc->lock_dirty = true;
    char label[KEYSTORE_LABEL_MAX];
    label_of(label, LABEL_KEY, m->id_text);
    char *text = NULL;
    size_t len = 0;
    p11kms_err rc = keymeta_encode(m, &text, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = create ? p11_data_create(svc->token, label, (const uint8_t *)text, len, err)
                : p11_data_write(svc->token, label, (const uint8_t *)text, len, err);
    free(text);
    return rc;
}

p11kms_err keystore_meta_create(p11kms *svc, const key_meta *m, p11kms_error *err)
{
    return meta_store(svc, m, true, err);
}

p11kms_err keystore_meta_write(p11kms *svc, const key_meta *m, p11kms_error *err)
{
    return meta_store(svc, m, false, err);
}

p11kms_err keystore_meta_delete(p11kms *svc, const char *id_text, p11kms_error *err)
{
    svc->lock_dirty = true;
    char label[KEYSTORE_LABEL_MAX];
    label_of(label, LABEL_KEY, id_text);
    return p11_data_delete(svc->token, label, err);
}

typedef struct meta_list_ctx {
    int (*fn)(const key_meta *m, void *arg);
    void (*bad)(const char *label, const p11kms_error *why, void *arg);
    void *arg;
} meta_list_ctx;

static int meta_list_one(const char *label, const uint8_t *value, size_t len, void *arg)
{
    meta_list_ctx *c = arg;
    key_meta *m = NULL;
    p11kms_error why = {0};
    if (keymeta_decode(value, len, &m, &why) != P11KMS_OK) {
        if (c->bad != NULL)
            c->bad(label, &why, c->arg);
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
    meta_list_ctx c = {fn, bad, arg};
    return p11_data_list(svc->token, LABEL_KEY, meta_list_one, &c, err);
}

static const char *alias_name(const char *alias)
{
    return alias + strlen("alias/");
}

p11kms_err keystore_alias_read(p11kms *svc, const char *alias, char id_text[P11KMS_KEY_ID_LEN + 1],
                               p11kms_error *err)
{
    char label[KEYSTORE_LABEL_MAX];
    label_of(label, LABEL_ALIAS, alias_name(alias));
    uint8_t *value = NULL;
    size_t len = 0;
    p11kms_err rc = p11_data_read(svc->token, label, &value, &len, err);
    if (rc != P11KMS_OK)
        return rc;
    uint8_t id[KEY_UUID_LEN];
    bool ok = len == P11KMS_KEY_ID_LEN;
    if (ok) {
        memcpy(id_text, value, len);
        id_text[len] = '\0';
        ok = uuid_parse(id_text, id);
    }
    free(value);
    if (!ok)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "alias object %s holds no valid key id", label);
    return P11KMS_OK;
}

p11kms_err keystore_alias_put(p11kms *svc, const char *alias, const char *id_text,
                              p11kms_error *err)
{
    svc->lock_dirty = true;
    char label[KEYSTORE_LABEL_MAX];
    label_of(label, LABEL_ALIAS, alias_name(alias));
    p11kms_error probe = {0};
    p11kms_err rc =
        p11_data_write(svc->token, label, (const uint8_t *)id_text, strlen(id_text), &probe);
    if (rc == P11KMS_E_NOT_FOUND)
        return p11_data_create(svc->token, label, (const uint8_t *)id_text, strlen(id_text), err);
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

p11kms_err keystore_alias_delete(p11kms *svc, const char *alias, p11kms_error *err)
{
    svc->lock_dirty = true;
    char label[KEYSTORE_LABEL_MAX];
    label_of(label, LABEL_ALIAS, alias_name(alias));
    return p11_data_delete(svc->token, label, err);
}

typedef struct alias_list_ctx {
    int (*fn)(const char *alias, const char *id_text, void *arg);
    void *arg;
} alias_list_ctx;

static int alias_list_one(const char *label, const uint8_t *value, size_t len, void *arg)
{
    alias_list_ctx *c = arg;
    char alias[KEYSTORE_LABEL_MAX];
    char id_text[P11KMS_KEY_ID_LEN + 1];
    uint8_t id[KEY_UUID_LEN];
    if (len != P11KMS_KEY_ID_LEN)
        return 0;
    memcpy(id_text, value, len);
    id_text[len] = '\0';
    if (!uuid_parse(id_text, id))
        return 0;
    snprintf(alias, sizeof(alias), "alias/%s", label + strlen(LABEL_ALIAS));
    return c->fn(alias, id_text, c->arg);
}

p11kms_err keystore_alias_list(p11kms *svc,
                               int (*fn)(const char *alias, const char *id_text, void *arg),
                               void *arg, p11kms_error *err)
{
    alias_list_ctx c = {fn, arg};
    return p11_data_list(svc->token, LABEL_ALIAS, alias_list_one, &c, err);
}

p11kms_err keystore_journal_begin(p11kms *svc, const char *intent, p11kms_error *err)
{
    p11kms_error probe = {0};
    p11kms_err rc =
        p11_data_write(svc->token, LABEL_JOURNAL, (const uint8_t *)intent, strlen(intent), &probe);
    if (rc == P11KMS_E_NOT_FOUND)
        return p11_data_create(svc->token, LABEL_JOURNAL, (const uint8_t *)intent, strlen(intent),
                               err);
    if (rc != P11KMS_OK && err != NULL)
        *err = probe;
    return rc;
}

p11kms_err keystore_journal_end(p11kms *svc, p11kms_error *err)
{
    /* An empty CKA_VALUE is legal for a data object, but some tokens refuse zero-length
     * attributes: a single space means idle as well. */
    return p11_data_write(svc->token, LABEL_JOURNAL, (const uint8_t *)" ", 1, err);
}

p11kms_err keystore_journal_read(p11kms *svc, char **intent, p11kms_error *err)
{
    uint8_t *value = NULL;
    size_t len = 0;
    p11kms_error probe = {0};
    p11kms_err rc = p11_data_read(svc->token, LABEL_JOURNAL, &value, &len, &probe);
    if (rc == P11KMS_E_NOT_FOUND) {
        *intent = strdup("");
        return *intent ? P11KMS_OK : P11KMS_E_NO_MEMORY;
    }
    if (rc != P11KMS_OK) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    char *text = malloc(len + 1);
    if (text == NULL) {
        free(value);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory reading the journal");
    }
    memcpy(text, value, len);
    text[len] = '\0';
    free(value);
    if (len == 1 && text[0] == ' ')
        text[0] = '\0';
    *intent = text;
    return P11KMS_OK;
}

static void version_id(const uint8_t id[KEY_UUID_LEN], uint32_t version,
                       uint8_t out[VERSION_ID_LEN])
{
    memcpy(out, id, KEY_UUID_LEN);
    out[16] = (uint8_t)(version >> 24);
    out[17] = (uint8_t)(version >> 16);
    out[18] = (uint8_t)(version >> 8);
    out[19] = (uint8_t)version;
}

p11kms_err keystore_version_generate(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t version,
                                     p11_key **out, p11kms_error *err)
{
    uint8_t vid[VERSION_ID_LEN];
    char id_text[P11KMS_KEY_ID_LEN + 1], label[KEYSTORE_LABEL_MAX];
    version_id(id, version, vid);
    uuid_format(id, id_text);
    snprintf(label, sizeof(label), LABEL_VERSION "%s/v%u", id_text, version);
    return p11_key_generate(svc->token, vid, sizeof(vid), label, out, err);
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
