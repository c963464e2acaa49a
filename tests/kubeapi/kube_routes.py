"""Requests the stand-in serves beyond PipelineRun create/get/delete: list with selectors and
limit/continue, watch, PUT, merge and JSON patch, the status subresource, Leases,
EndpointSlices, Nodes and discovery; and their /_test/ control endpoints.

fake_apiserver.Handler calls Extension.handle() for API paths and Extension.control() for
control paths; each returns False for what it leaves to fake_apiserver.
"""

import base64
import json
import random
import re
import time

import kube_patch
import kube_tekton
import kube_watch
from kube_resources import (BY_KIND, PIPELINERUNS, ApiError, bad_request, discovery,
                            meta_causes, route, spec_causes)
from kube_selectors import SelectorError, parse_fields, parse_labels
from kube_store import ResourceStore

WEBHOOK = 'admission webhook "validation.webhook.pipeline.tekton.dev" denied the request: ' \
          'validation failed: '
PATCH_TYPES = {"application/merge-patch+json": "merge", "application/json-patch+json": "json",
               "application/strategic-merge-patch+json": "strategic"}
CONTROL_RUN_STATUS = re.compile(r"^/_test/pipelineruns/([^/]+)/([^/]+)/status$")


class Extension:
    def __init__(self, server, state_dir, write_file_atomic, watch_history=1000,
                 bookmark_seconds=5.0, tekton_controller="react"):
        self.server = server
        self.log = kube_watch.EventLog(watch_history, bookmark_seconds)
        self.store = ResourceStore(server.store, state_dir, self.log, write_file_atomic)
        self.controller = kube_tekton.Controller(self.store, self.log, tekton_controller)
        self.controller.start()

    # --- API ---------------------------------------------------------------------------------

    def handle(self, h, body, then=None):
        """Serve h's request if it is one of ours; then is a create_then_fail fault's
        sub-rule, which loses the answer of a write after the write is done."""
        path, cmd = h.req_path, h.command
        doc = discovery(path.rstrip("/") or "/")
        if doc is not None:
            if cmd not in ("GET", "HEAD"):
                h._status(405)
            else:
                h._send(200, doc)
            return True
        r = route(path)
        if r is None:
            return False
        rt, ns, name, sub = r
        if rt is PIPELINERUNS and not sub and (
                (name is None and cmd == "POST") or
                (name is not None and cmd in ("GET", "HEAD", "DELETE"))):
            return False  # create, get and delete of one run stay with fake_apiserver
        if rt.namespaced and ns is None and name is not None:
            h._status(404)
            return True
        if name:
            h.obj_name = name
        h.ext_then = then if cmd in ("POST", "PUT", "PATCH", "DELETE") else None
        try:
            self._dispatch(h, body, rt, ns, name, sub)
        except ApiError as e:
            self._reply(h, e.code, e.status())
        return True

    @staticmethod
    def _reply(h, code, payload):
        then = getattr(h, "ext_then", None)
        if then is not None:
            if then["mode"] != "delay":
                h._fault_response(then, h._ns())  # drop, reset or a status: the answer is lost
                return None
            time.sleep(then["seconds"])
        h._send(code, payload)
        return None

    def _dispatch(self, h, body, rt, ns, name, sub):
        cmd = h.command
        if name is None:
            if cmd in ("GET", "HEAD"):
                return self._collection_get(h, rt, ns)
            if cmd == "POST" and (ns is not None or not rt.namespaced):
                return self._create(h, body, rt, ns)
            return h._status(405)
        status_sub = "status" if sub else None
        if cmd in ("GET", "HEAD"):
            obj = self.store.get(rt, ns, name)
            if obj is None:
                raise rt.not_found(name)
            return h._send(200, obj)
        if cmd == "PUT":
            return self._put(h, body, rt, ns, name, status_sub)
        if cmd == "PATCH":
            return self._patch(h, body, rt, ns, name, status_sub)
        if cmd == "DELETE" and not sub:
            return self._delete(h, body, rt, ns, name)
        return h._status(405)

    def _query(self, h, key, default=None):
        return (h.query.get(key) or [default])[0]

    def _selectors(self, h, rt, ns):
        try:
            labels = parse_labels(self._query(h, "labelSelector", ""))
            fields = parse_fields(self._query(h, "fieldSelector", ""), rt.fields)
        except SelectorError as e:
            raise bad_request(str(e)) from None
        return {"rt": rt, "ns": ns, "labels": labels, "fields": fields}

    def _collection_get(self, h, rt, ns):
        sel = self._selectors(h, rt, ns)
        if self._query(h, "watch", "") in ("1", "true", "True"):
            rv = self._query(h, "resourceVersion", "")
            if rv not in ("", "0") and not re.fullmatch(r"[1-9][0-9]*", rv):
                raise bad_request("invalid resource version: %s" % rv)
            try:
                timeout = int(self._query(h, "timeoutSeconds", "1800"))
            except ValueError:
                raise bad_request("timeoutSeconds must be an integer") from None
            bookmarks = self._query(h, "allowWatchBookmarks", "") in ("1", "true", "True")
            initial = self._query(h, "sendInitialEvents", "") in ("1", "true", "True")
            if initial:
                causes = []
                if self._query(h, "resourceVersionMatch") != "NotOlderThan":
                    causes.append({"reason": "FieldValueForbidden",
                                   "field": "resourceVersionMatch",
                                   "message": "Forbidden: sendInitialEvents requires setting "
                                              "resourceVersionMatch to NotOlderThan"})
                if not bookmarks:
                    causes.append({"reason": "FieldValueRequired",
                                   "field": "allowWatchBookmarks",
                                   "message": "Required value: sendInitialEvents requires "
                                              "setting allowWatchBookmarks to true"})
                if causes:
                    msgs = ["%s: %s" % (c["field"], c["message"]) for c in causes]
                    raise ApiError(422, 'ListOptions.meta.k8s.io "" is invalid: ' + (
                        msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"),
                        "Invalid", {"group": "meta.k8s.io", "kind": "ListOptions",
                                    "causes": causes})
            kube_watch.serve(h, self.log, self.store, sel, rv, bookmarks, max(0, timeout),
                             initial)
            return None
        items, rv = self.store.list(rt, ns)
        items = [o for o in items if kube_watch._matches(sel, rt, o["metadata"].get(
            "namespace", ""), o)]
        meta = {"resourceVersion": rv}
        token = self._query(h, "continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
                start, list_rv = tuple(state["start"]), int(state["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: illegal base64 data") from None
            if list_rv < self.log.floor:
                raise ApiError(410, "The provided continue parameter is too old to display a "
                                    "consistent list result. You can start a new list "
                                    "without the continue parameter.", "Expired")
            items = [o for o in items if _key(o) > start]
            meta["resourceVersion"] = str(list_rv)
        limit = self._query(h, "limit")
        if limit:
            try:
                limit = int(limit)
            except ValueError:
                raise bad_request("limit must be an integer") from None
            if 0 < limit < len(items):
                rest = len(items) - limit
                items = items[:limit]
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"rv": meta["resourceVersion"], "start": list(_key(items[-1]))})
                    .encode()).decode()
                meta["remainingItemCount"] = rest
        h._send(200, {"apiVersion": rt.api_version, "kind": rt.kind + "List",
                      "metadata": meta, "items": items})
        return None

    def _decode(self, h, body, rt, patch=False):
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if patch:
            kind = PATCH_TYPES.get(ctype)
            if kind is None or (kind == "strategic" and rt.custom):
                raise ApiError(415, "the body of the request was in an unknown format - "
                                    "accepted media types include: application/json-patch+"
                                    "json, application/merge-patch+json" +
                                    ("" if rt.custom else
                                     ", application/strategic-merge-patch+json"),
                               "UnsupportedMediaType")
        elif ctype != "application/json":
            raise ApiError(415, "the body of the request was in an unknown format - accepted "
                                "media types include: application/json", "UnsupportedMediaType")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise bad_request("the body of the request could not be decoded: %s" % e) from None
        if patch:
            return kind, doc
        if not isinstance(doc, dict):
            raise bad_request("the object provided is unrecognized (must be of type %s)"
                              % rt.kind)
        if not rt.custom:
            # Built-in types take kind and apiVersion from the path when they are missing;
            # custom resources must carry them.
            doc.setdefault("kind", rt.kind)
            doc.setdefault("apiVersion", rt.api_version)
        if doc.get("kind") != rt.kind or doc.get("apiVersion") != rt.api_version:
            raise bad_request("the object provided is unrecognized: want kind %s, apiVersion "
                              "%s, got %s, %s" % (rt.kind, rt.api_version, doc.get("kind"),
                                                  doc.get("apiVersion")))
        if not isinstance(doc.get("metadata"), dict):
            doc["metadata"] = {}
        return doc

    def _check_ns(self, rt, ns, obj):
        meta = obj["metadata"]
        if rt.namespaced and meta.get("namespace") not in (None, "", ns):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")

    def _validate(self, rt, obj, cur=None, status_only=False):
        """Raise what the apiserver (and Tekton's webhook, for runs) would refuse."""
        name = obj["metadata"].get("name") or ""
        if rt is PIPELINERUNS:
            checker = self.server.checker
            checker.prune_object(obj)
            causes = checker.validate(obj)
            if causes:
                raise rt.invalid(name, causes)
            if status_only:
                return
            denial = checker.webhook_denial(obj)
            if denial:
                raise bad_request(denial)
            spec = obj.get("spec") or {}
            st = spec.get("status")
            if st not in (None, "") and st not in kube_tekton.SPEC_STATUSES:
                raise bad_request(WEBHOOK + "invalid value: %s should be Cancelled, "
                                  "CancelledRunFinally, StoppedRunFinally or "
                                  "PipelineRunPending: spec.status" % st)
            if cur is not None:
                # Tekton's PipelineRunSpec.ValidateUpdate: before the run is done only
                # spec.status may change, after it nothing in spec.
                done = kube_tekton.is_done(cur)
                old, new = dict(cur.get("spec") or {}), dict(spec)
                if not done:
                    old.pop("status", None)
                    new.pop("status", None)
                if old != new:
                    raise bad_request(WEBHOOK + "invalid value: " + (
                        "Once the PipelineRun is complete, no updates are allowed" if done
                        else "Once the PipelineRun has started, only status updates are "
                             "allowed"))
                if st == "PipelineRunPending" and (cur.get("status") or {}).get("startTime"):
                    raise bad_request(WEBHOOK + "invalid value: PipelineRun cannot be Pending "
                                      "after it is started: spec.status")
            return
        causes = meta_causes(obj, rt.namespaced) + spec_causes(rt, obj)
        if causes:
            raise rt.invalid(name, causes)

    def _create(self, h, body, rt, ns):
        obj = self._decode(h, body, rt)
        self._check_ns(rt, ns, obj)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        namespaces = self.server.namespaces
        if rt.namespaced and namespaces is not None and ns not in namespaces:
            raise ApiError(404, 'namespaces "%s" not found' % ns, "NotFound",
                           {"name": ns, "kind": "namespaces"})
        if not meta.get("name") and isinstance(meta.get("generateName"), str):
            meta["name"] = meta["generateName"] + "".join(
                random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        self._validate(rt, obj)
        h.obj_name = meta["name"]
        if self._dry_run(h):
            return self._reply(h, 201, obj)
        stored = self.store.create(rt, ns, obj, keep_status=not rt.status_subresource
                                   or rt.kind == "Node")
        return self._reply(h, 201, stored)

    def _put(self, h, body, rt, ns, name, sub):
        obj = self._decode(h, body, rt)
        self._check_ns(rt, ns, obj)
        if obj["metadata"].get("name") != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL "
                              "(%s)" % (obj["metadata"].get("name"), name))

        def change(cur):
            self._validate(rt, obj, cur, status_only=bool(sub))
            return obj
        return self._reply(h, 200, self.store.update(rt, ns, name, change, sub,
                                                     dry_run=self._dry_run(h)))

    def _dry_run(self, h):
        value = self._query(h, "dryRun")
        if value not in (None, "", "All"):
            raise bad_request("dryRun must be All")
        return value == "All"

    def _patch(self, h, body, rt, ns, name, sub):
        kind, patch = self._decode(h, body, rt, patch=True)
        if kind in ("merge", "strategic") and not isinstance(patch, dict):
            raise bad_request("the patch must be a JSON object")
        if isinstance(patch, dict):
            # For the request log: which fields the patch touches (two levels), no values.
            h.patch_fields = sorted(
                k + "." + k2 if isinstance(v, dict) and v else k
                for k, v in patch.items() for k2 in (v if isinstance(v, dict) and v else [""]))

        def change(cur):
            try:
                if kind == "json":
                    new = kube_patch.apply_json_patch(cur, patch)
                else:
                    new = kube_patch.merge_patch(cur, patch)
            except kube_patch.PatchError as e:
                raise ApiError(422, str(e), "Invalid") from None
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise bad_request("the patch made the object invalid")
            if new["metadata"].get("name") != name:
                raise bad_request("metadata.name: Invalid value: the name cannot be changed")
            self._validate(rt, new, cur, status_only=bool(sub))
            return new
        return self._reply(h, 200, self.store.update(rt, ns, name, change, sub,
                                                     dry_run=self._dry_run(h)))

    def _delete(self, h, body, rt, ns, name):
        pre = {}
        if body:
            try:
                opts = json.loads(body.decode("utf-8"))
                pre = (opts or {}).get("preconditions") or {}
            except (UnicodeDecodeError, ValueError, AttributeError):
                raise bad_request("the body of the request could not be decoded as "
                                  "DeleteOptions") from None
        obj = self.store.delete(rt, ns, name, pre.get("resourceVersion"), pre.get("uid"),
                                dry_run=self._dry_run(h))
        details = rt.details(name)
        details["uid"] = obj["metadata"]["uid"]
        self._reply(h, 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Success", "details": details})

    # --- control -----------------------------------------------------------------------------

    def control(self, h, payload):
        path, cmd = h.req_path, h.command
        try:
            return self._control(h, payload, path, cmd)
        except ApiError as e:
            h._send(e.code, {"error": e.message, "status": e.status()})
            return True
        except (ValueError, TypeError, KeyError) as e:
            h._send(400, {"error": "%s: %s" % (type(e).__name__, e)})
            return True

    def _control(self, h, payload, path, cmd):
        q = lambda k: (h.query.get(k) or [None])[0]  # noqa: E731
        if path == "/_test/reset" and cmd == "POST":
            self.store.clear()
            self.log.restore_defaults()
            return False  # fake_apiserver clears the runs, faults and log
        if path == "/_test/resources" and cmd == "POST":
            obj = (payload or {}).get("object")
            rt = self._type_of(obj)
            h._send(200, self._upsert(rt, obj))
            return True
        if path == "/_test/resources" and cmd in ("GET", "DELETE"):
            rt = BY_KIND.get((q("apiVersion"), q("kind")))
            if rt is None:
                raise ValueError("unknown apiVersion/kind %s/%s" % (q("apiVersion"), q("kind")))
            if cmd == "GET":
                items, rv = self.store.list(rt, q("namespace"))
                h._send(200, {"items": items, "resourceVersion": rv})
            else:
                h._send(200, self.store.delete(rt, q("namespace") or "", q("name")))
            return True
        m = CONTROL_RUN_STATUS.match(path)
        if m and cmd == "POST":
            p = payload or {}
            phase = p.get("phase")
            if phase not in kube_tekton.PHASES:
                raise ValueError("phase must be one of " + ", ".join(kube_tekton.PHASES))

            h._send(200, kube_tekton.apply(self.store, m.group(1), m.group(2), phase,
                                           p.get("task"), p.get("message"), p.get("tasks"),
                                           results=p.get("results")))
            return True
        if path == "/_test/watch" and cmd in ("GET", "POST"):
            p = payload or {}
            self.log.configure(p.get("history"), p.get("bookmark_seconds"),
                               p.get("fresh_wait_seconds"), p.get("split_bytes"),
                               p.get("coalesce"))
            h._send(200, self.log.snapshot())
            return True
        if path == "/_test/watch/bookmark" and cmd == "POST":
            self.log.force_bookmark()
            h._send(200, self.log.snapshot())
            return True
        if path == "/_test/watch/close" and cmd == "POST":
            self.log.close_watches(bool((payload or {}).get("drop")))
            h._send(200, self.log.snapshot())
            return True
        if path == "/_test/watch/compact" and cmd == "POST":
            self.log.compact()
            h._send(200, self.log.snapshot())
            return True
        return False

    @staticmethod
    def _type_of(obj):
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict) \
                or not obj["metadata"].get("name"):
            raise ValueError("object needs apiVersion, kind and metadata.name")
        rt = BY_KIND.get((obj.get("apiVersion"), obj.get("kind")))
        if rt is None:
            raise ValueError("unknown apiVersion/kind %s/%s" % (obj.get("apiVersion"),
                                                                obj.get("kind")))
        return rt

    def _upsert(self, rt, obj):
        """Create obj, or replace the stored one (status included), without validation."""
        ns = obj["metadata"].get("namespace", "default") if rt.namespaced else ""
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("resourceVersion", None)
        try:
            return self.store.create(rt, ns, obj)
        except ApiError as e:
            if e.code != 409:
                raise
        return self.store.update(rt, ns, obj["metadata"]["name"], lambda cur: obj, "all")


def _key(obj):
    m = obj["metadata"]
    return (m.get("namespace", ""), m["name"])
