#!/bin/sh
# Imported key material (BYOK): the flow of the Aurora write-up with openssl, verbatim, then
# every refusal of the issue with its exception class and exit status.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
command -v openssl >/dev/null 2>&1 || { echo "openssl not found" >&2; exit 99; }

# get_params KEY ALG: get-parameters-for-import, public key and token into files as the
# write-up decodes them.
get_params() {
    expect_ok "get-parameters-for-import $2" get-parameters-for-import --key-id "$1" \
        --wrapping-algorithm "$2" --wrapping-key-spec RSA_2048
    field .PublicKey | base64 -d >WrappingPublicKey.bin
    field .ImportToken | base64 -d >ImportToken.bin
}

# import KEY FILE [TOKEN]: import-key-material with fileb:// inputs.
import() {
    p11kms import-key-material --key-id "$1" --encrypted-key-material "fileb://$2" \
        --import-token "fileb://${3:-ImportToken.bin}" \
        --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE
}

expect_state() {
    expect_ok "describe-key $1" describe-key --key-id "$1"
    jq_check "key is $2" ".KeyMetadata.KeyState == \"$2\""
}

echo "== the write-up's flow (RSAES_OAEP_SHA_1)"
expect_ok "create-key --origin EXTERNAL" create-key --origin EXTERNAL --description byok
key=$(field .KeyMetadata.KeyId)
jq_check "PendingImport, EXTERNAL, no expiration model yet" \
    '.KeyMetadata.KeyState == "PendingImport" and .KeyMetadata.Origin == "EXTERNAL"
     and (.KeyMetadata | has("ExpirationModel") | not)'
now=$(date +%s)
get_params "$key" RSAES_OAEP_SHA_1
jq_check "KeyId, ImportToken, PublicKey, ParametersValidTo in 24 hours" \
    "(.KeyId | endswith(\"$key\")) and (.ImportToken | length > 0) and (.PublicKey | length > 0)
     and (.ParametersValidTo >= $now + 86400 - 60)
     and (.ParametersValidTo <= $(date +%s) + 86400 + 60)"
check "PublicKey is a DER SubjectPublicKeyInfo of RSA 2048" \
    sh -c 'openssl pkey -pubin -inform DER -in WrappingPublicKey.bin -noout -text | grep -q "2048 bit"'

openssl rand -out PlaintextKeyMaterial.bin 32
openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin \
    -inkey WrappingPublicKey.bin -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha1
expect_ok "import-key-material (openssl pkeyutl)" import-key-material --key-id "$key" \
    --encrypted-key-material fileb://EncryptedKeyMaterial.bin \
    --import-token fileb://ImportToken.bin --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE
check "import-key-material prints nothing" [ ! -s out.json ]
expect_ok "describe-key after import" describe-key --key-id "$key"
jq_check "Enabled, ExpirationModel KEY_MATERIAL_DOES_NOT_EXPIRE, no ValidTo" \
    '.KeyMetadata.KeyState == "Enabled" and .KeyMetadata.Enabled
     and .KeyMetadata.ExpirationModel == "KEY_MATERIAL_DOES_NOT_EXPIRE"
     and (.KeyMetadata | has("ValidTo") | not)'

printf 'customer data under imported material\n' >data.txt
expect_ok "encrypt a file" encrypt --key-id "$key" --plaintext fileb://data.txt \
    --encryption-context app=byok
b64_to_file .CiphertextBlob data.ct
expect_ok "decrypt" decrypt --ciphertext-blob fileb://data.ct --encryption-context app=byok
b64_to_file .Plaintext data.out
check "round trip" cmp -s data.txt data.out

echo "== independent check: OpenSSL alone opens the blob with PlaintextKeyMaterial.bin"
# python3-cryptography (Debian's /usr/bin/python3) and the format of doc/ciphertext-format.md
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import cryptography' 2>/dev/null ||
    { echo "python3-cryptography not found (apt-get install python3-cryptography)" >&2; exit 99; }
check "the blob opens under the user's own key material" sh -c \
    "/usr/bin/python3 '$P11KMS_SRCDIR/tests/import-check.py' PlaintextKeyMaterial.bin data.ct \
     app=byok >independent.out && cmp -s data.txt independent.out"
check "the blob does not open under other key material" sh -c \
    "openssl rand -out Unrelated.bin 32 && ! /usr/bin/python3 \
     '$P11KMS_SRCDIR/tests/import-check.py' Unrelated.bin data.ct app=byok 2>/dev/null"
check "the blob does not open under another context" sh -c \
    "! /usr/bin/python3 '$P11KMS_SRCDIR/tests/import-check.py' PlaintextKeyMaterial.bin data.ct \
     app=other 2>/dev/null"

echo "== delete the material, decrypt refused, re-import the same file"
expect_ok "delete-imported-key-material" delete-imported-key-material --key-id "$key"
expect_state "$key" PendingImport
jq_check "no ExpirationModel while PendingImport" '.KeyMetadata | has("ExpirationModel") | not'
expect_fail 4 KMSInvalidStateException decrypt --ciphertext-blob fileb://data.ct \
    --encryption-context app=byok
expect_fail 4 KMSInvalidStateException encrypt --key-id "$key" --plaintext fileb://data.txt
expect_fail 4 KMSInvalidStateException delete-imported-key-material --key-id "$key"
import "$key" EncryptedKeyMaterial.bin
check "re-import of the same file succeeds (exit $status: $(cat err.txt))" [ "$status" -eq 0 ]
expect_ok "decrypt the old ciphertext again" decrypt --ciphertext-blob fileb://data.ct \
    --encryption-context app=byok
b64_to_file .Plaintext data.out
check "old ciphertext decrypts to the file" cmp -s data.txt data.out
expect_fail 4 KMSInvalidStateException import-key-material --key-id "$key" \
    --encrypted-key-material fileb://EncryptedKeyMaterial.bin --import-token fileb://ImportToken.bin

echo "== a different key material is refused"
expect_ok "delete-imported-key-material again" delete-imported-key-material --key-id "$key"
openssl rand -out OtherKeyMaterial.bin 32
openssl pkeyutl -encrypt -in OtherKeyMaterial.bin -out OtherEncrypted.bin \
    -inkey WrappingPublicKey.bin -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha1
expect_fail 15 IncorrectKeyMaterialException import-key-material --key-id "$key" \
    --encrypted-key-material fileb://OtherEncrypted.bin --import-token fileb://ImportToken.bin
expect_state "$key" PendingImport

echo "== the older openssl rsautl -encrypt -oaep spelling"
openssl rsautl -encrypt -oaep -pubin -keyform DER -inkey WrappingPublicKey.bin \
    -in PlaintextKeyMaterial.bin -out RsautlEncrypted.bin 2>/dev/null
expect_ok "import-key-material (openssl rsautl)" import-key-material --key-id "$key" \
    --encrypted-key-material fileb://RsautlEncrypted.bin --import-token fileb://ImportToken.bin
expect_ok "decrypt after the rsautl import" decrypt --ciphertext-blob fileb://data.ct \
    --encryption-context app=byok
b64_to_file .Plaintext data.out
check "same material through rsautl" cmp -s data.txt data.out
expect_fail 8 UnsupportedOperationException rotate-key-on-demand --key-id "$key"
expect_fail 8 UnsupportedOperationException enable-key-rotation --key-id "$key"

echo "== refused ciphertexts leave the key PendingImport"
expect_ok "create a second EXTERNAL key" create-key --origin EXTERNAL
key2=$(field .KeyMetadata.KeyId)
get_params "$key2" RSAES_OAEP_SHA_1
cp ImportToken.bin ImportToken2.bin
cp WrappingPublicKey.bin WrappingPublicKey2.bin
openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -out Pkcs1.bin -inkey WrappingPublicKey2.bin \
    -keyform DER -pubin -pkeyopt rsa_padding_mode:pkcs1
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Pkcs1.bin --import-token fileb://ImportToken2.bin
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://EncryptedKeyMaterial.bin --import-token fileb://ImportToken2.bin
openssl rand -out Short.bin 16
openssl pkeyutl -encrypt -in Short.bin -out ShortEncrypted.bin -inkey WrappingPublicKey2.bin \
    -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://ShortEncrypted.bin --import-token fileb://ImportToken2.bin
openssl rand -out Long.bin 48
openssl pkeyutl -encrypt -in Long.bin -out LongEncrypted.bin -inkey WrappingPublicKey2.bin \
    -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://LongEncrypted.bin --import-token fileb://ImportToken2.bin
openssl pkeyutl -encrypt -in PlaintextKeyMaterial.bin -out Good2.bin -inkey WrappingPublicKey2.bin \
    -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1
for offset in 0 100 255; do
    flip_byte Good2.bin Tampered.bin "$offset"
    expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key2" \
        --encrypted-key-material fileb://Tampered.bin --import-token fileb://ImportToken2.bin
done
head -c 255 Good2.bin >Truncated.bin
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Truncated.bin --import-token fileb://ImportToken2.bin
expect_state "$key2" PendingImport

echo "== import tokens"
expect_fail 16 InvalidImportTokenException import-key-material --key-id "$key" \
    --encrypted-key-material fileb://Good2.bin --import-token fileb://ImportToken2.bin
check "the message says the token is for another key" grep -q "another key" err.txt
for offset in 0 5 40 72; do
    flip_byte ImportToken2.bin BadToken.bin "$offset" 128
    expect_fail 16 InvalidImportTokenException import-key-material --key-id "$key2" \
        --encrypted-key-material fileb://Good2.bin --import-token fileb://BadToken.bin
done
head -c 72 ImportToken2.bin >ShortToken.bin
expect_fail 16 InvalidImportTokenException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Good2.bin --import-token fileb://ShortToken.bin
expect_state "$key2" PendingImport
expect_fail 1 ValidationException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Good2.bin --import-token fileb://ImportToken2.bin \
    --expiration-model KEY_MATERIAL_EXPIRES --valid-to 2099-01-01T00:00:00Z
valid_to=$(($(date +%s) + 30 * 86400))
expect_ok "import with KEY_MATERIAL_EXPIRES" import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Good2.bin --import-token fileb://ImportToken2.bin \
    --expiration-model KEY_MATERIAL_EXPIRES --valid-to "$valid_to"
expect_ok "describe-key shows ExpirationModel and ValidTo" describe-key --key-id "$key2"
jq_check "Enabled, KEY_MATERIAL_EXPIRES, ValidTo" \
    ".KeyMetadata.KeyState == \"Enabled\" and .KeyMetadata.ExpirationModel == \"KEY_MATERIAL_EXPIRES\"
     and .KeyMetadata.ValidTo == $valid_to"
expect_fail 1 ValidationException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Good2.bin --import-token fileb://ImportToken2.bin \
    --expiration-model KEY_MATERIAL_EXPIRES
expect_fail 1 ValidationException import-key-material --key-id "$key2" \
    --encrypted-key-material fileb://Good2.bin --import-token fileb://ImportToken2.bin \
    --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE --valid-to "$valid_to"

echo "== wrapping algorithms the token has, and those it lacks"
expect_fail 8 UnsupportedOperationException get-parameters-for-import --key-id "$key2" \
    --wrapping-algorithm RSAES_PKCS1_V1_5 --wrapping-key-spec RSA_2048
expect_fail 1 ValidationException get-parameters-for-import --key-id "$key2" \
    --wrapping-algorithm RSAES_OAEP_SHA_512 --wrapping-key-spec RSA_2048
expect_fail 1 ValidationException get-parameters-for-import --key-id "$key2" \
    --wrapping-algorithm RSAES_OAEP_SHA_1 --wrapping-key-spec RSA_1024
expect_ok "create an AWS_KMS key" create-key
generated=$(field .KeyMetadata.KeyId)
expect_fail 8 UnsupportedOperationException get-parameters-for-import --key-id "$generated" \
    --wrapping-algorithm RSAES_OAEP_SHA_1 --wrapping-key-spec RSA_2048
expect_fail 8 UnsupportedOperationException delete-imported-key-material --key-id "$generated"
# Whether the token performs CKM_RSA_PKCS_OAEP with SHA-256 is the token's business (SoftHSM
# 2.6.1: SHA-1 only; NSS softokn: both). Either get-parameters-for-import refuses it, naming the
# token, or the parameters it hands out work end to end: never an offer that cannot be used.
for alg in RSAES_OAEP_SHA_256 RSA_AES_KEY_WRAP_SHA_256; do
    expect_ok "create an EXTERNAL key for $alg" create-key --origin EXTERNAL
    key_sha256=$(field .KeyMetadata.KeyId)
    p11kms get-parameters-for-import --key-id "$key_sha256" --wrapping-algorithm "$alg" \
        --wrapping-key-spec RSA_2048
    if [ "$status" -ne 0 ]; then
        check "$alg refused with exit 8 UnsupportedOperationException" sh -c \
            "[ $status -eq 8 ] && grep -q '^p11kms: UnsupportedOperationException: ' err.txt"
        check "the refusal of $alg names the token ($P11KMS_TEST_URI)" \
            grep -qF "$P11KMS_TEST_URI" err.txt
        continue
    fi
    pass "$alg offered by the token"
    field .PublicKey | base64 -d >WrappingPublicKey.bin
    field .ImportToken | base64 -d >ImportToken.bin
    openssl rand -out PlaintextKeyMaterial256.bin 32
    oaep="-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256"
    if [ "$alg" = RSAES_OAEP_SHA_256 ]; then
        # shellcheck disable=SC2086 # $oaep is a list of options
        openssl pkeyutl -encrypt -in PlaintextKeyMaterial256.bin -out Encrypted256.bin \
            -inkey WrappingPublicKey.bin -keyform DER -pubin $oaep
    else
        openssl rand -out aes-key256.bin 32
        openssl enc -id-aes256-wrap-pad -K "$(od -An -tx1 aes-key256.bin | tr -d ' \n')" \
            -iv A65959A6 -in PlaintextKeyMaterial256.bin -out material256-wrapped.bin
        # shellcheck disable=SC2086
        openssl pkeyutl -encrypt -in aes-key256.bin -out aes-key256-wrapped.bin \
            -inkey WrappingPublicKey.bin -keyform DER -pubin $oaep
        cat aes-key256-wrapped.bin material256-wrapped.bin >Encrypted256.bin
    fi
    expect_ok "import $alg material" import-key-material --key-id "$key_sha256" \
        --encrypted-key-material fileb://Encrypted256.bin --import-token fileb://ImportToken.bin \
        --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE
    expect_ok "encrypt under $alg material" encrypt --key-id "$key_sha256" \
        --plaintext fileb://data.txt
    b64_to_file .CiphertextBlob data256.ct
    check "OpenSSL alone opens it with the $alg material" sh -c \
        "/usr/bin/python3 '$P11KMS_SRCDIR/tests/import-check.py' PlaintextKeyMaterial256.bin \
         data256.ct >independent256.out && cmp -s data.txt independent256.out"
done
expect_ok "create a third EXTERNAL key" create-key --origin EXTERNAL
key3=$(field .KeyMetadata.KeyId)

echo "== RSA_AES_KEY_WRAP_SHA_1: the AWS-documented openssl commands"
get_params "$key3" RSA_AES_KEY_WRAP_SHA_1
openssl rand -out PlaintextKeyMaterial3.bin 32
openssl rand -out aes-key.bin 32
openssl enc -id-aes256-wrap-pad -K "$(od -An -tx1 aes-key.bin | tr -d ' \n')" -iv A65959A6 \
    -in PlaintextKeyMaterial3.bin -out key-material-wrapped.bin
openssl pkeyutl -encrypt -in aes-key.bin -out aes-key-wrapped.bin -inkey WrappingPublicKey.bin \
    -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 \
    -pkeyopt rsa_mgf1_md:sha1
cat aes-key-wrapped.bin key-material-wrapped.bin >EncryptedKeyMaterial3.bin
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key3" \
    --encrypted-key-material fileb://aes-key-wrapped.bin --import-token fileb://ImportToken.bin
flip_byte EncryptedKeyMaterial3.bin Tampered3.bin 260 # in the AES-KWP-wrapped material
expect_fail 5 InvalidCiphertextException import-key-material --key-id "$key3" \
    --encrypted-key-material fileb://Tampered3.bin --import-token fileb://ImportToken.bin
expect_ok "import RSA_AES_KEY_WRAP_SHA_1 material" import-key-material --key-id "$key3" \
    --encrypted-key-material fileb://EncryptedKeyMaterial3.bin --import-token fileb://ImportToken.bin
expect_ok "encrypt under it" encrypt --key-id "$key3" --plaintext fileb://data.txt
b64_to_file .CiphertextBlob data3.ct
expect_ok "decrypt under it" decrypt --ciphertext-blob fileb://data3.ct
b64_to_file .Plaintext data3.out
check "round trip under RSA_AES_KEY_WRAP material" cmp -s data.txt data3.out
check "OpenSSL alone opens it with PlaintextKeyMaterial3.bin" sh -c \
    "/usr/bin/python3 '$P11KMS_SRCDIR/tests/import-check.py' PlaintextKeyMaterial3.bin data3.ct \
     >independent3.out && cmp -s data.txt independent3.out"

echo "== maintain reports nothing to repair"
expect_ok "maintain" maintain
check "maintain destroyed nothing that is still valid" sh -c '! grep -q "destroyed" out.json'

cli_finish
