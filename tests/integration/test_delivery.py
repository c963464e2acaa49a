"""Delivery to Kubernetes (issue 5), against the stand-in API server in tests/kubeapi/."""
import json
import os
import shutil
import tempfile
import threading
import time

import pytest

from harness import GpuHook, fixture, metric_value
from fake_apiserver import FakeApiServer, make_tls, write_serviceaccount, write_token

PUSH = fixture("push_with-new-branch.json")


def push(n):
    p = json.loads(PUSH)
    p["after"] = "%040x" % (n + 1)
    return json.dumps(p).encode()


@pytest.fixture
def tls_dir():
    d = tempfile.mkdtemp(prefix="gpuhook-tls-")
    make_tls(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def api_hook(api, token_file=None, ca=None, timeout=3, **extra):
    g = GpuHook()
    k = {"mode": "url", "url": api.url, "namespace": "tekton-pipelines", "timeout_seconds": timeout}
    if token_file:
        k["token_file"] = token_file
    if ca:
        k["ca_file"] = ca
    k.update(extra)
    g.config["kubernetes"] = k
    return g


def wait_for(pred, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_tls_with_ca_and_bearer_token(tls_dir):
    tok = os.path.join(tls_dir, "token")
    write_token(tok, "token-one")
    api = FakeApiServer(tempfile.mkdtemp(), tls_dir=tls_dir, token_file=tok).start()
    try:
        with api_hook(api, token_file=tok, ca=os.path.join(tls_dir, "ca.crt")) as g:
            r = g.deliver("push", PUSH)
            assert r.status == 201, r.body
            objs = api.objects()
            assert [o["metadata"]["name"] for o in objs] == [r.json["pipelinerun"]]
            reqs = [q for q in api.requests() if q["method"] == "POST"]
            assert reqs[-1]["auth"] == "ok" and "fieldValidation=Strict" in reqs[-1]["query"]
            assert g.request("GET", "/readyz").status == 200
            assert metric_value(g.metrics(), 'gpuhook_kube_requests_total{code="201"}') == 1
    finally:
        api.stop()


def test_tls_refuses_an_unknown_ca(tls_dir):
    other = tempfile.mkdtemp()
    make_tls(other)
    api = FakeApiServer(tempfile.mkdtemp(), tls_dir=tls_dir).start()
    try:
        with api_hook(api, ca=os.path.join(other, "ca.crt"), timeout=1) as g:
            r = g.deliver("push", PUSH)
            assert r.status == 202 and r.json["status"] == "queued"
            assert api.objects() == []
            # The spool took it, so the pod stays ready; the API's failure is reported.
            ready = g.request("GET", "/readyz")
            assert ready.status == 200, ready.body
            assert ready.json["checks"]["api"]["ok"] is False
    finally:
        api.stop()


def test_token_rotation_rereads_after_401(tls_dir):
    tok = os.path.join(tls_dir, "token")
    write_token(tok, "token-one")
    api = FakeApiServer(tempfile.mkdtemp(), tls_dir=tls_dir, token_file=tok).start()
    try:
        with api_hook(api, token_file=tok, ca=os.path.join(tls_dir, "ca.crt")) as g:
            assert g.deliver("push", push(1)).status == 201
            write_token(tok, "token-two")  # the API and the file rotate together
            r = g.deliver("push", push(2))
            assert r.status == 201, r.body
            auths = [q["auth"] for q in api.requests() if q["method"] == "POST"]
            assert auths == ["ok", "wrong", "ok"]
            assert len(api.objects()) == 2
    finally:
        api.stop()


def test_503s_and_429s_then_success_give_one_object():
    api = FakeApiServer(tempfile.mkdtemp(), faults=[
        {"mode": "status", "code": 503, "count": 2},
        {"mode": "status", "code": 429, "retry_after": 1, "count": 1},
    ]).start()
    try:
        with api_hook(api, timeout=5) as g:
            t0 = time.monotonic()
            r = g.deliver("push", PUSH)
            took = time.monotonic() - t0
            assert r.status == 201, r.body
            assert len(api.objects()) == 1
            posts = [q["status"] for q in api.requests() if q["method"] == "POST"]
            assert posts == [503, 503, 429, 201]
            assert took >= 1.0  # Retry-After was honoured
            assert took < 9.5   # inside GitHub's 10 s
    finally:
        api.stop()


def test_lost_response_then_retry_counts_as_created_once():
    api = FakeApiServer(tempfile.mkdtemp(), faults=[
        {"mode": "create_then_fail", "then": "503", "count": 1}]).start()
    try:
        with api_hook(api, timeout=5) as g:
            r = g.deliver("push", PUSH)
            assert r.status == 200 and r.json["status"] == "exists", r.body
            assert len(api.objects()) == 1
    finally:
        api.stop()


def test_api_down_five_spooled_restart_then_api_back_exactly_five(tmp_path):
    api = FakeApiServer(str(tmp_path / "api")).start()
    port = api.port
    api.kill()
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": "http://127.0.0.1:%d" % port,
                              "timeout_seconds": 1}
    names = set()
    with g:
        for i in range(5):
            r = g.deliver("push", push(i), delivery="down-%d" % i)
            assert r.status == 202 and r.json["status"] == "queued", r.body
            names.add(r.json["pipelinerun"])
        # A redelivery while down spools the same name again: still one file.
        r = g.deliver("push", push(0), delivery="down-0")
        assert r.status == 202
        assert metric_value(g.metrics(), "gpuhook_spool_depth") == 5
        assert g.request("GET", "/readyz").json["checks"]["spool"]["depth"] == 5
    spool = os.path.join(g.tmp, "spool")
    assert sorted(os.listdir(spool)) == sorted([n + ".json" for n in names] + ["failed"])
    api.start(port=port)
    try:
        with g:  # restarted: takes up what the previous process left
            assert wait_for(lambda: len(api.objects()) == 5)
            assert wait_for(lambda: os.listdir(spool) == ["failed"])
            assert {o["metadata"]["name"] for o in api.objects()} == names
            assert wait_for(lambda: metric_value(g.metrics(), "gpuhook_spool_depth") == 0)
            # A redelivery now says exists, and nothing doubles.
            r = g.deliver("push", push(3), delivery="down-3")
            assert r.status == 200 and r.json["status"] == "exists"
        assert len(api.objects()) == 5
    finally:
        api.stop()


def test_sigterm_with_the_api_down_ends_the_spool_attempt_at_once_and_keeps_the_run():
    """A spool attempt retries to its 5 s deadline while the API refuses connections; a
    SIGTERM must not wait that out (the run stays in the spool for the next start)."""
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": "http://127.0.0.1:9", "timeout_seconds": 1}
    with g:
        r = g.deliver("push", push(0), delivery="stop-while-down")
        assert r.status == 202 and r.json["status"] == "queued", r.body
        name = r.json["pipelinerun"]
        # The spool's worker picks the entry up at once and keeps retrying.
        time.sleep(0.5)
        t0 = time.monotonic()
        assert g.stop() == 0
        took = time.monotonic() - t0
    print("SIGTERM with a spool attempt in flight: %.2f s" % took)
    assert took < 2.5, took
    assert name + ".json" in os.listdir(os.path.join(g.tmp, "spool"))


def test_422_goes_to_502_and_spooled_422_goes_to_failed_with_reason(tmp_path):
    api = FakeApiServer(str(tmp_path / "api"), faults=[
        {"mode": "status", "code": 422, "message": "spec.params: Invalid value", "count": 1}]).start()
    try:
        with api_hook(api) as g:
            r = g.deliver("push", PUSH)
            assert r.status == 502
            assert "spec.params: Invalid value" in r.json["error"]
            assert os.listdir(os.path.join(g.tmp, "spool")) == ["failed"]  # nothing spooled
            # The refused run and the API's answer are kept in failed/ (issue 13).
            kept = sorted(os.listdir(os.path.join(g.tmp, "spool", "failed")))
            assert len(kept) == 2 and kept[0].endswith(".error") and kept[1].endswith(".json")
            # A spooled run that later meets a 422 moves to failed/ with the answer.
            obj = json.loads(json.dumps({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                                         "metadata": {"name": "bad-run", "namespace": "tekton-pipelines"},
                                         "spec": {"pipelineRef": {"name": "p"}, "timeouts": "soon"}}))
            with open(os.path.join(g.tmp, "spool", "bad-run.json"), "w") as f:
                json.dump(obj, f)
            failed = os.path.join(g.tmp, "spool", "failed")
            assert wait_for(lambda: os.path.exists(os.path.join(failed, "bad-run.error")))
            assert os.path.exists(os.path.join(failed, "bad-run.json"))
            reason = open(os.path.join(failed, "bad-run.error")).read()
            assert reason.startswith("HTTP 422") or reason.startswith("HTTP 400"), reason
            assert "timeouts" in reason
    finally:
        api.stop()


def test_in_cluster_mode_through_serviceaccount_dir(tls_dir):
    tok = os.path.join(tls_dir, "sa-token")
    write_token(tok, "sa-token-value")
    api = FakeApiServer(tempfile.mkdtemp(), tls_dir=tls_dir, token_file=tok).start()
    sa = write_serviceaccount(tempfile.mkdtemp(), "sa-token-value",
                              ca_file=os.path.join(tls_dir, "ca.crt"), namespace="gpu-ns")
    try:
        g = GpuHook(env={"GPUHOOK_SERVICEACCOUNT_DIR": sa, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                         "KUBERNETES_SERVICE_PORT": str(api.port)})
        g.config["kubernetes"] = {"mode": "in-cluster"}
        with g:
            r = g.deliver("push", PUSH)
            assert r.status == 201, r.body
            assert r.json["namespace"] == "gpu-ns"
            assert api.objects()[0]["metadata"]["namespace"] == "gpu-ns"
            assert g.request("GET", "/readyz").status == 200
        assert "sa-token-value" not in g.log_text()
    finally:
        api.stop()


def test_local_mode_writes_files_and_redelivery_exists():
    with GpuHook() as g:
        r = g.deliver("push", PUSH, delivery="local-1")
        assert r.status == 201
        name = r.json["pipelinerun"]
        path = os.path.join(g.config["kubernetes"]["local_dir"], name + ".json")
        obj = json.load(open(path))
        assert obj["metadata"]["name"] == name and obj["kind"] == "PipelineRun"
        # A fresh process (no LRU) still finds it: the file is the state.
    with g:
        r = g.deliver("push", PUSH, delivery="local-1")
        assert r.status == 200 and r.json["status"] == "exists"
        assert [f for f in os.listdir(g.config["kubernetes"]["local_dir"])] == [name + ".json"]


def test_dry_run_mode_creates_nothing():
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "dry-run"}
    with g:
        r = g.deliver("push", PUSH)
        assert r.status == 200 and r.json["status"] == "dry_run" and r.json["pipelinerun"]
        r2 = g.trigger({"revision": "abc"})
        assert r2.status == 200 and r2.json["status"] == "dry_run"
        assert not os.path.exists(os.path.join(g.tmp, "runs"))


def test_connections_are_reused():
    api = FakeApiServer(tempfile.mkdtemp()).start()
    try:
        with api_hook(api) as g:
            conn = g.connection()
            for i in range(5):
                assert g.deliver("push", push(i), conn=conn).status == 201
            conns = {q["conn"] for q in api.requests() if q["method"] == "POST"}
            assert len(conns) < 5
    finally:
        api.stop()


def test_proxy_variables_are_ignored():
    api = FakeApiServer(tempfile.mkdtemp()).start()
    try:
        g = api_hook(api)
        g.env.update({"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                      "https_proxy": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9"})
        with g:
            assert g.deliver("push", PUSH).status == 201
    finally:
        api.stop()
