#!/usr/bin/python3
"""Independent check of imported key material: opens a p11kms MASTER ciphertext blob with
OpenSSL alone (python3-cryptography), given the plaintext key material the user imported and the
blob format of doc/ciphertext-format.md. No p11kms code is involved.

usage: import-check.py KEY_MATERIAL_FILE BLOB_FILE [KEY=VALUE ...]   (encryption context)
Writes the plaintext to stdout; exits 1 if the tag does not verify."""
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def canonical_context(pairs):
    if not pairs:
        return b""
    items = sorted((k.encode(), v.encode()) for k, v in (p.split("=", 1) for p in pairs))
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


def main():
    key = open(sys.argv[1], "rb").read()
    blob = open(sys.argv[2], "rb").read()
    if len(key) != 32:
        sys.exit("key material must be 32 bytes")
    # version 1, type MASTER, algorithm AES-256-GCM; header = 3 + key id (16) + version (4)
    if blob[:3] != b"\x01\x01\x01":
        sys.exit("not a version-1 MASTER AES-256-GCM blob")
    header_len = 23
    iv = blob[header_len:header_len + 12]
    (n,) = struct.unpack(">I", blob[header_len + 12:header_len + 16])
    body = blob[header_len + 16:]
    if len(body) != n + 16:
        sys.exit("blob length mismatch")
    ctx = canonical_context(sys.argv[3:])
    aad = blob[:header_len] + struct.pack(">I", len(ctx)) + ctx
    try:
        plaintext = AESGCM(key).decrypt(iv, body, aad)
    except InvalidTag:
        print("import-check: the tag does not verify under this key material", file=sys.stderr)
        sys.exit(1)
    sys.stdout.buffer.write(plaintext)


main()
