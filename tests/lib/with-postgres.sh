#!/bin/sh
# Runs a test against a real PostgreSQL: initdb into a temporary directory as an unprivileged
# user (postgres, or the caller when not root), pg_ctl start on a Unix socket in that
# directory (no TCP), one database for the test, stopped and removed at the end. The server
# runs with fsync=off: the tests kill p11kms processes, never the server, and on a shared CI
# disk each commit's fsync made the suite several times slower. Then the test
# runs through with-token.sh with P11KMS_TEST_STORE=postgresql, so its configuration says
#   store: "host=<dir> port=<port> dbname=p11kms user=p11kms"
# Usage (automake LOG_COMPILER for *.pgtest; with-token.sh hands them here):
#   with-postgres.sh TEST [ARGS...]
# A missing PostgreSQL is a hard error (exit 99), never a skip.
set -eu
test_path=$1
shift
here=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "with-postgres: $*" >&2
    exit 99
}
pgbin=${P11KMS_PG_BINDIR:-}
if [ -z "$pgbin" ]; then
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && pgbin=$d
    done
fi
[ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] && [ -x "$pgbin/pg_ctl" ] ||
    die "PostgreSQL server binaries not found (apt-get install postgresql)"

dir=$(mktemp -d /tmp/p11kms-pg.XXXXXX)
chmod 755 "$dir"
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$pguser" -- "$@"
    else
        "$@"
    fi
}
if [ "$(id -u)" -eq 0 ]; then
    pguser=postgres
    id "$pguser" >/dev/null 2>&1 || useradd --system --no-create-home "$pguser" ||
        die "no user postgres and cannot create one"
    chown "$pguser" "$dir"
fi
# A port number only names the socket file; two tests in parallel get two.
port=$((20000 + $$ % 20000))
cleanup() {
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U p11kms --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    die "initdb failed: $(cat "$dir/initdb.log")"
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses='' -c max_connections=50 -c fsync=off" start >/dev/null 2>&1 ||
    die "pg_ctl start failed: $(cat "$dir/server.log" 2>/dev/null)"
"$pgbin/createdb" -h "$dir" -p "$port" -U p11kms p11kms || die "createdb failed"

export P11KMS_TEST_STORE=postgresql
export P11KMS_TEST_STORE_SPEC="host=$dir port=$port dbname=p11kms user=p11kms"
export P11KMS_TEST_PG_BINDIR="$pgbin"
status=0
sh "$here/with-token.sh" "$test_path" "$@" || status=$?
exit "$status"
