"""The GitHub client (issue 20: server/ghapi.c, ghauth.c, ghsummary.c) against the stand-in
GitHub API (tests/githubapi/), which checks every request against GitHub's OpenAPI
description, verifies the App's JWT and issues expiring installation tokens.

The real modules run in tests/github/ghclient_main.c, a driver that reads a script of
updates and prints one JSON line per outcome; what GitHub ended up with is read back from
the stand-in (history, statuses, request log). TLS is on, so the CA file is exercised.
"""

import json
import os
import resource
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "githubapi"))

from fake_github import FakeGitHub, make_app_key, make_tls  # noqa: E402

APP_ID = 424242
INSTALLATION = 4711
OWNER, REPO = "octo-org", "gpu-service"
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
PAT = "ghp_" + "P" * 36


def driver_bin():
    env = os.environ.get("GPUHOOK_GHCLIENT_BIN")
    if env:
        return env
    fake = os.environ.get("GPUHOOK_FAKEGPU_BIN")
    assert fake, "GPUHOOK_FAKEGPU_BIN (or GPUHOOK_GHCLIENT_BIN) must be set: run through ctest"
    path = os.path.join(os.path.dirname(fake), "gpuhook_ghclient")
    assert os.path.exists(path), "build the gpuhook_ghclient target first: " + path
    return path


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
    srv.app_keys = keys
    yield srv
    srv.stop()


@pytest.fixture
def gh(gh_server):
    gh_server.reset(tokens=True)
    gh_server.config(token_ttl=3600, rate_limit=5000)
    return gh_server


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "github-token"
    p.write_text(PAT + "\n")
    return str(p)


class Run:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.stdout = proc.stdout
        self.lines = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]
        self.results = [l for l in self.lines if l["event"] == "result"]
        self.errors = [l for l in self.lines if l["event"] == "submit_error"]
        stats = [l for l in self.lines if l["event"] == "stats"]
        self.stats = stats[-1] if stats else None


def drive(gh, script, token_file=None, level="debug", extra=(), timeout=60):
    args = [driver_bin(), "--api-url", gh.url, "--ca-file", gh.ca_file, "--log-level", level,
            "--backoff-ms", "200"] + list(extra)
    if token_file:
        args += ["--token-file", token_file]
    else:
        args += ["--app-id", str(APP_ID), "--key", gh.app_keys["private"]]
    text = "".join(json.dumps(l) + "\n" for l in script)
    proc = subprocess.run(args, input=text, capture_output=True, text=True, timeout=timeout)
    run = Run(proc)
    assert run.rc == 0, run.stderr
    return run


def check(run="ns/run-1", **fields):
    u = {"op": "submit", "kind": "check", "run": run, "owner": OWNER, "repo": REPO,
         "head_sha": SHA, "installation_id": INSTALLATION, "name": "gpu / lite",
         "external_id": run, "details_url": "https://dashboard.example/#/pipelineruns/" + run}
    u.update(fields)
    return u


def status(run="ns/run-1", **fields):
    u = {"op": "submit", "kind": "status", "run": run, "owner": OWNER, "repo": REPO,
         "head_sha": SHA, "name": "gpu / lite",
         "details_url": "https://dashboard.example/#/pipelineruns/" + run}
    u.update(fields)
    return u


def wait(run="ns/run-1"):
    return {"op": "wait", "run": run}


RENDER = {"variant": "lite", "rule": "pull_request to main", "pipelinerun": "ns/run-1",
          "reason": "gpu_fit: 1 of 2 GPUs free", "node": "gpu-node-1",
          "tasks": [{"name": "fetch", "outcome": "Succeeded", "duration_ms": 4200},
                    {"name": "train", "outcome": "Succeeded", "duration_ms": 61000}],
          "step_summary": "**loss** 0.12 after 8 steps"}
T0 = int(time.time() * 1000) - 120000


def lifecycle(run="ns/run-1", final=("True", "Succeeded"), render=RENDER, **extra):
    return [check(run, condition={}, render=render, **extra), wait(run),
            check(run, condition={"status": "Unknown", "reason": "Running"}, started_ms=T0,
                  render=render, **extra), wait(run),
            check(run, condition={"status": final[0], "reason": final[1]}, started_ms=T0,
                  completed_ms=T0 + 65000, render=render, **extra), wait(run)]


def assert_well_behaved(gh):
    for e in gh.requests():
        assert e["validation"] is None, e
        assert e["user_agent"].startswith("gpuhook/"), e
        assert e["accept"] == "application/vnd.github+json", e
        assert e["api_version"] == "2022-11-28", e


def test_app_check_run_queued_in_progress_completed_with_summary(gh, keys):
    run = drive(gh, lifecycle())
    assert [r["outcome"] for r in run.results] == ["done"] * 3, run.stdout
    assert [r["what"] for r in run.results] == ["queued", "in_progress", "success"]
    ids = {r["check_run_id"] for r in run.results}
    assert len(ids) == 1 and ids.pop() > 0
    hist = gh.history()
    assert [(h["action"], h["status"], h["conclusion"]) for h in hist] == [
        ("created", "queued", None), ("updated", "in_progress", None),
        ("updated", "completed", "success")]
    assert len({h["check_run_id"] for h in hist}) == 1
    [cr] = gh.check_runs()
    assert cr["name"] == "gpu / lite" and cr["head_sha"] == SHA
    assert cr["external_id"] == "ns/run-1"
    assert cr["details_url"] == "https://dashboard.example/#/pipelineruns/ns/run-1"
    assert cr["output"]["title"] == "lite: Succeeded"
    summary = cr["output"]["summary"]
    assert "| Variant | lite |" in summary
    assert "| Node | gpu\\-node\\-1 |" in summary
    assert "| train | Succeeded | 1m 01s |" in summary
    assert "| Duration | 1m 05s |" in summary
    assert "**loss** 0.12 after 8 steps" in summary
    assert cr["started_at"] and cr["completed_at"]
    ops = [e["operation"] for e in gh.requests()]
    assert ops == ["apps/create-installation-access-token", "checks/create", "checks/update",
                   "checks/update"]
    assert_well_behaved(gh)
    assert run.stats["token_fetches"] == 1 and run.stats["gave_up"] == 0


def test_app_failed_run_names_the_failing_task(gh, keys):
    render = dict(RENDER, failing_task="train",
                  tasks=[{"name": "fetch", "outcome": "Succeeded", "duration_ms": 4200},
                         {"name": "train", "outcome": "Failed", "duration_ms": 9000}])
    run = drive(gh, lifecycle(final=("False", "Failed"), render=render))
    assert [r["outcome"] for r in run.results] == ["done"] * 3, run.stdout
    [cr] = gh.check_runs()
    assert cr["status"] == "completed" and cr["conclusion"] == "failure"
    assert "**Failed task:** train" in cr["output"]["summary"]
    assert "| train | **Failed** |" in cr["output"]["summary"]
    # A timeout and a cancellation map to GitHub's own conclusions.
    drive(gh, lifecycle("ns/run-2", final=("False", "PipelineRunTimeout"))
          + lifecycle("ns/run-3", final=("False", "Cancelled")))
    byname = {c["external_id"]: c for c in gh.check_runs()}
    assert byname["ns/run-2"]["conclusion"] == "timed_out"
    assert byname["ns/run-3"]["conclusion"] == "cancelled"
    assert_well_behaved(gh)


def test_token_mode_sets_commit_statuses(gh, token_file):
    long_text = "gpu_fit: waiting for a free GPU on the lite pool; " * 5
    run = drive(gh, [status(condition={}, description=long_text), wait(),
                     status(condition={"status": "Unknown", "reason": "Running"},
                            description="running on gpu-node-1"), wait(),
                     status(condition={"status": "False", "reason": "Failed"},
                            description="failed in train"), wait()], token_file=token_file)
    assert [r["outcome"] for r in run.results] == ["done"] * 3, run.stdout
    sts = gh.statuses()
    assert [s["state"] for s in sts] == ["pending", "pending", "failure"]
    assert {s["context"] for s in sts} == {"gpu / lite"}
    assert len(sts[0]["description"]) == 140 and sts[0]["description"].endswith("...")
    assert sts[2]["target_url"] == "https://dashboard.example/#/pipelineruns/ns/run-1"
    assert {e["auth"] for e in gh.requests()} == {"pat"}
    assert_well_behaved(gh)
    # Check runs need App credentials: refused up front, with the reason.
    run = drive(gh, [check(condition={})], token_file=token_file)
    assert run.errors and "GitHub App" in run.errors[0]["error"]


def test_rate_limited_then_5xx_then_ok_every_update_lands_once_in_order(gh, keys):
    gh.set_faults([
        {"mode": "secondary_limit", "retry_after": 1, "methods": ["POST"],
         "paths": ["/repos/*/check-runs"]},
        {"mode": "rate_limit", "reset_in": 2, "methods": ["PATCH"],
         "paths": ["/repos/*/check-runs/*"]},
        {"mode": "status", "code": 502, "count": 2, "methods": ["PATCH"]},
    ])
    run = drive(gh, lifecycle())
    assert [r["outcome"] for r in run.results] == ["done"] * 3, run.stdout + run.stderr
    hist = gh.history()
    assert [(h["action"], h["status"]) for h in hist] == [
        ("created", "queued"), ("updated", "in_progress"), ("updated", "completed")]
    log = [e for e in gh.requests() if e["operation"] != "apps/create-installation-access-token"]
    assert [(e["method"], e["status"]) for e in log] == [
        ("POST", 403), ("POST", 201), ("PATCH", 403), ("PATCH", 502), ("PATCH", 502),
        ("PATCH", 200), ("PATCH", 200)]
    # It waited for Retry-After, and for X-RateLimit-Reset without knocking meanwhile.
    assert log[1]["time"] - log[0]["time"] >= 0.95
    assert log[3]["time"] - log[2]["time"] >= 1.0
    assert run.stats["rate_limited"] == 2 and run.stats["retried"] == 2
    assert_well_behaved(gh)


def test_installation_token_expires_during_a_run(gh, keys):
    # A short-lived token: replaced before it runs out, without a 401.
    gh.config(token_ttl=2)
    run = drive(gh, [check(condition={}), wait(), {"op": "sleep", "ms": 2300},
                     check(condition={"status": "Unknown", "reason": "Running"}), wait()])
    assert [r["outcome"] for r in run.results] == ["done", "done"], run.stdout
    assert len(gh.tokens()) == 2 and run.stats["token_fetches"] == 2
    ops = [(e["operation"], e["status"]) for e in gh.requests()]
    assert ops == [("apps/create-installation-access-token", 201), ("checks/create", 201),
                   ("apps/create-installation-access-token", 201), ("checks/update", 200)]
    # A token revoked while cached, in the middle of one process's run: the 401 is
    # followed by a new token and the same update, once.
    gh.reset(tokens=True)
    gh.config(token_ttl=3600)
    proc = subprocess.Popen([driver_bin(), "--api-url", gh.url, "--ca-file", gh.ca_file,
                             "--app-id", str(APP_ID), "--key", keys["private"]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(json.dumps(check(condition={})) + "\n" + json.dumps(wait()) + "\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())
        assert first["outcome"] == "done", first
        assert gh.expire_tokens() == 1
        proc.stdin.write(json.dumps(check(condition={"status": "Unknown", "reason": "Running"}))
                         + "\n" + json.dumps(wait()) + "\n")
        proc.stdin.close()
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    second = json.loads(out.splitlines()[0])
    assert second["outcome"] == "done" and second["check_run_id"] == first["check_run_id"]
    ops = [(e["operation"], e["status"]) for e in gh.requests()]
    assert ops == [("apps/create-installation-access-token", 201), ("checks/create", 201),
                   ("checks/update", 401), ("apps/create-installation-access-token", 201),
                   ("checks/update", 200)], ops
    assert [(h["action"], h["status"]) for h in gh.history()] == [
        ("created", "queued"), ("updated", "in_progress")]


def test_restart_between_two_updates_continues_the_same_check_run(gh, keys):
    first = drive(gh, lifecycle()[:2])
    cid = first.results[0]["check_run_id"]
    assert cid > 0
    second = drive(gh, [check(condition={"status": "Unknown", "reason": "Running"},
                              check_run_id=cid, started_ms=T0), wait(),
                        check(condition={"status": "True", "reason": "Succeeded"},
                              check_run_id=cid, started_ms=T0, completed_ms=T0 + 5000),
                        wait()])
    assert [r["check_run_id"] for r in second.results] == [cid, cid]
    assert len(gh.check_runs()) == 1
    hist = gh.history()
    assert [h["action"] for h in hist] == ["created", "updated", "updated"]
    assert {h["check_run_id"] for h in hist} == {cid}


def test_lost_create_answer_is_looked_up_not_duplicated(gh, keys):
    gh.set_faults([{"mode": "perform_then_fail", "then": "drop", "methods": ["POST"],
                    "paths": ["/repos/*/check-runs"]}])
    run = drive(gh, lifecycle()[:4])
    assert [r["outcome"] for r in run.results] == ["done", "done"], run.stdout
    assert len(gh.check_runs()) == 1
    ops = [e["operation"] for e in gh.requests()][1:]
    assert ops == ["checks/create", "checks/list-for-ref", "checks/update", "checks/update"]


def test_newer_update_replaces_a_queued_older_one(gh, keys):
    gh.set_faults([{"mode": "delay", "seconds": 1, "methods": ["POST"]}])
    script = lifecycle()
    # queued is being sent (held 1 s by the stand-in) when the next two come in.
    run = drive(gh, [script[0], {"op": "sleep", "ms": 400}, script[2], script[4], wait()])
    assert [(r["what"], r["outcome"]) for r in run.results] == [
        ("in_progress", "superseded"), ("queued", "done"), ("success", "done")], run.stdout
    assert [(h["action"], h["status"]) for h in gh.history()] == [
        ("created", "queued"), ("updated", "completed")]
    assert run.stats["superseded"] == 1
    # All three before the client takes the first: only the newest is sent, as a create.
    gh.reset()
    run = drive(gh, [check("ns/run-2", condition={}),
                     check("ns/run-2", condition={"status": "Unknown", "reason": "Running"}),
                     check("ns/run-2", condition={"status": "True", "reason": "Succeeded"}),
                     wait("ns/run-2")])
    # However the client's thread interleaves with the submits, what is sent keeps their
    # order and ends with the newest; the rest are reported superseded.
    order = ["queued", "in_progress", "success"]
    sent = [r["what"] for r in run.results if r["outcome"] == "done"]
    dropped = [r["what"] for r in run.results if r["outcome"] == "superseded"]
    assert sent[-1] == "success" and sent == sorted(sent, key=order.index), run.stdout
    assert sorted(sent + dropped, key=order.index) == order
    hist = gh.history()
    assert [h["status"] for h in hist] == [
        {"success": "completed"}.get(w, w) for w in sent]
    assert hist[0]["action"] == "created" and len(gh.check_runs()) == 1


def test_many_runs_share_one_connection_in_order_without_spinning(gh, keys):
    # Six runs, one connection, every answer held 0.2 s: while they wait for the connection
    # the client sleeps (its CPU time stays small), and each run's updates land in order.
    gh.set_faults([{"mode": "delay", "seconds": 0.2, "count": -1, "paths": ["/repos/*"]}])
    runs = ["ns/par-%d" % i for i in range(6)]
    script = [check(r, condition={}) for r in runs] + [{"op": "wait_all"}]
    script += [check(r, condition={"status": "True", "reason": "Succeeded"}) for r in runs]
    script.append({"op": "wait_all"})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    run = drive(gh, script, level="info", extra=["--conns", "1"])
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert [r["outcome"] for r in run.results] == ["done"] * 12, run.stdout
    ids = {c["external_id"]: c["id"] for c in gh.check_runs()}
    assert sorted(ids) == runs
    for r in runs:
        assert [(h["action"], h["status"]) for h in gh.history(check_run_id=ids[r])] == [
            ("created", "queued"), ("updated", "completed")]
    assert wall >= 2.4  # twelve requests, one at a time, 0.2 s each
    assert cpu < wall / 4, "the client spun: %.2f s CPU in %.2f s" % (cpu, wall)


def test_gives_up_on_other_4xx_with_a_log_line_and_no_retry(gh, keys):
    run = drive(gh, [check(condition={"status": "Unknown", "reason": "Running"},
                           check_run_id=987654321), wait()])
    [r] = run.results
    assert r["outcome"] == "gave_up" and r["http_status"] == 404 and r["attempts"] == 1
    assert run.stats["gave_up"] == 1
    ops = [e["operation"] for e in gh.requests()]
    assert ops == ["apps/create-installation-access-token", "checks/update"]
    lines = [json.loads(l) for l in run.stderr.splitlines() if l.startswith("{")]
    refused = [l for l in lines if l["msg"] == "github update refused, given up"]
    assert refused and refused[0]["status"] == 404 and refused[0]["run"] == "ns/run-1"


def test_queue_full_is_a_clear_error(gh, keys):
    gh.set_faults([{"mode": "delay", "seconds": 1, "methods": ["POST"]}])
    run = drive(gh, [check("ns/a", condition={}), check("ns/b", condition={})],
                extra=["--queue-max", "1"])
    assert len(run.errors) == 1 and "queue full" in run.errors[0]["error"]
    assert run.stats["queue_full"] == 1 and len(run.results) == 1


def test_no_secret_material_in_any_log_line(gh, keys, token_file):
    gh.set_faults([{"mode": "status", "code": 502, "count": 1}])
    runs = [drive(gh, lifecycle(), level="debug")]
    gh.expire_tokens()
    runs.append(drive(gh, lifecycle("ns/run-2"), level="debug"))
    runs.append(drive(gh, [status(condition={}), wait()], token_file=token_file,
                      level="debug"))
    with open(keys["private"]) as f:
        key_lines = [l.strip() for l in f if l.strip() and not l.startswith("-----")]
    text = "".join(r.stderr + r.stdout for r in runs)
    assert '"level":"debug"' in text  # the debug lines were written
    assert PAT not in text
    assert "ghs_" not in text  # the stand-in's installation tokens
    assert "eyJ" not in text   # any JWT's header
    assert "Bearer" not in text and "Authorization" not in text
    for l in key_lines:
        assert l not in text


def test_github_enterprise_server_api_url(tmp_path, keys):
    """GHES serves the API under https://HOST/api/v3, checked against GHES 3.19's description."""
    tls = str(tmp_path / "tls")
    os.makedirs(tls)
    make_tls(tls)
    srv = FakeGitHub(str(tmp_path / "ghes"), prefix="/api/v3", tls_dir=tls, app_id=APP_ID,
                     app_public_key=keys["public"],
                     installations=[{"id": INSTALLATION, "account": OWNER}])
    try:
        srv.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        srv.app_keys = keys
        assert srv.url.endswith("/api/v3")
        run = drive(srv, lifecycle())
        assert [r["outcome"] for r in run.results] == ["done"] * 3, run.stdout
        assert [h["status"] for h in srv.history()] == ["queued", "in_progress", "completed"]
        assert all(e["path"].startswith("/api/v3/") for e in srv.requests())
        assert_well_behaved(srv)
    finally:
        srv.stop()
