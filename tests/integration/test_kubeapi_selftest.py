"""Self-test of the stand-in kube-apiserver (tests/kubeapi/fake_apiserver.py).

The delivery tests trust this server to behave like the real kube-apiserver, so each
behaviour they rely on is proven here first: TLS with a generated CA, bearer tokens and
their rotation, Status objects, strict field validation, schema validation, faults and
persistence across a restart.
"""

import copy
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))

from fake_apiserver import (  # noqa: E402
    FakeApiServer,
    make_tls,
    sample_pipelinerun,
    write_serviceaccount,
    write_token,
)

NS = "tekton-pipelines"
COLLECTION = "/apis/tekton.dev/v1/namespaces/%s/pipelineruns" % NS
TOKEN = "token-one"


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    make_tls(str(d))
    return str(d)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sa") / "token")
    write_token(path, TOKEN)
    return path


@pytest.fixture(scope="module")
def api_server(tmp_path_factory, tls_dir, token_file):
    srv = FakeApiServer(str(tmp_path_factory.mktemp("state")), tls_dir=tls_dir,
                        token_file=token_file)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(api_server, token_file):
    """The shared https server with the first token, no objects, faults or log."""
    write_token(token_file, TOKEN)
    api_server.reset()
    return api_server


def pipelinerun(name="gpu-real-8-step-workflow-lite-0123456789", **spec_changes):
    obj = sample_pipelinerun(name, NS)
    obj["spec"].update(spec_changes)
    return obj


def create(api, obj, token=TOKEN, field_validation="Strict", **kw):
    return api.create(obj, ns=NS, token=token, field_validation=field_validation, **kw)


def assert_status(resp, code, reason, message=None):
    assert resp.status == code, resp
    body = resp.json
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert body["metadata"] == {}
    if message is not None:
        assert body["message"] == message
    return body


# --- TLS and authentication -----------------------------------------------------------------


def test_tls_serves_a_certificate_signed_by_the_generated_ca(api):
    for host in ("127.0.0.1", "localhost"):
        ctx = ssl.create_default_context(cafile=api.ca_file)
        conn = http.client.HTTPSConnection(host, api.port, context=ctx, timeout=5)
        conn.request("GET", "/version", headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["major"] == "1"
        conn.close()

    untrusting = ssl.create_default_context()
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=untrusting, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/version")
    conn.close()


def test_ca_and_server_files_are_laid_out_for_clients(tls_dir, tmp_path):
    for name in ("ca.crt", "ca.key", "server.crt", "server.key"):
        assert os.path.getsize(os.path.join(tls_dir, name)) > 0
    sa = write_serviceaccount(str(tmp_path / "sa"), "tok", os.path.join(tls_dir, "ca.crt"),
                              "ns-a")
    assert open(os.path.join(sa, "token")).read() == "tok\n"
    assert open(os.path.join(sa, "namespace")).read() == "ns-a"
    assert open(os.path.join(sa, "ca.crt")).read().startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize("path", ["/version", "/readyz", COLLECTION, "/apis/tekton.dev/v1"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic " + TOKEN,
                                           "Bearer"])
def test_missing_or_wrong_token_gets_401_status(api, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = api.request("GET", path, headers=headers)
    assert_status(r, 401, "Unauthorized", "Unauthorized")
    assert "details" not in r.json
    entry = api.requests()[-1]
    assert entry["status"] == 401 and entry["auth_ok"] is False


def test_token_is_sent_and_control_endpoints_need_none(api):
    r = api.request("GET", "/readyz", token=TOKEN)
    assert (r.status, r.body) == (200, b"ok")
    assert api.objects() == []  # the control endpoint answered without a token
    assert api.requests()[-1]["auth_ok"] is True


def test_token_rotation_accepts_only_the_current_token(api, token_file):
    assert create(api, pipelinerun("run-a")).status == 201
    write_token(token_file, "token-two")
    assert_status(create(api, pipelinerun("run-b"), token=TOKEN), 401, "Unauthorized")
    assert create(api, pipelinerun("run-b"), token="token-two").status == 201
    assert [o["metadata"]["name"] for o in api.objects()] == ["run-a", "run-b"]


# --- create, get, list --------------------------------------------------------------------------


def test_create_returns_201_with_server_fields_then_409_already_exists(api):
    obj = pipelinerun()
    r = create(api, obj)
    assert r.status == 201, r
    meta = r.json["metadata"]
    assert meta["name"] == obj["metadata"]["name"] and meta["namespace"] == NS
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert r.json["spec"] == obj["spec"]
    assert r.headers["Content-Type"] == "application/json"

    r = create(api, obj)
    body = assert_status(r, 409, "AlreadyExists",
                         'pipelineruns.tekton.dev "%s" already exists' % obj["metadata"]["name"])
    assert body["details"] == {"name": obj["metadata"]["name"], "group": "tekton.dev",
                               "kind": "pipelineruns"}
    stored = api.objects()
    assert len(stored) == 1 and stored[0]["metadata"]["uid"] == meta["uid"]
    assert api.objects(ns="other") == []


def test_get_and_list_return_created_runs(api):
    create(api, pipelinerun("run-a"))
    r = api.request("GET", COLLECTION + "/run-a", token=TOKEN)
    assert r.status == 200 and r.json["metadata"]["name"] == "run-a"
    r = api.request("GET", COLLECTION, token=TOKEN)
    assert r.json["kind"] == "PipelineRunList"
    assert [o["metadata"]["name"] for o in r.json["items"]] == ["run-a"]
    r = api.request("GET", COLLECTION + "/missing", token=TOKEN)
    assert_status(r, 404, "NotFound", 'pipelineruns.tekton.dev "missing" not found')


def test_discovery_lists_pipelineruns(api):
    r = api.request("GET", "/apis/tekton.dev/v1", token=TOKEN)
    assert r.json["kind"] == "APIResourceList"
    assert r.json["resources"][0]["name"] == "pipelineruns"


# --- validation -------------------------------------------------------------------------------


def test_strict_rejects_unknown_fields_with_400(api):
    obj = pipelinerun("run-a", foo=1)
    obj["spec"]["params"][0]["bar"] = True
    r = create(api, obj)
    assert_status(r, 400, "BadRequest",
                  'PipelineRun in version "v1" cannot be handled as a PipelineRun: strict '
                  'decoding error: unknown field "spec.foo", unknown field "spec.params[0].bar"')
    assert api.objects() == []


def test_warn_and_ignore_prune_unknown_fields(api):
    r = create(api, pipelinerun("run-a", foo=1), field_validation="Warn")
    assert r.status == 201
    assert r.headers.get_all("Warning") == ['299 - "unknown field \\"spec.foo\\""']
    assert "foo" not in r.json["spec"]
    r = create(api, pipelinerun("run-b", foo=1), field_validation="Ignore")
    assert r.status == 201 and r.headers.get_all("Warning") is None
    assert all("foo" not in o["spec"] for o in api.objects())


def test_preserve_unknown_fields_nodes_accept_anything(api):
    obj = pipelinerun("run-a")
    obj["spec"]["params"][0]["value"] = {"any": ["thing"]}
    obj["spec"]["workspaces"][0]["volumeClaimTemplate"]["spec"]["storageClassName"] = "fast"
    assert create(api, obj).status == 201


def bad_param_value(obj):
    del obj["spec"]["params"][0]["value"]


@pytest.mark.parametrize("name,mutate,field,reason", [
    ("timeouts-string", lambda o: o["spec"].update(timeouts="1h"), "spec.timeouts",
     "FieldValueTypeInvalid"),
    ("params-string", lambda o: o["spec"].update(params="x"), "spec.params",
     "FieldValueTypeInvalid"),
    ("param-without-value", bad_param_value, "spec.params[0].value", "FieldValueRequired"),
    ("Bad_Name", lambda o: None, "metadata.name", "FieldValueInvalid"),
    ("bad-label", lambda o: o["metadata"]["labels"].update(x="not ok!"), "metadata.labels",
     "FieldValueInvalid"),
])
def test_schema_violations_get_422_invalid_with_causes(api, name, mutate, field, reason):
    obj = pipelinerun(name)
    mutate(obj)
    r = create(api, obj)
    body = assert_status(r, 422, "Invalid")
    assert body["message"].startswith('PipelineRun.tekton.dev "%s" is invalid: %s: '
                                      % (name, field))
    assert body["details"]["kind"] == "PipelineRun" and body["details"]["name"] == name
    assert {"field": field, "reason": reason} == {
        k: body["details"]["causes"][0][k] for k in ("field", "reason")}
    assert api.objects() == []


def test_type_error_message_matches_the_apiserver(api):
    r = create(api, pipelinerun("run-a", timeouts="1h"))
    assert r.json["message"] == ('PipelineRun.tekton.dev "run-a" is invalid: spec.timeouts: '
                                 'Invalid value: "string": spec.timeouts in body must be of '
                                 'type object: "string"')


@pytest.mark.parametrize("content_type", ["text/plain", "application/yaml", None])
def test_create_requires_json_content_type(api, content_type):
    r = create(api, pipelinerun(), content_type=content_type)
    assert_status(r, 415, "UnsupportedMediaType")
    assert api.objects() == []


def test_json_content_type_with_charset_is_accepted(api):
    r = create(api, pipelinerun(), content_type="application/json; charset=utf-8")
    assert r.status == 201


@pytest.mark.parametrize("mutate,message", [
    (lambda o: o["metadata"].update(namespace="other"),
     "the namespace of the provided object does not match the namespace sent on the request"),
    (lambda o: o.update(apiVersion="tekton.dev/v1beta1"),
     "the API version in the data (tekton.dev/v1beta1) does not match the expected API "
     "version (tekton.dev/v1)"),
    (lambda o: o["metadata"].update(name="r" * 64),
     'admission webhook "validation.webhook.pipeline.tekton.dev" denied the request: '
     "validation failed: Invalid resource name: length must be no more than 63 characters: "
     "metadata.name"),
])
def test_bad_requests_get_400(api, mutate, message):
    obj = pipelinerun("run-a")
    mutate(obj)
    assert_status(create(api, obj), 400, "BadRequest", message)
    assert api.objects() == []


def test_body_that_is_not_json_gets_400(api):
    r = api.request("POST", COLLECTION, b"{not json", token=TOKEN)
    assert_status(r, 400, "BadRequest")


# --- HTTP behaviour ---------------------------------------------------------------------------


def test_connections_are_kept_alive_with_content_length(api):
    conn = api.connection()
    for name in ("run-a", "run-b"):
        conn.request("POST", COLLECTION + "?fieldValidation=Strict",
                     body=json.dumps(pipelinerun(name)),
                     headers={"Content-Type": "application/json",
                              "Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        assert r.status == 201 and r.getheader("Content-Length")
        r.read()
    conn.close()
    log = api.requests()
    assert [e["status"] for e in log] == [201, 201]
    assert log[0]["conn"] == log[1]["conn"]


def test_request_log_records_no_token_or_body(api):
    create(api, pipelinerun("run-a"))
    entry = api.requests()[-1]
    assert entry["method"] == "POST" and entry["path"] == COLLECTION
    assert entry["query"] == "fieldValidation=Strict"
    assert entry["status"] == 201 and entry["name"] == "run-a" and entry["auth_ok"] is True
    assert TOKEN not in json.dumps(entry) and "pipelineRef" not in json.dumps(entry)


# --- faults -----------------------------------------------------------------------------------


def test_503_three_times_then_success_gives_one_object(api):
    api.set_faults([{"mode": "status", "code": 503, "count": 3}])
    for _ in range(3):
        assert_status(create(api, pipelinerun()), 503, "ServiceUnavailable")
    assert create(api, pipelinerun()).status == 201
    assert len(api.objects()) == 1
    assert [e["status"] for e in api.requests()] == [503, 503, 503, 201]
    assert api.faults()[0]["count"] == 0 and api.faults()[0]["applied"] == 3


def test_429_carries_retry_after(api):
    api.set_faults([{"mode": "status", "code": 429, "retry_after": 2, "count": 2}])
    for _ in range(2):
        r = create(api, pipelinerun())
        body = assert_status(r, 429, "TooManyRequests")
        assert r.headers["Retry-After"] == "2"
        assert body["details"]["retryAfterSeconds"] == 2
    assert create(api, pipelinerun()).status == 201


def test_faults_apply_only_to_creates_unless_paths_are_given(api):
    api.set_faults([{"mode": "status", "code": 503, "count": -1}])
    assert api.request("GET", "/readyz", token=TOKEN).status == 200
    api.set_faults([{"mode": "status", "code": 503, "count": 1, "paths": ["/readyz"]}])
    assert_status(api.request("GET", "/readyz", token=TOKEN), 503, "ServiceUnavailable")
    assert api.request("GET", "/readyz", token=TOKEN).status == 200


def test_drop_closes_the_connection_without_a_response(api):
    api.set_faults([{"mode": "drop", "count": 1}])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        create(api, pipelinerun())
    assert api.objects() == []
    assert create(api, pipelinerun()).status == 201
    log = api.requests()
    assert (log[0]["status"], log[0]["fault"]) == (None, "drop")


def test_reset_aborts_the_connection(api):
    api.set_faults(["reset"])
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        create(api, pipelinerun())
    assert api.objects() == []


def test_delay_slows_one_request_without_stalling_others(api):
    api.set_faults([{"mode": "delay", "seconds": 1.0, "count": 1}])
    result = {}

    def slow():
        t0 = time.monotonic()
        result["status"] = create(api, pipelinerun()).status
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert api.request("GET", "/readyz", token=TOKEN).status == 200
    assert time.monotonic() - t0 < 0.5
    t.join()
    assert result["status"] == 201 and result["elapsed"] >= 1.0


def test_alternate_cycles_through_its_modes(api):
    api.set_faults([{"mode": "alternate", "modes": ["drop", "503"], "count": 3}])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        create(api, pipelinerun())
    assert create(api, pipelinerun()).status == 503
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        create(api, pipelinerun())
    assert create(api, pipelinerun()).status == 201


def test_rules_are_consumed_in_order(api):
    api.set_faults([{"mode": "pass", "count": 1}, {"mode": "status", "code": 500, "count": 1},
                    {"mode": "status", "code": 504, "count": 1}])
    codes = [create(api, pipelinerun("run-%d" % i)).status for i in range(4)]
    assert codes == [201, 500, 504, 201]


def test_create_then_fail_stores_the_run_and_loses_the_answer(api):
    api.set_faults([{"mode": "create_then_fail", "then": "drop", "count": 1},
                    {"mode": "create_then_fail", "then": "503", "count": 1}])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        create(api, pipelinerun("run-a"))
    assert [o["metadata"]["name"] for o in api.objects()] == ["run-a"]
    assert_status(create(api, pipelinerun("run-b")), 503, "ServiceUnavailable")
    assert_status(create(api, pipelinerun("run-a")), 409, "AlreadyExists")
    assert [o["metadata"]["name"] for o in api.objects()] == ["run-a", "run-b"]


def test_invalid_fault_rules_are_refused(api):
    with pytest.raises(RuntimeError):
        api.set_faults([{"mode": "explode"}])
    with pytest.raises(RuntimeError):
        api.set_faults([{"mode": "status"}])


# --- plain http and restarts --------------------------------------------------------------------


def test_plain_http_without_token_file_needs_no_auth_and_keeps_state_across_restart(tmp_path):
    srv = FakeApiServer(str(tmp_path / "state"))
    srv.start()
    try:
        assert srv.url.startswith("http://")
        r = srv.create(pipelinerun("run-a"))
        assert r.status == 201
        uid = r.json["metadata"]["uid"]
        port = srv.port

        srv.kill()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

        srv.start(port=port)
        assert srv.port == port
        assert [o["metadata"]["uid"] for o in srv.objects()] == [uid]
        assert_status(srv.create(pipelinerun("run-a")), 409, "AlreadyExists")
        r = srv.create(pipelinerun("run-b"))
        assert r.status == 201
        assert int(r.json["metadata"]["resourceVersion"]) > 1
        assert len(srv.objects()) == 2
    finally:
        srv.stop()


def test_initial_faults_apply_from_start(tmp_path):
    srv = FakeApiServer(str(tmp_path / "state"),
                        faults=[{"mode": "status", "code": 503, "count": 1}])
    with srv:
        assert srv.create(pipelinerun("run-a")).status == 503
        assert srv.create(pipelinerun("run-a")).status == 201


def test_concurrent_creates_of_one_name_store_it_once(api):
    codes = []
    lock = threading.Lock()

    def one():
        c = create(api, copy.deepcopy(pipelinerun())).status
        with lock:
            codes.append(c)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * 7
    assert len(api.objects()) == 1


def test_status_fault_can_send_a_raw_proxy_body(api):
    api.set_faults([{"mode": "status", "code": 502, "body": "<html>Bad Gateway</html>",
                     "content_type": "text/html"}])
    r = create(api, pipelinerun())
    assert (r.status, r.body, r.headers["Content-Type"]) == (
        502, b"<html>Bad Gateway</html>", "text/html")
    assert api.objects() == []


def test_conflict_and_too_large_are_worded_as_the_apiserver_words_them(api):
    api.set_faults([{"mode": "status", "code": 409, "count": 1},
                    {"mode": "status", "code": 413, "count": 1}])
    r = create(api, pipelinerun("conflict-1"))
    assert r.status == 409 and r.json["reason"] == "Conflict"
    assert r.json["message"].startswith('Operation cannot be fulfilled on resourcequotas "gpu-quota": '
                                        "the object has been modified")
    assert r.json["details"] == {"name": "gpu-quota", "kind": "resourcequotas"}
    r = create(api, pipelinerun("conflict-1"))
    assert r.status == 413 and r.json["reason"] == "RequestEntityTooLarge"
    assert r.json["message"] == "Request entity too large: limit is 3145728"
    assert api.objects() == []
    # The real create's own 409 is AlreadyExists, never Conflict.
    assert create(api, pipelinerun("conflict-1")).status == 201
    r = create(api, pipelinerun("conflict-1"))
    assert r.status == 409 and r.json["reason"] == "AlreadyExists"


def test_any_code_can_carry_any_retry_after(api):
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    api.set_faults([{"mode": "status", "code": 503, "retry_after": date, "count": 1},
                    {"mode": "status", "code": 429, "retry_after": "99999999999999999999",
                     "count": 1}])
    r = create(api, pipelinerun("ra-1"))
    assert r.status == 503 and r.headers["Retry-After"] == date
    r = create(api, pipelinerun("ra-1"))
    assert r.status == 429 and r.headers["Retry-After"] == "99999999999999999999"


def test_pass_can_pad_a_201_without_changing_the_object(api):
    api.set_faults([{"mode": "pass", "pad_response": 2 * 1024 * 1024, "count": 1}])
    r = create(api, pipelinerun("big-1"))
    assert r.status == 201 and len(r.body) > 2 * 1024 * 1024
    assert r.json["metadata"]["name"] == "big-1"
    got = api.request("GET", "/apis/tekton.dev/v1/namespaces/%s/pipelineruns/big-1" % NS,
                      token=TOKEN)
    assert got.status == 200 and "managedFields" not in got.json["metadata"]


def _official_client(api):
    """The official Kubernetes Python client (Debian's python3-kubernetes), pointed at the
    stand-in with its CA and token: a reference nobody here wrote."""
    kubernetes = pytest.importorskip("kubernetes")
    cfg = kubernetes.client.Configuration()
    cfg.host = api.url
    cfg.ssl_ca_cert = api.ca_file
    cfg.api_key = {"authorization": "Bearer " + TOKEN}
    return kubernetes, kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(cfg))


def test_official_client_creates_gets_and_reads_the_statuses_gpuhook_relies_on(api):
    kubernetes, objs = _official_client(api)
    ApiException = kubernetes.client.exceptions.ApiException
    args = ("tekton.dev", "v1", NS, "pipelineruns")
    created = objs.create_namespaced_custom_object(*args, pipelinerun("official-1"))
    assert created["metadata"]["name"] == "official-1" and created["metadata"]["uid"]
    got = objs.get_namespaced_custom_object(*args, "official-1")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiException) as e:
        objs.get_namespaced_custom_object(*args, "missing-1")
    assert e.value.status == 404 and json.loads(e.value.body)["reason"] == "NotFound"
    # The create's own 409 is AlreadyExists; a fault's 409 is Conflict: gpuhook tells them apart.
    with pytest.raises(ApiException) as e:
        objs.create_namespaced_custom_object(*args, pipelinerun("official-1"))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    api.set_faults([{"mode": "status", "code": 409, "count": 1},
                    {"mode": "status", "code": 413, "count": 1},
                    {"mode": "status", "code": 503, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT",
                     "count": 1}])
    for code, reason in ((409, "Conflict"), (413, "RequestEntityTooLarge"),
                         (503, "ServiceUnavailable")):
        with pytest.raises(ApiException) as e:
            objs.create_namespaced_custom_object(*args, pipelinerun("official-2"))
        assert e.value.status == code and json.loads(e.value.body)["reason"] == reason
    assert e.value.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert [o["metadata"]["name"] for o in api.objects()] == ["official-1"]
