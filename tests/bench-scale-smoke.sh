#!/bin/sh
# The scale figures of the benchmark tool run (a few keys, no timing judged): every figure is
# printed for SQLite, and for PostgreSQL when run as the .pgtest variant (tests/lib/with-postgres.sh).
set -eu
bench="$P11KMS_BUILDDIR/tests/bench/p11kms-bench"
[ -x "$bench" ] || {
    echo "bench-scale-smoke: $bench is not built" >&2
    exit 99
}
fail() {
    echo "bench-scale-smoke: $*" >&2
    exit 1
}
stores=sqlite
if [ "${P11KMS_TEST_STORE:-sqlite}" = postgresql ]; then
    stores="sqlite postgresql"
    "$bench" --scale 8 --smoke --pg "$P11KMS_TEST_STORE_SPEC" >scale.out || fail "scale run failed"
else
    "$bench" --scale 8 --smoke >scale.out || fail "scale run failed"
fi
cat scale.out
if "$bench" --scale 2 >/dev/null 2>&1; then fail "--scale 2 accepted"; fi
for store in $stores; do
    sed -n "/^scale, store $store, 8 keys/,/^\$/p" scale.out >"$store.out"
    for line in "     8-8 " "maintain at 2 keys" "maintain at 4 keys" "maintain at 8 keys" \
        "open: p11kms_open+close" "list-keys of 8 keys" "first use of each key" \
        "encrypt 32 B, random key of 8"; do
        grep -qF -- "$line" "$store.out" || fail "store $store: no line '$line'"
    done
done
echo "bench-scale-smoke: ok ($stores)"
