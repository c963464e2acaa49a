"""Test-side helpers for the stand-in's list/watch/patch/Lease/EndpointSlice/Node parts:
command-line options, FakeApiServer's extra methods (a mixin) and object builders."""

import json
import time
import urllib.parse

CONTROLLER_MODES = ("react", "start", "off")


def add_arguments(ap):
    ap.add_argument("--watch-history", type=int, default=1000,
                    help="events kept for watches; older resourceVersions get 410 Gone")
    ap.add_argument("--bookmark-seconds", type=float, default=5.0,
                    help="interval of BOOKMARK events on watches that allow them")
    ap.add_argument("--tekton-controller", choices=CONTROLLER_MODES, default="react",
                    help="react: follow spec.status like Tekton's reconciler; start: also "
                         "start every new run; off: never write status")


def ext_options(args):
    return {"watch_history": args.watch_history, "bookmark_seconds": args.bookmark_seconds,
            "tekton_controller": args.tekton_controller}


def sample_node(name, gpu_memory_mib=None, gpu_count=1, product="NVIDIA-H200",
                allocatable_gpus=None, labels=None, ready=True):
    """A Node as a GPU node with GPU Feature Discovery and the device plugin looks."""
    lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    alloc = {"cpu": "16", "memory": "131072Mi", "pods": "110"}
    if gpu_memory_mib is not None:
        lab.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product,
                    "nvidia.com/gpu.memory": str(gpu_memory_mib),
                    "nvidia.com/gpu.count": str(gpu_count)})
    cap = dict(alloc)
    if gpu_memory_mib is not None:
        cap["nvidia.com/gpu"] = str(gpu_count)
        alloc["nvidia.com/gpu"] = str(gpu_count if allocatable_gpus is None
                                      else allocatable_gpus)
    lab.update(labels or {})
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": lab},
            "spec": {},
            "status": {"capacity": cap, "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletReady" if ready else "KubeletNotReady",
                                       "message": "kubelet is posting ready status"}],
                       "addresses": [{"type": "Hostname", "address": name}]}}


def sample_pod(name, node=None, gpus=1, phase="Running", namespace="ci", init_gpus=None):
    """A Pod as the kubelet reports it: on node (None: not bound yet), its one container
    limited to gpus nvidia.com/gpu (the apiserver defaults the request to the limit), with
    an init container of init_gpus when given."""
    res = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}}
    spec = {"containers": [{"name": "main", "image": "busybox", "resources": res}],
            "restartPolicy": "Never", "schedulerName": "default-scheduler"}
    if init_gpus is not None:
        ires = {"limits": {"nvidia.com/gpu": str(init_gpus)},
                "requests": {"nvidia.com/gpu": str(init_gpus)}}
        spec["initContainers"] = [{"name": "init", "image": "busybox", "resources": ires}]
    if node:
        spec["nodeName"] = node
    status = {"phase": phase}
    if phase == "Pending" and not node:
        status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable",
                                 "message": "0/2 nodes are available: 2 Insufficient "
                                            "nvidia.com/gpu."}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": status}


def sample_endpointslice(name, service, addresses, port=8080, namespace="tekton-pipelines",
                         port_name="http", node_names=None, ready=True):
    """An EndpointSlice of a (headless) Service, one endpoint per address."""
    eps = []
    for i, addr in enumerate(addresses):
        ep = {"addresses": [addr], "conditions": {"ready": ready, "serving": ready,
                                                  "terminating": False}}
        if node_names:
            ep["nodeName"] = node_names[i]
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by":
                                        "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}


class ClientMixin:
    """Methods FakeApiServer gains; they use the /_test/ control endpoints (no token)."""

    watch_history = None      # set before start(): --watch-history
    bookmark_seconds = None   # --bookmark-seconds
    tekton_controller = None  # --tekton-controller

    def ext_args(self):
        out = []
        if self.watch_history is not None:
            out += ["--watch-history", str(self.watch_history)]
        if self.bookmark_seconds is not None:
            out += ["--bookmark-seconds", str(self.bookmark_seconds)]
        if self.tekton_controller is not None:
            out += ["--tekton-controller", self.tekton_controller]
        return out

    def put_object(self, obj):
        """Create obj (any served kind), or replace it, status included; returns it."""
        return self._control("POST", "/_test/resources", {"object": obj})

    def objects_of(self, api_version, kind, ns=None):
        q = {"apiVersion": api_version, "kind": kind}
        if ns:
            q["namespace"] = ns
        return self._control("GET", "/_test/resources?" + urllib.parse.urlencode(q))["items"]

    def delete_object(self, api_version, kind, name, ns=None):
        q = {"apiVersion": api_version, "kind": kind, "name": name}
        if ns:
            q["namespace"] = ns
        return self._control("DELETE", "/_test/resources?" + urllib.parse.urlencode(q))

    def run(self, name, ns="tekton-pipelines"):
        """One stored PipelineRun, or None."""
        for o in self.objects(ns):
            if o["metadata"]["name"] == name:
                return o
        return None

    def set_run_status(self, name, phase, ns="tekton-pipelines", task=None, tasks=None,
                       message=None, results=None):
        """Move a run's status as Tekton's controller would: phase is Pending, Started,
        Running, Succeeded, Completed, Failed (task names the failing task), Cancelled,
        CancelledRunningFinally, StoppedRunningFinally or Timeout; results ([{name, value}])
        become the finished run's status.results. Returns the run."""
        body = {"phase": phase}
        for k, v in (("task", task), ("tasks", tasks), ("message", message),
                     ("results", results)):
            if v is not None:
                body[k] = v
        return self._control("POST", "/_test/pipelineruns/%s/%s/status"
                             % (urllib.parse.quote(ns), urllib.parse.quote(name)), body)

    def watch_config(self, history=None, bookmark_seconds=None, fresh_wait_seconds=None,
                     split_bytes=None, coalesce=None):
        """Change the history window, the bookmark interval, how long a watch from a future
        resourceVersion waits before its 504, and the chunk framing of new watch streams
        (split_bytes: cut each event line into chunks of that size; coalesce: several events
        per chunk). reset() restores the start values. Returns the watch state {capacity,
        bookmark_seconds, fresh_wait_seconds, split_bytes, coalesce, floor, resourceVersion,
        events, watchers}."""
        body = {}
        for k, v in (("history", history), ("bookmark_seconds", bookmark_seconds),
                     ("fresh_wait_seconds", fresh_wait_seconds), ("split_bytes", split_bytes),
                     ("coalesce", coalesce)):
            if v is not None:
                body[k] = v
        return self._control("POST", "/_test/watch", body)

    def close_watches(self, drop=False):
        """End every open watch now: with the stream's last chunk, as the apiserver ends a
        watch at its timeout, or with drop=True by closing the connection mid-stream."""
        return self._control("POST", "/_test/watch/close", {"drop": drop})

    def force_bookmark(self):
        """Every watch that allows bookmarks gets one now."""
        return self._control("POST", "/_test/watch/bookmark", {})

    def compact(self):
        """Forget the watch history: every older resourceVersion now gets 410 Gone."""
        return self._control("POST", "/_test/watch/compact", {})

    def wait_run(self, name, predicate, ns="tekton-pipelines", timeout=10):
        """Poll until predicate(run) is true; returns the run (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.run(name, ns)
            if obj is not None and predicate(obj):
                return obj
            if time.monotonic() > deadline:
                raise AssertionError("run %s did not reach the state in %s s: %s"
                                     % (name, timeout, json.dumps(obj)[:500]))
            time.sleep(0.02)


def run_reason(obj):
    """The Succeeded condition's (status, reason) of a run, or (None, None)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Succeeded":
            return c.get("status"), c.get("reason")
    return None, None
