#!/bin/sh
# Installs the Debian 12 packages p11kms needs to build, test and run its walkthrough, but only
# those that are missing (apt-get update runs once, and only when something must be installed).
set -eu
packages="build-essential autoconf automake libtool pkg-config
  libp11-kit-dev p11-kit libssl-dev openssl libyaml-dev libjson-c-dev
  softhsm2 opensc jq valgrind
  libsqlite3-dev libpq-dev postgresql
  libmicrohttpd-dev libgnutls28-dev awscli python3-boto3 python3-botocore"
# clang with its sanitizer and libFuzzer runtimes: tests/run-suite.sh --fuzz (make fuzz).
packages="$packages clang libclang-rt-dev"
packages="$packages clang-14 clang-tools-14 clang-format-14"
# the independent check of imported key material (tests/import-check.py)
packages="$packages python3-cryptography"
# the CLI's client mode (p11kms --endpoint)
packages="$packages libcurl4-openssl-dev"
# NSS softokn, the second token the suite runs on (TEST.nsstest, tests/nss.am)
packages="$packages libnss3 libnss3-tools"
# openCryptoki 3.8.1, a token p11kms must refuse (no CKM_AES_GCM): tests/opencryptoki.sh
packages="$packages opencryptoki"
missing=
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-debian: missing packages:$missing (run as root, or install them)" >&2
    exit 1
fi
echo "setup-debian: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
