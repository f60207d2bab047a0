/* A key's state as callers see it: refusals that name it, and the public metadata. */
#include "config.h"

#include "provider/lifecycle-state.h"

#include <stdio.h>
#include <string.h>

#include "provider/import-material.h"
#include "provider/keyref.h"

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

void lifecycle_fill_metadata(p11kms *svc, const key_meta *m, p11kms_key_metadata *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->key_id, m->id_text, sizeof(out->key_id));
    keyref_key_arn(svc->cfg, m->id_text, out->arn);
    out->state = m->state;
    out->origin = m->origin;
    snprintf(out->description, sizeof(out->description), "%s",
             m->description ? m->description : "");
    out->creation_date = m->created;
    out->deletion_date = m->state == P11KMS_KEY_PENDING_DELETION ? m->deletion_date : 0;
    out->pending_window_days = m->state == P11KMS_KEY_PENDING_DELETION ? m->pending_window_days : 0;
    out->rotation_enabled = m->rotation_enabled;
    out->rotation_period_days = m->rotation_period_days;
    out->next_rotation_date = m->rotation_enabled ? m->next_rotation : 0;
    const key_version *cur = keymeta_current(m);
    out->current_version = cur ? cur->number : 0;
    out->version_count = (uint32_t)m->version_count;
    out->current_version_encryptions = cur ? cur->reserved : 0;
    import_fill_metadata(m, out);
}
