#!/bin/sh
# A full file system under the TOKEN (a token of the test's own on a 128 KiB tmpfs the test
# mounts; CI runs as root: SoftHSM's token directory, or NSS softokn's database directory), the
# SQLite store on the ordinary disk: a refused change is a clear error, every reply that said
# success is durable when the next process opens the token, and every refused change left no
# trace (no key without its version object, no object a record uses). Outside CI the test is
# skipped (exit 77) when it cannot mount; in CI (CI=true) that is a failure.
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

# The token in the small file system is the test's own, made as the harness makes it: a
# SoftHSM token (C_InitToken through softhsm2-util) or an NSS softokn database (certutil -N).
# A token the harness did not make cannot be put there.
case "${P11KMS_TEST_TOKEN:-softhsm}" in
softhsm | nss) ;;
*)
    echo "not run on this token: the whole test (it needs a token of its own in a small file" \
        "system; the $P11KMS_TEST_TOKEN token's storage is not the harness's to fill)"
    exit 77
    ;;
esac

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
if [ "${P11KMS_TEST_TOKEN:-softhsm}" = softhsm ]; then
    sed -e "s|^directories.tokendir = .*|directories.tokendir = $mnt|" "$SOFTHSM2_CONF" >softhsm2-full.conf
    export SOFTHSM2_CONF="$P11KMS_TEST_ROOT/softhsm2-full.conf"
    "$SOFTHSM2_UTIL" --init-token --free --label p11kms-test --so-pin "$P11KMS_TEST_SO_PIN" \
        --pin "$(cat "$P11KMS_TEST_PIN_FILE")" >init-full.log 2>&1 || { cat init-full.log; exit 99; }
    token_dir="$P11KMS_TEST_ROOT/tokens"
else
    [ -n "${NSS_CERTUTIL:-}" ] && [ -x "$NSS_CERTUTIL" ] ||
        { echo "certutil not found (apt-get install libnss3-tools, then re-run configure)"; exit 99; }
    "$NSS_CERTUTIL" -N -d "sql:$mnt" -f "$P11KMS_TEST_PIN_FILE" >init-full.log 2>&1 ||
        { cat init-full.log; exit 99; }
    token_dir="$P11KMS_TEST_ROOT/tokens/nssdb"
fi
# A fresh store for that token; the test is the only user: no grace period for unrecorded objects.
# NSS softokn's database directory is in its module arguments (configdir='sql:...').
sed -e "s|^store: .*|store: \"sqlite:$P11KMS_TEST_ROOT/full.db\"|" \
    -e 's|^keys:$|keys:\n  orphan-grace-seconds: 0|' \
    -e "/^  module-args: /s|sql:$token_dir''|sql:$mnt''|" "$P11KMS_CONFIG" >full.yaml
export P11KMS_CONFIG="$P11KMS_TEST_ROOT/full.yaml"
grep -q "full.db" full.yaml || { echo "config not rewritten"; exit 99; }
if [ -n "${P11KMS_TEST_MODULE_ARGS:-}" ]; then
    grep -q "^  module-args: .*sql:$mnt''" full.yaml || { echo "module-args not rewritten"; exit 99; }
fi

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
        # p11kms.1: exit 20, TokenError, the failed call and the token's CKR_* on one line
        # (SoftHSM answers CKR_FUNCTION_FAILED, NSS softokn CKR_GENERAL_ERROR)
        check "a refused create-key is one TokenError line naming the call and the token's answer" \
            sh -c '[ "$1" -eq 20 ] && [ "$(wc -l <err.txt)" -eq 1 ] &&
                grep -Eq "^p11kms: TokenError: C_GenerateKey failed: CKR_[A-Z_]+ \(0x[0-9a-f]+\)" err.txt' \
            sh "$status"
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
