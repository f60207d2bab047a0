#!/bin/sh
# Audit log under load: rotation by size keeps one chain across files (the set verifies whole,
# a missing file is found); kill -9 under load leaves a log that verifies, in which every
# request answered before the kill has its sealed record; the next writer carries on the chain.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
cd "$P11KMS_TEST_ROOT"
LOADER="$P11KMS_BUILDDIR/tests/audit-loader"
[ -x "$LOADER" ] || { echo "missing $LOADER (make check builds it)" >&2; exit 99; }
log="$P11KMS_TEST_ROOT/audit.log"
cat >>"$P11KMS_CONFIG" <<CONF
audit:
  file: $log
  max-size: 65536
  checkpoint-seconds: 1
CONF

expect_ok "create a key" create-key
key=$(jq -r .KeyMetadata.KeyId out.json)

# Every request id the loader acknowledged must be in a sealed record of the set.
acked_are_sealed() {
    grep '^ACK ' "$1" | cut -d' ' -f2 | sort >acked.txt
    cat audit.log.2* audit.log 2>/dev/null | awk '
        /^\{"seal":/ { for (i = 0; i < n; i++) print pending[i]; n = 0; next }
        { if (match($0, /"requestID":"[^"]*"/)) pending[n++] = substr($0, RSTART + 13, RLENGTH - 14) }
    ' | sort >sealed.txt
    missing=$(comm -23 acked.txt sealed.txt | wc -l)
    total=$(wc -l <acked.txt)
    if [ "$total" -gt 0 ] && [ "$missing" -eq 0 ]; then
        pass "$2: all $total acknowledged requests have a sealed record"
    else
        fail "$2: $missing of $total acknowledged requests have no sealed record"
    fi
}

echo "== rotation by size: one chain across files"
"$LOADER" "$P11KMS_CONFIG" "$key" 2 150 >load1.txt 2>load1.err ||
    fail "loader run 1: $(cat load1.err)"
files=$(ls audit.log.2* 2>/dev/null | wc -l)
if [ "$files" -ge 2 ]; then pass "the log rotated ($files rotated files)"; else fail "no rotation ($files)"; fi
expect_ok "the whole set verifies" audit verify audit.log audit.log.2*
grep -q "^valid: 30[0-9] records in" out.json && pass "verify counts every record" ||
    fail "verify summary: $(cat out.json)"
second=$(ls audit.log.2* | sed -n 2p)
set -- $(ls audit.log.2* | grep -v "^$second\$")
p11kms audit verify audit.log "$@"
if [ "$status" -eq 5 ] && grep -q "^INVALID .*missing (deleted)" out.json &&
    grep -q "InvalidCiphertextException" err.txt; then
    pass "a missing middle file is named as deleted records (exit 5)"
else
    fail "missing file: exit $status: $(cat out.json err.txt)"
fi
acked_are_sealed load1.txt "rotation run"

echo "== kill -9 under load"
"$LOADER" "$P11KMS_CONFIG" "$key" 4 100000 >load2.txt 2>load2.err &
pid=$!
i=0
answered() { grep -c '^ACK' load2.txt 2>/dev/null || true; }
while [ "$(answered)" -lt 200 ] && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -9 $pid
wait $pid 2>/dev/null || true
acked=$(answered)
[ "$acked" -ge 200 ] && pass "load was running when killed ($acked answered)" ||
    fail "load too slow ($acked answered)"
# A kill between a rotation's rename and the new file's creation leaves no audit.log: a state a
# crash may leave, which the next writer repairs (below). Verify the files that exist.
expect_ok "the killed writer's log verifies" audit verify $(ls audit.log audit.log.2* 2>/dev/null)
acked_are_sealed load2.txt "after kill -9"

echo "== the next writer carries on the chain"
"$LOADER" "$P11KMS_CONFIG" "$key" 1 20 >load3.txt 2>load3.err || fail "loader run 3"
expect_ok "the log verifies after the restart" audit verify audit.log audit.log.2*
acked_are_sealed load3.txt "after restart"

cli_finish
