#!/bin/sh
# Group commit: records of concurrent requests share a batch (one seal, one fsync), and
# audit.sync-delay-ms bounds how long a batch waits for more. 4 threads x 40 requests with a
# 20 ms delay must give far fewer seals than records; every record is sealed and the log verifies.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
cd "$P11KMS_TEST_ROOT"
LOADER="$P11KMS_BUILDDIR/tests/audit-loader"
[ -x "$LOADER" ] || { echo "missing $LOADER (make check builds it)" >&2; exit 99; }
log="$P11KMS_TEST_ROOT/audit.log"
cat >>"$P11KMS_CONFIG" <<CONF
audit:
  file: $log
  sync-delay-ms: 20
CONF

expect_ok "create a key" create-key
key=$(jq -r .KeyMetadata.KeyId out.json)
start=$(date +%s)
"$LOADER" "$P11KMS_CONFIG" "$key" 4 40 >load.out 2>load.err || fail "loader: $(cat load.err)"
took=$(($(date +%s) - start))
acked=$(grep -c '^ACK ' load.out)
[ "$acked" -eq 160 ] && pass "160 requests answered" || fail "$acked of 160 answered"
records=$(grep -c '"seq":' "$log")
seals=$(grep -c '^{"seal":' "$log")
echo "records $records, seals $seals, $took s"
# 161 records (with CreateKey); one seal per record would be 161 seals.
[ "$records" -eq 161 ] && pass "one record per request" || fail "$records records"
[ "$seals" -le $((records / 2)) ] && pass "batches are shared: $seals seals for $records records" ||
    fail "$seals seals for $records records: no group commit"
# A batch waits at most the delay (plus the write): 160 requests in 4 threads, 40 batches at
# most 20 ms each, cannot take long.
[ "$took" -le 30 ] && pass "the delay is bounded ($took s)" || fail "took $took s"
expect_ok "the log verifies" audit verify "$log"
cli_finish
