#!/bin/sh
# A full file system under the SQLite store (a 320 KiB tmpfs the test mounts; CI runs as root):
# every reply that said success is durable, every refused change left no trace, and a change
# refused for lack of space never deletes or damages the key it touched. Outside CI the test is
# skipped (exit 77) when it cannot mount; in CI (CI=true) that is a failure.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

mnt="$P11KMS_TEST_ROOT/dbfs"
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=320k,mode=0700 tmpfs "$mnt" 2>mount.err; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: cannot mount a tmpfs in CI: $(cat mount.err)"
        exit 1
    fi
    echo "SKIP: cannot mount a tmpfs (not root?): $(cat mount.err)"
    exit 77
fi
trap 'umount "$mnt" 2>/dev/null' EXIT INT TERM

# The test is the only user: maintain needs no grace period for unrecorded objects.
sed -e "s|^store: .*|store: \"sqlite:$mnt/p11kms.db\"|" \
    -e 's|^keys:$|keys:\n  orphan-grace-seconds: 0|' "$P11KMS_CONFIG" >full.yaml
export P11KMS_CONFIG="$P11KMS_TEST_ROOT/full.yaml"
grep -q "sqlite:$mnt/p11kms.db" full.yaml || { echo "config not rewritten"; exit 99; }

# Large records fill the file system in a few dozen keys.
long=$(head -c 6000 /dev/zero | tr '\0' 'x')
: >created.txt
failures=0
i=0
while [ "$failures" -lt 3 ] && [ "$i" -lt 400 ]; do
    i=$((i + 1))
    p11kms create-key --description "$long-$i"
    if [ "$status" -eq 0 ]; then
        jq -r .KeyMetadata.KeyId out.json >>created.txt
    else
        failures=$((failures + 1))
        echo "create-key $i refused: $(cat err.txt)"
        grep -q "disk is full" err.txt && pass "create-key on a full disk says the disk is full" ||
            fail "create-key on a full disk: $(cat err.txt)"
    fi
done
n=$(wc -l <created.txt)
check "some keys were created before the disk filled ($n)" [ "$n" -gt 0 ]
check "the disk filled up (3 refusals)" [ "$failures" -eq 3 ]

# Changes to existing keys on the full disk: refused or done, never destructive.
first=$(head -1 created.txt)
last=$(tail -1 created.txt)
p11kms disable-key --key-id "$first"
disabled=$status
echo "disable-key on a full disk: exit $status $(cat err.txt)"
p11kms create-alias --alias-name alias/full --target-key-id "$last"
aliased=$status
echo "create-alias on a full disk: exit $status $(cat err.txt)"
p11kms tag-resource --key-id "$last" --tags "TagKey=big,TagValue=$(head -c 250 /dev/zero | tr '\0' 'y')"
echo "tag-resource on a full disk: exit $status $(cat err.txt)"

# Every key that was reported created exists and works (reads need no space).
bad=0
while read -r id; do
    p11kms describe-key --key-id "$id"
    if [ "$status" -ne 0 ]; then
        bad=$((bad + 1))
        echo "reported created, now missing: $id: $(cat err.txt)"
    fi
done <created.txt
check "every key reported created exists" [ "$bad" -eq 0 ]
p11kms describe-key --key-id "$first"
if [ "$disabled" -eq 0 ]; then
    jq_check "disable-key that succeeded is durable" '.KeyMetadata.KeyState == "Disabled"'
else
    jq_check "disable-key that failed left the key as it was" '.KeyMetadata.KeyState == "Enabled"'
fi
p11kms describe-key --key-id alias/full
if [ "$aliased" -eq 0 ]; then
    jq_check "create-alias that succeeded is durable" ".KeyMetadata.KeyId == \"$last\""
else
    check "create-alias that failed left no alias" [ "$status" -eq 2 ]
fi
p11kms describe-key --key-id "$last"
check "the key create-alias touched still exists" [ "$status" -eq 0 ]
p11kms encrypt --key-id "$last" --plaintext "$(printf 'full disk' | base64)"
echo "encrypt on a full disk: exit $status $(cat err.txt)"

# Space again: everything refused left no trace; maintain finds nothing to repair.
mount -o remount,size=16m "$mnt"
expect_ok "maintain once there is space" --output text maintain
cat out.json
check "maintain found no key version without object" sh -c '! grep -q "has no object" out.json'
check "maintain found no object p11kms did not claim" sh -c '! grep -q "no version claim" out.json'
expect_ok "second maintain" --output text maintain
check "a second maintain has nothing to do" [ ! -s out.json ]
bad=0
while read -r id; do
    p11kms encrypt --key-id "$id" --plaintext "$(printf 'after' | base64)"
    [ "$status" -eq 0 ] || [ "$id" = "$first" ] || bad=$((bad + 1))
done <created.txt
check "every key reported created encrypts once there is space" [ "$bad" -eq 0 ]
cli_finish
