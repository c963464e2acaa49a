"""PipelineRun status as Tekton's controller writes it, for tests.

Condition type Succeeded with the reasons of tektoncd/pipeline pkg/apis/pipeline/v1
(pipelinerun_types.go): Started, Running, Succeeded, Completed, Failed, Cancelled,
CancelledRunningFinally, StoppedRunningFinally, PipelineRunTimeout, PipelineRunPending.
spec.status takes PipelineRunPending, Cancelled, CancelledRunFinally and StoppedRunFinally.

Two parts:
  - transition(obj, phase, ...) returns the status a test asks for (through
    POST /_test/pipelineruns/NS/NAME/status or FakeApiServer.set_run_status);
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

from kube_resources import PIPELINERUNS, ApiError

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


def _task_name(obj, task):
    return "%s-%s" % (obj["metadata"]["name"], task)


def transition(obj, phase, task=None, message=None, tasks=None):
    """The new status of obj (a PipelineRun) in phase; obj is not changed.

    task names the failing task (Failed) or the one running (Running); tasks lists
    the pipeline's task names for childReferences (default: the task, or "build")."""
    if phase not in PHASES:
        raise ValueError("unknown phase %r (one of %s)" % (phase, ", ".join(PHASES)))
    name = obj["metadata"]["name"]
    st = dict(obj.get("status") or {})
    now = now_rfc3339()
    cond = {"type": "Succeeded", "lastTransitionTime": now}
    if phase == "Pending":
        cond.update(status="Unknown", reason="PipelineRunPending",
                    message='PipelineRun "%s" is pending' % name)
        st.pop("startTime", None)
    else:
        st.setdefault("startTime", now)
    names = list(tasks or ([task] if task else ["build"]))
    if phase in ("Started", "Running"):
        cond.update(status="Unknown", reason=phase,
                    message="Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: %d, "
                            "Skipped: 0" % len(names))
    elif phase in ("Succeeded", "Completed"):
        cond.update(status="True", reason=phase,
                    message="Tasks Completed: %d (Failed: 0, Cancelled 0), Skipped: 0"
                            % len(names))
    elif phase == "Failed":
        failing = task or names[-1]
        if failing not in names:
            names.append(failing)
        cond.update(status="False", reason="Failed",
                    message="Tasks Completed: %d (Failed: 1, Cancelled 0), Skipped: 0"
                            % len(names))
    elif phase == "Cancelled":
        cond.update(status="False", reason="Cancelled",
                    message='PipelineRun "%s" was cancelled' % name)
    elif phase in ("CancelledRunningFinally", "StoppedRunningFinally"):
        cond.update(status="Unknown", reason=phase,
                    message="Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 1, "
                            "Skipped: 0")
    elif phase == "Timeout":
        timeout = ((obj.get("spec") or {}).get("timeouts") or {}).get("pipeline", "1h0m0s")
        cond.update(status="False", reason="PipelineRunTimeout",
                    message='PipelineRun "%s" failed to finish within "%s"' % (name, timeout))
    if message is not None:
        cond["message"] = message
    if phase != "Pending":
        st["childReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                                  "name": _task_name(obj, t), "pipelineTaskName": t}
                                 for t in names]
    if cond["status"] in ("True", "False"):
        st["completionTime"] = now
    else:
        st.pop("completionTime", None)
    st["conditions"] = [cond]
    st["observedGeneration"] = obj["metadata"].get("generation", 1)
    return st


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
                if e.rt is PIPELINERUNS and e.type != "DELETED" and self.mode != "off":
                    self.react(e.ns, e.obj["metadata"]["name"])

    def react(self, ns, name):
        def change(cur):
            phase = reaction(cur, self.mode == "start")
            if phase is None:
                return cur
            cur["status"] = transition(cur, phase)
            return cur
        try:
            self.store.update(PIPELINERUNS, ns, name, change, subresource="status")
        except ApiError:
            pass  # deleted meanwhile
