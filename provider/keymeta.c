#include "config.h"

#include "provider/keymeta.h"
#include "common/hex.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYMETA_FORMAT 1

static const char *const state_names[] = {
    [P11KMS_KEY_ENABLED] = "Enabled",
    [P11KMS_KEY_DISABLED] = "Disabled",
    [P11KMS_KEY_PENDING_DELETION] = "PendingDeletion",
    [P11KMS_KEY_PENDING_IMPORT] = "PendingImport",
    [P11KMS_KEY_UNAVAILABLE] = "Unavailable",
};

const char *p11kms_key_state_name(p11kms_key_state state)
{
    return (unsigned)state <= P11KMS_KEY_UNAVAILABLE ? state_names[state] : "Unknown";
}

const char *p11kms_key_origin_name(p11kms_key_origin origin)
{
    return origin == P11KMS_ORIGIN_EXTERNAL ? "EXTERNAL" : "AWS_KMS";
}

const char *rotation_type_name(rotation_type t)
{
    switch (t) {
    case ROTATION_INITIAL:
        return "INITIAL";
    case ROTATION_AUTOMATIC:
        return "AUTOMATIC";
    case ROTATION_ON_DEMAND:
        return "ON_DEMAND";
    }
    return "UNKNOWN";
}

const char *expiration_model_name(expiration_model e)
{
    switch (e) {
    case EXPIRATION_EXPIRES:
        return "KEY_MATERIAL_EXPIRES";
    case EXPIRATION_DOES_NOT_EXPIRE:
        return "KEY_MATERIAL_DOES_NOT_EXPIRE";
    case EXPIRATION_NONE:
        break;
    }
    return NULL;
}

const key_version *keymeta_current(const key_meta *m)
{
    return m->version_count ? &m->versions[m->version_count - 1] : NULL;
}

const key_version *keymeta_version(const key_meta *m, uint32_t number)
{
    for (size_t i = 0; i < m->version_count; i++) {
        if (m->versions[i].number == number)
            return &m->versions[i];
    }
    return NULL;
}

bool keymeta_has_alias(const key_meta *m, const char *alias)
{
    for (size_t i = 0; i < m->alias_count; i++) {
        if (strcmp(m->aliases[i], alias) == 0)
            return true;
    }
    return false;
}

bool keymeta_add_alias(key_meta *m, const char *alias)
{
    if (keymeta_has_alias(m, alias))
        return true;
    char **grown = realloc(m->aliases, (m->alias_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return false;
    m->aliases = grown;
    if ((m->aliases[m->alias_count] = strdup(alias)) == NULL)
        return false;
    m->alias_count++;
    return true;
}

void keymeta_remove_alias(key_meta *m, const char *alias)
{
    for (size_t i = 0; i < m->alias_count; i++) {
        if (strcmp(m->aliases[i], alias) == 0) {
            free(m->aliases[i]);
            m->aliases[i] = m->aliases[--m->alias_count];
            return;
        }
    }
}

bool keymeta_set_tag(key_meta *m, const char *key, const char *value)
{
    char *v = strdup(value);
    if (v == NULL)
        return false;
    for (size_t i = 0; i < m->tag_count; i++) {
        if (strcmp(m->tags[i].key, key) == 0) {
            free((char *)m->tags[i].value);
            m->tags[i].value = v;
            return true;
        }
    }
    p11kms_tag *grown = realloc(m->tags, (m->tag_count + 1) * sizeof(*grown));
    char *k = strdup(key);
    if (grown == NULL || k == NULL) {
        if (grown != NULL)
            m->tags = grown;
        free(v);
        free(k);
        return false;
    }
    m->tags = grown;
    m->tags[m->tag_count].key = k;
    m->tags[m->tag_count].value = v;
    m->tag_count++;
    return true;
}

void keymeta_remove_tag(key_meta *m, const char *key)
{
    for (size_t i = 0; i < m->tag_count; i++) {
        if (strcmp(m->tags[i].key, key) == 0) {
            free((char *)m->tags[i].key);
            free((char *)m->tags[i].value);
            m->tags[i] = m->tags[--m->tag_count];
            return;
        }
    }
}

bool keymeta_add_version(key_meta *m, uint32_t number, int64_t created, rotation_type type)
{
    key_version *grown = realloc(m->versions, (m->version_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return false;
    m->versions = grown;
    m->versions[m->version_count++] =
        (key_version){.number = number, .created = created, .type = type, .reserved = 0};
    return true;
}

bool keymeta_set_description(key_meta *m, const char *description)
{
    char *d = strdup(description ? description : "");
    if (d == NULL)
        return false;
    free(m->description);
    m->description = d;
    return true;
}

void keymeta_free(key_meta *m)
{
    if (m == NULL)
        return;
    keymeta_clear(m);
    free(m);
}

void keymeta_clear(key_meta *m)
{
    free(m->description);
    free(m->versions);
    for (size_t i = 0; i < m->alias_count; i++)
        free(m->aliases[i]);
    free(m->aliases);
    for (size_t i = 0; i < m->tag_count; i++) {
        free((char *)m->tags[i].key);
        free((char *)m->tags[i].value);
    }
    free(m->tags);
}

key_meta *keymeta_clone(const key_meta *m)
{
    key_meta *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    memcpy(c->id, m->id, sizeof(c->id));
    memcpy(c->id_text, m->id_text, sizeof(c->id_text));
    c->state = m->state;
    c->origin = m->origin;
    c->created = m->created;
    c->deletion_date = m->deletion_date;
    c->pending_window_days = m->pending_window_days;
    c->rotation_enabled = m->rotation_enabled;
    c->rotation_period_days = m->rotation_period_days;
    c->next_rotation = m->next_rotation;
    c->row_version = m->row_version;
    c->expiration = m->expiration;
    c->valid_to = m->valid_to;
    memcpy(c->material_kcv, m->material_kcv, sizeof(c->material_kcv));
    c->material_kcv_len = m->material_kcv_len;
    bool ok = keymeta_set_description(c, m->description);
    if (ok && m->version_count) {
        c->versions = malloc(m->version_count * sizeof(*c->versions));
        ok = c->versions != NULL;
        if (ok) {
            memcpy(c->versions, m->versions, m->version_count * sizeof(*c->versions));
            c->version_count = m->version_count;
        }
    }
    for (size_t i = 0; ok && i < m->alias_count; i++)
        ok = keymeta_add_alias(c, m->aliases[i]);
    for (size_t i = 0; ok && i < m->tag_count; i++)
        ok = keymeta_set_tag(c, m->tags[i].key, m->tags[i].value);
    if (!ok) {
        keymeta_free(c);
        return NULL;
    }
    return c;
}

/* --- JSON codec ---------------------------------------------------------------------------- */

/* json-c reports every allocation failure (a NULL object, a non-zero add), and each one is
 * checked: a field silently missing or null would make a record that cannot be read back. */

/* Adds value under key; false when value is NULL (its allocation failed) or the object could not
 * grow, value then released. */
static bool put_field(json_object *o, const char *key, json_object *value)
{
    if (value == NULL)
        return false;
    if (json_object_object_add(o, key, value) != 0) {
        json_object_put(value);
        return false;
    }
    return true;
}

/* The same for an array item. */
static bool put_item(json_object *a, json_object *value)
{
    if (value == NULL)
        return false;
    if (json_object_array_add(a, value) != 0) {
        json_object_put(value);
        return false;
    }
    return true;
}

static bool put_string(json_object *o, const char *key, const char *text)
{
    return put_field(o, key, json_object_new_string(text));
}

static bool put_int(json_object *o, const char *key, int64_t v)
{
    return put_field(o, key, json_object_new_int64(v));
}

static bool put_versions(json_object *o, const key_meta *m)
{
    json_object *versions = json_object_new_array();
    if (!put_field(o, "versions", versions))
        return false;
    for (size_t i = 0; i < m->version_count; i++) {
        const key_version *v = &m->versions[i];
        json_object *jv = json_object_new_object();
        if (!put_item(versions, jv) || !put_int(jv, "number", v->number) ||
            !put_int(jv, "created", v->created) ||
            !put_string(jv, "type", rotation_type_name(v->type)) ||
            !put_int(jv, "reserved", (int64_t)v->reserved))
            return false;
    }
    return true;
}

static bool put_aliases_and_tags(json_object *o, const key_meta *m)
{
    json_object *aliases = json_object_new_array();
    if (!put_field(o, "aliases", aliases))
        return false;
    for (size_t i = 0; i < m->alias_count; i++)
        if (!put_item(aliases, json_object_new_string(m->aliases[i])))
            return false;
    json_object *tags = json_object_new_object();
    if (!put_field(o, "tags", tags))
        return false;
    for (size_t i = 0; i < m->tag_count; i++)
        if (!put_string(tags, m->tags[i].key, m->tags[i].value))
            return false;
    return true;
}

/* Every field, in the order of the records written so far (json-c keeps insertion order). */
static bool put_record(json_object *o, const key_meta *m)
{
    if (!put_field(o, "format", json_object_new_int(KEYMETA_FORMAT)) ||
        !put_string(o, "id", m->id_text) ||
        !put_string(o, "state", p11kms_key_state_name(m->state)) ||
        !put_string(o, "origin", p11kms_key_origin_name(m->origin)) ||
        !put_string(o, "description", m->description ? m->description : "") ||
        !put_int(o, "created", m->created) || !put_int(o, "deletion_date", m->deletion_date) ||
        !put_int(o, "pending_window_days", m->pending_window_days) ||
        !put_field(o, "rotation_enabled", json_object_new_boolean(m->rotation_enabled)) ||
        !put_int(o, "rotation_period_days", m->rotation_period_days) ||
        !put_int(o, "next_rotation", m->next_rotation) || !put_versions(o, m) ||
        !put_aliases_and_tags(o, m))
        return false;
    /* Written only for imported keys: records of other keys keep their earlier form. */
    if (m->expiration != EXPIRATION_NONE &&
        !put_string(o, "expiration_model", expiration_model_name(m->expiration)))
        return false;
    if (m->valid_to != 0 && !put_int(o, "valid_to", m->valid_to))
        return false;
    if (m->material_kcv_len > 0) {
        char hex[2 * KEYMETA_KCV_MAX + 1];
        hex_encode(m->material_kcv, m->material_kcv_len, hex);
        if (!put_string(o, "material_kcv", hex))
            return false;
    }
    return true;
}

p11kms_err keymeta_encode(const key_meta *m, char **out, size_t *len, p11kms_error *err)
{
    *out = NULL;
    json_object *o = json_object_new_object();
    if (o == NULL || !put_record(o, m)) {
        json_object_put(o);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory encoding key metadata");
    }
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    /* json-c's serializer does not report a failed buffer growth: it leaves text out (an empty
     * key, a missing quote). The text is therefore read back and compared with what was meant;
     * records are written rarely (key changes), so the cost is small. */
    json_object *back = text != NULL ? json_tokener_parse(text) : NULL;
    bool same = back != NULL && json_object_equal(o, back);
    json_object_put(back);
    *out = same ? strdup(text) : NULL;
    json_object_put(o);
    if (*out == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory encoding key metadata");
    *len = strlen(*out);
    return P11KMS_OK;
}

typedef struct decoder {
    json_object *obj;
    p11kms_error *err;
    bool failed;
} decoder;

static json_object *field(decoder *d, const char *name, json_type type)
{
    json_object *v;
    if (d->failed)
        return NULL;
    if (!json_object_object_get_ex(d->obj, name, &v) || !json_object_is_type(v, type)) {
        d->failed = true;
        P11KMS_RAISE(d->err, P11KMS_E_INTERNAL,
                     "key metadata in the token is corrupt: field \"%s\" missing or of the "
                     "wrong type",
                     name);
        return NULL;
    }
    return v;
}

static int64_t int_field(decoder *d, const char *name, int64_t min, int64_t max)
{
    json_object *v = field(d, name, json_type_int);
    if (v == NULL)
        return 0;
    int64_t x = json_object_get_int64(v);
    if (x < min || x > max) {
        d->failed = true;
        P11KMS_RAISE(d->err, P11KMS_E_INTERNAL,
                     "key metadata in the token is corrupt: \"%s\" out of range", name);
        return 0;
    }
    return x;
}

static int name_index(const char *text, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(text, names[i]) == 0)
            return i;
    }
    return -1;
}

static const char *const known_fields[] = {
    "format",
    "id",
    "state",
    "origin",
    "description",
    "created",
    "deletion_date",
    "pending_window_days",
    "rotation_enabled",
    "rotation_period_days",
    "next_rotation",
    "versions",
    "aliases",
    "tags",
    "expiration_model",
    "valid_to",
    "material_kcv",
};

/* Optional fields of imported keys. */
static void decode_import_fields(decoder *d, key_meta *m)
{
    json_object *v;
    if (d->failed)
        return;
    if (json_object_object_get_ex(d->obj, "expiration_model", &v)) {
        const char *e = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcmp(e, "KEY_MATERIAL_EXPIRES") == 0)
            m->expiration = EXPIRATION_EXPIRES;
        else if (strcmp(e, "KEY_MATERIAL_DOES_NOT_EXPIRE") == 0)
            m->expiration = EXPIRATION_DOES_NOT_EXPIRE;
        else {
            d->failed = true;
            P11KMS_RAISE(d->err, P11KMS_E_INTERNAL, "key metadata: bad expiration_model");
            return;
        }
    }
    if (json_object_object_get_ex(d->obj, "valid_to", &v))
        m->valid_to = int_field(d, "valid_to", 1, INT64_MAX);
    if (!d->failed && json_object_object_get_ex(d->obj, "material_kcv", &v)) {
        const char *hex = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        size_t n = strlen(hex);
        bool ok = n > 0 && n % 2 == 0 && n / 2 <= KEYMETA_KCV_MAX &&
                  hex_decode(hex, n, m->material_kcv, n / 2, 0);
        if (!ok) {
            d->failed = true;
            P11KMS_RAISE(d->err, P11KMS_E_INTERNAL, "key metadata: bad material_kcv");
            return;
        }
        m->material_kcv_len = n / 2;
    }
    if (!d->failed && (m->expiration == EXPIRATION_EXPIRES) != (m->valid_to != 0)) {
        d->failed = true;
        P11KMS_RAISE(d->err, P11KMS_E_INTERNAL,
                     "key metadata: valid_to must be set exactly for KEY_MATERIAL_EXPIRES");
    }
}

static void decode_versions(decoder *d, key_meta *m)
{
    json_object *versions = field(d, "versions", json_type_array);
    if (versions == NULL)
        return;
    size_t n = json_object_array_length(versions);
    static const char *const types[] = {"INITIAL", "AUTOMATIC", "ON_DEMAND"};
    uint32_t previous = 0;
    for (size_t i = 0; i < n && !d->failed; i++) {
        decoder vd = {json_object_array_get_idx(versions, i), d->err, false};
        if (!json_object_is_type(vd.obj, json_type_object)) {
            vd.failed = true;
            P11KMS_RAISE(d->err, P11KMS_E_INTERNAL, "key metadata: version entry not an object");
        }
        uint32_t number = (uint32_t)int_field(&vd, "number", 1, UINT32_MAX);
        int64_t created = int_field(&vd, "created", 0, INT64_MAX);
        json_object *type = field(&vd, "type", json_type_string);
        int64_t reserved = int_field(&vd, "reserved", 0, INT64_MAX);
        int t = type ? name_index(json_object_get_string(type), types, 3) : -1;
        if (!vd.failed && (t < 0 || number <= previous)) {
            vd.failed = true;
            P11KMS_RAISE(d->err, P11KMS_E_INTERNAL,
                         "key metadata: version %u has a bad type or is out of order", number);
        }
        if (vd.failed || !keymeta_add_version(m, number, created, (rotation_type)t)) {
            d->failed = true;
            return;
        }
        m->versions[m->version_count - 1].reserved = (uint64_t)reserved;
        previous = number;
    }
    if (!d->failed && m->version_count == 0 && m->origin != P11KMS_ORIGIN_EXTERNAL) {
        d->failed = true;
        P11KMS_RAISE(d->err, P11KMS_E_INTERNAL, "key metadata: key %s has no version", m->id_text);
    }
}

static void decode_aliases_and_tags(decoder *d, key_meta *m)
{
    json_object *aliases = field(d, "aliases", json_type_array);
    json_object *tags = field(d, "tags", json_type_object);
    if (d->failed)
        return;
    for (size_t i = 0; i < json_object_array_length(aliases); i++) {
        json_object *a = json_object_array_get_idx(aliases, i);
        if (!json_object_is_type(a, json_type_string) ||
            strncmp(json_object_get_string(a), "alias/", 6) != 0 ||
            !keymeta_add_alias(m, json_object_get_string(a))) {
            d->failed = true;
            P11KMS_RAISE(d->err, P11KMS_E_INTERNAL, "key metadata: bad alias entry");
            return;
        }
    }
    json_object_object_foreach(tags, k, v)
    {
        if (!json_object_is_type(v, json_type_string) ||
            !keymeta_set_tag(m, k, json_object_get_string(v))) {
            d->failed = true;
            P11KMS_RAISE(d->err, P11KMS_E_INTERNAL, "key metadata: bad tag entry");
            return;
        }
    }
}

p11kms_err keymeta_decode(const uint8_t *data, size_t len, key_meta **out, p11kms_error *err)
{
    *out = NULL;
    if (len == 0 || len > 1u << 20 || memchr(data, '\0', len) != NULL)
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "key metadata in the token is corrupt: empty, oversized or binary");
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory decoding key metadata");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *root = json_tokener_parse_ex(tok, (const char *)data, (int)len);
    bool complete = root != NULL && json_tokener_get_error(tok) == json_tokener_success &&
                    json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (!complete || !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL,
                            "key metadata in the token is corrupt: not a JSON object");
    }
    key_meta *m = calloc(1, sizeof(*m));
    decoder d = {root, err, m == NULL};
    if (m == NULL)
        P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory decoding key metadata");
    json_object_object_foreach(root, name, value)
    {
        (void)value;
        if (!d.failed &&
            name_index(name, known_fields, sizeof(known_fields) / sizeof(known_fields[0])) < 0) {
            d.failed = true;
            P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key metadata: unknown field \"%s\"", name);
        }
    }
    if (int_field(&d, "format", 1, 1) != KEYMETA_FORMAT && !d.failed) {
        d.failed = true;
        P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key metadata: unknown format");
    }
    json_object *id = field(&d, "id", json_type_string);
    if (id != NULL && !uuid_parse(json_object_get_string(id), m->id)) {
        d.failed = true;
        P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key metadata: bad key id");
    }
    if (!d.failed)
        uuid_format(m->id, m->id_text);
    json_object *state = field(&d, "state", json_type_string);
    int s = state ? name_index(json_object_get_string(state), state_names, 4) : -1;
    json_object *origin = field(&d, "origin", json_type_string);
    json_object *description = field(&d, "description", json_type_string);
    if (!d.failed) {
        const char *o = json_object_get_string(origin);
        if (s < 0 || (strcmp(o, "AWS_KMS") != 0 && strcmp(o, "EXTERNAL") != 0)) {
            d.failed = true;
            P11KMS_RAISE(err, P11KMS_E_INTERNAL, "key metadata: bad state or origin");
        } else {
            m->state = (p11kms_key_state)s;
            m->origin = strcmp(o, "EXTERNAL") == 0 ? P11KMS_ORIGIN_EXTERNAL : P11KMS_ORIGIN_TOKEN;
            if (!keymeta_set_description(m, json_object_get_string(description)))
                d.failed = true;
        }
    }
    if (m != NULL) {
        m->created = int_field(&d, "created", 0, INT64_MAX);
        m->deletion_date = int_field(&d, "deletion_date", 0, INT64_MAX);
        m->pending_window_days = (unsigned)int_field(&d, "pending_window_days", 0, 30);
        json_object *re = field(&d, "rotation_enabled", json_type_boolean);
        m->rotation_enabled = re ? json_object_get_boolean(re) : false;
        m->rotation_period_days = (unsigned)int_field(&d, "rotation_period_days", 0, 2560);
        m->next_rotation = int_field(&d, "next_rotation", 0, INT64_MAX);
        decode_versions(&d, m);
        decode_aliases_and_tags(&d, m);
        decode_import_fields(&d, m);
    }
    json_object_put(root);
    if (d.failed) {
        keymeta_free(m);
        if (err != NULL && err->code == P11KMS_OK)
            P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory decoding key metadata");
        return err != NULL ? err->code : P11KMS_E_INTERNAL;
    }
    *out = m;
    return P11KMS_OK;
}
