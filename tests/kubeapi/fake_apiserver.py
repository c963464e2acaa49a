#!/usr/bin/python3
"""A stand-in kube-apiserver for gpuhook's integration tests.

It serves the few endpoints gpuhook uses (create, get and list of Tekton v1 PipelineRuns,
/version, /readyz and discovery) the way the real kube-apiserver does: HTTP/1.1 keep-alive,
optional TLS, bearer tokens re-read on every request, Status objects for failures,
fieldValidation=Strict|Warn|Ignore with structural pruning, and validation against the
PipelineRun CRD schema. Created objects persist as JSON files in the state directory, so a
restart keeps them. Faults (status codes, dropped or reset connections, delays, a create
whose response is lost) are injected through control endpoints under /_test/.

It is both a command-line program and a module: tests import FakeApiServer, which runs the
server as a subprocess so that it can be killed and restarted on the same port.

Needs only the Python standard library and Debian's python3-jsonschema (/usr/bin/python3).
See README.md beside this file for the reference.
"""

import argparse
import copy
import datetime
import fnmatch
import http.client
import http.server
import itertools
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_client  # noqa: E402  (list, watch, patch, Leases, ...: see README.md)
import kube_routes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "fixtures", "tekton",
                              "tekton-v1-pipelinerun.schema.json")
SYSTEM_PYTHON = "/usr/bin/python3"

GROUP = "tekton.dev"
VERSION = "v1"
API_VERSION = GROUP + "/" + VERSION
KIND = "PipelineRun"
RESOURCE = "pipelineruns"
MAX_BODY = 3 * 1024 * 1024  # the real server's request size limit

DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is '" + DNS1123_SUBDOMAIN + "')")
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE = r"(" + QUALIFIED_NAME + r")?"
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is '" + LABEL_VALUE + "')")
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '" + QUALIFIED_NAME + "')")

# ObjectMeta fields a client may send; anything else in metadata is an unknown field.
OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
}
CREATE_PATH = re.compile(r"^/apis/tekton\.dev/v1/namespaces/([^/]+)/pipelineruns/?$")
ITEM_PATH = re.compile(r"^/apis/tekton\.dev/v1/namespaces/([^/]+)/pipelineruns/([^/]+)$")
LIST_ALL_PATH = re.compile(r"^/apis/tekton\.dev/v1/pipelineruns/?$")
# Tekton Pipelines still serves v1beta1: creates there are stored like v1 ones (no v1beta1
# schema here, so only the envelope is checked).
CREATE_PATH_V1BETA1 = re.compile(r"^/apis/tekton\.dev/v1beta1/namespaces/([^/]+)/pipelineruns/?$")
TOKEN_PATHS = ("/apis", "/api", "/version", "/readyz", "/livez", "/healthz")

REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", None),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    # apimachinery's NewConflict: "Operation cannot be fulfilled on %s %q: %v", here with the
    # optimistic-lock error a ResourceQuota admission update meets under contention.
    409: ("Conflict", 'Operation cannot be fulfilled on resourcequotas "gpu-quota": the object '
                      "has been modified; please apply your changes to the latest version and "
                      "try again"),
    410: ("Expired", "the resource has expired"),
    # NewRequestEntityTooLargeError("limit is %d"), as the apiserver's body limit sends it.
    413: ("RequestEntityTooLarge", "Request entity too large: limit is %d" % MAX_BODY),
    415: ("UnsupportedMediaType", "the body of the request was in an unknown format - "
                                  "accepted media types include: application/json, "
                                  "application/yaml"),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: etcdserver: request timed out"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within requested timeout - "
                     "context deadline exceeded"),
}


def status_object(code, message=None, reason=None, details=None):
    """Build a metav1.Status failure object the way the kube-apiserver writes one."""
    default_reason, default_message = REASONS.get(code, ("", "an error on the server has "
                                                             "prevented the request from "
                                                             "succeeding"))
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message if message is not None else (default_message or ""),
           "reason": reason if reason is not None else default_reason}
    if not obj["reason"]:
        del obj["reason"]
    if details:
        obj["details"] = details
    obj["code"] = code
    return obj


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def field_path(parts):
    """Render a JSON path (keys and list indices) as Kubernetes writes a field path."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += "[%d]" % p
        else:
            out += ("." if out else "") + str(p)
    return out


def go_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_quote(value):
    return json.dumps(value, separators=(",", ":"))


def write_file_atomic(path, data, mode=0o644):
    """Write bytes to path through a temp file, fsync and rename, then fsync the folder."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ---------------------------------------------------------------------------------------------
# Schema: structural pruning (unknown fields) and validation


class SchemaChecker:
    """Validates PipelineRun objects as the apiserver's CRD handler plus ObjectMeta checks do."""

    def __init__(self, schema_path, tekton_webhook=True):
        try:
            import jsonschema  # Debian's python3-jsonschema; imported here so --help works
        except ImportError:
            # A bare GPU machine (tests/gpu/check-on-gpu.sh) has no python3-jsonschema: there
            # the schema's pruning and ObjectMeta checks still run, its validation does not.
            if os.environ.get("GPUHOOK_STANDIN_WITHOUT_JSONSCHEMA") != "1":
                raise
            jsonschema = None
        with open(schema_path, encoding="utf-8") as f:
            self.schema = json.load(f)
        self.validator = None
        if jsonschema:
            cls = jsonschema.validators.validator_for(self.schema,
                                                      default=jsonschema.Draft7Validator)
            self.validator = cls(self.schema)
        self.tekton_webhook = tekton_webhook

    # --- unknown fields ---------------------------------------------------------------------

    @staticmethod
    def _merged(node):
        """Properties, additionalProperties, items and preserve flag of a node, with allOf,
        anyOf and oneOf branches folded in (structural schemas only repeat fields there)."""
        props, addl, items, preserve = {}, None, None, False
        stack = [node]
        while stack:
            n = stack.pop()
            if not isinstance(n, dict):
                continue
            for k, v in n.get("properties", {}).items():
                props.setdefault(k, v)
            if "additionalProperties" in n and addl is None:
                addl = n["additionalProperties"]
            if "items" in n and items is None:
                items = n["items"]
            if n.get("x-kubernetes-preserve-unknown-fields") is True:
                preserve = True
            for key in ("allOf", "anyOf", "oneOf"):
                stack.extend(n.get(key, []))
        return props, addl, items, preserve

    def prune(self, obj, node, path, unknown):
        """Remove fields the schema does not declare from obj (in place), recording their
        paths in unknown; null values of non-nullable fields are dropped, as the apiserver
        does before validation."""
        props, addl, items, preserve = self._merged(node)
        if isinstance(obj, dict):
            for key in list(obj.keys()):
                child_path = path + [key]
                if key in props:
                    sub = props[key]
                    if obj[key] is None and isinstance(sub, dict) and "type" in sub \
                            and not sub.get("nullable"):
                        del obj[key]
                        continue
                    self.prune(obj[key], sub, child_path, unknown)
                elif isinstance(addl, dict):
                    self.prune(obj[key], addl, child_path, unknown)
                elif addl is True or preserve:
                    continue
                else:
                    unknown.append(field_path(child_path))
                    del obj[key]
        elif isinstance(obj, list) and isinstance(items, dict):
            for i, v in enumerate(obj):
                self.prune(v, items, path + [i], unknown)

    def prune_object(self, obj):
        """Prune a whole PipelineRun; returns the sorted list of unknown field paths."""
        unknown = []
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for key in list(meta.keys()):
                if key not in OBJECT_META_FIELDS:
                    unknown.append("metadata." + key)
                    del meta[key]
        rest = {k: v for k, v in obj.items() if k != "metadata"}
        self.prune(rest, self.schema, [], unknown)
        for k in list(obj.keys()):
            if k != "metadata" and k not in rest:
                del obj[k]
        for k, v in rest.items():
            obj[k] = v
        return sorted(set(unknown))

    # --- validation -------------------------------------------------------------------------

    def validate(self, obj):
        """Return a list of causes {reason, message, field} for ObjectMeta and the schema."""
        causes = []

        def add(reason, field, message):
            causes.append({"reason": reason, "message": message, "field": field})

        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            add("FieldValueRequired", "metadata.name",
                "Required value: name or generateName is required")
            meta = {}
        name = meta.get("name")
        if not name:
            add("FieldValueRequired", "metadata.name",
                "Required value: name or generateName is required")
        elif not isinstance(name, str):
            add("FieldValueInvalid", "metadata.name",
                "Invalid value: %s: must be a string" % go_quote(name))
        else:
            if len(name) > 253:
                add("FieldValueInvalid", "metadata.name",
                    "Invalid value: %s: must be no more than 253 characters" % go_quote(name))
            if not re.fullmatch(DNS1123_SUBDOMAIN, name):
                add("FieldValueInvalid", "metadata.name",
                    "Invalid value: %s: %s" % (go_quote(name), DNS1123_SUBDOMAIN_MSG))
        for mapname in ("labels", "annotations"):
            m = meta.get(mapname)
            if m is None:
                continue
            if not isinstance(m, dict):
                add("FieldValueTypeInvalid", "metadata." + mapname,
                    "Invalid value: %s: must be a map of strings" % go_quote(go_type(m)))
                continue
            for k, v in m.items():
                fp = "metadata.%s" % mapname
                kerr = self._label_key_error(k)
                if kerr:
                    add("FieldValueInvalid", fp, "Invalid value: %s: %s" % (go_quote(k), kerr))
                if not isinstance(v, str):
                    add("FieldValueTypeInvalid", fp + "." + k,
                        "Invalid value: %s: must be a string" % go_quote(go_type(v)))
                elif mapname == "labels":
                    if len(v) > 63:
                        add("FieldValueInvalid", fp, "Invalid value: %s: must be no more than "
                            "63 characters" % go_quote(v))
                    if not re.fullmatch(LABEL_VALUE, v):
                        add("FieldValueInvalid", fp,
                            "Invalid value: %s: %s" % (go_quote(v), LABEL_VALUE_MSG))

        body = {k: v for k, v in obj.items() if k != "metadata"}
        body["metadata"] = {}
        errors = sorted(self.validator.iter_errors(body) if self.validator else [],
                        key=lambda e: [str(p) for p in e.absolute_path])
        for e in errors:
            causes.append(self._cause(e))
        return causes

    @staticmethod
    def _label_key_error(key):
        if not isinstance(key, str) or not key:
            return "name part must be non-empty"
        prefix, _, name = key.rpartition("/")
        if prefix:
            if len(prefix) > 253 or not re.fullmatch(DNS1123_SUBDOMAIN, prefix):
                return "prefix part " + DNS1123_SUBDOMAIN_MSG
        if len(name) > 63:
            return "name part must be no more than 63 characters"
        if not re.fullmatch(QUALIFIED_NAME, name):
            return QUALIFIED_NAME_MSG
        return None

    @staticmethod
    def _cause(e):
        path = list(e.absolute_path)
        fp = field_path(path)
        where = fp or "<root>"
        if e.validator == "required":
            m = re.match(r"'(.*)' is a required property", e.message)
            missing = m.group(1) if m else "?"
            return {"reason": "FieldValueRequired", "message": "Required value",
                    "field": field_path(path + [missing])}
        if e.validator == "type":
            want = e.validator_value
            if isinstance(want, list):
                want = "/".join(want)
            got = go_type(e.instance)
            return {"reason": "FieldValueTypeInvalid",
                    "message": "Invalid value: %s: %s in body must be of type %s: %s"
                               % (go_quote(got), where, want, go_quote(got)),
                    "field": fp}
        if e.validator == "enum":
            supported = ", ".join(go_quote(v) for v in e.validator_value)
            return {"reason": "FieldValueNotSupported",
                    "message": "Unsupported value: %s: supported values: %s"
                               % (go_quote(e.instance), supported),
                    "field": fp}
        if e.validator == "pattern":
            return {"reason": "FieldValueInvalid",
                    "message": "Invalid value: %s: %s in body should match '%s'"
                               % (go_quote(e.instance), where, e.validator_value),
                    "field": fp}
        return {"reason": "FieldValueInvalid",
                "message": "Invalid value: %s: %s in body %s"
                           % (go_quote(e.instance if not isinstance(e.instance, (dict, list))
                                       else go_type(e.instance)), where, e.message),
                "field": fp}

    def webhook_denial(self, obj):
        """The subset of Tekton's validating admission webhook that concerns a created run;
        returns a message or None."""
        if not self.tekton_webhook:
            return None
        errs = []
        name = obj.get("metadata", {}).get("name") or ""
        if len(name) > 63:
            errs.append("Invalid resource name: length must be no more than 63 characters: "
                        "metadata.name")
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.append("missing field(s): spec")
        else:
            has_ref, has_spec = "pipelineRef" in spec, "pipelineSpec" in spec
            if has_ref and has_spec:
                errs.append("expected exactly one, got both: spec.pipelineRef, spec.pipelineSpec")
            elif not has_ref and not has_spec:
                errs.append("expected exactly one, got neither: spec.pipelineRef, "
                            "spec.pipelineSpec")
            seen = {}
            for i, item in enumerate(spec.get("params") or []):
                n = item.get("name")
                if n in seen:
                    errs.append('parameter names must be unique, the parameter "%s" is also '
                                "defined at: spec.params[%d].name" % (n, i))
                seen.setdefault(n, i)
            seen = {}
            for i, item in enumerate(spec.get("workspaces") or []):
                n = item.get("name")
                if n in seen:
                    errs.append('workspace "%s" provided by pipelinerun more than once, at '
                                "index %d and %d: spec.workspaces[%d].name"
                                % (n, seen[n], i, i))
                seen.setdefault(n, i)
        if not errs:
            return None
        return ('admission webhook "validation.webhook.pipeline.tekton.dev" denied the '
                "request: validation failed: " + "\n".join(errs))


# ---------------------------------------------------------------------------------------------
# Object store


class Store:
    """PipelineRuns kept in memory and written through to DIR/objects/NS/NAME.json."""

    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "objects")
        os.makedirs(self.root, exist_ok=True)
        self.lock = threading.Lock()
        self.objects = {}  # (ns, name) -> object
        self.rv = 0
        self.ext = None  # kube_store.ResourceStore: shared counter, other types, events
        for ns in sorted(os.listdir(self.root)):
            nsdir = os.path.join(self.root, ns)
            if not os.path.isdir(nsdir):
                continue
            for fn in os.listdir(nsdir):
                if not fn.endswith(".json") or fn.startswith("."):
                    continue
                try:
                    with open(os.path.join(nsdir, fn), encoding="utf-8") as f:
                        obj = json.load(f)
                except (OSError, ValueError):
                    continue
                self.objects[(ns, obj["metadata"]["name"])] = obj
                self.rv = max(self.rv, int(obj["metadata"].get("resourceVersion", "0")))

    def create(self, ns, obj, dry_run=False):
        """Store obj; returns the stored object, or None when the name exists."""
        with self.lock:
            name = obj["metadata"]["name"]
            if (ns, name) in self.objects:
                return None
            obj = copy.deepcopy(obj)
            meta = obj["metadata"]
            meta["namespace"] = ns
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = str(self.rv + 1)
            meta["generation"] = 1
            meta["creationTimestamp"] = now_rfc3339()
            if dry_run:
                return obj
            self.rv += 1
            nsdir = os.path.join(self.root, ns)
            os.makedirs(nsdir, exist_ok=True)
            write_file_atomic(os.path.join(nsdir, name + ".json"),
                              json.dumps(obj, indent=1, sort_keys=True).encode())
            self.objects[(ns, name)] = obj
            if self.ext:
                self.ext.created(obj)
            return copy.deepcopy(obj)

    def get(self, ns, name):
        with self.lock:
            obj = self.objects.get((ns, name))
            return copy.deepcopy(obj) if obj else None

    def delete(self, ns, name):
        with self.lock:
            obj = self.objects.pop((ns, name), None)
            if obj:
                try:
                    os.unlink(os.path.join(self.root, ns, name + ".json"))
                except OSError:
                    pass
                if self.ext:
                    self.ext.deleted(ns, obj)
            return obj

    def list(self, ns=None):
        with self.lock:
            items = [copy.deepcopy(o) for (n, _), o in self.objects.items()
                     if ns is None or n == ns]
            rv = self.rv
        items.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
        return items, rv

    def clear(self):
        with self.lock:
            for ns, name in list(self.objects):
                try:
                    os.unlink(os.path.join(self.root, ns, name + ".json"))
                except OSError:
                    pass
                if self.ext:
                    self.ext.deleted(ns, self.objects[(ns, name)])
            self.objects.clear()


# ---------------------------------------------------------------------------------------------
# Faults

FAULT_MODES = ("status", "drop", "reset", "delay", "pass", "alternate", "create_then_fail")


def normalize_rule(rule, top=True):
    """Turn a rule (dict or shorthand string) into a dict; raise ValueError when invalid."""
    if isinstance(rule, int) and not isinstance(rule, bool):
        rule = str(rule)
    if isinstance(rule, str):
        if rule.isdigit():
            rule = {"mode": "status", "code": int(rule)}
        elif rule.startswith("delay:"):
            rule = {"mode": "delay", "seconds": float(rule[6:])}
        else:
            rule = {"mode": rule}
    if not isinstance(rule, dict):
        raise ValueError("a rule must be an object or a string")
    rule = dict(rule)
    mode = rule.get("mode")
    if mode not in FAULT_MODES:
        raise ValueError("unknown fault mode %r (one of %s)" % (mode, ", ".join(FAULT_MODES)))
    if mode == "status":
        code = rule.get("code")
        if not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError("status rule needs an integer code")
    if mode == "delay":
        rule["seconds"] = float(rule.get("seconds", 1))
    if mode == "alternate":
        modes = rule.get("modes")
        if not isinstance(modes, list) or not modes:
            raise ValueError("alternate rule needs a non-empty modes list")
        rule["modes"] = [normalize_rule(m, top=False) for m in modes]
        if any(m["mode"] == "alternate" for m in rule["modes"]):
            raise ValueError("alternate rules do not nest")
        rule["next"] = 0
    if mode == "create_then_fail":
        rule["then"] = normalize_rule(rule.get("then", "drop"), top=False)
        if rule["then"]["mode"] not in ("status", "drop", "reset", "delay"):
            raise ValueError("create_then_fail: then must be drop, reset, delay or a status")
    if top:
        count = rule.get("count", 1)
        if not isinstance(count, int) or count < -1:
            raise ValueError("count must be an integer >= -1")
        rule["count"] = count
        rule["applied"] = 0
        if "paths" in rule and (not isinstance(rule["paths"], list)
                                or not all(isinstance(p, str) for p in rule["paths"])):
            raise ValueError("paths must be a list of strings")
        if "methods" in rule:
            rule["methods"] = [str(m).upper() for m in rule["methods"]]
    return rule


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def set(self, rules):
        normalized = [normalize_rule(r) for r in rules]
        with self.lock:
            self.rules = normalized

    def add(self, rules):
        normalized = [normalize_rule(r) for r in rules]
        with self.lock:
            self.rules.extend(normalized)

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.rules)

    @staticmethod
    def _matches(rule, method, path):
        if "paths" in rule:
            if not any(fnmatch.fnmatchcase(path, p) for p in rule["paths"]):
                return False
            return "methods" not in rule or method in rule["methods"]
        methods = rule.get("methods", ["POST"])
        return method in methods and CREATE_PATH.match(path) is not None

    def take(self, method, path):
        """Consume and return the fault to apply to this request, or None."""
        if path.startswith("/_test/"):
            return None
        with self.lock:
            for rule in self.rules:
                if rule["count"] == 0 or not self._matches(rule, method, path):
                    continue
                if rule["count"] > 0:
                    rule["count"] -= 1
                rule["applied"] += 1
                if rule["mode"] == "alternate":
                    chosen = rule["modes"][rule["next"] % len(rule["modes"])]
                    rule["next"] += 1
                    return copy.deepcopy(chosen)
                return copy.deepcopy(rule)
        return None


# ---------------------------------------------------------------------------------------------
# HTTP server


class DropConnection(Exception):
    """Raised to close the connection without sending a response."""

    def __init__(self, reset=False):
        super().__init__()
        self.reset = reset


class ApiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state_dir, schema_path, token_file=None, ssl_ctx=None,
                 namespaces=None, tekton_webhook=True, ext_options=None):
        self.store = Store(state_dir)
        self.checker = SchemaChecker(schema_path, tekton_webhook)
        self.token_file = token_file
        self.ssl_ctx = ssl_ctx
        self.namespaces = set(namespaces) if namespaces else None
        self.faults = Faults()
        self.log_lock = threading.Lock()
        self.log = []
        self.log_seq = itertools.count(1)
        self.conn_seq = itertools.count(1)
        self.ext = kube_routes.Extension(self, state_dir, write_file_atomic,
                                         **(ext_options or {}))
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout, OSError)):
            return
        sys.stderr.write("fake_apiserver: %s: %s\n" % (type(exc).__name__, exc))

    def record(self, entry):
        with self.log_lock:
            entry["seq"] = next(self.log_seq)
            self.log.append(entry)
            if len(self.log) > 20000:
                del self.log[:10000]

    def current_token(self):
        try:
            with open(self.token_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError:
            return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this

    # --- connection plumbing ----------------------------------------------------------------

    def setup(self):
        self.conn_id = next(self.server.conn_seq)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.ssl_ctx is not None:
            self.request.settimeout(10)
            self.request = self.server.ssl_ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            if self.server.ssl_ctx is not None:
                try:
                    self.request.close()
                except OSError:
                    pass

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's name
        # Quiet: never print request lines, bodies or tokens.
        pass

    def _drop(self, reset):
        self.close_connection = True
        sock = self.request
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            # A TLS socket is closed without close_notify, like a crashed peer.
            if isinstance(sock, ssl.SSLSocket):
                socket.socket(fileno=sock.detach()).close()
            else:
                sock.close()
        except OSError:
            pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    # --- responses --------------------------------------------------------------------------

    def _send(self, code, body, content_type="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body leave in one write: two small writes on a kept-alive connection
        # meet Nagle's algorithm and the client's delayed ACK, a 40 ms stall per request.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self._log_request(code)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []
        self.wfile.flush()
        self.status = code

    def _status(self, code, message=None, reason=None, details=None, headers=()):
        self._send(code, status_object(code, message, reason, details), headers=headers)

    def _fault_response(self, rule, ns):
        """Apply a status, drop or reset fault (delay and pass are handled by the caller)."""
        mode = rule["mode"]
        if mode in ("drop", "reset"):
            raise DropConnection(reset=(mode == "reset"))
        code = rule["code"]
        headers = []
        retry_after = rule["retry_after"] if "retry_after" in rule else (
            1 if code == 429 else None)
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        if "body" in rule:
            self._send(code, rule["body"], rule.get("content_type", "text/plain"),
                       headers=headers)
            return
        details = None
        message = rule.get("message")
        if code == 429 and retry_after is not None and str(retry_after).isdigit():
            details = {"retryAfterSeconds": min(int(retry_after), 2 ** 31 - 1)}
        if code == 403 and message is None:
            message = ('pipelineruns.tekton.dev is forbidden: User "system:serviceaccount:%s:'
                       'gpuhook" cannot create resource "pipelineruns" in API group '
                       '"tekton.dev" in the namespace "%s"' % (ns or "default", ns or "default"))
            details = {"group": GROUP, "kind": RESOURCE}
        if code == 500 and message is None:
            details = {"causes": [{"message": "etcdserver: request timed out"}]}
        if code == 503 and retry_after is not None and str(retry_after).isdigit():
            details = {"retryAfterSeconds": int(retry_after)}
        if code == 409 and message is None and rule.get("reason") in (None, "Conflict"):
            details = {"name": "gpu-quota", "kind": "resourcequotas"}
        self._status(code, message, reason=rule.get("reason"), details=details,
                     headers=headers)

    # --- dispatch ---------------------------------------------------------------------------

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def _handle(self):
        started = time.time()
        url = urllib.parse.urlsplit(self.path)
        self.req_path, self.req_query = url.path, url.query
        self.query = urllib.parse.parse_qs(url.query)
        self.status = None
        self.auth_state = "not-required"
        self.obj_name = None
        self.patch_fields = None
        entry = {"time": started, "method": self.command, "path": url.path,
                 "query": url.query, "conn": self.conn_id,
                 "user_agent": self.headers.get("User-Agent"),
                 "content_type": self.headers.get("Content-Type")}
        self.log_entry, self.logged, self.fault_mode = None, False, None
        fault = None
        try:
            body = self._read_body()
            if self.req_path.startswith("/_test/"):
                self._control(body)
                return
            self.log_entry = entry
            fault = self.server.faults.take(self.command, self.req_path)
            self.fault_mode = fault["mode"] if fault else None
            if fault and fault["mode"] == "delay":
                time.sleep(fault["seconds"])
            self.pad_response = fault.get("pad_response", 0) if fault else 0
            if fault and fault["mode"] in ("status", "drop", "reset"):
                self._fault_response(fault, self._ns())
            else:
                then = fault["then"] if fault and fault["mode"] == "create_then_fail" else None
                self._api(body, then)
        except DropConnection as d:
            self._drop(d.reset)
        except (ConnectionError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        finally:
            if not self.req_path.startswith("/_test/"):
                self._log_request(self.status)
                entry["duration"] = time.time() - started

    def _log_request(self, status):
        """Records the request once: just before its answer is written (so a client that has
        the answer finds it in the log), or at the end for one that got none (dropped, reset,
        a watch stream)."""
        entry = getattr(self, "log_entry", None)  # None: a control request, or a subclass
        if entry is None or self.logged:          # (tests/githubapi) that logs its own way
            return
        self.logged = True
        entry.update({"status": status, "auth_ok": self.auth_state in ("ok", "not-required"),
                      "auth": self.auth_state, "fault": self.fault_mode,
                      "name": self.obj_name, "patch_fields": self.patch_fields,
                      "duration": time.time() - entry["time"]})
        self.server.record(entry)

    def _ns(self):
        m = CREATE_PATH.match(self.req_path) or ITEM_PATH.match(self.req_path)
        return urllib.parse.unquote(m.group(1)) if m else None

    def _authorized(self):
        if not self.server.token_file:
            return True
        hdr = self.headers.get("Authorization")
        if not hdr:
            self.auth_state = "missing"
            return False
        scheme, _, token = hdr.partition(" ")
        current = self.server.current_token()
        if scheme.lower() != "bearer" or not current or token.strip() != current:
            self.auth_state = "wrong"
            return False
        self.auth_state = "ok"
        return True

    def _api(self, body, then):
        path = self.req_path
        if any(path == p or path.startswith(p + "/") for p in TOKEN_PATHS):
            if not self._authorized():
                self._status(401)
                return
        if body is None:
            self.close_connection = True
            self._status(413)
            return
        if self.server.ext.handle(self, body, then):
            return
        if path in ("/readyz", "/livez", "/healthz"):
            if self.command not in ("GET", "HEAD"):
                self._status(405)
                return
            self._send(200, "ok", "text/plain; charset=utf-8",
                       headers=[("X-Content-Type-Options", "nosniff")])
            return
        if path == "/version":
            self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0",
                             "gitCommit": "fake", "gitTreeState": "clean",
                             "buildDate": "2024-04-17T17:27:00Z", "goVersion": "go1.22.2",
                             "compiler": "gc", "platform": "linux/amd64"})
            return
        if path == "/apis":
            self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": GROUP, "versions": [{"groupVersion": API_VERSION, "version": VERSION}],
                 "preferredVersion": {"groupVersion": API_VERSION, "version": VERSION}}]})
            return
        if path.rstrip("/") == "/apis/tekton.dev/v1":
            self._send(200, {"kind": "APIResourceList", "apiVersion": "v1",
                             "groupVersion": API_VERSION, "resources": [
                                 {"name": RESOURCE, "singularName": "pipelinerun",
                                  "namespaced": True, "kind": KIND,
                                  "verbs": ["create", "delete", "get", "list"],
                                  "shortNames": ["pr", "prs"], "categories": ["tekton",
                                                                              "tekton-pipelines"]}]})
            return
        m = CREATE_PATH_V1BETA1.match(path)
        if m and self.command == "POST":
            self._create(urllib.parse.unquote(m.group(1)), body, then, version="v1beta1")
            return
        m = CREATE_PATH.match(path)
        if m:
            ns = urllib.parse.unquote(m.group(1))
            if self.command == "POST":
                self._create(ns, body, then)
            elif self.command in ("GET", "HEAD"):
                self._list(ns)
            else:
                self._status(405)
            return
        m = ITEM_PATH.match(path)
        if m:
            ns, name = urllib.parse.unquote(m.group(1)), urllib.parse.unquote(m.group(2))
            self.obj_name = name
            if self.command in ("GET", "HEAD"):
                obj = self.server.store.get(ns, name)
            elif self.command == "DELETE":
                obj = self.server.store.delete(ns, name)
            else:
                self._status(405)
                return
            if obj is None:
                self._status(404, '%s.%s "%s" not found' % (RESOURCE, GROUP, name),
                             details={"name": name, "group": GROUP, "kind": RESOURCE})
            else:
                self._send(200, obj)
            return
        if LIST_ALL_PATH.match(path) and self.command in ("GET", "HEAD"):
            self._list(None)
            return
        self._status(404)

    def _list(self, ns):
        items, rv = self.server.store.list(ns)
        sel = (self.query.get("labelSelector") or [""])[0]
        if sel:
            items = [o for o in items if label_selector_matches(sel, o)]
        self._send(200, {"apiVersion": API_VERSION, "kind": KIND + "List",
                         "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _create(self, ns, body, then, version=VERSION):
        result = self._create_result(ns, body, version)
        if result[0] == 201 and self.pad_response:
            # A large 201, as managedFields of a big object make one: the client must read
            # what it needs and take the run as created, whatever the size.
            code, payload, headers = result
            payload["metadata"]["managedFields"] = [{
                "manager": "fake-padding", "operation": "Update", "apiVersion": API_VERSION,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:pad": "x" * int(self.pad_response)}}]
            result = (code, payload, headers)
        if then is None:
            code, payload, headers = result
            self._send(code, payload, headers=headers)
            return
        # The object is stored (or refused) as usual, then the answer is lost.
        if then["mode"] == "delay":
            time.sleep(then["seconds"])
            code, payload, headers = result
            self._send(code, payload, headers=headers)
            return
        self._fault_response(then, ns)

    def _create_result(self, ns, body, version=VERSION):
        """Run a create; returns (code, body, extra headers)."""
        api_version = GROUP + "/" + version
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return 415, status_object(415), []
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return 400, status_object(400, "the object provided is unrecognized (must be of "
                                           "type %s): couldn't get version/kind; json parse "
                                           "error: %s" % (KIND, e)), []
        if not isinstance(obj, dict):
            return 400, status_object(400, "the object provided is unrecognized (must be of "
                                           "type %s): couldn't get version/kind; json parse "
                                           "error: json: cannot unmarshal %s into Go value of "
                                           "type struct" % (KIND, go_type(obj))), []
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            self.obj_name = meta["name"]
        if obj.get("kind") != KIND or not obj.get("apiVersion"):
            if not obj.get("kind"):
                return 400, status_object(400, "Object 'Kind' is missing in the request "
                                               "body"), []
            if not obj.get("apiVersion"):
                return 400, status_object(400, "Object 'apiVersion' is missing in the request "
                                               "body"), []
            return 400, status_object(400, "%s in version %s cannot be handled as a %s: the "
                                           "kind in the data does not match the expected kind"
                                      % (obj["kind"], go_quote(VERSION), KIND)), []
        if obj.get("apiVersion") != api_version:
            return 400, status_object(400, "the API version in the data (%s) does not match "
                                           "the expected API version (%s)"
                                      % (obj.get("apiVersion"), api_version)), []
        fv = (self.query.get("fieldValidation") or ["Warn"])[0]
        if fv not in ("Strict", "Warn", "Ignore"):
            causes = [{"reason": "FieldValueNotSupported", "field": "fieldValidation",
                       "message": 'Unsupported value: %s: supported values: "Ignore", '
                                  '"Strict", "Warn"' % go_quote(fv)}]
            return 422, status_object(
                422, 'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: '
                     + causes[0]["message"],
                details={"group": "meta.k8s.io", "kind": "CreateOptions", "causes": causes}), []
        dry_run = (self.query.get("dryRun") or [""])[0]
        if dry_run not in ("", "All"):
            return 400, status_object(400, "dryRun must be All"), []
        unknown = self.server.checker.prune_object(obj) if version == VERSION else []
        headers = []
        if unknown and fv == "Strict":
            return 400, status_object(
                400, '%s in version "%s" cannot be handled as a %s: strict decoding error: %s'
                % (KIND, VERSION, KIND, ", ".join('unknown field "%s"' % u for u in unknown))), []
        if unknown and fv == "Warn":
            headers = [("Warning", '299 - %s' % go_quote('unknown field "%s"' % u))
                       for u in unknown]
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if meta.get("namespace") not in (None, "", ns):
            return 400, status_object(400, "the namespace of the provided object does not "
                                           "match the namespace sent on the request"), []
        if meta.get("resourceVersion"):
            return 400, status_object(400, "resourceVersion should not be set on objects to "
                                           "be created"), []
        if self.server.namespaces is not None and ns not in self.server.namespaces:
            return 404, status_object(404, 'namespaces "%s" not found' % ns,
                                      details={"name": ns, "kind": "namespaces"}), []
        if not meta.get("name") and isinstance(meta.get("generateName"), str):
            suffix = "".join(random.choice("bcdfghjklmnpqrstvwxz2456789")
                             for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        for k in ("uid", "creationTimestamp", "generation", "selfLink", "managedFields",
                  "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        obj.pop("status", None)  # the status subresource resets status on create
        causes = self.server.checker.validate(obj)
        name = meta.get("name") if isinstance(meta.get("name"), str) else ""
        if causes:
            msgs = ["%s: %s" % (c["field"], c["message"]) for c in causes]
            msg = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
            return 422, status_object(
                422, '%s.%s "%s" is invalid: %s' % (KIND, GROUP, name, msg),
                details={"name": name, "group": GROUP, "kind": KIND, "causes": causes}), []
        denial = self.server.checker.webhook_denial(obj)
        if denial:
            return 400, status_object(400, denial), []
        self.obj_name = name
        stored = self.server.store.create(ns, obj, dry_run=(dry_run == "All"))
        if stored is None:
            return 409, status_object(
                409, '%s.%s "%s" already exists' % (RESOURCE, GROUP, name), "AlreadyExists",
                details={"name": name, "group": GROUP, "kind": RESOURCE}), []
        return 201, stored, headers

    # --- control endpoints ------------------------------------------------------------------

    def _control(self, body):
        srv, path, cmd = self.server, self.req_path, self.command
        self.status = None
        try:
            payload = json.loads(body.decode() or "null") if body else None
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        if srv.ext.control(self, payload):
            return
        ns = (self.query.get("namespace") or [None])[0]
        if path == "/_test/objects" and cmd == "GET":
            items, _ = srv.store.list(ns)
            self._send(200, {"items": items})
        elif path == "/_test/objects" and cmd == "DELETE":
            srv.store.clear()
            self._send(200, {"ok": True})
        elif path == "/_test/requests" and cmd == "GET":
            with srv.log_lock:
                log = list(srv.log)
            self._send(200, {"items": log})
        elif path == "/_test/requests" and cmd == "DELETE":
            with srv.log_lock:
                srv.log.clear()
            self._send(200, {"ok": True})
        elif path == "/_test/faults" and cmd == "GET":
            self._send(200, {"rules": srv.faults.snapshot()})
        elif path == "/_test/faults" and cmd in ("POST", "DELETE"):
            rules = (payload or {}).get("rules", []) if cmd == "POST" else []
            try:
                if cmd == "POST" and (payload or {}).get("append"):
                    srv.faults.add(rules)
                else:
                    srv.faults.set(rules)
            except (ValueError, TypeError) as e:
                self._send(400, {"error": str(e)})
                return
            self._send(200, {"rules": srv.faults.snapshot()})
        elif path == "/_test/reset" and cmd == "POST":
            srv.store.clear()
            srv.faults.set([])
            with srv.log_lock:
                srv.log.clear()
            self._send(200, {"ok": True})
        elif path == "/_test/ping":
            self._send(200, {"ok": True, "pid": os.getpid()})
        else:
            self._send(404, {"error": "no such control endpoint"})


def label_selector_matches(selector, obj):
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.strip().rstrip("=")) != v.strip().lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Helpers for tests


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_tls(directory, days=2):
    """Generate with the openssl CLI a CA (ca.crt, ca.key) and a server certificate for
    127.0.0.1 and localhost signed by it (server.crt, server.key) in directory.
    Returns a dict of the four paths."""
    os.makedirs(directory, exist_ok=True)
    d = directory
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days),
             "-subj", "/CN=gpuhook-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", str(days),
             "-extfile", "server.ext", cwd=d)
    for fn in ("server.csr", "server.ext", "ca.srl"):
        try:
            os.unlink(os.path.join(d, fn))
        except OSError:
            pass
    return {k: os.path.join(d, k.replace("_", ".")) for k in
            ("ca_crt", "ca_key", "server_crt", "server_key")}


def write_token(path, token):
    """Atomically replace a token file (as the kubelet does when it rotates a projected
    token). The file holds the token followed by a newline."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_file_atomic(path, (token + "\n").encode(), mode=0o600)


def write_serviceaccount(directory, token, ca_file=None, namespace="tekton-pipelines"):
    """Lay out a service-account folder like /var/run/secrets/kubernetes.io/serviceaccount:
    token, ca.crt (copied from ca_file when given) and namespace. Returns directory."""
    os.makedirs(directory, exist_ok=True)
    write_token(os.path.join(directory, "token"), token)
    if ca_file:
        with open(ca_file, "rb") as f:
            write_file_atomic(os.path.join(directory, "ca.crt"), f.read())
    write_file_atomic(os.path.join(directory, "namespace"), namespace.encode())
    return directory


def sample_pipelinerun(name="gpu-real-8-step-workflow-lite-0123456789",
                       namespace="tekton-pipelines"):
    """A valid PipelineRun shaped like the ones gpuhook renders."""
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "gpuhook"}},
        "spec": {
            "pipelineRef": {"name": "gpu-real-8-step-workflow-lite"},
            "params": [{"name": "git-repo-url", "value": "https://github.com/o/r.git"}],
            "workspaces": [{"name": "shared-storage", "volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "50Gi"}}}}}],
        },
    }


class Response:
    """What FakeApiServer.request returns: status, headers (an http.client message),
    raw body bytes and the decoded JSON (or None)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:200])


class FakeApiServer(kube_client.ClientMixin):
    """Runs fake_apiserver.py as a subprocess and talks to its control endpoints.

    state_dir keeps the objects (and server.log); tls_dir must hold server.crt and
    server.key (see make_tls) and switches to https; token_file makes the bearer token
    required. start() with port 0 picks a free port; later start() calls reuse that port
    unless another is passed.
    """

    def __init__(self, state_dir, tls_dir=None, token_file=None, port=0, schema=None,
                 namespaces=None, faults=None, tekton_webhook=True, python=None):
        self.state_dir = os.path.abspath(state_dir)
        self.tls_dir = os.path.abspath(tls_dir) if tls_dir else None
        self.token_file = os.path.abspath(token_file) if token_file else None
        self.port = port
        self.schema = schema
        self.namespaces = namespaces
        self.initial_faults = faults
        self.tekton_webhook = tekton_webhook
        self.python = python or (SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON)
                                 else sys.executable)
        self.proc = None
        self.host = "127.0.0.1"
        os.makedirs(self.state_dir, exist_ok=True)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls_dir else "http"

    @property
    def url(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    @property
    def ca_file(self):
        return os.path.join(self.tls_dir, "ca.crt") if self.tls_dir else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, port=None, timeout=15):
        """Start the server and wait until it accepts connections; returns self."""
        if self.running:
            raise RuntimeError("already running")
        if port is not None:
            self.port = port
        port_file = os.path.join(self.state_dir, "port")
        try:
            os.unlink(port_file)
        except OSError:
            pass
        cmd = [self.python, os.path.join(HERE, "fake_apiserver.py"), "--state-dir",
               self.state_dir, "--port", str(self.port), "--port-file", port_file]
        if self.tls_dir:
            cmd += ["--tls-dir", self.tls_dir]
        if self.token_file:
            cmd += ["--token-file", self.token_file]
        if self.schema:
            cmd += ["--schema", self.schema]
        for ns in self.namespaces or []:
            cmd += ["--namespace", ns]
        if self.initial_faults:
            cmd += ["--faults", json.dumps({"rules": self.initial_faults})]
        if not self.tekton_webhook:
            cmd += ["--no-tekton-webhook"]
        cmd += self.ext_args()
        log = open(os.path.join(self.state_dir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     close_fds=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("fake_apiserver exited with %s; see %s" % (
                    self.proc.returncode, os.path.join(self.state_dir, "server.log")))
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("fake_apiserver did not start within %s s" % timeout)

    def stop(self, timeout=5):
        """Stop with SIGTERM (SIGKILL after timeout); the port is free afterwards."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        """Kill with SIGKILL, like a crashed or unreachable API server."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, down_seconds=0):
        """Kill, optionally stay down for a while, and start again on the same port."""
        self.kill()
        if down_seconds:
            time.sleep(down_seconds)
        return self.start(port=self.port)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- a small client ---------------------------------------------------------------------

    def ssl_context(self):
        """An SSL context that trusts the generated CA (None for plain http)."""
        if not self.tls_dir:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def connection(self, timeout=10):
        if self.tls_dir:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.ssl_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=None, timeout=10,
                content_type="application/json"):
        """One request on a fresh connection. body may be a dict (sent as JSON), str or
        bytes; token adds 'Authorization: Bearer <token>'. Returns a Response."""
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None and content_type and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = content_type
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def create(self, obj, ns=None, token=None, field_validation="Strict", **kw):
        """POST obj to the pipelineruns collection of ns (default: the object's namespace)."""
        ns = ns or obj.get("metadata", {}).get("namespace") or "default"
        path = "/apis/tekton.dev/v1/namespaces/%s/pipelineruns" % ns
        if field_validation:
            path += "?fieldValidation=" + field_validation
        return self.request("POST", path, obj, token=token, **kw)

    def _control(self, method, path, payload=None):
        r = self.request(method, path, payload)
        if r.status != 200:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, r.body[:300]))
        return r.json

    def objects(self, ns=None):
        """Stored PipelineRuns (in creation order), optionally of one namespace."""
        q = "?namespace=" + urllib.parse.quote(ns) if ns else ""
        return self._control("GET", "/_test/objects" + q)["items"]

    def requests(self):
        """The request log since the last start or reset (control requests excluded)."""
        return self._control("GET", "/_test/requests")["items"]

    def clear_requests(self):
        self._control("DELETE", "/_test/requests")

    def set_faults(self, rules, append=False):
        """Replace (or append to) the fault rules; returns them as normalized."""
        return self._control("POST", "/_test/faults",
                             {"rules": list(rules), "append": append})["rules"]

    def faults(self):
        """The current rules with their remaining count and applied tally."""
        return self._control("GET", "/_test/faults")["rules"]

    def clear_faults(self):
        self._control("DELETE", "/_test/faults")

    def reset(self):
        """Delete all objects, faults and the request log."""
        self._control("POST", "/_test/reset")

    def wait_objects(self, count, ns=None, timeout=10):
        """Wait until at least count objects exist; returns them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            objs = self.objects(ns)
            if len(objs) >= count or time.monotonic() > deadline:
                if len(objs) < count:
                    raise AssertionError("expected %d objects, have %d" % (count, len(objs)))
                return objs
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv=None):
    ap = argparse.ArgumentParser(description="A stand-in kube-apiserver for gpuhook's tests.")
    ap.add_argument("--state-dir", required=True, help="objects persist in DIR/objects/")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--tls-dir", help="serve https with DIR/server.crt and DIR/server.key")
    ap.add_argument("--token-file", help="require 'Authorization: Bearer <file contents>'")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="PipelineRun CRD openAPIV3Schema")
    ap.add_argument("--namespace", action="append",
                    help="namespaces that exist (repeatable; default: all)")
    ap.add_argument("--faults", help='initial fault rules, JSON {"rules": [...]}')
    ap.add_argument("--no-tekton-webhook", action="store_true",
                    help="skip the checks of Tekton's validating admission webhook")
    kube_client.add_arguments(ap)
    args = ap.parse_args(argv)

    ssl_ctx = None
    if args.tls_dir:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_ctx.load_cert_chain(os.path.join(args.tls_dir, "server.crt"),
                                os.path.join(args.tls_dir, "server.key"))
    srv = ApiServer((args.host, args.port), args.state_dir, args.schema,
                    token_file=args.token_file, ssl_ctx=ssl_ctx, namespaces=args.namespace,
                    tekton_webhook=not args.no_tekton_webhook,
                    ext_options=kube_client.ext_options(args))
    if args.faults:
        srv.faults.set(json.loads(args.faults).get("rules", []))
    port = srv.server_address[1]
    if args.port_file:
        write_file_atomic(args.port_file, ("%d\n" % port).encode())
    sys.stdout.write("fake_apiserver listening on %s://%s:%d\n"
                     % ("https" if ssl_ctx else "http", args.host, port))
    sys.stdout.flush()

    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
