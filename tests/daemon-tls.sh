#!/bin/sh
# p11kmsd over TLS with client certificates from a test CA made here with openssl; the policy
# names callers x509:<subject>; unauthenticated TCP requests are refused.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
command -v openssl >/dev/null 2>&1 || { echo "openssl not found" >&2; exit 99; }
sock="$P11KMS_TEST_ROOT/p11kmsd.sock"
port=$(free_port)

mkdir certs
cd certs
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
# cert NAME SUBJECT CA [EXTENSIONS]
cert() {
    key "$1"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf '%s\n' "${4:-extendedKeyUsage=clientAuth}" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
for ca in ca rogue-ca; do
    key $ca
    openssl req -x509 -new -key $ca.key -subj "/CN=p11kms test $ca" -days 2 -out $ca.pem 2>/dev/null
done
cert server "/CN=localhost" ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
cert admin "/O=p11kms test/CN=p11kmst-admin" ca
cert app "/O=p11kms test/CN=p11kmst-app" ca
cert rogue "/O=p11kms test/CN=p11kmst-admin" rogue-ca # the admin's subject, another CA
# The admin's subject from the right CA, issued for servers only; and with no key usage limit.
cert server-only "/O=p11kms test/CN=p11kmst-admin" ca "extendedKeyUsage=serverAuth"
cert any-purpose "/O=p11kms test/CN=p11kmst-admin" ca "basicConstraints=CA:FALSE"
cd ..

cat >policy.yaml <<'POLICY'
version: 1
global:
  - sid: admin-global
    effect: allow
    principals: ["x509:CN=p11kmst-admin,O=p11kms test"]
    actions: [create-key, list-keys, list-aliases]
statements:
  - sid: admin-manage
    effect: allow
    principals: ["x509:CN=p11kmst-admin,O=p11kms test"]
    keys: ["*"]
    actions: [describe-key, disable-key, enable-key, create-alias]
  - sid: app-use
    effect: allow
    principals: ["x509:CN=p11kmst-app,O=p11kms test"]
    keys: ["alias/app-*"]
    actions: [encrypt, decrypt]
POLICY
sed "s|^policy: none|policy: $P11KMS_TEST_ROOT/policy.yaml|" p11kms.yaml >daemon.yaml
daemon_start daemon.log --config daemon.yaml --socket "$sock" --listen-tls "127.0.0.1:$port" \
    --tls-cert certs/server.pem --tls-key certs/server.key --tls-client-ca certs/ca.pem \
    --max-connections-per-ip 8

if "$PY" "$P11KMS_SRCDIR/tests/daemon-tls.py" "$port" "$P11KMS_TEST_ROOT/certs" 8; then
    pass "daemon-tls.py"
else
    fail "daemon-tls.py"
fi
grep -q "principal=x509:CN=p11kmst-app,O=p11kms%20test op=Encrypt .*decision=allowed" daemon.log &&
    pass "the log names the certificate's subject" || fail "log: $(grep Encrypt daemon.log | head -2)"
grep -q "decision=unauthenticated error=MissingAuthenticationTokenException" daemon.log &&
    pass "unauthenticated requests are logged as such" || fail "no unauthenticated line"
grep -q "client certificate refused" daemon.log && pass "the rogue certificate's refusal is logged" ||
    fail "no refusal line for the rogue certificate"
grep -q "at most 256 connections, 8 per client address" daemon.log &&
    pass "the start names the per-address limit" || fail "$(grep 'listening on' daemon.log)"
daemon_stop

# A per-address limit above the listener's, or not a number, is refused before anything starts.
for bad in "--max-connections 10 --max-connections-per-ip 11" "--max-connections-per-ip x"; do
    # shellcheck disable=SC2086 # two options in one word on purpose
    if "$P11KMSD" --config daemon.yaml $bad --check-config >bad.out 2>&1; then
        fail "p11kmsd $bad accepted"
    elif grep -q "max-connections-per-ip" bad.out; then
        pass "p11kmsd $bad refused: $(head -1 bad.out)"
    else
        fail "p11kmsd $bad: $(cat bad.out)"
    fi
done
daemon_finish
