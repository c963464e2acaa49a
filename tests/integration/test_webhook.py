"""POST /webhook (issue 3): every row of the response tables, driven over real HTTP."""
import json
import os
import tempfile
import time
import urllib.parse

import pytest

from harness import memory_bound, timing_free, SECRET, GpuHook, fixture, metric_value, raw_http, sign

PUSH = fixture("push_with-new-branch.json")
UNAUTH = "invalid or missing X-Hub-Signature-256 signature"


def push_body(**over):
    p = json.loads(PUSH)
    for k, v in over.items():
        if k == "message":
            p["head_commit"]["message"] = v
        elif k == "branch":
            p["ref"] = "refs/heads/" + v
        else:
            p[k] = v
    return json.dumps(p, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def hook():
    with GpuHook() as g:
        yield g


def test_github_test_vector_verifies():
    assert sign(b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    g = GpuHook()
    g.config["github"]["events"] = ["push", "ping", "pull_request"]
    with g:
        # "Hello, World!" is not JSON: the signature holds, so the parse fails with 400.
        r = g.deliver("push", b"Hello, World!",
                      signature="sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        assert r.status == 400 and r.json["error"] == "body is not a JSON object"


def test_ping_answers_ok_with_hook_id(hook):
    r = hook.deliver("ping", fixture("ping.json"), hook_id="109948940")
    assert r.status == 200
    assert {k: r.json[k] for k in ("status", "event", "hook_id")} == {
        "status": "ok", "event": "ping", "hook_id": 109948940}


def test_push_creates_run_then_redelivery_says_exists(hook):
    before = set(hook.runs())
    r = hook.deliver("push", PUSH, delivery="d-create-1")
    assert r.status == 201, r.body
    b = r.json
    assert b["status"] == "created" and b["variant"] == "lite" and b["rule"] == "default"
    assert b["namespace"] == "tekton-pipelines" and b["delivery"] == "d-create-1"
    created = set(hook.runs()) - before
    assert created == {b["pipelinerun"]}
    obj = hook.runs()[b["pipelinerun"]]
    assert obj["metadata"]["labels"]["triggers.tekton.dev/triggers-eventid"] == "d-create-1"
    assert obj["spec"]["params"][1] == {"name": "git-revision", "value": json.loads(PUSH)["after"]}
    r2 = hook.deliver("push", PUSH, delivery="d-create-1")
    assert r2.status == 200 and r2.json["status"] == "exists"
    assert r2.json["pipelinerun"] == b["pipelinerun"]
    assert set(hook.runs()) - before == created


def test_redelivery_after_restart_still_exists():
    g = GpuHook()
    with g:
        r = g.deliver("push", PUSH, delivery="d-restart")
        assert r.status == 201
    with g:
        r2 = g.deliver("push", PUSH, delivery="d-restart")
        assert r2.status == 200 and r2.json["status"] == "exists"
        assert r2.json["pipelinerun"] == r.json["pipelinerun"]
    assert len(g.runs()) == 1


def test_form_encoded_delivery_creates_the_same_run(hook):
    form = b"payload=" + urllib.parse.quote_plus(PUSH).encode()
    r = hook.deliver("push", form, content_type="application/x-www-form-urlencoded",
                     delivery="d-form")
    assert r.status == 201, r.body
    obj = hook.runs()[r.json["pipelinerun"]]
    assert obj["spec"]["params"][0]["value"] == json.loads(PUSH)["repository"]["clone_url"]


def test_form_signature_covers_the_encoded_bytes(hook):
    form = b"payload=" + urllib.parse.quote_plus(PUSH).encode()
    r = hook.deliver("push", form, content_type="application/x-www-form-urlencoded",
                     signature=sign(PUSH))
    assert r.status == 401


@pytest.mark.parametrize("name,kw", [
    ("one byte changed after signing", {"mutate": True}),
    ("sha1 only", {"signature": "", "extra": {"X-Hub-Signature": "sha1=" + "0" * 40}}),
    ("unsigned", {"signature": ""}),
    ("other algorithm", {"signature": "sha512=" + "0" * 128}),
    ("short hex", {"signature": "sha256=abc"}),
    ("wrong secret", {"secret": "not the secret"}),
])
def test_signature_failures_get_identical_401(hook, name, kw):
    before = metric_value(hook.metrics(), "gpuhook_signature_failures_total")
    runs = set(hook.runs())
    body = PUSH
    if kw.pop("mutate", False):
        sig = sign(body)
        body = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]
        kw["signature"] = sig
    r = hook.deliver("push", body, **kw)
    assert r.status == 401
    assert set(r.json) == {"error", "request_id"} and r.json["error"] == UNAUTH
    assert b"sha256=" not in r.body
    assert metric_value(hook.metrics(), "gpuhook_signature_failures_total") == before + 1
    assert set(hook.runs()) == runs


def test_rotation_accepts_either_secret():
    g = GpuHook(secrets=(SECRET, "the-next-secret"))
    g.config["github"]["secret_files"].append(os.path.join(g.tmp, "secret1"))
    with g:
        assert g.deliver("push", PUSH, secret=SECRET).status == 201
        assert g.deliver("push", PUSH, secret="the-next-secret").status == 201
        assert g.deliver("push", PUSH, secret="a-third").status == 401
        assert len(g.runs()) == 2


@pytest.mark.parametrize("headers,msg", [
    ({"X-GitHub-Event": None}, "missing or malformed X-GitHub-Event header"),
    ({"X-GitHub-Event": "pu sh"}, "missing or malformed X-GitHub-Event header"),
    ({"X-GitHub-Delivery": None}, "missing or malformed X-GitHub-Delivery header"),
    ({"X-GitHub-Delivery": "../etc"}, "missing or malformed X-GitHub-Delivery header"),
    ({"X-GitHub-Hook-ID": "12a"}, "malformed X-GitHub-Hook-ID header: expected digits"),
])
def test_malformed_github_headers_get_400(hook, headers, msg):
    runs = set(hook.runs())
    h = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-hdr", "X-GitHub-Hook-ID": "1",
         "Content-Type": "application/json", "X-Hub-Signature-256": sign(PUSH)}
    h.update(headers)
    r = hook.request("POST", "/webhook", body=PUSH, headers={k: v for k, v in h.items() if v})
    assert r.status == 400 and r.json["error"] == msg
    assert set(hook.runs()) == runs


@pytest.mark.parametrize("body,msg", [
    (b"[1,2]", "body is not a JSON object"),
    (b"{\"ref\": ", "body is not valid JSON"),
    (json.dumps({"ref": "refs/heads/x", "repository": {"clone_url": "u"}}).encode(),
     'push payload lacks "after"'),
    (json.dumps({"ref": "refs/heads/x", "after": "a" * 40}).encode(),
     'push payload lacks "repository.clone_url"'),
    (b"{\"a\":\"\xff\"}", "body is not valid UTF-8"),
    (b'{"a":' * 100000 + b"1" + b"}" * 100000, "body nests deeper than 64 levels"),
], ids=["array", "truncated", "no-after", "no-clone-url", "bad-utf8", "deep"])
def test_signed_bad_bodies_get_400(hook, body, msg):
    runs = set(hook.runs())
    r = hook.deliver("push", body)
    assert r.status == 400 and r.json["error"].startswith(msg), r.json
    assert set(hook.runs()) == runs


def test_unsupported_content_type_gets_415(hook):
    r = hook.deliver("push", PUSH, content_type="text/plain")
    assert r.status == 415 and "Content-Type" in r.json["error"]


@pytest.mark.parametrize("event,body,reason", [
    ("release", b"{}", "event release is not in github.events"),
    ("push", fixture("push.json"), "push deletes refs/tags/simple-tag"),
    ("pull_request", fixture("pull_request_labeled.json"), "pull_request action labeled does not start runs"),
])
def test_nothing_to_run_is_ignored(hook, event, body, reason):
    runs = set(hook.runs())
    r = hook.deliver(event, body)
    assert r.status == 200, r.body
    assert r.json["status"] == "ignored" and r.json["reason"] == reason
    assert set(hook.runs()) == runs


def test_configured_but_unhandled_event_is_ignored():
    g = GpuHook()
    g.config["github"]["events"] = ["push", "create"]
    with g:
        r = g.deliver("create", b"{}")
        assert (r.status, r.json["status"], r.json["reason"]) == (
            200, "ignored", "event create does not start runs")


def test_draft_pull_request_is_ignored(hook):
    p = json.loads(fixture("pull_request_opened.json"))
    p["pull_request"]["draft"] = True
    r = hook.deliver("pull_request", json.dumps(p).encode())
    assert r.status == 200 and r.json["status"] == "ignored"
    assert "is a draft" in r.json["reason"]


def test_pull_request_opened_creates_and_label_rule_picks_original(hook):
    p = json.loads(fixture("pull_request_opened.json"))
    r = hook.deliver("pull_request", json.dumps(p).encode())
    assert r.status == 201 and r.json["variant"] == "lite"
    p["pull_request"]["labels"] = [{"name": "gpu:original"}]
    r = hook.deliver("pull_request", json.dumps(p).encode())
    assert r.status == 201 and (r.json["variant"], r.json["rule"]) == ("original", "original-label")
    obj = hook.runs()[r.json["pipelinerun"]]
    assert obj["spec"]["pipelineRef"]["name"] == "gpu-real-8-step-workflow-original"
    assert obj["metadata"]["annotations"]["gpuhook.dev/rule"] == "original-label"


def test_labeled_with_a_rule_label_creates(hook):
    p = json.loads(fixture("pull_request_labeled.json"))
    p["label"] = {"name": "gpu:original"}
    p["pull_request"]["labels"].append({"name": "gpu:original"})
    p["pull_request"]["draft"] = False
    r = hook.deliver("pull_request", json.dumps(p).encode())
    assert r.status == 201 and r.json["variant"] == "original"


def test_skip_rule_ignores(hook):
    r = hook.deliver("push", push_body(message="docs only [skip gpu]"))
    assert r.status == 200 and r.json["status"] == "ignored"
    assert r.json["rule"] == "skip-marker"


def test_main_branch_push_runs_original(hook):
    r = hook.deliver("push", push_body(branch="main"))
    assert r.status == 201 and (r.json["variant"], r.json["rule"]) == ("original", "main-original")


HOSTILE = [
    'quote " and \\ backslash',
    "new\nline and\ttab",
    "$(tt.params.git-revision) $(body.after) $(uid)",
    "`rm -rf /` && $(whoami)",
    "Ünïcødé ブランチ 🚀",
    "}]}\",\"injected\":{\"x\":\"",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_branch_and_message_arrive_byte_for_byte(hook, value):
    p = json.loads(PUSH)
    p["ref"] = "refs/heads/" + value
    p["head_commit"]["message"] = value
    p["after"] = value
    r = hook.deliver("push", json.dumps(p, ensure_ascii=False).encode())
    assert r.status == 201, r.body
    obj = hook.runs()[r.json["pipelinerun"]]
    assert obj["spec"]["params"][1] == {"name": "git-revision", "value": value}
    assert obj["metadata"]["annotations"]["gpuhook.dev/revision"] == value
    assert obj["metadata"]["annotations"]["gpuhook.dev/ref"] == "refs/heads/" + value
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["spec"]) == {"pipelineRef", "params", "taskRunTemplate", "timeouts", "workspaces"}


@memory_bound()
def test_25mb_signed_body_streams_through_and_one_byte_over_gets_413(hook):
    limit = 26214400
    p = json.loads(PUSH)
    p["head_commit"]["message"] = ""
    base = len(json.dumps(p).encode())
    p["head_commit"]["message"] = "x" * (limit - base)
    body = json.dumps(p).encode()
    assert len(body) == limit
    r = hook.deliver("push", body)
    assert r.status == 201, r.body[:200]
    status = open("/proc/%d/status" % hook.proc.pid).read()
    hwm_kb = int([l for l in status.splitlines() if l.startswith("VmHWM")][0].split()[1])
    # Bounded memory: the body once plus the parsed tree, not a pile of copies.
    assert hwm_kb < (2 * limit + 40 * 1024 * 1024) // 1024, hwm_kb
    # One byte over: refused from the headers, before any body byte is read.
    head = ("POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            "X-GitHub-Delivery: d-over\r\nContent-Type: application/json\r\n"
            "X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n" % (sign(body + b" "), limit + 1))
    out = raw_http(hook.port, head.encode())
    assert out.startswith(b"HTTP/1.1 413") and b"exceeds the limit" in out


def test_api_down_answers_202_queued():
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": "http://127.0.0.1:9", "timeout_seconds": 1}
    with g:
        r = g.deliver("push", PUSH, delivery="d-queued")
        assert r.status == 202, r.body
        assert r.json["status"] == "queued" and r.json["pipelinerun"]
        assert os.path.exists(os.path.join(g.tmp, "spool", r.json["pipelinerun"] + ".json"))
        assert metric_value(g.metrics(), "gpuhook_spool_depth") == 1


def test_no_secret_or_signature_in_logs_at_debug():
    g = GpuHook()
    g.config["log_level"] = "debug"
    with g:
        body = push_body(message="payload-marker-xyzzy")
        g.deliver("push", body)
        g.deliver("push", body, secret="wrong")
        g.trigger({"revision": "abc"})
    log = g.log_text()
    assert SECRET not in log and "trigger-token-" not in log
    assert sign(body)[7:] not in log and "payload-marker-xyzzy" not in log
