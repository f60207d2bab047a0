#!/bin/sh
# The capability check on a real token that cannot serve: openCryptoki's software token (swtok)
# as Debian 12 ships it (3.8.1) has no CKM_AES_GCM. `p11kms token info` must show the table
# with CKM_AES_GCM failing; every command, create-key included, must be refused with one stderr
# line naming the token, the mechanism and what to do; and nothing may be created on the token.
#
# openCryptoki has no per-user token: the slot list comes from the system daemon pkcsslotd (one
# per machine, started here if it is not running and stopped at the end only if this test
# started it), and swtok keeps its files in /var/lib/opencryptoki/swtok (any process that loads
# the module writes NVTOK.DAT there) and its state in /dev/shm/var.lib.opencryptoki.swtok.
# 3.8.1's PKCS_APP_STORE would redirect the directory but writes NVTOK.DAT and MK_SO to /
# instead (its data_store path stays empty), so it is not used. Instead the test re-runs itself
# in a private mount namespace (unshare --mount; root, as in CI) where a directory of its
# scratch dir is bind-mounted over /var/lib/opencryptoki and a fresh tmpfs over /dev/shm: the
# token it initialises (pkcsconf -I, SO PIN 87654321) is its own, and the machine's swtok, if
# anyone uses it, is neither read nor changed. What stays shared: pkcsslotd and its lock
# directory /var/lock/opencryptoki, where the TPM token's library (loaded for slot 0, which
# has no TPM here) makes tpm/$USER once.
#
# openCryptoki not installed: a hard error (exit 99) in CI (CI=true), a skip (77) elsewhere.
set -u
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

# missing WHAT: the test cannot run here.
missing() {
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $* (in CI a missing dependency is a failure; apt-get install opencryptoki)"
        exit 99
    fi
    echo "SKIP: $* (apt-get install opencryptoki, and run as root)"
    exit 77
}

# The tools are in /usr/sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"
PKCSCONF=$(command -v pkcsconf) || missing "pkcsconf not found: openCryptoki is not installed"
PKCSSLOTD=$(command -v pkcsslotd) || missing "pkcsslotd not found: openCryptoki is not installed"
# The module by path (Debian registers none with p11-kit); OPENCRYPTOKI_MODULE overrides.
ock_module=${OPENCRYPTOKI_MODULE:-}
if [ -z "$ock_module" ]; then
    for m in /usr/lib/*/pkcs11/libopencryptoki.so /usr/lib64/pkcs11/libopencryptoki.so \
        /usr/lib/pkcs11/libopencryptoki.so /usr/lib/*/opencryptoki/libopencryptoki.so.0 \
        /usr/lib64/opencryptoki/libopencryptoki.so.0; do
        [ -f "$m" ] && { ock_module=$m; break; }
    done
fi
[ -n "$ock_module" ] && [ -f "$ock_module" ] ||
    missing "libopencryptoki.so not found: openCryptoki is not installed"
[ -n "${PKCS11_TOOL:-}" ] && [ -x "$PKCS11_TOOL" ] ||
    { echo "pkcs11-tool not found (apt-get install opensc, then re-run configure)" >&2; exit 99; }
[ "$(id -u)" -eq 0 ] || missing "not root: pkcsslotd and the private mount namespace need root"
command -v unshare >/dev/null 2>&1 || missing "unshare not found (util-linux)"
if [ -z "${P11KMS_OCK_INNER:-}" ] && ! unshare --mount true 2>unshare.err; then
    missing "cannot make a private mount namespace: $(cat unshare.err)"
fi

datadir=/var/lib/opencryptoki
[ -d "$datadir/swtok" ] || missing "$datadir/swtok does not exist: openCryptoki is not installed"

if [ -z "${P11KMS_OCK_INNER:-}" ]; then
    # Outside the namespace: pkcsslotd is shared by the whole machine, so it must run here.
    pidfile=/var/run/pkcsslotd.pid
    started=
    # the pid of a live pkcsslotd (one that exited may linger as a zombie where no init reaps)
    slotd_pid() {
        p=$(cat "$pidfile" 2>/dev/null) || return 1
        [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pkcsslotd ] &&
            ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null && echo "$p"
    }
    if slotd_pid >/dev/null; then
        echo "== pkcsslotd is running (pid $(slotd_pid)): used, and left running"
    else
        # What /etc/init.d/pkcsslotd creates first (a fresh /run/lock lacks it).
        for d in /var/lock/opencryptoki /var/lock/opencryptoki/swtok; do
            [ -d "$d" ] || { mkdir -m 0770 "$d" && chgrp pkcs11 "$d"; } ||
                { echo "cannot create $d" >&2; exit 99; }
        done
        "$PKCSSLOTD" >slotd.log 2>&1 || { echo "pkcsslotd failed: $(cat slotd.log)" >&2; exit 99; }
        i=0
        while ! slotd_pid >/dev/null && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        started=$(slotd_pid) || { echo "pkcsslotd did not start: $(cat slotd.log)" >&2; exit 99; }
        echo "== started pkcsslotd (pid $started); stopped at the end"
    fi
    # stops pkcsslotd if this test started it (by its pid); status 1 if it does not stop
    stop_slotd() {
        [ -n "$started" ] || return 0
        kill "$started" 2>/dev/null
        i=0
        while slotd_pid >/dev/null && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if slotd_pid >/dev/null; then
            echo "FAIL: pkcsslotd (pid $started) did not stop"
            [ "${status:-0}" -ne 0 ] || status=1
        else
            # as /etc/init.d/pkcsslotd stop does: pkcsslotd leaves its pid file
            rm -f "$pidfile"
            echo "== stopped pkcsslotd (pid $started)"
        fi
        started=
    }
    trap 'stop_slotd; exit 1' HUP INT TERM
    # what the machine's openCryptoki holds, which the test must leave as it was
    machine_state() {
        ls -lA --time-style=full-iso "$datadir" "$datadir/swtok" "$datadir/swtok/TOK_OBJ"
        ls -lA --time-style=full-iso /dev/shm/*opencryptoki*
    }
    machine_state >machine-before.txt 2>&1
    if P11KMS_OCK_INNER=1 P11KMS_OCK_MODULE="$ock_module" unshare --mount --propagation private \
        /bin/sh "$0" "$@"; then
        status=0
    else
        status=$?
    fi
    machine_state >machine-after.txt 2>&1
    if cmp -s machine-before.txt machine-after.txt; then
        echo "ok: the machine's $datadir and /dev/shm are as they were"
    else
        echo "FAIL: the machine's $datadir or /dev/shm changed:"
        diff machine-before.txt machine-after.txt
        [ "$status" -ne 0 ] || status=1
    fi
    stop_slotd
    exit "$status"
fi

# Inside the private mount namespace: mounts made here vanish with it.
ock_module=$P11KMS_OCK_MODULE
# the directories the package makes (swtok/TOK_OBJ; tpm, where its library makes tpm/$USER)
mkdir -p ock/swtok/TOK_OBJ ock/tpm
touch ock/.p11kms-test
mount --bind "$(pwd)/ock" "$datadir" 2>mount.err ||
    missing "cannot bind-mount over $datadir: $(cat mount.err)"
mount -t tmpfs -o size=16m,mode=1777 tmpfs /dev/shm 2>mount.err ||
    missing "cannot mount a private /dev/shm: $(cat mount.err)"
check "the test's own directory is mounted on $datadir" test -f "$datadir/.p11kms-test"
check "the private /dev/shm is empty" test -z "$(ls -A /dev/shm)"

# The slot of the software token: its model is "IBM SoftTok" (3.8.1 on Debian: slot 3).
"$PKCSCONF" -t >tokens.txt 2>&1 || { echo "pkcsconf -t failed: $(cat tokens.txt)" >&2; exit 99; }
slot=$(awk '/^Token #[0-9]+ Info:/ { s = $2; sub(/#/, "", s) }
            /Model: IBM SoftTok/ { print s; exit }' tokens.txt)
[ -n "$slot" ] || { echo "no openCryptoki software token (IBM SoftTok) in: $(cat tokens.txt)" >&2; exit 99; }
echo "== openCryptoki software token in slot $slot"

label=p11kms-ock
# pkcsconf exits 0 even when a step fails: each step is checked on the token's flags.
printf '%s\n' "$label" | "$PKCSCONF" -I -c "$slot" -S 87654321 >init.log 2>&1
"$PKCSCONF" -u -c "$slot" -S 87654321 -n "$(cat "$P11KMS_TEST_PIN_FILE")" >>init.log 2>&1
"$PKCSCONF" -t -c "$slot" >token.txt 2>&1
check "pkcsconf initialised the token as \"$label\"" grep -q "Label: $label *\$" token.txt
check "pkcsconf set the user PIN" grep -q "USER_PIN_INITIALIZED" token.txt
grep -q "USER_PIN_INITIALIZED" token.txt || { cat init.log token.txt; cli_finish; exit 1; }

# ASan builds: openCryptoki's own leaks are suppressed (tests/lsan-opencryptoki.supp), which
# needs the slow unwinder to see through its frames; LeakSanitizer still reports p11kms's.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$P11KMS_SRCDIR/tests/lsan-opencryptoki.supp:print_suppressions=0"
export ASAN_OPTIONS LSAN_OPTIONS

# list_objects OUT: every object the user sees on the token, by pkcs11-tool.
list_objects() {
    "$PKCS11_TOOL" --module "$ock_module" --token-label "$label" --login \
        --pin "$(cat "$P11KMS_TEST_PIN_FILE")" --list-objects >"$1" 2>"$1.err"
}
check "pkcs11-tool logs in and lists the objects" list_objects objects-before.txt
# the files of the token objects (TOK_OBJ/OBJ.IDX lists them) before p11kms runs
ls -A ock/swtok/TOK_OBJ >files-before.txt

sed -e "s|^  module: .*|  module: $ock_module|" -e "s|^  uri: .*|  uri: \"pkcs11:token=$label\"|" \
    "$P11KMS_CONFIG" >ock.yaml
grep -q "pkcs11:token=$label" ock.yaml || { echo "config not rewritten" >&2; exit 99; }

echo "== p11kms token info shows the table: CKM_AES_GCM missing"
expect_ok "token info" --config ock.yaml token info
cp out.json token-info.json
jq_check "the token is the one initialised here" ".Token.Label == \"$label\""
jq_check "cannot serve" '.CanServe == false'
jq_check "CKM_AES_GCM fails: not offered" \
    '.Capabilities[] | select(.Check == "CKM_AES_GCM") | .Result == "fail" and (.Detail | test("not offered"))'
jq_check "the AES-GCM self-test fails" '.Capabilities[] | select(.Check == "AES-GCM self-test") | .Result == "fail"'
jq_check "CKM_AES_KEY_GEN passes" '.Capabilities[] | select(.Check == "CKM_AES_KEY_GEN") | .Result == "pass"'
jq_check "CKM_SHA256_HMAC passes" '.Capabilities[] | select(.Check == "CKM_SHA256_HMAC") | .Result == "pass"'
expect_ok "token info --output text" --config ock.yaml token info --output text
check "the text table lists CKM_AES_GCM" grep -q "CKM_AES_GCM" out.json

echo "== opening the service is refused, naming the token, the mechanism and what to do"
expect_fail 8 UnsupportedOperationException --config ock.yaml list-keys
check "the refusal names the token" grep -q "token \"$label\" (module $ock_module)" err.txt
check "the refusal names the mechanism" grep -q 'CKM_AES_GCM: not offered (CKR_MECHANISM_INVALID)' err.txt
check "the refusal says what to do" grep -q 'use a token that offers it' err.txt
expect_fail 8 UnsupportedOperationException --config ock.yaml create-key --description never
check "create-key: the same refusal" grep -q "token \"$label\".*CKM_AES_GCM: not offered" err.txt

echo "== nothing was created on the token"
check "pkcs11-tool lists the objects again" list_objects objects-after.txt
check "no object on the token" test ! -s objects-after.txt
check "the same objects as before p11kms ran" cmp -s objects-before.txt objects-after.txt
ls -A ock/swtok/TOK_OBJ >files-after.txt
check "no token object file was written" cmp -s files-before.txt files-after.txt
cli_finish
