#!/bin/sh
# p11kms CLI: the files it reads. The PIN file must be a regular file owned by the user (or root)
# with no group/other access (--insecure-pin-file relaxes that for development, loudly); nothing
# that is not a regular file is ever opened in a way that blocks or sent to the token; the
# configuration must not be writable by group or others; keys.lock-file must be absolute.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
command -v timeout >/dev/null 2>&1 || { echo "timeout not found" >&2; exit 99; }
command -v mkfifo >/dev/null 2>&1 || { echo "mkfifo not found" >&2; exit 99; }

# with_pin SOURCE: a configuration (mode 0600) like the test's, reading the PIN from SOURCE.
with_pin() {
    sed "s|^  pin-source: .*|  pin-source: \"file:$1\"|" "$P11KMS_CONFIG" >pin-conf.yaml
    chmod 600 pin-conf.yaml
}

# pin_refused DESCRIPTION NEEDLE: list-keys must fail at once with PinError naming NEEDLE.
pin_refused() {
    if timeout 20 "$P11KMS" --config pin-conf.yaml list-keys >out.json 2>err.all; then
        status=0
    else
        status=$?
    fi
    if [ "$status" -eq 124 ]; then
        fail "$1: p11kms blocked (killed after 20 s)"
    elif [ "$status" -ne 21 ] || ! grep -q "^p11kms: PinError: .*$2" err.all; then
        fail "$1: want exit 21 PinError naming '$2', got exit $status: $(cat err.all)"
    else
        pass "$1: $(grep '^p11kms: PinError' err.all)"
    fi
}

pin_value=$(head -n 1 "$P11KMS_TEST_PIN_FILE")
dir=$(pwd)

echo "== PIN file modes"
for mode in 0644 0640 0604 0660 0606 0700; do
    printf '%s\n' "$pin_value" >"pin-$mode"
    chmod "$mode" "pin-$mode"
    with_pin "$dir/pin-$mode"
    if [ "$mode" = 0700 ]; then
        expect_ok "PIN file of mode 0700 is accepted" --config pin-conf.yaml list-keys
    else
        pin_refused "PIN file of mode $mode" "$dir/pin-$mode has mode $mode"
    fi
done
printf '%s\n' "$pin_value" >pin-ok
chmod 600 pin-ok
with_pin "$dir/pin-ok"
expect_ok "PIN file of mode 0600 is accepted" --config pin-conf.yaml list-keys
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
    cp pin-ok pin-nobody
    chown nobody pin-nobody
    with_pin "$dir/pin-nobody"
    pin_refused "PIN file owned by another user" "owned by uid $(id -u nobody)"
fi

echo "== --insecure-pin-file (development only) accepts the mode, loudly"
with_pin "$dir/pin-0644"
p11kms --insecure-pin-file --config pin-conf.yaml list-keys
if [ "$status" -eq 0 ] && grep -q "^p11kms: WARNING: PIN file $dir/pin-0644 has mode 0644" err.all
then
    pass "--insecure-pin-file: accepted with a warning"
else
    fail "--insecure-pin-file: exit $status, stderr: $(cat err.all)"
fi
sed 's|^  pin-source: .*|&\n  insecure-pin-file: true|' pin-conf.yaml >pin-conf2.yaml
chmod 600 pin-conf2.yaml
p11kms --config pin-conf2.yaml list-keys
if [ "$status" -eq 0 ] && grep -q "^p11kms: WARNING: PIN file .* has mode 0644" err.all; then
    pass "token.insecure-pin-file: true accepted with a warning"
else
    fail "token.insecure-pin-file: exit $status, stderr: $(cat err.all)"
fi

echo "== nothing but a regular file is sent to the token, and no open blocks"
mkfifo pin-fifo
with_pin "$dir/pin-fifo"
pin_refused "a FIFO as PIN file" "pin-fifo is not a regular file"
with_pin /dev/urandom
pin_refused "/dev/urandom as PIN file" "/dev/urandom is not a regular file"
mkdir -p pin-dir
with_pin "$dir/pin-dir"
pin_refused "a directory as PIN file" "pin-dir is not a regular file"
# The token still accepts the right PIN: no try was lost to the refused files.
with_pin "$dir/pin-ok"
expect_ok "the PIN still works after the refused files" --config pin-conf.yaml list-keys

echo "== configuration file"
cp pin-conf.yaml conf-gw.yaml
chmod 664 conf-gw.yaml
expect_fail 19 ConfigurationError --config conf-gw.yaml list-keys
check "the message names the file and its mode" grep -q "conf-gw.yaml: mode 0664" err.txt
chmod 646 conf-gw.yaml
expect_fail 19 ConfigurationError --config conf-gw.yaml list-keys
check "world-writable: the message names the mode" grep -q "mode 0646" err.txt
chmod 644 conf-gw.yaml
expect_ok "mode 0644 is accepted" --config conf-gw.yaml list-keys
mkfifo conf-fifo.yaml
if timeout 20 "$P11KMS" --config conf-fifo.yaml list-keys >out.json 2>err.txt; then status=0; else status=$?; fi
if [ "$status" -eq 19 ] && grep -q "not a regular file" err.txt; then
    pass "a FIFO as configuration is refused without blocking"
else
    fail "a FIFO as configuration: exit $status: $(cat err.txt)"
fi
sed "s|^policy: .*|policy: $dir/policy-fifo|" pin-conf.yaml >conf-pol.yaml
chmod 600 conf-pol.yaml
mkfifo policy-fifo
if timeout 20 "$P11KMS" --config conf-pol.yaml list-keys >out.json 2>err.txt; then status=0; else status=$?; fi
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && grep -q "not a regular file" err.txt; then
    pass "a FIFO as policy file is refused without blocking"
else
    fail "a FIFO as policy file: exit $status: $(cat err.txt)"
fi

echo "== keys.lock-file must be absolute"
sed "s|^  lock-file: .*|  lock-file: relative.lock|" pin-conf.yaml >conf-lock.yaml
chmod 600 conf-lock.yaml
expect_fail 19 ConfigurationError --config conf-lock.yaml list-keys
check "the message says why" grep -q "lock-file must be an absolute path" err.txt
check "no relative lock file was created" test ! -e relative.lock

cli_finish
