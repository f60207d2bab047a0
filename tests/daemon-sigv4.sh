#!/bin/sh
# p11kmsd authenticates AWS Signature Version 4: access keys made with `p11kms credentials
# create` (secrets kept in the token) name their callers sigv4:<access key id> over TLS and
# over loopback HTTP; boto3 and `aws kms` work with them; the policy holds per access key; bad
# signatures of every kind are refused before the policy is asked and change nothing
# (tests/daemon-sigv4.py). Every response is checked against botocore's KMS model.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
command -v openssl >/dev/null 2>&1 || { echo "openssl not found" >&2; exit 99; }
P11KMS="$P11KMS_BUILDDIR/p11kms"
sock="$P11KMS_TEST_ROOT/p11kmsd.sock"
tls_port=$(free_port)
http_port=$(free_port)
while [ "$http_port" = "$tls_port" ]; do http_port=$(free_port); done

mkdir certs
cd certs
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
# cert NAME SUBJECT [EXTENSIONS]
cert() {
    key "$1"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf '%s\n' "${3:-extendedKeyUsage=clientAuth}" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
key ca
openssl req -x509 -new -key ca.key -subj "/CN=p11kms test ca" -days 2 -out ca.pem 2>/dev/null
cert server "/CN=localhost" "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
cert boss "/O=p11kms test/CN=p11kmst-boss" # may disable keys: a signature must not borrow that
cd ..

# The configured region scopes every signature.
sed 's|^keys:$|keys:\n  region: eu-west-1|' p11kms.yaml >local.yaml
grep -q '^  region: eu-west-1$' local.yaml || { echo "could not set the region"; exit 1; }

# Credentials, made in local mode (policy none) before the daemon starts; the secrets go to
# files only this user reads, never to a command line.
umask 077
for who in admin svc other doomed; do
    P11KMS_CONFIG=local.yaml "$P11KMS" credentials create --principal-name "$who" >"cred-$who.json"
done
akid() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["AccessKey"]["AccessKeyId"])' "cred-$1.json"; }
admin=$(akid admin)
svc=$(akid svc)
doomed=$(akid doomed)

cat >policy.yaml <<POLICY
version: 1
global:
  - sid: admin-global
    effect: allow
    principals: ["sigv4:$admin"]
    actions: [create-key, list-keys, list-aliases]
  - sid: boss-global
    effect: allow
    principals: ["x509:CN=p11kmst-boss,O=p11kms test"]
    actions: [list-keys, list-aliases]
  - sid: doomed-global
    effect: allow
    principals: ["sigv4:$doomed"]
    actions: [list-keys]
statements:
  - sid: admin-manage
    effect: allow
    principals: ["sigv4:$admin"]
    keys: ["*"]
    actions: [describe-key, enable-key, disable-key, create-alias]
  - sid: boss-manage
    effect: allow
    principals: ["x509:CN=p11kmst-boss,O=p11kms test"]
    keys: ["*"]
    actions: [describe-key, enable-key, disable-key]
  - sid: svc-use
    effect: allow
    principals: ["sigv4:$svc"]
    keys: ["alias/app-*"]
    actions: [encrypt, decrypt]
    conditions:
      context-equals:
        app: orders
  - sid: svc-describe
    effect: allow
    principals: ["sigv4:$svc"]
    keys: ["alias/app-*"]
    actions: [describe-key]
POLICY
sed "s|^policy: none|policy: $P11KMS_TEST_ROOT/policy.yaml|" local.yaml >daemon.yaml
daemon_start daemon.log --config daemon.yaml --socket "$sock" \
    --listen-http "127.0.0.1:$http_port" --listen-tls "127.0.0.1:$tls_port" \
    --tls-cert certs/server.pem --tls-key certs/server.key --tls-client-ca certs/ca.pem

if "$PY" "$P11KMS_SRCDIR/tests/daemon-sigv4.py" "$tls_port" "$http_port" "$P11KMS_TEST_ROOT"; then
    pass "daemon-sigv4.py"
else
    fail "daemon-sigv4.py"
fi

echo "== a deleted access key is refused from then on"
P11KMS_CONFIG=local.yaml "$P11KMS" credentials delete --access-key-id "$doomed"
if "$PY" "$P11KMS_SRCDIR/tests/daemon-sigv4.py" "$tls_port" "$http_port" "$P11KMS_TEST_ROOT" \
    deleted "$doomed"; then
    pass "the deleted key: UnrecognizedClientException"
else
    fail "the deleted key is still accepted"
fi

echo "== aws kms with the access key in the environment"
# aws_cred WHO AWS-ARGS...: aws kms as an access key (exported, so not on any command line).
aws_cred() {
    who=$1
    shift
    (
        AWS_ACCESS_KEY_ID=$(akid "$who")
        AWS_SECRET_ACCESS_KEY=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["AccessKey"]["SecretAccessKey"])' "cred-$who.json")
        export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
        env HOME="$P11KMS_TEST_ROOT" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
            AWS_EC2_METADATA_DISABLED=true AWS_PAGER= AWS_MAX_ATTEMPTS=1 \
            "$AWS" --region eu-west-1 --endpoint-url "https://127.0.0.1:$tls_port" \
            --ca-bundle certs/ca.pem "$@"
    )
}
if aws_cred admin kms create-key --description "made by aws kms" >aws.out 2>aws.err &&
    "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))["KeyMetadata"]; assert m["KeyState"] == "Enabled" and m["Description"] == "made by aws kms"' aws.out; then
    pass "aws kms create-key as the admin's access key"
else
    fail "aws kms create-key: $(cat aws.out aws.err)"
fi
if aws_cred svc kms create-key >aws.out 2>aws.err; then
    fail "aws kms create-key as the service's access key succeeded"
elif grep -q AccessDeniedException aws.err; then
    pass "aws kms create-key as the service's access key: AccessDeniedException"
else
    fail "aws kms create-key as the service: $(cat aws.err)"
fi
# A wrong secret: the admin's id with the service's secret.
AWS_ACCESS_KEY_ID=$admin
AWS_SECRET_ACCESS_KEY=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["AccessKey"]["SecretAccessKey"])' cred-svc.json)
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
if env HOME="$P11KMS_TEST_ROOT" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_EC2_METADATA_DISABLED=true AWS_PAGER= AWS_MAX_ATTEMPTS=1 \
    "$AWS" --region eu-west-1 --endpoint-url "https://127.0.0.1:$tls_port" \
    --ca-bundle certs/ca.pem kms list-keys >aws.out 2>aws.err; then
    fail "aws kms with a wrong secret succeeded"
elif grep -q InvalidSignatureException aws.err; then
    pass "aws kms with a wrong secret: InvalidSignatureException"
else
    fail "aws kms with a wrong secret: $(cat aws.err)"
fi
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

grep -q "principal=sigv4:$svc op=Encrypt .*decision=allowed" daemon.log &&
    pass "the log names the access key id" || fail "log: $(grep Encrypt daemon.log | head -2)"
grep -q "decision=unauthenticated error=InvalidSignatureException" daemon.log &&
    pass "refused signatures are logged as unauthenticated" || fail "no unauthenticated line"
grep -q "SigV4 signature refused (InvalidSignatureException): Signature expired" daemon.log &&
    pass "the log says why a signature was refused" || fail "no reason logged"
for f in cred-admin.json cred-svc.json cred-other.json; do
    s=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["AccessKey"]["SecretAccessKey"])' "$f")
    if grep -qF -- "$s" daemon.log; then fail "a secret is in the log"; else pass "no secret in the log ($f)"; fi
done
daemon_stop
daemon_finish
