"""Fixtures and helpers shared by the self-tests of the stand-in kube-apiserver's list,
watch, patch and object parts (test_kubeapi_watch.py, test_kubeapi_objects.py): a TLS
server with a token, an official-client ApiClient for it, and readers of watch streams.
"""

import os
import socket
import sys
import threading

import pytest

try:
    from kubernetes import client as k8s
except ImportError:  # a missing client must fail the tests, not skip them
    pytest.fail("needs Debian's python3-kubernetes under /usr/bin/python3: run "
                "scripts/install-deps.sh", pytrace=False)
from kubernetes import watch as k8s_watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))

from fake_apiserver import FakeApiServer, make_tls, sample_pipelinerun, write_token  # noqa: E402
from kube_client import run_reason, sample_endpointslice, sample_node  # noqa: E402

# What the test modules import from here; they load the fixtures with
# pytest_plugins = ["kubeapi_fixtures"].
__all__ = ["ApiException", "COLLECTION", "FakeApiServer", "G", "NS", "P", "TOKEN", "V",
           "collect", "create_runs", "k8s", "k8s_watch", "names", "read_chunks", "run_obj",
           "run_reason", "sample_endpointslice", "sample_node", "sample_pipelinerun"]

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
