"""Checks KMS requests and responses against the service model python3-botocore ships.

Every request a test sends and every response or error p11kmsd returns goes through
Model.check_input / check_output / check_error: members, types, lengths, ranges, enums,
required members and error shapes. Members the model lacks are an error in both directions
(p11kmsd drops fields the model lacks; the tests send only modelled members, except where a
test sends an unknown member on purpose and says so)."""

import base64
import glob
import json

MODEL_GLOB = "/usr/lib/python3/dist-packages/botocore/data/kms/*/service-2.json"

# Errors every AWS JSON service may return besides an operation's own error shapes
# (https://docs.aws.amazon.com/kms/latest/APIReference/CommonErrors.html and the JSON
# protocol's serialization errors), with their HTTP status.
COMMON_ERRORS = {
    "AccessDeniedException": 400,
    "ValidationException": 400,
    "SerializationException": 400,
    "UnknownOperationException": (400, 404),
    "UnrecognizedClientException": 400,
    "MissingAuthenticationTokenException": 403,
    "InvalidSignatureException": 400,
    "IncompleteSignatureException": 400,
    "ThrottlingException": 400,
    "DryRunOperationException": 412,
}
SERVER_ERRORS = {"KMSInternalException": 500, "KeyUnavailableException": 500,
                 "DependencyTimeoutException": 503}


class ModelError(AssertionError):
    pass


class Model:
    def __init__(self, path=None):
        paths = [path] if path else sorted(glob.glob(MODEL_GLOB))
        if not paths:
            raise ModelError("botocore KMS model not found: " + MODEL_GLOB)
        self.path = paths[-1]
        with open(self.path) as f:
            self.model = json.load(f)
        self.shapes = self.model["shapes"]
        self.ops = self.model["operations"]
        self.checked = 0

    def has(self, op):
        return op in self.ops

    def _shape(self, name):
        return self.shapes[name]

    def check(self, shape_name, value, where, wire=True):
        """wire: value is the JSON as sent (blobs base64, timestamps numbers)."""
        s = self._shape(shape_name)
        t = s["type"]
        if t == "structure":
            if not isinstance(value, dict):
                raise ModelError(f"{where}: {shape_name} must be an object, got {value!r}")
            for req in s.get("required", []):
                if req not in value:
                    raise ModelError(f"{where}: required member {req} missing")
            for k, v in value.items():
                if k not in s["members"]:
                    raise ModelError(f"{where}: member {k} is not in the model's {shape_name}")
                self.check(s["members"][k]["shape"], v, f"{where}.{k}", wire)
        elif t == "list":
            if not isinstance(value, list):
                raise ModelError(f"{where}: must be a list")
            self._bounds(s, len(value), where)
            for i, v in enumerate(value):
                self.check(s["member"]["shape"], v, f"{where}[{i}]", wire)
        elif t == "map":
            if not isinstance(value, dict):
                raise ModelError(f"{where}: must be a map")
            for k, v in value.items():
                self.check(s["key"]["shape"], k, f"{where} key", wire)
                self.check(s["value"]["shape"], v, f"{where}[{k}]", wire)
        elif t == "string":
            if not isinstance(value, str):
                raise ModelError(f"{where}: must be a string, got {value!r}")
            self._bounds(s, len(value), where)
            if "enum" in s and value not in s["enum"]:
                raise ModelError(f"{where}: {value!r} is not in the enum {s['enum']}")
        elif t in ("integer", "long"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ModelError(f"{where}: must be an integer, got {value!r}")
            if "min" in s and value < s["min"] or "max" in s and value > s["max"]:
                raise ModelError(f"{where}: {value} out of range")
        elif t == "boolean":
            if not isinstance(value, bool):
                raise ModelError(f"{where}: must be a boolean")
        elif t == "blob":
            if wire:
                if not isinstance(value, str):
                    raise ModelError(f"{where}: blob must be a base64 string")
                try:
                    raw = base64.b64decode(value, validate=True)
                except ValueError as e:
                    raise ModelError(f"{where}: not base64: {e}") from None
            else:
                raw = value
            self._bounds(s, len(raw), where)
        elif t == "timestamp":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ModelError(f"{where}: timestamp must be epoch seconds, got {value!r}")
        else:
            raise ModelError(f"{where}: shape type {t} not handled")

    @staticmethod
    def _bounds(s, n, where):
        if "min" in s and n < s["min"] or "max" in s and n > s["max"]:
            raise ModelError(f"{where}: length {n} outside {s.get('min')}..{s.get('max')}")

    def check_input(self, op, body):
        if op not in self.ops:
            raise ModelError(f"{op}: not in the model")
        shape = self.ops[op].get("input", {}).get("shape")
        if shape:
            self.check(shape, body, f"{op} request")
        elif body not in ({}, None):
            raise ModelError(f"{op}: takes no input")
        self.checked += 1

    def check_output(self, op, status, body):
        if status != 200:
            raise ModelError(f"{op}: success with status {status}")
        shape = self.ops[op].get("output", {}).get("shape")
        if shape:
            self.check(shape, body, f"{op} response")
        elif body not in ({}, None):
            raise ModelError(f"{op}: has no output but got {body!r}")
        self.checked += 1

    def check_error(self, op, status, body):
        if not isinstance(body, dict) or set(body) != {"__type", "message"}:
            raise ModelError(f"{op}: error body must be {{__type, message}}: {body!r}")
        klass = body["__type"]
        if not isinstance(body["message"], str) or not body["message"]:
            raise ModelError(f"{op}: error message must be a non-empty string")
        errors = {e["shape"] for e in self.ops[op].get("errors", [])} if op in self.ops else set()
        if klass in errors or klass in SERVER_ERRORS:
            shape = self._shape(klass)
            if not shape.get("exception"):
                raise ModelError(f"{op}: {klass} is not an exception shape")
            self.check(klass, {"message": body["message"]}, f"{op} {klass}")
            want = SERVER_ERRORS.get(klass, 400)
        elif klass in COMMON_ERRORS:
            want = COMMON_ERRORS[klass]
        else:
            raise ModelError(f"{op}: {klass} is neither an error of {op} nor a common error")
        if klass in SERVER_ERRORS and op in self.ops and klass not in errors:
            raise ModelError(f"{op}: {klass} is not an error of {op}")
        wants = want if isinstance(want, tuple) else (want,)
        if status not in wants and not (status == 413 and klass == "ValidationException"):
            raise ModelError(f"{op}: {klass} with status {status}, expected {want}")
        self.checked += 1

    def check_response(self, op, status, body):
        if status == 200:
            self.check_output(op, status, body)
        else:
            self.check_error(op, status, body)
