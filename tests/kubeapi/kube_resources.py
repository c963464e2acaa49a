"""The resource types the stand-in serves beyond PipelineRun creation, their paths, their
validation and the discovery documents the official clients read.

Types: tekton.dev/v1 pipelineruns (list, watch, update, patch, status) and taskruns,
coordination.k8s.io/v1 leases, discovery.k8s.io/v1 endpointslices, core v1 nodes
(cluster-scoped) and core v1 pods (field selectors spec.nodeName and status.phase, as the
apiserver's pod field set allows; a list across namespaces is GET /api/v1/pods).
"""

import re
import urllib.parse

from kube_selectors import DNS1123_SUBDOMAIN, key_error, value_error


def status(code, message, reason, details=None):
    """A metav1.Status failure object, as the apiserver writes one."""
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason}
    if details:
        obj["details"] = details
    obj["code"] = code
    return obj


class ApiError(Exception):
    """An error answered with a Status; code, message, reason and details."""

    def __init__(self, code, message, reason, details=None):
        super().__init__(message)
        self.code, self.message, self.reason, self.details = code, message, reason, details

    def status(self):
        return status(self.code, self.message, self.reason, self.details)


def bad_request(message):
    return ApiError(400, message, "BadRequest")


class ResourceType:
    def __init__(self, group, version, plural, singular, kind, namespaced, verbs,
                 short_names=(), status_subresource=False, generation=False,
                 fields=("metadata.name", "metadata.namespace"), categories=()):
        self.group, self.version, self.plural, self.singular = group, version, plural, singular
        self.kind, self.namespaced, self.verbs = kind, namespaced, list(verbs)
        self.short_names, self.categories = list(short_names), list(categories)
        self.status_subresource, self.generation = status_subresource, generation
        self.fields = set(fields)

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def custom(self):
        """A custom resource (Tekton's): no strategic merge patch, kind required."""
        return self.group == "tekton.dev"

    @property
    def qualified(self):
        """How error messages name the resource: pipelineruns.tekton.dev, nodes."""
        return self.plural + "." + self.group if self.group else self.plural

    def details(self, name):
        d = {"name": name, "kind": self.plural}
        if self.group:
            d["group"] = self.group
        return d

    def not_found(self, name):
        return ApiError(404, '%s "%s" not found' % (self.qualified, name), "NotFound",
                        self.details(name))

    def already_exists(self, name):
        return ApiError(409, '%s "%s" already exists' % (self.qualified, name),
                        "AlreadyExists", self.details(name))

    def conflict(self, name):
        return ApiError(409, 'Operation cannot be fulfilled on %s "%s": the object has been '
                             'modified; please apply your changes to the latest version and '
                             'try again' % (self.qualified, name), "Conflict",
                        self.details(name))

    def invalid(self, name, causes):
        msgs = ["%s: %s" % (c["field"], c["message"]) for c in causes]
        msg = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
        d = {"name": name, "kind": self.kind, "causes": causes}
        if self.group:
            d["group"] = self.group
        return ApiError(422, '%s "%s" is invalid: %s' % (
            self.kind + ("." + self.group if self.group else ""), name, msg), "Invalid", d)

    def field_values(self, obj):
        meta = obj.get("metadata") or {}
        out = {"metadata.name": meta.get("name", ""),
               "metadata.namespace": meta.get("namespace", "")}
        if "spec.unschedulable" in self.fields:
            out["spec.unschedulable"] = str(bool((obj.get("spec") or {}).get(
                "unschedulable"))).lower()
        for f in ("spec.nodeName", "status.phase"):
            if f in self.fields:
                part, key = f.split(".")
                v = (obj.get(part) or {}).get(key)
                out[f] = v if isinstance(v, str) else ""
        return out

    def api_resources(self):
        res = [{"name": self.plural, "singularName": self.singular,
                "namespaced": self.namespaced, "kind": self.kind, "verbs": self.verbs}]
        if self.short_names:
            res[0]["shortNames"] = self.short_names
        if self.categories:
            res[0]["categories"] = self.categories
        if self.status_subresource:
            res.append({"name": self.plural + "/status", "singularName": "",
                        "namespaced": self.namespaced, "kind": self.kind,
                        "verbs": ["get", "patch", "update"]})
        return res


ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

PIPELINERUNS = ResourceType("tekton.dev", "v1", "pipelineruns", "pipelinerun", "PipelineRun",
                            True, ALL_VERBS, ("pr", "prs"), status_subresource=True,
                            generation=True, categories=("tekton", "tekton-pipelines"))
TASKRUNS = ResourceType("tekton.dev", "v1", "taskruns", "taskrun", "TaskRun", True, ALL_VERBS,
                        ("tr", "trs"), status_subresource=True, generation=True,
                        categories=("tekton", "tekton-pipelines"))
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, ALL_VERBS)
ENDPOINTSLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "endpointslice",
                              "EndpointSlice", True, ALL_VERBS)
NODES = ResourceType("", "v1", "nodes", "node", "Node", False, ALL_VERBS, ("no",),
                     status_subresource=True,
                     fields=("metadata.name", "spec.unschedulable"))
PODS = ResourceType("", "v1", "pods", "pod", "Pod", True, ALL_VERBS, ("po",),
                    status_subresource=True, categories=("all",),
                    fields=("metadata.name", "metadata.namespace", "spec.nodeName",
                            "status.phase"))
TYPES = [PIPELINERUNS, TASKRUNS, LEASES, ENDPOINTSLICES, NODES, PODS]
BY_KIND = {(t.api_version, t.kind): t for t in TYPES}

_SEG = r"([^/]+)"
NAMESPACED_PATH = re.compile(r"^/(?:apis/([^/]+)|api)/([^/]+)/namespaces/%s/%s(?:/%s(/status)?)?/?$"
                             % (_SEG, _SEG, _SEG))
CLUSTER_PATH = re.compile(r"^/(?:apis/([^/]+)|api)/([^/]+)/%s(?:/%s(/status)?)?/?$"
                          % (_SEG, _SEG))


def route(path):
    """Map a path to (type, namespace or None, name or None, is_status), or None."""
    m = NAMESPACED_PATH.match(path)
    if m:
        group, version, ns, plural, name, sub = m.groups()
        ns = urllib.parse.unquote(ns)
    else:
        m = CLUSTER_PATH.match(path)
        if not m:
            return None
        group, version, plural, name, sub = m.groups()
        ns = None
    for t in TYPES:
        if t.group == (group or "") and t.version == version and t.plural == plural:
            if not t.namespaced and ns is not None:
                return None
            return t, ns, urllib.parse.unquote(name) if name else None, bool(sub)
    return None


def discovery(path):
    """The discovery document for path, or None."""
    groups = {}
    for t in TYPES:
        if t.group:
            groups.setdefault(t.group, []).append(t)
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            _group(g, ts) for g, ts in sorted(groups.items())]}
    m = re.match(r"^/apis/([^/]+)$", path)
    if m and m.group(1) in groups:
        return dict(_group(m.group(1), groups[m.group(1)]), kind="APIGroup", apiVersion="v1")
    m = re.match(r"^/(?:apis/([^/]+)|api)/([^/]+)$", path)
    if m:
        ts = [t for t in TYPES if t.group == (m.group(1) or "") and t.version == m.group(2)]
        if ts:
            res = []
            for t in ts:
                res.extend(t.api_resources())
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": ts[0].api_version, "resources": res}
    return None


def _group(name, types):
    gv = {"groupVersion": name + "/" + types[0].version, "version": types[0].version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


# --- validation of the built-in types --------------------------------------------------------


def meta_causes(obj, namespaced):
    causes = []

    def add(reason, field, message):
        causes.append({"reason": reason, "message": message, "field": field})

    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        add("FieldValueRequired", "metadata.name",
            "Required value: name or generateName is required")
        return causes
    name = meta.get("name")
    if not name:
        add("FieldValueRequired", "metadata.name",
            "Required value: name or generateName is required")
    elif not isinstance(name, str) or len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        add("FieldValueInvalid", "metadata.name",
            "Invalid value: %s: a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an "
            "alphanumeric character" % _q(name))
    for mapname in ("labels", "annotations"):
        m = meta.get(mapname)
        if m is None:
            continue
        if not isinstance(m, dict):
            add("FieldValueTypeInvalid", "metadata." + mapname, "must be a map of strings")
            continue
        for k, v in m.items():
            err = key_error(k)
            if err:
                add("FieldValueInvalid", "metadata." + mapname, "Invalid value: %s: %s"
                    % (_q(k), err))
            if not isinstance(v, str):
                add("FieldValueTypeInvalid", "metadata.%s.%s" % (mapname, k),
                    "must be a string")
            elif mapname == "labels" and value_error(v):
                add("FieldValueInvalid", "metadata.labels", "Invalid value: %s: %s"
                    % (_q(v), value_error(v)))
    return causes


def _q(v):
    import json
    return json.dumps(v)


def spec_causes(rt, obj):
    """Type-specific checks, following the apiserver's validation of each type."""
    causes = []

    def add(reason, field, message):
        causes.append({"reason": reason, "message": message, "field": field})

    spec = obj.get("spec")
    if rt is LEASES and spec is not None:
        if not isinstance(spec, dict):
            add("FieldValueTypeInvalid", "spec", "must be an object")
            return causes
        d = spec.get("leaseDurationSeconds")
        if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d <= 0):
            add("FieldValueInvalid", "spec.leaseDurationSeconds",
                "Invalid value: %s: must be greater than 0" % _q(d))
        t = spec.get("leaseTransitions")
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            add("FieldValueInvalid", "spec.leaseTransitions",
                "Invalid value: %s: must be greater than or equal to 0" % _q(t))
        h = spec.get("holderIdentity")
        if h is not None and not isinstance(h, str):
            add("FieldValueTypeInvalid", "spec.holderIdentity", "must be a string")
        for f in ("acquireTime", "renewTime"):
            v = spec.get(f)
            if v is not None and (not isinstance(v, str) or not re.fullmatch(
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", v)):
                add("FieldValueInvalid", "spec." + f, "Invalid value: %s: must be an "
                    "RFC 3339 time" % _q(v))
    if rt is ENDPOINTSLICES:
        at = obj.get("addressType")
        if at is None:
            add("FieldValueRequired", "addressType", "Required value")
        elif at not in ("IPv4", "IPv6", "FQDN"):
            add("FieldValueNotSupported", "addressType", 'Unsupported value: %s: supported '
                'values: "FQDN", "IPv4", "IPv6"' % _q(at))
        eps = obj.get("endpoints")
        if not isinstance(eps, list):
            add("FieldValueRequired", "endpoints", "Required value")
        else:
            for i, ep in enumerate(eps):
                addrs = ep.get("addresses") if isinstance(ep, dict) else None
                if not isinstance(addrs, list) or not 1 <= len(addrs) <= 100:
                    add("FieldValueRequired", "endpoints[%d].addresses" % i,
                        "Required value: must contain at least 1 address")
        for i, p in enumerate(obj.get("ports") or []):
            port = p.get("port") if isinstance(p, dict) else None
            if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
                add("FieldValueInvalid", "ports[%d].port" % i,
                    "Invalid value: %s: must be between 1 and 65535, inclusive" % _q(port))
    return causes
