"""p11kmsd and AWS Signature Version 4, driven by boto3 and by requests signed with botocore's
own signer (at a fixed clock where the test needs one) or by a small independent signer here:
the policy holds per access key over TLS and over loopback HTTP, a client certificate yields to a
p11kms signature and never stands in for a bad one, and every bad signature is refused before
the policy is asked and changes nothing. Every request and response is checked against
botocore's KMS model.

usage: daemon-sigv4.py TLS_PORT HTTP_PORT ROOT            the scenarios
       daemon-sigv4.py TLS_PORT HTTP_PORT ROOT deleted ID  ID (deleted) is refused"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import ssl
import sys
import time
import types

sys.path.insert(0, os.path.join(os.environ["P11KMS_SRCDIR"], "tests", "daemon"))
from kms_model import Model, ModelError  # noqa: E402

import boto3  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

TLS_PORT, HTTP_PORT, ROOT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
TLS_URL = f"https://127.0.0.1:{TLS_PORT}"
HTTP_URL = f"http://127.0.0.1:{HTTP_PORT}"
CA = f"{ROOT}/certs/ca.pem"
REGION = "eu-west-1"  # the daemon's configured region (keys.region)
CT = "application/x-amz-json-1.1"
DUMMY = ("AKIDEXAMPLE", "not-a-secret")  # what an SDK signs with when the connection names it
M = Model()
checks = failures = 0


def expect(cond, desc):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
    print(("ok: " if cond else "FAIL: ") + desc)


def cred(who):
    with open(f"{ROOT}/cred-{who}.json") as f:
        k = json.load(f)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def client(creds, url=TLS_URL, cert=None):
    c = boto3.client(
        "kms", endpoint_url=url, region_name=REGION, aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1], verify=CA if url.startswith("https") else None,
        config=botocore.config.Config(
            retries={"max_attempts": 1},
            client_cert=(f"{ROOT}/certs/{cert}.pem", f"{ROOT}/certs/{cert}.key") if cert else None))

    def on_send(request, **kw):
        target = request.headers["X-Amz-Target"]
        target = target.decode() if isinstance(target, bytes) else target
        M.check_input(target.split(".", 1)[1], json.loads(request.body or b"{}"))

    def on_after(http_response, model, **kw):
        M.check_response(model.name, http_response.status_code,
                         json.loads(http_response.content or b"{}"))

    c.meta.events.register("before-send.kms", on_send)
    c.meta.events.register("after-call.kms", on_after)
    return c


def call(c, who, op, klass=None, **kw):
    try:
        r = getattr(c, op)(**kw)
        expect(klass is None, f"{who} {op} succeeds" + (f" (expected {klass})" if klass else ""))
        return r
    except ModelError as e:
        expect(False, f"{who} {op}: model: {e}")
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        expect(got == klass, f"{who} {op} -> {klass or 'success'} (got {got}: "
               f"{e.response['Error'].get('Message')})")
        return e.response["Error"]
    return None


# --- raw requests ------------------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def botocore_sign(op, payload, creds, region=REGION, service="kms", at=None, url=TLS_URL):
    """The body and headers of a request signed by botocore's SigV4Auth (at a fixed UTC time)."""
    body = json.dumps(payload).encode()
    req = AWSRequest(method="POST", url=url + "/", data=body,
                     headers={"Content-Type": CT, "X-Amz-Target": "TrentService." + op})
    if at is not None:
        class FixedDateTime(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return at
        botocore.auth.datetime = types.SimpleNamespace(datetime=FixedDateTime)
    try:
        SigV4Auth(Credentials(*creds), service, region).add_auth(req)
    finally:
        botocore.auth.datetime = datetime
    return body, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in req.headers.items()}


def manual_sign(op, payload, creds, names, port=TLS_PORT):
    """Signs as AWS documents it, over exactly the headers named (a lowercase sorted list)."""
    body = json.dumps(payload).encode()
    amz = utcnow().strftime("%Y%m%dT%H%M%SZ")
    values = {"content-type": CT, "host": f"127.0.0.1:{port}", "x-amz-date": amz,
              "x-amz-target": "TrentService." + op}
    signed = ";".join(names)
    canonical = "\n".join(["POST", "/", "", "".join(f"{n}:{values[n]}\n" for n in names), signed,
                           hashlib.sha256(body).hexdigest()])
    scope = f"{amz[:8]}/{REGION}/kms/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + creds[1]).encode()
    for part in (amz[:8], REGION, "kms", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {"Content-Type": CT, "X-Amz-Target": "TrentService." + op, "X-Amz-Date": amz,
               "Authorization": f"AWS4-HMAC-SHA256 Credential={creds[0]}/{scope}, "
                                f"SignedHeaders={signed}, Signature={sig}"}
    return body, headers


def send(op, body, headers, tls=True, cert=None, pause_after=None, extra=()):
    """Sends one request as given (http.client adds Host, Content-Length and Accept-Encoding);
    pause_after: send the body in two parts, this many bytes first, then wait; extra: headers
    sent in addition (a name may repeat one of headers)."""
    if tls:
        ctx = ssl.create_default_context(cafile=CA)
        if cert:
            ctx.load_cert_chain(f"{ROOT}/certs/{cert}.pem", f"{ROOT}/certs/{cert}.key")
        c = http.client.HTTPSConnection("127.0.0.1", TLS_PORT, context=ctx, timeout=20)
    else:
        c = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=20)
    if pause_after is None and not extra:
        c.request("POST", "/", body=body, headers=headers)
    else:
        c.putrequest("POST", "/", skip_accept_encoding=True)
        for k, v in list(headers.items()) + list(extra):
            c.putheader(k, v)
        c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        if pause_after is None:
            c.send(body)
        else:
            c.send(body[:pause_after])
            time.sleep(0.5)
            c.send(body[pause_after:])
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        expect(False, f"{op}: response is not JSON: {raw[:200]!r}")
        return r.status, {}
    try:
        M.check_response(op, r.status, parsed)
    except ModelError as e:
        expect(False, f"{op}: model: {e}")
    return r.status, parsed


def raw_expect(desc, want, op, body, headers, **kw):
    """want: 200 or an exception class."""
    status, parsed = send(op, body, headers, **kw)
    got = 200 if status == 200 else parsed.get("__type")
    expect(got == want, f"{desc} -> {want} (got {status} {parsed.get('__type')}: "
           f"{parsed.get('message')})")
    return parsed


# --- a deleted access key --------------------------------------------------------------------

if len(sys.argv) > 4 and sys.argv[4] == "deleted":
    call(client((sys.argv[5], cred("doomed")[1])), "deleted key", "list_keys",
         "UnrecognizedClientException")
    print(f"{checks} checks, {failures} failures; {M.checked} messages checked against the model")
    sys.exit(1 if failures else 0)

ADMIN, SVC, OTHER, DOOMED = cred("admin"), cred("svc"), cred("other"), cred("doomed")
admin, svc, other = client(ADMIN), client(SVC), client(OTHER)
ctx = {"app": "orders"}

print("== boto3 over TLS: the policy holds per access key")
key = call(admin, "admin", "create_key", Description="sigv4")["KeyMetadata"]["KeyId"]
call(admin, "admin", "create_alias", AliasName="alias/app-orders", TargetKeyId=key)
e = call(svc, "svc", "encrypt", KeyId="alias/app-orders", Plaintext=b"order 42",
         EncryptionContext=ctx)
blob = e["CiphertextBlob"]
p = call(svc, "svc", "decrypt", CiphertextBlob=blob, EncryptionContext=ctx)
expect(p and p.get("Plaintext") == b"order 42", "svc decrypts its data")
call(svc, "svc", "decrypt", "AccessDeniedException", CiphertextBlob=blob,
     EncryptionContext={"app": "billing"})
call(svc, "svc", "disable_key", "AccessDeniedException", KeyId=key)
call(svc, "svc", "create_key", "AccessDeniedException")
call(admin, "admin", "decrypt", "AccessDeniedException", CiphertextBlob=blob,
     EncryptionContext=ctx)
call(admin, "admin", "disable_key", KeyId=key)
call(svc, "svc", "encrypt", "DisabledException", KeyId="alias/app-orders", Plaintext=b"x",
     EncryptionContext=ctx)
call(admin, "admin", "enable_key", KeyId=key)
call(client(DOOMED), "doomed (before deletion)", "list_keys")

print("== a third valid access key gets nothing")
for op, kw in [("create_key", {}), ("list_keys", {}), ("list_aliases", {}),
               ("describe_key", {"KeyId": key}), ("disable_key", {"KeyId": key}),
               ("decrypt", {"CiphertextBlob": blob, "EncryptionContext": ctx}),
               ("encrypt", {"KeyId": "alias/app-orders", "Plaintext": b"x",
                            "EncryptionContext": ctx})]:
    call(other, "other", op, "AccessDeniedException", **kw)
call(other, "other", "describe_key", "AccessDeniedException",
     KeyId="00000000-0000-4000-8000-000000000000")

print("== loopback HTTP: a p11kms signature names the caller; other signatures leave the socket's")
call(client(ADMIN, HTTP_URL), "admin over loopback", "describe_key", KeyId=key)
call(client(SVC, HTTP_URL), "svc over loopback", "disable_key", "AccessDeniedException", KeyId=key)
call(client(DUMMY, HTTP_URL), "dummy credentials over loopback (this OS user, not in the policy)",
     "create_key", "AccessDeniedException")
call(client((ADMIN[0], SVC[1]), HTTP_URL), "admin id, wrong secret, over loopback",
     "disable_key", "InvalidSignatureException", KeyId=key)

print("== TLS: a client certificate and a signature")
call(client(DUMMY, cert="boss"), "boss certificate, dummy signature", "describe_key", KeyId=key)
call(client(SVC, cert="boss"), "boss certificate, svc signature (the signature names the caller)",
     "disable_key", "AccessDeniedException", KeyId=key)
call(client((ADMIN[0], SVC[1]), cert="boss"),
     "boss certificate, bad admin signature (refused, not served as the certificate)",
     "disable_key", "InvalidSignatureException", KeyId=key)
call(client((SVC[0], "x" * 40), cert="boss"), "boss certificate, bad svc signature",
     "list_keys", "InvalidSignatureException")
call(client(DUMMY), "no certificate, dummy signature", "list_keys", "UnrecognizedClientException")
body, headers = botocore_sign("DisableKey", {"KeyId": key}, DUMMY)
raw_expect("boss certificate, dummy signature, raw: control", 200, "DisableKey", body, headers,
           cert="boss")
call(admin, "admin", "enable_key", KeyId=key)
dummy_auth = headers["Authorization"]
body, headers = botocore_sign("DisableKey", {"KeyId": key}, ADMIN)
raw_expect("boss certificate, two Authorization headers (a dummy one and the admin's)",
           "IncompleteSignatureException", "DisableKey", body, headers, cert="boss",
           extra=[("Authorization", dummy_auth)])

print("== requests signed by botocore, then spoiled; DisableKey by the admin unless refused")
now = utcnow()
dk = {"KeyId": key}
raw_expect("control: signed now", 200, "DescribeKey", *botocore_sign("DescribeKey", dk, ADMIN))
raw_expect("control: signed 4 minutes ago", 200, "DescribeKey",
           *botocore_sign("DescribeKey", dk, ADMIN, at=now - datetime.timedelta(seconds=240)))
raw_expect("control: signed 4 minutes ahead", 200, "DescribeKey",
           *botocore_sign("DescribeKey", dk, ADMIN, at=now + datetime.timedelta(seconds=240)))
raw_expect("control: the body arrives in two parts", 200, "DescribeKey",
           *botocore_sign("DescribeKey", dk, ADMIN), pause_after=5)
raw_expect("wrong secret", "InvalidSignatureException", "DisableKey",
           *botocore_sign("DisableKey", dk, (ADMIN[0], SVC[1])))
raw_expect("unknown access key id", "UnrecognizedClientException", "DisableKey",
           *botocore_sign("DisableKey", dk, ("PKMSAAAAAAAAAAAAAAAA", ADMIN[1])))
raw_expect("region us-east-1 in the scope", "InvalidSignatureException", "DisableKey",
           *botocore_sign("DisableKey", dk, ADMIN, region="us-east-1"))
raw_expect("service s3 in the scope", "InvalidSignatureException", "DisableKey",
           *botocore_sign("DisableKey", dk, ADMIN, service="s3"))
raw_expect("x-amz-date 6 minutes old", "InvalidSignatureException", "DisableKey",
           *botocore_sign("DisableKey", dk, ADMIN, at=now - datetime.timedelta(seconds=360)))
raw_expect("x-amz-date 6 minutes ahead", "InvalidSignatureException", "DisableKey",
           *botocore_sign("DisableKey", dk, ADMIN, at=now + datetime.timedelta(seconds=360)))
body, headers = botocore_sign("DisableKey", dk, ADMIN)
raw_expect("body changed after signing", "InvalidSignatureException", "DisableKey",
           body.replace(b'"KeyId"', b'"KeyId" '), headers)
body, headers = botocore_sign("DisableKey", dk, ADMIN)
headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=content-type;host;",
                                                            "SignedHeaders=content-type;")
expect("SignedHeaders=content-type;x-amz-date" in headers["Authorization"],
       "host removed from botocore's SignedHeaders")
raw_expect("host dropped from SignedHeaders", "IncompleteSignatureException", "DisableKey",
           body, headers)
body, headers = botocore_sign("DisableKey", dk, ADMIN)
headers["X-Amz-Date"] = "yesterday"
raw_expect("malformed x-amz-date", "IncompleteSignatureException", "DisableKey", body, headers)
body, headers = botocore_sign("DisableKey", dk, ADMIN)
big = json.dumps({"KeyId": key, "GrantTokens": ["x" * 70000]}).encode()
raw_expect("a signed body over 64 KiB", "ValidationException", "DisableKey", big, headers)
raw_expect("no Authorization and no certificate", "MissingAuthenticationTokenException",
           "DisableKey", body, {k: v for k, v in headers.items() if k != "Authorization"})

print("== signed here, independently of botocore, over chosen headers")
all4 = ["content-type", "host", "x-amz-date", "x-amz-target"]
raw_expect("control: all four headers signed", 200, "DescribeKey",
           *manual_sign("DescribeKey", dk, ADMIN, all4))
raw_expect("control: over loopback", 200, "DescribeKey",
           *manual_sign("DescribeKey", dk, ADMIN, all4, port=HTTP_PORT), tls=False)
raw_expect("signed without host", "IncompleteSignatureException", "DisableKey",
           *manual_sign("DisableKey", dk, ADMIN, ["content-type", "x-amz-date", "x-amz-target"]))
raw_expect("signed without x-amz-date", "IncompleteSignatureException", "DisableKey",
           *manual_sign("DisableKey", dk, ADMIN, ["content-type", "host", "x-amz-target"]))
raw_expect("signed without x-amz-target", "IncompleteSignatureException", "DisableKey",
           *manual_sign("DisableKey", dk, ADMIN, ["content-type", "host", "x-amz-date"]))

print("== a replayed signature with another body")
victim = call(admin, "admin", "create_key", Description="victim")["KeyMetadata"]["KeyId"]
body, headers = botocore_sign("DisableKey", {"KeyId": victim}, ADMIN)
raw_expect("the signed DisableKey of the victim key", 200, "DisableKey", body, headers)
raw_expect("its signature replayed for the app key", "InvalidSignatureException", "DisableKey",
           json.dumps(dk).encode(), headers)
state = call(admin, "admin", "describe_key", KeyId=victim)["KeyMetadata"]["KeyState"]
expect(state == "Disabled", f"the victim key is Disabled ({state})")

print("== nothing changed")
m = call(admin, "admin", "describe_key", KeyId=key)["KeyMetadata"]
expect(m["KeyState"] == "Enabled", f"the app key is still Enabled ({m['KeyState']})")
p = call(svc, "svc", "decrypt", CiphertextBlob=blob, EncryptionContext=ctx)
expect(p and p.get("Plaintext") == b"order 42", "svc still decrypts")

print(f"{checks} checks, {failures} failures; {M.checked} messages checked against the model")
sys.exit(1 if failures else 0)
