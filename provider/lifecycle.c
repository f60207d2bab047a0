#include "config.h"

#include "provider/lifecycle.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/gate.h"
#include "provider/import.h"
#include "provider/keycache.h"
#include "provider/keyref.h"
#include "provider/keystore.h"

#define DAY_SECONDS INT64_C(86400)
#define DELETION_WINDOW_MIN 7
#define DELETION_WINDOW_MAX 30
#define DELETION_WINDOW_DEFAULT 30
#define ROTATION_PERIOD_MIN 90
#define ROTATION_PERIOD_MAX 2560
#define ROTATION_PERIOD_DEFAULT 365
#define TAG_KEY_MAX 128
#define TAG_VALUE_MAX 256

p11kms_err lifecycle_refuse_state(const key_meta *m, const char *operation, p11kms_error *err)
{
    return P11KMS_RAISE(err, P11KMS_E_INVALID_STATE, "%s refused: key %s is %s", operation,
                        m->id_text, p11kms_key_state_name(m->state));
}

p11kms_err lifecycle_refuse_crypto(const key_meta *m, const char *operation, p11kms_error *err)
{
    p11kms_err code = m->state == P11KMS_KEY_DISABLED ? P11KMS_E_DISABLED : P11KMS_E_INVALID_STATE;
    return P11KMS_RAISE(err, code, "%s refused: key %s is %s", operation, m->id_text,
                        p11kms_key_state_name(m->state));
}

/* --- steps shared by every mutation -------------------------------------------------------- */

/* Writes the record and installs a copy in this process's cache. */
static p11kms_err commit(p11kms *svc, key_entry *entry, const key_meta *m, p11kms_error *err)
{
    p11kms_err rc = keystore_meta_write(svc, m, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *copy = keymeta_clone(m);
    if (copy == NULL) {
        keycache_forget(svc, entry); /* next access re-reads the token */
        return P11KMS_OK;
    }
    keycache_install(svc, entry, copy);
    return P11KMS_OK;
}

static p11kms_err journal_printf(p11kms *svc, p11kms_error *err, const char *fmt, ...)
    P11KMS_PRINTF(3, 4);

static p11kms_err journal_printf(p11kms *svc, p11kms_error *err, const char *fmt, ...)
{
    char intent[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(intent, sizeof(intent), fmt, ap);
    va_end(ap);
    return keystore_journal_begin(svc, intent, err);
}

/* A key-scoped mutation: resolve, ask the policy, then under the lock re-read the record (the
 * token is the truth, not this process's cache) and let fn change it. */
typedef p11kms_err (*mutator)(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                              p11kms_error *err);

static p11kms_err mutate_key(p11kms *svc, const p11kms_principal *who, const char *action,
                             const char *key_ref, mutator fn, void *arg, p11kms_key_metadata *out,
                             p11kms_error *err)
{
    key_access acc;
    p11kms_err rc = key_access_begin(svc, key_ref, &acc, err);
    if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND)
        return rc;
    if (rc == P11KMS_E_NOT_FOUND) {
        p11kms_error saved = err ? *err : (p11kms_error){0};
        rc = gate_check(svc, who, action, key_ref, NULL, NULL, NULL, err);
        if (rc == P11KMS_OK && err != NULL)
            *err = saved;
        return rc == P11KMS_OK ? P11KMS_E_NOT_FOUND : rc;
    }
    rc = gate_check(svc, who, action, key_ref, acc.meta, NULL, NULL, err);
    key_entry *entry = acc.entry;
    key_access_end(&acc);
    if (rc != P11KMS_OK)
        return rc;

    rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        keycache_forget(svc, entry);
        rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "key %s no longer exists", entry->id_text);
    }
    if (rc == P11KMS_OK)
        rc = fn(svc, entry, m, arg, err);
    keystore_unlock(svc);
    if (rc == P11KMS_OK && out != NULL)
        lifecycle_fill_metadata(svc, m, out);
    keymeta_free(m);
    return rc;
}

/* --- create ------------------------------------------------------------------------------- */

static p11kms_err check_tags(const p11kms_tag *tags, size_t count, p11kms_error *err)
{
    if (count > P11KMS_MAX_TAGS_PER_KEY)
        return P11KMS_RAISE(err, P11KMS_E_LIMIT_EXCEEDED, "a key can have at most %d tags",
                            P11KMS_MAX_TAGS_PER_KEY);
    for (size_t i = 0; i < count; i++) {
        size_t kl = tags[i].key ? strlen(tags[i].key) : 0;
        size_t vl = tags[i].value ? strlen(tags[i].value) : SIZE_MAX;
        if (kl == 0 || kl > TAG_KEY_MAX || vl > TAG_VALUE_MAX)
            return P11KMS_RAISE(err, P11KMS_E_TAG,
                                "tag keys need 1..%d characters and values 0..%d", TAG_KEY_MAX,
                                TAG_VALUE_MAX);
        if (strncmp(tags[i].key, "aws:", 4) == 0)
            return P11KMS_RAISE(err, P11KMS_E_TAG, "tag keys beginning with \"aws:\" are reserved");
    }
    return P11KMS_OK;
}

static p11kms_err check_create_input(const p11kms_create_key_input *in, bool *external,
                                     p11kms_error *err)
{
    if (in->key_spec != NULL && strcmp(in->key_spec, "SYMMETRIC_DEFAULT") != 0)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "key spec %.64s is not supported: p11kms keys are symmetric AES-256 "
                            "(SYMMETRIC_DEFAULT)",
                            in->key_spec);
    if (in->key_usage != NULL && strcmp(in->key_usage, "ENCRYPT_DECRYPT") != 0)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "key usage %.64s is not supported: only ENCRYPT_DECRYPT",
                            in->key_usage);
    *external = false;
    if (in->origin != NULL && strcmp(in->origin, "AWS_KMS") != 0) {
        if (strcmp(in->origin, "EXTERNAL") != 0)
            return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                                "origin %.64s is not supported: AWS_KMS or EXTERNAL", in->origin);
        *external = true;
    }
    if (in->description != NULL && strlen(in->description) > P11KMS_DESCRIPTION_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "description exceeds %d characters",
                            P11KMS_DESCRIPTION_MAX);
    return check_tags(in->tags, in->tag_count, err);
}

static p11kms_err new_key_id(p11kms *svc, uint8_t id[KEY_UUID_LEN], p11kms_error *err)
{
    p11kms_err rc = p11_token_random(svc->token, id, KEY_UUID_LEN, err);
    if (rc != P11KMS_OK)
        return rc;
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
    return P11KMS_OK;
}

static key_meta *build_new_meta(const uint8_t id[KEY_UUID_LEN], const p11kms_create_key_input *in,
                                bool external)
{
    key_meta *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    memcpy(m->id, id, KEY_UUID_LEN);
    uuid_format(id, m->id_text);
    m->state = external ? P11KMS_KEY_PENDING_IMPORT : P11KMS_KEY_ENABLED;
    m->origin = external ? P11KMS_ORIGIN_EXTERNAL : P11KMS_ORIGIN_TOKEN;
    m->created = service_now();
    m->rotation_period_days = ROTATION_PERIOD_DEFAULT;
    bool ok = keymeta_set_description(m, in->description);
    if (ok && !external)
        ok = keymeta_add_version(m, 1, m->created, ROTATION_INITIAL);
    for (size_t i = 0; ok && i < in->tag_count; i++)
        ok = keymeta_set_tag(m, in->tags[i].key, in->tags[i].value);
    if (!ok) {
        keymeta_free(m);
        return NULL;
    }
    return m;
}

static void destroy_version_quietly(p11kms *svc, const uint8_t id[KEY_UUID_LEN], uint32_t v)
{
    p11_key *key = NULL;
    p11kms_error ignored = {0};
    if (keystore_version_find(svc, id, v, &key, &ignored) == P11KMS_OK)
        p11_key_destroy(svc->token, key, &ignored);
}

/* The caller's input with the defaults the policy gives keys its creator makes: the caller's
 * description wins, the caller's tags override policy tags with the same key. */
static p11kms_err merge_create_defaults(const p11kms_create_key_input *in, const gate_create *g,
                                        p11kms_create_key_input *merged, p11kms_tag **tags,
                                        p11kms_error *err)
{
    *merged = *in;
    *tags = NULL;
    if (merged->description == NULL)
        merged->description = g->description;
    if (g->tag_count == 0)
        return P11KMS_OK;
    *tags = calloc(g->tag_count + in->tag_count, sizeof(**tags));
    if (*tags == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < g->tag_count; i++)
        (*tags)[n++] = g->tags[i];
    for (size_t i = 0; i < in->tag_count; i++)
        (*tags)[n++] = in->tags[i]; /* later entries win in keymeta_set_tag */
    merged->tags = *tags;
    merged->tag_count = n;
    return P11KMS_OK;
}

static p11kms_err create_key_locked(p11kms *svc, key_meta *m, bool external, p11kms_error *err)
{
    /* Crash safety: the journal names the key until its record exists; recovery destroys a
     * version object whose record was never written (no ciphertext can exist under it). */
    p11kms_err rc = journal_printf(svc, err, "{\"op\":\"create\",\"key\":\"%s\"}", m->id_text);
    p11_key *v1 = NULL;
    if (rc == P11KMS_OK && !external)
        rc = keystore_version_generate(svc, m->id, 1, &v1, err);
    if (rc == P11KMS_OK)
        rc = keystore_meta_create(svc, m, err);
    if (rc != P11KMS_OK && v1 != NULL)
        destroy_version_quietly(svc, m->id, 1);
    p11kms_error ignored = {0};
    p11kms_err end = keystore_journal_end(svc, rc == P11KMS_OK ? err : &ignored);
    return rc != P11KMS_OK ? rc : end;
}

p11kms_err p11kms_create_key(p11kms *svc, const p11kms_principal *who,
                             const p11kms_create_key_input *in, p11kms_key_metadata *out,
                             p11kms_error *err)
{
    static const p11kms_create_key_input no_input = {0};
    gate_create g;
    p11kms_err rc = gate_check_create(svc, who, &g, err);
    if (rc != P11KMS_OK)
        return rc;
    p11kms_create_key_input merged;
    p11kms_tag *tags = NULL;
    bool external = false;
    uint8_t id[KEY_UUID_LEN];
    key_meta *m = NULL;
    rc = merge_create_defaults(in ? in : &no_input, &g, &merged, &tags, err);
    if (rc == P11KMS_OK)
        rc = check_create_input(&merged, &external, err);
    if (rc == P11KMS_OK)
        rc = new_key_id(svc, id, err);
    if (rc == P11KMS_OK && (m = build_new_meta(id, &merged, external)) == NULL)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory creating a key");
    free(tags);
    gate_create_end(&g);
    if (rc == P11KMS_OK)
        rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK) {
        keymeta_free(m);
        return rc;
    }
    rc = create_key_locked(svc, m, external, err);
    keystore_unlock(svc);
    if (rc == P11KMS_OK) {
        if (out != NULL)
            lifecycle_fill_metadata(svc, m, out);
        key_entry *entry = keycache_entry(svc, m->id_text);
        if (entry != NULL) {
            keycache_install(svc, entry, m);
            m = NULL;
        }
    }
    keymeta_free(m);
    return rc;
}

/* --- state changes ------------------------------------------------------------------------ */

/* One record write: the bump of the state generation on unlock makes every process on this host
 * re-read the record before its next operation (doc/token-layout.md). Key objects are never
 * modified: SoftHSM rewrites an object file in place on C_SetAttributeValue, and a process
 * killed meanwhile would destroy the key version. */
static p11kms_err change_state(p11kms *svc, key_entry *entry, key_meta *m, p11kms_key_state state,
                               p11kms_error *err)
{
    m->state = state;
    return commit(svc, entry, m, err);
}

/* EnableKey and DisableKey: only between Enabled and Disabled; the other states refuse. */
static p11kms_err do_toggle(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                            p11kms_error *err)
{
    p11kms_key_state want = *(const p11kms_key_state *)arg;
    if (m->state != P11KMS_KEY_ENABLED && m->state != P11KMS_KEY_DISABLED)
        return lifecycle_refuse_state(m, want == P11KMS_KEY_ENABLED ? "EnableKey" : "DisableKey",
                                      err);
    return m->state == want ? P11KMS_OK : change_state(svc, entry, m, want, err);
}

p11kms_err p11kms_enable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                             p11kms_error *err)
{
    p11kms_key_state want = P11KMS_KEY_ENABLED;
    return mutate_key(svc, who, "enable-key", key_ref, do_toggle, &want, NULL, err);
}

p11kms_err p11kms_disable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                              p11kms_error *err)
{
    p11kms_key_state want = P11KMS_KEY_DISABLED;
    return mutate_key(svc, who, "disable-key", key_ref, do_toggle, &want, NULL, err);
}

static p11kms_err do_schedule(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                              p11kms_error *err)
{
    unsigned days = *(unsigned *)arg;
    if (m->state == P11KMS_KEY_PENDING_DELETION)
        return lifecycle_refuse_state(m, "ScheduleKeyDeletion", err);
    m->deletion_date = service_now() + (int64_t)days * DAY_SECONDS;
    m->pending_window_days = days;
    return change_state(svc, entry, m, P11KMS_KEY_PENDING_DELETION, err);
}

p11kms_err p11kms_schedule_key_deletion(p11kms *svc, const p11kms_principal *who,
                                        const char *key_ref, unsigned pending_window_days,
                                        p11kms_key_metadata *out, p11kms_error *err)
{
    unsigned days = pending_window_days ? pending_window_days : DELETION_WINDOW_DEFAULT;
    if (days < DELETION_WINDOW_MIN || days > DELETION_WINDOW_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "pending window must be %d to %d days, not %u", DELETION_WINDOW_MIN,
                            DELETION_WINDOW_MAX, days);
    return mutate_key(svc, who, "schedule-key-deletion", key_ref, do_schedule, &days, out, err);
}

static p11kms_err do_cancel(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                            p11kms_error *err)
{
    (void)arg;
    if (m->state != P11KMS_KEY_PENDING_DELETION)
        return lifecycle_refuse_state(m, "CancelKeyDeletion", err);
    m->deletion_date = 0;
    m->pending_window_days = 0;
    /* A key still waiting for its material goes back to waiting; any other becomes Disabled. */
    p11kms_key_state next = m->version_count == 0 ? P11KMS_KEY_PENDING_IMPORT : P11KMS_KEY_DISABLED;
    return change_state(svc, entry, m, next, err);
}

p11kms_err p11kms_cancel_key_deletion(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      p11kms_error *err)
{
    return mutate_key(svc, who, "cancel-key-deletion", key_ref, do_cancel, NULL, NULL, err);
}

/* --- description and tags ------------------------------------------------------------------ */

static p11kms_err refuse_if_pending_deletion(const key_meta *m, const char *op, p11kms_error *err)
{
    return m->state == P11KMS_KEY_PENDING_DELETION ? lifecycle_refuse_state(m, op, err) : P11KMS_OK;
}

static p11kms_err do_describe_update(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                                     p11kms_error *err)
{
    p11kms_err rc = refuse_if_pending_deletion(m, "UpdateKeyDescription", err);
    if (rc != P11KMS_OK)
        return rc;
    if (!keymeta_set_description(m, arg))
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    return commit(svc, entry, m, err);
}

p11kms_err p11kms_update_key_description(p11kms *svc, const p11kms_principal *who,
                                         const char *key_ref, const char *description,
                                         p11kms_error *err)
{
    if (description == NULL || strlen(description) > P11KMS_DESCRIPTION_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "description must have at most %d characters",
                            P11KMS_DESCRIPTION_MAX);
    return mutate_key(svc, who, "update-key-description", key_ref, do_describe_update,
                      (void *)description, NULL, err);
}

typedef struct tag_change {
    const p11kms_tag *tags;
    const char *const *remove;
    size_t count;
} tag_change;

static p11kms_err do_tag(p11kms *svc, key_entry *entry, key_meta *m, void *arg, p11kms_error *err)
{
    const tag_change *c = arg;
    p11kms_err rc = refuse_if_pending_deletion(m, "TagResource", err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < c->count; i++) {
        if (!keymeta_set_tag(m, c->tags[i].key, c->tags[i].value))
            return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    if (m->tag_count > P11KMS_MAX_TAGS_PER_KEY)
        return P11KMS_RAISE(err, P11KMS_E_LIMIT_EXCEEDED, "key %s would have %zu tags (limit %d)",
                            m->id_text, m->tag_count, P11KMS_MAX_TAGS_PER_KEY);
    return commit(svc, entry, m, err);
}

p11kms_err p11kms_tag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               const p11kms_tag *tags, size_t count, p11kms_error *err)
{
    if (count == 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "at least one tag is required");
    p11kms_err rc = check_tags(tags, count, err);
    if (rc != P11KMS_OK)
        return rc;
    tag_change c = {tags, NULL, count};
    return mutate_key(svc, who, "tag-resource", key_ref, do_tag, &c, NULL, err);
}

static p11kms_err do_untag(p11kms *svc, key_entry *entry, key_meta *m, void *arg, p11kms_error *err)
{
    const tag_change *c = arg;
    p11kms_err rc = refuse_if_pending_deletion(m, "UntagResource", err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < c->count; i++)
        keymeta_remove_tag(m, c->remove[i]);
    return commit(svc, entry, m, err);
}

p11kms_err p11kms_untag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                 const char *const *tag_keys, size_t count, p11kms_error *err)
{
    if (count == 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "at least one tag key is required");
    for (size_t i = 0; i < count; i++) {
        if (tag_keys[i] == NULL || *tag_keys[i] == '\0')
            return P11KMS_RAISE(err, P11KMS_E_TAG, "tag keys must not be empty");
    }
    tag_change c = {NULL, tag_keys, count};
    return mutate_key(svc, who, "untag-resource", key_ref, do_untag, &c, NULL, err);
}

/* --- rotation ------------------------------------------------------------------------------- */

static p11kms_err check_rotatable(const key_meta *m, const char *op, p11kms_error *err)
{
    if (m->origin == P11KMS_ORIGIN_EXTERNAL || m->state == P11KMS_KEY_PENDING_IMPORT)
        return P11KMS_RAISE(err, P11KMS_E_UNSUPPORTED,
                            "%s refused: key %s has imported key material, which p11kms cannot "
                            "rotate",
                            op, m->id_text);
    if (m->state != P11KMS_KEY_ENABLED)
        return P11KMS_RAISE(err, P11KMS_E_INVALID_STATE, "%s refused: key %s is %s", op, m->id_text,
                            p11kms_key_state_name(m->state));
    return P11KMS_OK;
}

p11kms_err lifecycle_rotate_locked(p11kms *svc, key_meta *m, rotation_type type, p11kms_error *err)
{
    const key_version *cur = keymeta_current(m);
    uint32_t next = cur ? cur->number + 1 : 1;
    key_entry *entry = keycache_entry(svc, m->id_text);
    if (entry == NULL)
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    /* Crash safety: until the record lists the version, recovery destroys its object; nothing
     * can have been encrypted under it. */
    p11kms_err rc = journal_printf(svc, err, "{\"op\":\"rotate\",\"key\":\"%s\",\"version\":%u}",
                                   m->id_text, next);
    p11_key *key = NULL;
    if (rc == P11KMS_OK)
        rc = keystore_version_generate(svc, m->id, next, &key, err);
    if (rc != P11KMS_OK)
        return rc;
    int64_t now = service_now();
    if (!keymeta_add_version(m, next, now, type)) {
        p11_key_destroy(svc->token, key, NULL);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    if (m->rotation_enabled)
        m->next_rotation = now + (int64_t)m->rotation_period_days * DAY_SECONDS;
    rc = commit(svc, entry, m, err);
    if (rc != P11KMS_OK) {
        m->version_count--;
        p11_key_destroy(svc->token, key, NULL);
        return rc;
    }
    return keystore_journal_end(svc, err);
}

static p11kms_err do_rotate(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                            p11kms_error *err)
{
    (void)entry;
    (void)arg;
    p11kms_err rc = check_rotatable(m, "RotateKeyOnDemand", err);
    return rc != P11KMS_OK ? rc : lifecycle_rotate_locked(svc, m, ROTATION_ON_DEMAND, err);
}

p11kms_err p11kms_rotate_key_on_demand(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_key_metadata *out,
                                       p11kms_error *err)
{
    return mutate_key(svc, who, "rotate-key-on-demand", key_ref, do_rotate, NULL, out, err);
}

static p11kms_err do_rotation_setting(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                                      p11kms_error *err)
{
    unsigned period = *(unsigned *)arg; /* 0: disable */
    p11kms_err rc = check_rotatable(m, period ? "EnableKeyRotation" : "DisableKeyRotation", err);
    if (rc != P11KMS_OK)
        return rc;
    m->rotation_enabled = period != 0;
    if (period != 0) {
        m->rotation_period_days = period;
        m->next_rotation = service_now() + (int64_t)period * DAY_SECONDS;
    } else {
        m->next_rotation = 0;
    }
    return commit(svc, entry, m, err);
}

p11kms_err p11kms_enable_key_rotation(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      unsigned period_days, p11kms_error *err)
{
    unsigned period = period_days ? period_days : ROTATION_PERIOD_DEFAULT;
    if (period < ROTATION_PERIOD_MIN || period > ROTATION_PERIOD_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "rotation period must be %d to %d days, not %u", ROTATION_PERIOD_MIN,
                            ROTATION_PERIOD_MAX, period);
    return mutate_key(svc, who, "enable-key-rotation", key_ref, do_rotation_setting, &period, NULL,
                      err);
}

p11kms_err p11kms_disable_key_rotation(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_error *err)
{
    unsigned off = 0;
    return mutate_key(svc, who, "disable-key-rotation", key_ref, do_rotation_setting, &off, NULL,
                      err);
}

/* --- aliases ------------------------------------------------------------------------------- */

typedef struct alias_change {
    const char *alias;
    const char *old_target; /* id text, or NULL */
} alias_change;

static p11kms_err do_alias_add(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                               p11kms_error *err)
{
    const alias_change *c = arg;
    p11kms_err rc = refuse_if_pending_deletion(m, "CreateAlias", err);
    if (rc != P11KMS_OK)
        return rc;
    char existing[P11KMS_KEY_ID_LEN + 1];
    p11kms_error probe = {0};
    rc = keystore_alias_read(svc, c->alias, existing, &probe);
    if (c->old_target == NULL && rc == P11KMS_OK)
        return P11KMS_RAISE(err, P11KMS_E_ALREADY_EXISTS, "alias %s already exists", c->alias);
    if (c->old_target != NULL && (rc != P11KMS_OK || strcmp(existing, c->old_target) != 0))
        return P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                            "alias %s changed while it was being updated; retry", c->alias);
    if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    if (m->alias_count >= P11KMS_MAX_ALIASES_PER_KEY)
        return P11KMS_RAISE(err, P11KMS_E_LIMIT_EXCEEDED, "key %s already has %d aliases",
                            m->id_text, P11KMS_MAX_ALIASES_PER_KEY);
    if (c->old_target != NULL && strcmp(c->old_target, m->id_text) == 0)
        return P11KMS_OK;
    /* The alias object is the truth: recovery makes the records agree with it. */
    rc = journal_printf(svc, err, "{\"op\":\"alias\",\"alias\":\"%s\"}", c->alias);
    if (rc != P11KMS_OK)
        return rc;
    if (!keymeta_add_alias(m, c->alias))
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    rc = commit(svc, entry, m, err);
    if (rc == P11KMS_OK)
        rc = keystore_alias_put(svc, c->alias, m->id_text, err);
    if (rc == P11KMS_OK && c->old_target != NULL) {
        key_entry *old_entry = keycache_entry(svc, c->old_target);
        key_meta *old = NULL;
        if (old_entry != NULL && keystore_meta_read(svc, c->old_target, &old, NULL) == P11KMS_OK) {
            keymeta_remove_alias(old, c->alias);
            rc = commit(svc, old_entry, old, err);
        }
        keymeta_free(old);
    }
    keycache_alias_forget(svc, c->alias);
    if (rc == P11KMS_OK)
        rc = keystore_journal_end(svc, err);
    return rc;
}

p11kms_err p11kms_create_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err)
{
    p11kms_err rc = keyref_check_alias_name(alias_name, err);
    if (rc == P11KMS_OK)
        rc = gate_check_alias(svc, who, "create-alias", alias_name, err);
    if (rc != P11KMS_OK)
        return rc;
    alias_change c = {alias_name, NULL};
    return mutate_key(svc, who, "create-alias", target_key_ref, do_alias_add, &c, NULL, err);
}

/* The key an existing alias points to, after asking the policy for action on it. */
static p11kms_err alias_target_checked(p11kms *svc, const p11kms_principal *who, const char *action,
                                       const char *alias, char target[P11KMS_KEY_ID_LEN + 1],
                                       p11kms_error *err)
{
    p11kms_err rc = keyref_check_alias_name(alias, err);
    if (rc == P11KMS_OK)
        rc = gate_check_alias(svc, who, action, alias, err);
    if (rc != P11KMS_OK)
        return rc;
    key_access acc;
    rc = key_access_begin(svc, alias, &acc, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        /* A dangling alias (its key purged) can still be deleted. */
        p11kms_error probe = {0};
        if (keystore_alias_read(svc, alias, target, &probe) != P11KMS_OK)
            return gate_check(svc, who, action, alias, NULL, NULL, NULL, err) == P11KMS_OK
                       ? P11KMS_RAISE(err, P11KMS_E_NOT_FOUND, "alias %s does not exist", alias)
                       : P11KMS_E_ACCESS_DENIED;
        return gate_check(svc, who, action, alias, NULL, NULL, NULL, err);
    }
    if (rc != P11KMS_OK)
        return rc;
    rc = gate_check(svc, who, action, alias, acc.meta, NULL, NULL, err);
    memcpy(target, acc.meta->id_text, P11KMS_KEY_ID_LEN + 1);
    key_access_end(&acc);
    return rc;
}

p11kms_err p11kms_update_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err)
{
    char old_target[P11KMS_KEY_ID_LEN + 1];
    p11kms_err rc = alias_target_checked(svc, who, "update-alias", alias_name, old_target, err);
    if (rc != P11KMS_OK)
        return rc;
    alias_change c = {alias_name, old_target};
    return mutate_key(svc, who, "update-alias", target_key_ref, do_alias_add, &c, NULL, err);
}

p11kms_err p11kms_delete_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               p11kms_error *err)
{
    char target[P11KMS_KEY_ID_LEN + 1];
    p11kms_err rc = alias_target_checked(svc, who, "delete-alias", alias_name, target, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = journal_printf(svc, err, "{\"op\":\"alias\",\"alias\":\"%s\"}", alias_name);
    if (rc == P11KMS_OK)
        rc = keystore_alias_delete(svc, alias_name, err);
    if (rc == P11KMS_OK) {
        key_meta *m = NULL;
        key_entry *entry = keycache_entry(svc, target);
        if (entry != NULL && keystore_meta_read(svc, target, &m, NULL) == P11KMS_OK) {
            keymeta_remove_alias(m, alias_name);
            rc = commit(svc, entry, m, err);
        }
        keymeta_free(m);
    }
    keycache_alias_forget(svc, alias_name);
    if (rc == P11KMS_OK)
        rc = keystore_journal_end(svc, err);
    keystore_unlock(svc);
    return rc;
}

/* --- deletion ------------------------------------------------------------------------------ */

p11kms_err lifecycle_purge_locked(p11kms *svc, const key_meta *m, p11kms_error *err)
{
    p11kms_err rc = journal_printf(svc, err, "{\"op\":\"purge\",\"key\":\"%s\"}", m->id_text);
    if (rc != P11KMS_OK)
        return rc;
    key_entry *entry = keycache_entry(svc, m->id_text);
    p11kms_error ignored = {0};
    for (size_t i = 0; i < m->alias_count; i++) {
        keystore_alias_delete(svc, m->aliases[i], &ignored);
        keycache_alias_forget(svc, m->aliases[i]);
    }
    for (size_t i = 0; i < m->version_count; i++) {
        p11_key *key = NULL;
        uint32_t v = m->versions[i].number;
        rc = keystore_version_find(svc, m->id, v, &key, err);
        if (rc == P11KMS_OK)
            rc = p11_key_destroy(svc->token, key, err);
        if (entry != NULL)
            keycache_drop_version_key(svc, entry, v);
        if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND)
            return rc; /* the journal keeps the purge for recovery */
    }
    rc = keystore_meta_delete(svc, m->id_text, err);
    if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND)
        return rc;
    if (entry != NULL)
        keycache_forget(svc, entry);
    return keystore_journal_end(svc, err);
}

p11kms_err lifecycle_purge_if_due(p11kms *svc, key_entry *entry, p11kms_error *err)
{
    p11kms_err rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *m = NULL;
    rc = keystore_meta_read(svc, entry->id_text, &m, err);
    if (rc == P11KMS_E_NOT_FOUND) {
        keycache_forget(svc, entry);
        rc = P11KMS_OK;
    } else if (rc == P11KMS_OK) {
        if (m->state == P11KMS_KEY_PENDING_DELETION && m->deletion_date <= service_now())
            rc = lifecycle_purge_locked(svc, m, err);
        else
            keycache_install(svc, entry, keymeta_clone(m));
    }
    keystore_unlock(svc);
    keymeta_free(m);
    return rc;
}

/* --- journal recovery ---------------------------------------------------------------------- */

void lifecycle_report(void (*fn)(const char *line, void *arg), void *arg, const char *fmt, ...)
{
    if (fn == NULL)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fn(line, arg);
}

static p11kms_err recover_create(p11kms *svc, const char *id_text, void (*fn)(const char *, void *),
                                 void *arg, p11kms_error *err)
{
    key_meta *m = NULL;
    p11kms_error probe = {0};
    p11kms_err rc = keystore_meta_read(svc, id_text, &m, &probe);
    keymeta_free(m);
    if (rc == P11KMS_OK)
        return P11KMS_OK; /* the create finished; only the journal was left */
    if (rc != P11KMS_E_NOT_FOUND) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    uint8_t id[KEY_UUID_LEN];
    if (!uuid_parse(id_text, id))
        return P11KMS_RAISE(err, P11KMS_E_INTERNAL, "journal names a malformed key id");
    destroy_version_quietly(svc, id, 1);
    lifecycle_report(fn, arg,
                     "rolled back interrupted create-key of %s (its key object was destroyed)",
                     id_text);
    return P11KMS_OK;
}

static p11kms_err recover_rotate(p11kms *svc, const char *id_text, uint32_t version,
                                 void (*fn)(const char *, void *), void *arg, p11kms_error *err)
{
    key_meta *m = NULL;
    p11kms_err rc = keystore_meta_read(svc, id_text, &m, err);
    if (rc != P11KMS_OK)
        return rc == P11KMS_E_NOT_FOUND ? P11KMS_OK : rc;
    if (keymeta_version(m, version) == NULL) {
        destroy_version_quietly(svc, m->id, version);
        lifecycle_report(fn, arg, "rolled back interrupted rotation of %s to version %u", id_text,
                         version);
    }
    keymeta_free(m);
    return P11KMS_OK;
}

/* Journals of state changes are written by earlier versions only; the record is the truth. */
static p11kms_err recover_state(const char *id_text, void (*fn)(const char *, void *), void *arg)
{
    lifecycle_report(fn, arg, "cleared the journal of an interrupted state change of %s", id_text);
    return P11KMS_OK;
}

typedef struct alias_holders {
    const char *alias;
    char (*ids)[P11KMS_KEY_ID_LEN + 1];
    size_t count;
    bool oom;
} alias_holders;

static int collect_alias_holder(const key_meta *m, void *arg)
{
    alias_holders *h = arg;
    if (!keymeta_has_alias(m, h->alias))
        return 0;
    void *grown = realloc(h->ids, (h->count + 1) * sizeof(*h->ids));
    if (grown == NULL) {
        h->oom = true;
        return 1;
    }
    h->ids = grown;
    memcpy(h->ids[h->count++], m->id_text, P11KMS_KEY_ID_LEN + 1);
    return 0;
}

/* Rewrites one key's record so that it lists the alias exactly when it should. */
static p11kms_err set_alias_membership(p11kms *svc, const char *id_text, const char *alias,
                                       bool member, p11kms_error *err)
{
    key_meta *m = NULL;
    p11kms_err rc = keystore_meta_read(svc, id_text, &m, err);
    if (rc != P11KMS_OK)
        return rc == P11KMS_E_NOT_FOUND ? P11KMS_OK : rc;
    if (keymeta_has_alias(m, alias) != member) {
        if (!member)
            keymeta_remove_alias(m, alias);
        else if (!keymeta_add_alias(m, alias))
            rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
        key_entry *entry = keycache_entry(svc, id_text);
        if (rc == P11KMS_OK)
            rc = entry ? commit(svc, entry, m, err)
                       : P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    keymeta_free(m);
    return rc;
}

/* Makes the key records agree with the alias object, which is the truth. */
p11kms_err lifecycle_reconcile_alias(p11kms *svc, const char *alias,
                                     void (*fn)(const char *, void *), void *arg, p11kms_error *err)
{
    char target[P11KMS_KEY_ID_LEN + 1] = "";
    p11kms_error probe = {0};
    p11kms_err rc = keystore_alias_read(svc, alias, target, &probe);
    if (rc != P11KMS_OK && rc != P11KMS_E_NOT_FOUND) {
        if (err != NULL)
            *err = probe;
        return rc;
    }
    if (rc == P11KMS_E_NOT_FOUND)
        target[0] = '\0';
    alias_holders h = {alias, NULL, 0, false};
    rc = keystore_meta_list(svc, collect_alias_holder, NULL, &h, err);
    if (rc == P11KMS_OK && h.oom)
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == P11KMS_OK && i < h.count; i++) {
        if (strcmp(h.ids[i], target) != 0)
            rc = set_alias_membership(svc, h.ids[i], alias, false, err);
    }
    if (rc == P11KMS_OK && target[0] != '\0')
        rc = set_alias_membership(svc, target, alias, true, err);
    free(h.ids);
    keycache_alias_forget(svc, alias);
    if (rc == P11KMS_OK)
        lifecycle_report(fn, arg, "reconciled %s with its key records (%s%s)", alias,
                         target[0] ? "points to " : "deleted", target);
    return rc;
}

p11kms_err lifecycle_recover_journal(p11kms *svc, void (*fn)(const char *line, void *arg),
                                     void *arg, p11kms_error *err)
{
    char *intent = NULL;
    p11kms_err rc = keystore_journal_read(svc, &intent, err);
    if (rc != P11KMS_OK)
        return rc;
    if (intent[0] == '\0') {
        free(intent);
        return P11KMS_OK;
    }
    json_object *j = json_tokener_parse(intent);
    json_object *op = NULL, *key = NULL, *alias = NULL, *version = NULL;
    if (j == NULL || !json_object_object_get_ex(j, "op", &op)) {
        json_object_put(j);
        lifecycle_report(fn, arg, "journal holds an unreadable intent; cleared: %.200s", intent);
        free(intent);
        return keystore_journal_end(svc, err);
    }
    json_object_object_get_ex(j, "key", &key);
    json_object_object_get_ex(j, "alias", &alias);
    json_object_object_get_ex(j, "version", &version);
    const char *what = json_object_get_string(op);
    const char *id_text = key ? json_object_get_string(key) : "";
    if (strcmp(what, "create") == 0)
        rc = recover_create(svc, id_text, fn, arg, err);
    else if (strcmp(what, "rotate") == 0 && version != NULL)
        rc = recover_rotate(svc, id_text, (uint32_t)json_object_get_int64(version), fn, arg, err);
    else if (strcmp(what, "import") == 0 || strcmp(what, "delete-material") == 0)
        rc = import_recover(svc, id_text, fn, arg, err);
    else if (strcmp(what, "state") == 0)
        rc = recover_state(id_text, fn, arg);
    else if (strcmp(what, "alias") == 0 && alias != NULL)
        rc = lifecycle_reconcile_alias(svc, json_object_get_string(alias), fn, arg, err);
    else if (strcmp(what, "purge") == 0) {
        key_meta *m = NULL;
        rc = keystore_meta_read(svc, id_text, &m, err);
        if (rc == P11KMS_OK) {
            rc = lifecycle_purge_locked(svc, m, err);
            lifecycle_report(fn, arg, "completed interrupted deletion of %s", id_text);
        } else if (rc == P11KMS_E_NOT_FOUND)
            rc = P11KMS_OK;
        keymeta_free(m);
    } else
        lifecycle_report(fn, arg, "journal holds an unknown intent; cleared: %.200s", intent);
    json_object_put(j);
    free(intent);
    if (rc == P11KMS_OK)
        rc = keystore_journal_end(svc, err);
    return rc;
}
