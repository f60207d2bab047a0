#!/bin/sh
# The README's walkthrough must keep working: run it with the CLI of this build.
set -eu
P11KMS_CLI="$P11KMS_BUILDDIR/p11kms" P11KMS_WALKTHROUGH_DIR="$P11KMS_TEST_ROOT/walkthrough" \
    exec bash "$P11KMS_SRCDIR/tests/walkthrough.sh"
