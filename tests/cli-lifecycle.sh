#!/bin/sh
# p11kms CLI: every key state transition, aliases, tags, descriptions and rotation, with the
# exception class and exit status of each refusal.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

expect_ok "create-key with shorthand tags" create-key --description "lifecycle" \
    --tags TagKey=team,TagValue=platform TagKey=env,TagValue=test
key=$(field .KeyMetadata.KeyId)
arn=$(field .KeyMetadata.Arn)
expect_ok "create a second key" create-key
key2=$(field .KeyMetadata.KeyId)
expect_ok "encrypt while Enabled" encrypt --key-id "$key" --plaintext c2VjcmV0 \
    --encryption-context app=lc
b64_to_file .CiphertextBlob v1.ct

echo "== disable / enable"
expect_ok "disable-key" disable-key --key-id "$key"
check "disable-key prints nothing" [ ! -s out.json ]
expect_ok "describe the disabled key" describe-key --key-id "$key"
jq_check "KeyState Disabled, Enabled false" '.KeyMetadata.KeyState == "Disabled" and .KeyMetadata.Enabled == false'
expect_fail 3 DisabledException encrypt --key-id "$key" --plaintext c2VjcmV0
expect_fail 3 DisabledException decrypt --ciphertext-blob fileb://v1.ct --encryption-context app=lc
expect_fail 3 DisabledException generate-data-key --key-id "$key" --key-spec AES_256
expect_fail 3 DisabledException generate-data-key-without-plaintext --key-id "$key" \
    --number-of-bytes 16
expect_fail 3 DisabledException re-encrypt --ciphertext-blob fileb://v1.ct \
    --source-encryption-context app=lc --destination-key-id "$key2"
expect_fail 4 KMSInvalidStateException rotate-key-on-demand --key-id "$key"
expect_fail 4 KMSInvalidStateException enable-key-rotation --key-id "$key"
expect_ok "disable-key again is allowed" disable-key --key-id "$key"
expect_ok "enable-key" enable-key --key-id "$key"
expect_ok "decrypt after enable" decrypt --ciphertext-blob fileb://v1.ct --encryption-context app=lc
check "plaintext after enable" [ "$(field .Plaintext | base64 -d)" = secret ]

echo "== schedule / cancel deletion"
now=$(date +%s)
expect_ok "schedule-key-deletion (default window)" schedule-key-deletion --key-id "$key"
jq_check "default window 30 days" ".KeyId == \"$arn\" and .KeyState == \"PendingDeletion\"
    and .PendingWindowInDays == 30 and .DeletionDate >= $now + 30*86400 - 600
    and .DeletionDate <= $now + 30*86400 + 86400"
expect_ok "describe a key pending deletion" describe-key --key-id "$key"
jq_check "metadata shows the deletion" '.KeyMetadata.KeyState == "PendingDeletion"
    and .KeyMetadata.Enabled == false and (.KeyMetadata.DeletionDate | type) == "number"
    and .KeyMetadata.PendingDeletionWindowInDays == 30'
expect_fail 4 KMSInvalidStateException encrypt --key-id "$key" --plaintext c2VjcmV0
expect_fail 4 KMSInvalidStateException decrypt --ciphertext-blob fileb://v1.ct \
    --encryption-context app=lc
expect_fail 4 KMSInvalidStateException generate-data-key --key-id "$key" --key-spec AES_256
expect_fail 4 KMSInvalidStateException enable-key --key-id "$key"
expect_fail 4 KMSInvalidStateException disable-key --key-id "$key"
expect_fail 4 KMSInvalidStateException schedule-key-deletion --key-id "$key"
expect_fail 4 KMSInvalidStateException update-key-description --key-id "$key" --description x
expect_fail 4 KMSInvalidStateException tag-resource --key-id "$key" --tags TagKey=a,TagValue=b
expect_fail 4 KMSInvalidStateException create-alias --alias-name alias/pending \
    --target-key-id "$key"
expect_ok "list-keys still lists it" list-keys
jq_check "listed while pending deletion" "[.Keys[].KeyId] | index(\"$key\") != null"
expect_ok "cancel-key-deletion" cancel-key-deletion --key-id "$key"
jq_check "cancel answers with the key ARN" ".KeyId == \"$arn\""
expect_ok "describe after cancel" describe-key --key-id "$key"
jq_check "cancel leaves the key Disabled" '.KeyMetadata.KeyState == "Disabled"
    and (.KeyMetadata | has("DeletionDate") | not)'
expect_fail 4 KMSInvalidStateException cancel-key-deletion --key-id "$key"
expect_ok "schedule with a 7-day window" schedule-key-deletion --key-id "$key" \
    --pending-window-in-days 7
jq_check "window 7 days" '.PendingWindowInDays == 7'
expect_ok "cancel again" cancel-key-deletion --key-id "$key"
expect_fail 1 ValidationException schedule-key-deletion --key-id "$key" --pending-window-in-days 6
expect_fail 1 ValidationException schedule-key-deletion --key-id "$key" --pending-window-in-days 31
expect_fail 1 ValidationException schedule-key-deletion --key-id "$key" --pending-window-in-days 0
expect_fail 1 ValidationException schedule-key-deletion --key-id "$key" --pending-window-in-days 7d
expect_ok "describe after refused windows" describe-key --key-id "$key"
jq_check "refused windows changed nothing" '.KeyMetadata.KeyState == "Disabled"'
expect_ok "enable-key after cancel" enable-key --key-id "$key"

echo "== descriptions"
expect_ok "update-key-description" update-key-description --key-id "$key" --description "new text"
expect_ok "describe" describe-key --key-id "$key"
jq_check "description changed" '.KeyMetadata.Description == "new text"'
printf 'from a file\n' >desc.txt
expect_ok "update-key-description file://" update-key-description --key-id "$key" \
    --description file://desc.txt
expect_ok "describe" describe-key --key-id "$key"
jq_check "description from the file, without its newline" '.KeyMetadata.Description == "from a file"'
expect_fail 1 ValidationException update-key-description --key-id "$key"

echo "== aliases"
expect_ok "create-alias" create-alias --alias-name alias/cli-test --target-key-id "$key"
check "create-alias prints nothing" [ ! -s out.json ]
expect_ok "describe by alias" describe-key --key-id alias/cli-test
jq_check "alias names the key" ".KeyMetadata.KeyId == \"$key\""
expect_ok "encrypt by alias" encrypt --key-id alias/cli-test --plaintext YQ==
jq_check "encrypt by alias answers the key ARN" ".KeyId == \"$arn\""
expect_fail 9 AlreadyExistsException create-alias --alias-name alias/cli-test --target-key-id "$key2"
expect_ok "list-aliases" list-aliases
jq_check "alias listed with its target" ".Aliases[] | select(.AliasName == \"alias/cli-test\")
    | .TargetKeyId == \"$key\" and (.AliasArn | endswith(\":alias/cli-test\"))"
expect_ok "list-aliases --key-id" list-aliases --key-id "$key2"
jq_check "no alias for the second key yet" '[.Aliases[] | select(.AliasName == "alias/cli-test")] | length == 0'
expect_ok "update-alias" update-alias --alias-name alias/cli-test --target-key-id "$key2"
expect_ok "describe by alias" describe-key --key-id alias/cli-test
jq_check "alias now names the second key" ".KeyMetadata.KeyId == \"$key2\""
expect_ok "list-aliases --key-id second key" list-aliases --key-id "$key2"
jq_check "alias listed for the second key" '[.Aliases[].AliasName] | index("alias/cli-test") != null'
expect_fail 11 InvalidAliasNameException create-alias --alias-name no-prefix --target-key-id "$key"
expect_fail 11 InvalidAliasNameException create-alias --alias-name 'alias/bad name' \
    --target-key-id "$key"
expect_fail 2 NotFoundException create-alias --alias-name alias/orphan \
    --target-key-id 00000000-0000-4000-8000-000000000000
expect_ok "delete-alias" delete-alias --alias-name alias/cli-test
expect_fail 2 NotFoundException describe-key --key-id alias/cli-test
expect_fail 2 NotFoundException delete-alias --alias-name alias/cli-test
expect_ok "list-aliases after delete" list-aliases
jq_check "alias gone" '[.Aliases[] | select(.AliasName == "alias/cli-test")] | length == 0'

echo "== tags"
expect_ok "list-resource-tags" list-resource-tags --key-id "$key"
jq_check "tags from create-key" '[.Tags[] | "\(.TagKey)=\(.TagValue)"] | sort == ["env=test", "team=platform"]'
expect_ok "tag-resource (JSON form)" tag-resource --key-id "$key" \
    --tags '[{"TagKey":"cost","TagValue":"42"},{"TagKey":"team","TagValue":"security"}]'
expect_ok "list-resource-tags" list-resource-tags --key-id "$key"
jq_check "tag added and replaced" '[.Tags[] | "\(.TagKey)=\(.TagValue)"] | sort == ["cost=42", "env=test", "team=security"]'
expect_ok "untag-resource" untag-resource --key-id "$key" --tag-keys env cost
expect_ok "list-resource-tags" list-resource-tags --key-id "$key"
jq_check "tags removed" '[.Tags[].TagKey] == ["team"]'
expect_ok "untag-resource (JSON list)" untag-resource --key-id "$key" --tag-keys '["team"]'
expect_ok "list-resource-tags" list-resource-tags --key-id "$key"
jq_check "no tags left" '.Tags == []'
expect_fail 1 ValidationException tag-resource --key-id "$key" --tags TagKey=only
expect_fail 1 ValidationException tag-resource --key-id "$key" --tags Key=a,Value=b
expect_fail 1 ValidationException tag-resource --key-id "$key" --tags '[{"TagKey":"a"}]'
expect_fail 1 ValidationException tag-resource --key-id "$key" --tags '[{"TagKey":"a",'
expect_fail 1 ValidationException tag-resource --key-id "$key"
expect_fail 1 ValidationException untag-resource --key-id "$key" --tag-keys '[1]'

echo "== rotation"
expect_ok "rotate-key-on-demand" rotate-key-on-demand --key-id "$key"
jq_check "rotate answers the key id" ".KeyId == \"$key\""
expect_ok "describe after rotation" describe-key --key-id "$key"
jq_check "CurrentKeyVersion 2" '.KeyMetadata.CurrentKeyVersion == 2'
expect_ok "old ciphertext still decrypts" decrypt --ciphertext-blob fileb://v1.ct \
    --encryption-context app=lc
check "old plaintext" [ "$(field .Plaintext | base64 -d)" = secret ]
jq_check "decrypted with version 1" '.KeyVersion == 1'
expect_ok "encrypt after rotation" encrypt --key-id "$key" --plaintext c2VjcmV0
jq_check "new ciphertext uses version 2" '.KeyVersion == 2'
b64_to_file .CiphertextBlob v2.ct
expect_ok "decrypt the new ciphertext" decrypt --ciphertext-blob fileb://v2.ct
jq_check "decrypted with version 2" '.KeyVersion == 2'
check "two versions give different blobs" sh -c '! cmp -s v1.ct v2.ct'
expect_ok "list-key-rotations" list-key-rotations --key-id "$key"
jq_check "an ON_DEMAND rotation is listed" ".Rotations | map(select(.RotationType == \"ON_DEMAND\"))
    | length == 1 and .[0].KeyId == \"$key\" and (.[0].RotationDate | type) == \"number\""

expect_ok "get-key-rotation-status (off)" get-key-rotation-status --key-id "$key"
jq_check "rotation disabled" ".KeyRotationEnabled == false and .KeyId == \"$arn\"
    and (has(\"RotationPeriodInDays\") | not)"
expect_ok "enable-key-rotation (default period)" enable-key-rotation --key-id "$key"
expect_ok "get-key-rotation-status" get-key-rotation-status --key-id "$key"
jq_check "default period 365 days" '.KeyRotationEnabled == true and .RotationPeriodInDays == 365
    and (.NextRotationDate | type) == "number"'
expect_ok "enable-key-rotation 90 days" enable-key-rotation --key-id "$key" \
    --rotation-period-in-days 90
expect_ok "get-key-rotation-status" get-key-rotation-status --key-id "$key"
jq_check "period 90" '.RotationPeriodInDays == 90'
expect_ok "enable-key-rotation 2560 days" enable-key-rotation --key-id "$key" \
    --rotation-period-in-days 2560
expect_fail 1 ValidationException enable-key-rotation --key-id "$key" --rotation-period-in-days 89
expect_fail 1 ValidationException enable-key-rotation --key-id "$key" --rotation-period-in-days 2561
expect_fail 1 ValidationException enable-key-rotation --key-id "$key" --rotation-period-in-days x
expect_ok "get-key-rotation-status after refusals" get-key-rotation-status --key-id "$key"
jq_check "period still 2560" '.RotationPeriodInDays == 2560'
expect_ok "disable-key-rotation" disable-key-rotation --key-id "$key"
expect_ok "get-key-rotation-status" get-key-rotation-status --key-id "$key"
jq_check "rotation disabled again" '.KeyRotationEnabled == false'

echo "== unsupported key specs and imported keys"
expect_fail 8 UnsupportedOperationException create-key --key-spec RSA_2048
expect_fail 8 UnsupportedOperationException create-key --key-usage SIGN_VERIFY
expect_ok "create-key --origin EXTERNAL" create-key --origin EXTERNAL
ext=$(field .KeyMetadata.KeyId)
jq_check "PendingImport, EXTERNAL" '.KeyMetadata.KeyState == "PendingImport"
    and .KeyMetadata.Origin == "EXTERNAL" and .KeyMetadata.Enabled == false'
expect_fail 4 KMSInvalidStateException encrypt --key-id "$ext" --plaintext c2VjcmV0
expect_fail 4 KMSInvalidStateException generate-data-key --key-id "$ext" --key-spec AES_256
expect_fail 4 KMSInvalidStateException enable-key --key-id "$ext"
expect_fail 8 UnsupportedOperationException rotate-key-on-demand --key-id "$ext"
expect_fail 8 UnsupportedOperationException enable-key-rotation --key-id "$ext"
expect_ok "an imported key may be scheduled for deletion" schedule-key-deletion --key-id "$ext" \
    --pending-window-in-days 7
expect_ok "describe the imported key pending deletion" describe-key --key-id "$ext"
jq_check "PendingDeletion, still EXTERNAL" '.KeyMetadata.KeyState == "PendingDeletion"
    and .KeyMetadata.Origin == "EXTERNAL"'
expect_fail 8 UnsupportedOperationException create-key --origin AWS_CLOUDHSM

echo "== maintain"
expect_ok "maintain" maintain
jq_check "maintain reports its actions as a list" '.Actions | type == "array"'
expect_ok "maintain --output text" maintain --output text
expect_ok "a key pending deletion is kept until its date" describe-key --key-id "$ext"
jq_check "still PendingDeletion" '.KeyMetadata.KeyState == "PendingDeletion"'

cli_finish
