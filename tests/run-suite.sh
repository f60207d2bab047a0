#!/bin/sh
# The whole test suite: installs missing packages, builds out of tree and runs `make check`.
#   tests/run-suite.sh               normal build (-Werror), make check, make distcheck
#   tests/run-suite.sh --sanitizers  ASan+UBSan build, make check
#   tests/run-suite.sh --valgrind    normal build, the library tests under valgrind
#   tests/run-suite.sh --fuzz        clang libFuzzer build (ASan+UBSan), make fuzz: every fuzz
#                                    target for FUZZ_SECONDS (default 60) from its seed corpus
# The build directory is build-check, build-asan, build-valgrind or build-fuzz under the source
# tree.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-normal}
sh "$src/tests/setup-debian.sh"

cd "$src"
[ -x configure ] || ./autogen.sh >/dev/null 2>&1
jobs=$(nproc 2>/dev/null || echo 2)
case "$mode" in
normal)
    build=build-check
    flags=
    ;;
--sanitizers)
    build=build-asan
    flags=--enable-sanitizers
    ;;
--valgrind)
    build=build-valgrind
    flags=
    ;;
--fuzz)
    build=build-fuzz
    flags=--enable-fuzzing
    # libFuzzer needs clang; -O1 as libFuzzer recommends (the default -O2 finds less per second).
    CC=clang
    CFLAGS="-g -O1"
    export CC CFLAGS
    ;;
*)
    echo "usage: $0 [--sanitizers|--valgrind|--fuzz]" >&2
    exit 2
    ;;
esac
mkdir -p "$build"
cd "$build"
# shellcheck disable=SC2086
[ -f Makefile ] || ../configure --enable-strict $flags >configure.out 2>&1 || {
    cat configure.out >&2
    exit 1
}
if [ "$mode" = --fuzz ]; then
    # Builds what the fuzz targets need, then runs each one; a failing target keeps its input
    # under build-fuzz/tests/fuzz/run/NAME/artifacts/ (copy it into the seed corpus with the fix).
    make -j"$jobs" fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" >make-fuzz.out 2>&1 || {
        grep -E '^(PASS|FAIL): fuzz' make-fuzz.out
        tail -60 make-fuzz.out >&2
        exit 1
    }
    grep -E '^(PASS|FAIL): fuzz' make-fuzz.out
    exit 0
fi
make -j"$jobs" >make.out 2>&1 || {
    tail -50 make.out >&2
    exit 1
}
status=0
case "$mode" in
--valgrind) make memcheck || status=$? ;;
*) make -j"$jobs" check || status=$? ;;
esac
if [ "$status" -ne 0 ]; then
    for f in $(find tests -name '*.log' ! -name test-suite.log); do
        if grep -q '^:test-result: FAIL\|^:test-result: ERROR' "${f%.log}.trs" 2>/dev/null; then
            echo "===== $f" >&2
            tail -40 "$f" >&2
        fi
    done
    exit "$status"
fi
if [ "$mode" = normal ] && [ -z "${P11KMS_SKIP_DISTCHECK:-}" ]; then
    make -j"$jobs" distcheck >distcheck.out 2>&1 || {
        tail -60 distcheck.out >&2
        exit 1
    }
    echo "make distcheck: passed"
fi
