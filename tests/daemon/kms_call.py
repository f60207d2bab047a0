"""One KMS request over p11kmsd's Unix socket, checked against botocore's KMS model.

usage: kms_call.py SOCKET OPERATION JSON
Prints the response body with "__status" added; exits 3 when the response breaks the model."""

import http.client
import json
import socket
import sys

from kms_model import Model, ModelError


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=20)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(self.unix_path)
        self.sock = s


def main():
    path, op, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    model = Model()
    if model.has(op):
        # DryRun (a boolean) came to the KMS API after the botocore of Debian 12: the rest of the
        # request is checked against the model.
        model.check_input(op, {k: v for k, v in body.items() if k != "DryRun"})
    c = UnixConnection(path)
    c.request("POST", "/", body=json.dumps(body).encode(),
              headers={"X-Amz-Target": "TrentService." + op,
                       "Content-Type": "application/x-amz-json-1.1"})
    r = c.getresponse()
    parsed = json.loads(r.read() or b"{}")
    status = 0
    try:
        if model.has(op):
            model.check_response(op, r.status, parsed)
    except ModelError as e:
        print("model:", e, file=sys.stderr)
        status = 3
    parsed["__status"] = r.status
    print(json.dumps(parsed))
    return status


sys.exit(main())
