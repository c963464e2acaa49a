"""GPU-aware selection (issue 6) end to end: the real server with a fake GPU source."""
import json
import os
import time

import pytest

from harness import GpuHook, fixture

FAKE = os.environ.get("GPUHOOK_FAKEGPU_BIN") or os.path.join(
    os.path.dirname(os.environ.get("GPUHOOK_BIN", "build/gpuhook")), "tests", "gpuhook_fakegpu")


def main_push():
    p = json.loads(fixture("push_with-new-branch.json"))
    p["ref"] = "refs/heads/main"
    return json.dumps(p).encode()


def hook(free, policy="downgrade", required=False):
    g = GpuHook(binary=FAKE, env={"GPUHOOK_FAKE_FREE_MIB": str(free)})
    g.config["selection"]["gpu_fit"] = {"lite_min_free_mib": 2048, "original_min_free_mib": 8192,
                                        "on_insufficient": policy}
    g.config["gpu"]["required"] = required
    return g


@pytest.mark.parametrize("free,policy,required,status,variant", [
    (16000, "downgrade", False, 201, "original"),
    (5000, "downgrade", False, 201, "lite"),
    (5000, "reject", False, 503, None),
    (1000, "downgrade", False, 503, None),
    (1000, "ignore", False, 201, "original"),
    ("none", "downgrade", False, 201, "original"),
    ("none", "downgrade", True, 503, None),
])
def test_fit_policy_through_a_delivery(free, policy, required, status, variant):
    with hook(free, policy, required) as g:
        r = g.deliver("push", main_push())
        assert r.status == status, r.body
        if status == 503:
            assert r.json["error"] == "insufficient GPU memory"
            assert r.json["reason"]
            assert g.runs() == {}
            return
        assert r.json["variant"] == variant
        obj = g.runs()[r.json["pipelinerun"]]
        assert obj["spec"]["pipelineRef"]["name"] == "gpu-real-8-step-workflow-" + variant
        reason = obj["metadata"]["annotations"]["gpuhook.dev/reason"]
        if free == 5000:
            assert "5000" in reason and "8192" in reason, reason
        if free == "none":
            assert "MiB" not in reason


def test_gpu_endpoint_reports_fit_from_the_snapshot():
    with hook(5000) as g:
        r = g.request("GET", "/gpu")
        assert r.status == 200, r.body
        b = r.json
        assert b["status"] == "degraded" and b["device_count"] == 1
        assert b["fit"]["lite"] == {"need_mib": 2048, "fits": True}
        assert b["fit"]["original"] == {"need_mib": 8192, "fits": False}
        assert b["fit"]["recommended"] == "lite"
        v = g.request("GET", "/gpu?verbose").json
        assert v["devices"][0]["memory"]["free_mib"] == 5000
        m = g.metrics()
        assert "gpuhook_gpu_up 1" in m
        assert 'gpuhook_gpu_memory_free_bytes{uuid="GPU-00000000-0000-0000-0000-000000000000"} 5242880000' in m


def test_readyz_depends_on_gpu_only_when_required():
    with hook("none", required=False) as g:
        assert g.request("GET", "/readyz").status == 200
        assert g.request("GET", "/gpu").status == 503
        assert g.request("GET", "/healthz").status == 200
    with hook("none", required=True) as g:
        r = g.request("GET", "/readyz")
        assert r.status == 503 and r.json["checks"]["gpu"]["ok"] is False


def test_real_binary_without_driver_serves_everything_but_gpu():
    with GpuHook() as g:
        assert g.request("GET", "/healthz").status == 200
        for _ in range(50):
            r = g.request("GET", "/gpu")
            if "starting" not in r.json["reasons"]:
                break
            time.sleep(0.1)
        assert r.status == 503
        assert r.json["status"] == "unavailable"
        assert set(r.json["reasons"]) & {"no_driver", "built_without_cuda"}, r.json
