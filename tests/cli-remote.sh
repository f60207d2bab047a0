#!/bin/sh
# p11kms in client mode (--endpoint, $P11KMS_ENDPOINT, endpoint: in the configuration): the
# commands go to a real p11kmsd over its Unix socket and over TLS with a client certificate, and
# print what local mode prints for the same command (less the p11kms-only members the API does
# not carry: KeyVersion, CurrentKeyVersion, the INITIAL rotation; plus the API's MultiRegion).
# The client never loads the token module nor reads the PIN: its configuration names a module
# and a PIN file that do not exist.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
command -v openssl >/dev/null 2>&1 || { echo "openssl not found" >&2; exit 99; }
root=$P11KMS_TEST_ROOT
sock="$root/p11kmsd.sock"
local_config=$P11KMS_CONFIG

# The client's configuration: a token that does not exist, and the daemon's endpoint.
cat >client-notoken.yaml <<EOF
token:
  module: $root/no-such-module.so
  uri: "pkcs11:token=nothing"
  pin-source: "file:$root/no-such-pin"
policy: none
EOF
printf 'endpoint: unix:%s\n' "$sock" >client.yaml
cat client-notoken.yaml >>client.yaml
chmod 600 client.yaml client-notoken.yaml

daemon_start daemon.log --config "$local_config" --socket "$sock" --threads 2

# Normalises an output for the comparison of local and client mode.
norm() {
    jq -S 'walk(if type == "object" then del(.KeyVersion, .CurrentKeyVersion, .MultiRegion,
        .Truncated) else . end) | if has("Rotations") then .Rotations |=
        map(select(.RotationType != "INITIAL")) else . end' "$1"
}
# same DESCRIPTION ARGS...: the command gives the same output locally and through the daemon.
same() {
    desc=$1
    shift
    p11kms --config "$local_config" "$@"
    if [ "$status" -ne 0 ]; then
        fail "$desc (local): exit $status $(cat err.txt)"
        return
    fi
    norm out.json >local.json
    p11kms --config client-notoken.yaml --endpoint "unix:$sock" "$@"
    if [ "$status" -ne 0 ] || [ -s err.txt ]; then
        fail "$desc (client): exit $status $(cat err.txt)"
        return
    fi
    norm out.json >remote.json
    if cmp -s local.json remote.json; then
        pass "$desc: client output = local output"
    else
        fail "$desc: local $(cat local.json) client $(cat remote.json)"
    fi
}
remote() { p11kms --config client-notoken.yaml --endpoint "unix:$sock" "$@"; }

echo "== key management through the daemon"
P11KMS_CONFIG=client-notoken.yaml
export P11KMS_CONFIG
expect_ok "create-key (client)" --endpoint "unix:$sock" create-key --description "remote key" \
    --tags TagKey=team,TagValue=db
jq_check "create-key answers KeyMetadata" '.KeyMetadata.KeyState == "Enabled" and
    .KeyMetadata.Description == "remote key"'
key=$(field .KeyMetadata.KeyId)
arn=$(field .KeyMetadata.Arn)
expect_ok "create-alias (client)" --endpoint "unix:$sock" create-alias --alias-name alias/remote \
    --target-key-id "$key"
same "describe-key by id" describe-key --key-id "$key"
same "describe-key by alias" describe-key --key-id alias/remote
same "describe-key by ARN" describe-key --key-id "$arn"
same "list-keys" list-keys
same "list-aliases" list-aliases
same "list-aliases of a key" list-aliases --key-id "$key"
same "list-resource-tags" list-resource-tags --key-id "$key"
expect_ok "tag-resource" --endpoint "unix:$sock" tag-resource --key-id "$key" \
    --tags TagKey=env,TagValue=test
expect_ok "untag-resource" --endpoint "unix:$sock" untag-resource --key-id "$key" --tag-keys team
same "tags after tag and untag" list-resource-tags --key-id "$key"
jq_check "tags are env=test only" '.Tags == [{"TagKey": "env", "TagValue": "test"}]' remote.json
expect_ok "update-key-description" --endpoint "unix:$sock" update-key-description \
    --key-id "$key" --description "renamed"
expect_ok "enable-key-rotation" --endpoint "unix:$sock" enable-key-rotation --key-id "$key" \
    --rotation-period-in-days 90
# botocore's model (Debian 12) has only KeyRotationEnabled in GetKeyRotationStatus's output,
# and p11kmsd drops what the model lacks: local mode prints more.
expect_ok "get-key-rotation-status" --endpoint "unix:$sock" get-key-rotation-status --key-id "$key"
jq_check "rotation enabled" '.KeyRotationEnabled == true'
expect_ok "rotate-key-on-demand" --endpoint "unix:$sock" rotate-key-on-demand --key-id "$key"
same "list-key-rotations" list-key-rotations --key-id "$key"
jq_check "one ON_DEMAND rotation" '[.Rotations[].RotationType] == ["ON_DEMAND"]' remote.json
expect_ok "disable-key-rotation" --endpoint "unix:$sock" disable-key-rotation --key-id "$key"
expect_ok "disable-key" --endpoint "unix:$sock" disable-key --key-id alias/remote
same "describe-key of a disabled key" describe-key --key-id "$key"
expect_fail 3 DisabledException --endpoint "unix:$sock" encrypt --key-id "$key" --plaintext eA==
expect_ok "enable-key" --endpoint "unix:$sock" enable-key --key-id alias/remote

echo "== cryptography through the daemon"
printf 'order 42' >plain.txt
expect_ok "encrypt" --endpoint "unix:$sock" encrypt --key-id alias/remote \
    --plaintext fileb://plain.txt --encryption-context app=orders,tier=db
b64_to_file .CiphertextBlob blob.bin
jq_check "encrypt output" '.KeyId == "'"$arn"'" and .EncryptionAlgorithm == "SYMMETRIC_DEFAULT"'
same "decrypt" decrypt --ciphertext-blob fileb://blob.bin --encryption-context app=orders,tier=db
jq -r .Plaintext remote.json | base64 -d >plain.out
cmp -s plain.txt plain.out && pass "client decrypt gives the plaintext back" ||
    fail "plaintext $(od -c plain.out)"
expect_fail 5 InvalidCiphertextException --endpoint "unix:$sock" decrypt \
    --ciphertext-blob fileb://blob.bin --encryption-context app=billing
expect_ok "re-encrypt" --endpoint "unix:$sock" re-encrypt --ciphertext-blob fileb://blob.bin \
    --source-encryption-context '{"app":"orders","tier":"db"}' --destination-key-id "$key" \
    --destination-encryption-context app=new
b64_to_file .CiphertextBlob blob2.bin
same "decrypt the re-encrypted blob" decrypt --ciphertext-blob fileb://blob2.bin \
    --encryption-context app=new
expect_ok "generate-data-key" --endpoint "unix:$sock" generate-data-key --key-id "$key" \
    --key-spec AES_256 --encryption-context db=1
[ "$(jq -r .Plaintext out.json | base64 -d | wc -c)" -eq 32 ] && pass "a 32-byte data key" ||
    fail "data key: $(cat out.json)"
jq -r .Plaintext out.json >dk.b64
b64_to_file .CiphertextBlob dk.blob
same "decrypt the data key" decrypt --ciphertext-blob fileb://dk.blob --encryption-context db=1
[ "$(jq -r .Plaintext remote.json)" = "$(cat dk.b64)" ] && pass "the data key decrypts to itself" ||
    fail "data key differs"
expect_ok "generate-data-key-without-plaintext" --endpoint "unix:$sock" \
    generate-data-key-without-plaintext --key-id "$key" --number-of-bytes 16
jq_check "no Plaintext member" 'has("Plaintext") | not'
expect_ok "generate-random" --endpoint "unix:$sock" generate-random --number-of-bytes 48
[ "$(jq -r .Plaintext out.json | base64 -d | wc -c)" -eq 48 ] && pass "48 random bytes" ||
    fail "random: $(cat out.json)"
expect_ok "--output text" --endpoint "unix:$sock" --output text describe-key --key-id "$key"
grep -q "$key" out.json && pass "text output names the key" || fail "text: $(cat out.json)"

echo "== errors keep their classes and exit codes"
expect_fail 2 NotFoundException --endpoint "unix:$sock" describe-key \
    --key-id 11111111-2222-4333-8444-555555555555
p11kms --config "$local_config" describe-key --key-id 11111111-2222-4333-8444-555555555555
[ "$status" -eq 2 ] && pass "local mode: the same exit code" || fail "local exit $status"
expect_fail 9 AlreadyExistsException --endpoint "unix:$sock" create-alias \
    --alias-name alias/remote --target-key-id "$key"
expect_fail 1 ValidationException --endpoint "unix:$sock" schedule-key-deletion \
    --key-id "$key" --pending-window-in-days 3
expect_fail 1 ValidationException --endpoint "unix:$sock" generate-data-key --key-id "$key"

echo "== deletion"
expect_ok "schedule-key-deletion" --endpoint "unix:$sock" schedule-key-deletion \
    --key-id "$key" --pending-window-in-days 7
jq_check "PendingDeletion, 7 days" '.KeyState == "PendingDeletion" and .PendingWindowInDays == 7'
expect_fail 4 KMSInvalidStateException --endpoint "unix:$sock" decrypt \
    --ciphertext-blob fileb://blob.bin --encryption-context app=orders,tier=db
expect_ok "cancel-key-deletion" --endpoint "unix:$sock" cancel-key-deletion --key-id "$key"
jq_check "cancel answers the ARN" '.KeyId == "'"$arn"'"'
expect_ok "delete-alias" --endpoint "unix:$sock" delete-alias --alias-name alias/remote
same "list-aliases after delete" list-aliases

echo "== where the endpoint comes from"
expect_ok "endpoint: in the configuration" --config client.yaml describe-key --key-id "$key"
jq_check "configured endpoint answers" '.KeyMetadata.KeyId == "'"$key"'"'
P11KMS_ENDPOINT="unix:$sock" p11kms describe-key --key-id "$key"
[ "$status" -eq 0 ] && [ "$(field .KeyMetadata.KeyId)" = "$key" ] &&
    pass "\$P11KMS_ENDPOINT" || fail "\$P11KMS_ENDPOINT: exit $status $(cat err.txt)"
P11KMS_ENDPOINT="unix:$root/other.sock" p11kms --endpoint "unix:$sock" describe-key --key-id "$key"
[ "$status" -eq 0 ] && pass "--endpoint wins over \$P11KMS_ENDPOINT" || fail "$(cat err.txt)"
expect_fail 19 ConfigurationError describe-key --key-id "$key"
grep -q "no-such-module.so" err.txt && pass "without an endpoint, local mode tries the module" ||
    fail "local mode error: $(cat err.txt)"
expect_fail 1 ValidationException --config client.yaml --endpoint "" describe-key --key-id "$key"
p11kms --config client.yaml token info
[ "$status" -eq 8 ] && grep -q "'token info' is not served by p11kmsd" err.txt &&
    pass "token info is refused in client mode" || fail "token info: $status $(cat err.txt)"
for cmd in maintain "credentials list" "store migrate"; do
    # shellcheck disable=SC2086
    expect_fail 8 UnsupportedOperationException --config client.yaml $cmd
done
expect_fail 8 UnsupportedOperationException --config client.yaml policy explain \
    --principal unix:user:x --action create-key
expect_fail 8 UnsupportedOperationException --config client.yaml generate-child-key \
    --parent fileb://dk.blob@db=1
printf 'version: 1\nstatements: []\n' >policy.yaml
expect_ok "policy check needs no endpoint or token" --config client.yaml policy check policy.yaml
p11kms --config client-notoken.yaml --endpoint "unix:$sock" list-keys
[ "$status" -eq 0 ] && pass "list-keys with a non-existent module and PIN file" || fail "$(cat err.txt)"

echo "== bad endpoints"
expect_fail 1 ValidationException --endpoint nonsense list-keys
grep -q "expected unix:/PATH, https://HOST:PORT or http://127.0.0.1:PORT" err.txt &&
    pass "unparseable endpoint explained" || fail "$(cat err.txt)"
expect_fail 1 ValidationException --endpoint unix:relative.sock list-keys
expect_fail 1 ValidationException --endpoint http://192.0.2.1:8080 list-keys
grep -q "plain http is only for loopback" err.txt && pass "non-loopback http explained" ||
    fail "$(cat err.txt)"
expect_fail 1 ValidationException --endpoint https://host:99999 list-keys
expect_fail 1 ValidationException --endpoint https://host:443/path list-keys
expect_fail 1 ValidationException --endpoint "unix:$sock" --ca-bundle x.pem list-keys
expect_fail 12 KeyUnavailableException --endpoint "unix:$root/missing.sock" list-keys
grep -q "cannot reach p11kmsd at unix:$root/missing.sock" err.txt &&
    pass "missing socket explained" || fail "$(cat err.txt)"
port=$(free_port)
expect_fail 12 KeyUnavailableException --endpoint "http://127.0.0.1:$port" list-keys
daemon_stop

echo "== https with a client certificate (test CA)"
mkdir certs
(
    cd certs
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
    cert() {
        key "$1"
        openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
        printf '%s\n' "$4" >"$1.ext"
        openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
            -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    }
    for ca in ca other-ca; do
        key $ca
        openssl req -x509 -new -key $ca.key -subj "/CN=p11kms client test $ca" -days 2 \
            -out $ca.pem 2>/dev/null
    done
    cert server "/CN=localhost" ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
    cert app "/O=p11kms test/CN=p11kmst-client" ca "extendedKeyUsage=clientAuth"
)
port=$(free_port)
daemon_start daemon-tls.log --config "$local_config" --socket "$sock" \
    --listen-tls "127.0.0.1:$port" --tls-cert certs/server.pem --tls-key certs/server.key \
    --tls-client-ca certs/ca.pem
tls="--endpoint https://127.0.0.1:$port --ca-bundle certs/ca.pem"
# shellcheck disable=SC2086
expect_ok "https: create-key" $tls --client-cert certs/app.pem --client-key certs/app.key \
    create-key --description "over tls"
tkey=$(field .KeyMetadata.KeyId)
# shellcheck disable=SC2086
expect_ok "https: encrypt" $tls --client-cert certs/app.pem --client-key certs/app.key \
    encrypt --key-id "$tkey" --plaintext fileb://plain.txt
b64_to_file .CiphertextBlob tblob.bin
# shellcheck disable=SC2086
expect_ok "https: decrypt" $tls --client-cert certs/app.pem --client-key certs/app.key \
    decrypt --ciphertext-blob fileb://tblob.bin
[ "$(jq -r .Plaintext out.json | base64 -d)" = "order 42" ] && pass "https round trip" ||
    fail "https decrypt: $(cat out.json)"
grep -q "principal=x509:CN=p11kmst-client,O=p11kms%20test op=Decrypt" daemon-tls.log &&
    pass "the daemon saw the certificate's subject" || fail "log: $(grep Decrypt daemon-tls.log)"
same "describe-key over the socket after TLS" describe-key --key-id "$tkey"
# shellcheck disable=SC2086
expect_fail 7 AccessDeniedException $tls describe-key --key-id "$tkey"
grep -q "MissingAuthenticationTokenException" err.txt &&
    pass "without a client certificate: not authenticated" || fail "$(cat err.txt)"
expect_fail 12 KeyUnavailableException --endpoint "https://127.0.0.1:$port" \
    --ca-bundle certs/other-ca.pem --client-cert certs/app.pem --client-key certs/app.key \
    describe-key --key-id "$tkey"
expect_fail 1 ValidationException --endpoint "https://127.0.0.1:$port" \
    --client-cert certs/app.pem describe-key --key-id "$tkey"
daemon_stop
grep -q "order 42\|$(base64 <plain.txt)" daemon.log daemon-tls.log && fail "a plaintext in the log" ||
    pass "no plaintext in the daemon's logs"
# A wrong PIN spends one of the token's PIN tries: only on a token the harness made.
if [ "${P11KMS_TEST_OWN_TOKEN:-0}" != 1 ]; then
    echo "== not run: the refused-PIN checks would spend a PIN try on a token the harness did not make"
else
    echo "== local mode: a refused PIN file is not tried again by the next process (one try spent)"
    printf '%s\n' 00000000 >wrong-pin
    chmod 600 wrong-pin
    sed "s|pin-source: .*|pin-source: \"file:$root/wrong-pin\"|" "$local_config" >wrong-pin.yaml
    chmod 600 wrong-pin.yaml
    expect_fail 21 PinError --config wrong-pin.yaml list-keys
    grep -q "refused the PIN: CKR_PIN_INCORRECT; it will not be tried again while the PIN file is unchanged" \
        err.txt && pass "the first process spends the one try" || fail "$(cat err.txt)"
    expect_fail 21 PinError --config wrong-pin.yaml list-keys
    grep -q "refused PIN file $root/wrong-pin (CKR_PIN_INCORRECT) at an earlier login" err.txt &&
        pass "the second process does not log in" || fail "$(cat err.txt)"
    [ -f wrong-pin.refused ] && ! grep -q 00000000 wrong-pin.refused &&
        pass "the marker holds the file's identity, not the PIN" || fail "marker: $(cat wrong-pin.refused)"
    cp "$P11KMS_TEST_PIN_FILE" wrong-pin
    expect_ok "the corrected file is tried and works" --config wrong-pin.yaml list-keys
    [ ! -e wrong-pin.refused ] && pass "a successful login removes the marker" || fail "marker left"
fi
cli_finish
