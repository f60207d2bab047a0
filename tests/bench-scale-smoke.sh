#!/bin/sh
# The scale figures of the benchmark tool run (a few keys, no timing judged): every figure is
# printed for SQLite, and for PostgreSQL when run as the .pgtest variant (tests/lib/with-postgres.sh);
# as the .nsstest variant the scale tokens are NSS softokn databases (--token nss).
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
token=softhsm
kind=SoftHSM
if [ "${P11KMS_TEST_TOKEN:-softhsm}" = nss ]; then
    token=nss
    kind="NSS softokn"
fi
if [ "${P11KMS_TEST_STORE:-sqlite}" = postgresql ]; then
    stores="sqlite postgresql"
    "$bench" --scale 8 --smoke --token "$token" --pg "$P11KMS_TEST_STORE_SPEC" >scale.out ||
        fail "scale run failed"
else
    "$bench" --scale 8 --smoke --token "$token" >scale.out || fail "scale run failed"
fi
cat scale.out
if "$bench" --scale 2 >/dev/null 2>&1; then fail "--scale 2 accepted"; fi
for store in $stores; do
    sed -n "/^scale, store $store, 8 keys/,/^\$/p" scale.out >"$store.out"
    for line in "($kind)" "     8-8 " "maintain at 2 keys" "maintain at 4 keys" \
        "maintain at 8 keys" "open: p11kms_open+close" "list-keys of 8 keys" \
        "first use of each key" "encrypt 32 B, random key of 8" "a random session copy of 8"; do
        grep -qF -- "$line" "$store.out" || fail "store $store: no line '$line'"
    done
done
if "$bench" --token nss >/dev/null 2>&1; then fail "--token nss accepted without --scale"; fi
echo "bench-scale-smoke: ok ($stores on $kind)"
