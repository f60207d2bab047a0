#!/bin/sh
# p11kms in client mode as different OS users over p11kmsd's Unix socket: the daemon runs as a
# service user that alone owns token, PIN and config; the CLI of each caller has no token and no
# PIN, and the daemon's policy decides by the caller's OS user. Needs root (creates the users
# p11kmsc-*), as CI runs.
set -eu
. "$P11KMS_SRCDIR/tests/daemon-lib.sh"
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "cli-remote-users: must run as root (creates OS users)" >&2; exit 99; }
for tool in useradd userdel setpriv; do
    command -v $tool >/dev/null 2>&1 || { echo "$tool not found" >&2; exit 99; }
done
users="p11kmsc-daemon p11kmsc-admin p11kmsc-svc p11kmsc-other"
remove_users() {
    for u in $users; do
        if id "$u" >/dev/null 2>&1; then userdel "$u" >/dev/null 2>&1 || true; fi
    done
}
cleanup() {
    if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    remove_users
}
trap cleanup EXIT
remove_users
for u in $users; do
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
done
root=$P11KMS_TEST_ROOT
cat >policy.yaml <<'POLICY'
version: 1
global:
  - sid: admin-global
    effect: allow
    principals: [unix:user:p11kmsc-admin]
    actions: [create-key, list-keys, list-aliases]
statements:
  - sid: admin-manage
    effect: allow
    principals: [unix:user:p11kmsc-admin]
    keys: ["*"]
    actions: [describe-key, enable-key, disable-key, create-alias]
  - sid: svc-use
    effect: allow
    principals: [unix:user:p11kmsc-svc]
    keys: ["alias/app-*"]
    actions: [encrypt, decrypt]
POLICY
sed "s|^policy: none|policy: $root/policy.yaml|" p11kms.yaml >daemon.yaml
mkdir run
chown -R p11kmsc-daemon: "$root"
chmod 600 daemon.yaml policy.yaml pin
chmod 711 "$root"
chmod 755 run
sock="$root/run/p11kmsd.sock"
# The service user runs the build's p11kmsd, the callers its p11kms.
. "$P11KMS_SRCDIR/tests/lib/grant-search.sh"
grant_search cli-remote-users "$(cd "$(dirname "$P11KMSD")" && pwd)" \
    "$(cd "$(dirname "$P11KMS")" && pwd)" "$root"
"$P11KMSD" --version >/dev/null
"$P11KMS" --version >/dev/null
setpriv --reuid=p11kmsc-daemon --regid=p11kmsc-daemon --init-groups --reset-env -- \
    env ${SOFTHSM2_CONF:+"SOFTHSM2_CONF=$SOFTHSM2_CONF"} "$P11KMSD" --config "$root/daemon.yaml" --socket "$sock" \
    2>daemon.log &
daemon_pid=$!
i=0
until grep -q '^p11kmsd: ready$' daemon.log 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 "$daemon_pid" 2>/dev/null; then
        cat daemon.log
        exit 1
    fi
    sleep 0.1
done
# as USER ARGS...: p11kms as USER in client mode (no config, no token, no PIN readable).
as() {
    u=$1
    shift
    if setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- \
        env P11KMS_CONFIG=/nonexistent/p11kms.yaml "$P11KMS" --endpoint "unix:$sock" "$@" \
        >out.json 2>err.txt; then status=0; else status=$?; fi
}
ok() {
    desc=$1
    shift
    as "$@"
    if [ "$status" -eq 0 ] && [ ! -s err.txt ]; then pass "$desc"; else fail "$desc: $status $(cat err.txt)"; fi
}
denied() {
    desc=$1
    shift
    as "$@"
    if [ "$status" -eq 7 ] && grep -q "^p11kms: AccessDeniedException: " err.txt; then
        pass "$desc: AccessDeniedException, exit 7"
    else
        fail "$desc: $status $(cat err.txt)"
    fi
}
ok "the admin creates a key" p11kmsc-admin create-key --description orders
key=$(field .KeyMetadata.KeyId)
ok "the admin creates an alias" p11kmsc-admin create-alias --alias-name alias/app-orders \
    --target-key-id "$key"
printf 'order 7' >plain.txt
chmod 644 plain.txt
denied "the admin may not encrypt" p11kmsc-admin encrypt --key-id alias/app-orders \
    --plaintext b3JkZXIgNw==
ok "the service encrypts" p11kmsc-svc encrypt --key-id alias/app-orders --plaintext b3JkZXIgNw==
blob=$(field .CiphertextBlob)
ok "the service decrypts" p11kmsc-svc decrypt --ciphertext-blob "$blob"
[ "$(field .Plaintext)" = b3JkZXIgNw== ] && pass "the plaintext comes back" || fail "$(cat out.json)"
denied "the admin may not decrypt" p11kmsc-admin decrypt --ciphertext-blob "$blob"
denied "the service may not disable" p11kmsc-svc disable-key --key-id "$key"
denied "a third user may not describe" p11kmsc-other describe-key --key-id "$key"
denied "a third user may not list keys" p11kmsc-other list-keys
ok "the admin disables" p11kmsc-admin disable-key --key-id "$key"
as p11kmsc-svc decrypt --ciphertext-blob "$blob"
[ "$status" -eq 3 ] && grep -q "^p11kms: DisabledException: " err.txt &&
    pass "the service gets DisabledException (exit 3)" || fail "$status $(cat err.txt)"
grep -q "principal=unix:user:p11kmsc-admin op=Decrypt .*decision=denied" daemon.log &&
    pass "the daemon names the OS user of each caller" || fail "log: $(grep Decrypt daemon.log)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" && pass "p11kmsd exits 0 on SIGTERM" || fail "exit $?"
daemon_pid=
cli_finish
