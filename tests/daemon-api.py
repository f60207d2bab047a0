"""p11kmsd over the KMS JSON 1.1 protocol, driven by boto3 and by raw HTTP, every request and
response checked against botocore's KMS model (tests/daemon/kms_model.py).

usage: daemon-api.py SOCKET_PATH HTTP_URL"""

import base64
import http.client
import json
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.environ["P11KMS_SRCDIR"], "tests", "daemon"))
from kms_model import Model, ModelError  # noqa: E402

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402

SOCKET, URL = sys.argv[1], sys.argv[2]
PORT = int(URL.rsplit(":", 1)[1])
M = Model()
checks = failures = 0


def ok(desc):
    global checks
    checks += 1
    print("ok:", desc)


def fail(desc):
    global checks, failures
    checks += 1
    failures += 1
    print("FAIL:", desc)


def expect(cond, desc):
    (ok if cond else fail)(desc)


# --- boto3, every request and response checked against the model ------------------------------

def on_send(request, **kwargs):
    target = request.headers.get("X-Amz-Target", b"")
    if isinstance(target, bytes):
        target = target.decode()
    op = target.split(".", 1)[1]
    body = request.body or b"{}"
    if isinstance(body, str):
        body = body.encode()
    M.check_input(op, json.loads(body))


def on_after_call(http_response, model, **kwargs):
    body = json.loads(http_response.content or b"{}")
    M.check_response(model.name, http_response.status_code, body)


kms = boto3.client(
    "kms", endpoint_url=URL, region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="not-a-secret",
    config=botocore.config.Config(retries={"max_attempts": 1}))
kms.meta.events.register("before-send.kms", on_send)
kms.meta.events.register("after-call.kms", on_after_call)


def call(op, **kw):
    """A boto3 call that must succeed; a model violation or an error fails the test."""
    try:
        r = getattr(kms, op)(**kw)
        r.pop("ResponseMetadata", None)
        ok(f"boto3 {op}")
        return r
    except ModelError as e:
        fail(f"boto3 {op}: model: {e}")
    except botocore.exceptions.ClientError as e:
        fail(f"boto3 {op}: {e.response['Error']}")
    return None


def call_error(op, klass, **kw):
    try:
        getattr(kms, op)(**kw)
        fail(f"boto3 {op} -> {klass}: succeeded")
    except ModelError as e:
        fail(f"boto3 {op} -> {klass}: model: {e}")
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        expect(got == klass, f"boto3 {op} -> {klass} (got {got}: {e.response['Error']['Message']})")
        return e.response["Error"]["Message"]
    return None


# --- raw HTTP over the Unix socket or loopback TCP -------------------------------------------

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=20)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(self.path)
        self.sock = s


def raw(op, body, target=None, ctype="application/x-amz-json-1.1", method="POST", path="/",
        conn=None, headers=None):
    """Sends one request; returns (status, parsed JSON, raw bytes)."""
    c = conn or UnixConnection(SOCKET)
    h = {"Content-Type": ctype} if ctype is not None else {}
    if target is not False:
        h["X-Amz-Target"] = target or f"TrentService.{op}"
    h.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    if conn is None:
        c.close()
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = None
    return r.status, parsed, payload


def raw_ok(op, body, desc, check_model=True):
    status, parsed, payload = raw(op, body)
    if status != 200:
        fail(f"{desc}: status {status}: {payload[:300]!r}")
        return None
    try:
        if check_model:
            M.check_input(op, body)
            M.check_output(op, status, parsed)
        ok(desc)
    except ModelError as e:
        fail(f"{desc}: model: {e}")
    return parsed


def raw_error(op, body, klass, desc, status_want=None, **kw):
    status, parsed, payload = raw(op, body, **kw)
    try:
        M.check_error(op if M.has(op) else "Encrypt", status, parsed)
    except ModelError as e:
        fail(f"{desc}: model: {e} (status {status}, {payload[:200]!r})")
        return None
    got = parsed["__type"]
    if got != klass or (status_want is not None and status != status_want):
        fail(f"{desc}: expected {klass} {status_want or ''}, got {status} {got}: "
             f"{parsed['message']}")
    else:
        ok(f"{desc} -> {status} {klass}")
    return parsed


def state():
    """What a refused request must not change: keys, aliases, and one key's metadata/tags."""
    keys = sorted(k["KeyId"] for k in raw("ListKeys", {})[1]["Keys"])
    aliases = sorted((a["AliasName"], a.get("TargetKeyId")) for a in
                     raw("ListAliases", {"Limit": 1000})[1]["Aliases"])
    return keys, aliases


print("== the model checker refuses what the model does not allow")
for desc, fn in [
        ("unknown response member", lambda: M.check_output(
            "ListKeys", 200, {"Keys": [], "Truncated": False, "KeyVersion": 1})),
        ("wrong member type", lambda: M.check_output("ListKeys", 200, {"Truncated": "no"})),
        ("enum violation", lambda: M.check_output("ScheduleKeyDeletion", 200, {"KeyState": "Gone"})),
        ("missing required member", lambda: M.check_input("Encrypt", {"KeyId": "k"})),
        ("bad base64 blob", lambda: M.check_input("Encrypt", {"KeyId": "k", "Plaintext": "*"})),
        ("error class the operation lacks", lambda: M.check_error(
            "ListKeys", 400, {"__type": "DisabledException", "message": "m"})),
        ("error body with extra members", lambda: M.check_error(
            "ListKeys", 400, {"__type": "ValidationException", "message": "m", "x": 1})),
        ("server error with a client status", lambda: M.check_error(
            "Encrypt", 400, {"__type": "KMSInternalException", "message": "m"}))]:
    try:
        fn()
        fail(f"model checker: {desc} is refused")
    except ModelError:
        ok(f"model checker: {desc} is refused")
M.checked = 0

print("== boto3 over the loopback listener: the key life cycle")
k = call("create_key", Description="daemon api", Tags=[{"TagKey": "team", "TagValue": "db"}])
key = k["KeyMetadata"]["KeyId"]
arn = k["KeyMetadata"]["Arn"]
expect(k["KeyMetadata"]["KeyState"] == "Enabled", "new key is Enabled")
expect("CurrentKeyVersion" not in k["KeyMetadata"], "fields the model lacks are dropped")
d = call("describe_key", KeyId=arn)
expect(d and d["KeyMetadata"]["KeyId"] == key, "describe-key by ARN")
call("create_alias", AliasName="alias/daemon-api", TargetKeyId=key)
d = call("describe_key", KeyId="alias/daemon-api")
expect(d and d["KeyMetadata"]["KeyId"] == key, "describe-key by alias")
la = call("list_aliases", KeyId=key)
expect(la and [a["AliasName"] for a in la["Aliases"]] == ["alias/daemon-api"], "list-aliases of a key")

print("== ARNs: well-formed KMS ARNs, accepted wherever a key id is")
expect(arn == f"arn:aws:kms:local:000000000000:key/{key}",
       f"the key ARN is arn:PARTITION:kms:REGION:ACCOUNT:key/ID (got {arn})")
alias_arn = la["Aliases"][0]["AliasArn"] if la else None
expect(alias_arn == "arn:aws:kms:local:000000000000:alias/daemon-api",
       f"the alias ARN is arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME (got {alias_arn})")
for ref in (arn, alias_arn):
    e = call("encrypt", KeyId=ref, Plaintext=b"by ARN")
    expect(e and e["KeyId"] == arn, f"encrypt with KeyId {ref}")
    d = call("describe_key", KeyId=ref)
    expect(d and d["KeyMetadata"]["Arn"] == arn, f"describe-key with KeyId {ref}")
for other in (arn.replace(":local:", ":eu-west-1:"), arn.replace("arn:aws:", "arn:aws-cn:"),
              arn.replace(":000000000000:", ":111122223333:"),
              alias_arn.replace(":local:", ":eu-west-1:")):
    m = call_error("encrypt", "NotFoundException", KeyId=other, Plaintext=b"x")
    expect(m is not None and "another partition, region or account" in m,
           f"another partition, region or account is named in the message: {m}")
    call_error("describe_key", "NotFoundException", KeyId=other)
not_kms = arn.replace(":kms:", ":s3:")
m = call_error("describe_key", "InvalidArnException", KeyId=not_kms)
expect(m is not None and "not a KMS ARN" in m, f"not a KMS ARN: {m}")
# Encrypt's model has no InvalidArnException: a malformed ARN is NotFound there, as in AWS.
call_error("encrypt", "NotFoundException", KeyId=not_kms, Plaintext=b"x")
call_error("describe_key", "InvalidArnException", KeyId=arn.replace(key, "not-a-uuid"))

print("== boto3: cryptography")
ctx = {"tenant": "acme", "purpose": "daemon-api"}
e = call("encrypt", KeyId="alias/daemon-api", Plaintext=b"sixteen byte msg", EncryptionContext=ctx,
         EncryptionAlgorithm="SYMMETRIC_DEFAULT", GrantTokens=["token-accepted"])
blob = e["CiphertextBlob"]
expect(e["KeyId"] == arn, "encrypt names the key ARN")
p = call("decrypt", CiphertextBlob=blob, EncryptionContext=ctx)
expect(p and p["Plaintext"] == b"sixteen byte msg", "decrypt round trip")
call_error("decrypt", "InvalidCiphertextException", CiphertextBlob=blob,
           EncryptionContext={"tenant": "other"})
tampered = bytearray(blob)
tampered[-1] ^= 1
call_error("decrypt", "InvalidCiphertextException", CiphertextBlob=bytes(tampered),
           EncryptionContext=ctx)
call_error("encrypt", "InvalidKeyUsageException", KeyId=key, Plaintext=b"x",
           EncryptionAlgorithm="RSAES_OAEP_SHA_256")
k2 = call("create_key", Description="second")["KeyMetadata"]["KeyId"]
r = call("re_encrypt", CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=k2)
p = call("decrypt", CiphertextBlob=r["CiphertextBlob"])
expect(p and p["Plaintext"] == b"sixteen byte msg" and p["KeyId"].endswith(k2),
       "re-encrypt moves the blob under the other key")
dk = call("generate_data_key", KeyId=key, KeySpec="AES_256", EncryptionContext=ctx)
expect(len(dk["Plaintext"]) == 32, "data key has 32 bytes")
p = call("decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
expect(p and p["Plaintext"] == dk["Plaintext"], "data key blob decrypts to the data key")
dk = call("generate_data_key", KeyId=key, NumberOfBytes=7)
expect(len(dk["Plaintext"]) == 7, "data key of 7 bytes")
dk = call("generate_data_key_without_plaintext", KeyId=key, KeySpec="AES_128")
expect("Plaintext" not in dk, "without-plaintext has no Plaintext")
rnd = call("generate_random", NumberOfBytes=48)
expect(len(rnd["Plaintext"]) == 48, "48 random bytes")
call_error("generate_data_key", "ValidationException", KeyId=key)

print("== boto3: tags, rotation, description, enable/disable, deletion")
call("tag_resource", KeyId=key, Tags=[{"TagKey": "env", "TagValue": "test"}])
t = call("list_resource_tags", KeyId=key)
expect(t and sorted(x["TagKey"] for x in t["Tags"]) == ["env", "team"], "tags listed")
call("untag_resource", KeyId=key, TagKeys=["env"])
t = call("list_resource_tags", KeyId=key, Limit=1)
expect(t and [x["TagKey"] for x in t["Tags"]] == ["team"] and t["Truncated"] is False,
       "untagged")
call("enable_key_rotation", KeyId=key)
s = call("get_key_rotation_status", KeyId=key)
expect(s and s["KeyRotationEnabled"] is True, "rotation enabled")
call("disable_key_rotation", KeyId=key)
call("update_key_description", KeyId=key, Description="changed")
d = call("describe_key", KeyId=key)
expect(d and d["KeyMetadata"]["Description"] == "changed", "description changed")
call("disable_key", KeyId=key)
call_error("encrypt", "DisabledException", KeyId=key, Plaintext=b"x")
call("enable_key", KeyId=key)
sd = call("schedule_key_deletion", KeyId=k2, PendingWindowInDays=7)
expect(sd and sd["KeyState"] == "PendingDeletion" and sd["PendingWindowInDays"] == 7,
       "deletion scheduled")
d = call("describe_key", KeyId=k2)
expect(d and d["KeyMetadata"]["PendingDeletionWindowInDays"] == 7, "pending window shown")
call_error("encrypt", "KMSInvalidStateException", KeyId=k2, Plaintext=b"x")
cd = call("cancel_key_deletion", KeyId=k2)
expect(cd and cd["KeyId"].endswith(k2), "deletion cancelled")
call("update_alias", AliasName="alias/daemon-api", TargetKeyId=k2)
call_error("create_alias", "AlreadyExistsException", AliasName="alias/daemon-api", TargetKeyId=key)
call_error("describe_key", "NotFoundException", KeyId="alias/no-such-alias")
call_error("describe_key", "NotFoundException", KeyId="11111111-2222-4333-8444-555555555555")

print("== pagination: Limit, Marker, Truncated, NextMarker")
k3 = call("create_key")["KeyMetadata"]["KeyId"]
all_keys = sorted(x["KeyId"] for x in call("list_keys")["Keys"])
expect(len(all_keys) == 3, "three keys")
page1 = call("list_keys", Limit=2)
expect(page1["Truncated"] is True and len(page1["Keys"]) == 2 and "NextMarker" in page1,
       "first page truncated with a marker")
page2 = call("list_keys", Limit=2, Marker=page1["NextMarker"])
expect(page2["Truncated"] is False and "NextMarker" not in page2, "last page")
expect(sorted(x["KeyId"] for x in page1["Keys"] + page2["Keys"]) == all_keys,
       "pages cover every key once")
paged = [x["KeyId"] for pg in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1})
         for x in pg["Keys"]]
expect(sorted(paged) == all_keys, "boto3's paginator walks every key")
call_error("list_keys", "InvalidMarkerException", Marker="not-a-marker")

print("== operations newer than the shipped model (raw, shape checked by hand)")
status, body, _ = raw("RotateKeyOnDemand", {"KeyId": key})
expect(status == 200 and body.get("KeyId", "").endswith(key), "RotateKeyOnDemand")
status, body, _ = raw("ListKeyRotations", {"KeyId": key})
types = [x["RotationType"] for x in body.get("Rotations", [])] if status == 200 else None
expect(types == ["ON_DEMAND"], f"ListKeyRotations lists only AUTOMATIC/ON_DEMAND (got {types})")

print("== bad input: model-conformant errors, nothing changes")
before = state()
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA=="}, "UnknownOperationException",
          "missing X-Amz-Target", target=False)
raw_error("Encrypt", {}, "UnknownOperationException", "unknown operation",
          target="TrentService.FrobnicateKey")
raw_error("Encrypt", {}, "UnknownOperationException", "target of another service",
          target="DynamoDB_20120810.Encrypt")
raw_error("CreateKey", {}, "SerializationException", "wrong content type",
          ctype="application/json")
raw_error("CreateKey", {}, "SerializationException", "missing content type", ctype=None)
raw_error("CreateKey", b'{"Description": "x"', "SerializationException", "truncated JSON")
raw_error("CreateKey", b'{"Description": "x"} {}', "SerializationException", "trailing data")
raw_error("CreateKey", b"[]", "SerializationException", "JSON array body")
raw_error("CreateKey", b'{"Description": "\xc3\x28"}', "SerializationException",
          "invalid UTF-8")
raw_error("CreateKey", {"Description": 5}, "ValidationException", "number for a string")
raw_error("CreateKey", {"Tags": {"TagKey": "a"}}, "ValidationException", "object for a list")
raw_error("CreateKey", {"KeySpec": "ROT13"}, "ValidationException", "value outside the enum")
raw_error("ListKeys", {"Limit": "10"}, "ValidationException", "string for an integer")
raw_error("ListKeys", {"Limit": 10.5}, "ValidationException", "float for an integer")
raw_error("ListKeys", {"Limit": 0}, "ValidationException", "integer below its range")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA==", "EncryptionContext": {"a": 1}},
          "ValidationException", "number in the encryption context")
raw_error("Encrypt", {"Plaintext": "eA=="}, "ValidationException", "missing KeyId")
raw_error("Encrypt", {"KeyId": key}, "ValidationException", "missing Plaintext")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA="}, "SerializationException",
          "base64 with wrong padding")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "e*A="}, "SerializationException",
          "base64 with a bad character")
raw_error("Encrypt", {"KeyId": key, "Plaintext": ""}, "ValidationException", "empty plaintext")
raw_error("Encrypt", {"KeyId": key, "Plaintext": base64.b64encode(b"x" * 4097).decode()},
          "ValidationException", "plaintext over 4096 bytes")
raw_error("Decrypt", {"CiphertextBlob": "AAAA"}, "InvalidCiphertextException", "junk ciphertext")
raw_error("CreateAlias", {"AliasName": "alias/x", "TargetKeyId": 7}, "ValidationException",
          "number for a key id")
raw_error("CreateKey", b"{" + b" " * (64 * 1024) + b"}", "ValidationException",
          "body over 64 KiB", status_want=413)
raw_error("CreateKey", {}, "UnknownOperationException", "GET is not the API", method="GET")
raw_error("CreateKey", {}, "UnknownOperationException", "another path", path="/keys")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA==", "GrantTokens": "t"},
          "ValidationException", "GrantTokens must be a list")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA==", "GrantTokens": ["t"] * 11},
          "ValidationException", "at most 10 grant tokens")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA==", "DryRun": "yes"},
          "ValidationException", "DryRun must be a boolean")
raw_error("Encrypt", {"KeyId": key, "Plaintext": "eA==", "DryRun": True},
          "DryRunOperationException", "DryRun of an allowed Encrypt", status_want=412)
raw_error("GenerateDataKey", {"KeyId": key, "KeySpec": "AES_256", "DryRun": True},
          "DryRunOperationException", "DryRun of an allowed GenerateDataKey", status_want=412)
b64blob = base64.b64encode(blob).decode()
raw_error("Decrypt", {"CiphertextBlob": b64blob, "EncryptionContext": ctx, "DryRun": True},
          "DryRunOperationException", "DryRun of a Decrypt without KeyId (the blob names it)",
          status_want=412)
raw_error("Decrypt", {"CiphertextBlob": "AAAA", "DryRun": True}, "InvalidCiphertextException",
          "DryRun of a Decrypt of junk without KeyId")
raw_error("ReEncrypt", {"CiphertextBlob": b64blob, "SourceEncryptionContext": ctx,
                        "DestinationKeyId": key, "DryRun": True},
          "DryRunOperationException", "DryRun of an allowed ReEncrypt", status_want=412)
ok_body = raw_ok("Encrypt", {"KeyId": key, "Plaintext": "eA==", "FutureMember": {"x": 1}},
                 "unknown members are ignored", check_model=False)
expect(ok_body is not None and "CiphertextBlob" in ok_body, "encrypt with an unknown member")

# Bodies that stop before their Content-Length, from clients that stay connected (more of
# them than p11kmsd has threads): they hold no worker, other callers are served meanwhile, the
# daemon closes them after its --timeout (3 s here), and nothing was performed.
slow = []
for _ in range(3):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCKET)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.CreateKey\r\n"
              b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{\"Desc")
    slow.append(s)
expect(raw("GenerateRandom", {"NumberOfBytes": 8})[0] == 200,
       "slow clients hold no worker: another caller is served")
for s in slow:
    s.settimeout(15)
    try:
        reply = s.recv(4096)
    except TimeoutError:
        reply = b"(still open after 15 s)"
    s.close()
    expect(reply == b"", f"a truncated body is closed after the timeout, never performed ({reply[:40]!r})")
# A Content-Length past the limit is refused before the body is sent (none is, here).
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(SOCKET)
s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.CreateKey\r\n"
          b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 104857600\r\n\r\n")
s.settimeout(15)
try:
    reply = s.recv(4096)
except TimeoutError:
    reply = b"(no answer in 15 s)"
s.close()
expect(reply.startswith(b"HTTP/1.1 413"),
       f"Content-Length of 100 MiB -> 413 before any body ({reply[:40]!r})")
# Chunked transfer past the limit.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(SOCKET)
chunk = b"{" + b" " * 40000
s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.CreateKey\r\n"
          b"Content-Type: application/x-amz-json-1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
          (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"1\r\n}\r\n0\r\n\r\n")
s.settimeout(20)
reply = s.recv(4096)
s.close()
expect(reply.startswith(b"HTTP/1.1 413"), f"chunked body over 64 KiB -> 413 ({reply[:40]!r})")
expect(state() == before, "refused requests changed nothing")

print("== keep-alive: several requests on one connection, over TCP too")
for conn in (UnixConnection(SOCKET), http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)):
    statuses = [raw("GenerateRandom", {"NumberOfBytes": 8}, conn=conn)[0] for _ in range(3)]
    conn.close()
    expect(statuses == [200, 200, 200], f"three requests on one {type(conn).__name__}")

print("== a browser's request does not act as the connection's owner (DNS rebinding)")
before = state()
for headers, why in (({"Host": f"attacker.example:{PORT}"}, "Host attacker.example"),
                     ({"Origin": f"http://127.0.0.1:{PORT}"}, "an Origin header"),
                     ({"Sec-Fetch-Site": "same-origin"}, "a Sec-Fetch-Site header")):
    tcp = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    raw_error("CreateKey", {}, "AccessDeniedException", f"loopback, {why}", status_want=400,
              conn=tcp, headers=headers)
    tcp.close()
expect(state() == before, "the refused browser requests changed nothing")
for host in (f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"{socket.gethostname()}:{PORT}"):
    tcp = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    status = raw("GenerateRandom", {"NumberOfBytes": 8}, conn=tcp, headers={"Host": host})[0]
    tcp.close()
    expect(status == 200, f"loopback, Host {host} -> {status}")
status = raw("GenerateRandom", {"NumberOfBytes": 8}, headers={"Host": "attacker.example"})[0]
expect(status == 200, f"the Unix socket (no browser reaches it), Host attacker.example -> {status}")

print("== a key name with spaces cannot add fields to the request log (daemon-api.sh reads it)")
status = raw("Encrypt", {"KeyId": "alias/forged decision=allowed", "Plaintext": "eA=="})[0]
expect(status == 400, f"Encrypt under a key name with spaces -> {status}")

print("== request ids: a fresh version-4 UUID per request (drawn in blocks per thread)")
ids = []
for _ in range(150):  # more than two blocks of 64 on one connection
    r = kms.generate_random(NumberOfBytes=8)
    ids.append(r["ResponseMetadata"]["RequestId"])
v4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
expect(all(v4.match(i) for i in ids), "every x-amzn-RequestId is a lowercase version-4 UUID")
expect(len(set(ids)) == len(ids), f"{len(ids)} requests, {len(set(ids))} distinct request ids")

print(f"== {M.checked} requests and responses checked against {M.path}")
expect(M.checked > 80, "the model saw the tests' traffic")
print(f"{checks} checks, {failures} failures")
sys.exit(1 if failures else 0)
