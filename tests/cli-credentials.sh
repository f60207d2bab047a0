#!/bin/sh
# p11kms credentials: create prints the secret once (in the format of aws iam create-access-key),
# list shows ids and names but never a secret, the secret is nowhere in the token's files,
# delete removes it; bad input and unknown ids fail with one line and the right exit status.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

echo "== create"
expect_ok "credentials create" credentials create --principal-name rds-service
akid=$(field .AccessKey.AccessKeyId)
secret=$(field .AccessKey.SecretAccessKey)
jq_check "AccessKey as aws iam prints it" \
    '.AccessKey.UserName == "rds-service" and .AccessKey.Status == "Active"'
check "access key id: PKMS + 16 base32" sh -c "printf '%s' '$akid' | grep -Eq '^PKMS[A-Z2-7]{16}$'"
check "secret: 40 base64 characters" sh -c "printf '%s' \"\$1\" | grep -Eq '^[A-Za-z0-9+/]{40}$'" \
    sh "$secret"
jq_check "policy principal named" ".AccessKey.PolicyPrincipal == \"sigv4:$akid\""
expect_ok "text output" --output text credentials create --principal-name batch
check "text output carries the secret once" sh -c "test \$(grep -Eo '[A-Za-z0-9+/]{40}' out.json | wc -l) -eq 1"
akid2=$(tr '\t' '\n' <out.json | grep -E '^PKMS[A-Z2-7]{16}$' || true)
check "text output names the second id" test -n "$akid2"

echo "== list: ids and names, never a secret"
expect_ok "credentials list" credentials list
jq_check "both listed" "[.AccessKeyMetadata[].AccessKeyId] | sort == ([\"$akid\", \"$akid2\"] | sort)"
jq_check "names listed" ".AccessKeyMetadata[] | select(.AccessKeyId == \"$akid\") | .UserName == \"rds-service\""
check "no secret in the listing" sh -c "! grep -q -- \"\$1\" out.json" sh "$secret"
jq_check "no SecretAccessKey field" '[.AccessKeyMetadata[] | has("SecretAccessKey")] | any | not'

echo "== the secret is in no file of the token"
check "token files do not contain the secret" sh -c "! grep -rqF -- \"\$1\" \"\$P11KMS_TEST_ROOT/tokens\"" \
    sh "$secret"

echo "== bad input"
expect_fail 1 ValidationException credentials create
expect_fail 1 ValidationException credentials create --principal-name 'a b'
expect_fail 1 ValidationException credentials create --principal-name ''
expect_fail 1 ValidationException credentials create --principal-name "$(printf 'x%.0s' $(seq 65))"
expect_fail 1 ValidationException credentials delete
expect_fail 1 ValidationException credentials
expect_fail 2 NotFoundException credentials delete --access-key-id PKMSAAAAAAAAAAAAAAAA
expect_fail 2 NotFoundException credentials delete --access-key-id AKIAIOSFODNN7EXAMPLE

echo "== delete"
expect_ok "credentials delete" credentials delete --access-key-id "$akid"
check "delete prints nothing" test ! -s out.json
expect_ok "credentials list" credentials list
jq_check "only the second left" "[.AccessKeyMetadata[].AccessKeyId] == [\"$akid2\"]"
expect_fail 2 NotFoundException credentials delete --access-key-id "$akid"
expect_ok "delete the second" credentials delete --access-key-id "$akid2"
expect_ok "credentials list" credentials list
jq_check "none left" '.AccessKeyMetadata == []'

echo "== help"
expect_ok "credentials create --help" credentials create --help
check "help names --principal-name" grep -q -- '--principal-name NAME' out.json
check "help says the secret is printed once" grep -q 'printed once' out.json
cli_finish
