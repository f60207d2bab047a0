#!/usr/bin/python3
"""Signs requests with botocore's own SigV4 signer (Debian python3-botocore) and prints them as
JSON for tests/daemon-sigv4-test: the requests exactly as an HTTP server would receive them
(method, raw path, raw query, headers including Host, body) plus the signer's clock, region and
credentials. The C test verifies each with provider/daemon/sigv4.c and derives the negatives.

Run with Debian's /usr/bin/python3 (the pyenv python on PATH has no botocore)."""

import base64
import datetime
import hashlib
import json
import sys
import time
import types
from urllib.parse import urlsplit

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Test credentials (never real): the p11kms access key id format, a 40-character secret.
AKID = "PKMSTESTKEYAAAAAAAAA"
SECRET = "tEsT/sEcReT+kEy0123456789abcdefGHIJKLMNO"
REGION = "us-east-1"


def fixed_clock(when):
    """Makes botocore sign at a fixed UTC time (for the AWS test-suite example)."""

    class FixedDateTime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

    botocore.auth.datetime = types.SimpleNamespace(datetime=FixedDateTime)


def real_clock():
    botocore.auth.datetime = datetime


def sign(name, method, url, headers, body, service="kms", region=REGION, akid=AKID,
         secret=SECRET, now=None, expect_signature=None):
    req = AWSRequest(method=method, url=url, data=body)
    for k, v in headers:
        req.headers[k] = v  # HTTPHeaders: a second assignment adds a second value
    signed_at = time.time() if now is None else now
    SigV4Auth(Credentials(akid, secret), service, region).add_auth(req)
    parts = urlsplit(url)
    out_headers = []
    if "Host" not in req.headers:
        # what the HTTP client sends (no default port), as botocore signs it
        out_headers.append(["Host", botocore.auth._host_from_url(url)])
    for k, v in req.headers.items():
        out_headers.append([k, v])
    auth = req.headers["Authorization"]
    signature = auth.rsplit("Signature=", 1)[1]
    if expect_signature is not None and signature != expect_signature:
        sys.exit(f"{name}: botocore computed {signature}, expected {expect_signature}")
    return {
        "name": name,
        "method": method,
        "path": parts.path or "/",
        "query": parts.query,
        "headers": out_headers,
        "body": base64.b64encode(body).decode(),
        "now": int(signed_at),
        "region": region,
        "service": service,
        "access_key_id": akid,
        "secret": secret,
    }


def kms(target, payload):
    body = json.dumps(payload).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", "TrentService." + target),
        ("User-Agent", "Boto3/test"),  # not signed (botocore's blacklist)
    ]
    return headers, body


def from_stdin():
    """--credentials-from-stdin: signs two KMS requests with the access key id and secret read
    from stdin (two lines; a secret never goes through argv or the environment)."""
    akid = sys.stdin.readline().strip()
    secret = sys.stdin.readline().strip()
    cases = []
    h, b = kms("Encrypt", {"KeyId": "alias/app", "Plaintext": "aGVsbG8="})
    cases.append(sign("token-credential-encrypt", "POST", "https://localhost:8443/", h, b,
                      akid=akid, secret=secret))
    h, b = kms("ListKeys", {})
    cases.append(sign("token-credential-list-keys", "POST", "http://127.0.0.1:8080/", h, b,
                      akid=akid, secret=secret))
    for c in cases:
        c["secret"] = ""  # the secret stays in memory: the file holds only signed requests
    json.dump(cases, sys.stdout, indent=1)
    sys.stdout.write("\n")


def main():
    if sys.argv[1:] == ["--credentials-from-stdin"]:
        return from_stdin()
    cases = []
    h, b = kms("Encrypt", {"KeyId": "alias/app", "Plaintext": "aGVsbG8="})
    cases.append(sign("kms-encrypt", "POST", "https://localhost:8443/", h, b))
    # the same operation and time, another body: its signature must not verify the first body
    h2, b2 = kms("Encrypt", {"KeyId": "alias/app", "Plaintext": "d29ybGQ="})
    cases.append(sign("kms-encrypt-other-body", "POST", "https://localhost:8443/", h2, b2))
    h, b = kms("Decrypt", {"CiphertextBlob": "AQID"})
    cases.append(sign("kms-decrypt", "POST", "https://kms.us-east-1.example:443/", h, b))
    h, b = kms("ListKeys", {})
    cases.append(sign("kms-list-keys-eu", "POST", "http://127.0.0.1:8080/", h, b,
                      region="eu-west-1"))
    # signed for another service with the same key: refused by a verifier expecting kms
    h, b = kms("Encrypt", {"KeyId": "alias/app", "Plaintext": "aGVsbG8="})
    cases.append(sign("signed-for-dynamodb", "POST", "https://localhost:8443/", h, b,
                      service="dynamodb"))
    # payload hash header, repeated header, whitespace to trim and collapse
    h, b = kms("GenerateRandom", {"NumberOfBytes": 32})
    h = h + [("X-Amz-Content-SHA256", hashlib.sha256(b).hexdigest()),
             ("X-Amz-Meta-Multi", "  first   value "), ("X-Amz-Meta-Multi", "second\tvalue")]
    cases.append(sign("payload-hash-and-multi-values", "POST", "https://localhost:8443/", h, b))
    # path normalization and query canonicalization
    h = [("Content-Type", "application/x-www-form-urlencoded")]
    cases.append(sign("path-and-query", "GET",
                      "https://localhost:8443/a/./b/../c//d%20e/?b=2&a=1&a=0&x=%2Fy&empty=",
                      h, b""))
    cases.append(sign("empty-body", "POST", "https://localhost:8443/", [], b""))

    # The AWS SigV4 test suite's get-vanilla request (service "service", 2015-08-30 12:36:00).
    vanilla = datetime.datetime(2015, 8, 30, 12, 36, 0)
    fixed_clock(vanilla)
    try:
        cases.append(sign("aws-get-vanilla", "GET", "https://example.amazonaws.com/", [], b"",
                          service="service", region="us-east-1", akid="AKIDEXAMPLE",
                          secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                          now=vanilla.replace(tzinfo=datetime.timezone.utc).timestamp(),
                          expect_signature="5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"))
    finally:
        real_clock()
    json.dump(cases, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
