"""PipelineRun status as Tekton's controller writes it, for tests.

Condition type Succeeded with the reasons of tektoncd/pipeline pkg/apis/pipeline/v1
(pipelinerun_types.go): Started, Running, Succeeded, Completed, Failed, Cancelled,
CancelledRunningFinally, StoppedRunningFinally, PipelineRunTimeout, PipelineRunPending.
spec.status takes PipelineRunPending, Cancelled, CancelledRunFinally and StoppedRunFinally.

Two parts:
  - transition(obj, phase, ...) returns the status a test asks for (through
    POST /_test/pipelineruns/NS/NAME/status or FakeApiServer.set_run_status), and apply()
    writes it with the TaskRuns it implies (tekton.dev/v1 TaskRuns named RUN-TASK, labelled
    tekton.dev/pipelineRun and tekton.dev/pipelineTask, as Tekton creates them) and each
    TaskRun's Pod (status.podName, labelled tekton.dev/taskRun, on the node the run's
    podTemplate prefers or requires by kubernetes.io/hostname, else DEFAULT_NODE; its
    status.phase follows the TaskRun);
  - Controller, a thread that watches the store's events and reacts to spec.status as
    Tekton's reconciler does: a run created with PipelineRunPending gets Succeeded=Unknown
    reason PipelineRunPending; when the field is removed the run starts (Running, with
    startTime); Cancelled ends it (False, Cancelled); CancelledRunFinally ends a run that has
    not started and puts a started one in CancelledRunningFinally until a test finishes it.
    With mode "start" it also starts every run created without spec.status. Its writes go
    through the status subresource, so each is a MODIFIED event with a new resourceVersion.
"""

import datetime
import threading

from kube_resources import PIPELINERUNS, PODS, TASKRUNS, ApiError

SPEC_STATUSES = ("PipelineRunPending", "Cancelled", "CancelledRunFinally", "StoppedRunFinally")
PHASES = ("Pending", "Started", "Running", "Succeeded", "Completed", "Failed", "Cancelled",
          "CancelledRunningFinally", "StoppedRunningFinally", "Timeout")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(obj):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Succeeded":
            return c
    return None


def is_done(obj):
    c = condition(obj)
    return c is not None and c.get("status") in ("True", "False")


DEFAULT_NODE = "gpu-node-1"
HOSTNAME = "kubernetes.io/hostname"


def pod_node(pr):
    """The node the scheduler would put pr's pods on, as far as the stand-in models it."""
    pt = ((pr.get("spec") or {}).get("taskRunTemplate") or {}).get("podTemplate") or {}
    sel = (pt.get("nodeSelector") or {}).get(HOSTNAME)
    if isinstance(sel, str):
        return sel
    na = (pt.get("affinity") or {}).get("nodeAffinity") or {}
    terms = [t.get("preference") or {} for t in
             na.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    terms += (na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms") or []
    for t in terms:
        for e in t.get("matchExpressions") or []:
            if e.get("key") == HOSTNAME and e.get("operator") == "In" and e.get("values"):
                return e["values"][0]
    return DEFAULT_NODE


def pod(pr, tr):
    """The Pod of TaskRun tr, as Tekton's controller creates it and the kubelet reports it."""
    c = condition(tr) or {}
    phase = {"True": "Succeeded", "False": "Failed"}.get(c.get("status"), "Running")
    labels = dict(tr["metadata"].get("labels") or {})
    labels["tekton.dev/taskRun"] = tr["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": tr["status"]["podName"],
                         "namespace": tr["metadata"].get("namespace"), "labels": labels,
                         "ownerReferences": [{"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                                              "name": tr["metadata"]["name"],
                                              "uid": tr["metadata"].get("uid"),
                                              "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"nodeName": pod_node(pr), "restartPolicy": "Never",
                     "containers": [{"name": "step-run", "image": "busybox"}]},
            "status": {"phase": phase}}


def _task_name(obj, task):
    return "%s-%s" % (obj["metadata"]["name"], task)


def _child_names(obj, task, tasks):
    if tasks:
        return list(tasks)
    old = [c.get("pipelineTaskName") for c in
           (obj.get("status") or {}).get("childReferences") or []]
    if old:
        return old + ([task] if task and task not in old else [])
    return [task or "build"]


def transition(obj, phase, task=None, message=None, tasks=None):
    """The new status of obj (a PipelineRun) in phase, and the TaskRuns it implies as
    {pipelineTask: (TaskRun condition status, reason, message)}; obj is not changed.

    tasks lists the pipeline's tasks in order (default: the run's childReferences, or
    ["build"]). task is the one running (Running: those before it succeeded) or the one
    that failed (Failed: those before it succeeded, those after it are skipped). Cancelled
    and Timeout end the TaskRuns still running."""
    if phase not in PHASES:
        raise ValueError("unknown phase %r (one of %s)" % (phase, ", ".join(PHASES)))
    name = obj["metadata"]["name"]
    st = dict(obj.get("status") or {})
    now = now_rfc3339()
    cond = {"type": "Succeeded", "lastTransitionTime": now}
    names = _child_names(obj, task, tasks)
    children = {}
    ran = names
    if phase == "Pending":
        cond.update(status="Unknown", reason="PipelineRunPending",
                    message='PipelineRun "%s" is pending' % name)
        st.pop("startTime", None)
        ran = []
    else:
        st.setdefault("startTime", now)
    if phase in ("Started", "Running"):
        idx = names.index(task) if task in names else len(names) - 1
        ran = names[:idx + 1] if phase == "Running" else []
        for t in ran:
            children[t] = ("True", "Succeeded", "All Steps have completed executing") \
                if t != names[idx] else ("Unknown", "Running", "Not all Steps in the Task "
                                                               "have finished executing")
        cond.update(status="Unknown", reason=phase,
                    message="Tasks Completed: %d (Failed: 0, Cancelled 0), Incomplete: %d, "
                            "Skipped: 0" % (len(ran) - 1 if ran else 0,
                                            len(names) - max(len(ran) - 1, 0)))
    elif phase in ("Succeeded", "Completed"):
        for t in names:
            children[t] = ("True", "Succeeded", "All Steps have completed executing")
        cond.update(status="True", reason=phase,
                    message="Tasks Completed: %d (Failed: 0, Cancelled 0), Skipped: 0"
                            % len(names))
    elif phase == "Failed":
        failing = task or names[-1]
        if failing not in names:
            names.append(failing)
        idx = names.index(failing)
        ran = names[:idx + 1]
        for t in ran:
            children[t] = ("True", "Succeeded", "All Steps have completed executing") \
                if t != failing else ("False", "Failed", '"step-run" exited with code 1')
        skipped = names[idx + 1:]
        st["skippedTasks"] = [{"name": t, "reason": "PipelineRun was stopping"}
                              for t in skipped]
        cond.update(status="False", reason="Failed",
                    message="Tasks Completed: %d (Failed: 1, Cancelled 0), Skipped: %d"
                            % (len(ran), len(skipped)))
    elif phase in ("Cancelled", "Timeout"):
        ran = None  # keep the childReferences; end the TaskRuns that still run
        end = ("False", "TaskRunCancelled", "TaskRun was cancelled") if phase == "Cancelled" \
            else ("False", "TaskRunTimeout", "TaskRun failed to finish within its timeout")
        for c in st.get("childReferences") or []:
            children[c["pipelineTaskName"]] = end + ("if-running",)
        if phase == "Cancelled":
            cond.update(status="False", reason="Cancelled",
                        message='PipelineRun "%s" was cancelled' % name)
        else:
            timeout = ((obj.get("spec") or {}).get("timeouts") or {}).get("pipeline",
                                                                           "1h0m0s")
            cond.update(status="False", reason="PipelineRunTimeout",
                        message='PipelineRun "%s" failed to finish within "%s"'
                                % (name, timeout))
    elif phase in ("CancelledRunningFinally", "StoppedRunningFinally"):
        ran = None
        cond.update(status="Unknown", reason=phase,
                    message="Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 1, "
                            "Skipped: 0")
    if message is not None:
        cond["message"] = message
    if ran is not None:
        if ran:
            st["childReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                                      "name": _task_name(obj, t), "pipelineTaskName": t}
                                     for t in ran]
        else:
            st.pop("childReferences", None)
    if phase != "Failed":
        st.pop("skippedTasks", None)
    if cond["status"] in ("True", "False"):
        st["completionTime"] = now
    else:
        st.pop("completionTime", None)
    st["conditions"] = [cond]
    st["observedGeneration"] = obj["metadata"].get("generation", 1)
    return st, children


def taskrun(pr, pipeline_task, cond_status, reason, message, old=None):
    """A TaskRun of pr for pipeline_task, as Tekton's controller creates and updates it
    (labels tekton.dev/pipelineRun and tekton.dev/pipelineTask, an ownerReference)."""
    meta = pr["metadata"]
    now = now_rfc3339()
    st = dict((old or {}).get("status") or {})
    st.setdefault("startTime", now)
    st.setdefault("podName", _task_name(pr, pipeline_task) + "-pod")
    st["conditions"] = [{"type": "Succeeded", "status": cond_status, "reason": reason,
                         "message": message, "lastTransitionTime": now}]
    if cond_status in ("True", "False"):
        st.setdefault("completionTime", now)
    labels = {"tekton.dev/pipelineRun": meta["name"], "tekton.dev/pipelineTask": pipeline_task,
              "tekton.dev/memberOf": "tasks"}
    ref = ((pr.get("spec") or {}).get("pipelineRef") or {}).get("name")
    if ref:
        labels["tekton.dev/pipeline"] = ref
    for k, v in ((meta.get("labels") or {}).items()):
        labels.setdefault(k, v)
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {"name": _task_name(pr, pipeline_task),
                         "namespace": meta.get("namespace"), "labels": labels,
                         "ownerReferences": [{"apiVersion": "tekton.dev/v1",
                                              "kind": "PipelineRun", "name": meta["name"],
                                              "uid": meta.get("uid"), "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"taskRef": {"name": pipeline_task},
                     "serviceAccountName": (pr.get("spec") or {}).get(
                         "taskRunTemplate", {}).get("serviceAccountName", "default")},
            "status": st}


def reaction(obj, start_all):
    """What Tekton's reconciler would write for obj now: a phase, or None."""
    spec_status = (obj.get("spec") or {}).get("status")
    c = condition(obj)
    reason = c.get("reason") if c else None
    if is_done(obj):
        return None
    started = bool((obj.get("status") or {}).get("startTime"))
    if spec_status == "PipelineRunPending":
        return None if reason == "PipelineRunPending" else (
            "Pending" if not started else None)
    if spec_status == "Cancelled":
        return "Cancelled"
    if spec_status in ("CancelledRunFinally", "StoppedRunFinally"):
        if not started:
            return "Cancelled"
        want = ("CancelledRunningFinally" if spec_status == "CancelledRunFinally"
                else "StoppedRunningFinally")
        return None if reason == want else want
    if reason == "PipelineRunPending":
        return "Running"
    if start_all and c is None:
        return "Running"
    return None


def apply(store, ns, name, phase=None, task=None, message=None, tasks=None, decide=None,
          results=None):
    """Write a run's new status (phase, or what decide(current run) returns; None writes
    nothing) and the TaskRuns it implies. The TaskRuns (and their Pods) are written first
    and the run's status (through the status subresource) last, as Tekton's reconciler
    creates and reads its TaskRuns before it updates the run: whoever sees the run's new
    condition finds its TaskRuns already there and final. results (a list of {name,
    value}) becomes status.results when the phase ends the run. Returns the run."""
    cur = store.get(PIPELINERUNS, ns, name)
    if cur is None:
        raise PIPELINERUNS.not_found(name)
    ph = phase if decide is None else decide(cur)
    if ph is None:
        return cur
    status, children = transition(cur, ph, task, message, tasks)
    if results is not None and (condition({"status": status}) or {}).get("status") in (
            "True", "False"):
        status["results"] = [dict(r) for r in results]
    for pipeline_task, (cond_status, reason, msg, *only_running) in children.items():
        trname = _task_name(cur, pipeline_task)
        old = store.get(TASKRUNS, ns, trname)
        if only_running and (old is None or is_done(old)):
            continue
        obj = taskrun(cur, pipeline_task, cond_status, reason, msg, old)
        try:
            if old is None:
                store.create(TASKRUNS, ns, obj)
            else:
                store.update(TASKRUNS, ns, trname, lambda c, obj=obj: obj, "all")
            po = pod(cur, store.get(TASKRUNS, ns, trname))
            if store.get(PODS, ns, po["metadata"]["name"]) is None:
                store.create(PODS, ns, po)
            else:
                store.update(PODS, ns, po["metadata"]["name"], lambda c, po=po: po, "all")
        except ApiError:
            pass  # created or deleted meanwhile

    def change(now):
        # The controller decided on what it read: a run that changed meanwhile is left alone.
        if decide is not None and decide(now) != ph:
            return now
        now["status"] = status
        return now
    return store.update(PIPELINERUNS, ns, name, change, subresource="status")


class Controller(threading.Thread):
    """Watches PipelineRun events and writes what the reconciler would (see module doc)."""

    def __init__(self, store, log, mode="react"):
        super().__init__(daemon=True, name="tekton-controller")
        self.store, self.log, self.mode = store, log, mode

    def run(self):
        with self.log.cond:
            cursor = self.log.rv
        while True:
            with self.log.cond:
                events = self.log.after(cursor)
                while events == [] and not self.log.closed:
                    self.log.cond.wait(1.0)
                    events = self.log.after(cursor)
                if self.log.closed:
                    return
                if events is None:  # fell behind a tiny history window: catch up
                    cursor = self.log.rv
                    events = []
            for e in events:
                cursor = e.rv
                if e.rt is not PIPELINERUNS:
                    continue
                if e.type == "DELETED":
                    self.collect(e.ns, e.obj["metadata"]["name"])
                elif self.mode != "off":
                    self.react(e.ns, e.obj["metadata"]["name"])

    def collect(self, ns, name):
        """Delete a deleted run's TaskRuns and their Pods, as the garbage collector follows
        their ownerReferences."""
        for rt in (TASKRUNS, PODS):
            items, _ = self.store.list(rt, ns)
            for obj in items:
                if (obj["metadata"].get("labels") or {}).get("tekton.dev/pipelineRun") == name:
                    try:
                        self.store.delete(rt, ns, obj["metadata"]["name"])
                    except ApiError:
                        pass

    def react(self, ns, name):
        try:
            apply(self.store, ns, name, decide=lambda cur: reaction(cur, self.mode == "start"))
        except ApiError:
            pass  # deleted meanwhile
