#!/bin/sh
# p11kmsd and the audit trail: a request leaves exactly one record, whose requestID is the
# x-amzn-RequestId the daemon answered with and whose source is the caller as the kernel names
# it (Unix socket: the peer's pid and uid; TCP: its address and port), with the caller's names.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
sock="$P11KMS_TEST_ROOT/p11kmsd.sock"
port=$(free_port)
alog="$P11KMS_TEST_ROOT/audit.log"
cat >>"$P11KMS_CONFIG" <<CONF
audit:
  file: $alog
CONF

daemon_start daemon.log --socket "$sock" --listen-http "127.0.0.1:$port" --threads 2

# call.py TARGET BODY: one request over the Unix socket (unix) or TCP (tcp); prints the request
# id it got back, the caller's pid and, for TCP, its local port.
cat >call.py <<'PY'
import http.client, json, os, socket, sys

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

kind, where, target, body = sys.argv[1:5]
if kind == "unix":
    conn = UnixConnection(where)
else:
    conn = http.client.HTTPConnection("127.0.0.1", int(where))
conn.request("POST", "/", body=body, headers={
    "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService." + target})
resp = conn.getresponse()
resp.read()
port = conn.sock.getsockname()[1] if kind == "tcp" else 0
print(resp.getheader("x-amzn-RequestId"), os.getpid(), port, resp.status)
PY

uid=$(id -u)
record_of() { # record_of REQUEST_ID: the records carrying it, one JSON object a line
    jq -c --arg id "$1" 'select(.requestID == $id)' "$alog"
}

echo "== Unix socket"
before=$(cat "$alog" 2>/dev/null | grep -c '"seq":' || true)
set -- $("$PY" call.py unix "$sock" GenerateRandom '{"NumberOfBytes": 16}')
rid=$1 pid=$2 status=$4
[ "$status" = 200 ] && pass "GenerateRandom over the socket answers 200" || fail "status $status"
after=$(grep -c '"seq":' "$alog")
[ $((after - before)) -eq 1 ] && pass "one request, one record" ||
    fail "$((after - before)) records for one request"
record_of "$rid" >rec.json
[ "$(wc -l <rec.json)" -eq 1 ] && pass "one record carries the answered request id $rid" ||
    fail "records with id $rid: $(cat rec.json)"
jq -e --arg src "unix pid=$pid uid=$uid" '.source == $src' rec.json >/dev/null &&
    pass "source is the peer's pid and uid" || fail "source: $(jq -r .source rec.json)"
jq -e --arg u "unix:uid:$uid" '.eventName == "GenerateRandom" and
    (.userIdentity.principals | index($u)) != null' rec.json >/dev/null &&
    pass "event name and the caller's unix names" || fail "record: $(cat rec.json)"

echo "== TCP (loopback), a refused request"
set -- $("$PY" call.py tcp "$port" Encrypt '{"KeyId": "alias/missing", "Plaintext": "aGk="}')
rid=$1 cport=$3 status=$4
[ "$status" = 400 ] && pass "Encrypt with a missing key answers 400" || fail "status $status"
record_of "$rid" >rec.json
[ "$(wc -l <rec.json)" -eq 1 ] && pass "the refusal has one record with its request id" ||
    fail "records with id $rid: $(cat rec.json)"
jq -e --arg src "tcp 127.0.0.1:$cport" '.source == $src and .errorCode == "NotFoundException"' \
    rec.json >/dev/null && pass "source is the peer's address:port, the error is recorded" ||
    fail "record: $(cat rec.json)"

daemon_stop
if "$P11KMS_BUILDDIR/p11kms" --config "$P11KMS_CONFIG" audit verify "$alog" >verify.out 2>&1; then
    pass "the daemon's log verifies"
else
    fail "audit verify: $(cat verify.out)"
fi
daemon_finish
