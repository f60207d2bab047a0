#!/bin/sh
# p11kmsd enforces the policy per OS user over the Unix socket: the daemon runs as a service
# user that alone owns the token, the PIN file and the config; test users call it. Needs root
# (it creates and removes the OS users p11kmst-*), as CI runs.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "daemon-policy: must run as root (creates OS users)" >&2; exit 99; }
for tool in useradd userdel setpriv; do
    command -v $tool >/dev/null 2>&1 || { echo "$tool not found" >&2; exit 99; }
done
users="p11kmst-daemon p11kmst-admin p11kmst-svc p11kmst-other"
remove_users() {
    for u in $users; do
        if id "$u" >/dev/null 2>&1; then userdel "$u" >/dev/null 2>&1 || true; fi
    done
}
cleanup() {
    if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    remove_users
}
trap cleanup EXIT
remove_users # left over by an interrupted run
for u in $users; do
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
done

root=$P11KMS_TEST_ROOT
cat >policy.yaml <<'POLICY'
version: 1
global:
  - sid: admin-global
    effect: allow
    principals: [unix:user:p11kmst-admin]
    actions: [create-key, list-keys, list-aliases]
  - sid: svc-list-aliases
    effect: allow
    principals: [unix:user:p11kmst-svc]
    actions: [list-aliases]
statements:
  - sid: admin-manage
    effect: allow
    principals: [unix:user:p11kmst-admin]
    keys: ["*"]
    actions: [describe-key, enable-key, disable-key, create-alias, tag-resource,
              get-parameters-for-import, import-key-material, delete-imported-key-material]
  - sid: svc-use
    effect: allow
    principals: [unix:user:p11kmst-svc]
    keys: ["alias/app-*"]
    actions: [encrypt, decrypt]
    conditions:
      context-equals:
        app: orders
  - sid: svc-describe
    effect: allow
    principals: [unix:user:p11kmst-svc]
    keys: ["alias/app-*"]
    actions: [describe-key]
  - sid: svc-re-encrypt-to
    effect: allow
    principals: [unix:user:p11kmst-svc]
    keys: ["alias/app-*"]
    actions: [re-encrypt-to]
POLICY
sed "s|^policy: none|policy: $root/policy.yaml|" p11kms.yaml >daemon.yaml
# The service user alone owns the token, PIN file, config and policy; callers may only
# traverse the test directory to reach the socket directory.
mkdir run
chown -R p11kmst-daemon: "$root"
chmod 600 daemon.yaml policy.yaml pin
chmod 711 "$root"
chmod 755 run
# The service user runs the build's p11kmsd and the callers reach the socket.
. "$P11KMS_SRCDIR/tests/lib/grant-search.sh"
grant_search daemon-policy "$(cd "$(dirname "$P11KMSD")" && pwd)" "$root"
sock="$root/run/p11kmsd.sock"
as() {
    u=$1
    shift
    setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- "$@"
}
"$P11KMSD" --version >/dev/null # libtool's wrapper settles its binary as root, once

# A simple command (not the function), so that $! is p11kmsd itself: setpriv, env and libtool's
# wrapper all exec.
setpriv --reuid=p11kmst-daemon --regid=p11kmst-daemon --init-groups --reset-env -- \
    env ${SOFTHSM2_CONF:+"SOFTHSM2_CONF=$SOFTHSM2_CONF"} "$P11KMSD" --config "$root/daemon.yaml" --socket "$sock" \
    2>daemon.log &
daemon_pid=$!
i=0
until grep -q '^p11kmsd: ready$' daemon.log 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "p11kmsd did not start:"
        cat daemon.log
        exit 1
    fi
    sleep 0.1
done

# call USER OP JSON: the response in $resp (with __status); a model violation fails.
call() {
    u=$1
    op=$2
    if ! resp=$(as "$u" "$PY" "$P11KMS_SRCDIR/tests/daemon/kms_call.py" "$sock" "$op" "$3" 2>call.err); then
        fail "$u $op: $(cat call.err) $resp"
    fi
    cat call.err
}
# expect_ok USER OP JSON
expect_ok() {
    call "$@"
    if [ "$(echo "$resp" | jq -r .__status)" = 200 ]; then pass "$1 $2 allowed"; else fail "$1 $2: $resp"; fi
}
# expect_err CLASS USER OP JSON
expect_err() {
    class=$1
    shift
    call "$@"
    got=$(echo "$resp" | jq -r .__type)
    if [ "$got" = "$class" ]; then pass "$1 $2 -> $class"; else fail "$1 $2 -> $class, got $resp"; fi
}

echo "== the key administrator manages keys"
expect_ok p11kmst-admin CreateKey '{"Description": "orders"}'
key=$(echo "$resp" | jq -r .KeyMetadata.KeyId)
expect_ok p11kmst-admin CreateAlias "{\"AliasName\": \"alias/app-orders\", \"TargetKeyId\": \"$key\"}"
expect_ok p11kmst-admin CreateKey '{"Description": "hr"}'
hr=$(echo "$resp" | jq -r .KeyMetadata.KeyId)
expect_ok p11kmst-admin CreateAlias "{\"AliasName\": \"alias/secret-hr\", \"TargetKeyId\": \"$hr\"}"
expect_err AccessDeniedException p11kmst-admin Encrypt '{"KeyId": "alias/app-orders", "Plaintext": "eA==", "EncryptionContext": {"app": "orders"}}'

echo "== the service uses its key with its context"
expect_ok p11kmst-svc Encrypt '{"KeyId": "alias/app-orders", "Plaintext": "b3JkZXIgNDI=", "EncryptionContext": {"app": "orders"}}'
blob=$(echo "$resp" | jq -r .CiphertextBlob)
expect_ok p11kmst-svc Decrypt "{\"CiphertextBlob\": \"$blob\", \"EncryptionContext\": {\"app\": \"orders\"}}"
[ "$(echo "$resp" | jq -r .Plaintext)" = b3JkZXIgNDI= ] && pass "service decrypts its data" || fail "decrypted: $resp"
expect_err AccessDeniedException p11kmst-svc Decrypt "{\"CiphertextBlob\": \"$blob\", \"EncryptionContext\": {\"app\": \"billing\"}}"
echo "== DryRun answers as the call would: the blob names the key; ReEncrypt needs both sides"
expect_err DryRunOperationException p11kmst-svc Decrypt "{\"CiphertextBlob\": \"$blob\", \"EncryptionContext\": {\"app\": \"orders\"}, \"DryRun\": true}"
expect_err AccessDeniedException p11kmst-svc Decrypt "{\"CiphertextBlob\": \"$blob\", \"EncryptionContext\": {\"app\": \"billing\"}, \"DryRun\": true}"
reencrypt="{\"CiphertextBlob\": \"$blob\", \"SourceEncryptionContext\": {\"app\": \"orders\"}, \"DestinationKeyId\": \"alias/app-orders\", \"DestinationEncryptionContext\": {\"app\": \"orders\"}"
expect_err AccessDeniedException p11kmst-svc ReEncrypt "$reencrypt}"
expect_err AccessDeniedException p11kmst-svc ReEncrypt "$reencrypt, \"DryRun\": true}"
expect_err AccessDeniedException p11kmst-svc DisableKey "{\"KeyId\": \"$key\"}"
expect_err AccessDeniedException p11kmst-svc CreateKey '{}'
expect_err AccessDeniedException p11kmst-admin Decrypt "{\"CiphertextBlob\": \"$blob\", \"EncryptionContext\": {\"app\": \"orders\"}}"

echo "== a third user gets nothing, and cannot tell an existing key from a missing one"
expect_err AccessDeniedException p11kmst-other Decrypt "{\"CiphertextBlob\": \"$blob\", \"EncryptionContext\": {\"app\": \"orders\"}}"
expect_err AccessDeniedException p11kmst-other ListKeys '{}'
expect_err AccessDeniedException p11kmst-other ListAliases '{}'
expect_err AccessDeniedException p11kmst-other DescribeKey "{\"KeyId\": \"$key\"}"
existing=$(echo "$resp" | jq -c '{__type, message}')
expect_err AccessDeniedException p11kmst-other DescribeKey '{"KeyId": "11111111-2222-4333-8444-555555555555"}'
missing=$(echo "$resp" | jq -c '{__type, message}')
[ "$existing" = "$missing" ] && pass "same class and message for an existing and a missing key" ||
    fail "existing: $existing, missing: $missing"
expect_err AccessDeniedException p11kmst-other DescribeKey '{"KeyId": "alias/app-orders"}'
a1=$(echo "$resp" | jq -c '{__type, message}')
expect_err AccessDeniedException p11kmst-other DescribeKey '{"KeyId": "alias/app-missing"}'
a2=$(echo "$resp" | jq -c '{__type, message}')
[ "$a1" = "$a2" ] && [ "$a1" = "$existing" ] && pass "same for an existing and a missing alias" ||
    fail "alias: $a1 vs $a2"
expect_err AccessDeniedException p11kmst-svc DescribeKey "{\"KeyId\": \"$hr\"}"
s1=$(echo "$resp" | jq -c '{__type, message}')
expect_err AccessDeniedException p11kmst-svc DescribeKey '{"KeyId": "alias/secret-missing"}'
s2=$(echo "$resp" | jq -c '{__type, message}')
[ "$s1" = "$s2" ] && pass "the service cannot tell another key's existence either" || fail "$s1 vs $s2"
if grep -q "$key" call.err 2>/dev/null || echo "$existing" | grep -q "$key"; then
    fail "a denial names the key"
else
    pass "denials name no key"
fi

echo "== ListAliases shows only aliases of keys the caller may describe"
expect_ok p11kmst-svc ListAliases '{}'
[ "$(echo "$resp" | jq -c '[.Aliases[].AliasName]')" = '["alias/app-orders"]' ] &&
    pass "the service sees only its alias" || fail "service aliases: $resp"
expect_ok p11kmst-admin ListAliases '{}'
[ "$(echo "$resp" | jq -c '[.Aliases[].AliasName] | sort')" = '["alias/app-orders","alias/secret-hr"]' ] &&
    pass "the administrator sees both" || fail "admin aliases: $resp"
expect_ok p11kmst-admin ListAliases '{"Limit": 1}'
[ "$(echo "$resp" | jq -c '[.Truncated, (.Aliases | length), (.NextMarker != null)]')" = '[true,1,true]' ] &&
    pass "filtered aliases paginate" || fail "paged aliases: $resp"

echo "== imported key material: the administrator may import, the service may not"
expect_ok p11kmst-admin CreateKey '{"Origin": "EXTERNAL"}'
ext=$(echo "$resp" | jq -r .KeyMetadata.KeyId)
expect_ok p11kmst-admin CreateAlias "{\"AliasName\": \"alias/app-imported\", \"TargetKeyId\": \"$ext\"}"
gpfi="{\"KeyId\": \"alias/app-imported\", \"WrappingAlgorithm\": \"RSAES_OAEP_SHA_1\", \"WrappingKeySpec\": \"RSA_2048\"}"
expect_ok p11kmst-admin GetParametersForImport "$gpfi"
token=$(echo "$resp" | jq -r .ImportToken)
expect_err AccessDeniedException p11kmst-svc GetParametersForImport "$gpfi"
expect_err AccessDeniedException p11kmst-svc ImportKeyMaterial \
    "{\"KeyId\": \"alias/app-imported\", \"ImportToken\": \"$token\", \"EncryptedKeyMaterial\": \"AAAA\", \"ExpirationModel\": \"KEY_MATERIAL_DOES_NOT_EXPIRE\"}"
expect_err AccessDeniedException p11kmst-svc DeleteImportedKeyMaterial '{"KeyId": "alias/app-imported"}'
expect_err AccessDeniedException p11kmst-other GetParametersForImport "$gpfi"
expect_ok p11kmst-admin DescribeKey '{"KeyId": "alias/app-imported"}'
[ "$(echo "$resp" | jq -r .KeyMetadata.KeyState)" = PendingImport ] &&
    pass "refused imports change nothing" || fail "state: $resp"

echo "== the administrator disables, the service is refused"
expect_ok p11kmst-admin DisableKey "{\"KeyId\": \"$key\"}"
expect_err DisabledException p11kmst-svc Encrypt '{"KeyId": "alias/app-orders", "Plaintext": "eA==", "EncryptionContext": {"app": "orders"}}'
expect_ok p11kmst-admin EnableKey "{\"KeyId\": \"$key\"}"

echo "== SIGHUP: a broken policy keeps the old one"
printf 'version: 1\nstatements: [ {sid: broken\n' >policy.yaml
kill -HUP "$daemon_pid"
i=0
until grep -q "policy reload failed" daemon.log || [ $i -gt 100 ]; do i=$((i + 1)); sleep 0.1; done
grep -q "policy reload failed, the previous policy stays in force" daemon.log &&
    pass "broken policy: reload refused and logged" || fail "reload log: $(tail -2 daemon.log)"
expect_ok p11kmst-svc Encrypt '{"KeyId": "alias/app-orders", "Plaintext": "eA==", "EncryptionContext": {"app": "orders"}}'
expect_err AccessDeniedException p11kmst-svc DisableKey "{\"KeyId\": \"$key\"}"

echo "== the log names every caller"
grep -q "principal=unix:user:p11kmst-svc op=DisableKey key=$key decision=denied error=AccessDeniedException" daemon.log &&
    pass "denials logged with principal, operation and key" || fail "log: $(grep DisableKey daemon.log | head -2)"
grep -q "principal=unix:user:p11kmst-admin op=CreateKey .*decision=allowed" daemon.log &&
    pass "allowed requests logged" || fail "no allowed line"
kill -TERM "$daemon_pid"
wait "$daemon_pid" && pass "p11kmsd (as the service user) exits 0 on SIGTERM" || fail "exit $?"
grep -q '^p11kmsd: SIGTERM: stopping' daemon.log && grep -q '^p11kmsd: stopped$' daemon.log &&
    pass "SIGTERM reached p11kmsd, which stopped" || fail "stop lines: $(tail -2 daemon.log)"
daemon_pid=
daemon_finish
