"""GPU queueing (issue 18): selection.gpu_fit.on_insufficient "queue". The real server with the
fake GPU source (tests/integration/gpuhook_fakegpu.c, free memory read from a file at every
probe) against the stand-in API server. A run that does not fit is created pending and
answered 202 queued; it starts when the memory is there, and after max_wait_seconds it is
replaced by a lite copy (on_timeout downgrade) or cancelled (on_timeout reject). Without a
scheduler (local mode) queue acts as downgrade."""
import json
import os
import tempfile
import time

import pytest

from harness import wait_for, GpuHook, fixture
from fake_apiserver import FakeApiServer

FAKE = os.environ.get("GPUHOOK_FAKEGPU_BIN") or os.path.join(
    os.path.dirname(os.environ.get("GPUHOOK_BIN", "build/gpuhook")), "tests", "gpuhook_fakegpu")


def main_push(sha="1" * 40):
    p = json.loads(fixture("push_with-new-branch.json"))
    p["ref"] = "refs/heads/main"  # the harness's rule "main-original"
    p["after"] = sha
    if p.get("head_commit"):
        p["head_commit"]["id"] = sha
    return json.dumps(p).encode()


class FreeMemory:
    """The fake GPU's free memory, changed at run time (GPUHOOK_FAKE_FREE_MIB_FILE)."""

    def __init__(self, mib):
        self.path = os.path.join(tempfile.mkdtemp(prefix="gpuhook-free-"), "free_mib")
        self.set(mib)

    def set(self, mib):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % mib)
        os.replace(tmp, self.path)


def hook(free, api=None, fit=None):
    g = GpuHook(binary=FAKE, env={"GPUHOOK_FAKE_FREE_MIB": "0",
                                  "GPUHOOK_FAKE_FREE_MIB_FILE": free.path})
    # Not the harness's explicit downgrade: without on_insufficient the default applies.
    g.config["selection"]["gpu_fit"] = dict({"lite_min_free_mib": 2048,
                                             "original_min_free_mib": 8192}, **(fit or {}))
    if api:
        g.config["kubernetes"] = {"mode": "url", "url": api.url, "namespace": "tekton-pipelines",
                                  "timeout_seconds": 3}
    return g


@pytest.fixture
def api():
    srv = FakeApiServer(tempfile.mkdtemp(prefix="gpuhook-api-")).start()
    yield srv
    srv.stop()


def notes(api, name):
    return ((api.run(name) or {}).get("metadata") or {}).get("annotations") or {}


def spec_status(api, name):
    return ((api.run(name) or {}).get("spec") or {}).get("status")


def started(api, name):
    r = api.run(name)
    return r is not None and "status" not in (r.get("spec") or {})


def leader(g):
    return "\ngpuhook_queue_leader 1\n" in g.metrics()


def queued_original(g, api):
    """Delivers a push that selects original; it must come back 202 queued, pending."""
    assert wait_for(lambda: leader(g))
    r = g.deliver("push", main_push())
    assert r.status == 202, r.body
    assert r.json["status"] == "queued" and r.json["position"] == 1, r.body
    assert r.json["variant"] == "original", r.body
    name = r.json["pipelinerun"]
    assert spec_status(api, name) == "PipelineRunPending"
    why = notes(api, name)["gpuhook.dev/waiting-for"]
    assert why.startswith("gpu:") and "8192 MiB" in why and "1000 MiB" in why, why
    return name


def test_queue_is_the_default_and_a_run_waits_for_memory_then_starts(api):
    free = FreeMemory(1000)
    with hook(free, api) as g:  # no on_insufficient: queue is the default
        name = queued_original(g, api)
        assert "Queued original for the GPU" in notes(api, name)["gpuhook.dev/reason"]
        view = g.request("GET", "/queue").json
        assert [w["waiting_for"] for grp in view["groups"] for w in grp["waiting"]] == ["gpu"]
        time.sleep(1.5)  # a few probes with too little memory: it keeps waiting
        assert spec_status(api, name) == "PipelineRunPending"
        free.set(16000)
        assert wait_for(lambda: started(api, name)), api.run(name)
        n = notes(api, name)
        assert n.get("gpuhook.dev/started-at")
        assert "for gpu:" in n.get("gpuhook.dev/waited", ""), n
        assert "gpuhook.dev/waiting-for" not in n
        assert [o["metadata"]["name"] for o in api.objects()] == [name]


def test_max_wait_then_downgrade_replaces_the_run_by_a_lite_copy(api):
    free = FreeMemory(3000)  # never enough for original, enough for lite
    fit = {"on_insufficient": "queue", "max_wait_seconds": 2, "on_timeout": "downgrade"}
    with hook(free, api, fit) as g:
        assert wait_for(lambda: leader(g))
        r = g.deliver("push", main_push())
        assert r.status == 202 and r.json["status"] == "queued", r.body
        name = r.json["pipelinerun"]
        copy = name[:63 - len("-lite")].rstrip("-") + "-lite"
        assert wait_for(lambda: spec_status(api, name) == "Cancelled"), api.run(name)
        assert notes(api, name)["gpuhook.dev/downgraded-to"] == "lite"
        c = api.run(copy)
        assert c is not None, [o["metadata"]["name"] for o in api.objects()]
        assert "status" not in c["spec"]  # lite fits: started at once
        assert c["spec"]["pipelineRef"]["name"] == "gpu-real-8-step-workflow-lite"
        assert c["metadata"]["labels"]["gpuhook.dev/variant"] == "lite"
        assert c["metadata"]["annotations"]["gpuhook.dev/downgraded-from"] == name
        assert (c["metadata"]["annotations"]["gpuhook.dev/queued-since"] ==
                notes(api, name)["gpuhook.dev/queued-since"])
        assert wait_for(lambda: 'gpuhook_queue_actions_total{action="downgrade"} 1'
                        in g.metrics())
        time.sleep(1.0)  # the next decisions see the copy: no second one
        assert len(api.objects()) == 2


def test_max_wait_then_reject_cancels_the_run_with_the_numbers(api):
    free = FreeMemory(1000)
    fit = {"on_insufficient": "queue", "max_wait_seconds": 2, "on_timeout": "reject"}
    with hook(free, api, fit) as g:
        name = queued_original(g, api)
        assert wait_for(lambda: spec_status(api, name) == "Cancelled"), api.run(name)
        why = notes(api, name)["gpuhook.dev/rejected"]
        assert "8192 MiB" in why and "1000 MiB free" in why and "max_wait_seconds is 2" in why, why
        assert len(api.objects()) == 1
        assert wait_for(lambda: 'gpuhook_queue_actions_total{action="reject"} 1' in g.metrics())


def test_queue_without_a_scheduler_acts_as_downgrade_and_says_so():
    free = FreeMemory(5000)
    with hook(free, fit={"on_insufficient": "queue"}) as g:  # local mode: no Kubernetes API
        r = g.deliver("push", main_push())
        assert r.status == 201 and r.json["variant"] == "lite", r.body
        obj = g.runs()[r.json["pipelinerun"]]
        reason = obj["metadata"]["annotations"]["gpuhook.dev/reason"]
        assert "no scheduler" in reason and "5000" in reason and "8192" in reason, reason
        assert "status" not in obj["spec"]


def test_with_the_cluster_view_a_run_waits_for_an_agents_memory(api, monkeypatch):
    """The figure is the cluster view's when it has data: the server sees no GPU of its own."""
    from test_cluster_gpu import BIN, SERVICE, Agent
    free = FreeMemory(1000)
    monkeypatch.setenv("GPUHOOK_FAKE_FREE_MIB_FILE", free.path)
    agent = Agent("gpu-a", 0)
    try:
        api.put_object(agent.slice())
        g = hook(free, api)
        g.binary = BIN
        g.config["cluster_gpu"] = {"service": SERVICE, "poll_seconds": 1}
        with g:
            assert wait_for(lambda: (g.request("GET", "/gpu").json or {}).get("view") == "cluster")
            name = queued_original(g, api)
            reason = notes(api, name)["gpuhook.dev/reason"]
            assert "1000 MiB free on the best GPU of the cluster" in reason, reason
            time.sleep(1.5)
            assert spec_status(api, name) == "PipelineRunPending"
            free.set(16000)
            assert wait_for(lambda: started(api, name)), api.run(name)
    finally:
        agent.stop()


def test_two_originals_are_not_started_on_the_same_free_memory(api):
    free = FreeMemory(10000)  # room for one original (8192), and the probe lags behind a start
    with hook(free, api) as g:
        assert wait_for(lambda: leader(g))
        a = g.deliver("push", main_push("1" * 40))
        assert a.status == 201 and a.json["status"] == "created", a.body
        b = g.deliver("push", main_push("2" * 40))
        assert b.status == 202 and b.json["status"] == "queued", b.body
        name = b.json["pipelinerun"]
        why = notes(api, name)["gpuhook.dev/waiting-for"]
        assert why.startswith("gpu:") and "have not taken theirs yet" in why, why
        time.sleep(1.5)
        assert spec_status(api, name) == "PipelineRunPending"
