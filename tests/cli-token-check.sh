#!/bin/sh
# The capability check from the command line (doc/tokens.md): a token without CKM_AES_GCM
# (tests/pkcs11-shim.c hides it, as openCryptoki 3.8 lacks it) is refused at open, by every
# command, with one line naming the token, the mechanism and what to do, and no key is created;
# `p11kms token info` still opens it and shows the capability table with pass/fail.
set -u
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

shim="$P11KMS_BUILDDIR/tests/.libs/pkcs11-shim.so"
[ -f "$shim" ] || { echo "missing $shim (make check builds it)" >&2; exit 99; }

echo "== the test token passes every check"
expect_ok "token info" token info
jq_check "can serve" '.CanServe == true'
jq_check "every check passes" '[.Capabilities[] | select(.Result != "pass")] | length == 0'
jq_check "GCM, key generation, HMAC and the self-test are required" \
    '[.Capabilities[] | select(.Required) | .Check] == ["CKM_AES_KEY_GEN","CKM_AES_GCM","CKM_SHA256_HMAC","AES-GCM self-test"]'
expect_ok "token info --output text" token info --output text
check "text output lists the self-test" grep -q "AES-GCM self-test" out.json

echo "== the same token through a module without CKM_AES_GCM (0x1087)"
# The shim forwards to $P11KMS_TEST_MODULE with $P11KMS_TEST_MODULE_ARGS (NSS softokn's
# configdir=...; the config's module-args reach the shim, which records them).
sed "s|^  module: .*|  module: $shim|" "$P11KMS_CONFIG" >no-gcm.yaml
export P11KMS_TEST_MODULE P11KMS_SHIM_HIDE=0x1087
expect_fail 8 UnsupportedOperationException --config no-gcm.yaml list-keys
check "the refusal names the token" grep -qF "token \"$P11KMS_TEST_TOKEN_LABEL\"" err.txt
check "the refusal names the mechanism" grep -q 'CKM_AES_GCM: not offered (CKR_MECHANISM_INVALID)' err.txt
check "the refusal says what to do" grep -q 'use a token that offers it' err.txt
expect_fail 8 UnsupportedOperationException --config no-gcm.yaml create-key --description never
check "create-key refused by the capability check" grep -q 'CKM_AES_GCM' err.txt

expect_ok "token info on the refused token" --config no-gcm.yaml token info
jq_check "cannot serve" '.CanServe == false'
jq_check "CKM_AES_GCM fails" '.Capabilities[] | select(.Check == "CKM_AES_GCM") | .Result == "fail"'
jq_check "the self-test fails" '.Capabilities[] | select(.Check == "AES-GCM self-test") | .Result == "fail"'
jq_check "key generation passes" '.Capabilities[] | select(.Check == "CKM_AES_KEY_GEN") | .Result == "pass"'
unset P11KMS_SHIM_HIDE

echo "== a token that refuses a key as NSS softokn does (CKR_KEY_TYPE_INCONSISTENT)"
expect_ok "create-key" create-key --description refused-by-token
key=$(field .KeyMetadata.KeyId)
printf 'plain' >plain.txt
sed "s|^  module: .*|  module: $shim|" "$P11KMS_CONFIG" >refusing.yaml
# after the one C_EncryptInit of the capability self-test at open
export P11KMS_SHIM_FAIL=C_EncryptInit:0x63:1
expect_fail 4 KMSInvalidStateException --config refusing.yaml \
    encrypt --key-id "$key" --plaintext fileb://plain.txt
unset P11KMS_SHIM_FAIL
check "explained from the record, not a token error" grep -q 'the token refuses key' err.txt
expect_ok "schedule-key-deletion" schedule-key-deletion --key-id "$key" --pending-window-in-days 7

echo "== no key was created on the way"
expect_ok "list-keys through the real module" list-keys
jq_check "only the key made above" '.Keys | length == 1'
cli_finish
