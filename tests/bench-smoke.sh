#!/bin/sh
# The benchmark tool works: a smoke pass (a few operations per figure, no timing judged) exits 0
# and writes a complete JSON result file, and the result checker refuses incomplete files.
set -eu
bench="$P11KMS_BUILDDIR/tests/bench/p11kms-bench"
[ -x "$bench" ] || {
    echo "bench-smoke: $bench is not built" >&2
    exit 99
}
fail() {
    echo "bench-smoke: $*" >&2
    exit 1
}

"$bench" --help | grep -q -- '--duration' || fail "--help does not describe the options"
if "$bench" --rounds 0 >/dev/null 2>&1; then fail "--rounds 0 accepted"; fi
if "$bench" --no-such-option >/dev/null 2>&1; then fail "an unknown option accepted"; fi

"$bench" --smoke --json "$P11KMS_TEST_ROOT/bench.json" >smoke.out || fail "smoke run failed"
# Every figure has its line in the table, the baselines on the token object (-t) and the cold key
# (9) included, and the key cache mode in force is stated.
for id in 1a 1a-t 1b 1b-t 2 2-t 3 3-t 4 5 5-b 6 7 8a 8b 9; do
    grep -qE "^$id +[A-Z]" smoke.out || fail "no table line for figure $id"
done
grep -q "^p11kms key cache in force: session-copy" smoke.out || fail "key cache mode not stated"
"$bench" --check-json "$P11KMS_TEST_ROOT/bench.json" || fail "smoke run wrote an incomplete file"

# The checker must refuse a truncated file and a run that lacks figures it claims to have.
head -c 200 bench.json >truncated.json
if "$bench" --check-json truncated.json 2>/dev/null; then fail "truncated JSON accepted"; fi
"$bench" --smoke --only 6 --json only6.json >/dev/null || fail "smoke run of figure 6 failed"
"$bench" --check-json only6.json || fail "a run of figure 6 alone refused"
sed 's/"only": *"6"/"only": null/' only6.json >claims-all.json
cmp -s only6.json claims-all.json && fail "could not rewrite the 'only' setting"
if "$bench" --check-json claims-all.json 2>/dev/null; then fail "missing figures accepted"; fi
# The p11kmsd figure: the daemon starts on the token, answers over its socket, stops on SIGTERM.
"$bench" --daemon --smoke >daemon.out || fail "daemon figure failed"
for conns in 1 4 16; do
    grep -qE "^ +$conns +[0-9]+/s +[0-9]+/s +[0-9.]+x" daemon.out || fail "daemon figure: no row for $conns"
done
# ... and the audited p11kmsd against the plain one at 4 connections (issue 11's daemon figure).
sed -n '/^daemon-audit:/,$p' daemon.out | grep -qE "^ +4 +[0-9]+/s +[0-9]+/s +[0-9.]+x .*goal >= 0.90x" ||
    fail "daemon figure: no audit on/off row"
echo "bench-smoke: ok"
