"""Tekton Triggers conformance (issue 14): every case of
tests/fixtures/tekton-compat/cases.yaml, one or more per row of docs/tekton-compat.md, through
`gpuhook render` and through the server delivering to the stand-in Kubernetes API."""
import http.client
import json
import os
import re
import subprocess
import tempfile
import uuid

import pytest
import yaml

from harness import BINARY, FIXTURES, SOURCE_DIR, GpuHook, sign
from fake_apiserver import FakeApiServer

CASES_FILE = os.path.join(FIXTURES, "tekton-compat", "cases.yaml")
with open(CASES_FILE) as f:
    CASES = yaml.safe_load(f)["cases"]

BASE_PUSH = ('"ref": "refs/heads/feature", "after": "%s", "repository": {"full_name": "o/r", '
             '"clone_url": "https://github.com/o/r.git"}, "sender": {"login": "u"}' % ("ab" * 20))


def payload_of(case):
    if "payload_file" in case:
        with open(os.path.join(FIXTURES, "github", case["payload_file"]), "rb") as f:
            return f.read()
    inner = case["payload"].strip()
    assert inner.startswith("{") and inner.endswith("}")
    rest = inner[1:-1].strip()
    return ("{" + BASE_PUSH + ((", " + rest) if rest else "") + "}").encode()


def write_files(case, tmp):
    """The TriggerTemplate and the binding of a case, as JSON (which YAML loaders read too)."""
    bindings = dict(case.get("bindings", {}))
    defaults = case.get("defaults", {})
    declared = list(bindings) + [d for d in case.get("declare", []) if d not in bindings]
    params = []
    for name in declared:
        p = {"name": name}
        if name in defaults:
            p["default"] = defaults[name]
        params.append(p)
    run_params = [{"name": n, "value": "$(tt.params.%s)" % n} for n in bindings]
    run_params += [{"name": n, "value": v} for n, v in case.get("texts", {}).items()]
    meta = {"generateName": "conformance-"}
    if case.get("labels"):
        meta["labels"] = case["labels"]
    tmeta = {"name": "conformance"}
    if case.get("annotations"):
        tmeta["annotations"] = case["annotations"]
    template = {
        "apiVersion": "triggers.tekton.dev/v1beta1", "kind": "TriggerTemplate", "metadata": tmeta,
        "spec": {"params": params, "resourcetemplates": [{
            "apiVersion": case.get("run_api_version", "tekton.dev/v1"),
            "kind": case.get("run_kind", "PipelineRun"),
            "metadata": meta,
            "spec": {"pipelineRef": {"name": "conformance"}, "params": run_params}}]}}
    bparams = [{"name": n, "value": v} for n, v in bindings.items()]
    bparams += [{"name": n, "value": v} for n, v in case.get("undeclared", {}).items()]
    if case.get("duplicate"):
        bparams.append({"name": case["duplicate"], "value": "again"})
    binding = {"apiVersion": "triggers.tekton.dev/v1beta1",
               "kind": case.get("binding_kind", "TriggerBinding"),
               "metadata": {"name": "conformance"}, "spec": {"params": bparams}}
    tpath, bpath = os.path.join(tmp, "template.yaml"), os.path.join(tmp, "binding.yaml")
    with open(tpath, "w") as f:
        json.dump(template, f, indent=1)
    with open(bpath, "w") as f:
        json.dump(binding, f, indent=1)
    return tpath, bpath


def expand(value, delivery, payload):
    if value == "$payload":
        return json.loads(payload)
    if isinstance(value, str):
        return value.replace("{delivery}", delivery)
    if isinstance(value, dict):
        return {k: expand(v, delivery, payload) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, delivery, payload) for v in value]
    return value


def check_run(case, run, delivery, payload):
    got = {p["name"]: p["value"] for p in run["spec"].get("params", [])}
    for name, want in case.get("expect", {}).items():
        assert got.get(name) == expand(want, delivery, payload), (case["name"], name, got.get(name))
    for name, want in case.get("expect_subset", {}).items():
        value = got.get(name)
        assert isinstance(value, dict), (case["name"], name, value)
        for k, v in expand(want, delivery, payload).items():
            assert value.get(k) == v, (case["name"], name, k, value)
    for name, absent in case.get("expect_absent", {}).items():
        for k in absent:
            assert k not in got[name], (case["name"], name, k)
    for name, n in case.get("expect_len", {}).items():
        assert isinstance(got.get(name), list) and len(got[name]) == n, (case["name"], got.get(name))
    for name, rx in case.get("expect_match", {}).items():
        assert re.match(rx, got.get(name, "")), (case["name"], name, got.get(name))
    if "expect_api_version" in case:
        assert run["apiVersion"] == case["expect_api_version"], run["apiVersion"]
    labels = run["metadata"].get("labels", {})
    for k, v in case.get("expect_labels", {}).items():
        assert labels.get(k) == v, (case["name"], labels)
    assert not any("$(" in k for k in labels), labels


def case_id(case):
    return case["name"].replace(" ", "-")


def new_hook(case, tmp, api=None):
    tpath, bpath = write_files(case, tmp)
    g = GpuHook()
    g.config["template"] = tpath
    g.config["bindings"] = bpath
    g.config["selection"] = {"default": "lite", "rules": []}
    if api:
        g.config["kubernetes"] = {"mode": "url", "url": api.url, "namespace": "tekton-pipelines",
                                  "timeout_seconds": 5}
    return g


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_render(case):
    tmp = tempfile.mkdtemp(prefix="gpuhook-tekton-")
    g = new_hook(case, tmp)
    g.write_config()
    payload = payload_of(case)
    ppath = os.path.join(tmp, "payload.json")
    with open(ppath, "wb") as f:
        f.write(payload)
    delivery = str(uuid.uuid4())
    args = [BINARY, "render", "--config", g.config_path, "--event", case.get("event", "push"),
            "--payload", ppath, "--delivery", delivery]
    for name, value in case.get("headers", []):
        args += ["--header", "%s: %s" % (name, value)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if "load_error" in case:
        assert r.returncode == 2 and case["load_error"] in r.stderr, (r.returncode, r.stderr)
        return
    if "expect_error" in case:
        assert r.returncode != 0 and case["expect_error"] in r.stderr, (r.returncode, r.stderr)
        return
    assert r.returncode == 0, r.stderr
    check_run(case, json.loads(r.stdout), delivery, payload)


@pytest.fixture(scope="module")
def api():
    a = FakeApiServer(tempfile.mkdtemp(prefix="gpuhook-tekton-api-")).start()
    yield a
    a.stop()


def deliver(g, event, body, delivery, extra):
    """A signed delivery whose extra headers may repeat a name."""
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
    try:
        conn.putrequest("POST", "/webhook")
        for name, value in [("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery),
                            ("X-GitHub-Hook-ID", "42"), ("User-Agent", "GitHub-Hookshot/test"),
                            ("Content-Type", "application/json"),
                            ("X-Hub-Signature-256", sign(body)),
                            ("Content-Length", str(len(body)))] + list(extra):
            if name.lower() == "x-hub-signature-256" and name != "X-Hub-Signature-256":
                continue  # the real signature is already there
            conn.putheader(name, value)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_server(case, api):
    tmp = tempfile.mkdtemp(prefix="gpuhook-tekton-")
    g = new_hook(case, tmp, api)
    if "load_error" in case:
        with pytest.raises(RuntimeError) as e:
            g.start()
        assert case["load_error"] in str(e.value)
        return
    payload = payload_of(case)
    delivery = str(uuid.uuid4())
    with g:
        status, body = deliver(g, case.get("event", "push"), payload, delivery,
                               case.get("headers", []))
        if "expect_error" in case:
            assert status == 400 and case["expect_error"] in body["error"], (status, body)
            return
        assert status == 201, body
        runs = [o for o in api.objects() if o["metadata"]["name"] == body["pipelinerun"]]
        assert len(runs) == 1
        if "expect_api_version" in case:
            posts = [q["path"] for q in api.requests() if q["method"] == "POST"]
            assert posts[-1].startswith("/apis/%s/namespaces/" % case["expect_api_version"]), posts
        check_run(case, runs[0], delivery, payload)


def test_every_table_row_has_a_case():
    """docs/tekton-compat.md and the cases stay in step: each row id has a case, and back."""
    with open(os.path.join(SOURCE_DIR, "docs", "tekton-compat.md")) as f:
        doc = f.read()
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, re.M))
    cased = {c["row"] for c in CASES}
    assert rows and rows - cased == set(), rows - cased
    assert cased - rows == set(), cased - rows


def test_trigger_token_never_reaches_header_bindings(api):
    """/trigger's bearer token: $(header) and $(header.Authorization) never see it."""
    from harness import TOKEN
    case = {"bindings": {"all": "$(header)", "auth": "$(header.Authorization)"},
            "defaults": {"auth": "hidden"}}
    tmp = tempfile.mkdtemp(prefix="gpuhook-tekton-")
    with new_hook(case, tmp, api) as g:
        r = g.trigger({"revision": "a" * 40}, extra={"X-One": "one"})
        assert r.status == 201, r.body
        run = [o for o in api.objects() if o["metadata"]["name"] == r.json["pipelinerun"]][0]
        got = {p["name"]: p["value"] for p in run["spec"]["params"]}
        assert got["all"]["X-One"] == "one" and "Authorization" not in got["all"]
        assert got["auth"] == "hidden"
        assert TOKEN not in json.dumps(run)
