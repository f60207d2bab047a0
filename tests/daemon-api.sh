#!/bin/sh
# p11kmsd: the KMS API with the real aws CLI and boto3 (loopback listener) and raw HTTP (Unix
# socket); every request and response of the boto3 and raw parts is checked against botocore's
# KMS model; bad input; listener refusals; one log line per request; SIGTERM.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
sock="$P11KMS_TEST_ROOT/p11kmsd.sock"
port=$(free_port)

echo "== plain HTTP only on loopback"
for bad in 0.0.0.0:$port "[::]:$port" 192.0.2.1:$port; do
    if "$P11KMSD" --socket "$sock" --listen-http "$bad" 2>refused.log; then
        fail "--listen-http $bad is refused"
    elif grep -q "only on 127.0.0.0/8 or ::1" refused.log; then
        pass "--listen-http $bad is refused"
    else
        fail "--listen-http $bad: $(cat refused.log)"
    fi
    [ ! -e "$sock" ] && pass "no socket left behind" || fail "socket left behind by a refused start"
done

echo "== start-up checks"
if "$P11KMSD" --check-config 2>check.log && grep -q "configuration OK" check.log; then
    pass "--check-config accepts the test configuration"
else
    fail "--check-config: $(cat check.log)"
fi
cp p11kms.yaml open.yaml
chmod 644 open.yaml
if "$P11KMSD" --config open.yaml --socket "$sock" 2>open.log; then
    fail "a configuration readable by others is refused"
elif grep -q "configuration open.yaml is readable or writable by others (mode 0644)" open.log; then
    pass "a configuration readable by others is refused, naming file and mode"
else
    fail "open config: $(cat open.log)"
fi
sed 's|^policy: none|policy: /nonexistent/policy.yaml|' p11kms.yaml >broken.yaml
if "$P11KMSD" --check-config --config broken.yaml 2>broken.log; then
    fail "--check-config refuses a configuration whose policy is missing"
else
    pass "--check-config refuses a configuration whose policy is missing"
fi

echo "== memory-lock: disabled"
cp p11kms.yaml nolock.yaml
printf 'memory-lock: disabled\n' >>nolock.yaml
chmod 600 nolock.yaml
daemon_start nolock.log --config nolock.yaml --socket "$sock"
grep -q "^p11kmsd: warning: memory not locked: disabled by the configuration (memory-lock: disabled)" \
    nolock.log && pass "memory-lock: disabled warns at start" || fail "nolock: $(cat nolock.log)"
# Only OpenSSL's secure heap is locked then; mlockall would lock every mapping (VmLck = VmSize).
awk '/^VmLck:/ { l = $2 } /^VmSize:/ { s = $2 } END { exit !(l * 2 < s) }' /proc/$daemon_pid/status &&
    ! grep -q "^p11kmsd: memory locked$" nolock.log && pass "and leaves its memory unlocked" ||
    fail "locked with memory-lock: disabled: $(grep -E 'VmLck|VmSize' /proc/$daemon_pid/status)"
daemon_stop
sed -i 's/^memory-lock: disabled$/memory-lock: off/' nolock.yaml
if "$P11KMSD" --check-config --config nolock.yaml 2>badlock.log; then
    fail "memory-lock accepts only enabled or disabled"
else
    grep -q "off" badlock.log && pass "memory-lock: off is refused" ||
        fail "badlock: $(cat badlock.log)"
fi

daemon_start daemon.log --socket "$sock" --listen-http "127.0.0.1:$port" --threads 2 --timeout 3
grep -q "^Max core file size *0 *0 " /proc/$daemon_pid/limits && pass "core dumps disabled" ||
    fail "core limit: $(grep core /proc/$daemon_pid/limits)"
grep -q "^p11kmsd: memory locked$\|^p11kmsd: memory not locked: " daemon.log &&
    pass "says whether memory is locked" || fail "no memory-lock line"
[ "$(stat -c %a "$sock")" = 666 ] && pass "socket mode 0666 (every caller is authenticated)" ||
    fail "socket mode $(stat -c %a "$sock")"
if "$P11KMSD" --socket "$sock" 2>second.log; then
    fail "a second p11kmsd on the same socket is refused"
else
    grep -q "another p11kmsd answers there" second.log && pass "a second p11kmsd is refused" ||
        fail "second p11kmsd: $(cat second.log)"
fi

echo "== boto3 and raw HTTP"
if "$PY" "$P11KMS_SRCDIR/tests/daemon-api.py" "$sock" "http://127.0.0.1:$port"; then
    pass "daemon-api.py"
else
    fail "daemon-api.py"
fi

echo "== aws kms --endpoint-url"
url="http://127.0.0.1:$port"
awsk() { aws_env "$AWS" kms --endpoint-url "$url" --output json "$@"; }
if awsk create-key --description "from aws cli" >ck.json 2>aws.err; then
    pass "aws kms create-key"
else
    fail "aws kms create-key: $(cat aws.err)"
fi
key=$(jq -r .KeyMetadata.KeyId ck.json)
printf 'secret from the aws cli' >pt.bin
if awsk encrypt --key-id "$key" --plaintext fileb://pt.bin --encryption-context app=cli \
    --query CiphertextBlob --output text >ct.b64 2>aws.err; then
    pass "aws kms encrypt"
else
    fail "aws kms encrypt: $(cat aws.err)"
fi
base64 -d ct.b64 >ct.bin
if awsk decrypt --ciphertext-blob fileb://ct.bin --encryption-context app=cli \
    --query Plaintext --output text 2>aws.err | base64 -d >back.bin && cmp -s pt.bin back.bin; then
    pass "aws kms decrypt gives the plaintext back"
else
    fail "aws kms decrypt: $(cat aws.err)"
fi
if awsk decrypt --ciphertext-blob fileb://ct.bin --encryption-context app=other >/dev/null 2>aws.err; then
    fail "aws kms decrypt with another context is refused"
else
    grep -q InvalidCiphertextException aws.err && pass "aws kms decrypt, wrong context: InvalidCiphertextException" ||
        fail "aws kms decrypt, wrong context: $(cat aws.err)"
fi
awsk describe-key --key-id "$(jq -r .KeyMetadata.Arn ck.json)" >dk.json 2>aws.err &&
    [ "$(jq -r .KeyMetadata.KeyId dk.json)" = "$key" ] && pass "aws kms describe-key by ARN" ||
    fail "aws kms describe-key: $(cat aws.err)"
awsk list-keys >lk.json 2>aws.err && jq -e ".Keys | map(.KeyId) | index(\"$key\")" lk.json >/dev/null &&
    pass "aws kms list-keys" || fail "aws kms list-keys: $(cat aws.err)"
awsk generate-data-key --key-id "$key" --key-spec AES_256 >gdk.json 2>aws.err &&
    [ "$(jq -r .Plaintext gdk.json | base64 -d | wc -c)" -eq 32 ] &&
    pass "aws kms generate-data-key" || fail "aws kms generate-data-key: $(cat aws.err)"

echo "== the log"
grep -q "principal=unix:user:$(id -un) op=Encrypt key=.* decision=allowed error=- status=200 us=[0-9]" daemon.log &&
    pass "one line per request with principal, operation, key, decision, class and time" ||
    fail "request log lines: $(tail -3 daemon.log)"
grep -q "op=Decrypt .*decision=failed error=InvalidCiphertextException status=400" daemon.log &&
    pass "refusals are logged with their class" || fail "refusal log line missing"
grep -q "key=alias/forged%20decision=allowed decision=failed error=" daemon.log &&
    ! grep -q "key=alias/forged decision=allowed" daemon.log &&
    pass "a key name's spaces are written %20: no field of the client's own" ||
    fail "key name with spaces: $(grep forged daemon.log)"
if grep -q "secret from the aws cli\|c2VjcmV0IGZyb20gdGhlIGF3cyBjbGk" daemon.log; then
    fail "the log holds a plaintext"
else
    pass "no plaintext in the log"
fi
daemon_stop
grep -q '^p11kmsd: stopped$' daemon.log && pass "logs its stop" || fail "no stop line"
[ ! -e "$sock" ] && pass "socket removed on stop" || fail "socket left after stop"
daemon_finish
