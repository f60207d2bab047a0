#!/bin/sh
# p11kms CLI: envelope encryption the way RDS and Redshift use KMS.
# RDS: one data key per database instance, bound to {"aws:rds:db-id": ...}; the data itself is
# encrypted by the user with openssl. Redshift: four tiers, master key (token) -> cluster key
# (blob under the master key) -> database key (child of the cluster key) -> block key (child of
# the database key); rotating the master key re-encrypts only the cluster blob.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
command -v openssl >/dev/null 2>&1 || { echo "openssl not found" >&2; exit 99; }
command -v od >/dev/null 2>&1 || { echo "od not found" >&2; exit 99; }

hex() {
    od -An -v -tx1 "$1" | tr -d ' \n'
}

echo "== RDS: a data key per instance, data encrypted by the user"
expect_ok "create the RDS master key" create-key --description "rds"
rds_key=$(field .KeyMetadata.KeyId)
rds_arn=$(field .KeyMetadata.Arn)
expect_ok "alias it" create-alias --alias-name alias/rds-orders --target-key-id "$rds_key"
expect_ok "generate-data-key for db-123" generate-data-key --key-id alias/rds-orders \
    --key-spec AES_256 --encryption-context '{"aws:rds:db-id":"db-123"}'
jq_check "the data key names its master key" ".KeyId == \"$rds_arn\""
b64_to_file .Plaintext rds.key
b64_to_file .CiphertextBlob rds.blob
head -c 200000 /dev/urandom >table.dat
echo "a line of the orders table" >>table.dat
head -c 16 /dev/urandom >rds.iv
openssl enc -aes-256-ctr -K "$(hex rds.key)" -iv "$(hex rds.iv)" -in table.dat -out table.enc
check "the file is encrypted" sh -c '! cmp -s table.dat table.enc'
rm -f rds.key # only the blob is stored beside the data
expect_ok "decrypt the instance key with its context" decrypt --ciphertext-blob fileb://rds.blob \
    --encryption-context aws:rds:db-id=db-123
b64_to_file .Plaintext rds.key
openssl enc -d -aes-256-ctr -K "$(hex rds.key)" -iv "$(hex rds.iv)" -in table.enc -out table.out
check "the data decrypts with the recovered key" cmp -s table.dat table.out
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://rds.blob \
    --encryption-context aws:rds:db-id=db-124
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://rds.blob
expect_fail 5 InvalidCiphertextException decrypt --ciphertext-blob fileb://rds.blob \
    --encryption-context '{"aws:rds:db-id":"db-123","extra":"x"}'

echo "== Redshift: master -> cluster -> database -> block"
expect_ok "create the Redshift master key" create-key --description "redshift"
master=$(field .KeyMetadata.KeyId)
cluster_ctx='{"aws:redshift:arn":"arn:aws:redshift:local:000000000000:cluster:c1","aws:redshift:createtime":"20240101T000000Z"}'
printf '%s\n' "$cluster_ctx" >cluster-ctx.json
db_ctx='tier=database,database=sales'
expect_ok "cluster key: generate-data-key-without-plaintext" generate-data-key-without-plaintext \
    --key-id "$master" --key-spec AES_256 --encryption-context "$cluster_ctx"
b64_to_file .CiphertextBlob cluster.blob
check "no plaintext cluster key is printed" sh -c "! jq -e 'has(\"Plaintext\")' out.json >/dev/null"

expect_ok "database key: generate-child-key under the cluster blob" generate-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --encryption-context "$db_ctx" --without-plaintext
b64_to_file .CiphertextBlob db.blob
jq_check "database key output: blob and parent check value, no plaintext" \
    '(has("Plaintext") | not) and (.ParentKeyCheckValue | test("^[0-9a-f]{16}$"))'
cluster_kcv=$(field .ParentKeyCheckValue)

expect_ok "block key: generate-child-key under two parents" generate-child-key \
    --parent "fileb://cluster.blob@file://cluster-ctx.json" --parent "fileb://db.blob@$db_ctx" \
    --encryption-context block=42 --key-length 32
b64_to_file .CiphertextBlob block.blob
b64_to_file .Plaintext block.key
db_kcv=$(field .ParentKeyCheckValue)
check "block key is 32 bytes" [ "$(wc -c <block.key)" -eq 32 ]
check "database and cluster keys differ" [ "$db_kcv" != "$cluster_kcv" ]
head -c 8192 /dev/urandom >block.dat
openssl enc -aes-256-ctr -K "$(hex block.key)" -iv 00000000000000000000000000000000 \
    -in block.dat -out block.enc

expect_ok "unwrap-child-key of the block key" unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --parent "fileb://db.blob@$db_ctx" \
    --child-blob fileb://block.blob --encryption-context block=42
b64_to_file .Plaintext block2.key
check "unwrap gives the bytes of the generation" cmp -s block.key block2.key
jq_check "same parent check value" ".ParentKeyCheckValue == \"$db_kcv\""
openssl enc -d -aes-256-ctr -K "$(hex block2.key)" -iv 00000000000000000000000000000000 \
    -in block.enc -out block.out
check "the block decrypts with the unwrapped key" cmp -s block.dat block.out
expect_ok "unwrap the database key under the cluster key" unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --child-blob fileb://db.blob \
    --encryption-context "$db_ctx"
check "database key is 32 bytes" [ "$(field .Plaintext | base64 -d | wc -c)" -eq 32 ]

echo "== refusals in the chain"
expect_fail 5 InvalidCiphertextException unwrap-child-key \
    --parent "fileb://cluster.blob@aws:redshift:arn=arn:aws:redshift:local:000000000000:cluster:c2" \
    --parent "fileb://db.blob@$db_ctx" --child-blob fileb://block.blob --encryption-context block=42
expect_fail 5 InvalidCiphertextException unwrap-child-key --parent fileb://cluster.blob \
    --parent "fileb://db.blob@$db_ctx" --child-blob fileb://block.blob --encryption-context block=42
expect_fail 5 InvalidCiphertextException unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --parent "fileb://db.blob@tier=database,database=hr" \
    --child-blob fileb://block.blob --encryption-context block=42
expect_fail 5 InvalidCiphertextException unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --parent "fileb://db.blob@$db_ctx" \
    --child-blob fileb://block.blob --encryption-context block=43
expect_fail 5 InvalidCiphertextException unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --parent "fileb://db.blob@$db_ctx" \
    --child-blob fileb://block.blob
expect_fail 6 IncorrectKeyException unwrap-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --child-blob fileb://block.blob --encryption-context block=42
# Flip the lowest bit of the last byte (the tag).
flip_byte block.blob tampered.blob -1
expect_fail 5 InvalidCiphertextException unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --parent "fileb://db.blob@$db_ctx" \
    --child-blob fileb://tampered.blob --encryption-context block=42
expect_fail 1 ValidationException generate-child-key --encryption-context block=1
expect_fail 1 ValidationException generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --key-length 0
expect_fail 1 ValidationException generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --key-length 1025
expect_fail 1 ValidationException generate-child-key --parent "fileb://cluster.blob@a=1,a=2"
expect_fail 23 IOError generate-child-key --parent fileb://no-such.blob
expect_ok "a 16-byte child key" generate-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --key-length 16
check "16 bytes" [ "$(field .Plaintext | base64 -d | wc -c)" -eq 16 ]

echo "== disabling the master key stops the chain"
expect_ok "disable the master key" disable-key --key-id "$master"
expect_fail 3 DisabledException unwrap-child-key --parent "fileb://cluster.blob@$cluster_ctx" \
    --parent "fileb://db.blob@$db_ctx" --child-blob fileb://block.blob --encryption-context block=42
expect_ok "enable it again" enable-key --key-id "$master"

echo "== rotating the master key re-encrypts only the cluster blob"
expect_ok "rotate the master key" rotate-key-on-demand --key-id "$master"
expect_ok "re-encrypt the cluster blob" re-encrypt --ciphertext-blob fileb://cluster.blob \
    --source-encryption-context "$cluster_ctx" --destination-key-id "$master" \
    --destination-encryption-context "$cluster_ctx"
jq_check "re-encrypted under version 2" '.KeyVersion == 2'
b64_to_file .CiphertextBlob cluster2.blob
check "the cluster blob changed" sh -c '! cmp -s cluster.blob cluster2.blob'
expect_ok "block key under the re-encrypted cluster blob" unwrap-child-key \
    --parent "fileb://cluster2.blob@$cluster_ctx" --parent "fileb://db.blob@$db_ctx" \
    --child-blob fileb://block.blob --encryption-context block=42
b64_to_file .Plaintext block3.key
check "same block key after the master rotation" cmp -s block.key block3.key
expect_ok "database key under the re-encrypted cluster blob" unwrap-child-key \
    --parent "fileb://cluster2.blob@$cluster_ctx" --child-blob fileb://db.blob \
    --encryption-context "$db_ctx"
jq_check "same cluster key (check value)" ".ParentKeyCheckValue == \"$cluster_kcv\""
expect_ok "the old cluster blob still opens (version 1 is kept)" unwrap-child-key \
    --parent "fileb://cluster.blob@$cluster_ctx" --parent "fileb://db.blob@$db_ctx" \
    --child-blob fileb://block.blob --encryption-context block=42
b64_to_file .Plaintext block4.key
check "same block key from the old cluster blob" cmp -s block.key block4.key

cli_finish
