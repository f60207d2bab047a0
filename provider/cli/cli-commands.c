/* The command table: names and options exactly as "aws kms" spells them, plus p11kms's own. */
#include "config.h"

#include <string.h>

#include "cli.h"

#define KEY_ID_REQ                                                                                 \
    {                                                                                              \
        "key-id", CLI_OPT_VALUE, true, "KEY_ID",                                                   \
            "key id, key ARN, alias name (alias/NAME) or alias ARN"                                \
    }
#define CONTEXT                                                                                    \
    {                                                                                              \
        "encryption-context", CLI_OPT_VALUE, false, "CONTEXT",                                     \
            "encryption context: k=v,k2=v2 or a JSON object, or file://PATH"                       \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, CLI_OPT_FLAG, false, NULL, NULL                                                      \
    }

static const cli_option no_options[] = {END};

static const cli_option audit_show_options[] = {
    {"key-id", CLI_OPT_VALUE, false, "KEY", "records about this key (id, ARN or as requested)"},
    {"principal", CLI_OPT_VALUE, false, "NAME", "records of callers with this principal name"},
    {"operation", CLI_OPT_VALUE, false, "NAME", "eventName, e.g. Decrypt"},
    {"decision", CLI_OPT_VALUE, false, "Allow|Deny", "the policy decision"},
    {"since", CLI_OPT_VALUE, false, "TIME", "UTC ISO 8601 time or prefix, e.g. 2026-11-30T20"},
    {"until", CLI_OPT_VALUE, false, "TIME", "UTC ISO 8601 time or prefix"},
    END};
static const cli_option key_only[] = {KEY_ID_REQ, END};

static const cli_option create_key_options[] = {
    {"description", CLI_OPT_VALUE, false, "TEXT", "description of the key (or file://PATH)"},
    {"key-spec", CLI_OPT_VALUE, false, "SPEC", "SYMMETRIC_DEFAULT (the only one supported)"},
    {"key-usage", CLI_OPT_VALUE, false, "USAGE", "ENCRYPT_DECRYPT (the only one supported)"},
    {"origin", CLI_OPT_VALUE, false, "ORIGIN",
     "AWS_KMS (generated in the token, default) or EXTERNAL (PendingImport)"},
    {"tags", CLI_OPT_LIST, false, "TAG...",
     "TagKey=K,TagValue=V ..., or a JSON list [{\"TagKey\":\"K\",\"TagValue\":\"V\"}]"},
    END};

static const cli_option schedule_options[] = {
    KEY_ID_REQ, {"pending-window-in-days", CLI_OPT_VALUE, false, "DAYS", "7..30, default 30"}, END};

static const cli_option description_options[] = {
    KEY_ID_REQ,
    {"description", CLI_OPT_VALUE, true, "TEXT", "new description (or file://PATH)"},
    END};

static const cli_option enable_rotation_options[] = {
    KEY_ID_REQ,
    {"rotation-period-in-days", CLI_OPT_VALUE, false, "DAYS", "90..2560, default 365"},
    END};

static const cli_option tag_options[] = {
    KEY_ID_REQ,
    {"tags", CLI_OPT_LIST, true, "TAG...",
     "TagKey=K,TagValue=V ..., or a JSON list [{\"TagKey\":\"K\",\"TagValue\":\"V\"}]"},
    END};

static const cli_option untag_options[] = {
    KEY_ID_REQ,
    {"tag-keys", CLI_OPT_LIST, true, "KEY...", "tag keys to remove, or a JSON list of strings"},
    END};

static const cli_option alias_target_options[] = {
    {"alias-name", CLI_OPT_VALUE, true, "alias/NAME", "the alias"},
    {"target-key-id", CLI_OPT_VALUE, true, "KEY_ID", "key id or key ARN it names"},
    END};

static const cli_option delete_alias_options[] = {
    {"alias-name", CLI_OPT_VALUE, true, "alias/NAME", "the alias"}, END};

static const cli_option list_aliases_options[] = {
    {"key-id", CLI_OPT_VALUE, false, "KEY_ID", "only the aliases of this key"}, END};

static const cli_option encrypt_options[] = {
    KEY_ID_REQ,
    {"plaintext", CLI_OPT_VALUE, true, "BLOB",
     "fileb://PATH (raw bytes), file://PATH (base64 text) or base64; at most 4096 bytes"},
    CONTEXT,
    END};

static const cli_option decrypt_options[] = {
    {"ciphertext-blob", CLI_OPT_VALUE, true, "BLOB",
     "fileb://PATH (raw bytes), file://PATH (base64 text) or base64"},
    {"key-id", CLI_OPT_VALUE, false, "KEY_ID", "refuse the blob unless this key made it"},
    CONTEXT,
    END};

static const cli_option re_encrypt_options[] = {
    {"ciphertext-blob", CLI_OPT_VALUE, true, "BLOB",
     "fileb://PATH (raw bytes), file://PATH (base64 text) or base64"},
    {"destination-key-id", CLI_OPT_VALUE, true, "KEY_ID", "key to encrypt under"},
    {"source-key-id", CLI_OPT_VALUE, false, "KEY_ID", "refuse the blob unless this key made it"},
    {"source-encryption-context", CLI_OPT_VALUE, false, "CONTEXT",
     "context the blob was encrypted with"},
    {"destination-encryption-context", CLI_OPT_VALUE, false, "CONTEXT", "context for the new blob"},
    END};

static const cli_option data_key_options[] = {
    KEY_ID_REQ,
    {"key-spec", CLI_OPT_VALUE, false, "SPEC", "AES_128 or AES_256"},
    {"number-of-bytes", CLI_OPT_VALUE, false, "N", "1..1024 (instead of --key-spec)"},
    CONTEXT,
    END};

static const cli_option random_options[] = {
    {"number-of-bytes", CLI_OPT_VALUE, true, "N", "1..1024"}, END};

#define PARENT                                                                                     \
    {                                                                                              \
        "parent", CLI_OPT_REPEAT, true, "BLOB[@CONTEXT]",                                          \
            "a key of the chain, from the top: first a blob of generate-data-key*, then child "    \
            "blobs; "                                                                              \
            "repeat for each tier"                                                                 \
    }

static const cli_option child_key_options[] = {
    PARENT,
    {"encryption-context", CLI_OPT_VALUE, false, "CONTEXT", "context bound to the new child blob"},
    {"key-length", CLI_OPT_VALUE, false, "N", "child key length in bytes, 1..1024, default 32"},
    {"without-plaintext", CLI_OPT_FLAG, false, NULL,
     "print only the child blob (a key of a middle tier)"},
    END};

static const cli_option unwrap_child_options[] = {
    PARENT,
    {"child-blob", CLI_OPT_VALUE, true, "BLOB", "the child blob to unwrap under the last parent"},
    {"encryption-context", CLI_OPT_VALUE, false, "CONTEXT", "context the child blob was made with"},
    END};

static const cli_option explain_options[] = {
    {"principal", CLI_OPT_LIST, false, "NAME...",
     "the principal's names, e.g. unix:user:alice unix:group:staff (default: you)"},
    {"action", CLI_OPT_VALUE, true, "ACTION", "policy action, e.g. decrypt or disable-key"},
    {"key-id", CLI_OPT_VALUE, false, "KEY",
     "key id, alias/NAME or ARN (not for account-level actions such as create-key)"},
    CONTEXT,
    END};

static const cli_option credentials_create_options[] = {
    {"principal-name", CLI_OPT_VALUE, true, "NAME",
     "who the key is for: 1 to 64 of letters, digits and + = , . @ _ -"},
    END};

static const cli_option credentials_delete_options[] = {
    {"access-key-id", CLI_OPT_VALUE, true, "ID", "the access key to delete"}, END};

static const char credentials_details[] =
    "Access keys authenticate p11kmsd callers with AWS Signature Version 4; such a caller is\n"
    "the policy principal sigv4:ACCESS_KEY_ID. The secret access key is printed once, by\n"
    "create, and kept nowhere but in the token, as a non-extractable HMAC key.\n";
static const cli_option import_parameters_options[] = {
    KEY_ID_REQ,
    {"wrapping-algorithm", CLI_OPT_VALUE, true, "ALG",
     "RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256 "
     "(those the token supports)"},
    {"wrapping-key-spec", CLI_OPT_VALUE, true, "SPEC", "RSA_2048, RSA_3072 or RSA_4096"},
    END};

static const cli_option import_material_options[] = {
    KEY_ID_REQ,
    {"encrypted-key-material", CLI_OPT_VALUE, true, "BLOB",
     "the 32-byte key material wrapped under the PublicKey: fileb://PATH, file://PATH (base64) "
     "or base64"},
    {"import-token", CLI_OPT_VALUE, true, "BLOB",
     "the ImportToken of get-parameters-for-import: fileb://PATH, file://PATH or base64"},
    {"expiration-model", CLI_OPT_VALUE, false, "MODEL",
     "KEY_MATERIAL_EXPIRES (with --valid-to; the default when --valid-to is given) or "
     "KEY_MATERIAL_DOES_NOT_EXPIRE (the default without --valid-to)"},
    {"valid-to", CLI_OPT_VALUE, false, "TIME",
     "when the material expires: ISO 8601 UTC (2027-01-31T12:00:00Z) or seconds since the epoch; "
     "at most 365 days ahead"},
    END};

static const char import_details[] =
    "The Aurora flow: create-key --origin EXTERNAL; get-parameters-for-import; decode\n"
    "PublicKey and ImportToken from base64 into files; wrap 32 random bytes with openssl\n"
    "(openssl pkeyutl -encrypt -pubin -keyform DER -inkey WrappingPublicKey.bin\n"
    "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 ...); import-key-material with\n"
    "fileb:// inputs. The material is unwrapped inside the token. See doc/import.md.\n";

static const char blob_details[] =
    "Blob parameters take fileb://PATH (the file's raw bytes), file://PATH (the file holds\n"
    "base64 text, as in AWS CLI v2) or a base64 literal. Binary results are printed in base64:\n"
    "decode them yourself, e.g. jq -r .Plaintext | base64 -d > key.bin; p11kms never writes\n"
    "a secret to a file.\n";

static const char chain_details[] =
    "A chain of keys is named from the top with one --parent per tier:\n"
    "  --parent fileb://cluster.blob@CONTEXT  a blob made by generate-data-key*, opened\n"
    "                                         through the master key in the token\n"
    "  --parent fileb://database.blob@CONTEXT a child blob made under the parent before it\n"
    "The command then works under the last parent. CONTEXT is the encryption context the blob\n"
    "was made with (shorthand, JSON or file://PATH); leave out @CONTEXT for an empty one. The\n"
    "path itself must not contain '@'.\n";

const cli_command cli_commands[] = {
    {"create-key", "Create a master key in the token", NULL, 0, NULL, create_key_options,
     cli_cmd_create_key},
    {"describe-key", "Show a key's metadata", NULL, 0, NULL, key_only, cli_cmd_describe_key},
    {"list-keys", "List the keys", NULL, 0, NULL, no_options, cli_cmd_list_keys},
    {"enable-key", "Enable a key", NULL, 0, NULL, key_only, cli_cmd_enable_key},
    {"disable-key", "Disable a key (no cryptographic use until enabled)", NULL, 0, NULL, key_only,
     cli_cmd_disable_key},
    {"schedule-key-deletion", "Delete a key after a waiting period", NULL, 0, NULL,
     schedule_options, cli_cmd_schedule_key_deletion},
    {"cancel-key-deletion", "Cancel a deletion (the key becomes Disabled)", NULL, 0, NULL, key_only,
     cli_cmd_cancel_key_deletion},
    {"update-key-description", "Change a key's description", NULL, 0, NULL, description_options,
     cli_cmd_update_key_description},
    {"rotate-key-on-demand", "Add a new version of a key's material now", NULL, 0, NULL, key_only,
     cli_cmd_rotate_key_on_demand},
    {"enable-key-rotation", "Rotate a key automatically", NULL, 0, NULL, enable_rotation_options,
     cli_cmd_enable_key_rotation},
    {"disable-key-rotation", "Stop automatic rotation", NULL, 0, NULL, key_only,
     cli_cmd_disable_key_rotation},
    {"get-key-rotation-status", "Show whether and when a key rotates", NULL, 0, NULL, key_only,
     cli_cmd_get_key_rotation_status},
    {"list-key-rotations", "List a key's versions", NULL, 0, NULL, key_only,
     cli_cmd_list_key_rotations},
    {"tag-resource", "Add or replace tags of a key", NULL, 0, NULL, tag_options,
     cli_cmd_tag_resource},
    {"untag-resource", "Remove tags from a key", NULL, 0, NULL, untag_options,
     cli_cmd_untag_resource},
    {"list-resource-tags", "List a key's tags", NULL, 0, NULL, key_only,
     cli_cmd_list_resource_tags},
    {"create-alias", "Create an alias for a key", NULL, 0, NULL, alias_target_options,
     cli_cmd_create_alias},
    {"update-alias", "Point an alias at another key", NULL, 0, NULL, alias_target_options,
     cli_cmd_update_alias},
    {"delete-alias", "Delete an alias", NULL, 0, NULL, delete_alias_options, cli_cmd_delete_alias},
    {"list-aliases", "List aliases", NULL, 0, NULL, list_aliases_options, cli_cmd_list_aliases},
    {"encrypt", "Encrypt up to 4096 bytes under a key", NULL, 0, blob_details, encrypt_options,
     cli_cmd_encrypt},
    {"decrypt", "Decrypt a ciphertext blob", NULL, 0, blob_details, decrypt_options,
     cli_cmd_decrypt},
    {"re-encrypt", "Re-encrypt under another key, context or version", NULL, 0, blob_details,
     re_encrypt_options, cli_cmd_re_encrypt},
    {"generate-data-key", "Generate a data key: plaintext and its blob", NULL, 0, blob_details,
     data_key_options, cli_cmd_generate_data_key},
    {"generate-data-key-without-plaintext", "Generate a data key: its blob only", NULL, 0,
     blob_details, data_key_options, cli_cmd_generate_data_key_without_plaintext},
    {"generate-random", "Random bytes from the token", NULL, 0, NULL, random_options,
     cli_cmd_generate_random},
    {"generate-child-key", "Generate a key one tier below a chain of opened keys", NULL, 0,
     chain_details, child_key_options, cli_cmd_generate_child_key},
    {"unwrap-child-key", "Unwrap a child blob under a chain of opened keys", NULL, 0, chain_details,
     unwrap_child_options, cli_cmd_unwrap_child_key},
    {"get-parameters-for-import", "Get a wrapping public key and an import token (24 hours)", NULL,
     0, import_details, import_parameters_options, cli_cmd_get_parameters_for_import},
    {"import-key-material", "Import wrapped key material into an EXTERNAL key", NULL, 0,
     import_details, import_material_options, cli_cmd_import_key_material},
    {"delete-imported-key-material", "Destroy a key's imported material (PendingImport)", NULL, 0,
     NULL, key_only, cli_cmd_delete_imported_key_material},
    {"token info", "Show the PKCS#11 module, token and mechanisms", NULL, 0, NULL, no_options,
     cli_cmd_token_info},
    {"maintain", "Finish interrupted work, purge and rotate due keys", NULL, 0, NULL, no_options,
     cli_cmd_maintain},
    {"store migrate", "Move key records and aliases of the old token layout into the store", NULL,
     0,
     "Moves what a token written by an earlier p11kms keeps as data objects (key records,\n"
     "aliases, counters) into the configured store, verifies it, then removes the data\n"
     "objects. Safe to run again.\n",
     no_options, cli_cmd_store_migrate},
    {"policy check", "Validate a policy file (no configuration needed)", "FILE", 1,
     "Prints each error as FILE:LINE:COLUMN: MESSAGE, or \"FILE: OK\".\n", no_options,
     cli_cmd_policy_check},
    {"policy explain", "Explain a policy decision (performs nothing)", NULL, 0,
     "Only explains: nothing is performed. Prints Decision (Allowed or Denied) and the\n"
     "explanation; the exit status is 0 for either decision. Without --principal it\n"
     "explains for you; explaining for another principal needs the policy action\n"
     "explain-policy (an administrator's), else AccessDeniedException.\n",
     explain_options, cli_cmd_policy_explain},
    {"audit verify", "Verify audit log files: chain, seals, checkpoint", "FILE...", CLI_ONE_OR_MORE,
     "Give every file of the set (the current file and the rotated ones, any order). Reports\n"
     "the first bad line as FILE:LINE with what is wrong; exit status 0 when the set verifies,\n"
     "5 (InvalidCiphertextException) when it does not. Needs the token (the audit key).\n",
     no_options, cli_cmd_audit_verify},
    {"audit show", "Show audit records, filtered (does not verify them)", "FILE...",
     CLI_ONE_OR_MORE,
     "Prints matching records as JSON lines, or with --output text one line each: seq, time,\n"
     "operation, first principal, key, decision, sid, error code.\n",
     audit_show_options, cli_cmd_audit_show},
    {"credentials create", "Create a SigV4 access key for p11kmsd (secret shown once)", NULL, 0,
     credentials_details, credentials_create_options, cli_cmd_credentials_create},
    {"credentials list", "List SigV4 access keys (ids and principal names)", NULL, 0,
     credentials_details, no_options, cli_cmd_credentials_list},
    {"credentials delete", "Delete a SigV4 access key", NULL, 0, credentials_details,
     credentials_delete_options, cli_cmd_credentials_delete},
    {NULL, NULL, NULL, 0, NULL, NULL, NULL},
};

const cli_command *cli_find_command(int argc, char **argv, int *used, p11kms_error *err)
{
    const char *first = argv[0];
    bool group = false;
    for (const cli_command *c = cli_commands; c->name != NULL; c++) {
        const char *space = strchr(c->name, ' ');
        if (space == NULL) {
            if (strcmp(c->name, first) == 0) {
                *used = 1;
                return c;
            }
            continue;
        }
        size_t n = (size_t)(space - c->name);
        if (strlen(first) != n || strncmp(c->name, first, n) != 0)
            continue;
        group = true;
        if (argc > 1 && strcmp(argv[1], space + 1) == 0) {
            *used = 2;
            return c;
        }
    }
    if (group) {
        P11KMS_RAISE(err, P11KMS_E_VALIDATION, "'%.32s' needs a subcommand (see 'p11kms --help')",
                     first);
        return NULL;
    }
    P11KMS_RAISE(err, P11KMS_E_VALIDATION, "unknown command '%.64s' (see 'p11kms --help')", first);
    return NULL;
}
