"""Self-test of the stand-in kube-apiserver's list and watch (tests/kubeapi/kube_*.py),
checked with a client nobody here wrote: Debian's python3-kubernetes (the official Python
client), and with http.client and a raw socket for the wire format of the watch stream.
Selectors are also checked against apimachinery's own test vectors.

The admission queue (issue 18), the cluster GPU view (19) and the GitHub reporting (20) will
be tested against these behaviours, so each is proven here first.
"""

import http.client
import json
import threading
import time
import urllib.parse

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
    names,
    read_chunks,
    run_obj,
    sample_node,
    sample_pipelinerun,
)

pytest_plugins = ["kubeapi_fixtures"]


# --- list and selectors -------------------------------------------------------------------


def test_official_client_lists_runs_with_label_and_field_selectors(api, kclient):
    create_runs(kclient,
                run_obj("run-a", {"gpuhook.dev/variant": "lite", "gpuhook.dev/group": "g1"}),
                run_obj("run-b", {"gpuhook.dev/variant": "original", "gpuhook.dev/group": "g1"}),
                run_obj("run-c", {"gpuhook.dev/variant": "lite"}))
    co = k8s.CustomObjectsApi(kclient)

    def sel(s=None, f=None):
        kw = {}
        if s is not None:
            kw["label_selector"] = s
        if f is not None:
            kw["field_selector"] = f
        return sorted(names(co.list_namespaced_custom_object(G, V, NS, P, **kw)["items"]))

    assert sel() == ["run-a", "run-b", "run-c"]
    assert sel("gpuhook.dev/variant=lite") == ["run-a", "run-c"]
    assert sel("gpuhook.dev/variant==lite,gpuhook.dev/group=g1") == ["run-a"]
    assert sel("gpuhook.dev/variant!=lite") == ["run-b"]
    assert sel("gpuhook.dev/group!=g1") == ["run-c"]  # != matches a missing key too
    assert sel("gpuhook.dev/variant in (original, other)") == ["run-b"]
    assert sel("gpuhook.dev/group notin (g1)") == ["run-c"]
    assert sel("gpuhook.dev/group") == ["run-a", "run-b"]
    assert sel("!gpuhook.dev/group") == ["run-c"]
    assert sel("app.kubernetes.io/managed-by=gpuhook, !gpuhook.dev/group") == ["run-c"]
    assert sel(f="metadata.name=run-b") == ["run-b"]
    assert sel(f="metadata.name!=run-b,metadata.namespace=" + NS) == ["run-a", "run-c"]
    assert sel("gpuhook.dev/variant=lite", "metadata.name=run-c") == ["run-c"]
    everywhere = co.list_cluster_custom_object(G, V, P, label_selector="gpuhook.dev/group")
    assert sorted(names(everywhere["items"])) == ["run-a", "run-b"]


# The vectors of apimachinery's own tests (pkg/labels/selector_test.go: TestSelectorParse,
# TestSelectorMatches), which labels.Parse must pass.
UPSTREAM_GOOD = ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1",
                 "x>1,z<5"]
UPSTREAM_BAD = ["x=a||y=b", "x==a==b", "!x=a", "x<a"]
UPSTREAM_MATCH = [("", {"x": "y"}), ("x=y", {"x": "y"}), ("x=y,z=w", {"x": "y", "z": "w"}),
                  ("x!=y,z!=w", {"x": "z", "z": "a"}), ("notin=in", {"notin": "in"}),
                  ("x", {"x": "z"}), ("!x", {"y": "z"}), ("x>1", {"x": "2"}),
                  ("x<1", {"x": "0"})]
UPSTREAM_NO_MATCH = [("x=z", {}), ("x=y", {"x": "z"}), ("x=y,z=w", {"x": "w", "z": "w"}),
                     ("x!=y,z!=w", {"x": "z", "z": "w"}), ("x", {"y": "z"}),
                     ("!x", {"x": "z"}), ("x>1", {"x": "0"}), ("x<1", {"x": "2"})]


def test_label_selector_parser_passes_apimachinery_vectors():
    from kube_selectors import SelectorError, parse_labels
    for good in UPSTREAM_GOOD:
        parse_labels(good)
    for bad in UPSTREAM_BAD:
        with pytest.raises(SelectorError):
            parse_labels(bad)
    for sel, labels in UPSTREAM_MATCH:
        assert parse_labels(sel).matches({"metadata": {"labels": labels}}), (sel, labels)
    for sel, labels in UPSTREAM_NO_MATCH:
        assert not parse_labels(sel).matches({"metadata": {"labels": labels}}), (sel, labels)


@pytest.mark.parametrize("selector,message", [
    ("!!!", "unable to parse requirement: found '!', expected: identifier"),
    ("app in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("a in (x", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("=x", "found '=', expected: !, identifier, or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    ("x==a==b", "found '==', expected: ',' or 'end of string'"),
    ("-bad=x", 'unable to parse requirement: key: Invalid value: "-bad": '),
    ("a=-x", 'unable to parse requirement: values[0]: Invalid value: "-x": '),
    ("a in ()", "unable to parse requirement: values: Invalid value: []string{}: for 'in', "
                "'notin' operators, values set can't be empty"),
])
def test_malformed_label_selector_gets_400_with_labels_parse_wording(api, selector, message):
    r = api.request("GET", COLLECTION + "?labelSelector=" + urllib.parse.quote(selector),
                    token=TOKEN)
    assert r.status == 400 and r.json["reason"] == "BadRequest", r
    assert r.json["message"].startswith(message), r.json["message"]


def test_unsupported_field_selector_gets_400(api):
    r = api.request("GET", COLLECTION + "?fieldSelector=spec.status%3DCancelled", token=TOKEN)
    assert r.status == 400 and r.json["message"] == "field label not supported: spec.status"


def test_list_has_a_store_wide_resource_version_and_pages_with_limit_and_continue(api,
                                                                                   kclient):
    created = create_runs(kclient, *[run_obj("page-%d" % i) for i in range(5)])
    rvs = [int(o["metadata"]["resourceVersion"]) for o in created]
    assert rvs == sorted(rvs) and len(set(rvs)) == 5
    for o in created:
        m = o["metadata"]
        assert m["uid"] and m["generation"] == 1 and m["creationTimestamp"].endswith("Z")
    co = k8s.CustomObjectsApi(kclient)
    first = co.list_namespaced_custom_object(G, V, NS, P, limit=2)
    assert names(first["items"]) == ["page-0", "page-1"]
    assert first["metadata"]["remainingItemCount"] == 3
    assert first["metadata"]["resourceVersion"] == str(rvs[-1])
    second = co.list_namespaced_custom_object(G, V, NS, P, limit=2,
                                              _continue=first["metadata"]["continue"])
    third = co.list_namespaced_custom_object(G, V, NS, P, limit=2,
                                             _continue=second["metadata"]["continue"])
    assert names(second["items"]) + names(third["items"]) == ["page-2", "page-3", "page-4"]
    assert "continue" not in third["metadata"]
    # A Lease write moves the same counter: resourceVersions are store-wide.
    lease = k8s.CoordinationV1Api(kclient).create_namespaced_lease(NS, k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name="rv-check"), spec=k8s.V1LeaseSpec()))
    assert int(lease.metadata.resource_version) == rvs[-1] + 1


# --- watch ---------------------------------------------------------------------------------


def test_watch_wire_format_is_a_chunked_stream_of_one_json_event_per_line(api, kclient):
    create_runs(kclient, run_obj("wire-a"))
    status, headers, chunks = read_chunks(
        api, COLLECTION + "?watch=1&timeoutSeconds=1", lambda c: False)
    assert status == "HTTP/1.1 200 OK"
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert headers["content-type"] == "application/json"
    assert chunks[-1] == b""  # the stream ends with the last chunk when timeoutSeconds pass
    events = [json.loads(c) for c in chunks[:-1]]
    for c in chunks[:-1]:
        assert c.endswith(b"\n") and c.count(b"\n") == 1
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED",
                                                                                "wire-a")]


@pytest.mark.parametrize("framing", [{"split_bytes": 7}, {"coalesce": True}])
def test_watch_framing_can_split_or_coalesce_events_and_clients_still_read_lines(
        api, kclient, framing):
    create_runs(kclient, run_obj("frame-a"), run_obj("frame-b"))
    api.watch_config(**framing)
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&timeoutSeconds=1", lambda c: False)
    body = b"".join(chunks)
    lines = body.split(b"\n")
    assert lines[-1] == b"" and [json.loads(x)["object"]["metadata"]["name"]
                                 for x in lines[:-1]] == ["frame-a", "frame-b"]
    if "split_bytes" in framing:
        assert max(len(c) for c in chunks) == 7 and len(chunks) > 20
    else:
        assert len(chunks) == 2 and chunks[0].count(b"\n") == 2  # one chunk, then the end
    co = k8s.CustomObjectsApi(kclient)
    w = k8s_watch.Watch()
    got = collect(w.stream(co.list_namespaced_custom_object, G, V, NS, P, timeout_seconds=5),
                  2)
    w.stop()
    assert [e["object"]["metadata"]["name"] for e in got] == ["frame-a", "frame-b"]


def test_watch_through_http_client_sees_changes_as_they_happen(api, kclient):
    rv = create_runs(kclient, run_obj("live-a"))[0]["metadata"]["resourceVersion"]
    conn = api.connection(timeout=10)
    conn.request("GET", COLLECTION + "?watch=true&resourceVersion=%s&timeoutSeconds=5" % rv,
                 headers={"Authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    time.sleep(0.2)
    create_runs(kclient, run_obj("live-b"))
    api.request("DELETE", COLLECTION + "/live-a", token=TOKEN)
    lines = [json.loads(resp.readline()) for _ in range(2)]
    conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "live-b"), ("DELETED", "live-a")]
    assert int(lines[1]["object"]["metadata"]["resourceVersion"]) > \
        int(lines[0]["object"]["metadata"]["resourceVersion"])


def test_official_watch_resumes_from_a_resource_version_with_label_selector(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    create_runs(kclient, run_obj("old", {"gpuhook.dev/variant": "lite"}))
    rv = co.list_namespaced_custom_object(G, V, NS, P)["metadata"]["resourceVersion"]
    create_runs(kclient, run_obj("w-lite", {"gpuhook.dev/variant": "lite"}),
                run_obj("w-orig", {"gpuhook.dev/variant": "original"}))
    # A label change makes a run leave the selection (DELETED) and another enter it (ADDED).
    co.patch_namespaced_custom_object(G, V, NS, P, "w-lite",
                                      {"metadata": {"labels": {"gpuhook.dev/variant": "x"}}})
    co.patch_namespaced_custom_object(G, V, NS, P, "w-orig",
                                      {"metadata": {"labels": {"gpuhook.dev/variant": "lite"}}})
    co.patch_namespaced_custom_object(G, V, NS, P, "w-orig",
                                      {"metadata": {"annotations": {"a": "b"}}})
    w = k8s_watch.Watch()
    events = collect(w.stream(co.list_namespaced_custom_object, G, V, NS, P,
                              label_selector="gpuhook.dev/variant=lite",
                              resource_version=rv, timeout_seconds=5), 4)
    w.stop()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w-lite"), ("DELETED", "w-lite"), ("ADDED", "w-orig"),
        ("MODIFIED", "w-orig")]
    assert events[3]["object"]["metadata"]["annotations"] == {"a": "b"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    # Without a resourceVersion the watch starts with the current state as ADDED events.
    w = k8s_watch.Watch()
    first = collect(w.stream(co.list_namespaced_custom_object, G, V, NS, P,
                             label_selector="gpuhook.dev/variant=lite", timeout_seconds=5), 2)
    w.stop()
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in first) == [
        ("ADDED", "old"), ("ADDED", "w-orig")]


def test_official_watch_resumes_by_itself_after_the_server_ends_the_stream(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    rv = create_runs(kclient, run_obj("resume-0"))[0]["metadata"]["resourceVersion"]
    w = k8s_watch.Watch()
    stream = w.stream(co.list_namespaced_custom_object, G, V, NS, P, resource_version=rv)
    out, got = [], threading.Semaphore(0)

    def reader():
        for ev in stream:
            out.append((ev["type"], ev["object"]["metadata"]["name"]))
            got.release()
            if len(out) == 3:
                w.stop()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    create_runs(kclient, run_obj("resume-1"))
    assert got.acquire(timeout=5)
    # The server ends every stream, as the apiserver does at a watch's timeout; the client
    # watches again from the last resourceVersion it saw and misses nothing.
    api.close_watches()
    create_runs(kclient, run_obj("resume-2"))
    deadline = time.monotonic() + 5
    while api.watch_config()["watchers"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    create_runs(kclient, run_obj("resume-3"))
    assert got.acquire(timeout=5) and got.acquire(timeout=5)
    t.join(5)
    assert out == [("ADDED", "resume-1"), ("ADDED", "resume-2"), ("ADDED", "resume-3")]
    # The server notices that the client left and closes its side within a second or so.
    deadline = time.monotonic() + 5
    while api.watch_config()["watchers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.watch_config()["watchers"] == 0
    rv1 = api.run("resume-1")["metadata"]["resourceVersion"]
    queries = [e["query"] for e in api.requests() if "watch=" in e["query"]]
    assert [q for q in queries if "resourceVersion=%s&" % rv in q + "&"]
    assert [q for q in queries if "resourceVersion=%s&" % rv1 in q + "&"]


def test_bookmarks_carry_only_the_resource_version(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    rv = create_runs(kclient, run_obj("bm"))[0]["metadata"]["resourceVersion"]
    # A write that the selector filters out still moves the bookmark's resourceVersion.
    create_runs(kclient, run_obj("other", {"skip": "yes"}))
    w = k8s_watch.Watch()
    events = collect(w.stream(co.list_namespaced_custom_object, G, V, NS, P,
                              label_selector="!skip", resource_version=rv,
                              allow_watch_bookmarks=True, timeout_seconds=5), 1)
    w.stop()
    bm = events[0]
    assert bm["type"] == "BOOKMARK", bm
    assert bm["raw_object"] == {"kind": "PipelineRun", "apiVersion": "tekton.dev/v1",
                                "metadata": {"resourceVersion": str(int(rv) + 1)}}
    # No bookmarks unless asked for.
    api.watch_config(bookmark_seconds=0.1)
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&labelSelector=!skip"
                               "&resourceVersion=%s&timeoutSeconds=1" % rv, lambda c: False)
    assert chunks == [b""]


def test_forced_bookmark_reaches_a_watch_at_once(api, kclient):
    api.watch_config(bookmark_seconds=3600)
    rv = create_runs(kclient, run_obj("fb"))[0]["metadata"]["resourceVersion"]
    threading.Timer(0.3, api.force_bookmark).start()
    started = time.monotonic()
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&allowWatchBookmarks=true"
                               "&resourceVersion=%s&timeoutSeconds=5" % rv,
                               lambda c: len(c) == 1)
    assert time.monotonic() - started < 3
    assert json.loads(chunks[0])["type"] == "BOOKMARK"


def test_resource_version_older_than_the_history_window_gets_410_expired(api, kclient):
    api.watch_config(history=3)
    rv = create_runs(kclient, run_obj("gone-0"))[0]["metadata"]["resourceVersion"]
    create_runs(kclient, *[run_obj("gone-%d" % i) for i in range(1, 5)])
    state = api.watch_config()
    assert state["capacity"] == 3 and int(state["floor"]) > int(rv)
    # The real cacher answers 200 and puts the 410 in the stream as an ERROR event.
    status, _, chunks = read_chunks(api, COLLECTION + "?watch=1&resourceVersion=%s" % rv,
                                    lambda c: False)
    assert status == "HTTP/1.1 200 OK" and chunks[-1] == b""
    err = json.loads(chunks[0])
    assert err["type"] == "ERROR"
    assert err["object"] == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Failure", "reason": "Expired", "code": 410,
                             "message": "too old resource version: %s (%s)"
                                        % (rv, state["floor"])}
    co = k8s.CustomObjectsApi(kclient)
    w = k8s_watch.Watch()
    with pytest.raises(ApiException) as exc:
        for _ in w.stream(co.list_namespaced_custom_object, G, V, NS, P, resource_version=rv,
                          timeout_seconds=5):
            pass
    assert exc.value.status == 410 and "too old resource version" in exc.value.reason
    # Without timeout_seconds the client retries once from the same version, then raises.
    w = k8s_watch.Watch()
    with pytest.raises(ApiException) as exc:
        for _ in w.stream(co.list_namespaced_custom_object, G, V, NS, P, resource_version=rv):
            pass
    assert exc.value.status == 410
    # A re-list gives a version to watch from again.
    fresh = co.list_namespaced_custom_object(G, V, NS, P)["metadata"]["resourceVersion"]
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&resourceVersion=%s"
                               "&timeoutSeconds=1" % fresh, lambda c: False)
    assert chunks == [b""]
    # A compaction forgets the history: a version from before it is too old, the current
    # one is not.
    create_runs(kclient, run_obj("after-relist"))
    state = api.compact()
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&resourceVersion=%s"
                               "&timeoutSeconds=1" % state["resourceVersion"], lambda c: False)
    assert chunks == [b""]
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&resourceVersion=%s" % fresh,
                               lambda c: False)
    assert json.loads(chunks[0])["object"]["code"] == 410


def test_send_initial_events_ends_the_initial_list_with_an_annotated_bookmark(api, kclient):
    create_runs(kclient, run_obj("init-a"), run_obj("init-b"))
    rv = api.watch_config()["resourceVersion"]
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&sendInitialEvents=true"
                               "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
                               "&timeoutSeconds=5", lambda c: len(c) == 3)
    events = [json.loads(c) for c in chunks]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("ADDED", "init-a"), ("ADDED", "init-b"), ("BOOKMARK", None)]
    assert events[2]["object"]["metadata"] == {
        "resourceVersion": rv, "annotations": {"k8s.io/initial-events-end": "true"}}
    r = api.request("GET", COLLECTION + "?watch=1&sendInitialEvents=true", token=TOKEN)
    assert r.status == 422 and r.json["reason"] == "Invalid"
    assert {c["field"] for c in r.json["details"]["causes"]} == {"resourceVersionMatch",
                                                                  "allowWatchBookmarks"}


def test_watch_from_a_future_resource_version_fails_with_504_too_large(api, kclient):
    api.watch_config(fresh_wait_seconds=0.2)
    rv = int(api.watch_config()["resourceVersion"])
    _, _, chunks = read_chunks(api, COLLECTION + "?watch=1&resourceVersion=%d" % (rv + 5),
                               lambda c: False)
    err = json.loads(chunks[0])
    assert err["type"] == "ERROR" and err["object"]["code"] == 504
    assert err["object"]["reason"] == "Timeout" and err["object"]["message"] == \
        "Too large resource version: %d, current: %d" % (rv + 5, rv)


@pytest.mark.parametrize("drop", [False, True])
def test_close_watches_ends_or_drops_every_open_stream(api, kclient, drop):
    co = k8s.CustomObjectsApi(kclient)
    rv = create_runs(kclient, run_obj("cw"))[0]["metadata"]["resourceVersion"]
    conn = api.connection(timeout=10)
    conn.request("GET", COLLECTION + "?watch=1&resourceVersion=%s" % rv,
                 headers={"Authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    deadline = time.monotonic() + 5
    while api.watch_config()["watchers"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    co.patch_namespaced_custom_object(G, V, NS, P, "cw", {"metadata": {"labels": {"a": "b"}}})
    assert json.loads(resp.readline())["type"] == "MODIFIED"
    assert api.close_watches(drop=drop)["watchers"] >= 0
    if drop:
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    else:
        assert resp.read() == b""  # the last chunk: a clean end of the stream
    conn.close()
    deadline = time.monotonic() + 5
    while api.watch_config()["watchers"] != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.watch_config()["watchers"] == 0


def test_dry_run_patch_and_delete_change_nothing(api, kclient):
    co = k8s.CustomObjectsApi(kclient)
    rv = create_runs(kclient, run_obj("dry"))[0]["metadata"]["resourceVersion"]
    out = co.patch_namespaced_custom_object(G, V, NS, P, "dry", {"metadata": {
        "labels": {"d": "1"}}}, dry_run="All")
    assert out["metadata"]["labels"]["d"] == "1"
    assert "d" not in api.run("dry")["metadata"]["labels"]
    lease = k8s.CoordinationV1Api(kclient)
    lease.create_namespaced_lease(NS, k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="dry")))
    lease.delete_namespaced_lease("dry", NS, dry_run="All")
    assert lease.read_namespaced_lease("dry", NS).metadata.name == "dry"
    assert api.watch_config()["resourceVersion"] == str(int(rv) + 1)


def test_bad_watch_resource_version_gets_400(api):
    r = api.request("GET", COLLECTION + "?watch=1&resourceVersion=abc", token=TOKEN)
    assert r.status == 400 and "invalid resource version" in r.json["message"]


def test_restart_keeps_objects_and_resets_history_and_the_counter_never_goes_back(tmp_path):
    srv = FakeApiServer(str(tmp_path / "state"))
    srv.start()
    try:
        a = srv.create(sample_pipelinerun("keep", NS)).json
        lease_path = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % NS
        assert srv.request("POST", lease_path, {"metadata": {"name": "l"},
                                                "spec": {"holderIdentity": "a"}}).status == 201
        srv.put_object(sample_node("gpu-1", gpu_memory_mib=1024))
        b = srv.create(sample_pipelinerun("drop", NS)).json
        r = srv.request("DELETE", COLLECTION + "/drop")
        deleted_rv = int(r.json["metadata"]["resourceVersion"])
        assert deleted_rv == int(b["metadata"]["resourceVersion"]) + 1
        srv.restart()
        lst = srv.request("GET", COLLECTION).json
        assert names(lst["items"]) == ["keep"] and int(lst["metadata"]["resourceVersion"]) \
            == deleted_rv
        assert srv.request("GET", lease_path + "/l").json["spec"]["holderIdentity"] == "a"
        assert srv.request("GET", "/api/v1/nodes/gpu-1").json["metadata"]["labels"][
            "nvidia.com/gpu.memory"] == "1024"
        again = srv.create(sample_pipelinerun("new", NS)).json
        assert int(again["metadata"]["resourceVersion"]) == deleted_rv + 1
        conn = srv.connection()
        conn.request("GET", COLLECTION + "?watch=1&resourceVersion=%s"
                     % a["metadata"]["resourceVersion"])
        ev = json.loads(conn.getresponse().readline())
        conn.close()
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    finally:
        srv.stop()
