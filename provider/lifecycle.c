#include "config.h"

#include "provider/lifecycle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider/gate.h"
#include "provider/keyaccess.h"
#include "provider/keycache.h"
#include "provider/keyref.h"
#include "provider/keystore.h"
#include "provider/lifecycle-state.h"

#define DAY_SECONDS INT64_C(86400)
#define DELETION_WINDOW_MIN 7
#define DELETION_WINDOW_MAX 30
#define DELETION_WINDOW_DEFAULT 30
#define ROTATION_PERIOD_MIN 90
#define ROTATION_PERIOD_MAX 2560
#define ROTATION_PERIOD_DEFAULT 365
#define TAG_KEY_MAX 128
#define TAG_VALUE_MAX 256

/* --- steps shared by every mutation -------------------------------------------------------- */

/* Installs a record written inside a transaction, once the transaction committed. */
static void install_copy(p11kms *svc, const char *id_text, const key_meta *m)
{
    keycache_install_copy(svc, keycache_entry(svc, id_text), m);
}

/* A key-scoped mutation: resolve, ask the policy, then under the lock re-read the record (the
 * token is the truth, not this process's cache) and let fn change it. */
typedef p11kms_err (*mutator)(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                              p11kms_error *err);

static p11kms_err mutate_key(p11kms *svc, const p11kms_principal *who, policy_action action,
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
    uuid_mark_v4(id);
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
    /* Crash safety: version 1 is claimed, generated and found again before the record exists; a
     * crash in between leaves a claimed object no record names, which maintain destroys (no
     * ciphertext can exist under it). */
    p11_key *v1 = NULL;
    p11kms_err rc = P11KMS_OK;
    if (!external)
        rc = keystore_version_generate(svc, m->id, 1, &v1, err);
    if (rc == P11KMS_OK)
        rc = keystore_meta_commit_version(svc, m, true, external ? 0 : 1, err);
    if (rc != P11KMS_OK && v1 != NULL)
        keystore_version_discard_unnamed(svc, m->id, 1);
    return rc;
}

p11kms_err kms_op_create_key(p11kms *svc, const p11kms_principal *who,
                             const p11kms_create_key_input *in, p11kms_key_metadata *out,
                             p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
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
    if (rc == P11KMS_OK) {
        if (out != NULL)
            lifecycle_fill_metadata(svc, m, out);
        key_entry *entry = keycache_entry(svc, m->id_text);
        if (entry != NULL) { /* still under the lock (keycache_install) */
            keycache_install(svc, entry, m);
            m = NULL;
        }
    }
    keystore_unlock(svc);
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
    return keycache_commit(svc, entry, m, err);
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

p11kms_err kms_op_enable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                             p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    p11kms_key_state want = P11KMS_KEY_ENABLED;
    return mutate_key(svc, who, POLICY_ACTION_ENABLE_KEY, key_ref, do_toggle, &want, NULL, err);
}

p11kms_err kms_op_disable_key(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                              p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    p11kms_key_state want = P11KMS_KEY_DISABLED;
    return mutate_key(svc, who, POLICY_ACTION_DISABLE_KEY, key_ref, do_toggle, &want, NULL, err);
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

p11kms_err kms_op_schedule_key_deletion(p11kms *svc, const p11kms_principal *who,
                                        const char *key_ref, unsigned pending_window_days,
                                        p11kms_key_metadata *out, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    unsigned days = pending_window_days ? pending_window_days : DELETION_WINDOW_DEFAULT;
    if (days < DELETION_WINDOW_MIN || days > DELETION_WINDOW_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "pending window must be %d to %d days, not %u", DELETION_WINDOW_MIN,
                            DELETION_WINDOW_MAX, days);
    return mutate_key(svc, who, POLICY_ACTION_SCHEDULE_KEY_DELETION, key_ref, do_schedule, &days,
                      out, err);
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

p11kms_err kms_op_cancel_key_deletion(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return mutate_key(svc, who, POLICY_ACTION_CANCEL_KEY_DELETION, key_ref, do_cancel, NULL, NULL,
                      err);
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
    return keycache_commit(svc, entry, m, err);
}

p11kms_err kms_op_update_key_description(p11kms *svc, const p11kms_principal *who,
                                         const char *key_ref, const char *description,
                                         p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (description == NULL || strlen(description) > P11KMS_DESCRIPTION_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "description must have at most %d characters",
                            P11KMS_DESCRIPTION_MAX);
    return mutate_key(svc, who, POLICY_ACTION_UPDATE_KEY_DESCRIPTION, key_ref, do_describe_update,
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
    return keycache_commit(svc, entry, m, err);
}

p11kms_err kms_op_tag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                               const p11kms_tag *tags, size_t count, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (count == 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "at least one tag is required");
    p11kms_err rc = check_tags(tags, count, err);
    if (rc != P11KMS_OK)
        return rc;
    tag_change c = {tags, NULL, count};
    return mutate_key(svc, who, POLICY_ACTION_TAG_RESOURCE, key_ref, do_tag, &c, NULL, err);
}

static p11kms_err do_untag(p11kms *svc, key_entry *entry, key_meta *m, void *arg, p11kms_error *err)
{
    const tag_change *c = arg;
    p11kms_err rc = refuse_if_pending_deletion(m, "UntagResource", err);
    if (rc != P11KMS_OK)
        return rc;
    for (size_t i = 0; i < c->count; i++)
        keymeta_remove_tag(m, c->remove[i]);
    return keycache_commit(svc, entry, m, err);
}

p11kms_err kms_op_untag_resource(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                 const char *const *tag_keys, size_t count, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    if (count == 0)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "at least one tag key is required");
    for (size_t i = 0; i < count; i++) {
        if (tag_keys[i] == NULL || *tag_keys[i] == '\0')
            return P11KMS_RAISE(err, P11KMS_E_TAG, "tag keys must not be empty");
    }
    tag_change c = {NULL, tag_keys, count};
    return mutate_key(svc, who, POLICY_ACTION_UNTAG_RESOURCE, key_ref, do_untag, &c, NULL, err);
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
    /* Crash safety: until the record lists the version, nothing can be encrypted under it, and
     * maintain destroys its object after the grace period. */
    p11_key *key = NULL;
    p11kms_err rc = keystore_version_generate(svc, m->id, next, &key, err);
    if (rc != P11KMS_OK)
        return rc;
    int64_t now = service_now();
    if (!keymeta_add_version(m, next, now, type)) {
        keystore_version_discard(svc, m->id, next);
        return P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    }
    int64_t previous_rotation = m->next_rotation;
    if (m->rotation_enabled)
        m->next_rotation = now + (int64_t)m->rotation_period_days * DAY_SECONDS;
    rc = keystore_meta_commit_version(svc, m, false, next, err);
    if (rc != P11KMS_OK) {
        m->version_count--;
        m->next_rotation = previous_rotation;
        keystore_version_discard_unnamed(svc, m->id, next);
        return rc;
    }
    keycache_install_copy(svc, entry, m);
    return P11KMS_OK;
}

static p11kms_err do_rotate(p11kms *svc, key_entry *entry, key_meta *m, void *arg,
                            p11kms_error *err)
{
    (void)entry;
    (void)arg;
    p11kms_err rc = check_rotatable(m, "RotateKeyOnDemand", err);
    return rc != P11KMS_OK ? rc : lifecycle_rotate_locked(svc, m, ROTATION_ON_DEMAND, err);
}

p11kms_err kms_op_rotate_key_on_demand(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_key_metadata *out,
                                       p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    return mutate_key(svc, who, POLICY_ACTION_ROTATE_KEY_ON_DEMAND, key_ref, do_rotate, NULL, out,
                      err);
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
    return keycache_commit(svc, entry, m, err);
}

p11kms_err kms_op_enable_key_rotation(p11kms *svc, const p11kms_principal *who, const char *key_ref,
                                      unsigned period_days, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    unsigned period = period_days ? period_days : ROTATION_PERIOD_DEFAULT;
    if (period < ROTATION_PERIOD_MIN || period > ROTATION_PERIOD_MAX)
        return P11KMS_RAISE(err, P11KMS_E_VALIDATION,
                            "rotation period must be %d to %d days, not %u", ROTATION_PERIOD_MIN,
                            ROTATION_PERIOD_MAX, period);
    return mutate_key(svc, who, POLICY_ACTION_ENABLE_KEY_ROTATION, key_ref, do_rotation_setting,
                      &period, NULL, err);
}

p11kms_err kms_op_disable_key_rotation(p11kms *svc, const p11kms_principal *who,
                                       const char *key_ref, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    unsigned off = 0;
    return mutate_key(svc, who, POLICY_ACTION_DISABLE_KEY_ROTATION, key_ref, do_rotation_setting,
                      &off, NULL, err);
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
    /* One transaction: the alias row and every record that lists it change together. */
    rc = keystore_begin(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    key_meta *old = NULL;
    if (!keymeta_add_alias(m, c->alias))
        rc = P11KMS_RAISE(err, P11KMS_E_NO_MEMORY, "out of memory");
    if (rc == P11KMS_OK)
        rc = keystore_meta_write(svc, m, err);
    if (rc == P11KMS_OK)
        rc = keystore_alias_put(svc, c->alias, m->id_text, err);
    if (rc == P11KMS_OK && c->old_target != NULL) {
        p11kms_error old_probe = {0};
        p11kms_err orc = keystore_meta_read(svc, c->old_target, &old, &old_probe);
        if (orc == P11KMS_OK) {
            keymeta_remove_alias(old, c->alias);
            rc = keystore_meta_write(svc, old, err);
        } else if (orc != P11KMS_E_NOT_FOUND) {
            rc = orc;
            if (err != NULL)
                *err = old_probe;
        }
    }
    if (rc == P11KMS_OK)
        rc = keystore_commit(svc, err);
    else
        keystore_rollback(svc);
    keycache_alias_forget(svc, c->alias);
    if (rc == P11KMS_OK) {
        install_copy(svc, m->id_text, m);
        if (old != NULL)
            install_copy(svc, old->id_text, old);
    } else {
        keycache_forget(svc, entry);
    }
    keymeta_free(old);
    return rc;
}

p11kms_err kms_op_create_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    p11kms_err rc = keyref_check_alias_name(alias_name, err);
    if (rc == P11KMS_OK)
        rc = gate_check_alias(svc, who, POLICY_ACTION_CREATE_ALIAS, alias_name, err);
    if (rc != P11KMS_OK)
        return rc;
    alias_change c = {alias_name, NULL};
    return mutate_key(svc, who, POLICY_ACTION_CREATE_ALIAS, target_key_ref, do_alias_add, &c, NULL,
                      err);
}

/* The key an existing alias points to, after asking the policy for action on it. */
static p11kms_err alias_target_checked(p11kms *svc, const p11kms_principal *who,
                                       policy_action action, const char *alias,
                                       char target[P11KMS_KEY_ID_LEN + 1], p11kms_error *err)
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

p11kms_err kms_op_update_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               const char *target_key_ref, p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    char old_target[P11KMS_KEY_ID_LEN + 1];
    p11kms_err rc =
        alias_target_checked(svc, who, POLICY_ACTION_UPDATE_ALIAS, alias_name, old_target, err);
    if (rc != P11KMS_OK)
        return rc;
    alias_change c = {alias_name, old_target};
    return mutate_key(svc, who, POLICY_ACTION_UPDATE_ALIAS, target_key_ref, do_alias_add, &c, NULL,
                      err);
}

p11kms_err kms_op_delete_alias(p11kms *svc, const p11kms_principal *who, const char *alias_name,
                               p11kms_error *err)
{
    P11KMS_ERR_LOCAL(err);
    char target[P11KMS_KEY_ID_LEN + 1];
    p11kms_err rc =
        alias_target_checked(svc, who, POLICY_ACTION_DELETE_ALIAS, alias_name, target, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = keystore_lock(svc, err);
    if (rc != P11KMS_OK)
        return rc;
    rc = keystore_begin(svc, err);
    bool began = rc == P11KMS_OK;
    key_meta *m = NULL;
    if (rc == P11KMS_OK) {
        /* The target was read and checked before the lock: another process (or host) may have
         * pointed the alias elsewhere since. Removing it from the old target's record would
         * leave the new target listing an alias that no longer exists. */
        char now_target[P11KMS_KEY_ID_LEN + 1];
        p11kms_error cur = {0};
        p11kms_err crc = keystore_alias_read(svc, alias_name, now_target, &cur);
        if (crc == P11KMS_OK && strcmp(now_target, target) != 0)
            rc = P11KMS_RAISE(err, P11KMS_E_NOT_FOUND,
                              "alias %s changed while it was being deleted; retry", alias_name);
        else if (crc != P11KMS_OK) {
            rc = crc;
            if (err != NULL)
                *err = cur;
        }
    }
    if (rc == P11KMS_OK)
        rc = keystore_alias_delete(svc, alias_name, err);
    if (rc == P11KMS_OK) {
        p11kms_error probe = {0};
        p11kms_err mrc = keystore_meta_read(svc, target, &m, &probe);
        if (mrc == P11KMS_OK) {
            keymeta_remove_alias(m, alias_name);
            rc = keystore_meta_write(svc, m, err);
        } else if (mrc != P11KMS_E_NOT_FOUND) {
            rc = mrc;
            if (err != NULL)
                *err = probe;
        }
    }
    if (rc == P11KMS_OK)
        rc = keystore_commit(svc, err);
    else if (began)
        keystore_rollback(svc);
    keycache_alias_forget(svc, alias_name);
    if (rc == P11KMS_OK && m != NULL)
        install_copy(svc, m->id_text, m);
    keymeta_free(m);
    keystore_unlock(svc);
    return rc;
}
