#!/bin/sh
# p11kms audit show / audit verify from the command line: the CLI's own requests are audited
# (local mode), show filters by operation, decision, key, principal and time, verify exits 0 on
# an intact log and 5 on a tampered one, naming the line.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
cd "$P11KMS_TEST_ROOT"
log="$P11KMS_TEST_ROOT/audit.log"
cat >>"$P11KMS_CONFIG" <<CONF
audit:
  file: $log
CONF

expect_ok "create a key" create-key
key=$(jq -r .KeyMetadata.KeyId out.json)
expect_ok "encrypt" encrypt --key-id "$key" --plaintext aGVsbG8= --encryption-context app=web
expect_fail 2 NotFoundException encrypt --key-id alias/missing --plaintext aGVsbG8=
# Refused by the library (the window must be 7..30 days), so audited; a usage error the command
# line catches itself never reaches the library and leaves no record.
expect_fail 1 ValidationException schedule-key-deletion --key-id "$key" --pending-window-in-days 3
expect_fail 1 ValidationException generate-random --number-of-bytes x

records=$(grep -c '"seq":' "$log")
[ "$records" -eq 4 ] && pass "one record per CLI request (4)" || fail "$records records for 4 requests"
grep -q '"encryptionContext":{"app":"web"}' "$log" && pass "the context is recorded" ||
    fail "no context in the record"
grep -q 'aGVsbG8=\|hello' "$log" && fail "plaintext in the log" || pass "no plaintext in the log"

expect_ok "show --operation Encrypt" audit show --operation Encrypt --output text "$log"
[ "$(wc -l <out.json)" -eq 2 ] && pass "two Encrypt records" || fail "show: $(cat out.json)"
expect_ok "show --key-id" audit show --key-id "$key" "$log"
jq -e -s 'map(.eventName) == ["CreateKey","Encrypt","ScheduleKeyDeletion"]' out.json \
    >/dev/null && pass "records of the key: CreateKey, Encrypt, ScheduleKeyDeletion" ||
    fail "show --key-id: $(cat out.json)"
expect_ok "show --operation ScheduleKeyDeletion" audit show --operation ScheduleKeyDeletion "$log"
jq -e '.errorCode == "ValidationException" and .resultClass == "ClientError"' out.json \
    >/dev/null && pass "the refused request's record" || fail "refused: $(cat out.json)"
expect_ok "show --decision Deny" audit show --decision Deny "$log"
[ ! -s out.json ] && pass "no Deny under policy: none" || fail "deny: $(cat out.json)"
expect_ok "show --principal" audit show --principal unix:uid:$(id -u) --operation CreateKey "$log"
[ "$(wc -l <out.json)" -eq 1 ] && pass "filter by principal" || fail "principal: $(cat out.json)"
expect_ok "show --since the future" audit show --since 2999 "$log"
[ ! -s out.json ] && pass "nothing after 2999" || fail "since: $(cat out.json)"
expect_ok "show --until the past" audit show --until 2000 "$log"
[ ! -s out.json ] && pass "nothing before 2000" || fail "until: $(cat out.json)"
expect_fail 1 ValidationException audit show --decision Maybe "$log"
expect_fail 1 ValidationException audit show
expect_fail 1 ValidationException audit verify

expect_ok "verify the intact log" audit verify "$log"
grep -q "^valid: 4 records in 1 file, sealed through seq 4" out.json && pass "verify summary" ||
    fail "verify summary: $(cat out.json)"

sed 's/"eventName":"Encrypt"/"eventName":"Decrypt"/' "$log" >edited.log
p11kms audit verify edited.log
if [ "$status" -eq 5 ] && grep -q "^INVALID edited.log:[0-9]*: " out.json &&
    grep -q "^p11kms: InvalidCiphertextException: the audit log does not verify: edited.log:" err.txt; then
    pass "an edited log: exit 5, the line named"
else
    fail "edited log: exit $status: $(cat out.json err.txt)"
fi

cli_finish
