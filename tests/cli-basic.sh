#!/bin/sh
# p11kms CLI: keys, encrypt/decrypt with encryption contexts, data keys, random, re-encrypt,
# output formats, the one-line error contract and exit statuses, token info, policy check.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"

echo "== help and version"
expect_ok "--version" --version
check "--version names p11kms" grep -q '^p11kms [0-9]' out.json
expect_ok "--help" --help
check "--help lists encrypt" grep -q '^  encrypt ' out.json
expect_ok "encrypt --help" encrypt --help
check "encrypt --help shows --plaintext" grep -q -- '--plaintext BLOB' out.json
expect_ok "help generate-child-key" help generate-child-key
check "generate-child-key help explains --parent" grep -q -- '--parent BLOB\[@CONTEXT\]' out.json

echo "== usage errors: exit 1, ValidationException, one line"
expect_fail 1 ValidationException
expect_fail 1 ValidationException no-such-command
expect_fail 1 ValidationException token
expect_fail 1 ValidationException describe-key
expect_fail 1 ValidationException describe-key --key-id
expect_fail 1 ValidationException describe-key --key-id k --bogus x
expect_fail 1 ValidationException --bogus list-keys
expect_fail 1 ValidationException list-keys extra-word
expect_fail 1 ValidationException --output yaml list-keys
expect_fail 1 ValidationException describe-key --key-id a --key-id b
expect_fail 1 ValidationException generate-random --number-of-bytes 12x
expect_fail 1 ValidationException generate-random --number-of-bytes -1
expect_fail 1 ValidationException generate-random --number-of-bytes ' 5'
expect_fail 1 ValidationException generate-random --number-of-bytes 0
expect_fail 1 ValidationException generate-random --number-of-bytes 99999999999999999999999
expect_fail 1 ValidationException policy check
grep -q "p11kms describe-key --help\|see" err.txt && pass "usage errors carry a hint" ||
    fail "usage errors carry a hint: $(cat err.txt)"

echo "== create, describe, list"
expect_ok "create-key" create-key --description "cli basic"
key=$(field .KeyMetadata.KeyId)
arn=$(field .KeyMetadata.Arn)
jq_check "KeyMetadata fields" '.KeyMetadata | .KeyState == "Enabled" and .Enabled == true
    and .Description == "cli basic" and .KeyUsage == "ENCRYPT_DECRYPT"
    and .KeyManager == "CUSTOMER" and .KeySpec == "SYMMETRIC_DEFAULT"
    and .Origin == "AWS_KMS" and .EncryptionAlgorithms == ["SYMMETRIC_DEFAULT"]
    and (.CreationDate | type) == "number" and .CurrentKeyVersion == 1
    and (has("DeletionDate") | not)'
check "key id is a UUID" sh -c "echo '$key' | grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$'"
check "ARN is a KMS ARN of the configured partition, region and account" \
    [ "$arn" = "arn:aws:kms:local:000000000000:key/$key" ]
check "the library warns once about policy: none" [ "$(wc -l <warn.txt)" -eq 1 ]
expect_ok "describe-key by ARN" describe-key --key-id "$arn"
jq_check "describe-key by ARN finds the key" ".KeyMetadata.KeyId == \"$key\""
expect_ok "global options after the command" describe-key --key-id "$key" --output json
jq_check "describe-key by id" ".KeyMetadata.Arn == \"$arn\""
expect_ok "create a second key" --output json create-key
key2=$(field .KeyMetadata.KeyId)
arn2=$(field .KeyMetadata.Arn)
expect_ok "list-keys" list-keys
jq_check "list-keys has both keys" "[.Keys[].KeyId] | contains([\"$key\", \"$key2\"])"
jq_check "list-keys gives KeyArn" ".Keys[] | select(.KeyId == \"$key\") | .KeyArn == \"$arn\""

echo "== not found"
expect_fail 2 NotFoundException describe-key --key-id 00000000-0000-4000-8000-000000000000
expect_fail 2 NotFoundException describe-key --key-id alias/no-such-alias
expect_fail 2 NotFoundException encrypt --key-id alias/no-such-alias --plaintext aGVsbG8=

echo "== --output text"
expect_ok "describe-key --output text" --output text describe-key --key-id "$key"
check "text: KEYMETADATA line with the ARN" grep -q "^KEYMETADATA	$arn	" out.json
check "text: ENCRYPTIONALGORITHMS line" grep -q "^ENCRYPTIONALGORITHMS	SYMMETRIC_DEFAULT\$" out.json
expect_ok "list-keys --output text" list-keys --output=text
check "text: KEYS line per key" grep -q "^KEYS	$arn	$key\$" out.json

echo "== encrypt / decrypt a binary file with a two-pair context"
head -c 3000 /dev/urandom >plain.bin
printf '\000\001\002' >>plain.bin
expect_ok "encrypt fileb:// with shorthand context" encrypt --key-id "$key" \
    --plaintext fileb://plain.bin --encryption-context purpose=test,tenant=acme
jq_check "encrypt output" ".KeyId == \"$arn\" and .EncryptionAlgorithm == \"SYMMETRIC_DEFAULT\"
    and (.CiphertextBlob | length) > 4000"
b64_to_file .CiphertextBlob ct.bin
field .CiphertextBlob >ct.b64
expect_ok "decrypt with the JSON form, pairs reordered" decrypt --ciphertext-blob fileb://ct.bin \
    --encryption-context '{"tenant":"acme","purpose":"test"}'
b64_to_file .Plaintext back.bin
check "decrypted bytes equal the file" cmp -s plain.bin back.bin
jq_check "decrypt output names the key" ".KeyId == \"$arn\" and .EncryptionAlgorithm == \"SYMMETRIC_DEFAULT\""
expect_ok "decrypt with the context reordered in shorthand" decrypt \
    --ciphertext-blob fileb://ct.bin --encryption-context tenant=acme,purpose=test
expect_ok "decrypt a base64 literal blob" decrypt --ciphertext-blob "$(cat ct.b64)" \
    --encryption-context purpose=test,tenant=acme
b64_to_file .Plaintext back.bin
check "base64 literal blob decrypts" cmp -s plain.bin back.bin
expect_ok "decrypt file:// (base64 text) with --key-id" decrypt --ciphertext-blob file://ct.b64 \
    --key-id "$key" --encryption-context purpose=test,tenant=acme
expect_ok "decrypt with --key-id as ARN" decrypt --ciphertext-blob fileb://ct.bin \
    --key-id "$arn" --encryption-context purpose=test,tenant=acme
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://ct.bin \
    --encryption-context purpose=test,tenant=evil
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://ct.bin \
    --encryption-context purpose=test
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://ct.bin
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://ct.bin \
    --encryption-context purpose=test,tenant=acme,extra=1
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://ct.bin \
    --encryption-context Purpose=test,tenant=acme
expect_fail 6 IncorrectKeyException decrypt --ciphertext-blob fileb://ct.bin --key-id "$key2" \
    --encryption-context purpose=test,tenant=acme
# Flip one bit in the middle of the blob (the sealed part).
flip_byte ct.bin tampered.bin "$(($(wc -c <ct.bin) / 2))"
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://tampered.bin \
    --encryption-context purpose=test,tenant=acme
head -c 20 ct.bin >short.bin
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://short.bin

echo "== plaintext forms and input limits"
expect_ok "encrypt a base64 literal" encrypt --key-id "$key" --plaintext aGVsbG8gd29ybGQ=
b64_to_file .CiphertextBlob hello.ct
expect_ok "decrypt it" decrypt --ciphertext-blob fileb://hello.ct
check "base64 literal plaintext round trip" [ "$(field .Plaintext | base64 -d)" = "hello world" ]
base64 plain.bin >plain.b64
check "plain.b64 is line-wrapped" [ "$(wc -l <plain.b64)" -gt 1 ]
expect_ok "encrypt file:// (wrapped base64 text)" encrypt --key-id "$key" --plaintext file://plain.b64
b64_to_file .CiphertextBlob ct2.bin
expect_ok "decrypt it" decrypt --ciphertext-blob fileb://ct2.bin
b64_to_file .Plaintext back.bin
check "file:// plaintext round trip" cmp -s plain.bin back.bin
expect_fail 1 ValidationException encrypt --key-id "$key" --plaintext 'not base64!'
expect_fail 1 ValidationException encrypt --key-id "$key" --plaintext aGVsbG8
# Padding bits must be zero: one base64 spelling per byte string ("QR==" is not "QQ==").
expect_fail 1 ValidationException encrypt --key-id "$key" --plaintext QR==
expect_fail 23 IOError encrypt --key-id "$key" --plaintext fileb://no-such-file
head -c 4097 /dev/urandom >big.bin
expect_fail 1 ValidationException encrypt --key-id "$key" --plaintext fileb://big.bin
head -c 2000000 /dev/zero >huge.bin
expect_fail 1 ValidationException decrypt --ciphertext-blob fileb://huge.bin
expect_fail 1 ValidationException encrypt --key-id "$key" --plaintext aGVsbG8= \
    --encryption-context 'a=1,a=2'
expect_fail 1 ValidationException encrypt --key-id "$key" --plaintext aGVsbG8= \
    --encryption-context '{"a":1}'

echo "== generate-data-key"
expect_ok "generate-data-key AES_256" generate-data-key --key-id "$key" --key-spec AES_256 \
    --encryption-context '{"aws:rds:db-id":"db-1"}'
jq_check "data key output" ".KeyId == \"$arn\" and has(\"CiphertextBlob\") and has(\"Plaintext\")"
b64_to_file .Plaintext dk.bin
b64_to_file .CiphertextBlob dk.ct
check "AES_256 data key is 32 bytes" [ "$(wc -c <dk.bin)" -eq 32 ]
expect_ok "decrypt the data key blob" decrypt --ciphertext-blob fileb://dk.ct \
    --encryption-context aws:rds:db-id=db-1
b64_to_file .Plaintext dk2.bin
check "decrypt gives the same data key" cmp -s dk.bin dk2.bin
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://dk.ct \
    --encryption-context aws:rds:db-id=db-2
expect_ok "generate-data-key AES_128" generate-data-key --key-id "$key" --key-spec AES_128
check "AES_128 data key is 16 bytes" [ "$(field .Plaintext | base64 -d | wc -c)" -eq 16 ]
expect_ok "generate-data-key --number-of-bytes 64" generate-data-key --key-id "$key" \
    --number-of-bytes 64
check "64-byte data key" [ "$(field .Plaintext | base64 -d | wc -c)" -eq 64 ]
expect_fail 1 ValidationException generate-data-key --key-id "$key"
expect_fail 1 ValidationException generate-data-key --key-id "$key" --key-spec AES_256 \
    --number-of-bytes 32
expect_fail 1 ValidationException generate-data-key --key-id "$key" --key-spec AES_512
expect_fail 1 ValidationException generate-data-key --key-id "$key" --number-of-bytes 1025
expect_ok "generate-data-key-without-plaintext" generate-data-key-without-plaintext \
    --key-id "$key" --key-spec AES_256 --encryption-context k=v
jq_check "no Plaintext field" "(has(\"Plaintext\") | not) and .KeyId == \"$arn\""
b64_to_file .CiphertextBlob dkw.ct
expect_ok "decrypt the blob without plaintext" decrypt --ciphertext-blob fileb://dkw.ct \
    --encryption-context k=v
check "its plaintext is 32 bytes" [ "$(field .Plaintext | base64 -d | wc -c)" -eq 32 ]

echo "== generate-random"
expect_ok "generate-random 32" generate-random --number-of-bytes 32
b64_to_file .Plaintext r1.bin
check "32 random bytes" [ "$(wc -c <r1.bin)" -eq 32 ]
expect_ok "generate-random 32 again" generate-random --number-of-bytes=32
b64_to_file .Plaintext r2.bin
check "two random draws differ" sh -c '! cmp -s r1.bin r2.bin'
expect_ok "generate-random 1024" generate-random --number-of-bytes 1024
check "1024 random bytes" [ "$(field .Plaintext | base64 -d | wc -c)" -eq 1024 ]
expect_fail 1 ValidationException generate-random --number-of-bytes 1025
expect_ok "generate-random --output text" --output text generate-random --number-of-bytes 16
check "text output is the base64 alone" [ "$(base64 -d <out.json | wc -c)" -eq 16 ]

echo "== re-encrypt"
expect_ok "re-encrypt to the second key with a new context" re-encrypt \
    --ciphertext-blob fileb://ct.bin --source-encryption-context purpose=test,tenant=acme \
    --destination-key-id "$key2" --destination-encryption-context tenant=other
jq_check "re-encrypt output" ".SourceKeyId == \"$arn\" and .KeyId == \"$arn2\"
    and .SourceEncryptionAlgorithm == \"SYMMETRIC_DEFAULT\"
    and .DestinationEncryptionAlgorithm == \"SYMMETRIC_DEFAULT\""
b64_to_file .CiphertextBlob re.bin
expect_ok "decrypt the re-encrypted blob" decrypt --ciphertext-blob fileb://re.bin \
    --encryption-context tenant=other
b64_to_file .Plaintext back.bin
check "re-encrypted blob gives the file" cmp -s plain.bin back.bin
jq_check "decrypted under the second key" ".KeyId == \"$arn2\""
expect_fail 6 IncorrectKeyException decrypt --ciphertext-blob fileb://re.bin --key-id "$key" \
    --encryption-context tenant=other
expect_fail 5 InvalidCiphertextException re-encrypt --ciphertext-blob fileb://ct.bin \
    --source-encryption-context purpose=test --destination-key-id "$key2"
expect_fail 6 IncorrectKeyException re-encrypt --ciphertext-blob fileb://ct.bin \
    --source-key-id "$key2" --source-encryption-context purpose=test,tenant=acme \
    --destination-key-id "$key2"
expect_fail 1 ValidationException re-encrypt --ciphertext-blob fileb://ct.bin

echo "== token info"
expect_ok "token info" token info
jq_check "token info names the token" ".Token.Label == \"$P11KMS_TEST_TOKEN_LABEL\""
jq_check "AES-GCM is supported" '[.Mechanisms[] | select(.Name | test("AES_GCM")) | .Supported] == [true]'
jq_check "every mechanism has a purpose" '[.Mechanisms[] | .Purpose | length > 0] | all'
expect_ok "token info --output text" token info --output text
check "text: a MECHANISMS line" grep -q '^MECHANISMS	' out.json

echo "== configuration errors"
expect_fail 19 ConfigurationError --config /nonexistent/p11kms.yaml list-keys
printf 'token:\n  module: [\n' >bad.yaml
expect_fail 19 ConfigurationError --config bad.yaml list-keys

echo "== policy check (no configuration needed)"
cp "$P11KMS_SRCDIR/conf/policy.yaml" good-policy.yaml
expect_ok "policy check of the sample policy" --config /nonexistent policy check good-policy.yaml
check "prints FILE: OK" [ "$(cat out.json)" = "good-policy.yaml: OK" ]
cat >bad-policy.yaml <<'POLICY'
version: 1
statements:
  - sid: broken
    effect: maybe
    principals: [unix:user:alice]
    keys: ["*"]
    actions: [decrypt]
POLICY
if env -u P11KMS_CONFIG "$P11KMS" policy check bad-policy.yaml >out.json 2>err.txt; then
    status=0
else
    status=$?
fi
check "malformed policy: non-zero exit" [ "$status" -ne 0 ]
check "malformed policy: errors as file:line:column" grep -Eq '^bad-policy.yaml:[0-9]+:[0-9]+: ' out.json
check "malformed policy: the error names line 4" grep -q '^bad-policy.yaml:4:' out.json
check "malformed policy: one stderr line" [ "$(wc -l <err.txt)" -eq 1 ]
check "malformed policy: exit status matches the stderr class" \
    grep -q "^p11kms: $(case $status in 18) echo MalformedPolicyDocumentException ;; 1) echo ValidationException ;; *) echo "status-$status" ;; esac): " err.txt
printf 'version: 1\nstatements:\n\t- bad\n' >tab-policy.yaml
p11kms policy check tab-policy.yaml
check "YAML syntax error: non-zero exit and file:line:column" \
    sh -c "[ $status -ne 0 ] && grep -Eq '^tab-policy.yaml:[0-9]+:[0-9]+: ' out.json"
# A missing file: the policy layer reports it as MalformedPolicyDocumentException (18); IOError
# (23) would fit as well. Either way: one line, naming the file.
p11kms policy check no-such-policy.yaml
check "missing policy file: exit 18 or 23 (got $status)" sh -c "[ $status -eq 18 ] || [ $status -eq 23 ]"
check "missing policy file: one stderr line naming it" \
    sh -c '[ "$(wc -l <err.txt)" -eq 1 ] && grep -q "^p11kms: [A-Za-z]*: .*no-such-policy.yaml" err.txt'

echo "== policy explain"
expect_ok "policy explain (policy: none)" policy explain --principal unix:user:alice \
    --action decrypt --key-id "$key" --encryption-context a=b
jq_check "explain gives a decision and an explanation" \
    '(.Decision == "Allowed" or .Decision == "Denied") and (.Explanation | length) > 0'
expect_ok "policy explain without --principal: for the caller" policy explain --action decrypt \
    --key-id "$key"
jq_check "a decision for the caller" '.Decision == "Allowed"'
expect_fail 1 ValidationException policy explain --principal unix:user:alice --key-id "$key"

echo "== a policy in force (conf/policy.yaml: alice administers, rds-svc uses alias/rds-*)"
expect_ok "alias for the RDS statements" create-alias --alias-name alias/rds-orders \
    --target-key-id "$key"
sed "s|^policy: none\$|policy: $P11KMS_TEST_ROOT/good-policy.yaml|" "$P11KMS_CONFIG" >with-policy.yaml
check "config with a policy file" grep -q "^policy: $P11KMS_TEST_ROOT/good-policy.yaml" with-policy.yaml
me=$(id -un)
if [ "$me" = alice ] || [ "$me" = bob ] || [ "$me" = rds-svc ]; then
    echo "the test user $me is named in conf/policy.yaml" >&2
    exit 99
fi
expect_fail 7 AccessDeniedException --config with-policy.yaml list-keys
expect_fail 7 AccessDeniedException --config with-policy.yaml describe-key --key-id "$key"
expect_fail 7 AccessDeniedException --config with-policy.yaml encrypt --key-id alias/rds-orders \
    --plaintext aGVsbG8= --encryption-context aws:rds:db-id=db-1
check "no policy: none warning with a policy" [ ! -s warn.txt ]
echo "== policy explain under a policy: about yourself always, about others as an administrator"
expect_ok "explain for yourself without rights: Denied" --config with-policy.yaml policy explain \
    --action list-keys
jq_check "Denied" '.Decision == "Denied"'
expect_ok "explain for yourself, named: Denied" --config with-policy.yaml policy explain \
    --principal "unix:user:$me" --action describe-key --key-id "$key"
jq_check "Denied" '.Decision == "Denied"'
# Refused the same way whatever the subject's decision and whether the key exists.
refusal="p11kms: AccessDeniedException: unix:user:$me is not allowed to explain-policy"
for q in "unix:user:alice --action disable-key --key-id $key" \
    "unix:user:alice --action decrypt --key-id $key" \
    "unix:user:rds-svc --action decrypt --key-id alias/no-such-key" \
    "unix:user:$me unix:user:alice --action create-key"; do
    # shellcheck disable=SC2086 # one question, split into its words
    expect_fail 7 AccessDeniedException --config with-policy.yaml policy explain --principal $q
    check "the refusal names only the caller and explain-policy" [ "$(cat err.txt)" = "$refusal" ]
done
# An administrator of conf/policy.yaml (you, added to key-admins) explains for anyone.
sed "s|^  key-admins:\$|&\\n    - unix:user:$me|" good-policy.yaml >admin-policy.yaml
check "you are one of the key administrators" grep -qx "    - unix:user:$me" admin-policy.yaml
sed "s|^policy: none\$|policy: $P11KMS_TEST_ROOT/admin-policy.yaml|" "$P11KMS_CONFIG" >with-admin.yaml
expect_ok "explain for yourself as an administrator" --config with-admin.yaml policy explain \
    --action explain-policy
jq_check "Allowed, naming admins-create-keys" \
    '.Decision == "Allowed" and (.Explanation | test("admins-create-keys"))'
expect_ok "explain: alice may disable the key" --config with-admin.yaml policy explain \
    --principal unix:user:alice --action disable-key --key-id "$key"
jq_check "Allowed, naming admins-manage" '.Decision == "Allowed" and (.Explanation | test("admins-manage"))'
expect_ok "explain: alice may not decrypt" --config with-admin.yaml policy explain \
    --principal unix:user:alice --action decrypt --key-id "$key"
jq_check "Denied" '.Decision == "Denied"'
expect_ok "explain: rds-svc may decrypt with its context" --config with-admin.yaml policy explain \
    --principal unix:user:rds-svc --action decrypt --key-id alias/rds-orders \
    --encryption-context aws:rds:db-id=db-1
jq_check "Allowed, naming rds-use" '.Decision == "Allowed" and (.Explanation | test("rds-use"))'
expect_ok "explain: rds-svc may not decrypt with another context" --config with-admin.yaml \
    policy explain --principal unix:user:rds-svc --action decrypt --key-id alias/rds-orders \
    --encryption-context aws:rds:db-id=other
jq_check "Denied" '.Decision == "Denied"'
expect_ok "explain --output text" --output text --config with-admin.yaml policy explain \
    --principal unix:user:rds-svc --action decrypt --key-id "$key"
check "text: Decision then Explanation" grep -Eq '^(Allowed|Denied)	.+' out.json

echo "== store migrate (tests/provider-migrate-test.c migrates a format-1 token)"
expect_ok "store migrate on a token without the old layout" store migrate
jq_check "store migrate: nothing to migrate" '.Actions == ["nothing to migrate: the token holds no key record or alias of the old layout"]'

cli_finish
