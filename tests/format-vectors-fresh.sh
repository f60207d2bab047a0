#!/bin/sh
# doc/ciphertext-vectors.json must be exactly what tests/format-gen-vectors prints: a change to
# the format or to the generator that is not reflected in the published vectors fails here.
# Regenerate with: $builddir/tests/format-gen-vectors > $srcdir/doc/ciphertext-vectors.json
set -eu
gen="$P11KMS_BUILDDIR/tests/format-gen-vectors"
doc="$P11KMS_SRCDIR/doc/ciphertext-vectors.json"
[ -x "$gen" ] || { echo "missing $gen (run make)" >&2; exit 99; }
[ -f "$doc" ] || { echo "missing $doc" >&2; exit 99; }
"$gen" >generated.json || { echo "format-gen-vectors failed" >&2; exit 1; }
if ! cmp -s generated.json "$doc"; then
    echo "doc/ciphertext-vectors.json differs from tests/format-gen-vectors output:" >&2
    diff -u "$doc" generated.json | head -40 >&2 || true
    exit 1
fi
echo "format-vectors-fresh: doc/ciphertext-vectors.json is current"
