"""p11kmsd's TLS listener: client certificates name the caller (x509:<subject>), boto3 works
with one, the policy holds per certificate, and a request without a certificate from the
configured CA (none, another CA, one issued for servers only, or only a signature) is refused
before the policy is asked.
Every response is checked against botocore's KMS model.

usage: daemon-tls.py PORT CERT_DIR PER_IP_LIMIT"""

import http.client
import json
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.environ["P11KMS_SRCDIR"], "tests", "daemon"))
from kms_model import Model, ModelError  # noqa: E402

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402

PORT, D, PER_IP = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
URL = f"https://127.0.0.1:{PORT}"
M = Model()
checks = failures = 0


def expect(cond, desc):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
    print(("ok: " if cond else "FAIL: ") + desc)


def client(name):
    c = boto3.client(
        "kms", endpoint_url=URL, region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret", verify=f"{D}/ca.pem",
        config=botocore.config.Config(client_cert=(f"{D}/{name}.pem", f"{D}/{name}.key"),
                                      retries={"max_attempts": 1}))

    def on_send(request, **kw):
        target = request.headers["X-Amz-Target"]
        target = target.decode() if isinstance(target, bytes) else target
        body = request.body or b"{}"
        M.check_input(target.split(".", 1)[1], json.loads(body))

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
        expect(got == klass, f"{who} {op} -> {klass or 'success'} (got {got})")
        return e.response["Error"]
    return None


admin, app = client("admin"), client("app")
print("== boto3 with client certificates; the policy holds per certificate")
k = call(admin, "admin", "create_key", Description="tls")
key = k["KeyMetadata"]["KeyId"]
call(admin, "admin", "create_alias", AliasName="alias/app-tls", TargetKeyId=key)
e = call(app, "app", "encrypt", KeyId="alias/app-tls", Plaintext=b"over tls")
p = call(app, "app", "decrypt", CiphertextBlob=e["CiphertextBlob"])
expect(p and p.get("Plaintext") == b"over tls", "app decrypts")
call(admin, "admin", "decrypt", "AccessDeniedException", CiphertextBlob=e["CiphertextBlob"])
call(app, "app", "disable_key", "AccessDeniedException", KeyId=key)
call(app, "app", "create_key", "AccessDeniedException")
call(admin, "admin", "disable_key", KeyId=key)
call(app, "app", "encrypt", "DisabledException", KeyId="alias/app-tls", Plaintext=b"x")
call(admin, "admin", "enable_key", KeyId=key)


def raw(ctx, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", PORT, context=ctx, timeout=20)
    h = {"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"}
    h.update(headers or {})
    c.request("POST", "/", body=b"{}", headers=h)
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    try:
        M.check_response("ListKeys", r.status, body)
    except ModelError as ex:
        expect(False, f"model: {ex}")
    return r.status, body


def context(cert=None):
    ctx = ssl.create_default_context(cafile=f"{D}/ca.pem")
    if cert:
        ctx.load_cert_chain(f"{D}/{cert}.pem", f"{D}/{cert}.key")
    return ctx


print("== refused before the policy: no certificate, another CA's certificate, a bare signature")
status, body = raw(context("admin"))
expect(status == 200, "the admin certificate lists keys")
status, body = raw(context())
expect((status, body.get("__type")) == (403, "MissingAuthenticationTokenException"),
       f"no client certificate -> 403 MissingAuthenticationTokenException ({status} {body})")
status, body = raw(context("rogue"))
expect((status, body.get("__type")) == (403, "MissingAuthenticationTokenException"),
       f"same subject from another CA -> 403 ({status} {body})")
status, body = raw(context("server-only"))
expect((status, body.get("__type")) == (403, "MissingAuthenticationTokenException"),
       f"the admin's subject on a certificate for TLS servers only -> 403 ({status} {body})")
status, body = raw(context("any-purpose"))
expect(status == 200, f"a certificate without extended key usage names its subject ({status})")
status, body = raw(context(), {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/"
                                                 "eu-west-1/kms/aws4_request, SignedHeaders=host, "
                                                 "Signature=00"})
expect((status, body.get("__type")) == (400, "IncompleteSignatureException"),
       f"a malformed signature -> 400 IncompleteSignatureException ({status} {body})")

print(f"== at most {PER_IP} connections from one client address")


def held_connections(n):
    """Opens n TCP connections without a TLS handshake and returns (held, sockets): how many the
    daemon kept open (it closes one over the limit at once) two seconds later."""
    socks = [socket.create_connection(("127.0.0.1", PORT), timeout=5) for _ in range(n)]
    time.sleep(2)
    held = 0
    for s in socks:
        s.setblocking(False)
        try:
            held += 1 if s.recv(1) else 0  # data would be odd; b"" is a close
        except BlockingIOError:
            held += 1
        except ConnectionError:
            pass
    return held, socks


# Connections made before (boto3's pools, closing ones) count too: hence not exactly PER_IP.
held, socks = held_connections(PER_IP + 4)
expect(1 <= held <= PER_IP, f"{held} of {PER_IP + 4} connections held (limit {PER_IP})")
for s in socks:
    s.close()
time.sleep(0.5)
status, _ = raw(context("admin"))
expect(status == 200, "the address is served again once its connections closed")

print("== TLS 1.2 at least")
ctx = context("admin")
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
status, _ = raw(ctx)
expect(status == 200, "TLS 1.2 accepted")
print(f"{checks} checks, {failures} failures; {M.checked} messages checked against the model")
sys.exit(1 if failures else 0)
