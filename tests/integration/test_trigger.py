"""POST /trigger and `gpuhook render` (issue 4)."""
import json
import os
import subprocess

import pytest

from harness import BINARY, FIXTURES, TOKEN, GpuHook, fixture


@pytest.fixture(scope="module")
def hook():
    with GpuHook() as g:
        yield g


def test_trigger_creates_run_with_forced_variant(hook):
    r = hook.trigger({"variant": "original", "revision": "abc123", "branch": "feature/x"})
    assert r.status == 201, r.body
    b = r.json
    assert (b["status"], b["variant"], b["rule"]) == ("created", "original", "manual")
    obj = hook.runs()[b["pipelinerun"]]
    assert obj["spec"]["pipelineRef"]["name"] == "gpu-real-8-step-workflow-original"
    params = {p["name"]: p["value"] for p in obj["spec"]["params"]}
    assert params == {"git-repo-url": "https://github.com/o/r.git", "git-revision": "abc123"}
    assert obj["metadata"]["labels"]["gpuhook.dev/event"] == "trigger"


def test_trigger_auto_runs_selection_rules(hook):
    r = hook.trigger({"revision": "abc", "branch": "main"})
    assert r.status == 201 and r.json["variant"] == "lite" and r.json["rule"] == "default"


def test_idempotency_key_makes_retries_create_one_run(hook):
    before = set(hook.runs())
    key = {"Idempotency-Key": "retry-me-1"}
    r1 = hook.trigger({"variant": "lite", "revision": "r1"}, extra=key)
    r2 = hook.trigger({"variant": "lite", "revision": "r1"}, extra=key)
    assert (r1.status, r2.status) == (201, 200)
    assert r2.json["status"] == "exists" and r2.json["pipelinerun"] == r1.json["pipelinerun"]
    assert len(set(hook.runs()) - before) == 1


def test_dry_run_query_returns_the_object_and_creates_nothing(hook):
    before = set(hook.runs())
    r = hook.trigger({"variant": "lite", "revision": "r2", "params": {"git-repo-url": "https://x/y.git"}},
                     query="?dry_run=true")
    assert r.status == 200
    b = r.json
    assert b["status"] == "dry_run" and b["variant"] == "lite" and b["rule"] == "manual"
    assert b["pipelinerun"]["kind"] == "PipelineRun"
    params = {p["name"]: p["value"] for p in b["pipelinerun"]["spec"]["params"]}
    assert params["git-repo-url"] == "https://x/y.git"
    assert set(hook.runs()) == before


@pytest.mark.parametrize("token,status", [(None, 401), ("wrong", 401), (TOKEN + "x", 401), ("", 401)])
def test_missing_or_wrong_token_gets_401_with_www_authenticate(hook, token, status):
    r = hook.trigger({"revision": "a"}, token=token)
    assert r.status == status
    assert r.header("WWW-Authenticate").startswith("Bearer")
    assert r.json["error"] == "missing or invalid bearer token"


@pytest.mark.parametrize("payload,msg", [
    ({"variant": "huge", "revision": "a"}, 'variant "huge" is not one of lite, original, auto'),
    ({"variant": "lite"}, "revision: required, a non-empty string"),
    ({"revision": "a", "params": {"nope": "x"}}, "params.nope: the template declares no such param"),
    ({"revision": "a", "colour": "red"}, 'unknown field "colour"'),
    ('{"revision": ', "body is not valid JSON"),
    ({"revision": "a", "params": {"git-revision": 5}}, "params.git-revision: must be a string"),
])
def test_bad_trigger_bodies_get_400_naming_the_field(hook, payload, msg):
    before = set(hook.runs())
    r = hook.trigger(payload)
    assert r.status == 400 and r.json["error"].startswith(msg), r.json
    assert set(hook.runs()) == before


def test_trigger_other_content_type_gets_415(hook):
    r = hook.trigger("revision=a", content_type="application/x-www-form-urlencoded")
    assert r.status == 415


def test_trigger_without_repo_url_default_gets_400():
    g = GpuHook()
    del g.config["trigger"]["default_repo_url"]
    with g:
        r = g.trigger({"revision": "a"})
        assert r.status == 400 and r.json["error"].startswith("repo_url: required")


def test_trigger_disabled_without_token_file():
    g = GpuHook()
    del g.config["trigger"]["token_file"]
    with g:
        r = g.trigger({"revision": "a"})
        assert r.status == 403 and "trigger.token_file" in r.json["error"]


def test_trigger_api_down_gets_202_queued():
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": "http://127.0.0.1:9", "timeout_seconds": 1}
    with g:
        r = g.trigger({"revision": "a"})
        assert r.status == 202 and r.json["status"] == "queued"


def render(g, event, payload, *extra):
    g.write_config()
    return subprocess.run([BINARY, "render", "--config", g.config_path, "--event", event,
                           "--payload", payload, *extra], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name,event,code", [
    ("push_with-new-branch.json", "push", 0),
    ("push.json", "push", 3),
    ("pull_request_opened.json", "pull_request", 0),
    ("pull_request_synchronize.json", "pull_request", 0),
    ("pull_request_labeled.json", "pull_request", 3),
    ("ping.json", "ping", 3),
    ("issue_comment_created.json", "issue_comment", 3),
    ("workflow_dispatch.json", "workflow_dispatch", 3),
])
def test_render_each_fixture(name, event, code):
    g = GpuHook()
    # render needs no secret: point at files that do not exist.
    g.config["github"]["secret_files"] = ["/nonexistent/secret"]
    g.config["trigger"]["token_file"] = "/nonexistent/token"
    r = render(g, event, os.path.join(FIXTURES, "github", name),
               "--header", "X-GitHub-Hook-ID: 7", "--delivery", "d-render")
    assert r.returncode == code, r.stderr
    if code == 0:
        obj = json.loads(r.stdout)
        assert obj["kind"] == "PipelineRun"
        assert obj["metadata"]["labels"]["triggers.tekton.dev/triggers-eventid"] == "d-render"
        assert "variant: lite" in r.stderr and "rule: default" in r.stderr
    else:
        assert r.stdout == "" and r.stderr.startswith("ignored: ")


def test_render_is_deterministic_and_matches_the_server():
    g = GpuHook()
    payload = os.path.join(FIXTURES, "github", "push_with-new-branch.json")
    r1 = render(g, "push", payload, "--header", "X-GitHub-Hook-ID: 42", "--delivery", "same")
    with g:
        resp = g.deliver("push", fixture("push_with-new-branch.json"), delivery="same", hook_id="42")
    assert json.loads(r1.stdout)["metadata"]["name"] == resp.json["pipelinerun"]


def test_render_errors_exit_2_naming_the_file():
    g = GpuHook()
    bad = os.path.join(g.tmp, "bad.json")
    open(bad, "w").write("[1]")
    r = render(g, "push", bad)
    assert r.returncode == 2 and bad in r.stderr and "not a JSON object" in r.stderr
    r = render(g, "push", "/nonexistent.json")
    assert r.returncode == 2 and "/nonexistent.json" in r.stderr
    g.config["template"] = "/nonexistent/template.yaml"
    r = render(g, "push", bad)
    assert r.returncode == 2 and "/nonexistent/template.yaml" in r.stderr
