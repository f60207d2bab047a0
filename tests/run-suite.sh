#!/bin/sh
# The whole test suite: installs missing packages, builds out of tree and runs `make check`.
#   tests/run-suite.sh               normal build (-Werror), make check, make distcheck (unit tests)
#   tests/run-suite.sh --sanitizers  ASan+UBSan build, make check
#   tests/run-suite.sh --valgrind    normal build, the library tests under valgrind
#   tests/run-suite.sh --fuzz        clang libFuzzer build (ASan+UBSan), make fuzz: every fuzz
#                                    target for FUZZ_SECONDS (default 60) from its seed corpus
#   tests/run-suite.sh --clang       clang build (-Werror) of everything, the unit tests
#   tests/run-suite.sh --static-analysis   scan-build-14 over a full clang build: no report allowed
#   tests/run-suite.sh --format      clang-format-14 --dry-run --Werror over every .c and .h
# The build directory is build-check, build-asan, build-valgrind, build-fuzz, build-clang or
# build-scan under the source tree.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-normal}
sh "$src/tests/setup-debian.sh"

cd "$src"
# Formatting needs no build: every C file of the source tree, generated or build files excluded.
if [ "$mode" = --format ]; then
    command -v clang-format-14 >/dev/null 2>&1 || {
        echo "run-suite: clang-format-14 not found (apt-get install clang-format-14)" >&2
        exit 1
    }
    if [ -d .git ] || [ -f .git ]; then
        files=$(git ls-files '*.c' '*.h')
    else
        files=$(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print |
            grep -v '^\./config\.h$')
    fi
    # shellcheck disable=SC2086
    clang-format-14 --dry-run --Werror $files || {
        echo "run-suite: files not formatted (fix: clang-format-14 -i FILE...)" >&2
        exit 1
    }
    echo "clang-format: $(echo "$files" | wc -w) files formatted"
    exit 0
fi
[ -x configure ] || ./autogen.sh >/dev/null 2>&1
jobs=$(nproc 2>/dev/null || echo 2)
cc_env=
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
--clang)
    build=build-clang
    flags=
    cc_env=CC=clang
    ;;
--static-analysis)
    build=build-scan
    flags=
    ;;
*)
    echo "usage: $0 [--sanitizers|--valgrind|--fuzz|--clang|--static-analysis|--format]" >&2
    exit 2
    ;;
esac
mkdir -p "$build"
cd "$build"
if [ "$mode" = --static-analysis ]; then
    command -v scan-build-14 >/dev/null 2>&1 || {
        echo "run-suite: scan-build-14 not found (apt-get install clang-tools-14)" >&2
        exit 1
    }
    # A fresh full build every time: scan-build only analyses what it compiles. --status-bugs
    # fails the run on any report; the reports stay in build-scan/reports.
    rm -rf reports
    [ ! -f Makefile ] || make distclean >/dev/null 2>&1 || true
    scan-build-14 --use-cc=clang ../configure --enable-strict >configure.out 2>&1 || {
        cat configure.out >&2
        exit 1
    }
    scan-build-14 --use-cc=clang --status-bugs -o reports make -j"$jobs" all >scan.out 2>&1 || {
        grep -E 'warning:|scan-build:' scan.out >&2
        exit 1
    }
    # The test programs (check_PROGRAMS), analysed too; TESTS= builds them without running.
    scan-build-14 --use-cc=clang --status-bugs -o reports make -j"$jobs" check TESTS= \
        >scan-tests.out 2>&1 || {
        grep -E 'warning:|scan-build:' scan-tests.out >&2
        exit 1
    }
    echo "scan-build: no reports"
    exit 0
fi
# shellcheck disable=SC2086
[ -f Makefile ] || ../configure --enable-strict $flags $cc_env >configure.out 2>&1 || {
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
# The unit tests that need at most one token: enough to prove that a second compiler's build, or
# the distribution tarball, works; the normal and sanitizer builds run everything.
quick_tests="tests/format-buf-test tests/format-context-test tests/format-blob-test
  tests/format-vectors-test tests/format-escape-test tests/policy-yaml-doc-test
  tests/policy-glob-test tests/policy-decide-test tests/service-config-test
  tests/service-keymeta-test tests/daemon-sigv4-test tests/pkcs11-token-test
  tests/provider-lifecycle-test"
status=0
case "$mode" in
--valgrind) make memcheck || status=$? ;;
--clang) make -j"$jobs" check TESTS="$quick_tests" || status=$? ;;
*) make -j"$jobs" check || status=$? ;;
esac
if [ "$status" -ne 0 ]; then
    for f in $(find tests -name '*.log' ! -name test-suite.log); do
        if grep -q '^:test-result: FAIL\|^:test-result: ERROR' "${f%.log}.trs" 2>/dev/null; then
            echo "===== $f" >&2
            # The development-policy warning repeats at every open; it would crowd out the end.
            grep -v 'says "policy: none"' "$f" | tail -40 >&2
        fi
    done
    exit "$status"
fi
if [ "$mode" = normal ] && [ -z "${P11KMS_SKIP_DISTCHECK:-}" ]; then
    make -j"$jobs" distcheck TESTS="$quick_tests" >distcheck.out 2>&1 || {
        tail -60 distcheck.out >&2
        exit 1
    }
    echo "make distcheck: passed"
fi
