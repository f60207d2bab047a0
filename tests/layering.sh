#!/bin/sh
# The layer picture of README.md, checked on the sources: front ends -> provider ->
# {pkcs11, policy} -> common. A file of a layer may include (with "...") only its own folder's
# headers and those of the layers below it; common/ includes nothing of p11kms but itself, and
# the provider library nothing of its front ends (provider/cli/, provider/daemon/).
# (The build enforces the same through include flags: common/, pkcs11/ and policy/ are compiled
# without -I provider; this test also catches "provider/x.h" spelled out.)
set -eu
src="${P11KMS_SRCDIR:?}"
status=0
# check FOLDER ALLOWED-REGEX: every #include "..." of FOLDER/*.[ch] must match ALLOWED-REGEX.
check()
{
    folder=$1 allowed=$2
    for f in "$src/$folder"/*.c "$src/$folder"/*.h; do
        [ -f "$f" ] || continue
        case $(basename "$f") in fuzz-*.c) continue ;; esac # test entry points, built by tests/
        bad=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
            grep -Ev "^($allowed)\$" || true)
        if [ -n "$bad" ]; then
            for h in $bad; do
                echo "layering: $folder/$(basename "$f") includes \"$h\" (allowed: $allowed)" >&2
            done
            status=1
        fi
    done
}
base='config\.h|p11kms-error\.h|common/[a-z0-9-]+\.h'
check common "$base"
check pkcs11 "$base|pkcs11/[a-z0-9-]+\.h"
check policy "$base|policy/[a-z0-9-]+\.h"
check provider "$base|[a-z0-9-]+\.h|provider/[a-z0-9-]+\.h|pkcs11/[a-z0-9-]+\.h|policy/[a-z0-9-]+\.h"
# The front ends use the library through its public header only (libp11kms exports p11kms_*
# and nothing else); of common/ they compile in hex.c themselves.
# A bare name must be a header of the front end's own folder: the include path also holds
# provider/, where "keymeta.h" would quietly resolve to the library's internals.
front='config\.h|p11kms\.h|p11kms-error\.h|common/hex\.h|cli/[a-z0-9-]+\.h|provider/daemon/[a-z0-9-]+\.h'
for folder in provider/cli provider/daemon; do
    own=$(cd "$src/$folder" && ls *.h | sed 's/\./\\./' | paste -sd '|' -)
    check "$folder" "$front|$own"
done
[ $status -eq 0 ] && echo "layering: common <- {pkcs11, policy} <- provider <- front ends holds"
exit $status
