#!/bin/sh
# The README's walkthrough must keep working: run it with the CLI of this build, and check
# that its daemon part showed what the README says (run as root, as CI does, it also shows the
# administrator's refused Decrypt).
set -eu
out="$P11KMS_TEST_ROOT/walkthrough.out"
P11KMS_CLI="$P11KMS_BUILDDIR/p11kms" P11KMS_WALKTHROUGH_DIR="$P11KMS_TEST_ROOT/walkthrough" \
    bash "$P11KMS_SRCDIR/tests/walkthrough.sh" >"$out" 2>&1 || {
    cat "$out"
    exit 1
}
cat "$out"
failed=0
expect() {
    if grep -q -- "$1" "$out"; then echo "ok: $2"; else echo "FAIL: $2"; failed=1; fi
}
expect '-> p11kms: AccessDeniedException: .* is not allowed to explain-policy' \
    "explaining for others is refused to a non-administrator"
expect '\$ aws kms --endpoint-url http://127.0.0.1:[0-9]* decrypt ' "aws kms decrypts through p11kmsd"
expect 'the first instance key decrypts (32 bytes)' "the RDS service's decrypt gave 32 bytes"
expect '-> An error occurred (AccessDeniedException)' "the service may not disable its key"
expect 'p11kms as a client of p11kmsd' "p11kms --endpoint works for the service"
if [ "$(id -u)" -eq 0 ]; then
    expect '-> p11kms: AccessDeniedException: .*kms:Decrypt' "the administrator's Decrypt is refused"
    expect 'principal=unix:user:p11kms-demo-admin op=Decrypt .*decision=denied' \
        "the refusal is in the daemon's log"
fi
expect 'p11kmsd stopped on SIGTERM' "p11kmsd stopped cleanly"
exit $failed
