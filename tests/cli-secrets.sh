#!/bin/sh
# p11kms CLI: secrets in memory. The CLI disables core dumps before it reads any input (its own
# /proc/self/limits, read as --plaintext, says RLIMIT_CORE 0); a secure heap that cannot be
# locked (RLIMIT_MEMLOCK too small, no CAP_IPC_LOCK) is reported, and refused when the
# configuration says "secure-memory: required".
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
for tool in prlimit setpriv; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool not found (util-linux)" >&2; exit 99; }
done

echo "== core dumps are off before --plaintext is read"
expect_ok "create a key" create-key --description secrets
key=$(field .KeyMetadata.KeyId)
expect_ok "encrypt the CLI's own /proc/self/limits" encrypt --key-id "$key" \
    --plaintext fileb:///proc/self/limits
b64_to_file .CiphertextBlob limits.blob
expect_ok "decrypt it" decrypt --ciphertext-blob fileb://limits.blob
b64_to_file .Plaintext limits.txt
check "the encrypting process had RLIMIT_CORE 0 (soft and hard)" \
    grep -Eq '^Max core file size +0 +0 ' limits.txt

# small_memlock COMMAND...: COMMAND with RLIMIT_MEMLOCK 16 KiB and, as root, without
# CAP_IPC_LOCK (which lets root lock memory whatever the limit).
small_memlock() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --bounding-set -ipc_lock prlimit --memlock=16384:16384 "$@"
    else
        prlimit --memlock=16384:16384 "$@"
    fi
}

echo "== a secure heap that is not locked is reported"
if small_memlock "$P11KMS" list-keys >out.json 2>err.all; then status=0; else status=$?; fi
if [ "$status" -eq 0 ] &&
    grep -q '^p11kms: WARNING: the secure heap is not locked in memory (RLIMIT_MEMLOCK 16384 bytes)' err.all
then
    pass "unlocked secure heap: reported, command runs"
else
    fail "unlocked secure heap: exit $status, stderr: $(cat err.all)"
fi
expect_ok "with the normal limit nothing is reported" list-keys

echo "== and refused with secure-memory: required"
cp "$P11KMS_CONFIG" required.yaml
echo "secure-memory: required" >>required.yaml
chmod 600 required.yaml
if small_memlock "$P11KMS" --config required.yaml list-keys >out.json 2>err.all; then
    status=0
else
    status=$?
fi
if [ "$status" -eq 19 ] &&
    grep -q '^p11kms: ConfigurationError: secure-memory: required, but the secure heap is not locked' err.all
then
    pass "secure-memory: required refuses an unlocked heap"
else
    fail "secure-memory: required: exit $status, stderr: $(cat err.all)"
fi
expect_ok "secure-memory: required with a locked heap runs" --config required.yaml list-keys

cli_finish
