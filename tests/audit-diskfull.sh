#!/bin/sh
# Audit log on a full disk with audit.on-failure: refuse (the default): once the log cannot grow,
# requests are refused with KMSInternalException, every request answered before has its sealed
# record, and the log still verifies. Mounts a small tmpfs: needs root (CI runs as root); an
# unusable mount is a hard error, never a skip.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
cd "$P11KMS_TEST_ROOT"
LOADER="$P11KMS_BUILDDIR/tests/audit-loader"
[ -x "$LOADER" ] || { echo "missing $LOADER (make check builds it)" >&2; exit 99; }
mkdir -p small
mount -t tmpfs -o size=96k,mode=0700 p11kms-audit-test "$P11KMS_TEST_ROOT/small" ||
    { echo "cannot mount a tmpfs (the disk-full test needs root)" >&2; exit 99; }
trap 'umount "$P11KMS_TEST_ROOT/small" 2>/dev/null || true' EXIT
log="$P11KMS_TEST_ROOT/small/audit.log"
cat >>"$P11KMS_CONFIG" <<CONF
audit:
  file: $log
  max-size: 0
CONF

expect_ok "create a key" create-key
key=$(jq -r .KeyMetadata.KeyId out.json)

"$LOADER" "$P11KMS_CONFIG" "$key" 2 400 >load.txt 2>load.err || fail "loader: $(cat load.err)"
acked=$(grep -c '^ACK' load.txt || true)
refused=$(grep -c '^REFUSED .* KMSInternalException .*refused (audit.on-failure: refuse)' load.txt || true)
other=$(grep '^REFUSED' load.txt | grep -vc 'KMSInternalException' || true)
[ "$acked" -gt 20 ] && pass "requests were answered while there was room ($acked)" ||
    fail "only $acked answered: $(head -3 load.txt)"
[ "$refused" -gt 0 ] && pass "once the disk is full, requests are refused ($refused)" ||
    fail "no refusal: $(tail -3 load.txt)"
[ "$other" -eq 0 ] && pass "refusals are KMSInternalException" || fail "$other other refusals"
grep -q "No space left on device" load.txt && pass "the refusal says why" ||
    fail "refusal message: $(grep -m1 REFUSED load.txt)"

grep '^ACK ' load.txt | cut -d' ' -f2 | sort >acked.txt
awk '/^\{"seal":/ { for (i = 0; i < n; i++) print pending[i]; n = 0; next }
     { if (match($0, /"requestID":"[^"]*"/)) pending[n++] = substr($0, RSTART + 13, RLENGTH - 14) }' \
    "$log" | grep "^load-" | sort >sealed.txt
missing=$(comm -23 acked.txt sealed.txt | wc -l)
[ "$missing" -eq 0 ] && pass "no acknowledged record was lost" ||
    fail "$missing acknowledged requests have no sealed record"
extra=$(comm -13 acked.txt sealed.txt | wc -l)
[ "$extra" -eq 0 ] && pass "no record for a refused request" || fail "$extra records of refused requests"
expect_ok "the full log verifies" audit verify "$log"

cli_finish
