#include "config.h"

#include "policy/policy.h"

#include <string.h>

/* One row per action: its name in policy files, its duty and where it applies. */
static const struct {
    const char *name;
    policy_action_class klass;
    bool key_bound;
    bool context;
} action_table[POLICY_ACTION__COUNT] = {
    [POLICY_ACTION_CREATE_KEY] = {"create-key", POLICY_CLASS_ADMIN, false, false},
    [POLICY_ACTION_ENABLE_KEY] = {"enable-key", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_DISABLE_KEY] = {"disable-key", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_SCHEDULE_KEY_DELETION] = {"schedule-key-deletion", POLICY_CLASS_ADMIN, true,
                                             false},
    [POLICY_ACTION_CANCEL_KEY_DELETION] = {"cancel-key-deletion", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_ROTATE_KEY_ON_DEMAND] = {"rotate-key-on-demand", POLICY_CLASS_ADMIN, true,
                                            false},
    [POLICY_ACTION_ENABLE_KEY_ROTATION] = {"enable-key-rotation", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_DISABLE_KEY_ROTATION] = {"disable-key-rotation", POLICY_CLASS_ADMIN, true,
                                            false},
    [POLICY_ACTION_CREATE_ALIAS] = {"create-alias", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_DELETE_ALIAS] = {"delete-alias", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_UPDATE_ALIAS] = {"update-alias", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_TAG_RESOURCE] = {"tag-resource", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_UNTAG_RESOURCE] = {"untag-resource", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_UPDATE_KEY_DESCRIPTION] = {"update-key-description", POLICY_CLASS_ADMIN, true,
                                              false},
    [POLICY_ACTION_GET_PARAMETERS_FOR_IMPORT] = {"get-parameters-for-import", POLICY_CLASS_ADMIN,
                                                 true, false},
    [POLICY_ACTION_IMPORT_KEY_MATERIAL] = {"import-key-material", POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_DELETE_IMPORTED_KEY_MATERIAL] = {"delete-imported-key-material",
                                                    POLICY_CLASS_ADMIN, true, false},
    [POLICY_ACTION_ENCRYPT] = {"encrypt", POLICY_CLASS_USAGE, true, true},
    [POLICY_ACTION_DECRYPT] = {"decrypt", POLICY_CLASS_USAGE, true, true},
    [POLICY_ACTION_RE_ENCRYPT_FROM] = {"re-encrypt-from", POLICY_CLASS_USAGE, true, true},
    [POLICY_ACTION_RE_ENCRYPT_TO] = {"re-encrypt-to", POLICY_CLASS_USAGE, true, true},
    [POLICY_ACTION_GENERATE_DATA_KEY] = {"generate-data-key", POLICY_CLASS_USAGE, true, true},
    [POLICY_ACTION_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT] = {"generate-data-key-without-plaintext",
                                                           POLICY_CLASS_USAGE, true, true},
    [POLICY_ACTION_DESCRIBE_KEY] = {"describe-key", POLICY_CLASS_READ, true, false},
    [POLICY_ACTION_LIST_KEYS] = {"list-keys", POLICY_CLASS_READ, false, false},
    [POLICY_ACTION_LIST_ALIASES] = {"list-aliases", POLICY_CLASS_READ, false, false},
    [POLICY_ACTION_LIST_RESOURCE_TAGS] = {"list-resource-tags", POLICY_CLASS_READ, true, false},
    [POLICY_ACTION_LIST_KEY_ROTATIONS] = {"list-key-rotations", POLICY_CLASS_READ, true, false},
    [POLICY_ACTION_GET_KEY_ROTATION_STATUS] = {"get-key-rotation-status", POLICY_CLASS_READ, true,
                                               false},
    [POLICY_ACTION_GENERATE_RANDOM] = {"generate-random", POLICY_CLASS_OTHER, false, false},
    [POLICY_ACTION_CREATE_CREDENTIALS] = {"create-credentials", POLICY_CLASS_ADMIN, false, false},
    [POLICY_ACTION_DELETE_CREDENTIALS] = {"delete-credentials", POLICY_CLASS_ADMIN, false, false},
    [POLICY_ACTION_LIST_CREDENTIALS] = {"list-credentials", POLICY_CLASS_READ, false, false},
    [POLICY_ACTION_MAINTAIN] = {"maintain", POLICY_CLASS_ADMIN, false, false},
    [POLICY_ACTION_EXPLAIN_POLICY] = {"explain-policy", POLICY_CLASS_ADMIN, false, false},
};

static bool action_known(policy_action action)
{
    return (int)action >= 0 && action < POLICY_ACTION__COUNT;
}

const char *policy_action_name(policy_action action)
{
    return action_known(action) ? action_table[action].name : NULL;
}

p11kms_err policy_action_parse(const char *name, policy_action *out, p11kms_error *err)
{
    for (int a = 0; name != NULL && a < POLICY_ACTION__COUNT; a++) {
        if (strcmp(action_table[a].name, name) == 0) {
            *out = (policy_action)a;
            return P11KMS_OK;
        }
    }
    return P11KMS_RAISE(err, P11KMS_E_VALIDATION, "unknown policy action '%.64s'",
                        name != NULL ? name : "(null)");
}

policy_action_class policy_action_class_of(policy_action action)
{
    return action_known(action) ? action_table[action].klass : POLICY_CLASS_OTHER;
}

bool policy_action_is_key_bound(policy_action action)
{
    return action_known(action) && action_table[action].key_bound;
}

bool policy_action_takes_context(policy_action action)
{
    return action_known(action) && action_table[action].context;
}
