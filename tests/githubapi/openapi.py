#!/usr/bin/python3
"""GitHub's published OpenAPI description, for the stand-in GitHub API.

The description comes from the npm package @octokit/openapi (MIT), pinned below. `ensure()`
installs it once with `npm install --prefix CACHE` and returns the path of
generated/api.github.com.json (or of a GHES variant). `Description` loads it, finds the
operation of a request by method and path template, and validates path and query parameters
and the JSON body against the operation, resolving $refs. OpenAPI 3.0's `nullable` is turned
into JSON Schema's `"null"` type first; the schemas are then checked with jsonschema's Draft 4
validator, the dialect OpenAPI 3.0 builds on. Failures are worded the way api.github.com words
them: `Invalid request.\n\nFor 'properties/status', "x" is not a member of [...]`.

Command line: `openapi.py [--fetch] [--variant api.github.com|ghes-3.19|...]` installs the
package if needed and prints the file's path.
"""

import argparse
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

PACKAGE = "@octokit/openapi"
VERSION = "23.0.2"
# sha256 of generated/api.github.com.json in that version: a changed file fails loudly.
SHA256 = {"api.github.com": "829b4bebb19a53133289f7b0bc819f4f1118115821db2ca9f25e9ee995a7da2a",
          "ghes-3.19": "8c852cf1bde4d40ee19dffd9cdd18650bfad09f9dd0cd5039b9d775056104139"}
DOCS = "https://docs.github.com/rest"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", re.I)


def cache_dir():
    """Where the package is installed: $GPUHOOK_OPENAPI_CACHE, else ~/.cache/gpuhook (or, when
    that cannot be created, gpuhook-cache in the temporary folder)."""
    base = os.environ.get("GPUHOOK_OPENAPI_CACHE")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                            "gpuhook")
        try:
            os.makedirs(base, exist_ok=True)
        except OSError:
            base = os.path.join(tempfile.gettempdir(), "gpuhook-cache-%d" % os.getuid())
    return os.path.join(base, "octokit-openapi-" + VERSION)


def _file_in(prefix, variant):
    return os.path.join(prefix, "node_modules", "@octokit", "openapi", "generated",
                        variant + ".json")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure(variant="api.github.com", timeout=300):
    """Return the path of the description, installing the pinned package with npm once.

    variant is "api.github.com" or a GitHub Enterprise Server release, "ghes-3.17" to
    "ghes-3.19". $GPUHOOK_OPENAPI_FILE, when set, names the file directly (whatever the
    variant) and nothing is installed.
    Raises RuntimeError, with what to do, when npm is missing or the download fails."""
    direct = os.environ.get("GPUHOOK_OPENAPI_FILE")
    if direct:
        if not os.path.isfile(direct):
            raise RuntimeError("GPUHOOK_OPENAPI_FILE=%s does not exist" % direct)
        return direct
    prefix = cache_dir()
    path = _file_in(prefix, variant)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with open(prefix + ".lock", "w") as lock:  # one installer at a time, across processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(path):
            npm = shutil.which("npm")
            if not npm:
                raise RuntimeError(
                    "npm is not installed: the stand-in GitHub API needs %s@%s from the npm "
                    "registry (apt-get install npm, or set GPUHOOK_OPENAPI_FILE to a copy of "
                    "api.github.com.json)" % (PACKAGE, VERSION))
            tmp = tempfile.mkdtemp(dir=os.path.dirname(prefix), prefix=".npm-")
            try:
                r = subprocess.run(
                    [npm, "install", "--prefix", tmp, "--no-audit", "--no-fund",
                     "--no-save", "--loglevel=error", "%s@%s" % (PACKAGE, VERSION)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                    check=False)
                if r.returncode != 0 or not os.path.isfile(_file_in(tmp, variant)):
                    raise RuntimeError(
                        "npm install %s@%s failed (rc %d); the stand-in GitHub API cannot "
                        "validate requests without it:\n%s" % (
                            PACKAGE, VERSION, r.returncode,
                            r.stdout.decode("utf-8", "replace")[-2000:]))
                if os.path.isdir(prefix):
                    shutil.rmtree(prefix)
                os.rename(tmp, prefix)
            finally:
                if os.path.isdir(tmp):
                    shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isfile(path):
            raise RuntimeError("%s@%s has no generated/%s.json" % (PACKAGE, VERSION, variant))
    want = SHA256.get(variant)
    if want and _sha256(path) != want:
        raise RuntimeError("%s does not have the sha256 pinned for %s@%s; delete %s and "
                           "rerun" % (path, PACKAGE, VERSION, prefix))
    return path


# ---------------------------------------------------------------------------------------------
# OpenAPI 3.0 schema objects -> JSON Schema draft 4


def to_json_schema(node):
    """Copy a schema tree, turning OpenAPI's `nullable: true` into a "null" type."""
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if k not in ("nullable", "example", "discriminator", "xml", "externalDocs")}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        elif "type" not in out:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


# ---------------------------------------------------------------------------------------------
# GitHub's wording of validation failures (its Ruby validator's, hence nil and =>)


def inspect(value):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(inspect(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join("%s => %s" % (json.dumps(k), inspect(v))
                               for k, v in value.items()) + "}"
    return str(value)


ARTICLE = {"string": "a string", "integer": "an integer", "object": "an object",
           "array": "an array", "boolean": "a boolean", "number": "a number", "null": "null"}


def _where(path):
    parts = []
    for p in path:
        parts.append(str(p) if isinstance(p, int) else "properties/" + str(p))
    return "/".join(parts)


def _lines(errors, prefix_path=()):
    """GitHub-style lines for a list of jsonschema errors."""
    lines, missing = [], {}
    for e in sorted(errors, key=lambda e: (e.validator in ("anyOf", "oneOf"),
                                           list(map(str, e.absolute_path)), e.validator)):
        path = tuple(prefix_path) + tuple(e.absolute_path)
        loc = _where(path)
        head = "For '%s', " % loc if loc else ""
        v = e.validator
        if v == "required":
            name = e.message.split("'")[1] if "'" in e.message else e.message
            missing.setdefault(path, []).append(name)
            continue
        if v == "type":
            types = e.validator_value
            types = types if isinstance(types, list) else [types]
            lines.append(head + "%s is not %s." % (inspect(e.instance),
                                                  " or ".join(ARTICLE.get(t, t) for t in types)))
        elif v == "enum":
            opts = [o for o in e.validator_value if o is not None]
            lines.append(head + "%s is not a member of %s." % (inspect(e.instance), inspect(opts)))
        elif v in ("anyOf", "oneOf"):
            lines.append('No subschema in "%s" matched.' % v)
            lines.extend(_lines(e.context, prefix_path))
        elif v == "format":
            lines.append(head + "%s is not a valid %s." % (inspect(e.instance), e.validator_value))
        elif v in ("maxLength", "minLength"):
            lines.append(head + "%s is too %s (%d characters, %s %d)." % (
                inspect(e.instance if len(str(e.instance)) < 40 else str(e.instance)[:37] + "..."),
                "long" if v == "maxLength" else "short", len(e.instance),
                "maximum" if v == "maxLength" else "minimum", e.validator_value))
        elif v in ("maxItems", "minItems"):
            lines.append(head + "has %d items, %s %d." % (
                len(e.instance), "maximum" if v == "maxItems" else "minimum", e.validator_value))
        else:
            lines.append(head + e.message + ".")
    for path, names in sorted(missing.items(), key=lambda kv: list(map(str, kv[0]))):
        names = sorted(set(names))
        loc = _where(path)
        head = "For '%s', " % loc if loc else ""
        lines.append(head + ", ".join(json.dumps(n) for n in names) +
                     (" wasn't supplied." if len(names) == 1 else " weren't supplied."))
    return lines


def invalid_request(lines):
    """The message of api.github.com's 422 for a body or parameter that fails its schema."""
    return "Invalid request.\n\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------


class Operation:
    def __init__(self, desc, template, method, op, path_params):
        self.template, self.method, self.op = template, method.upper(), op
        self.operation_id = op.get("operationId", "")
        self.docs = (op.get("externalDocs") or {}).get("url") or DOCS
        self.params = path_params
        self.body = None
        self.body_required = False
        rb = desc.resolve(op.get("requestBody"))
        if rb:
            self.body_required = bool(rb.get("required"))
            media = (rb.get("content") or {}).get("application/json")
            if media and "schema" in media:
                self.body = desc.validator(media["schema"])


class Match:
    def __init__(self, operation, path_args):
        self.operation, self.args = operation, path_args


class _Section(dict):
    """A section of components (schemas, parameters, ...) converted entry by entry, when a
    $ref first reaches it: converting all of it would cost a second per start."""

    def __init__(self, raw):
        super().__init__()
        self.raw = raw

    def __getitem__(self, key):
        if not dict.__contains__(self, key):
            dict.__setitem__(self, key, to_json_schema(self.raw[key]))
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        return key in self.raw


def _pointer(document, fragment):
    node = document
    for part in urllib.parse.unquote(fragment.lstrip("/")).split("/") if fragment.strip("/") \
            else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class Description:
    """One OpenAPI description: routing and validation."""

    def __init__(self, path):
        import jsonschema  # Debian's python3-jsonschema

        class Resolver(jsonschema.RefResolver):
            # A plain JSON pointer walk: the description has no $id or $anchor to look for,
            # and jsonschema's search for them walks all 13 MB once per keyword.
            def resolve_fragment(self, document, fragment):
                return _pointer(document, fragment)

        self._js = jsonschema
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        self.raw = raw
        self.info = raw.get("info", {})
        self.openapi = raw.get("openapi", "")
        self.doc = {"components": {k: _Section(v) for k, v in raw.get("components", {}).items()}}
        self.resolver = Resolver("", self.doc)
        self.format_checker = jsonschema.FormatChecker(())
        self.format_checker.checks("date-time")(lambda s: not isinstance(s, str)
                                                or bool(RFC3339.match(s)))
        self._simple, self._complex, self._rx = {}, [], {}
        for template, item in raw.get("paths", {}).items():
            common = item.get("parameters", [])
            for method, op in item.items():
                if method not in ("get", "put", "post", "patch", "delete", "head", "options"):
                    continue
                params = common + op.get("parameters", [])
                multi = {p["name"] for p in map(self._raw_resolve, params)
                         if p.get("in") == "path" and p.get("x-multi-segment")}
                segs = template.strip("/").split("/")
                simple = all(re.fullmatch(r"\{[^}]+\}|[^{}]*", g) for g in segs) and not multi
                literals = sum(1 for g in segs if "{" not in g)
                entry = (segs, literals, len(multi), template, method.upper(), op, params, multi)
                if simple:
                    self._simple.setdefault((len(segs), segs[0]), []).append(entry)
                else:
                    self._complex.append(entry)
        self._ops = {}

    def _raw_resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = _pointer(self.raw, node["$ref"].lstrip("#"))
        return node

    def resolve(self, node):
        """Follow $refs in a node of the (converted) description until a real object."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            _, node = self.resolver.resolve(node["$ref"])
            seen += 1
        return node

    def validator(self, schema):
        cls = self._js.Draft4Validator
        return cls(schema, resolver=self.resolver, format_checker=self.format_checker)

    def _regex(self, entry):
        segs, _, _, template, _, _, _, multi = entry
        rx = self._rx.get(template)
        if rx is None:
            pat = ""
            for seg in segs:
                out, pos = "/", 0
                for m in re.finditer(r"\{([^}]+)\}", seg):
                    name = m.group(1)
                    out += re.escape(seg[pos:m.start()]) + "(?P<%s>%s)" % (
                        re.sub(r"\W", "_", name), ".+" if name in multi else "[^/]+")
                    pos = m.end()
                pat += out + re.escape(seg[pos:])
            rx = self._rx[template] = re.compile("^" + pat + "/?$")
        return rx

    def _candidates(self, path):
        """(entry, {param: raw value}) of every route whose template matches path."""
        parts = path.strip("/").split("/") if path.strip("/") else [""]
        for first in (parts[0], None):
            for entry in self._simple.get((len(parts), first), []) if first is not None else \
                    [e for (n, f), es in self._simple.items() if n == len(parts)
                     and f.startswith("{") for e in es]:
                args = {}
                for seg, part in zip(entry[0], parts):
                    if seg.startswith("{"):
                        if not part:
                            break
                        args[seg[1:-1]] = part
                    elif seg != part:
                        break
                else:
                    yield entry, args
        for entry in self._complex:
            hit = self._regex(entry).match(path)
            if hit:
                args = {}
                for m in re.finditer(r"\{([^}]+)\}", entry[3]):
                    args[m.group(1)] = hit.group(re.sub(r"\W", "_", m.group(1)))
                yield entry, args

    def known_path(self, path):
        return any(True for _ in self._candidates(path))

    def find(self, method, path):
        """The Match of method and path (no prefix, no query), or None."""
        best = None
        for entry, args in self._candidates(path):
            _, literals, multi, template, m, op, params, _ = entry
            if m != method.upper():
                continue
            key = (literals, -multi)
            if best is None or key > best[0]:
                best = (key, template, m, op, params, args)
        if not best:
            return None
        _, template, m, op, params, raw_args = best
        ident = (template, m)
        if ident not in self._ops:
            conv = to_json_schema(op)
            conv["externalDocs"] = op.get("externalDocs")  # kept for documentation_url
            self._ops[ident] = Operation(self, template, m, conv,
                                         [self.resolve(to_json_schema(p)) for p in params])
        args = {k: urllib.parse.unquote(v) for k, v in raw_args.items()}
        return Match(self._ops[ident], args)

    @staticmethod
    def _coerce(value, schema):
        t = (schema or {}).get("type")
        t = t[0] if isinstance(t, list) else t
        try:
            if t == "integer" and re.fullmatch(r"-?\d+", value):
                return int(value)
            if t == "number":
                return float(value)
            if t == "boolean" and value in ("true", "false"):
                return value == "true"
        except ValueError:
            pass
        return value

    def check_params(self, match, query):
        """Validate path and query parameters. Returns (status, lines) or None.

        A path parameter of the wrong type or outside its enum is a 404 (no route), as GitHub
        answers; a query parameter that fails its schema or a missing required one is a 422."""
        qs = urllib.parse.parse_qs(query or "", keep_blank_values=True)
        lines = []
        for p in match.operation.params:
            where, name, schema = p.get("in"), p.get("name"), p.get("schema") or {}
            if where == "path":
                value = self._coerce(match.args.get(name, ""), schema)
                if list(self.validator(schema).iter_errors(value)):
                    return 404, []
                match.args[name] = value
            elif where == "query":
                if name not in qs:
                    if p.get("required"):
                        lines.append('"%s" wasn\'t supplied.' % name)
                    continue
                value = self._coerce(qs[name][-1], schema)
                errs = list(self.validator(schema).iter_errors(value))
                for line in _lines(errs):
                    lines.append("For '%s', %s" % (name, line[0].lower() + line[1:])
                                 if not line.startswith("For") else line)
        return (422, lines) if lines else None

    def check_body(self, match, body):
        """Validate a decoded JSON body. Returns a list of GitHub-worded lines (empty: valid)."""
        op = match.operation
        if op.body is None:
            return []
        if body is None:
            body = {}
        return _lines(list(op.body.iter_errors(body)))

    def response_errors(self, match, status, body):
        """jsonschema messages for a response body that does not fit the description (for the
        stand-in's own self-test: its answers must look like GitHub's)."""
        resp = (match.operation.op.get("responses") or {}).get(str(status))
        resp = self.resolve(resp)
        media = ((resp or {}).get("content") or {}).get("application/json")
        if not media or "schema" not in media:
            return ["no JSON schema for status %s of %s" % (status, match.operation.operation_id)]
        return [e.message for e in self.validator(copy.deepcopy(media["schema"])).iter_errors(body)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch", action="store_true", help="install the package if needed")
    ap.add_argument("--variant", default="api.github.com")
    args = ap.parse_args(argv)
    try:
        print(ensure(args.variant))
    except RuntimeError as e:
        print("openapi.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
