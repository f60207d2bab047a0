#!/bin/bash
# The p11kms walkthrough: envelope encryption as Amazon RDS and Redshift use AWS KMS, with the
# master keys in a SoftHSM token this script sets up under the build directory.
#
#   bash tests/walkthrough.sh       installs missing packages, builds into build-walkthrough/,
#                                   then runs the walkthrough
#   P11KMS_CLI=/path/to/p11kms bash tests/walkthrough.sh
#                                   runs it with an already built CLI (make check does this)
#
# The operator steps run as the current OS user with "policy: none", because a SoftHSM token's
# files belong to one OS user. What the sample policy (conf/policy.yaml) decides for its admin
# (alice) and its RDS and Redshift services is shown with `p11kms policy explain` on the same
# keys, asked as one of the sample's key administrators (explaining for others needs the
# explain-policy action); the test suite enforces the policy for real
# (tests/provider-policy-test.c, tests/cli-basic.sh).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

if [ -z "${P11KMS_CLI:-}" ]; then
    sh "$src/tests/setup-debian.sh"
    cd "$src"
    [ -x configure ] || ./autogen.sh >/dev/null 2>&1
    mkdir -p build-walkthrough
    cd build-walkthrough
    [ -f Makefile ] || ../configure >configure.out 2>&1 || {
        cat configure.out
        exit 1
    }
    make -j"$(nproc)" >make.out 2>&1 || {
        tail -40 make.out
        exit 1
    }
    P11KMS_CLI=$(pwd)/p11kms
    work=$(pwd)/demo
else
    work=${P11KMS_WALKTHROUGH_DIR:-$(pwd)/walkthrough}
fi
softhsm_module=${SOFTHSM_MODULE:-}
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -n "$softhsm_module" ] || { [ -f "$m" ] && softhsm_module=$m; }
done
[ -n "$softhsm_module" ] || { echo "SoftHSMv2 not found (apt-get install softhsm2)"; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
# Runs the CLI, shows the command, keeps its JSON in out.json.
kms() {
    printf '   $ p11kms %s\n' "$*"
    "$P11KMS_CLI" "$@" >out.json 2>err.txt || {
        cat err.txt
        return 1
    }
}
# The command must fail with the given exception class.
refused() {
    local class=$1
    shift
    printf '   $ p11kms %s\n' "$*"
    if "$P11KMS_CLI" "$@" >out.json 2>err.txt; then
        echo "   UNEXPECTED: the command succeeded"
        exit 1
    fi
    grep -v WARNING err.txt | sed 's/^/   -> /'
    grep -q "$class" err.txt || { echo "   UNEXPECTED: not a $class"; exit 1; }
}
field() { jq -r "$1" out.json; }
b64file() { jq -r "$1" out.json | openssl base64 -d -A >"$2"; }
hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
# explain EXPECTED PRINCIPAL ACTION KEY [CONTEXT]: shows the decision, which must be EXPECTED.
explain() {
    local want=$1
    shift
    local args=(policy explain --principal "$1" --action "$2")
    [ -n "$3" ] && args+=(--key-id "$3")
    [ -n "${4:-}" ] && args+=(--encryption-context "$4")
    printf '   $ p11kms %s\n' "${args[*]}"
    "$P11KMS_CLI" --config "$work/policy-demo.yaml" --output text "${args[@]}" >out.txt 2>&1
    sed 's/^/   -> /' out.txt
    grep -q "^$want" out.txt || { echo "   UNEXPECTED: not $want"; exit 1; }
}

step "A fresh SoftHSM token under $work"
rm -rf "$work"
mkdir -p "$work/tokens"
chmod 700 "$work"
cd "$work"
cat >softhsm2.conf <<EOF
directories.tokendir = $work/tokens
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF=$work/softhsm2.conf
pin=$(openssl rand -hex 8)
(umask 077 && printf '%s\n' "$pin" >pin)
softhsm2-util --init-token --free --label p11kms-demo --so-pin "$(openssl rand -hex 8)" \
    --pin "$pin" >/dev/null
unset pin
cat >p11kms.yaml <<EOF
token:
  module: $softhsm_module
  uri: "pkcs11:token=p11kms-demo"
  pin-source: "file:$work/pin"
keys:
  lock-file: $work/p11kms.lock
store: "${P11KMS_TEST_STORE_SPEC:-sqlite:$work/p11kms.db}"
hierarchy:
  revocation-check-ms: 500
policy: none
EOF
sed "s|^policy: none|policy: $src/conf/policy.yaml|" p11kms.yaml >sample-policy.yaml
# Explaining for other principals is the administrators' (explain-policy): the demo makes you
# one of the sample's key administrators.
sed "s|^  key-admins:\$|&\n    - unix:user:$(id -un)|" "$src/conf/policy.yaml" >admin-policy.yaml
sed "s|^policy: none|policy: $work/admin-policy.yaml|" p11kms.yaml >policy-demo.yaml
# The configuration names the module to load: p11kms refuses it when others may change it.
chmod 600 p11kms.yaml sample-policy.yaml policy-demo.yaml
export P11KMS_CONFIG=$work/p11kms.yaml
say "PIN in a 0600 file, never on a command line; config $P11KMS_CONFIG"
kms --output text token info
sed 's/^/   /' out.json | head -20

step "RDS: one data key per DB instance, bound to {\"aws:rds:db-id\": ...}"
kms create-key --description "RDS orders database"
rds_key=$(field .KeyMetadata.KeyId)
say "master key $rds_key: AES-256, generated in the token, never extractable"
kms create-alias --alias-name alias/rds-orders --target-key-id "$rds_key"
kms generate-data-key --key-id alias/rds-orders --key-spec AES_256 \
    --encryption-context '{"aws:rds:db-id":"db-orders-1"}'
b64file .Plaintext dek.bin
b64file .CiphertextBlob dek.blob
seq 1 20000 | sed 's/^/order /' >orders.csv
openssl rand 16 >orders.iv
openssl enc -aes-256-ctr -K "$(hex dek.bin)" -iv "$(hex orders.iv)" -in orders.csv -out orders.enc
rm -f dek.bin
say "orders.csv ($(wc -c <orders.csv) bytes) encrypted with the data key; only the wrapped key" \
    "(dek.blob, $(wc -c <dek.blob) bytes) is kept beside the data"
kms decrypt --ciphertext-blob fileb://dek.blob --encryption-context aws:rds:db-id=db-orders-1
b64file .Plaintext dek.bin
openssl enc -d -aes-256-ctr -K "$(hex dek.bin)" -iv "$(hex orders.iv)" -in orders.enc \
    -out orders.out
cmp -s orders.csv orders.out && say "the instance key opened with its context decrypts the file"
rm -f dek.bin orders.out
refused InvalidCiphertextException decrypt --ciphertext-blob fileb://dek.blob \
    --encryption-context aws:rds:db-id=db-orders-2

step "Redshift: master key -> cluster key -> database key -> block keys"
kms create-key --description "Redshift cluster c1"
rs_key=$(field .KeyMetadata.KeyId)
kms create-alias --alias-name alias/redshift-c1 --target-key-id "$rs_key"
cluster_ctx='{"aws:redshift:arn":"arn:aws:redshift:local:000000000000:cluster:c1","aws:redshift:createtime":"20261123T120000Z"}'
kms generate-data-key-without-plaintext --key-id alias/redshift-c1 --key-spec AES_256 \
    --encryption-context "$cluster_ctx"
b64file .CiphertextBlob cluster.blob
say "tier 2: the cluster key exists only wrapped by the master key (cluster.blob)"
kms generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --encryption-context tier=database,database=sales --without-plaintext
b64file .CiphertextBlob sales.blob
say "tier 3: the database key, wrapped in memory under the opened cluster key" \
    "(parent check value $(field .ParentKeyCheckValue))"
kms generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --parent fileb://sales.blob@tier=database,database=sales --encryption-context block=0001
b64file .CiphertextBlob block1.blob
b64file .Plaintext block1.key
say "tier 4: a per-block data key, no token operation below tier 2"
kms unwrap-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --parent fileb://sales.blob@tier=database,database=sales --child-blob fileb://block1.blob \
    --encryption-context block=0001
b64file .Plaintext block1.again
cmp -s block1.key block1.again && say "unwrapping the block key gives the same bytes"
refused InvalidCiphertextException unwrap-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --parent fileb://sales.blob@tier=database,database=sales --child-blob fileb://block1.blob \
    --encryption-context block=0002

step "Disable the master key: decryption and every opened key below it are refused"
kms disable-key --key-id alias/redshift-c1
refused DisabledException decrypt --ciphertext-blob fileb://cluster.blob \
    --encryption-context "$cluster_ctx"
refused DisabledException generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --encryption-context tier=database,database=hr
say "(a process that had the cluster key open loses it within hierarchy.revocation-check-ms)"
kms enable-key --key-id alias/redshift-c1
kms generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --encryption-context tier=database,database=hr --without-plaintext
say "enabled again: works"

step "Rotation: old ciphertext still decrypts; re-encrypting tier 2 keeps tiers 3 and 4 valid"
kms rotate-key-on-demand --key-id alias/redshift-c1
say "current version: $(field '.CurrentKeyVersion // .KeyMetadata.CurrentKeyVersion')"
kms re-encrypt --ciphertext-blob fileb://cluster.blob --source-encryption-context "$cluster_ctx" \
    --destination-key-id alias/redshift-c1 --destination-encryption-context "$cluster_ctx"
b64file .CiphertextBlob cluster-v2.blob
say "cluster key re-wrapped under version $(field .KeyVersion); one token operation per cluster"
kms unwrap-child-key --parent "fileb://cluster-v2.blob@$cluster_ctx" \
    --parent fileb://sales.blob@tier=database,database=sales --child-blob fileb://block1.blob \
    --encryption-context block=0001
b64file .Plaintext block1.v2
cmp -s block1.key block1.v2 && say "the database and block blobs are unchanged and still open"
kms decrypt --ciphertext-blob fileb://cluster.blob --encryption-context "$cluster_ctx"
say "the blob made under version 1 still decrypts (version $(field .KeyVersion))"
kms list-key-rotations --key-id alias/redshift-c1
jq -r '.Rotations[] | "   version \(.KeyVersion // "?"): \(.RotationType)"' out.json
rm -f block1.key block1.again block1.v2

step "Deletion: scheduled, refused meanwhile, cancelled (the key comes back Disabled)"
kms schedule-key-deletion --key-id alias/rds-orders --pending-window-in-days 7
say "state $(field .KeyState), deletion date $(field .DeletionDate)"
refused KMSInvalidStateException decrypt --ciphertext-blob fileb://dek.blob \
    --encryption-context aws:rds:db-id=db-orders-1
kms cancel-key-deletion --key-id alias/rds-orders
kms describe-key --key-id alias/rds-orders
say "state after cancel: $(field .KeyMetadata.KeyState)"
kms enable-key --key-id alias/rds-orders

step "The sample policy: admins manage, services use (conf/policy.yaml)"
"$P11KMS_CLI" policy check "$src/conf/policy.yaml" | sed 's/^/   /'
say "what others may do is for administrators to ask; the sample does not name you ($(id -un)):"
refused AccessDeniedException --config "$work/sample-policy.yaml" policy explain \
    --principal unix:user:rds-svc --action decrypt --key-id alias/rds-orders
say "with you among its key administrators ($work/admin-policy.yaml):"
explain Allowed unix:user:alice create-key ""
explain Allowed unix:user:alice disable-key alias/rds-orders
explain Denied unix:user:alice decrypt alias/rds-orders aws:rds:db-id=db-orders-1
explain Allowed unix:user:rds-svc decrypt alias/rds-orders aws:rds:db-id=db-orders-1
explain Allowed unix:user:rds-svc decrypt "$rds_key" aws:rds:db-id=db-orders-1
explain Denied unix:user:rds-svc decrypt alias/rds-orders tenant=other
explain Denied unix:user:rds-svc disable-key alias/rds-orders
explain Denied unix:user:rds-svc decrypt alias/redshift-c1 "aws:rds:db-id=db-orders-1"

step "Maintenance: reconcile, purge due deletions, rotate when due"
kms --output text maintain
say "nothing to repair"
step "The service: p11kmsd alone holds the token; callers are OS users it authenticates"
# The daemon runs here as the token's owner (a deployment runs it as its own service user).
# Over its Unix socket and loopback HTTP the caller is the OS user the kernel names, so the
# admin and the RDS service are two OS users with their own rights (created when run as root).
p11kmsd=${P11KMSD:-$(dirname "$P11KMS_CLI")/p11kmsd}
demo_users=
if [ "$(id -u)" -eq 0 ]; then
    admin_user=p11kms-demo-admin
    rds_user=p11kms-demo-rds
    # Walkthroughs running at once (the test suite runs it on SQLite and PostgreSQL side by
    # side) share these users: one at a time from here to the end, which removes them.
    mkdir -p /run/lock
    exec 9>>/run/lock/p11kms-demo-users.lock
    flock 9
    for u in $admin_user $rds_user; do
        if ! id "$u" >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
            demo_users="$demo_users $u" # removed at the end: this run made them
        fi
    done
    say "OS users $admin_user (key administrator) and $rds_user (the RDS service) created"
    # They run this build's p11kms: its directories must be searchable by them.
    . "$src/tests/lib/grant-search.sh"
    grant_search walkthrough "$(cd "$(dirname "$P11KMS_CLI")" && pwd)"
else
    admin_user=
    rds_user=$(id -un)
    say "not root: the RDS service is you ($rds_user); the admin's refusal needs a second OS user"
fi
sockdir=$(mktemp -d /tmp/p11kms-demo-XXXXXX)
chmod 755 "$sockdir"
sock=$sockdir/p11kmsd.sock
cleanup_daemon() {
    if [ -n "${daemon_pid:-}" ]; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
    rm -rf "$sockdir"
    for u in $demo_users; do userdel "$u" >/dev/null 2>&1 || true; done
}
trap cleanup_daemon EXIT
cat >policy-daemon.yaml <<POLICY
version: 1
global:
  - sid: admin-global
    effect: allow
    principals: [${admin_user:+unix:user:$admin_user}]
    actions: [create-key, list-keys, list-aliases]
statements:
  - sid: admin-manage
    effect: allow
    principals: [${admin_user:+unix:user:$admin_user}]
    keys: ["*"]
    actions: [describe-key, enable-key, disable-key, create-alias]
  - sid: rds-use
    effect: allow
    principals: [unix:user:$rds_user]
    keys: ["alias/rds-*"]
    actions: [encrypt, decrypt, generate-data-key]
    conditions:
      context-equals:
        aws:rds:db-id: db-orders-1
  - sid: rds-describe
    effect: allow
    principals: [unix:user:$rds_user]
    keys: ["alias/rds-*"]
    actions: [describe-key]
POLICY
sed "s|^policy: none|policy: $work/policy-daemon.yaml|" p11kms.yaml >daemon.yaml
chmod 600 daemon.yaml policy-daemon.yaml
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '   $ p11kmsd --config daemon.yaml --socket %s --listen-http 127.0.0.1:%s &\n' "$sock" "$port"
"$P11KMS_CLI" --version >/dev/null # libtool's wrapper settles its binary once, as the owner
"$p11kmsd" --config "$work/daemon.yaml" --socket "$sock" --listen-http "127.0.0.1:$port" \
    2>daemon.log &
daemon_pid=$!
i=0
until grep -q '^p11kmsd: ready$' daemon.log; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 "$daemon_pid" 2>/dev/null; then
        cat daemon.log
        exit 1
    fi
    sleep 0.1
done
say "ready: p11kmsd read the PIN once; no caller below reads it or loads the token module"
# as USER COMMAND...: runs a command as another OS user (or as you, when it is you).
as() {
    local u=$1
    shift
    if [ "$(id -un)" = "$u" ]; then
        "$@"
    else
        setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- "$@"
    fi
}
# awskms USER ARGS...: Debian's aws CLI against p11kmsd as USER; output in out.json.
awskms() {
    local u=$1
    shift
    printf '   [%s] $ aws kms --endpoint-url http://127.0.0.1:%s %s\n' "$u" "$port" "$*"
    as "$u" env HOME=/nonexistent AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=unused AWS_DEFAULT_REGION=eu-west-1 \
        AWS_EC2_METADATA_DISABLED=true AWS_PAGER= \
        /usr/bin/aws kms --endpoint-url "http://127.0.0.1:$port" --output json "$@" \
        >out.json 2>err.txt
}
say "(aws signs with dummy keys; on loopback p11kmsd names the caller by its OS user)"
awskms "$rds_user" describe-key --key-id alias/rds-orders || { cat err.txt; exit 1; }
say "the RDS service sees $(field .KeyMetadata.KeyId), $(field .KeyMetadata.KeyState)"
awskms "$rds_user" generate-data-key --key-id alias/rds-orders --key-spec AES_256 \
    --encryption-context aws:rds:db-id=db-orders-1 || { cat err.txt; exit 1; }
b64file .CiphertextBlob dek2.blob
say "a new instance key: the plaintext for the database's memory, the blob for its disk"
awskms "$rds_user" decrypt --ciphertext-blob "$(openssl base64 -A <dek.blob)" \
    --encryption-context aws:rds:db-id=db-orders-1 || { cat err.txt; exit 1; }
say "the first instance key decrypts ($(field .Plaintext | openssl base64 -d -A | wc -c) bytes)"
if awskms "$rds_user" disable-key --key-id alias/rds-orders; then
    echo "   UNEXPECTED: the service disabled its key"
    exit 1
fi
grep -o 'An error occurred ([A-Za-z]*)' err.txt | sed 's/^/   -> /'
grep -q AccessDeniedException err.txt || { echo "   UNEXPECTED: $(cat err.txt)"; exit 1; }
say "the service may not disable its key"
printf '   [%s] $ p11kms --endpoint unix:%s decrypt --ciphertext-blob ... \n' "$rds_user" "$sock"
as "$rds_user" env P11KMS_CONFIG=/nonexistent "$P11KMS_CLI" --endpoint "unix:$sock" decrypt \
    --ciphertext-blob "$(openssl base64 -A <dek2.blob)" \
    --encryption-context aws:rds:db-id=db-orders-1 >out.json 2>err.txt || {
    cat err.txt
    exit 1
}
say "p11kms as a client of p11kmsd: no token, no PIN, the same JSON ($(field .KeyId))"
if [ -n "$admin_user" ]; then
    printf '   [%s] $ p11kms --endpoint unix:%s describe-key --key-id alias/rds-orders\n' \
        "$admin_user" "$sock"
    as "$admin_user" "$P11KMS_CLI" --endpoint "unix:$sock" describe-key \
        --key-id alias/rds-orders >out.json 2>err.txt || {
        cat err.txt
        exit 1
    }
    say "the admin manages the key ($(field .KeyMetadata.KeyState))"
    printf '   [%s] $ p11kms --endpoint unix:%s decrypt --ciphertext-blob ... \n' "$admin_user" \
        "$sock"
    if as "$admin_user" "$P11KMS_CLI" --endpoint "unix:$sock" decrypt \
        --ciphertext-blob "$(openssl base64 -A <dek.blob)" \
        --encryption-context aws:rds:db-id=db-orders-1 >out.json 2>err.txt; then
        echo "   UNEXPECTED: the admin decrypted"
        exit 1
    fi
    sed 's/^/   -> /' err.txt
    grep -q "^p11kms: AccessDeniedException: " err.txt || { echo "   UNEXPECTED"; exit 1; }
    say "refused: the key administrator cannot decrypt the service's data"
fi
kill -TERM "$daemon_pid"
wait "$daemon_pid" || { echo "   UNEXPECTED: p11kmsd exit status $?"; exit 1; }
daemon_pid=
say "p11kmsd stopped on SIGTERM; its log has one line per request, never a plaintext:"
grep 'op=Decrypt' daemon.log | sed 's/request=[^ ]* //;s/^/   /'

step "Done: the walkthrough's token is in $work"
