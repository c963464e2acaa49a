"""GitHub feedback wired (issue 20): the real binary creates PipelineRuns on the stand-in
Kubernetes API (TLS, bearer token), follows them through the shared watcher
(server/watcher.c) and reports them to the stand-in GitHub API (tests/githubapi/) as check
runs (App) or commit statuses (token), keeping the check run id and the reported state on
the run's annotations. A check run's summary carries the run's TaskRuns (read when the run
starts and when it ends), the failing task and the node its Pods ran on.
"""
import json
import os
import sys
import tempfile
import time

import pytest

from harness import GpuHook, fixture, metric_value
from fake_apiserver import FakeApiServer, write_token

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "githubapi"))

from fake_github import FakeGitHub, make_app_key, make_tls  # noqa: E402

APP_ID = 424242
INSTALLATION = 1  # the push fixture's installation.id
OWNER, REPO = "Codertocat", "Hello-World"
PUSH = json.loads(fixture("push_with-new-branch.json"))
SHA = PUSH["after"]
PAT = "ghp_" + "Q" * 36
NS = "tekton-pipelines"
KUBE_TOKEN = "kube-" + "k" * 40
TASKS = ["fetch", "build", "gpu-test"]
SLOW = 3.0 if os.environ.get("GPUHOOK_SANITIZED") == "1" else 1.0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_app_key(str(tmp_path_factory.mktemp("app")))


@pytest.fixture(scope="module")
def gh_server(tmp_path_factory, keys):
    tls = str(tmp_path_factory.mktemp("tls"))
    make_tls(tls)
    srv = FakeGitHub(str(tmp_path_factory.mktemp("gh")), tls_dir=tls, app_id=APP_ID,
                     app_public_key=keys["public"], pats=[PAT],
                     installations=[{"id": INSTALLATION, "account": OWNER}])
    try:
        srv.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield srv
    srv.stop()


@pytest.fixture
def gh(gh_server):
    gh_server.reset(tokens=True)
    gh_server.config(token_ttl=3600, rate_limit=5000)
    return gh_server


@pytest.fixture(scope="module")
def kube_tls(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("kube-tls"))
    make_tls(d)
    return d


@pytest.fixture
def api(kube_tls):
    state = tempfile.mkdtemp(prefix="gpuhook-api-")
    token = os.path.join(state, "token")
    write_token(token, KUBE_TOKEN)
    srv = FakeApiServer(state, tls_dir=kube_tls, token_file=token).start()
    srv.token_file_path = token
    yield srv
    srv.stop()


def push(n):
    p = json.loads(json.dumps(PUSH))
    p["head_commit"]["message"] = "change %d" % n
    return json.dumps(p).encode()


def hook(api, gh, keys, mode="app", log_level="debug", **report):
    g = GpuHook()
    g.config["log_level"] = log_level
    g.config["kubernetes"] = {"mode": "url", "url": api.url, "namespace": NS,
                              "timeout_seconds": 3, "ca_file": api.ca_file,
                              "token_file": api.token_file_path}
    r = {"api_url": gh.url, "ca_file": gh.ca_file,
         "details_url": "https://dashboard.example/#/namespaces/{namespace}/pipelineruns/{name}"}
    if mode == "app":
        # Not the delivery's: the run's installation-id annotation must win.
        r.update({"app_id": APP_ID, "private_key_file": keys["private"],
                  "installation_id": 999})
    else:
        path = os.path.join(g.tmp, "github-status-token")
        with open(path, "w") as f:
            f.write(PAT + "\n")
        r["token_file"] = path
    r.update(report)
    g.config["github"]["report"] = r
    return g


def wait_for(pred, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def history_of(gh, check_run_id=None):
    return [(h["action"], h["status"], h["conclusion"]) for h in gh.history(check_run_id)]


def notes(api, name):
    return (api.run(name) or {}).get("metadata", {}).get("annotations", {})


def reported(api, name, state):
    return wait_for(lambda: notes(api, name).get("gpuhook.dev/github-reported") == state,
                    what="annotation github-reported=%s on %s: %s" % (state, name,
                                                                      notes(api, name)))


def esc(text):
    """A name as ghsummary escapes it for markdown (the names here hold only '-')."""
    return text.replace("-", "\\-")


def outputs(gh):
    """Each check run update's output.summary, in order ("" without one)."""
    return [((h.get("body") or {}).get("output") or {}).get("summary", "")
            for h in gh.history()]


def kube_reads(api, part):
    return [q for q in api.requests() if q["method"] == "GET" and part in q["path"]]


def place(api, name, node):
    """Gives the run the preferred node affinity the cluster view's decision writes
    (clusterview_place), as if gpuhook had rendered it so: the stand-in's Pods then land
    on that node."""
    obj = api.run(name)
    obj["spec"]["taskRunTemplate"] = {"podTemplate": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                  "values": [node]}]}}]}}}}
    api.put_object(obj)


def deliver(g, n=1):
    r = g.deliver("push", push(n), delivery="fb-%d" % n)
    assert r.status == 201, r.body
    return r.json["pipelinerun"]


def test_app_check_run_follows_the_run_to_success(api, gh, keys):
    with hook(api, gh, keys) as g:
        t0 = time.monotonic()
        name = deliver(g)
        answered = time.monotonic() - t0
        try:
            gh.wait_check_runs(1, timeout=10 * SLOW)
        except AssertionError:
            print(g.log_text()[-3000:])
            raise
        reported(api, name, "queued")
        run = gh.check_runs()[0]
        assert run["name"] == "gpu / lite" and run["head_sha"] == SHA
        assert run["status"] == "queued"
        assert run["external_id"] == NS + "/" + name
        assert run["details_url"] == \
            "https://dashboard.example/#/namespaces/%s/pipelineruns/%s" % (NS, name)
        ann = notes(api, name)
        assert ann["gpuhook.dev/check-run-id"] == str(run["id"])
        assert ann["gpuhook.dev/installation-id"] == str(INSTALLATION)  # from the delivery
        assert [t["installation_id"] for t in gh.tokens()] == [INSTALLATION]

        api.set_run_status(name, "Running", task="build", tasks=TASKS)
        reported(api, name, "in_progress")
        api.set_run_status(name, "Succeeded", tasks=TASKS, results=[
            {"name": "summary", "value": "| 8 | Final summary | success |\n\nall good"}])
        reported(api, name, "completed/success")
        assert history_of(gh) == [("created", "queued", None), ("updated", "in_progress", None),
                                  ("updated", "completed", "success")]
        running = outputs(gh)[1]
        assert "| fetch | Succeeded | " in running and "| build | Running | - |" in running
        assert "gpu\\-test" not in running  # not created yet
        done = gh.check_run(run["id"])["check_run"]
        assert done["conclusion"] == "success"
        assert done["output"]["title"] == "lite: Succeeded"
        summary = done["output"]["summary"]
        assert "| Variant | lite |" in summary and "| Rule | default |" in summary
        assert name.replace("-", "\\-") in summary and "| Duration |" in summary
        for task in TASKS:
            assert "| %s | Succeeded | " % esc(task) in summary, summary
        assert "Failed task" not in summary
        assert "| Node | gpu\\-node\\-1 |" in summary  # the stand-in's default node
        assert "### Summary from the run\n\n| 8 | Final summary | success |\n\nall good" \
            in summary
        # The TaskRuns are read when the run starts and when it ends, not on every event.
        assert len(kube_reads(api, "/taskruns")) == 2
        assert done["started_at"] and done["completed_at"]
        assert len(gh.check_runs()) == 1
        m = g.metrics()
        assert metric_value(m, 'gpuhook_github_updates_total{outcome="done"}') == 3
        assert metric_value(m, "gpuhook_github_token_fetches_total") == 1
        # The webhook's answer never waited for GitHub (its bound is the API's, not ours).
        assert answered < 2.0 * SLOW
        log = g.log_text()
    for secret in (PAT, KUBE_TOKEN, open(keys["private"]).read().split("\n")[1][:40]):
        assert secret not in log
    for tok in [t for t in gh.tokens()]:
        assert "token" not in tok  # the stand-in never hands the token back
    assert "ghs_" not in log and "eyJ" not in log  # no installation token, no JWT


def test_app_failed_run_reports_failure_with_the_step_summary(api, gh, keys):
    with hook(api, gh, keys) as g:
        name = deliver(g, 2)
        reported(api, name, "queued")
        api.set_run_status(name, "Running")
        reported(api, name, "in_progress")
        # What Tekton writes when the run fails and step 8 published its summary result.
        obj = api.run(name)
        obj["status"]["conditions"] = [{"type": "Succeeded", "status": "False",
                                        "reason": "Failed", "message": "Tasks Completed: 8 "
                                        "(Failed: 1, Cancelled 0), Skipped: 0"}]
        obj["status"]["completionTime"] = obj["status"]["startTime"]
        obj["status"]["results"] = [{"name": "summary",
                                     "value": "| 6 | Pytest | failure |\n\nstep 6 failed"}]
        api.put_object(obj)
        reported(api, name, "completed/failure")
        run = gh.check_runs()[0]
        assert run["status"] == "completed" and run["conclusion"] == "failure"
        assert run["output"]["title"] == "lite: Failed"
        summary = run["output"]["summary"]
        assert "### Summary from the run" in summary
        assert "| 6 | Pytest | failure |\n\nstep 6 failed" in summary  # kept as written


def test_app_failed_run_names_the_failing_task_and_the_node(api, gh, keys):
    with hook(api, gh, keys) as g:
        name = deliver(g, 8)
        reported(api, name, "queued")
        place(api, name, "gpu-node-7")
        tasks = TASKS + ["report"]
        api.set_run_status(name, "Running", task="gpu-test", tasks=tasks)
        reported(api, name, "in_progress")
        api.set_run_status(name, "Failed", task="gpu-test", tasks=tasks)
        reported(api, name, "completed/failure")
        run = gh.check_runs()[0]
        assert run["status"] == "completed" and run["conclusion"] == "failure"
        s = run["output"]["summary"]
        assert "**Failed task:** gpu\\-test" in s, s
        assert "| fetch | Succeeded | " in s and "| build | Succeeded | " in s
        assert "| gpu\\-test | **Failed** | " in s
        assert "| report | Skipped | - |" in s  # status.skippedTasks: no TaskRun, no failure
        assert "| Node | gpu\\-node\\-7 |" in s  # where its Pods ran
        # One Pod read per TaskRun, at the start and at the end; nothing per event.
        assert len(kube_reads(api, "/taskruns")) == 2
        assert len(kube_reads(api, "/pods/")) == 3 + 3
        assert all(q["auth"] == "ok" for q in kube_reads(api, "/"))


def test_pods_forbidden_still_reports_with_the_chosen_node_or_none(api, gh, keys):
    api.set_faults([{"mode": "status", "code": 403, "count": -1, "methods": ["GET"],
                     "paths": ["/api/v1/namespaces/*/pods/*"]}])
    with hook(api, gh, keys) as g:
        placed, plain = deliver(g, 9), deliver(g, 10)
        reported(api, placed, "queued")
        reported(api, plain, "queued")
        place(api, placed, "gpu-node-7")
        for name in (placed, plain):
            api.set_run_status(name, "Succeeded", tasks=TASKS)
        reported(api, placed, "completed/success")
        reported(api, plain, "completed/success")
        by_name = {r["external_id"].split("/")[1]: r["output"]["summary"]
                   for r in gh.check_runs()}
        assert "| Node | gpu\\-node\\-7 \\(preferred by the decision\\) |" in \
            by_name[placed], by_name[placed]
        assert "| Node |" not in by_name[plain]
        for s in by_name.values():
            assert "| gpu\\-test | Succeeded | " in s  # the TaskRuns could be read
        assert {q["status"] for q in kube_reads(api, "/pods/")} == {403}
        assert len(history_of(gh)) == 4  # queued and completed of each, nothing lost


def test_taskruns_list_failing_still_reports_once_without_the_table(api, gh, keys):
    api.set_faults([{"mode": "status", "code": 500, "count": -1, "methods": ["GET"],
                     "paths": ["/apis/tekton.dev/v1/namespaces/*/taskruns"]}])
    with hook(api, gh, keys) as g:
        name = deliver(g, 11)
        reported(api, name, "queued")
        api.set_run_status(name, "Failed", task="gpu-test", tasks=TASKS)
        reported(api, name, "completed/failure")
        time.sleep(0.3 * SLOW)
        assert history_of(gh) == [("created", "queued", None),
                                  ("updated", "completed", "failure")]
        s = gh.check_runs()[0]["output"]["summary"]
        assert "| Variant | lite |" in s and "### TaskRuns" not in s
        assert "Failed task" not in s
        assert kube_reads(api, "/taskruns") and \
            {q["status"] for q in kube_reads(api, "/taskruns")} == {500}
        log = g.log_text()
    assert "without its TaskRuns" in log


def test_a_rotated_kubernetes_token_is_read_again_for_the_taskruns(api, gh, keys):
    with hook(api, gh, keys) as g:
        name = deliver(g, 13)
        reported(api, name, "queued")
        # The kubelet rotates the projected token: gpuhook's copy is stale until re-read.
        write_token(api.token_file_path, KUBE_TOKEN + "-rotated")
        api.set_run_status(name, "Failed", task="gpu-test", tasks=TASKS)
        reported(api, name, "completed/failure")
        s = gh.check_runs()[0]["output"]["summary"]
        assert "**Failed task:** gpu\\-test" in s, s
        lists = [q["status"] for q in kube_reads(api, "/taskruns")]
        # 401, then the same list with the token read again; [200] only when the watcher
        # happened to re-read it first (its Lease renewal met the 401 before).
        assert lists in ([401, 200], [200]), lists
        log = g.log_text()
    assert KUBE_TOKEN not in log


def test_a_hundred_taskruns_give_a_bounded_summary_and_bounded_reads(api, gh, keys):
    many = ["t%03d" % i for i in range(100)]
    with hook(api, gh, keys) as g:
        name = deliver(g, 12)
        reported(api, name, "queued")
        api.set_run_status(name, "Failed", task="t099", tasks=many)
        reported(api, name, "completed/failure")
        s = gh.check_runs()[0]["output"]["summary"]
        assert len(s) <= 65535
        assert "| t000 | Succeeded | " in s and "| t099 | **Failed** | " in s
        assert "**Failed task:** t099" in s
        assert len(kube_reads(api, "/taskruns")) == 1
        assert len(kube_reads(api, "/pods/")) <= 32  # GHREPORT_PODS_MAX


def test_token_mode_reports_commit_statuses(api, gh, keys):
    with hook(api, gh, keys, mode="token") as g:
        name = deliver(g, 3)
        reported(api, name, "pending")
        api.set_run_status(name, "Running")
        time.sleep(0.5 * SLOW)
        api.set_run_status(name, "Succeeded")
        reported(api, name, "success")
        states = [s["state"] for s in gh.statuses(repo=OWNER + "/" + REPO, sha=SHA)]
        assert states == ["pending", "success"]  # Running is still pending: not sent twice
        st = gh.statuses()[-1]
        assert st["context"] == "gpu / lite"
        assert st["target_url"].endswith("/pipelineruns/" + name)
        assert "gpuhook.dev/check-run-id" not in notes(api, name)
        assert gh.check_runs() == []
        log = g.log_text()
    assert PAT not in log


def test_restart_continues_the_same_check_run(api, gh, keys):
    g = hook(api, gh, keys)
    with g:
        name = deliver(g, 4)
        reported(api, name, "queued")
        api.set_run_status(name, "Running")
        reported(api, name, "in_progress")
    # Down while the run finishes: the re-list after the restart reports it.
    api.set_run_status(name, "Succeeded")
    with g:
        reported(api, name, "completed/success")
        runs = gh.check_runs()
        assert len(runs) == 1, runs
        assert history_of(gh) == [("created", "queued", None), ("updated", "in_progress", None),
                                  ("updated", "completed", "success")]
        # Nothing already reported is sent again.
        posts = [q for q in gh.requests() if q["operation"] == "checks/create"]
        assert len(posts) == 1


def test_rate_limited_then_5xx_then_ok_every_update_once_in_order(api, gh, keys):
    with hook(api, gh, keys, max_attempts=5) as g:
        name = deliver(g, 5)
        reported(api, name, "queued")
        gh.set_faults([
            {"mode": "rate_limit", "reset_in": 1, "methods": ["PATCH"],
             "paths": ["/repos/*/check-runs/*"]},
            {"mode": "status", "code": 502, "count": 1, "methods": ["PATCH"]}])
        api.set_run_status(name, "Running")
        reported(api, name, "in_progress")
        api.set_run_status(name, "Succeeded")
        reported(api, name, "completed/success")
        assert history_of(gh) == [("created", "queued", None), ("updated", "in_progress", None),
                                  ("updated", "completed", "success")]
        faults = [q["fault"] for q in gh.requests() if q.get("fault")]
        assert len(faults) >= 2, gh.requests()
        m = g.metrics()
        assert metric_value(m, "gpuhook_github_rate_limited_total") >= 1


def test_installation_token_expires_during_a_run(api, gh, keys):
    with hook(api, gh, keys) as g:
        name = deliver(g, 6)
        reported(api, name, "queued")
        assert len(gh.tokens()) == 1
        gh.expire_tokens()
        api.set_run_status(name, "Succeeded")
        reported(api, name, "completed/success")
        assert len(gh.tokens()) == 2  # a 401, then a new token, then the same update
        assert history_of(gh)[-1] == ("updated", "completed", "success")
        assert metric_value(g.metrics(), "gpuhook_github_token_fetches_total") == 2


def test_config_refuses_app_and_token_together(api, gh, keys, tmp_path):
    g = hook(api, gh, keys, token_file=str(tmp_path / "t"))
    g.write_config()
    import subprocess
    p = subprocess.run([g.binary, "--config", g.config_path, "--check-config"], capture_output=True,
                       text=True, timeout=20)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "github.report" in out and "not both" in out, out


def test_two_replicas_report_once(api, gh, keys):
    """Both replicas watch the run; only the Lease holder reports it."""
    a, b = hook(api, gh, keys), hook(api, gh, keys)
    with a, b:
        name = deliver(b, 7)
        reported(api, name, "queued")
        api.set_run_status(name, "Running")
        reported(api, name, "in_progress")
        api.set_run_status(name, "Succeeded")
        reported(api, name, "completed/success")
        time.sleep(0.5 * SLOW)  # a second reporter would have sent by now
        assert history_of(gh) == [("created", "queued", None), ("updated", "in_progress", None),
                                  ("updated", "completed", "success")]
        done = [metric_value(x.metrics(), 'gpuhook_github_updates_total{outcome="done"}')
                for x in (a, b)]
        assert sorted(done) == [0, 3], done
