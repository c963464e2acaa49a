"""The cluster GPU view (issue 19) end to end: the real binary in agent mode on a fake GPU,
several of them on loopback, each with its own node name, found through EndpointSlices in the
stand-in API; the real server lists them, polls them, fits each run against the cluster and
renders the placement."""
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from harness import wait_for as harness_wait_for, GpuHook, fixture
from fake_apiserver import FakeApiServer
from kube_client import sample_endpointslice, sample_node, sample_pod

FAKE = os.environ.get("GPUHOOK_FAKEGPU_BIN") or os.path.join(
    os.path.dirname(os.environ.get("GPUHOOK_BIN", "build/gpuhook")), "tests", "gpuhook_fakegpu")
BIN = os.environ.get("GPUHOOK_BIN", "build/gpuhook")
NS = "tekton-pipelines"
SERVICE = "gpuhook-agent"


class Agent:
    """`gpuhook_fakegpu agent`: `gpuhook agent` on one fake device with free_mib free."""

    def __init__(self, node, free_mib, procs=0, binary=FAKE):
        self.node = node
        self.log = tempfile.NamedTemporaryFile(prefix="gpuhook-agent-", delete=False)
        env = dict(os.environ, GPUHOOK_FAKE_FREE_MIB=str(free_mib),
                   GPUHOOK_FAKE_COMPUTE_PROCS=str(procs), NODE_NAME=node)
        self.proc = subprocess.Popen([binary, "agent", "--listen", "127.0.0.1:0"],
                                     stdout=self.log, stderr=self.log, env=env)
        self.port = None
        deadline = time.time() + 15
        while time.time() < deadline and self.port is None:
            with open(self.log.name) as f:
                for line in f:
                    try:
                        j = json.loads(line)
                    except ValueError:
                        continue
                    if j.get("msg") == "agent listening":
                        self.port = int(j["port"])
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited: " + open(self.log.name).read())
            time.sleep(0.05)
        assert self.port, open(self.log.name).read()

    def get(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path),
                                        timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def slice(self):
        return sample_endpointslice(SERVICE + "-" + self.node, SERVICE, ["127.0.0.1"],
                                    port=self.port, node_names=[self.node])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        os.unlink(self.log.name)


def main_push(n=0):
    p = json.loads(fixture("push_with-new-branch.json"))
    p["ref"] = "refs/heads/main"
    p["after"] = "%040x" % (n + 1)
    return json.dumps(p).encode()


def server(api, nodes=False, service=SERVICE):
    g = GpuHook(binary=BIN)
    g.config["kubernetes"] = {"mode": "url", "url": api.url, "namespace": NS,
                              "timeout_seconds": 3}
    g.config["selection"]["gpu_fit"] = {"lite_min_free_mib": 2048, "original_min_free_mib": 8192,
                                        "on_insufficient": "downgrade"}
    g.config["cluster_gpu"] = {"service": service, "poll_seconds": 1, "nodes": nodes}
    return g


def wait_for(pred, timeout=15):
    return harness_wait_for(pred, timeout, slow=False)


def node_states(g):
    r = g.request("GET", "/gpu")
    if r.status != 200 or r.json.get("view") != "cluster":
        return {}
    return {n["name"]: (n.get("agent") or {}).get("state") for n in r.json["nodes"]}


def preferred_hosts(run):
    aff = run["spec"]["taskRunTemplate"]["podTemplate"]["affinity"]["nodeAffinity"]
    return [v for t in aff["preferredDuringSchedulingIgnoredDuringExecution"]
            for e in t["preference"]["matchExpressions"] for v in e["values"]]


@pytest.fixture
def api(tmp_path):
    a = FakeApiServer(str(tmp_path / "api")).start()
    yield a
    a.stop()


def test_agent_serves_only_gpu_and_healthz_with_its_node():
    a = Agent("gpu-x", 12000, procs=2)
    try:
        st, body = a.get("/gpu")
        assert st == 200, body
        b = json.loads(body)
        assert b["node"] == "gpu-x"
        assert b["devices"][0]["compute_processes"] == 2
        assert b["devices"][0]["memory"]["free_mib"] == 12000 or "12000" in body.decode()
        assert a.get("/healthz")[0] == 200
        assert a.get("/webhook")[0] == 404
        assert a.get("/metrics")[0] == 404
    finally:
        a.stop()


def test_agent_refuses_to_start_without_a_node_name():
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    p = subprocess.run([BIN, "agent", "--listen", "127.0.0.1:0"], env=env,
                       capture_output=True, timeout=10)
    assert p.returncode == 2
    assert b"NODE_NAME" in p.stderr


def test_fit_picks_the_node_with_room_and_a_stale_agent_is_excluded(api):
    small, big = Agent("gpu-a", 5000), Agent("gpu-b", 16000)
    try:
        api.put_object(small.slice())
        api.put_object(big.slice())
        with server(api) as g:
            assert wait_for(lambda: node_states(g) == {"gpu-a": "fresh", "gpu-b": "fresh"}), \
                g.request("GET", "/gpu").body
            r = g.request("GET", "/gpu?node=gpu-b")
            assert r.status == 200 and [n["name"] for n in r.json["nodes"]] == ["gpu-b"]
            assert r.json["fit"]["original"]["node"] == "gpu-b", r.body
            assert g.request("GET", "/gpu?node=nope").status == 404

            r = g.deliver("push", main_push(0))
            assert r.status == 201, r.body
            assert r.json["variant"] == "original"
            run = api.run(r.json["pipelinerun"])
            reason = run["metadata"]["annotations"]["gpuhook.dev/reason"]
            assert "gpu-b" in reason and "GPU 0" in reason, reason
            assert preferred_hosts(run) == ["gpu-b"]

            # gpu-b stops answering: stale after 3 polls, and out of the fit.
            big.proc.send_signal(signal.SIGSTOP)
            assert wait_for(lambda: node_states(g).get("gpu-b") == "stale", timeout=12), \
                g.request("GET", "/gpu").body
            r = g.deliver("push", main_push(1))
            assert r.status == 201, r.body
            assert r.json["variant"] == "lite"
            run = api.run(r.json["pipelinerun"])
            reason = run["metadata"]["annotations"]["gpuhook.dev/reason"]
            assert "gpu-a" in reason and "stale" in reason, reason
            assert preferred_hosts(run) == ["gpu-a"]
            m = g.metrics()
            assert 'node="gpu-a"' in m
    finally:
        small.stop()
        big.stop()


def test_gfd_only_with_node_objects(api):
    api.put_object(sample_node("gpu-small", gpu_memory_mib=4096, product="NVIDIA-T4"))
    api.put_object(sample_node("gpu-big", gpu_memory_mib=143771))
    with server(api, nodes=True) as g:
        assert wait_for(lambda: set(node_states(g)) == {"gpu-small", "gpu-big"}), \
            g.request("GET", "/gpu").body
        r = g.deliver("push", main_push(2))
        assert r.status == 201, r.body
        assert r.json["variant"] == "original"
        run = api.run(r.json["pipelinerun"])
        assert "gpu-big" in run["metadata"]["annotations"]["gpuhook.dev/reason"]
        aff = run["spec"]["taskRunTemplate"]["podTemplate"]["affinity"]["nodeAffinity"]
        req = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert req[0]["matchExpressions"][0] == {"key": "nvidia.com/gpu.memory",
                                                 "operator": "Gt", "values": ["8191"]}
        assert preferred_hosts(run) == ["gpu-big"]


def test_no_agents_and_no_nodes_keeps_the_local_view(api):
    with server(api) as g:
        time.sleep(1.5)
        r = g.request("GET", "/gpu")
        assert r.json.get("view") != "cluster", r.body
        r = g.deliver("push", main_push(3))
        assert r.status == 201, r.body
        run = api.run(r.json["pipelinerun"])
        assert "affinity" not in json.dumps(run["spec"])


def node_figures(g):
    """{node: (allocatable, requested, unallocated, source)} and the pods block of GET /gpu."""
    r = g.request("GET", "/gpu")
    if r.status != 200 or r.json.get("view") != "cluster":
        return {}, {}
    return ({n["name"]: (n.get("allocatable_gpus"), n.get("requested_gpus"),
                         n.get("unallocated_gpus"), n.get("unallocated_source"))
             for n in r.json["nodes"]}, r.json.get("pods") or {})


def run_reason(api, r):
    assert r.status == 201, r.body
    run = api.run(r.json["pipelinerun"])
    return run, run["metadata"]["annotations"]["gpuhook.dev/reason"]


def test_gfd_fit_counts_gpus_that_pods_request(api):
    api.put_object(sample_node("gpu-a", gpu_memory_mib=143771))
    api.put_object(sample_node("gpu-b", gpu_memory_mib=143771))
    api.put_object(sample_pod("train-a", node="gpu-a"))
    api.put_object(sample_pod("waiting", node=None, phase="Pending"))  # not bound: holds nothing
    with server(api, nodes=True) as g:
        assert wait_for(lambda: node_figures(g)[0].get("gpu-a") == (1, 1, 0, "pods")), \
            g.request("GET", "/gpu").body
        figures, pods = node_figures(g)
        assert figures["gpu-b"] == (1, 0, 1, "pods")
        assert pods == {"state": "listed", "error": None, "unallocated_from": "pods"}
        # One list across namespaces, without finished pods, in pages.
        lists = [q for q in api.requests() if q["path"] == "/api/v1/pods"]
        assert lists, api.requests()
        q = urllib.parse.parse_qs(lists[-1]["query"])
        assert q["fieldSelector"] == ["status.phase!=Succeeded,status.phase!=Failed"], q
        assert int(q["limit"][0]) > 0

        run, reason = run_reason(api, g.deliver("push", main_push(10)))
        assert "fits on node gpu-b" in reason and "1 of 1 GPUs unallocated" in reason, reason
        assert "gpu-a: no GPU unallocated (1 allocatable, 1 requested by pods)" in \
            g.request("GET", "/gpu").json["fit"]["original"]["other_nodes"]
        assert preferred_hosts(run) == ["gpu-b"]

        # Both full: original and lite are refused, and the reason says why.
        api.put_object(sample_pod("train-b", node="gpu-b", namespace="other"))
        assert wait_for(lambda: node_figures(g)[0].get("gpu-b") == (1, 1, 0, "pods"))
        r = g.deliver("push", main_push(11))
        assert r.status == 503, r.body
        assert "Rejected original and lite" in r.json["reason"], r.body
        assert "gpu-a: no GPU unallocated" in r.json["reason"], r.body
        assert "gpu-b: no GPU unallocated" in r.json["reason"], r.body

        # gpu-a's pod is done: after a poll gpu-a counts again.
        api.put_object(sample_pod("train-a", node="gpu-a", phase="Succeeded"))
        assert wait_for(lambda: node_figures(g)[0].get("gpu-a") == (1, 0, 1, "pods"))
        run, reason = run_reason(api, g.deliver("push", main_push(12)))
        assert "fits on node gpu-a" in reason, reason
        assert preferred_hosts(run) == ["gpu-a"]
        m = g.metrics()
        assert 'gpuhook_cluster_node_gpus_unallocated{node="gpu-a"} 1' in m
        assert 'gpuhook_cluster_node_gpus_unallocated{node="gpu-b"} 0' in m


def test_init_container_gpus_count_as_the_scheduler_counts_them(api):
    api.put_object(sample_node("gpu-c", gpu_memory_mib=81559, gpu_count=2))
    api.put_object(sample_pod("prep", node="gpu-c", gpus=1, init_gpus=2, phase="Pending"))
    with server(api, nodes=True) as g:
        assert wait_for(lambda: node_figures(g)[0].get("gpu-c") == (2, 2, 0, "pods")), \
            g.request("GET", "/gpu").body


def test_pods_forbidden_falls_back_to_allocatable_and_says_so(api):
    api.put_object(sample_node("gpu-a", gpu_memory_mib=143771))
    api.put_object(sample_pod("train-a", node="gpu-a"))
    api.set_faults([{"mode": "status", "code": 403, "paths": ["/api/v1/pods"],
                     "methods": ["GET"],
                     "message": 'pods is forbidden: User "system:serviceaccount:tekton-pipelines:'
                                'gpuhook" cannot list resource "pods" in API group "" at the '
                                'cluster scope'}])
    with server(api, nodes=True) as g:
        assert wait_for(lambda: node_figures(g)[1].get("state") == "failed"), \
            g.request("GET", "/gpu").body
        figures, pods = node_figures(g)
        assert figures["gpu-a"] == (1, None, 1, "allocatable")
        assert pods["unallocated_from"] == "allocatable"
        assert "403" in pods["error"] and "forbidden" in pods["error"], pods
        # The view still decides, and the reason says the count is allocatable only.
        run, reason = run_reason(api, g.deliver("push", main_push(13)))
        assert "fits on node gpu-a" in reason and "pod requests unknown" in reason, reason
        assert "403" in reason, reason
        assert preferred_hosts(run) == ["gpu-a"]
        # Logged once, not every poll.
        polls = len([q for q in api.requests() if q["path"] == "/api/v1/pods"])
        assert wait_for(lambda: len([q for q in api.requests()
                                     if q["path"] == "/api/v1/pods"]) >= polls + 2)
        said = [l for l in g.log_lines() if "Pod" in l.get("msg", "") and
                l.get("level") == "warn"]
        assert len(said) == 1, said
        # Allowed again: the pods count, and the recovery is logged.
        api.set_faults([])
        assert wait_for(lambda: node_figures(g)[0].get("gpu-a") == (1, 1, 0, "pods"))
        assert node_figures(g)[1]["state"] == "listed"


def test_a_pod_list_longer_than_a_page_is_read_whole(api):
    # 201 pods: two pages of the server's 200, joined by the stand-in's continue token.
    api.put_object(sample_node("gpu-big", gpu_memory_mib=143771, gpu_count=8,
                               allocatable_gpus=256))
    for i in range(201):
        api.put_object(sample_pod("p%03d" % i, node="gpu-big", namespace="ns%d" % (i % 3)))
    with server(api, nodes=True) as g:
        assert wait_for(lambda: node_figures(g)[0].get("gpu-big") == (256, 201, 55, "pods")), \
            g.request("GET", "/gpu").body
        pages = [urllib.parse.parse_qs(q["query"]) for q in api.requests()
                 if q["path"] == "/api/v1/pods"]
        assert any("continue" in q for q in pages), pages
        assert all(q["limit"] == ["200"] for q in pages), pages
