# Sourced by the tests/cli-*.sh scripts (not a test itself): runs the p11kms binary of the
# build and checks its exit status, its single stderr line and its JSON output.
# Every check prints what it checks; cli_finish exits 1 if any failed.
P11KMS="$P11KMS_BUILDDIR/p11kms"
[ -x "$P11KMS" ] || { echo "missing $P11KMS (run make)" >&2; exit 99; }
command -v jq >/dev/null 2>&1 || { echo "jq not found (apt-get install jq)" >&2; exit 99; }
command -v base64 >/dev/null 2>&1 || { echo "base64 not found" >&2; exit 99; }

cli_checks=0
cli_failures=0

pass() {
    cli_checks=$((cli_checks + 1))
    echo "ok: $*"
}

fail() {
    cli_checks=$((cli_checks + 1))
    cli_failures=$((cli_failures + 1))
    echo "FAIL: $*"
}

# check DESCRIPTION COMMAND...: COMMAND must succeed.
check() {
    desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# flip_byte IN OUT OFFSET [MASK]: OUT is a copy of IN with the byte at OFFSET (from 0; negative
# counts from the end, -1 the last byte) XORed with MASK (default 1). A tamper test must change
# the byte: writing a fixed value instead leaves the file as it was whenever the byte already had
# that value (1 run in 256 with random material).
flip_byte() {
    flip_size=$(wc -c <"$1")
    flip_at=$3
    [ "$flip_at" -ge 0 ] || flip_at=$((flip_size + flip_at))
    flip_old=$(od -An -tu1 -j "$flip_at" -N1 "$1" | tr -d ' \n')
    cp "$1" "$2"
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' "$((flip_old ^ ${4:-1}))")" |
        dd of="$2" bs=1 seek="$flip_at" conv=notrunc 2>/dev/null
    if [ "$(wc -c <"$2")" -ne "$flip_size" ] || cmp -s "$1" "$2"; then
        echo "flip_byte $*: the copy is not IN with one byte changed" >&2
        exit 99
    fi
}

# p11kms ARGS...: runs p11kms; stdout in out.json, stderr in err.txt, status in $status.
# The test configuration says "policy: none", for which the library warns on stderr at every
# start (on purpose: it is for development only). That warning is moved to warn.txt, so that
# err.txt holds what the CLI itself printed.
p11kms() {
    if "$P11KMS" "$@" >out.json 2>err.all; then status=0; else status=$?; fi
    grep '^p11kms: WARNING: .* says "policy: none"' err.all >warn.txt || true
    grep -v '^p11kms: WARNING: .* says "policy: none"' err.all >err.txt || true
}

# expect_ok DESCRIPTION ARGS...: p11kms ARGS must exit 0 with nothing on stderr.
expect_ok() {
    desc=$1
    shift
    p11kms "$@"
    if [ "$status" -eq 0 ] && [ ! -s err.txt ]; then
        pass "$desc"
    else
        fail "$desc: exit $status, stderr: $(cat err.txt)"
    fi
}

# expect_fail CODE CLASS ARGS...: p11kms ARGS must exit CODE and print exactly one stderr line
# "p11kms: CLASS: message", and nothing on stdout.
expect_fail() {
    code=$1
    class=$2
    shift 2
    p11kms "$@"
    lines=$(wc -l <err.txt)
    if [ "$status" -ne "$code" ]; then
        fail "p11kms $* -> exit $code $class (got exit $status: $(cat err.txt))"
    elif [ "$lines" -ne 1 ]; then
        fail "p11kms $* -> one stderr line (got $lines: $(cat err.txt))"
    elif ! grep -Eq "^p11kms: $class: .+" err.txt; then
        fail "p11kms $* -> '$class' on stderr (got: $(cat err.txt))"
    elif [ -s out.json ]; then
        fail "p11kms $* -> nothing on stdout (got: $(cat out.json))"
    else
        pass "p11kms $* -> exit $code $class"
    fi
}

# jq_check DESCRIPTION FILTER [FILE]: jq -e FILTER must hold on FILE (default out.json).
jq_check() {
    if jq -e "$2" "${3:-out.json}" >/dev/null 2>&1; then
        pass "$1"
    else
        fail "$1: jq '$2' on $(cat "${3:-out.json}")"
    fi
}

# field NAME [FILE]: a field of the last JSON output, raw.
field() {
    jq -r "$1" "${2:-out.json}"
}

# b64_to_file FILTER FILE: decodes a base64 field of out.json into FILE.
b64_to_file() {
    jq -r "$1" out.json | base64 -d >"$2"
}

cli_finish() {
    echo "$cli_checks checks, $cli_failures failed"
    [ "$cli_failures" -eq 0 ]
}
