#!/bin/sh
# p11kms CLI: user bytes echoed in an error line are escaped (controls and invalid UTF-8 as
# \xNN), so that a --key-id or option value cannot drive the terminal.
set -eu
. "$P11KMS_SRCDIR/tests/cli-lib.sh"
command -v od >/dev/null 2>&1 || { echo "od not found" >&2; exit 99; }

esc=$(printf '\033')
bel=$(printf '\007')
nl='
'

# no_controls DESCRIPTION: err.txt holds no byte below 0x20 but its final newline, and no DEL.
no_controls() {
    if od -An -v -tx1 err.txt | tr -s ' \n' '\n\n' | grep -v '^$' | sed '$d' |
        grep -Eq '^(0[0-9a-f]|1[0-9a-f]|7f)$'; then
        fail "$1: raw control bytes on stderr: $(od -c err.txt | head -5)"
    else
        pass "$1: no raw control bytes on stderr"
    fi
}

expect_fail 2 NotFoundException describe-key --key-id "${esc}[2J${esc}]0;pwned${bel}x"
no_controls "ESC/BEL in --key-id"
check "ESC and BEL shown as \\x1b and \\x07" grep -qF '\x1b[2J\x1b]0;pwned\x07x' err.txt

expect_fail 2 NotFoundException describe-key --key-id "alias/a${esc}b"
no_controls "ESC in an alias"
check "the alias is shown escaped" grep -qF 'alias/a\x1bb' err.txt

expect_fail 13 InvalidArnException describe-key --key-id "arn:aws:kms:local:000000000000:key/${bel}"
no_controls "BEL in an ARN"

expect_fail 2 NotFoundException describe-key --key-id "$(printf 'a\377\376b')"
check "invalid UTF-8 shown as \\xNN" grep -qF 'a\xff\xfeb' err.txt

expect_fail 1 ValidationException --output "x${esc}[31m"
no_controls "ESC in a global option value"

expect_fail 2 NotFoundException describe-key --key-id "line${nl}break"
no_controls "a newline in --key-id"

cli_finish
