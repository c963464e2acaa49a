"""Pull requests from forks and from untrusted authors (issue 17), through the real binary
with the selection rules config/gpuhook.json ships, on GitHub's recorded payloads."""
import json
import os

import pytest

from harness import SOURCE_DIR, GpuHook, default_config, fixture


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("trust"))
    cfg = default_config(tmp)
    with open(os.path.join(SOURCE_DIR, "config", "gpuhook.json")) as f:
        cfg["selection"] = json.load(f)["selection"]
    with GpuHook(config=cfg, tmp=tmp) as g:
        yield g


def opened(**change):
    p = json.loads(fixture("pull_request_opened.json"))
    for k, v in change.items():
        if k == "head_repo":
            p["pull_request"]["head"]["repo"] = v
        else:
            p["pull_request"][k] = v
    return json.dumps(p).encode()


def test_owner_pull_request_from_the_same_repository_runs(hook):
    r = hook.deliver("pull_request", opened())
    assert r.status == 201, r.body
    assert r.json["variant"] == "lite"


def test_pull_request_from_a_fork_is_skipped_with_the_reason(hook):
    p = json.loads(fixture("pull_request_opened.json"))
    head = dict(p["pull_request"]["head"]["repo"], full_name="mallory/Hello-World", fork=True)
    before = len(hook.runs())
    r = hook.deliver("pull_request", opened(head_repo=head))
    assert r.status == 200 and r.json["status"] == "ignored", r.body
    assert r.json["rule"] == "skip-fork"
    assert r.json["reason"] == 'rule "skip-fork" matched: pull_request from fork "mallory/Hello-World"'
    assert len(hook.runs()) == before


def test_pull_request_whose_fork_was_deleted_is_skipped(hook):
    r = hook.deliver("pull_request", opened(head_repo=None))
    assert r.status == 200 and r.json["rule"] == "skip-fork", r.body
    assert "a fork whose repository is gone" in r.json["reason"]


@pytest.mark.parametrize("association", ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "NONE"])
def test_untrusted_author_is_skipped(hook, association):
    r = hook.deliver("pull_request", opened(author_association=association))
    assert r.status == 200 and r.json["status"] == "ignored", r.body
    assert r.json["rule"] == "skip-untrusted-author"
    assert r.json["reason"] == (
        'rule "skip-untrusted-author" matched: pull_request by author association "%s" '
        "(not one of OWNER, MEMBER, COLLABORATOR)" % association)


def test_member_and_collaborator_run(hook):
    for association in ("MEMBER", "COLLABORATOR"):
        r = hook.deliver("pull_request", opened(author_association=association,
                                                title="t " + association))
        assert r.status == 201, r.body


def test_pushes_are_not_affected(hook):
    r = hook.deliver("push", fixture("push_with-new-branch.json"))
    assert r.status == 201, r.body
