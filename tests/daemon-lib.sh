# Sourced by the tests/daemon-*.sh scripts: starts and stops p11kmsd of the build on the test's
# token (tests/lib/with-token.sh made it), with Debian's python3 and aws (never the ones on
# PATH). Every check prints what it checks; daemon_finish exits 1 if any failed.
P11KMSD="$P11KMS_BUILDDIR/p11kmsd"
PY=/usr/bin/python3
AWS=/usr/bin/aws
[ -x "$P11KMSD" ] || { echo "missing $P11KMSD (run make)" >&2; exit 99; }
[ -x "$PY" ] || { echo "$PY not found (apt-get install python3)" >&2; exit 99; }
[ -x "$AWS" ] || { echo "$AWS not found (apt-get install awscli)" >&2; exit 99; }
"$PY" -c 'import boto3, botocore' 2>/dev/null ||
    { echo "boto3 not found for $PY (apt-get install python3-boto3)" >&2; exit 99; }

d_checks=0
d_failures=0
pass() {
    d_checks=$((d_checks + 1))
    echo "ok: $*"
}
fail() {
    d_checks=$((d_checks + 1))
    d_failures=$((d_failures + 1))
    echo "FAIL: $*"
}

# A free loopback port (the kernel's choice; released again before p11kmsd binds it).
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# daemon_start LOG ARGS...: starts p11kmsd in the background and waits for "ready".
daemon_start() {
    log=$1
    shift
    "$P11KMSD" "$@" 2>"$log" &
    daemon_pid=$!
    i=0
    while ! grep -q '^p11kmsd: ready$' "$log"; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$daemon_pid" 2>/dev/null; then
            echo "p11kmsd did not start:"
            cat "$log"
            exit 1
        fi
        sleep 0.1
    done
}

# daemon_stop: SIGTERM, and the daemon must exit 0 within 20 s.
daemon_stop() {
    kill -TERM "$daemon_pid"
    i=0
    while kill -0 "$daemon_pid" 2>/dev/null && [ $i -lt 200 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    if kill -0 "$daemon_pid" 2>/dev/null; then
        kill -KILL "$daemon_pid"
        fail "p11kmsd stops within 20 s of SIGTERM"
    fi
    if wait "$daemon_pid"; then pass "p11kmsd exits 0 on SIGTERM"; else fail "p11kmsd exit status $?"; fi
}

# aws CLI with no configuration of the user's and dummy credentials (the loopback and Unix
# listeners authenticate the socket, not the signature).
aws_env() {
    env HOME="$P11KMS_TEST_ROOT" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=not-a-secret \
        AWS_DEFAULT_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER= "$@"
}

daemon_finish() {
    echo "$d_checks checks, $d_failures failures"
    [ "$d_failures" -eq 0 ]
}
