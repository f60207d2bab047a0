"""Imported key material (BYOK) over p11kmsd's KMS API with boto3, every request and response
checked against botocore's KMS model: GetParametersForImport, the key material wrapped with
the returned public key (RSA-OAEP SHA-1, python3-cryptography), ImportKeyMaterial, use,
DeleteImportedKeyMaterial, re-import of the same material, and the refusals.

usage: daemon-import.py HTTP_URL"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.environ["P11KMS_SRCDIR"], "tests", "daemon"))
from kms_model import Model, ModelError  # noqa: E402

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

URL = sys.argv[1]
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


def on_send(request, **kwargs):
    target = request.headers.get("X-Amz-Target", b"")
    if isinstance(target, bytes):
        target = target.decode()
    body = request.body or b"{}"
    if isinstance(body, str):
        body = body.encode()
    M.check_input(target.split(".", 1)[1], json.loads(body))


def on_after_call(http_response, model, **kwargs):
    M.check_response(model.name, http_response.status_code,
                     json.loads(http_response.content or b"{}"))


kms = boto3.client(
    "kms", endpoint_url=URL, region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="not-a-secret",
    config=botocore.config.Config(retries={"max_attempts": 1}))
kms.meta.events.register("before-send.kms", on_send)
kms.meta.events.register("after-call.kms", on_after_call)


def call(op, **kw):
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


def wrap(params, material):
    """The key material under the returned public key, RSAES_OAEP_SHA_1 as AWS documents it."""
    pub = serialization.load_der_public_key(params["PublicKey"])
    return pub.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                              algorithm=hashes.SHA1(), label=None))


def parameters(key_ref):
    return call("get_parameters_for_import", KeyId=key_ref, WrappingAlgorithm="RSAES_OAEP_SHA_1",
                WrappingKeySpec="RSA_2048")


def state(key):
    d = call("describe_key", KeyId=key)
    return d["KeyMetadata"]["KeyState"] if d else None


print("== GetParametersForImport")
k = call("create_key", Origin="EXTERNAL", Description="byok over the API")
key = k["KeyMetadata"]["KeyId"]
arn = k["KeyMetadata"]["Arn"]
expect(k["KeyMetadata"]["KeyState"] == "PendingImport" and k["KeyMetadata"]["Origin"] == "EXTERNAL",
       "an EXTERNAL key starts PendingImport")
before = time.time()
p = parameters(arn)  # an ARN pasted from create-key works as KeyId
expect(p is not None and p["KeyId"] == arn, "KeyId of the response is the key ARN")
valid_to = p["ParametersValidTo"].timestamp()
expect(before + 23 * 3600 < valid_to <= time.time() + 24 * 3600 + 60,
       f"ParametersValidTo is 24 hours away (got {p['ParametersValidTo']})")
pub = serialization.load_der_public_key(p["PublicKey"])
expect(pub.key_size == 2048, "PublicKey is a DER SubjectPublicKeyInfo of an RSA-2048 key")
expect(len(p["ImportToken"]) > 0, "an import token")

print("== ImportKeyMaterial, use, delete, re-import")
material = os.urandom(32)
call_error("import_key_material", "InvalidImportTokenException", KeyId=key,
           ImportToken=p["ImportToken"][:-1] + bytes([p["ImportToken"][-1] ^ 1]),
           EncryptedKeyMaterial=wrap(p, material), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
call_error("import_key_material", "InvalidCiphertextException", KeyId=key,
           ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrap(p, os.urandom(16)),
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
bad = bytearray(wrap(p, material))
bad[10] ^= 1
call_error("import_key_material", "InvalidCiphertextException", KeyId=key,
           ImportToken=p["ImportToken"], EncryptedKeyMaterial=bytes(bad),
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
call_error("import_key_material", "ValidationException", KeyId=key,
           ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrap(p, material),
           ExpirationModel="KEY_MATERIAL_EXPIRES")
expect(state(key) == "PendingImport", "refused imports leave the key PendingImport")
call("import_key_material", KeyId=key, ImportToken=p["ImportToken"],
     EncryptedKeyMaterial=wrap(p, material), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
expect(state(key) == "Enabled", "imported: Enabled")
e = call("encrypt", KeyId=key, Plaintext=b"imported material at work")
blob = e["CiphertextBlob"]
d = call("decrypt", CiphertextBlob=blob)
expect(d and d["Plaintext"] == b"imported material at work", "decrypt round trip")

call("delete_imported_key_material", KeyId=key)
expect(state(key) == "PendingImport", "material deleted: PendingImport")
call_error("decrypt", "KMSInvalidStateException", CiphertextBlob=blob)
call_error("encrypt", "KMSInvalidStateException", KeyId=key, Plaintext=b"x")

p2 = parameters(key)
call_error("import_key_material", "IncorrectKeyMaterialException", KeyId=key,
           ImportToken=p2["ImportToken"], EncryptedKeyMaterial=wrap(p2, os.urandom(32)),
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
expect(state(key) == "PendingImport", "other material refused: still PendingImport")
valid_until = int(time.time()) + 30 * 86400
# The expiration model and ValidTo must agree; neither refusal uses up the import token.
call_error("import_key_material", "ValidationException", KeyId=key, ImportToken=p2["ImportToken"],
           EncryptedKeyMaterial=wrap(p2, material), ValidTo=valid_until,
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
call_error("import_key_material", "ValidationException", KeyId=key, ImportToken=p2["ImportToken"],
           EncryptedKeyMaterial=wrap(p2, material), ExpirationModel="KEY_MATERIAL_EXPIRES")
expect(state(key) == "PendingImport", "inconsistent expiry refused: still PendingImport")
call("import_key_material", KeyId=key, ImportToken=p2["ImportToken"],
     EncryptedKeyMaterial=wrap(p2, material), ValidTo=valid_until)  # AWS's default model: EXPIRES
d = call("decrypt", CiphertextBlob=blob)
expect(d and d["Plaintext"] == b"imported material at work",
       "the same material re-imported: old ciphertext decrypts again")
m = call("describe_key", KeyId=key)["KeyMetadata"]
expect(m.get("ExpirationModel") == "KEY_MATERIAL_EXPIRES" and
       int(m["ValidTo"].timestamp()) == valid_until, "describe-key shows ExpirationModel and ValidTo")

print("== refusals")
other = call("create_key", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
call_error("import_key_material", "InvalidImportTokenException", KeyId=other,
           ImportToken=p2["ImportToken"], EncryptedKeyMaterial=wrap(p2, material),
           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
native = call("create_key")["KeyMetadata"]["KeyId"]
call_error("get_parameters_for_import", "UnsupportedOperationException", KeyId=native,
           WrappingAlgorithm="RSAES_OAEP_SHA_1", WrappingKeySpec="RSA_2048")
call_error("delete_imported_key_material", "UnsupportedOperationException", KeyId=native)
call_error("get_parameters_for_import", "UnsupportedOperationException", KeyId=other,
           WrappingAlgorithm="RSAES_PKCS1_V1_5", WrappingKeySpec="RSA_2048")
call_error("get_parameters_for_import", "NotFoundException",
           KeyId="11111111-2222-4333-8444-555555555555",
           WrappingAlgorithm="RSAES_OAEP_SHA_1", WrappingKeySpec="RSA_2048")

print(f"{checks} checks, {failures} failures; {M.checked} model checks")
sys.exit(1 if failures else 0)
