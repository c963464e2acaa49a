"""The admission queue wired into the server (issue 18): the real binary against the stand-in
API server and its Tekton controller stand-in. Pending runs are real PipelineRuns
(spec.status PipelineRunPending) answered 202 with a position; the leader's scheduler starts
them by a merge patch when a slot frees, supersedes pending runs of a group, survives a
restart (the state is in the cluster) and a kill -9 of the leader, and a flapping API."""
import json
import signal
import subprocess
import tempfile
import time

import pytest

from harness import wait_for, BINARY, GpuHook, fixture
from fake_apiserver import FakeApiServer

PUSH = fixture("push_with-new-branch.json")
LEASE_S = 2


def push(branch="main", sha=None):
    p = json.loads(PUSH)
    p["ref"] = "refs/heads/" + branch
    if sha:
        p["after"] = sha
        if p.get("head_commit"):
            p["head_commit"]["id"] = sha
    return json.dumps(p).encode()


def hook(api, cancel_pending=False, original=1, lease_s=LEASE_S):
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": api.url, "namespace": "tekton-pipelines",
                              "timeout_seconds": 3}
    g.config["concurrency"] = {"group": "{repo_full_name}/{branch}",
                               "cancel_pending": cancel_pending,
                               "max_running": {"original": original, "lite": 4},
                               "lease": {"name": "gpuhook-scheduler",
                                         "duration_seconds": lease_s}}
    return g


def leader(g):
    return "\ngpuhook_queue_leader 1\n" in g.metrics()


def spec_status(api, name):
    return ((api.run(name) or {}).get("spec") or {}).get("status")


def notes(api, name):
    return ((api.run(name) or {}).get("metadata") or {}).get("annotations") or {}


def started(api, name):
    r = api.run(name)
    return r is not None and "status" not in (r.get("spec") or {})


@pytest.fixture
def api():
    srv = FakeApiServer(tempfile.mkdtemp(prefix="gpuhook-api-")).start()
    yield srv
    srv.stop()


def deliver_three(g):
    out = []
    for i in range(3):
        r = g.deliver("push", push(sha="%040x" % (i + 1)))
        assert r.status in (201, 202), r.body
        out.append(r.json)
    return out


def test_max_running_one_runs_one_and_queues_two_in_order(api):
    with hook(api) as g:
        assert wait_for(lambda: leader(g))
        a, b, c = deliver_three(g)
        assert a["status"] == "created"
        assert (b["status"], b["position"]) == ("queued", 1), b
        assert (c["status"], c["position"]) == ("queued", 2), c
        names = [a["pipelinerun"], b["pipelinerun"], c["pipelinerun"]]
        assert spec_status(api, names[0]) is None
        assert spec_status(api, names[1]) == "PipelineRunPending"
        assert spec_status(api, names[2]) == "PipelineRunPending"
        labels = api.run(names[1])["metadata"]["labels"]
        assert labels["gpuhook.dev/variant"] == "original"
        assert labels["app.kubernetes.io/managed-by"] == "gpuhook"
        assert notes(api, names[1])["gpuhook.dev/queued-since"]
        view = g.request("GET", "/queue").json
        waiting = [w["name"] for grp in view["groups"] for w in grp["waiting"]]
        assert waiting == names[1:], view
        assert view["running"]["original"] == 1

        api.set_run_status(names[0], "Succeeded")
        assert wait_for(lambda: started(api, names[1])), api.run(names[1])
        assert notes(api, names[1]).get("gpuhook.dev/started-at")
        time.sleep(1.5)
        assert spec_status(api, names[2]) == "PipelineRunPending"
        # The third waited behind the second (its group's order); now it heads the group and
        # waits for the cap: the scheduler's note says so on the object, with the numbers.
        assert wait_for(lambda: notes(api, names[2])["gpuhook.dev/waiting-for"].startswith(
            "max_running: 1 of 1 original runs are running")), notes(api, names[2])

        api.set_run_status(names[1], "Failed")
        assert wait_for(lambda: started(api, names[2]))
        # A start is counted when its patch's answer reaches gpuhook, which can come a moment
        # after the API shows the run started.
        assert wait_for(lambda: 'gpuhook_queue_actions_total{action="start"} 2' in g.metrics())
        m = g.metrics()
        assert 'gpuhook_queue_actions_total{action="queued"} 2' in m
        assert "gpuhook_queue_wait_seconds_count 2" in m


def test_supersession_keeps_the_running_cancels_the_middle_starts_the_last(api):
    with hook(api, cancel_pending=True) as g:
        assert wait_for(lambda: leader(g))
        a, b, c = deliver_three(g)
        names = [a["pipelinerun"], b["pipelinerun"], c["pipelinerun"]]
        assert a["status"] == "created" and b["status"] == "queued" and c["status"] == "queued"
        assert wait_for(lambda: spec_status(api, names[1]) == "Cancelled")
        assert notes(api, names[1]).get("gpuhook.dev/superseded-by") == names[2]
        assert spec_status(api, names[0]) is None  # the running one is never touched
        assert spec_status(api, names[2]) == "PipelineRunPending"
        api.set_run_status(names[0], "Succeeded")
        assert wait_for(lambda: started(api, names[2]))
        assert spec_status(api, names[1]) == "Cancelled"
        assert wait_for(lambda: 'gpuhook_queue_actions_total{action="supersede"} 1' in g.metrics())


def test_restart_in_the_middle_continues_from_the_cluster(api):
    g = hook(api)
    with g:
        assert wait_for(lambda: leader(g))
        a, b, c = deliver_three(g)
    names = [a["pipelinerun"], b["pipelinerun"], c["pipelinerun"]]
    api.set_run_status(names[0], "Succeeded")  # while no gpuhook runs
    time.sleep(0.5)
    assert spec_status(api, names[1]) == "PipelineRunPending"
    with hook(api) as g2:
        assert wait_for(lambda: started(api, names[1]))
        assert spec_status(api, names[2]) == "PipelineRunPending"
        api.set_run_status(names[1], "Succeeded")
        assert wait_for(lambda: started(api, names[2]))
        assert leader(g2)


def start_patches(api, name):
    """PATCHes of the run that the API applied and that touched spec.status (started it).
    The stand-in logs a request once its answer is sent, a moment after the store shows the
    change, so this waits until the run's start is in the log (then counts them all)."""
    def get():
        return [q for q in api.requests() if q["method"] == "PATCH" and q["status"] == 200
                and q["path"].endswith("/pipelineruns/" + name)
                and "spec.status" in (q.get("patch_fields") or [])]
    if started(api, name):
        wait_for(get, timeout=2)
    return get()


def test_two_replicas_kill_the_leader_the_other_goes_on_each_run_starts_once(api):
    a, b = hook(api), hook(api)
    with a, b:
        assert wait_for(lambda: leader(a) or leader(b))
        lead, other = (a, b) if leader(a) else (b, a)
        assert not leader(other)
        runs = deliver_three(other)  # any replica admits
        names = [r["pipelinerun"] for r in runs]
        assert [r["status"] for r in runs] == ["created", "queued", "queued"]
        lead.proc.send_signal(signal.SIGKILL)
        lead.proc.wait()
        api.set_run_status(names[0], "Succeeded")
        assert wait_for(lambda: started(api, names[1]), timeout=LEASE_S * 4 + 10)
        assert leader(other)
        api.set_run_status(names[1], "Succeeded")
        assert wait_for(lambda: started(api, names[2]))
        for n in names[1:]:
            assert len(start_patches(api, n)) == 1, (n, start_patches(api, n))
        assert start_patches(api, names[0]) == []


def test_a_flapping_api_during_scheduling_loses_nothing(api):
    with hook(api) as g:
        assert wait_for(lambda: leader(g))
        a, b, c = deliver_three(g)
        names = [a["pipelinerun"], b["pipelinerun"], c["pipelinerun"]]
        # Patches fail (503, dropped connections) for a while; the tick sends them again.
        api.set_faults([{"mode": "alternate", "modes": ["503", "drop"], "count": 4,
                         "paths": ["/apis/tekton.dev/v1/namespaces/*/pipelineruns/*"],
                         "methods": ["PATCH"]}])
        api.set_run_status(names[0], "Succeeded")
        assert wait_for(lambda: started(api, names[1]), timeout=20)
        assert spec_status(api, names[2]) == "PipelineRunPending"
        api.set_run_status(names[1], "Succeeded")
        assert wait_for(lambda: started(api, names[2]), timeout=20)
        assert len(api.objects()) == 3


def test_a_bad_group_template_is_a_config_error_that_names_the_key(api):
    g = hook(api)
    g.config["concurrency"]["group"] = "{repo_full_name}/{nope}"
    g.write_config()
    r = subprocess.run([BINARY, "--config", g.config_path, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert ".concurrency.group" in out and "unknown field {nope}" in out, out


def test_queue_route_without_concurrency_says_why(api):
    g = hook(api)
    del g.config["concurrency"]
    with g:
        r = g.request("GET", "/queue")
        assert r.status == 404
        assert "no admission queue" in r.json["error"], r.body
        # Without the block nothing changes: a run is created started, answered 201.
        d = g.deliver("push", push())
        assert d.status == 201 and d.json["status"] == "created", d.body
        run = api.run(d.json["pipelinerun"])
        assert "status" not in run.get("spec", {})
        assert "gpuhook.dev/group" not in (run["metadata"].get("labels") or {})


POSTS = ["/apis/tekton.dev/v1/namespaces/*/pipelineruns"]


def api_down(api):
    """Every create answers 503 until api_up: deliveries are spooled."""
    api.set_faults([{"mode": "status", "code": 503, "count": -1, "paths": POSTS,
                     "methods": ["POST"]}])


def api_up(api):
    api.set_faults([])


def test_a_run_spooled_while_the_slot_was_free_is_created_pending_and_started_by_the_scheduler(api):
    with hook(api) as g:  # max_running.original 1, nothing running
        assert wait_for(lambda: leader(g))
        api_down(api)
        r = g.deliver("push", push(sha="%040x" % 1))
        assert r.status == 202 and r.json["status"] == "queued", r.body  # spooled
        b = r.json["pipelinerun"]
        assert api.run(b) is None
        api_up(api)
        # Spooled pending, not started: the scheduler starts it from the cluster's state.
        assert wait_for(lambda: started(api, b), timeout=20), api.run(b)
        assert len(start_patches(api, b)) == 1, start_patches(api, b)
        assert notes(api, b).get("gpuhook.dev/started-at")
        c = g.deliver("push", push(sha="%040x" % 2))
        assert c.status == 202 and c.json["position"] == 1, c.body
        time.sleep(1.0)
        assert spec_status(api, c.json["pipelinerun"]) == "PipelineRunPending"


def test_a_run_spooled_while_max_running_is_full_waits_for_the_slot(api):
    with hook(api) as g:
        assert wait_for(lambda: leader(g))
        a = g.deliver("push", push(sha="%040x" % 1))
        assert a.status == 201, a.body
        api_down(api)
        r = g.deliver("push", push(sha="%040x" % 2))
        assert r.status == 202 and r.json["status"] == "queued", r.body
        b = r.json["pipelinerun"]
        api_up(api)
        assert wait_for(lambda: api.run(b) is not None, timeout=20)
        assert spec_status(api, b) == "PipelineRunPending"
        time.sleep(1.5)
        assert spec_status(api, b) == "PipelineRunPending"  # the slot is a's
        api.set_run_status(a.json["pipelinerun"], "Succeeded")
        assert wait_for(lambda: started(api, b))
        assert len(start_patches(api, b)) == 1
