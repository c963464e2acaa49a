"""Exactly once (issue 13): a run's identity, the one table of API answers, Retry-After, the
/trigger checks and Idempotency-Key, through the real binary and the stand-in API server."""
import json
import os
import tempfile
import time

import pytest

from harness import WRAPPER, GpuHook, fixture, metric_value
from fake_apiserver import FakeApiServer

PUSH = fixture("push_with-new-branch.json")
FAKE = os.environ.get("GPUHOOK_FAKEGPU_BIN") or os.path.join(
    os.path.dirname(os.environ.get("GPUHOOK_BIN", "build/gpuhook")), "tests", "gpuhook_fakegpu")
# Latency bounds mean nothing under valgrind or the sanitizers; the plain build checks them.
SLOW = bool(WRAPPER) or os.environ.get("GPUHOOK_SANITIZED") == "1"


def main_push():
    p = json.loads(PUSH)
    p["ref"] = "refs/heads/main"
    return json.dumps(p).encode()


def api_config(g, api, timeout=3, **extra):
    k = {"mode": "url", "url": api.url, "namespace": "tekton-pipelines", "timeout_seconds": timeout}
    g.config["kubernetes"] = k
    g.config.update(extra)
    return g


def api_hook(api, timeout=3, binary=None, env=None, **extra):
    return api_config(GpuHook(binary=binary, env=env), api, timeout, **extra)


def wait_for(pred, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def posts(api):
    return [q for q in api.requests() if q["method"] == "POST"]


@pytest.fixture
def api():
    srv = FakeApiServer(tempfile.mkdtemp(prefix="gpuhook-api-")).start()
    yield srv
    srv.stop()


# --- 1. identity ----------------------------------------------------------------------------


def test_two_replicas_with_other_rules_and_gpus_create_one_run(api):
    """Replica A: main goes to original, a GPU with room for it. Replica B: another rule set
    (main is lite) and a GPU with room for lite only, so it would pick lite either way. The
    same delivery reaches both: one PipelineRun, and B answers with A's real variant."""
    fit = {"lite_min_free_mib": 2048, "original_min_free_mib": 8192, "on_insufficient": "downgrade"}
    a = api_hook(api, binary=FAKE, env={"GPUHOOK_FAKE_FREE_MIB": "16000"})
    a.config["selection"]["gpu_fit"] = dict(fit)
    b = api_hook(api, binary=FAKE, env={"GPUHOOK_FAKE_FREE_MIB": "5000"})
    b.config["selection"] = {"default": "lite", "gpu_fit": dict(fit), "rules": [
        {"name": "main-lite", "when": {"event": "push", "branch": "main"}, "variant": "lite"}]}
    with a, b:
        ra = a.deliver("push", main_push(), delivery="dup-1", hook_id="77")
        rb = b.deliver("push", main_push(), delivery="dup-1", hook_id="77")
        assert ra.status == 201 and ra.json["variant"] == "original", ra.body
        assert rb.status == 200 and rb.json["status"] == "exists", rb.body
        assert rb.json["pipelinerun"] == ra.json["pipelinerun"]
        assert rb.json["variant"] == "original"  # read back from the object, not B's choice
        assert rb.json["rule"] == "main-original"
        # B also answers a redelivery from its cache the same way, and A still says exists.
        assert b.deliver("push", main_push(), delivery="dup-1", hook_id="77").json["variant"] == "original"
        assert a.deliver("push", main_push(), delivery="dup-1", hook_id="77").status == 200
    objs = api.objects()
    assert len(objs) == 1
    assert objs[0]["spec"]["pipelineRef"]["name"] == "gpu-real-8-step-workflow-original"
    gets = [q for q in api.requests() if q["method"] == "GET" and q["name"]]
    assert gets and all(q["status"] == 200 for q in gets)


def test_name_is_readable_valid_and_independent_of_the_variant(api):
    with api_hook(api) as g:
        r1 = g.deliver("push", PUSH, delivery="same-1", hook_id="9")
        assert r1.status == 201 and r1.json["variant"] == "lite"
        name = r1.json["pipelinerun"]
        assert name.startswith("gpu-real-8-step-workflow-gh-") and len(name) <= 63
        g.config["selection"]["default"] = "original"
    with g:  # restarted with other rules: the same delivery keeps its name
        r2 = g.deliver("push", PUSH, delivery="same-1", hook_id="9")
        assert r2.status == 200 and r2.json["pipelinerun"] == name and r2.json["variant"] == "lite"
        # Another hook with the same delivery ID is another delivery.
        r3 = g.deliver("push", PUSH, delivery="same-1", hook_id="10")
        assert r3.status == 201 and r3.json["pipelinerun"] != name
    assert len(api.objects()) == 2


def test_webhook_delivery_id_equal_to_a_trigger_key_is_its_own_run(api):
    with api_hook(api) as g:
        t = g.trigger({"variant": "original", "revision": "abc"}, extra={"Idempotency-Key": "shared-id"})
        assert t.status == 201 and "-tr-" in t.json["pipelinerun"]
        # No hook ID, delivery ID equal to the key: neither the cache nor the name confuse them.
        w = g.deliver("push", PUSH, delivery="shared-id", hook_id=None)
        assert w.status == 201, w.body
        assert w.json["pipelinerun"] != t.json["pipelinerun"] and "-gh-" in w.json["pipelinerun"]
    assert len(api.objects()) == 2


# --- 2 and 3. the table of answers -----------------------------------------------------------


def test_409_conflict_is_retried_never_taken_for_exists(api):
    api.set_faults([{"mode": "status", "code": 409, "count": 2}])  # reason Conflict (ResourceQuota)
    with api_hook(api, timeout=5) as g:
        r = g.deliver("push", PUSH)
        assert r.status == 201 and r.json["status"] == "created", r.body
        assert [q["status"] for q in posts(api)] == [409, 409, 201]
        assert len(api.objects()) == 1
        assert metric_value(g.metrics(), 'gpuhook_pipelineruns_created_total{variant="lite"}') == 1


def test_409_conflict_past_the_deadline_spools_and_the_spool_keeps_it(api):
    api.set_faults([{"mode": "status", "code": 409, "count": -1}])
    with api_hook(api, timeout=1) as g:
        r = g.deliver("push", PUSH)
        assert r.status == 202 and r.json["status"] == "queued", r.body
        spool = os.path.join(g.tmp, "spool")
        # The spool meets the Conflict too and keeps the run (it used to delete it as "exists").
        assert wait_for(lambda: len(posts(api)) >= 4)
        assert os.path.exists(os.path.join(spool, r.json["pipelinerun"] + ".json"))
        api.clear_faults()
        assert wait_for(lambda: len(api.objects()) == 1, timeout=20)
        assert wait_for(lambda: not os.path.exists(os.path.join(spool, r.json["pipelinerun"] + ".json")))
    assert api.objects()[0]["metadata"]["name"] == r.json["pipelinerun"]


@pytest.mark.parametrize("code,reason", [(413, "RequestEntityTooLarge"), (400, "BadRequest"),
                                         (415, "UnsupportedMediaType"), (422, "Invalid")])
def test_refused_objects_are_final_502_kept_in_failed_and_counted(api, code, reason):
    api.set_faults([{"mode": "status", "code": code, "count": 1}])
    with api_hook(api) as g:
        r = g.deliver("push", PUSH)
        assert r.status == 502, r.body
        err = r.json["error"]
        assert "HTTP %d %s" % (code, reason) in err and "failed/" in err
        assert "Update README.md" not in r.body.decode()  # nothing of the payload is echoed
        assert len(posts(api)) == 1  # never retried
        failed = os.path.join(g.tmp, "spool", "failed")
        names = sorted(os.listdir(failed))
        assert names[0].endswith(".error") and names[1].endswith(".json")
        run = json.loads(open(os.path.join(failed, names[1])).read())
        assert run["kind"] == "PipelineRun"
        text = open(os.path.join(failed, names[0])).read()
        assert text.startswith("HTTP %d %s: " % (code, reason))
        status = json.loads(text.splitlines()[1])
        assert status["kind"] == "Status" and status["code"] == code
        assert [n for n in os.listdir(os.path.join(g.tmp, "spool")) if n != "failed"] == []
        assert metric_value(g.metrics(), 'gpuhook_kube_answers_total{answer="refused"}') == 1


def test_a_huge_201_is_created_not_retried_into_exists(api):
    api.set_faults([{"mode": "pass", "pad_response": 3 * 1024 * 1024, "count": 1}])
    with api_hook(api) as g:
        r = g.deliver("push", PUSH)
        assert r.status == 201 and r.json["status"] == "created", r.body
        assert [q["status"] for q in posts(api)] == [201]
        assert metric_value(g.metrics(), 'gpuhook_pipelineruns_created_total{variant="lite"}') == 1


@pytest.mark.parametrize("code", [403, 404])
def test_403_and_404_spool_and_readyz_says_so_without_failing(api, code):
    api.set_faults([{"mode": "status", "code": code, "count": -1}])
    with api_hook(api, timeout=3) as g:
        t0 = time.monotonic()
        r = g.deliver("push", PUSH)
        assert r.status == 202 and r.json["status"] == "queued", r.body
        assert SLOW or time.monotonic() - t0 < 2  # spooled at once, not retried to the deadline
        rz = g.request("GET", "/readyz")
        assert rz.status == 200
        blocked = rz.json["checks"]["delivery"]["blocked"]
        assert blocked.startswith("HTTP %d, runs wait in the spool" % code)
        assert wait_for(lambda: metric_value(g.metrics(), 'gpuhook_kube_answers_total{answer="blocked"}') >= 2)
        api.clear_faults()  # the operator fixes RBAC / creates the namespace
        assert wait_for(lambda: len(api.objects()) == 1, timeout=20)
        time.sleep(1.1)  # readiness is cached for a second
        assert "blocked" not in g.request("GET", "/readyz").json["checks"]["delivery"]


def test_401_rereads_the_token_retries_once_then_spools(api, tmp_path):
    tok = str(tmp_path / "token")
    with open(tok, "w") as f:
        f.write("stale\n")
    api.set_faults([{"mode": "status", "code": 401, "count": 2}])
    g = api_hook(api)
    g.config["kubernetes"]["token_file"] = tok
    with g:
        r = g.deliver("push", PUSH)
        assert r.status == 202 and r.json["status"] == "queued", r.body
        assert [q["status"] for q in posts(api)][:2] == [401, 401]
        assert wait_for(lambda: len(api.objects()) == 1)
    assert "stale" not in g.log_text()


# --- 4. Retry-After ---------------------------------------------------------------------------


def test_retry_after_http_date_is_honoured_inside_the_deadline(api):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    api.set_faults([{"mode": "status", "code": 503, "retry_after": when, "count": 1}])
    with api_hook(api, timeout=6) as g:
        t0 = time.monotonic()
        r = g.deliver("push", PUSH)
        took = time.monotonic() - t0
        assert r.status == 201, r.body
        assert 0.5 <= took and (SLOW or took < 5.5)


@pytest.mark.parametrize("value", ["99999999999999999999", "86400",
                                   "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_retry_after_past_the_deadline_spools_at_once_then_is_clamped_in_the_spool(api, value):
    api.set_faults([{"mode": "status", "code": 429, "retry_after": value, "count": 2}])
    with api_hook(api, timeout=3, spool_retry_after_max_seconds=1) as g:
        t0 = time.monotonic()
        r = g.deliver("push", PUSH)
        assert r.status == 202 and r.json["status"] == "queued", r.body
        assert SLOW or time.monotonic() - t0 < 1.5  # no retry can come inside the deadline
        # The spool meets the same header once more, waits at most a second, then creates.
        assert wait_for(lambda: len(api.objects()) == 1, timeout=10)
        assert g.proc.poll() is None


# --- 5. /trigger ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local():
    with GpuHook() as g:
        yield g


@pytest.mark.parametrize("payload,msg", [
    ({"variant": "enormous", "revision": "a"}, 'variant "enormous" is not one of lite, original, auto'),
    ({"variant": 7, "revision": "a"}, "variant 7 is not one of lite, original, auto"),
    ({"revision": 5}, "revision: required, a non-empty string, not 5"),
    ({"revision": "a", "repo_url": ""}, 'repo_url: must be a non-empty string, not ""'),
    ({"revision": "a", "branch": ["x"]}, 'branch: must be a string, not ["x"]'),
    ({"revision": "a", "params": []}, "params: must be an object of strings, not []"),
    ({"revision": "a", "params": {"nope": "x"}},
     "params.nope: the template declares no such param; params may set git-repo-url, git-revision"),
])
def test_every_trigger_400_names_the_value_and_what_is_allowed(local, payload, msg):
    before = set(local.runs())
    r = local.trigger(payload)
    assert r.status == 400 and r.json["error"] == msg, r.json
    assert set(local.runs()) == before


def test_params_may_not_set_the_param_the_variant_decides(local):
    before = set(local.runs())
    r = local.trigger({"variant": "lite", "revision": "a", "params": {"pipeline-version": "original"}})
    assert r.status == 400
    assert r.json["error"].startswith("params.pipeline-version: set by the variant alone "
                                      "(its binding is $(extensions.variant))")
    assert set(local.runs()) == before


def test_a_rendered_name_field_that_is_not_a_kubernetes_name_fails_before_sending(api, tmp_path):
    tmpl = tmp_path / "template.yaml"
    tmpl.write_text("""apiVersion: triggers.tekton.dev/v1beta1
kind: TriggerTemplate
metadata: {name: t}
spec:
  params:
    - {name: git-revision}
    - {name: pipeline, default: gpu-real-8-step-workflow-lite}
    - {name: claim, default: shared-claim}
  resourcetemplates:
    - apiVersion: tekton.dev/v1
      kind: PipelineRun
      metadata: {generateName: gpu-run-}
      spec:
        pipelineRef: {name: $(tt.params.pipeline)}
        params: [{name: git-revision, value: $(tt.params.git-revision)}]
        workspaces:
          - {name: shared-storage, persistentVolumeClaim: {claimName: $(tt.params.claim)}}
""")
    binding = tmp_path / "binding.yaml"
    binding.write_text("""apiVersion: triggers.tekton.dev/v1beta1
kind: TriggerBinding
metadata: {name: b}
spec:
  params:
    - {name: git-revision, value: $(extensions.revision)}
""")
    g = api_hook(api, template=str(tmpl), bindings=str(binding))
    with g:
        r = g.trigger({"revision": "a", "params": {"pipeline": "gpu-real-8-step-workflow-../../x"}})
        assert r.status == 400
        assert r.json["error"].startswith('the rendered spec.pipelineRef.name '
                                          '"gpu-real-8-step-workflow-../../x" is not a valid '
                                          "Kubernetes name")
        r = g.trigger({"revision": "a", "params": {"claim": "Shared_Claim"}})
        assert r.status == 400
        assert "spec.workspaces[0].persistentVolumeClaim.claimName \"Shared_Claim\"" in r.json["error"]
        assert posts(api) == []  # nothing was sent
        assert g.trigger({"revision": "a"}).status == 201


# --- 6. Idempotency-Key -----------------------------------------------------------------------


def test_idempotency_key_same_body_exists_other_body_422_across_restarts(api):
    key = {"Idempotency-Key": "deploy-2026-12-02"}
    body = {"variant": "original", "revision": "r1", "params": {"git-repo-url": "https://x/y.git"}}
    with api_hook(api) as g:
        r1 = g.trigger(body, extra=key)
        assert r1.status == 201 and r1.json["variant"] == "original", r1.body
        name = r1.json["pipelinerun"]
    obj = api.objects()[0]
    assert len(obj["metadata"]["annotations"]["gpuhook.dev/request-sha256"]) == 64
    with api_hook(api) as g2:  # another process: no memory of the first, only the object
        # The same request with its keys in another order and other white space.
        same = '{ "params": {"git-repo-url": "https://x/y.git"}, "revision": "r1", "variant": "original" }'
        r2 = g2.trigger(same, extra=key)
        assert r2.status == 200 and r2.json["status"] == "exists", r2.body
        assert r2.json["pipelinerun"] == name and r2.json["variant"] == "original"
        r3 = g2.trigger(dict(body, revision="r2"), extra=key)
        assert r3.status == 422, r3.body
        assert r3.json["error"] == ('Idempotency-Key "deploy-2026-12-02" was already used for run %s '
                                    "with a different request body; use a new key for a new "
                                    "request" % name)
        # Even a variant that would be chosen otherwise changes the request.
        assert g2.trigger(dict(body, variant="lite"), extra=key).status == 422
        # Without a key, each request is a new run.
        assert g2.trigger(body).status == 201
    assert len(api.objects()) == 2


def test_idempotency_key_in_local_mode_compares_the_file(local):
    key = {"Idempotency-Key": "local-key-1"}
    r1 = local.trigger({"variant": "lite", "revision": "l1"}, extra=key)
    r2 = local.trigger({"variant": "lite", "revision": "l1"}, extra=key)
    r3 = local.trigger({"variant": "lite", "revision": "l2"}, extra=key)
    assert (r1.status, r2.status, r3.status) == (201, 200, 422)
    assert r2.json["pipelinerun"] == r1.json["pipelinerun"]


def test_what_waits_in_the_spool_is_never_swapped(tmp_path):
    """While the API is down, a reused key with another body gets 422 and a redelivery that
    would now pick another variant is answered for the run that waits; nothing replaces it."""
    api = FakeApiServer(str(tmp_path / "api")).start()
    port = api.port
    api.kill()
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": "http://127.0.0.1:%d" % port,
                              "namespace": "tekton-pipelines", "timeout_seconds": 1}
    key = {"Idempotency-Key": "while-down-1"}
    with g:
        r1 = g.trigger({"variant": "lite", "revision": "first"}, extra=key)
        assert r1.status == 202 and r1.json["status"] == "queued", r1.body
        r2 = g.trigger({"variant": "lite", "revision": "second"}, extra=key)
        assert r2.status == 422 and "different request body" in r2.json["error"], r2.body
        r3 = g.trigger({"variant": "lite", "revision": "first"}, extra=key)
        assert r3.status == 202 and r3.json["pipelinerun"] == r1.json["pipelinerun"]
        w1 = g.deliver("push", main_push(), delivery="down-dup", hook_id="5")
        assert w1.status == 202 and w1.json["variant"] == "original"
    g.config["selection"]["rules"] = []  # restarted with rules that would pick lite
    api.start(port=port)
    try:
        with g:
            # Whoever sends it first (this request or the spool's worker), the run that
            # waited is the one created, and the answer is for it.
            w2 = g.deliver("push", main_push(), delivery="down-dup", hook_id="5")
            assert w2.status in (200, 201, 202), w2.body
            assert w2.json["pipelinerun"] == w1.json["pipelinerun"]
            assert (w2.json["variant"], w2.json["rule"]) == ("original", "main-original")
            assert wait_for(lambda: len(api.objects()) == 2, timeout=20)
        by_name = {o["metadata"]["name"]: o for o in api.objects()}
        params = {p["name"]: p["value"] for p in by_name[r1.json["pipelinerun"]]["spec"]["params"]}
        assert params["git-revision"] == "first"
        assert by_name[w1.json["pipelinerun"]]["spec"]["pipelineRef"]["name"] == \
            "gpu-real-8-step-workflow-original"
    finally:
        api.stop()
