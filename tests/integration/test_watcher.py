"""The shared watcher (server/watcher.c) against the stand-in API server, through its
driver tests/watcher/watcher_main.c: list and watch of gpuhook's PipelineRuns (events in
order, a re-list after 410 with missed deletes, a restart of the API), merge patches with
a resourceVersion precondition, and Lease leader election between two drivers (kill -9,
SIGTERM, a flapping API with no two leaders at once).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))

from fake_apiserver import (FakeApiServer, make_tls, sample_pipelinerun,  # noqa: E402
                            write_serviceaccount, write_token)

NS = "tekton-pipelines"
TOKEN = "watcher-token"
SANITIZED = os.environ.get("GPUHOOK_SANITIZED", "0").lower() in ("1", "on", "true", "yes")
SLOW = 3.0 if SANITIZED else 1.0
DURATION_MS = 3000  # the Lease: renew deadline 2 s, retry period 400 ms (client-go's ratios)
RETRY_MS = DURATION_MS * 2 // 15


def driver_bin():
    env = os.environ.get("GPUHOOK_WATCHER_BIN")
    if env:
        return env
    fake = os.environ.get("GPUHOOK_FAKEGPU_BIN")
    assert fake, "GPUHOOK_FAKEGPU_BIN (or GPUHOOK_WATCHER_BIN) must be set: run through ctest"
    path = os.path.join(os.path.dirname(fake), "gpuhook_watcher")
    assert os.path.exists(path), "build the gpuhook_watcher target first: " + path
    return path


class Driver:
    """One gpuhook_watcher process; its stdout lines are collected as dicts."""

    def __init__(self, srv, tmp, name, lease=None, identity=None, in_cluster=None):
        self.lines = []
        self.cond = threading.Condition()
        env = dict(os.environ)
        env.pop("POD_NAME", None)
        if in_cluster:
            args = [driver_bin(), "--in-cluster", "1", "--watch-timeout", "20"]
            env.update({"GPUHOOK_SERVICEACCOUNT_DIR": in_cluster,
                        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                        "KUBERNETES_SERVICE_PORT": str(srv.port), "POD_NAME": "gpuhook-0"})
        else:
            args = [driver_bin(), "--url", srv.url, "--token-file", srv.token_path,
                    "--ca-file", srv.ca_file, "--namespace", NS, "--watch-timeout", "20"]
        if lease:
            args += ["--lease", lease, "--duration-ms", str(DURATION_MS)]
        if identity:
            args += ["--identity", identity]
        self.stderr_path = os.path.join(tmp, name + ".stderr")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.identity = self.wait(lambda l: l.get("started"))["identity"]

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def wait(self, pred, timeout=10.0, after=0):
        """The first line (from index after) that satisfies pred."""
        deadline = time.monotonic() + timeout * SLOW
        with self.cond:
            while True:
                for line in self.lines[after:]:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError("no such line; got:\n" +
                                         "\n".join(json.dumps(x) for x in self.lines[-40:]))
                self.cond.wait(left)

    def events(self, name):
        return [x for x in self.snapshot() if x.get("name") == name]

    def leader(self):
        state = None
        for x in self.snapshot():
            if "leader" in x:
                state = x["leader"]
        return bool(state)

    def patch(self, name, body):
        self.proc.stdin.write("PATCH %s %s\n" % (name, json.dumps(body)))
        self.proc.stdin.flush()

    def intervals(self, end_ms):
        """Leadership as [(start_ms, end_ms)], an open interval ending at end_ms."""
        out, start = [], None
        for x in self.snapshot():
            if x.get("leader") is True:
                start = x["t"]
            elif x.get("leader") is False and start is not None:
                out.append((start, x["t"]))
                start = None
        if start is not None:
            out.append((start, end_ms))
        return out

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    tls = str(tmp_path_factory.mktemp("tls"))
    make_tls(tls)
    token_file = str(tmp_path_factory.mktemp("sa") / "token")
    write_token(token_file, TOKEN)
    srv = FakeApiServer(str(tmp_path_factory.mktemp("state")), tls_dir=tls,
                        token_file=token_file)
    srv.token_path = token_file
    srv.bookmark_seconds = 0.5
    srv.tekton_controller = "off"
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(api_server):
    if not api_server.running:
        api_server.start()
    api_server.reset()
    api_server.watch_config(history=1000, bookmark_seconds=0.5)
    return api_server


@pytest.fixture
def drivers(tmp_path):
    made = []

    def make(srv, name="w", **kw):
        d = Driver(srv, str(tmp_path), name, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        # SIGTERM: the clean stop (release, every patch answered, leak check under ASan).
        alive = d.proc.poll() is None
        rc = d.stop(signal.SIGTERM)
        assert not alive or rc == 0, "the driver's clean stop failed: %s" % rc
        with open(d.stderr_path) as f:
            log = f.read()
        assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log
        assert TOKEN not in log, "the token leaked into the log"


def run(srv, name, managed=True):
    obj = sample_pipelinerun(name=name, namespace=NS)
    labels = obj["metadata"].setdefault("labels", {})
    if managed:
        labels["app.kubernetes.io/managed-by"] = "gpuhook"
    else:
        labels.pop("app.kubernetes.io/managed-by", None)
    return srv.put_object(obj)


def reasons(d, name):
    return [(x["type"], x["reason"]) for x in d.events(name)]


def test_events_arrive_in_order_and_only_gpuhooks(api, drivers):
    run(api, "before")
    d = drivers(api)
    d.wait(lambda x: x.get("type") == "RESYNCED")
    assert reasons(d, "before") == [("ADDED", None)]
    run(api, "other", managed=False)
    run(api, "r1")
    d.wait(lambda x: x.get("name") == "r1")
    api.set_run_status("r1", "Running")
    d.wait(lambda x: x.get("name") == "r1" and x["reason"] == "Running")
    api.set_run_status("r1", "Succeeded")
    d.wait(lambda x: x.get("name") == "r1" and x["reason"] == "Succeeded")
    api.delete_object("tekton.dev/v1", "PipelineRun", "before", NS)
    d.wait(lambda x: x.get("name") == "before" and x["type"] == "DELETED")
    assert reasons(d, "r1") == [("ADDED", None), ("MODIFIED", "Running"),
                                ("MODIFIED", "Succeeded")]
    assert d.events("other") == [], "a run without gpuhook's label was reported"
    assert [x["type"] for x in d.snapshot() if x.get("type") == "RESYNCED"] == ["RESYNCED"]


def test_410_relists_with_nothing_lost_and_missed_deletes(api, drivers):
    for n in ("k1", "k2", "k3"):
        run(api, n)
    d = drivers(api)
    d.wait(lambda x: x.get("type") == "RESYNCED")
    # Keep the watcher away while the cluster changes and its history is compacted.
    api.set_faults([{"mode": "status", "code": 503, "count": -1,
                     "paths": ["/apis/tekton.dev/v1/namespaces/*/pipelineruns"]}])
    api.close_watches(drop=True)
    mark = len(d.snapshot())
    api.delete_object("tekton.dev/v1", "PipelineRun", "k1", NS)
    api.set_run_status("k2", "Running")
    run(api, "k4")
    api.compact()
    time.sleep(1.0)
    assert not [x for x in d.snapshot()[mark:] if x.get("name")], \
        "events arrived while the API refused every watch"
    api.clear_faults()
    d.wait(lambda x: x.get("type") == "RESYNCED", timeout=20, after=mark)
    assert reasons(d, "k1")[-1] == ("DELETED", None), "the missed delete was not reported"
    assert reasons(d, "k2")[-1] == ("MODIFIED", "Running")
    assert reasons(d, "k4") == [("ADDED", None)]
    assert reasons(d, "k3") == [("ADDED", None)], "an unchanged run was reported again"
    with open(d.stderr_path) as f:
        assert "410" in f.read(), "the re-list did not come from a 410"
    # And the watch goes on after the re-list.
    run(api, "k5")
    d.wait(lambda x: x.get("name") == "k5")
    assert d.stop() == 0
    stats = d.snapshot()[-1]
    assert stats["stopped"] and stats["relists_410"] >= 1 and stats["lists"] == 2, stats


def test_api_restart_resumes_without_loss(api, drivers):
    run(api, "s1")
    d = drivers(api)
    d.wait(lambda x: x.get("name") == "s1")
    api.restart(down_seconds=1.0)
    api.watch_config(history=1000, bookmark_seconds=0.5)
    run(api, "s2")
    api.set_run_status("s1", "Running")
    d.wait(lambda x: x.get("name") == "s2", timeout=20)
    d.wait(lambda x: x.get("name") == "s1" and x["reason"] == "Running", timeout=20)
    assert reasons(d, "s2") == [("ADDED", None)]
    assert [t for t, _ in reasons(d, "s1")].count("ADDED") == 1


def test_patch_precondition_409_and_applied(api, drivers):
    run(api, "p1")
    d = drivers(api)
    d.wait(lambda x: x.get("name") == "p1")
    rv = api.run("p1")["metadata"]["resourceVersion"]
    api.set_run_status("p1", "Running")  # rv is now stale
    d.patch("p1", {"metadata": {"resourceVersion": rv, "annotations": {"gpuhook.dev/x": "old"}}})
    ans = d.wait(lambda x: x.get("patch") == "p1")
    assert ans["status"] == 409 and ans.get("reason") == "Conflict", ans
    assert "gpuhook.dev/x" not in (api.run("p1")["metadata"].get("annotations") or {})
    fresh = api.run("p1")["metadata"]["resourceVersion"]
    n = len(d.snapshot())
    d.patch("p1", {"metadata": {"resourceVersion": fresh,
                                "annotations": {"gpuhook.dev/x": "new"}}})
    ans = d.wait(lambda x: x.get("patch") == "p1", after=n)
    assert ans["status"] == 200, ans
    assert api.run("p1")["metadata"]["annotations"]["gpuhook.dev/x"] == "new"
    assert ans["rv"] == api.run("p1")["metadata"]["resourceVersion"]
    d.wait(lambda x: x.get("name") == "p1" and x["rv"] == ans["rv"])
    n = len(d.snapshot())
    d.patch("nosuchrun", {"metadata": {"annotations": {"a": "b"}}})
    assert d.wait(lambda x: x.get("patch") == "nosuchrun", after=n)["status"] == 404


def test_in_cluster_service_account_and_token_rotation(api, drivers, tmp_path):
    sa = write_serviceaccount(str(tmp_path / "sa"), TOKEN, ca_file=api.ca_file, namespace=NS)
    run(api, "ic1")
    d = drivers(api, "ic", lease="gpuhook-scheduler", in_cluster=sa)
    assert d.identity.startswith("gpuhook-0-") and len(d.identity) == len("gpuhook-0-") + 8
    d.wait(lambda x: x.get("name") == "ic1")
    d.wait(lambda x: x.get("leader") is True)
    lease = api.objects_of("coordination.k8s.io/v1", "Lease", NS)[0]
    assert lease["spec"]["holderIdentity"] == d.identity
    # The kubelet rotates the token: the server takes only the new one from now on.
    write_token(os.path.join(sa, "token"), "rotated-token")
    write_token(api.token_path, "rotated-token")
    try:
        api.close_watches()
        time.sleep(0.5)
        run(api, "ic2")
        # Well below kube.c's 10 s token check: the 401 itself makes it re-read the file.
        d.wait(lambda x: x.get("name") == "ic2", timeout=5)
        n = len(d.snapshot())
        d.patch("ic2", {"metadata": {"annotations": {"gpuhook.dev/rotated": "yes"}}})
        assert d.wait(lambda x: x.get("patch") == "ic2", after=n)["status"] == 200
    finally:
        write_token(api.token_path, TOKEN)


def wait_one_leader(ds, timeout=10.0):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        leaders = [d for d in ds if d.leader()]
        if leaders:
            time.sleep(RETRY_MS * 3 / 1000)
            leaders = [d for d in ds if d.leader()]
            assert len(leaders) == 1, "two leaders at once"
            return leaders[0]
        time.sleep(0.05)
    raise AssertionError("nobody leads")


def assert_no_overlap(ds):
    now = time.time() * 1000
    spans = sorted((s, e, d.identity) for d in ds for s, e in d.intervals(now))
    for (s1, e1, i1), (s2, e2, i2) in zip(spans, spans[1:]):
        assert e1 <= s2, "%s led until %d but %s led from %d" % (i1, e1, i2, s2)


def test_two_replicas_kill9_takeover(api, drivers):
    a = drivers(api, "a", lease="gpuhook-scheduler")
    b = drivers(api, "b", lease="gpuhook-scheduler")
    leader = wait_one_leader([a, b])
    other = b if leader is a else a
    mark = len(other.snapshot())
    leader.proc.kill()
    t0 = time.monotonic()
    other.wait(lambda x: x.get("leader") is True, timeout=4 * DURATION_MS / 1000, after=mark)
    took = time.monotonic() - t0
    # docs/scheduling.md: up to about 2x the lease duration after the last renewal.
    print("kill -9 takeover: %.2f s" % took)
    assert took <= 2 * DURATION_MS / 1000 * SLOW + 0.5, took
    lease = api.objects_of("coordination.k8s.io/v1", "Lease", NS)[0]
    assert lease["spec"]["holderIdentity"] == other.identity
    assert lease["spec"]["leaseTransitions"] >= 1


def test_sigterm_releases_and_the_other_leads_soon(api, drivers):
    a = drivers(api, "a", lease="gpuhook-scheduler")
    b = drivers(api, "b", lease="gpuhook-scheduler")
    leader = wait_one_leader([a, b])
    other = b if leader is a else a
    mark = len(other.snapshot())
    t0 = time.monotonic()
    assert leader.stop(signal.SIGTERM) == 0
    assert leader.snapshot()[-1].get("stopped")
    assert leader.snapshot()[-2].get("leader") is False
    other.wait(lambda x: x.get("leader") is True, timeout=DURATION_MS / 1000, after=mark)
    took = time.monotonic() - t0
    print("SIGTERM takeover: %.2f s" % took)
    assert took <= (2 * RETRY_MS / 1000 + 0.3) * SLOW, took
    assert_no_overlap([a, b])


def test_sigterm_while_a_renewal_is_in_flight_releases_the_renewed_lease(api, drivers):
    """The race the release's 409 path is for: a renewal lands on the server but its answer
    is still on the way when SIGTERM comes. The leader gives the write up as failed, so its
    release PUT carries the old resourceVersion and gets 409; it must read the Lease again
    and release the version it renewed, or the other replica waits out the whole lease."""
    a = drivers(api, "a", lease="gpuhook-scheduler")
    b = drivers(api, "b", lease="gpuhook-scheduler")
    leader = wait_one_leader([a, b])
    other = b if leader is a else a
    api.set_faults([{"mode": "create_then_fail", "then": "delay:5", "count": 1,
                     "methods": ["PUT"],
                     "paths": ["/apis/coordination.k8s.io/v1/namespaces/*/leases/*"]}])
    deadline = time.monotonic() + 5 * SLOW
    while api.faults()[0]["applied"] < 1:
        assert time.monotonic() < deadline, "the leader never renewed"
        time.sleep(0.01)
    time.sleep(0.1)  # the renewal is stored; its answer waits in the stand-in
    mark = len(other.snapshot())
    t0 = time.monotonic()
    assert leader.stop(signal.SIGTERM) == 0
    other.wait(lambda x: x.get("leader") is True, timeout=DURATION_MS / 1000, after=mark)
    took = time.monotonic() - t0
    print("SIGTERM with a renewal in flight, takeover: %.2f s" % took)
    assert took <= (2 * RETRY_MS / 1000 + 0.3) * SLOW, took
    with open(leader.stderr_path) as f:
        log = f.read()
    assert "released the lease gpuhook-scheduler: 409" in log, log[-2000:]
    assert "released the lease gpuhook-scheduler: 200" in log, log[-2000:]
    api.clear_faults()
    assert_no_overlap([a, b])


def test_flapping_api_loses_nothing_and_never_two_leaders(api, drivers):
    a = drivers(api, "a", lease="gpuhook-scheduler")
    b = drivers(api, "b", lease="gpuhook-scheduler")
    wait_one_leader([a, b])
    api.set_faults([{"mode": "alternate", "count": -1, "paths": ["/apis/*"],
                     "modes": ["pass", "503", "pass", "drop", "pass", "reset", "delay:1.5"]}])
    for i in range(8):
        run(api, "f%d" % i)
        if i % 2:
            api.set_run_status("f%d" % (i - 1), "Running")
        if i == 4:
            api.close_watches(drop=True)
        time.sleep(0.4)
    api.delete_object("tekton.dev/v1", "PipelineRun", "f7", NS)
    time.sleep(2.0)
    applied = sum(r.get("applied", 0) for r in api.faults())
    assert applied >= 10, "the API hardly flapped: %d faulted requests" % applied
    api.clear_faults()
    final = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in api.objects(NS)}
    assert len(final) == 7
    for d in (a, b):
        for name, rv in final.items():
            d.wait(lambda x, n=name, r=rv: x.get("name") == n and x["rv"] == r, timeout=30)
        d.wait(lambda x: x.get("name") == "f7" and x["type"] == "DELETED", timeout=30)
        for i in range(1, 7, 2):
            assert ("MODIFIED", "Running") in reasons(d, "f%d" % (i - 1))
    wait_one_leader([a, b], timeout=3 * DURATION_MS / 1000)
    assert_no_overlap([a, b])
