"""Objects of every type, one resourceVersion counter, and the change events.

fake_apiserver.Store keeps the PipelineRuns (DIR/objects/NS/NAME.json) and their creates
and deletes; this module adds to it, under the same lock and counter:
  - the other types (Leases, EndpointSlices, Nodes) in DIR/resources/TYPE/NS/NAME.json
    (NS is "_cluster" for Nodes);
  - updates of any type (PUT, PATCH, the status subresource, the test-side Tekton
    controller), with resourceVersion preconditions;
  - DIR/resourceVersion, so that the counter never goes back after a restart even when the
    newest object was deleted;
  - one watch Event per write.
Every write takes the next resourceVersion (a decimal string; clients must treat it as
opaque), deletes included, as etcd's revision does.
"""

import copy
import datetime
import json
import os
import uuid

from kube_resources import PIPELINERUNS, TYPES, ApiError

CLUSTER = "_cluster"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResourceStore:
    def __init__(self, base, state_dir, log, write_file_atomic):
        self.base = base
        self.lock = base.lock
        self.log = log
        self.write_file_atomic = write_file_atomic
        self.root = os.path.join(state_dir, "resources")
        self.rv_path = os.path.join(state_dir, "resourceVersion")
        self.tables = {t: {} for t in TYPES if t is not PIPELINERUNS}
        rv = base.rv
        try:
            with open(self.rv_path) as f:
                rv = max(rv, int(f.read().strip() or 0))
        except (OSError, ValueError):
            pass
        for t, table in self.tables.items():
            tdir = os.path.join(self.root, self._dirname(t))
            if not os.path.isdir(tdir):
                continue
            for nsdir in os.listdir(tdir):
                if not os.path.isdir(os.path.join(tdir, nsdir)):
                    continue
                for fn in os.listdir(os.path.join(tdir, nsdir)):
                    if not fn.endswith(".json") or fn.startswith("."):
                        continue
                    try:
                        with open(os.path.join(tdir, nsdir, fn), encoding="utf-8") as f:
                            obj = json.load(f)
                    except (OSError, ValueError):
                        continue
                    ns = "" if nsdir == CLUSTER else nsdir
                    table[(ns, obj["metadata"]["name"])] = obj
                    rv = max(rv, int(obj["metadata"].get("resourceVersion", "0")))
        base.rv = rv
        base.ext = self
        log.start(rv)

    @staticmethod
    def _dirname(t):
        return t.plural + ("." + t.group if t.group else "")

    # --- raw access; the caller holds self.lock ---------------------------------------------

    def _table(self, rt):
        return self.base.objects if rt is PIPELINERUNS else self.tables[rt]

    def _path(self, rt, ns, name):
        if rt is PIPELINERUNS:
            return os.path.join(self.base.root, ns, name + ".json")
        return os.path.join(self.root, self._dirname(rt), ns or CLUSTER, name + ".json")

    def _persist(self, rt, ns, obj):
        path = self._path(rt, ns, obj["metadata"]["name"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.write_file_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())

    def _next_rv(self):
        self.base.rv += 1
        return str(self.base.rv)

    def items(self, rt):
        """[(ns, object)] of one type, copies; the caller holds self.lock."""
        return [(ns, copy.deepcopy(o)) for (ns, _), o in self._table(rt).items()]

    # --- hooks for fake_apiserver.Store (called with its lock held) --------------------------

    def created(self, obj):
        self.log.add("ADDED", PIPELINERUNS, obj["metadata"]["namespace"], copy.deepcopy(obj))

    def deleted(self, ns, obj):
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._save_rv()
        self.log.add("DELETED", PIPELINERUNS, ns, copy.deepcopy(obj))

    def _save_rv(self):
        self.write_file_atomic(self.rv_path, ("%d\n" % self.base.rv).encode())

    # --- operations --------------------------------------------------------------------------

    def get(self, rt, ns, name):
        with self.lock:
            obj = self._table(rt).get((ns or "", name))
            return copy.deepcopy(obj) if obj else None

    def list(self, rt, ns=None):
        """Objects in key order (namespace, name), as etcd lists them, and the list's rv."""
        with self.lock:
            items = [(k, copy.deepcopy(o)) for k, o in self._table(rt).items()
                     if ns is None or k[0] == ns]
            rv = self.base.rv
        items.sort(key=lambda kv: kv[0])
        return [o for _, o in items], str(rv)

    def create(self, rt, ns, obj, keep_status=True):
        """Store a new object; raises ApiError 409 AlreadyExists."""
        ns = ns or ""
        with self.lock:
            name = obj["metadata"]["name"]
            table = self._table(rt)
            if (ns, name) in table:
                raise rt.already_exists(name)
            obj = copy.deepcopy(obj)
            meta = obj["metadata"]
            if rt.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rt.generation:
                meta["generation"] = 1
            if not keep_status:
                obj.pop("status", None)
            meta["resourceVersion"] = self._next_rv()
            self._persist(rt, ns, obj)
            table[(ns, name)] = obj
            self.log.add("ADDED", rt, ns, copy.deepcopy(obj))
            return copy.deepcopy(obj)

    def update(self, rt, ns, name, change, subresource=None, dry_run=False):
        """Apply change(current) -> new object under the lock and store it.

        The new object's metadata.resourceVersion, when set, is a precondition (409 Conflict
        when stale). Server-set metadata is kept. With a status subresource, a write to the
        main resource keeps the old status and a write to /status keeps everything but
        status (labels and annotations included); subresource "all" (the control API)
        takes the whole new object. generation grows when anything outside
        metadata and status changes. An update that changes nothing is a no-op: no new
        resourceVersion, no event. Returns the stored object."""
        ns = ns or ""
        with self.lock:
            table = self._table(rt)
            cur = table.get((ns, name))
            if cur is None:
                raise rt.not_found(name)
            new = change(copy.deepcopy(cur))
            if not isinstance(new, dict):
                raise ApiError(400, "the object provided is not a JSON object", "BadRequest")
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                meta = new["metadata"] = {}
            want_rv = meta.get("resourceVersion")
            if want_rv not in (None, "") and str(want_rv) != cur["metadata"]["resourceVersion"]:
                raise rt.conflict(name)
            if rt.status_subresource and subresource != "all":
                if subresource == "status":
                    kept = {k: v for k, v in cur.items() if k != "status"}
                    if "status" in new:
                        kept["status"] = new["status"]
                    new = kept
                    meta = new["metadata"]
                elif "status" in cur:
                    new["status"] = copy.deepcopy(cur["status"])
                else:
                    new.pop("status", None)
            cmeta = cur["metadata"]
            for k in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if k in cmeta:
                    meta[k] = cmeta[k]
                else:
                    meta.pop(k, None)
            meta["resourceVersion"] = cmeta["resourceVersion"]
            for k in ("selfLink", "managedFields"):
                meta.pop(k, None)
            if new == cur:
                return copy.deepcopy(cur)
            if rt.generation and _spec_part(new) != _spec_part(cur):
                meta["generation"] = int(cmeta.get("generation", 1)) + 1
            if dry_run:
                return copy.deepcopy(new)
            meta["resourceVersion"] = self._next_rv()
            self._persist(rt, ns, new)
            table[(ns, name)] = new
            self.log.add("MODIFIED", rt, ns, copy.deepcopy(new), copy.deepcopy(cur))
            return copy.deepcopy(new)

    def delete(self, rt, ns, name, precondition_rv=None, precondition_uid=None,
               dry_run=False):
        ns = ns or ""
        with self.lock:
            table = self._table(rt)
            cur = table.get((ns, name))
            if cur is None:
                raise rt.not_found(name)
            if precondition_rv and precondition_rv != cur["metadata"]["resourceVersion"]:
                raise rt.conflict(name)
            if precondition_uid and precondition_uid != cur["metadata"]["uid"]:
                raise ApiError(409, 'Precondition failed: UID in precondition: %s, UID in '
                                    'object meta: %s' % (precondition_uid,
                                                         cur["metadata"]["uid"]),
                               "Conflict", rt.details(name))
            if dry_run:
                return copy.deepcopy(cur)
            del table[(ns, name)]
            try:
                os.unlink(self._path(rt, ns, name))
            except OSError:
                pass
            cur["metadata"]["resourceVersion"] = self._next_rv()
            self._save_rv()
            self.log.add("DELETED", rt, ns, copy.deepcopy(cur))
            return copy.deepcopy(cur)

    def clear(self):
        """Delete every object of the types kept here (each gives a DELETED event)."""
        with self.lock:
            keys = [(t, k) for t, table in self.tables.items() for k in table]
        for t, (ns, name) in keys:
            try:
                self.delete(t, ns, name)
            except ApiError:
                pass


def _spec_part(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
