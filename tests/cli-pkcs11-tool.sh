#!/bin/sh
# p11kms CLI seen from outside with OpenSC's pkcs11-tool: a master key made by
# `p11kms create-key` is an AES key that is sensitive, never extractable, usable only to
# encrypt and decrypt (no wrap/unwrap), and its value cannot be read. A control key made
# extractable by pkcs11-tool itself shows that these checks do catch a readable key (where the
# token makes one readable: NSS softokn keeps it sensitive). On a token that needs module
# arguments (NSS softokn), pkcs11-tool reaches it through tests/pkcs11-shim.c.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

[ -n "${PKCS11_TOOL:-}" ] && [ -x "$PKCS11_TOOL" ] || {
    echo "pkcs11-tool not found (apt-get install opensc, then re-run configure)" >&2
    exit 99
}
pin=$(head -n 1 "$P11KMS_TEST_PIN_FILE")

# pkcs11-tool cannot pass module arguments (NSS softokn's configdir=...): there it loads the
# test shim, which forwards to $P11KMS_TEST_MODULE with $P11KMS_TEST_MODULE_ARGS.
module=$P11KMS_TEST_MODULE
asan_runtime=
if [ -n "${P11KMS_TEST_MODULE_ARGS:-}" ]; then
    module="$P11KMS_BUILDDIR/tests/.libs/pkcs11-shim.so"
    [ -f "$module" ] || { echo "missing $module (make check builds it)" >&2; exit 99; }
    # In an ASan build the shim needs the ASan runtime loaded first, which pkcs11-tool (not
    # instrumented) does not do: preload it, and leave OpenSC's and NSS's leaks unchecked there.
    asan_runtime=$(ldd "$module" | awk '/libasan/ { print $3 }')
fi

tool() {
    # env with no assignments when there is no ASan runtime to preload.
    set -- "$PKCS11_TOOL" --module "$module" --token-label "$P11KMS_TEST_TOKEN_LABEL" --login \
        --pin "$pin" "$@"
    if [ -n "$asan_runtime" ]; then
        set -- LD_PRELOAD="$asan_runtime" \
            ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$@"
    fi
    env "$@"
}

# object_block LABEL: the --list-objects block of the secret key labelled LABEL.
object_block() {
    tool --list-objects --type secrkey 2>/dev/null | awk -v want="$1" '
        /^[A-Za-z].*Object;/ { if (found) exit; block = $0 "\n"; next }
        { block = block $0 "\n" }
        $1 == "label:" && $2 == want { found = 1 }
        END { if (found) printf "%s", block }'
}

# attr_line BLOCK NAME: the value of "NAME:" in a block.
attr_line() {
    printf '%s\n' "$1" | sed -n "s/^ *$2: *//p"
}

# key_is_locked_down BLOCK: AES-256, sensitive, never extractable, not extractable,
# encrypt+decrypt only, no value shown.
key_is_locked_down() {
    usage=$(attr_line "$1" Usage)
    access=$(attr_line "$1" Access)
    printf '%s\n' "$1" | grep -q 'AES length 32' &&
        printf '%s\n' "$access" | grep -Eq '(^|, )sensitive(,|$)' &&
        printf '%s\n' "$access" | grep -q 'always sensitive' &&
        printf '%s\n' "$access" | grep -q 'never extractable' &&
        ! printf '%s\n' "$access" | sed 's/never extractable//' | grep -q 'extractable' &&
        printf '%s\n' "$usage" | grep -q 'encrypt' &&
        printf '%s\n' "$usage" | grep -q 'decrypt' &&
        ! printf '%s\n' "$usage" | grep -q 'wrap' &&
        ! printf '%s\n' "$1" | grep -q 'VALUE:'
}

# cannot_read ID: --read-object of the secret key with this CKA_ID fails and writes nothing.
cannot_read() {
    rm -f value.bin
    if tool --read-object --type secrkey --id "$1" -o value.bin >read.log 2>&1; then
        return 1
    fi
    [ ! -s value.bin ]
}

expect_ok "create-key" create-key --description "pkcs11-tool check"
key=$(field .KeyMetadata.KeyId)
label="p11kms/$key/v1"
id="$(printf '%s' "$key" | tr -d '-')00000001"

block=$(object_block "$label")
check "pkcs11-tool lists the master key $label" [ -n "$block" ]
printf '%s\n' "$block"
check "its CKA_ID is the key id and version 1" [ "$(attr_line "$block" ID)" = "$id" ]
check "sensitive, never extractable, encrypt/decrypt only, no wrap/unwrap" \
    key_is_locked_down "$block"
check "--read-object cannot read its value" cannot_read "$id"
check "the token said why" grep -qi 'sensitive\|failed\|error' read.log

echo "== control: an extractable key fails the same checks"
tool --keygen --key-type AES:32 --label control --id c0ffee --extractable >/dev/null 2>&1 ||
    { echo "pkcs11-tool --keygen failed" >&2; exit 99; }
control=$(object_block control)
check "pkcs11-tool lists the control key" [ -n "$control" ]
if key_is_locked_down "$control"; then
    fail "the attribute check accepts an extractable key"
else
    pass "the attribute check refuses an extractable key"
fi
# pkcs11-tool generates it with CKA_SENSITIVE false. NSS softokn keeps every secret key in its
# database sensitive all the same: no readable key exists there to show the read check sees one.
if printf '%s\n' "$(attr_line "$control" Access)" | grep -Eq '(^|, )sensitive(,|$)'; then
    check "only a token other than SoftHSM makes the control key sensitive" \
        [ "$P11KMS_TEST_TOKEN" != softhsm ]
    check "the token refuses the sensitive control key's value" cannot_read c0ffee
    echo "not run on this token: the read check's control (the token made the control key" \
        "sensitive though it was generated with CKA_SENSITIVE false: no key here is readable)"
elif cannot_read c0ffee; then
    fail "the read check misses a readable key"
else
    pass "the read check sees a readable key"
fi

echo "== disabled: the state lives in the key record; the key object is never rewritten"
# (SoftHSM rewrites an object file in place on C_SetAttributeValue: a crash would lose the key.)
expect_ok "disable-key" disable-key --key-id "$key"
printf secret >plain.bin
expect_fail 3 DisabledException encrypt --key-id "$key" --plaintext fileb://plain.bin
block=$(object_block "$label")
check "the disabled key's object is unchanged and locked down" key_is_locked_down "$block"
expect_ok "enable-key" enable-key --key-id "$key"
block=$(object_block "$label")
check "enabled again: encrypt/decrypt, locked down" key_is_locked_down "$block"

echo "== rotation: the new version is locked down too"
expect_ok "rotate-key-on-demand" rotate-key-on-demand --key-id "$key"
block2=$(object_block "p11kms/$key/v2")
check "pkcs11-tool lists version 2" [ -n "$block2" ]
check "version 2 is locked down" key_is_locked_down "$block2"
check "version 2 cannot be read" cannot_read "$(printf '%s' "$key" | tr -d '-')00000002"
block=$(object_block "$label")
check "version 1 is kept for decryption" key_is_locked_down "$block"

cli_finish
