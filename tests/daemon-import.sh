#!/bin/sh
# p11kmsd: imported key material (BYOK) over the KMS API with boto3 (tests/daemon-import.py).
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
"$PY" -c 'import cryptography' 2>/dev/null ||
    { echo "cryptography not found for $PY (apt-get install python3-cryptography)" >&2; exit 99; }
sock="$P11KMS_TEST_ROOT/p11kmsd.sock"
port=$(free_port)
daemon_start daemon.log --socket "$sock" --listen-http "127.0.0.1:$port" --threads 2
if "$PY" "$P11KMS_SRCDIR/tests/daemon-import.py" "http://127.0.0.1:$port"; then
    pass "daemon-import.py"
else
    fail "daemon-import.py"
fi
grep -q "op=ImportKeyMaterial .*decision=allowed" daemon.log && pass "imports are logged" ||
    fail "no ImportKeyMaterial log line"
daemon_stop
daemon_finish
