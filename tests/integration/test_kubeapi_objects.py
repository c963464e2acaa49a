"""Self-test of the stand-in kube-apiserver's updates and objects (tests/kubeapi/kube_*.py):
PUT, merge and JSON patch (with the RFCs' examples), resourceVersion preconditions, the status
subresource, Tekton's conditions and TaskRuns, Leases, EndpointSlices, Nodes and discovery,
checked with Debian's python3-kubernetes (the official Python client).
"""

import datetime
import json
import threading
import time

import pytest

pytest.register_assert_rewrite("kubeapi_fixtures")

from kubeapi_fixtures import (  # noqa: E402
    ApiException,
    COLLECTION,
    FakeApiServer,
    G,
    NS,
    P,
    TOKEN,
    V,
    collect,
    create_runs,
    k8s,
    k8s_watch,
    run_obj,
    run_reason,
    sample_endpointslice,
    sample_node,
    sample_pipelinerun,
)

pytest_plugins = ["kubeapi_fixtures"]


# --- patch, update, status -------------------------------------------------------------------


def test_merge_patch_releases_a_pending_run_and_cancels_another(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    created = create_runs(kclient, run_obj("pend-a", pending=True),
                          run_obj("pend-b", pending=True))
    rv = created[0]["metadata"]["resourceVersion"]
    for n in ("pend-a", "pend-b"):
        got = api.wait_run(n, lambda o: run_reason(o) == ("Unknown", "PipelineRunPending"))
        assert "startTime" not in got["status"]
        assert got["status"]["conditions"][0]["message"] == 'PipelineRun "%s" is pending' % n
    out = co.patch_namespaced_custom_object(G, V, NS, P, "pend-a", {"spec": {"status": None}})
    assert "status" not in out["spec"] and out["metadata"]["generation"] == 2
    started = api.wait_run("pend-a", lambda o: run_reason(o) == ("Unknown", "Running"))
    assert started["status"]["startTime"]
    co.patch_namespaced_custom_object(G, V, NS, P, "pend-b", {
        "spec": {"status": "Cancelled"},
        "metadata": {"annotations": {"gpuhook.dev/superseded-by": "pend-c"}}})
    done = api.wait_run("pend-b", lambda o: run_reason(o) == ("False", "Cancelled"))
    assert done["status"]["completionTime"]
    assert done["status"]["conditions"][0]["message"] == 'PipelineRun "pend-b" was cancelled'
    # Every status change was a MODIFIED event.
    w = k8s_watch.Watch()
    events = collect(w.stream(co.list_namespaced_custom_object, G, V, NS, P,
                              resource_version=rv, timeout_seconds=5), 7)
    w.stop()
    seen = [(e["type"], e["object"]["metadata"]["name"], e["object"]["spec"].get("status"),
             run_reason(e["object"])[1]) for e in events]
    # pend-b: created, the controller's pending condition, the cancel patch, the
    # controller's answer; pend-a (watched from its own creation): pending, released, started.
    assert [s for s in seen if s[1] == "pend-b"] == [
        ("ADDED", "pend-b", "PipelineRunPending", None),
        ("MODIFIED", "pend-b", "PipelineRunPending", "PipelineRunPending"),
        ("MODIFIED", "pend-b", "Cancelled", "PipelineRunPending"),
        ("MODIFIED", "pend-b", "Cancelled", "Cancelled")]
    assert [s for s in seen if s[1] == "pend-a"] == [
        ("MODIFIED", "pend-a", "PipelineRunPending", "PipelineRunPending"),
        ("MODIFIED", "pend-a", None, "PipelineRunPending"),
        ("MODIFIED", "pend-a", None, "Running")]


def test_graceful_cancel_of_a_running_run_goes_through_cancelled_running_finally(api,
                                                                                  kclient):
    co = k8s.CustomObjectsApi(kclient)
    create_runs(kclient, run_obj("grace"))
    api.set_run_status("grace", "Running", task="build")
    co.patch_namespaced_custom_object(G, V, NS, P, "grace",
                                      {"spec": {"status": "CancelledRunFinally"}})
    api.wait_run("grace", lambda o: run_reason(o) == ("Unknown", "CancelledRunningFinally"))
    obj = api.set_run_status("grace", "Cancelled")
    assert run_reason(obj) == ("False", "Cancelled") and obj["status"]["completionTime"]


def test_patch_with_a_stale_resource_version_gets_409_with_the_real_message(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    rv = create_runs(kclient, run_obj("cas"))[0]["metadata"]["resourceVersion"]
    co.patch_namespaced_custom_object(G, V, NS, P, "cas", {"metadata": {
        "labels": {"x": "1"}, "resourceVersion": rv}})
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(G, V, NS, P, "cas", {"metadata": {
            "labels": {"x": "2"}, "resourceVersion": rv}})
    assert exc.value.status == 409
    body = json.loads(exc.value.body)
    assert body["reason"] == "Conflict" and body["message"] == (
        'Operation cannot be fulfilled on pipelineruns.tekton.dev "cas": the object has been '
        'modified; please apply your changes to the latest version and try again')
    assert body["details"] == {"name": "cas", "group": "tekton.dev", "kind": "pipelineruns"}
    assert api.run("cas")["metadata"]["labels"]["x"] == "1"


# RFC 7386, Appendix A: every example.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]

# RFC 6902, Appendix A (A.13, invalid JSON, does not apply to parsed input).
RFC6902 = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1",
                                                 "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]}, [{"op": "test", "path": "/baz", "value": "qux"},
                                           {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "error"),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
     {"foo": "bar", "baz": "qux"}),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "error"),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "error"),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
]


def test_merge_patch_and_json_patch_pass_the_rfc_examples():
    import kube_patch
    for target, patch, result in RFC7386:
        assert kube_patch.merge_patch(target, patch) == result, (target, patch)
    for target, ops, result in RFC6902:
        if result == "error":
            with pytest.raises(kube_patch.PatchError):
                kube_patch.apply_json_patch(target, ops)
        else:
            assert kube_patch.apply_json_patch(target, ops) == result, (target, ops)


def test_a_lost_patch_answer_was_applied_and_its_retry_conflicts(api, kclient):
    create_runs(kclient, run_obj("lost", pending=True))
    api.wait_run("lost", lambda o: run_reason(o)[1] == "PipelineRunPending")
    rv = api.run("lost")["metadata"]["resourceVersion"]
    api.set_faults([{"mode": "create_then_fail", "then": "drop", "paths": [COLLECTION + "/*"],
                     "methods": ["PATCH"]}])
    patch = {"spec": {"status": None}, "metadata": {"resourceVersion": rv}}
    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected
        api.request("PATCH", COLLECTION + "/lost", patch, token=TOKEN,
                    content_type="application/merge-patch+json")
    assert "status" not in api.run("lost")["spec"]  # the write happened
    r = api.request("PATCH", COLLECTION + "/lost", patch, token=TOKEN,
                    content_type="application/merge-patch+json")
    assert r.status == 409 and r.json["reason"] == "Conflict"
    assert [e["fault"] for e in api.requests() if e["method"] == "PATCH"] == [
        "create_then_fail", None]


def test_json_patch_put_and_validation_on_update(api, kclient):
    obj = create_runs(kclient, run_obj("jp"))[0]
    r = api.request("PATCH", COLLECTION + "/jp", [
        {"op": "test", "path": "/spec/params/0/name", "value": "git-repo-url"},
        {"op": "add", "path": "/metadata/labels/k", "value": "v"}],
        token=TOKEN, content_type="application/json-patch+json")
    assert r.status == 200 and r.json["metadata"]["labels"]["k"] == "v"
    r = api.request("PATCH", COLLECTION + "/jp", [{"op": "test", "path": "/spec/x",
                                                   "value": 1}],
                    token=TOKEN, content_type="application/json-patch+json")
    assert r.status == 422 and r.json["kind"] == "Status"
    r = api.request("PATCH", COLLECTION + "/jp", {"spec": {"timeouts": "soon"}}, token=TOKEN,
                    content_type="application/merge-patch+json")
    assert r.status == 422 and r.json["reason"] == "Invalid" and "spec.timeouts" in \
        r.json["message"]
    r = api.request("PATCH", COLLECTION + "/jp", {"spec": {"status": "Paused"}}, token=TOKEN,
                    content_type="application/merge-patch+json")
    assert r.status == 400 and r.json["message"] == (
        'admission webhook "validation.webhook.pipeline.tekton.dev" denied the request: '
        "validation failed: invalid value: Paused should be Cancelled, CancelledRunFinally, "
        "StoppedRunFinally or PipelineRunPending: spec.status")
    r = api.request("PATCH", COLLECTION + "/jp", {}, token=TOKEN,
                    content_type="application/strategic-merge-patch+json")
    assert r.status == 415 and r.json["reason"] == "UnsupportedMediaType"
    r = api.request("PATCH", COLLECTION + "/nope", {}, token=TOKEN,
                    content_type="application/merge-patch+json")
    assert r.status == 404 and r.json["message"] == 'pipelineruns.tekton.dev "nope" not found'
    # PUT with the current resourceVersion succeeds; a second PUT with it conflicts.
    cur = api.request("GET", COLLECTION + "/jp", token=TOKEN).json
    cur["metadata"]["annotations"] = {"note": "put"}
    r = api.request("PUT", COLLECTION + "/jp", cur, token=TOKEN)
    assert r.status == 200 and int(r.json["metadata"]["resourceVersion"]) > \
        int(cur["metadata"]["resourceVersion"])
    r = api.request("PUT", COLLECTION + "/jp", cur, token=TOKEN)
    assert r.status == 409 and r.json["reason"] == "Conflict"
    # A no-op patch writes nothing: same resourceVersion.
    same = api.request("PATCH", COLLECTION + "/jp", {"metadata": {"labels": {"k": "v"}}},
                       token=TOKEN, content_type="application/merge-patch+json").json
    assert same["metadata"]["resourceVersion"] == api.run("jp")["metadata"]["resourceVersion"]
    assert obj["metadata"]["uid"] == same["metadata"]["uid"]
    # Tekton's webhook: before a run is done only spec.status may change (metadata may),
    # after it nothing in spec; a started run cannot go back to pending.
    def merge(patch):
        return api.request("PATCH", COLLECTION + "/jp", patch, token=TOKEN,
                           content_type="application/merge-patch+json")
    r = merge({"spec": {"params": []}})
    assert r.status == 400 and r.json["message"].endswith(
        "invalid value: Once the PipelineRun has started, only status updates are allowed")
    api.set_run_status("jp", "Running")
    assert merge({"spec": {"status": "PipelineRunPending"}}).json["message"].endswith(
        "invalid value: PipelineRun cannot be Pending after it is started: spec.status")
    assert merge({"metadata": {"annotations": {"gpuhook.dev/check-run": "7"}}}).status == 200
    api.set_run_status("jp", "Succeeded")
    r = merge({"spec": {"status": "Cancelled"}})
    assert r.status == 400 and r.json["message"].endswith(
        "invalid value: Once the PipelineRun is complete, no updates are allowed")


def test_status_subresource_separates_spec_and_status(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    create_runs(kclient, run_obj("sub"))
    # A status written through the main resource is ignored.
    out = co.patch_namespaced_custom_object(G, V, NS, P, "sub", {"status": {"x": 1}})
    assert "status" not in out
    st = co.patch_namespaced_custom_object_status(G, V, NS, P, "sub", {
        "status": {"startTime": "2026-01-01T00:00:00Z"}, "spec": {"params": []}})
    assert st["status"]["startTime"] == "2026-01-01T00:00:00Z"
    assert st["spec"]["params"] and st["metadata"]["generation"] == 1
    got = co.get_namespaced_custom_object_status(G, V, NS, P, "sub")
    assert got["status"] == st["status"]


def test_tekton_status_transitions_are_modified_events(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    rv = create_runs(kclient, run_obj("life"), run_obj("fail"),
                     run_obj("slow"))[2]["metadata"]["resourceVersion"]
    r = api.set_run_status("life", "Running", tasks=["fetch", "build"])
    assert run_reason(r) == ("Unknown", "Running") and r["status"]["startTime"]
    assert [c["pipelineTaskName"] for c in r["status"]["childReferences"]] == ["fetch",
                                                                               "build"]
    r = api.set_run_status("life", "Succeeded")
    assert run_reason(r) == ("True", "Succeeded") and r["status"]["completionTime"]
    assert r["status"]["startTime"]
    r = api.set_run_status("fail", "Failed", task="gpu-test", tasks=["fetch", "gpu-test"])
    assert run_reason(r) == ("False", "Failed")
    assert {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "name": "fail-gpu-test",
            "pipelineTaskName": "gpu-test"} in r["status"]["childReferences"]
    assert "Failed: 1" in r["status"]["conditions"][0]["message"]
    r = api.set_run_status("slow", "Timeout")
    assert run_reason(r) == ("False", "PipelineRunTimeout")
    assert 'failed to finish within' in r["status"]["conditions"][0]["message"]
    w = k8s_watch.Watch()
    events = collect(w.stream(co.list_namespaced_custom_object, G, V, NS, P,
                              resource_version=rv, timeout_seconds=5), 4)
    w.stop()
    assert [(e["type"], e["object"]["metadata"]["name"], run_reason(e["object"])[1])
            for e in events] == [("MODIFIED", "life", "Running"),
                                 ("MODIFIED", "life", "Succeeded"),
                                 ("MODIFIED", "fail", "Failed"),
                                 ("MODIFIED", "slow", "PipelineRunTimeout")]
    r = api.request("POST", "/_test/pipelineruns/%s/life/status" % NS, {"phase": "Bogus"})
    assert r.status == 400 and "phase must be one of" in r.json["error"]


def taskruns_of(co, run):
    items = co.list_namespaced_custom_object(G, V, NS, "taskruns",
                                             label_selector="tekton.dev/pipelineRun=" + run)
    return {t["metadata"]["labels"]["tekton.dev/pipelineTask"]: run_reason(t)
            for t in items["items"]}


def test_run_transitions_write_the_taskruns_tekton_would(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    create_runs(kclient, run_obj("tr"), run_obj("tr-cancel"))
    steps = ["fetch", "build", "gpu-test", "summary"]
    api.set_run_status("tr", "Running", task="build", tasks=steps)
    assert taskruns_of(co, "tr") == {"fetch": ("True", "Succeeded"),
                                     "build": ("Unknown", "Running")}
    r = api.set_run_status("tr", "Failed", task="gpu-test", tasks=steps)
    assert taskruns_of(co, "tr") == {"fetch": ("True", "Succeeded"),
                                     "build": ("True", "Succeeded"),
                                     "gpu-test": ("False", "Failed")}
    assert r["status"]["skippedTasks"] == [{"name": "summary",
                                            "reason": "PipelineRun was stopping"}]
    assert r["status"]["conditions"][0]["message"] == \
        "Tasks Completed: 3 (Failed: 1, Cancelled 0), Skipped: 1"
    tr = co.get_namespaced_custom_object(G, V, NS, "taskruns", "tr-gpu-test")
    assert tr["status"]["conditions"][0]["message"] == '"step-run" exited with code 1'
    assert tr["metadata"]["ownerReferences"][0]["uid"] == api.run("tr")["metadata"]["uid"]
    assert tr["metadata"]["labels"]["tekton.dev/pipeline"] == "gpu-real-8-step-workflow-lite"
    # A cancel ends the TaskRuns that still run and leaves finished ones alone.
    api.set_run_status("tr-cancel", "Running", task="build", tasks=steps)
    co.patch_namespaced_custom_object(G, V, NS, P, "tr-cancel",
                                      {"spec": {"status": "Cancelled"}})
    api.wait_run("tr-cancel", lambda o: run_reason(o) == ("False", "Cancelled"))
    deadline = time.monotonic() + 5
    while taskruns_of(co, "tr-cancel").get("build") != ("False", "TaskRunCancelled"):
        assert time.monotonic() < deadline, taskruns_of(co, "tr-cancel")
        time.sleep(0.05)
    assert taskruns_of(co, "tr-cancel")["fetch"] == ("True", "Succeeded")
    # Deleting a run deletes its TaskRuns (their ownerReferences), as the GC would.
    api.request("DELETE", COLLECTION + "/tr", token=TOKEN)
    deadline = time.monotonic() + 5
    while taskruns_of(co, "tr"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_taskruns_are_final_before_the_run_says_so_and_results_are_kept(api, kclient):
    """Tekton's reconciler writes the TaskRuns (and their Pods) before it updates the run,
    so a watcher that sees the run's new condition reads its TaskRuns final; the Pipeline's
    results land in the finished run's status.results."""
    co, core = k8s.CustomObjectsApi(kclient), k8s.CoreV1Api(kclient)
    create_runs(kclient, run_obj("order"))
    api.set_run_status("order", "Running", task="build", tasks=["fetch", "build"])
    summary = [{"name": "summary", "value": "| 1 | ok |"}]
    api.set_run_status("order", "Failed", task="build", tasks=["fetch", "build"],
                       results=summary)
    run = co.get_namespaced_custom_object(G, V, NS, P, "order")
    assert run["status"]["results"] == summary
    rv = int(run["metadata"]["resourceVersion"])
    trs = co.list_namespaced_custom_object(G, V, NS, "taskruns",
                                           label_selector="tekton.dev/pipelineRun=order")
    assert {t["metadata"]["name"]: run_reason(t) for t in trs["items"]} == {
        "order-fetch": ("True", "Succeeded"), "order-build": ("False", "Failed")}
    assert all(int(t["metadata"]["resourceVersion"]) < rv for t in trs["items"])
    pods = core.list_namespaced_pod(NS, label_selector="tekton.dev/pipelineRun=order")
    assert pods.items and all(int(p.metadata.resource_version) < rv for p in pods.items)
    # A phase that does not end the run keeps no results.
    create_runs(kclient, run_obj("order-2"))
    r = api.set_run_status("order-2", "Running", results=summary)
    assert "results" not in r["status"]


def test_each_taskrun_gets_a_pod_on_the_preferred_node_with_field_selectors(api, kclient):
    co, core = k8s.CustomObjectsApi(kclient), k8s.CoreV1Api(kclient)
    placed = run_obj("placed")
    placed["spec"]["taskRunTemplate"] = {"podTemplate": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                  "values": ["gpu-b"]}]}}]}}}}
    create_runs(kclient, placed, run_obj("plain"))
    api.set_run_status("placed", "Failed", task="gpu-test", tasks=["fetch", "gpu-test"])
    api.set_run_status("plain", "Running", task="build", tasks=["build"])
    tr = co.get_namespaced_custom_object(G, V, NS, "taskruns", "placed-gpu-test")
    pod = core.read_namespaced_pod(tr["status"]["podName"], NS)
    assert pod.spec.node_name == "gpu-b" and pod.status.phase == "Failed"
    assert pod.metadata.labels["tekton.dev/taskRun"] == "placed-gpu-test"
    assert pod.metadata.owner_references[0].name == "placed-gpu-test"
    on_b = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=gpu-b")
    assert sorted(p.metadata.name for p in on_b.items) == ["placed-fetch-pod",
                                                           "placed-gpu-test-pod"]
    live = core.list_namespaced_pod(NS, field_selector="status.phase!=Succeeded,"
                                                       "status.phase!=Failed")
    assert [(p.metadata.name, p.spec.node_name) for p in live.items] == [
        ("plain-build-pod", "gpu-node-1")]
    with pytest.raises(ApiException) as exc:
        core.list_pod_for_all_namespaces(field_selector="spec.schedulerName=x")
    assert exc.value.status == 400
    assert "pods" in {r.name for r in core.get_api_resources().resources}
    # Deleting the run collects its TaskRuns' Pods too.
    api.request("DELETE", COLLECTION + "/placed", token=TOKEN)
    deadline = time.monotonic() + 5
    while core.list_namespaced_pod(NS, label_selector="tekton.dev/pipelineRun=placed").items:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_start_mode_controller_starts_every_new_run(tmp_path):
    srv = FakeApiServer(str(tmp_path / "state"))
    srv.tekton_controller = "start"
    with srv:
        srv.create(sample_pipelinerun("auto", NS))
        srv.wait_run("auto", lambda o: run_reason(o) == ("Unknown", "Running"))


# --- Leases ------------------------------------------------------------------------------------


def test_lease_create_read_replace_with_optimistic_concurrency(api, kclient):
    co = k8s.CoordinationV1Api(kclient)
    t0 = datetime.datetime.now(datetime.timezone.utc)
    lease = co.create_namespaced_lease(NS, k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name="gpuhook-scheduler"),
        spec=k8s.V1LeaseSpec(holder_identity="replica-a", lease_duration_seconds=15,
                             acquire_time=t0, renew_time=t0, lease_transitions=0)))
    assert lease.spec.holder_identity == "replica-a" and lease.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        co.create_namespaced_lease(NS, k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name="gpuhook-scheduler"), spec=k8s.V1LeaseSpec()))
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    # Both replicas read the same version; only the first replace wins, as leaderelection
    # relies on.
    a = co.read_namespaced_lease("gpuhook-scheduler", NS)
    b = co.read_namespaced_lease("gpuhook-scheduler", NS)
    a.spec.renew_time = datetime.datetime.now(datetime.timezone.utc)
    renewed = co.replace_namespaced_lease("gpuhook-scheduler", NS, a)
    assert int(renewed.metadata.resource_version) > int(a.metadata.resource_version)
    b.spec.holder_identity = "replica-b"
    b.spec.lease_transitions = 1
    with pytest.raises(ApiException) as exc:
        co.replace_namespaced_lease("gpuhook-scheduler", NS, b)
    body = json.loads(exc.value.body)
    assert exc.value.status == 409 and body["message"] == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io "gpuhook-scheduler": the '
        'object has been modified; please apply your changes to the latest version and try '
        'again')
    assert co.read_namespaced_lease("gpuhook-scheduler", NS).spec.holder_identity == \
        "replica-a"
    # Release as client-go does on shutdown: an empty holder, through a patch.
    out = co.patch_namespaced_lease("gpuhook-scheduler", NS,
                                    {"spec": {"holderIdentity": None,
                                              "leaseDurationSeconds": 1}})
    assert out.spec.holder_identity is None and out.spec.lease_duration_seconds == 1
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_lease("gpuhook-scheduler", NS,
                                  {"spec": {"leaseDurationSeconds": 0}})
    assert exc.value.status == 422 and "spec.leaseDurationSeconds" in \
        json.loads(exc.value.body)["message"]
    assert [x.metadata.name for x in co.list_namespaced_lease(NS).items] == [
        "gpuhook-scheduler"]
    st = co.delete_namespaced_lease("gpuhook-scheduler", NS)
    assert st.status == "Success"
    with pytest.raises(ApiException) as exc:
        co.read_namespaced_lease("gpuhook-scheduler", NS)
    assert exc.value.status == 404


def test_concurrent_lease_replaces_from_one_version_let_exactly_one_win(api, kclient):
    co = k8s.CoordinationV1Api(kclient)
    co.create_namespaced_lease(NS, k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="race"),
                                               spec=k8s.V1LeaseSpec(lease_duration_seconds=5)))
    cur = api.request("GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/race" % NS,
                      token=TOKEN).json
    results = []

    def take(who):
        body = json.loads(json.dumps(cur))
        body["spec"]["holderIdentity"] = who
        r = api.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/race" % NS,
                        body, token=TOKEN)
        results.append((r.status, who))
    threads = [threading.Thread(target=take, args=("r%d" % i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [w for s, w in results if s == 200]
    assert len(wins) == 1 and sorted(s for s, _ in results) == [200] + [409] * 7
    assert co.read_namespaced_lease("race", NS).spec.holder_identity == wins[0]


# --- EndpointSlices and Nodes ------------------------------------------------------------------


def test_endpointslices_list_and_watch_by_service_name(api, kclient):
    d = k8s.DiscoveryV1Api(kclient)
    api.put_object(sample_endpointslice("agents-abc", "gpuhook-agent",
                                        ["127.0.0.1", "127.0.0.2"], port=9101,
                                        node_names=["gpu-1", "gpu-2"]))
    d.create_namespaced_endpoint_slice(NS, sample_endpointslice("other-xyz", "other",
                                                                ["10.0.0.9"]))
    sel = "kubernetes.io/service-name=gpuhook-agent"
    lst = d.list_namespaced_endpoint_slice(NS, label_selector=sel)
    assert [s.metadata.name for s in lst.items] == ["agents-abc"]
    sl = lst.items[0]
    assert [e.addresses[0] for e in sl.endpoints] == ["127.0.0.1", "127.0.0.2"]
    assert [e.node_name for e in sl.endpoints] == ["gpu-1", "gpu-2"]
    assert sl.ports[0].port == 9101 and sl.endpoints[0].conditions.ready is True
    w = k8s_watch.Watch()
    stream = w.stream(d.list_namespaced_endpoint_slice, NS, label_selector=sel,
                      resource_version=lst.metadata.resource_version, timeout_seconds=5)
    threading.Timer(0.3, lambda: api.put_object(sample_endpointslice(
        "agents-abc", "gpuhook-agent", ["127.0.0.1"], port=9101))).start()
    ev = collect(stream, 1)[0]
    w.stop()
    assert ev["type"] == "MODIFIED" and len(ev["object"].endpoints) == 1
    with pytest.raises(ApiException) as exc:
        d.create_namespaced_endpoint_slice(NS, {"apiVersion": "discovery.k8s.io/v1",
                                                "kind": "EndpointSlice",
                                                "metadata": {"name": "bad"},
                                                "addressType": "IPv5", "endpoints": []})
    assert exc.value.status == 422 and "addressType" in json.loads(exc.value.body)["message"]


def test_nodes_list_get_and_watch_with_gpu_labels_and_allocatable(api, kclient):
    core = k8s.CoreV1Api(kclient)
    api.put_object(sample_node("gpu-1", gpu_memory_mib=143771, gpu_count=1))
    api.put_object(sample_node("gpu-2", gpu_memory_mib=81559, gpu_count=2,
                               product="NVIDIA-A100-SXM4-80GB", allocatable_gpus=0))
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu-1"}})
    assert sorted(n.metadata.name for n in core.list_node().items) == ["cpu-1", "gpu-1",
                                                                       "gpu-2"]
    gpus = core.list_node(label_selector="nvidia.com/gpu.present=true")
    assert sorted(n.metadata.name for n in gpus.items) == ["gpu-1", "gpu-2"]
    big = core.list_node(label_selector="nvidia.com/gpu.memory>100000")
    assert [n.metadata.name for n in big.items] == ["gpu-1"]
    n = core.read_node("gpu-2")
    assert n.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert n.status.allocatable["nvidia.com/gpu"] == "0"
    assert n.status.capacity["nvidia.com/gpu"] == "2"
    assert n.metadata.namespace is None
    w = k8s_watch.Watch()
    stream = w.stream(core.list_node, label_selector="nvidia.com/gpu.present",
                      resource_version=gpus.metadata.resource_version, timeout_seconds=5)

    def later():
        core.patch_node_status("gpu-2", {"status": {"allocatable": {"nvidia.com/gpu": "2"}}})
        core.delete_node("gpu-1")
    threading.Timer(0.3, later).start()
    events = collect(stream, 2)
    w.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("MODIFIED", "gpu-2"), ("DELETED", "gpu-1")]
    assert events[0]["object"].status.allocatable["nvidia.com/gpu"] == "2"
    r = api.request("GET", "/api/v1/namespaces/%s/nodes" % NS, token=TOKEN)
    assert r.status == 404


def test_discovery_serves_the_groups_the_official_client_asks_for(api, kclient):
    groups = k8s.ApisApi(kclient).get_api_versions()
    assert {g.name for g in groups.groups} >= {"tekton.dev", "coordination.k8s.io",
                                                "discovery.k8s.io"}
    assert [r.name for r in k8s.CoordinationV1Api(kclient).get_api_resources().resources] \
        == ["leases"]
    assert [r.name for r in k8s.DiscoveryV1Api(kclient).get_api_resources().resources] == [
        "endpointslices"]
    core = {r.name: r for r in k8s.CoreV1Api(kclient).get_api_resources().resources}
    assert "watch" in core["nodes"].verbs and not core["nodes"].namespaced
    tekton = api.request("GET", "/apis/tekton.dev/v1", token=TOKEN).json
    prs = {r["name"]: r for r in tekton["resources"]}
    assert {"watch", "patch", "update"} <= set(prs["pipelineruns"]["verbs"])
    assert "pipelineruns/status" in prs
    assert k8s.CoreApi(kclient).get_api_versions().versions == ["v1"]
