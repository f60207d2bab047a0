#!/bin/sh
# A full file system under the TOKEN (SoftHSM's token directory on a 128 KiB tmpfs the test
# mounts; CI runs as root), the SQLite store on the ordinary disk: every reply that said success
# is durable when the next process opens the token, and every refused change left no trace (no
# key without its version object, no object a record uses). Outside CI the test is skipped
# (exit 77) when it cannot mount; in CI (CI=true) that is a failure.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

# It makes a SoftHSM token of its own (C_InitToken through softhsm2-util): SoftHSM only.
if [ "${P11KMS_TEST_TOKEN:-softhsm}" != softhsm ]; then
    echo "SKIP: initializes a SoftHSM token of its own; not run on the $P11KMS_TEST_TOKEN token"
    exit 77
fi

mnt="$P11KMS_TEST_ROOT/tokfs"
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=128k,mode=0700 tmpfs "$mnt" 2>mount.err; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: cannot mount a tmpfs in CI: $(cat mount.err)"
        exit 1
    fi
    echo "SKIP: cannot mount a tmpfs (not root?): $(cat mount.err)"
    exit 77
fi
trap 'umount "$mnt" 2>/dev/null' EXIT INT TERM

# A token of the same label and PINs in the small file system (the harness's token stays unused).
sed -e "s|^directories.tokendir = .*|directories.tokendir = $mnt|" "$SOFTHSM2_CONF" >softhsm2-full.conf
export SOFTHSM2_CONF="$P11KMS_TEST_ROOT/softhsm2-full.conf"
"$SOFTHSM2_UTIL" --init-token --free --label p11kms-test --so-pin "$P11KMS_TEST_SO_PIN" \
    --pin "$(cat "$P11KMS_TEST_PIN_FILE")" >init-full.log 2>&1 || { cat init-full.log; exit 99; }
# A fresh store for that token; the test is the only user: no grace period for unrecorded objects.
sed -e "s|^store: .*|store: \"sqlite:$P11KMS_TEST_ROOT/full.db\"|" \
    -e 's|^keys:$|keys:\n  orphan-grace-seconds: 0|' "$P11KMS_CONFIG" >full.yaml
export P11KMS_CONFIG="$P11KMS_TEST_ROOT/full.yaml"
grep -q "full.db" full.yaml || { echo "config not rewritten"; exit 99; }

: >created.txt
failures=0
i=0
while [ "$failures" -lt 3 ] && [ "$i" -lt 300 ]; do
    i=$((i + 1))
    p11kms create-key --description "token-full-$i"
    if [ "$status" -eq 0 ]; then
        jq -r .KeyMetadata.KeyId out.json >>created.txt
    else
        failures=$((failures + 1))
        echo "create-key $i refused: $(cat err.txt)"
        check "a refused create-key says why" [ -s err.txt ]
    fi
done
n=$(wc -l <created.txt)
check "some keys were created before the token's disk filled ($n)" [ "$n" -gt 0 ]
check "the token's disk filled up (3 refusals)" [ "$failures" -eq 3 ]

# Changes on the full token: done or refused, never destructive.
first=$(head -1 created.txt)
last=$(tail -1 created.txt)
p11kms rotate-key-on-demand --key-id "$last"
rotated=$status
echo "rotate-key-on-demand on a full token: exit $status $(cat err.txt)"
p11kms disable-key --key-id "$first"
disabled=$status
echo "disable-key on a full token: exit $status $(cat err.txt)"
p11kms create-alias --alias-name alias/tokfull --target-key-id "$last"
aliased=$status
echo "create-alias on a full token: exit $status $(cat err.txt)"

# Each check runs in a new process: what a reply said is what the next open of the token sees.
check_all() {
    when=$1
    bad=0
    while read -r id; do
        [ "$id" = "$first" ] && [ "$disabled" -eq 0 ] && continue
        p11kms encrypt --key-id "$id" --plaintext "$(printf 'full token' | base64)"
        if [ "$status" -ne 0 ]; then
            bad=$((bad + 1))
            echo "reported created, does not encrypt $when: $id: $(cat err.txt)"
        fi
    done <created.txt
    check "every key reported created encrypts $when" [ "$bad" -eq 0 ]
    p11kms list-keys
    check "list-keys $when shows exactly the keys reported created ($n)" \
        [ "$(jq '.Keys | length' out.json)" -eq "$n" ]
    p11kms describe-key --key-id "$first"
    if [ "$disabled" -eq 0 ]; then
        jq_check "disable-key that succeeded holds $when" '.KeyMetadata.KeyState == "Disabled"'
    else
        jq_check "disable-key that failed left the key enabled $when" '.KeyMetadata.KeyState == "Enabled"'
    fi
    p11kms describe-key --key-id alias/tokfull
    if [ "$aliased" -eq 0 ]; then
        jq_check "create-alias that succeeded holds $when" ".KeyMetadata.KeyId == \"$last\""
    else
        check "create-alias that failed left no alias $when" [ "$status" -eq 2 ]
    fi
    p11kms list-key-rotations --key-id "$last"
    if [ "$rotated" -eq 0 ]; then
        jq_check "rotate-key-on-demand that succeeded holds $when" '[.Rotations[] | select(.RotationType == "ON_DEMAND")] | length == 1'
    else
        jq_check "rotate-key-on-demand that failed left no rotation $when" '[.Rotations[] | select(.RotationType == "ON_DEMAND")] | length == 0'
    fi
}
check_all "on the full token"

mount -o remount,size=16m "$mnt"
expect_ok "maintain once there is space" --output text maintain
cat out.json
check "maintain found no key version without its object" sh -c '! grep -q "has no object" out.json'
expect_ok "second maintain" --output text maintain
check "a second maintain has nothing to do" [ ! -s out.json ]
check_all "after the token's disk has space again"
# The new version of a rotation that succeeded encrypts once there is space.
p11kms encrypt --key-id "$last" --plaintext "$(printf 'after' | base64)"
check "the rotated key encrypts after the remount" [ "$status" -eq 0 ]
cli_finish
