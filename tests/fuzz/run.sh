#!/bin/sh
# Runs one libFuzzer program (tests/fuzz/fuzz-NAME, built by `make fuzz`) for SECONDS from its
# seed corpus, in the build directory. Writes tests/fuzz/run/NAME.log and an automake-style
# tests/fuzz/run/NAME.trs, so that CI counts each target as one test result.
#   usage: run.sh NAME SECONDS      (P11KMS_SRCDIR: the source tree)
set -u
name=$1
seconds=$2
src=${P11KMS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
case "$name" in
policy) seeds=$src/tests/policy-fuzz-corpus ;;
*) seeds=$src/tests/fuzz/corpus/$name ;;
esac
prog=tests/fuzz/fuzz-$name
out=tests/fuzz/run/$name
rm -rf "$out" "$out.log" "$out.trs"
mkdir -p "$out/corpus" "$out/artifacts"
# libFuzzer writes new inputs into the first corpus directory: a copy, never the repository.
cp "$seeds"/* "$out/corpus/"
# -timeout: an input that takes this long is a finding (a parser must stay fast);
# -rss_limit_mb: so does one that needs this much memory.
"./$prog" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$out/corpus" >"$out.log" 2>&1
rc=$?
result=PASS
if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$out/artifacts")" ]; then
    result=FAIL
fi
printf ':test-result: %s\n:global-test-result: %s\n:recheck: no\n:copy-in-global-log: no\n' \
    "$result" "$result" >"$out.trs"
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out.log")
echo "$result: fuzz $name ($seconds s, ${runs:-?} inputs)"
if [ "$result" = FAIL ]; then
    tail -40 "$out.log" >&2
    ls "$out/artifacts" >&2
    exit 1
fi
