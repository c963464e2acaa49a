#!/usr/bin/python3
"""Records a list-and-watch session against the stand-in API into tests/fixtures/kubeapi/.

The files hold the response bodies exactly as a client reads them after HTTP's chunked
framing is removed (what libcurl hands a write callback), so tests/test_kwatch.c can feed
them to kwatch.c at any split. Run it with /usr/bin/python3 from the repository root:

    /usr/bin/python3 tests/kubeapi/record_watch.py [OUTDIR]

It writes:
  list.json         a PipelineRunList of three gpuhook runs (labelSelector applied)
  watch.ndjson      a watch from that list's resourceVersion with bookmarks: a create,
                    status changes, a Lease write the selector hides, a delete, a bookmark,
                    then the stream's normal end (timeoutSeconds)
  watch-410.ndjson  a watch from a compacted resourceVersion: one ERROR event, 410 Expired
  relist.json       the list after the session, for the resync
  meta.json         the resourceVersions the test expects
"""
import http.client
import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fake_apiserver import FakeApiServer, sample_pipelinerun  # noqa: E402

NS = "tekton-pipelines"
COLL = "/apis/tekton.dev/v1/namespaces/%s/pipelineruns" % NS
SEL = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgpuhook"


def run(name, variant, group, pending):
    obj = sample_pipelinerun(name=name, namespace=NS)
    obj["metadata"]["labels"].update({"gpuhook.dev/variant": variant,
                                      "gpuhook.dev/group": group})
    if pending:
        obj["spec"]["status"] = "PipelineRunPending"
        obj["metadata"]["annotations"] = {"gpuhook.dev/queued-since": "2026-12-02T01:30:00Z",
                                          "gpuhook.dev/waiting-for": "max_running"}
    return obj


def get_body(srv, path):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()  # http.client removes the chunked framing
    conn.close()
    return resp.status, body


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "fixtures", "kubeapi")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as state:
        srv = FakeApiServer(state)
        srv.tekton_controller = "react"
        srv.bookmark_seconds = 3600
        with srv:
            for name, variant, group, pending in (
                    ("gpu-a-original-0000000001", "original", "o-r-main", False),
                    ("gpu-b-original-0000000002", "original", "o-r-main", True),
                    ("gpu-c-lite-0000000003", "lite", "o-r-dev", True)):
                r = srv.create(run(name, variant, group, pending))
                assert r.status == 201, r
            srv.set_run_status("gpu-a-original-0000000001", "Running")
            status, listing = get_body(srv, COLL + "?" + SEL)
            assert status == 200
            list_rv = json.loads(listing)["metadata"]["resourceVersion"]

            result = {}

            def watch():
                result["status"], result["body"] = get_body(
                    srv, COLL + "?" + SEL + "&watch=1&allowWatchBookmarks=true"
                    "&resourceVersion=" + list_rv + "&timeoutSeconds=20")

            t = threading.Thread(target=watch)
            t.start()
            deadline = time.monotonic() + 10
            while srv.watch_config()["watchers"] < 1:
                assert time.monotonic() < deadline, "watch did not open"
                time.sleep(0.05)
            srv.create(run("gpu-d-lite-0000000004", "lite", "o-r-dev", True))
            srv.set_run_status("gpu-a-original-0000000001", "Succeeded")
            srv.put_object({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": "gpuhook-scheduler", "namespace": NS},
                            "spec": {"holderIdentity": "replica-a",
                                     "leaseDurationSeconds": 15}})
            srv.delete_object("tekton.dev/v1", "PipelineRun", "gpu-c-lite-0000000003", NS)
            srv.force_bookmark()
            time.sleep(0.5)
            srv.close_watches()
            t.join(30)
            assert result["status"] == 200
            bookmark_rv = srv.watch_config()["resourceVersion"]

            srv.compact()
            srv.create(run("gpu-e-lite-0000000005", "lite", "o-r-dev", True))
            status, gone = get_body(srv, COLL + "?" + SEL + "&watch=1&resourceVersion=" + list_rv)
            assert status == 200
            status, relist = get_body(srv, COLL + "?" + SEL)
            assert status == 200

    for name, data in (("list.json", listing), ("watch.ndjson", result["body"]),
                       ("watch-410.ndjson", gone), ("relist.json", relist)):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"list_resourceVersion": list_rv,
                   "bookmark_resourceVersion": str(bookmark_rv),
                   "relist_resourceVersion": json.loads(relist)["metadata"]["resourceVersion"]},
                  f, indent=2)
        f.write("\n")
    print("recorded into", out)


if __name__ == "__main__":
    main()
