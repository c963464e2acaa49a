"""Self-test of the stand-in kube-apiserver's list, watch, patch, Lease, EndpointSlice, Node and
Tekton-status parts (tests/kubeapi/kube_*.py), checked with a client nobody here wrote:
Debian's python3-kubernetes (the official Python client), and with http.client and a raw
socket for the wire format of the watch stream.

The admission queue (issue 18), the cluster GPU view (19) and the GitHub reporting (20) will
be tested against these behaviours, so each is proven here first.
"""

import datetime
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

import pytest

try:
    from kubernetes import client as k8s
except ImportError:  # a missing client must fail the test, not skip it
    pytest.fail("needs Debian's python3-kubernetes under /usr/bin/python3: run "
                "scripts/install-deps.sh", pytrace=False)
from kubernetes import watch as k8s_watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))

from fake_apiserver import FakeApiServer, make_tls, sample_pipelinerun, write_token  # noqa: E402
from kube_client import run_reason, sample_endpointslice, sample_node  # noqa: E402

NS = "tekton-pipelines"
TOKEN = "watch-token"
G, V, P = "tekton.dev", "v1", "pipelineruns"
COLLECTION = "/apis/tekton.dev/v1/namespaces/%s/pipelineruns" % NS


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    tls = str(tmp_path_factory.mktemp("tls"))
    make_tls(tls)
    token_file = str(tmp_path_factory.mktemp("sa") / "token")
    write_token(token_file, TOKEN)
    srv = FakeApiServer(str(tmp_path_factory.mktemp("state")), tls_dir=tls,
                        token_file=token_file)
    srv.bookmark_seconds = 0.3
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(api_server):
    api_server.reset()
    api_server.watch_config(history=1000, bookmark_seconds=0.3)
    return api_server


@pytest.fixture
def kclient(api_server):
    cfg = k8s.Configuration()
    cfg.host = api_server.url
    cfg.ssl_ca_cert = api_server.ca_file
    cfg.api_key = {"authorization": "Bearer " + TOKEN}
    c = k8s.ApiClient(cfg)
    yield c
    c.close()


def run_obj(name, labels=None, pending=False):
    obj = sample_pipelinerun(name, NS)
    obj["metadata"]["labels"].update(labels or {})
    if pending:
        obj["spec"]["status"] = "PipelineRunPending"
    return obj


def create_runs(kclient, *objs):
    co = k8s.CustomObjectsApi(kclient)
    return [co.create_namespaced_custom_object(G, V, NS, P, o) for o in objs]


def names(items):
    return [o["metadata"]["name"] if isinstance(o, dict) else o.metadata.name for o in items]


def collect(stream, count, timeout=10):
    """The first count events of an official-client watch stream, read in a thread."""
    out, done = [], threading.Event()

    def reader():
        try:
            for ev in stream:
                out.append(ev)
                if len(out) >= count:
                    break
        except Exception as e:  # noqa: BLE001 - handed to the test
            out.append(e)
        done.set()
    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(timeout), "only %d of %d events: %r" % (len(out), count, out)
    return out


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


def read_chunks(api, path, until, timeout=10):
    """GET path on a raw TLS socket; returns (status line, headers, [chunk bytes]) after
    the chunk for which until(chunks) is true, checking the chunked framing by hand."""
    raw = socket.create_connection((api.host, api.port), timeout=timeout)
    sock = api.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                      "Accept: application/json\r\n\r\n" % (path, TOKEN)).encode())
        f = sock.makefile("rb")
        status = f.readline().decode().strip()
        headers = {}
        while True:
            line = f.readline().decode()
            if line in ("\r\n", ""):
                break
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        chunks = []
        while True:
            size_line = f.readline()
            assert size_line.endswith(b"\r\n"), size_line
            size = int(size_line.strip(), 16)
            if size == 0:
                assert f.readline() == b"\r\n"
                chunks.append(b"")
                break
            data = f.read(size)
            assert f.read(2) == b"\r\n"
            chunks.append(data)
            if until(chunks):
                break
        return status, headers, chunks
    finally:
        sock.close()


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
