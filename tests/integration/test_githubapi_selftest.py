"""Self-test of the stand-in GitHub API (tests/githubapi/fake_github.py).

gpuhook's GitHub feedback will be tested against this server, so it is checked here with a
client nobody here wrote, Debian's python3-github (PyGithub): App auth through
GithubIntegration (PyGithub signs the JWT itself), check runs created, updated and read back,
commit statuses and the combined status, and a 422 from the OpenAPI validation. Raw
http.client calls cover what PyGithub hides: the rate-limit headers, primary and secondary
limits, 5xx, dropped and reset connections, a lost answer, JWT rules, token expiry,
permissions, the GHES prefix, keep-alive and a restart. Every 2xx answer is also checked
against the response schema of GitHub's description.

The description comes from npm (@octokit/openapi, pinned in tests/githubapi/openapi.py): if
it cannot be fetched, the tests fail with the reason; nothing is skipped.
"""

import datetime
import http.client
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "githubapi"))

import openapi  # noqa: E402
from fake_github import FakeGitHub, make_app_key, make_tls, sign_app_jwt  # noqa: E402

APP_ID = 424242
INSTALLATION = 4711
OWNER, REPO = "octo-org", "gpu-service"
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
PAT = "ghp_" + "T" * 36


def github_module():
    try:
        import github  # Debian's python3-github (PyGithub)
    except ImportError:
        pytest.fail("python3-github is not installed: run scripts/install-deps.sh")
    return github


@pytest.fixture(scope="module")
def description():
    try:
        return openapi.Description(openapi.ensure())
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_app_key(str(tmp_path_factory.mktemp("app")))


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    make_tls(d)
    return d


@pytest.fixture(scope="module")
def gh(tmp_path_factory, keys, tls_dir, description):
    srv = FakeGitHub(str(tmp_path_factory.mktemp("gh")), tls_dir=tls_dir, app_id=APP_ID,
                     app_public_key=keys["public"], pats=[PAT],
                     installations=[{"id": INSTALLATION, "account": OWNER},
                                    {"id": 99, "account": "other-org",
                                     "repositories": ["other-org/one"],
                                     "permissions": {"checks": "read", "metadata": "read"}}])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(gh, monkeypatch):
    gh.reset(tokens=True)
    gh.config(token_ttl=3600, rate_limit=5000, max_statuses=1000)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", gh.ca_file)  # PyGithub's requests trust the CA
    return gh


def conforms(description, method, path, status, body):
    m = description.find(method, path)
    assert m is not None, (method, path)
    errors = description.response_errors(m, status, body)
    assert not errors, "%s %s %d does not fit GitHub's description: %s" % (
        method, path, status, errors[:5])


def installation_token(gh, keys):
    r = gh.request("POST", "/app/installations/%d/access_tokens" % INSTALLATION,
                   jwt=sign_app_jwt(keys["private"], APP_ID))
    assert r.status == 201, r.body
    return r.json["token"]


# --- PyGithub, a client nobody here wrote ---------------------------------------------------


def test_pygithub_app_auth_gets_an_installation_token(api, keys, description):
    github = github_module()
    with open(keys["private"]) as f:
        integration = github.GithubIntegration(APP_ID, f.read(), base_url=api.url)
    auth = integration.get_access_token(INSTALLATION)
    assert auth.token.startswith("ghs_") and len(auth.token) == 40
    left = auth.expires_at.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
    assert 3500 < left <= 3600
    assert integration.get_installation(OWNER, REPO).id == INSTALLATION
    [tok] = api.tokens()
    assert tok["installation_id"] == INSTALLATION and not tok["expired"]
    assert "token" not in tok  # the control API never shows a token
    log = api.requests()
    assert [e["auth"] for e in log] == ["app", "app"]
    assert [e["operation"] for e in log] == ["apps/create-installation-access-token",
                                            "apps/get-repo-installation"]
    # The token works for the repository endpoints, as "token X" and as "Bearer X".
    for scheme in ("token", "Bearer"):
        r = api.request("GET", "/repos/%s/%s/commits/%s/check-runs" % (OWNER, REPO, SHA),
                        headers={"Authorization": "%s %s" % (scheme, auth.token)})
        assert r.status == 200, r.body
    r = api.request("POST", "/app/installations/%d/access_tokens" % INSTALLATION,
                    jwt=sign_app_jwt(keys["private"], APP_ID))
    conforms(description, "POST", "/app/installations/1/access_tokens", 201, r.json)


def test_pygithub_check_run_created_updated_and_read_back(api, keys, description):
    github = github_module()
    g = github.Github(installation_token(api, keys), base_url=api.url)
    repo = g.get_repo("%s/%s" % (OWNER, REPO), lazy=True)
    run = repo.create_check_run("gpu / lite", SHA, status="queued", external_id="pr-1",
                                details_url="https://dashboard.example/run/1")
    assert run.status == "queued" and run.conclusion is None and run.started_at is not None
    run.edit(status="in_progress")
    assert run.status == "in_progress"
    run.edit(conclusion="success", output={"title": "lite: 8 steps passed",
                                           "summary": "| task | outcome |\n|---|---|\n| 1 | ok |"})
    assert run.status == "completed" and run.completed_at is not None
    again = repo.get_check_run(run.id)
    assert (again.status, again.conclusion) == ("completed", "success")
    assert again.output.title == "lite: 8 steps passed"
    listed = list(repo.get_commit(SHA).get_check_runs())
    assert [r.id for r in listed] == [run.id]
    history = api.history(run.id)
    assert [(e["action"], e["status"], e["conclusion"]) for e in history] == [
        ("created", "queued", None), ("updated", "in_progress", None),
        ("updated", "completed", "success")]
    stored = api.check_run(run.id)["check_run"]
    for method, path, status in (("GET", "/repos/o/r/check-runs/1", 200),
                                 ("PATCH", "/repos/o/r/check-runs/1", 200),
                                 ("POST", "/repos/o/r/check-runs", 201)):
        conforms(description, method, path, status, stored)
    r = api.request("GET", "/repos/%s/%s/commits/%s/check-runs" % (OWNER, REPO, SHA),
                    token=installation_token(api, keys))
    conforms(description, "GET", "/repos/o/r/commits/x/check-runs", 200, r.json)


def test_pygithub_statuses_and_combined_status(api, description):
    github = github_module()
    g = github.Github(PAT, base_url=api.url)
    commit = g.get_repo("%s/%s" % (OWNER, REPO), lazy=True).get_commit(SHA)
    commit.create_status("pending", target_url="https://dashboard.example/1",
                         description="queued on gpu-node-1", context="gpu / lite")
    commit.create_status("success", description="8 steps passed", context="gpu / lite")
    commit.create_status("pending", context="gpu / original")
    states = [(s.context, s.state) for s in commit.get_statuses()]
    assert states == [("gpu / original", "pending"), ("gpu / lite", "success"),
                      ("gpu / lite", "pending")]  # newest first, as GitHub lists them
    combined = commit.get_combined_status()
    assert combined.state == "pending" and combined.total_count == 2
    commit.create_status("failure", context="gpu / original")
    assert commit.get_combined_status().state == "failure"
    assert [s["state"] for s in api.wait_statuses(4, sha=SHA)] == ["pending", "success",
                                                                    "pending", "failure"]
    assert api.wait_history(lambda items: items == []) == []  # no check run here
    r = api.request("GET", "/repos/%s/%s/commits/%s/status" % (OWNER, REPO, SHA), token=PAT)
    conforms(description, "GET", "/repos/o/r/commits/x/status", 200, r.json)
    r = api.request("GET", "/repos/%s/%s/commits/%s/statuses" % (OWNER, REPO, SHA), token=PAT)
    conforms(description, "GET", "/repos/o/r/commits/x/statuses", 200, r.json)
    r = api.request("POST", "/repos/%s/%s/statuses/%s" % (OWNER, REPO, SHA),
                    {"state": "success"}, token=PAT)
    conforms(description, "POST", "/repos/o/r/statuses/x", 201, r.json)
    assert r.json["context"] == "default"


def test_pygithub_sees_422_for_a_body_github_refuses(api, keys):
    github = github_module()
    g = github.Github(installation_token(api, keys), base_url=api.url)
    repo = g.get_repo("%s/%s" % (OWNER, REPO), lazy=True)
    with pytest.raises(github.GithubException) as e:
        repo.create_check_run("gpu / lite", SHA, status="finished")
    assert e.value.status == 422
    assert e.value.data["message"] == (
        "Invalid request.\n\nFor 'properties/status', \"finished\" is not a member of "
        "[\"queued\", \"in_progress\", \"completed\"].")
    with pytest.raises(github.GithubException) as e:
        repo.get_commit(SHA).create_status("green")
    assert e.value.status == 422 and "is not a member of" in e.value.data["message"]
    assert api.check_runs() == [] and api.statuses() == []  # nothing refused was kept
    assert [e["validation"] is not None for e in api.requests() if e["status"] == 422] == [
        True, True]


# --- GitHub's rules, raw ------------------------------------------------------------------


def test_check_run_rules(api, keys):
    tok = installation_token(api, keys)
    base = "/repos/%s/%s/check-runs" % (OWNER, REPO)
    r = api.request("POST", base, {"name": "gpu", "head_sha": SHA, "status": "completed"},
                    token=tok)
    assert r.status == 422 and r.json["message"] == "Validation Failed"
    assert r.json["errors"][0]["field"] == "conclusion"
    r = api.request("POST", base, {"name": "gpu", "head_sha": SHA}, token=tok)
    rid = r.json["id"]
    r = api.request("PATCH", "%s/%d" % (base, rid), {"status": "completed"}, token=tok)
    assert r.status == 422 and '"conclusion" wasn\'t supplied.' in r.json["message"]
    r = api.request("PATCH", "%s/%d" % (base, rid), {"started_at": "yesterday"}, token=tok)
    assert r.status == 422 and "is not a valid date-time" in r.json["message"]
    r = api.request("POST", base, {"name": "gpu", "head_sha": "main"}, token=tok)
    assert r.status == 422 and r.json["message"] == "No commit found for SHA: main"
    r = api.request("PATCH", "%s/%d" % (base, rid + 1000), {"status": "queued"}, token=tok)
    assert r.status == 404
    r = api.request("PATCH", "%s/abc" % base, {"status": "queued"}, token=tok)
    assert r.status == 404  # check_run_id is an integer: no such route
    assert [e["action"] for e in api.history()] == ["created"]


def test_status_limits(api):
    api.config(max_statuses=2)
    path = "/repos/%s/%s/statuses/%s" % (OWNER, REPO, SHA)
    for _ in range(2):
        assert api.request("POST", path, {"state": "pending", "context": "ci"},
                           token=PAT).status == 201
    r = api.request("POST", path, {"state": "success", "context": "CI"}, token=PAT)
    assert r.status == 422 and r.json["errors"] == [
        "Validation failed: This SHA and context has reached the maximum number of statuses."]
    assert api.request("POST", path, {"state": "success", "context": "other"},
                       token=PAT).status == 201
    r = api.request("POST", path, {"state": "success", "description": "x" * 141}, token=PAT)
    assert r.status == 422 and "too long" in r.json["errors"][0]["message"]


def test_pagination_links(api):
    for i in range(3):
        api.request("POST", "/repos/%s/%s/statuses/%s" % (OWNER, REPO, SHA),
                    {"state": "pending", "context": "c%d" % i}, token=PAT)
    r = api.request("GET", "/repos/%s/%s/commits/%s/statuses?per_page=2" % (OWNER, REPO, SHA),
                    token=PAT)
    assert [s["context"] for s in r.json] == ["c2", "c1"]
    links = dict((rel.split('"')[1], url.strip(" <>")) for url, rel in
                 (part.split(";") for part in r.headers["Link"].split(",")))
    assert set(links) == {"next", "last", "first"}
    nxt = links["next"]
    assert nxt.startswith(api.url + "/repos/")
    r = api.request("GET", nxt[len(api.url):], token=PAT)
    assert [s["context"] for s in r.json] == ["c0"] and 'rel="prev"' in r.headers["Link"]
    # A Link belongs to its answer, not to the kept-alive connection.
    conn = api.connection()
    hdrs = {"Authorization": "token " + PAT, "User-Agent": "t"}
    for path, has_link in (("/statuses?per_page=1", True), ("/status", False)):
        conn.request("GET", "/repos/%s/%s/commits/%s%s" % (OWNER, REPO, SHA, path),
                     headers=hdrs)
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and (r.getheader("Link") is not None) == has_link
    conn.close()


def test_openapi_routing_and_request_checks(api):
    r = api.request("GET", "/repos/%s/%s/no-such-thing" % (OWNER, REPO), token=PAT)
    assert (r.status, r.json["message"]) == (404, "Not Found")
    assert r.json["documentation_url"].startswith("https://docs.github.com/")
    r = api.request("DELETE", "/repos/%s/%s/check-runs/1" % (OWNER, REPO), token=PAT)
    assert r.status == 404  # no such method in the description
    r = api.request("GET", "/repos/%s/%s/commits/%s/check-runs?filter=newest" % (
        OWNER, REPO, SHA), token=PAT)
    assert r.status == 422 and "\"newest\" is not a member of" in r.json["message"]
    r = api.request("POST", "/repos/%s/%s/statuses/%s" % (OWNER, REPO, SHA), b"{not json",
                    token=PAT)
    assert (r.status, r.json["message"]) == (400, "Problems parsing JSON")
    r = api.request("GET", "/search/issues?per_page=5", token=PAT)
    assert r.status == 422 and r.json["message"] == "Invalid request.\n\n\"q\" wasn't supplied."
    r = api.request("GET", "/repos/%s/%s/issues" % (OWNER, REPO), token=PAT)
    assert r.status == 501 and "issues/list-for-repo" in r.json["message"]
    r = api.request("GET", "/rate_limit", headers={"User-Agent": None})
    assert r.status == 403 and b"User-Agent" in r.body
    r = api.request("GET", "/repos/%s/%s/check-runs/1" % (OWNER, REPO))
    assert (r.status, r.json["message"]) == (401, "Requires authentication")


def test_jwt_rules(api, keys, tmp_path):
    url = "/app/installations/%d/access_tokens" % INSTALLATION
    now = int(time.time())

    def refusal(jwt):
        r = api.request("POST", url, jwt=jwt)
        assert r.status == 401, r.body
        return r.json["message"]

    assert refusal(sign_app_jwt(keys["private"], APP_ID, iat=now - 700, exp=now - 100)) == \
        "'Expiration time' claim ('exp') must be a numeric value representing the future " \
        "time at which the assertion expires"
    assert refusal(sign_app_jwt(keys["private"], APP_ID, iat=now - 60, exp=now + 600)) == \
        "'Expiration time' claim ('exp') is too far in the future"
    assert refusal(sign_app_jwt(keys["private"], APP_ID, iat=now + 120, exp=now + 300)) == \
        "'Issued at' claim ('iat') must be an Integer representing the time that the " \
        "assertion was issued"
    other = make_app_key(str(tmp_path / "other"))
    assert refusal(sign_app_jwt(other["private"], APP_ID)) == \
        "A JSON web token could not be decoded"
    assert refusal(sign_app_jwt(keys["private"], APP_ID + 1)) == \
        "A JSON web token could not be decoded"
    assert refusal("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9.c2ln") == \
        "A JSON web token could not be decoded"
    # iat up to 60 s ahead is clock drift GitHub allows; the string form of iss too.
    r = api.request("POST", url, jwt=sign_app_jwt(keys["private"], str(APP_ID), iat=now + 30,
                                                  exp=now + 400))
    assert r.status == 201, r.body
    # A JWT is for /app endpoints; a token there is refused.
    r = api.request("POST", url, token=r.json["token"])
    assert (r.status, r.json["message"]) == (401, "A JSON web token could not be decoded")
    r = api.request("GET", "/repos/%s/%s/commits/%s/status" % (OWNER, REPO, SHA),
                    jwt=sign_app_jwt(keys["private"], APP_ID))
    assert r.status == 403
    r = api.request("POST", "/app/installations/12345/access_tokens",
                    jwt=sign_app_jwt(keys["private"], APP_ID))
    assert r.status == 404


def test_token_expires_and_a_new_one_is_issued(api, keys):
    api.config(token_ttl=1)
    tok = installation_token(api, keys)
    path = "/repos/%s/%s/check-runs" % (OWNER, REPO)
    assert api.request("POST", path, {"name": "a", "head_sha": SHA}, token=tok).status == 201
    time.sleep(1.1)
    r = api.request("POST", path, {"name": "b", "head_sha": SHA}, token=tok)
    assert (r.status, r.json["message"]) == (401, "Bad credentials")
    api.config(token_ttl=3600)
    fresh = installation_token(api, keys)
    assert fresh != tok
    assert api.request("POST", path, {"name": "b", "head_sha": SHA}, token=fresh).status == 201
    assert [t["expired"] for t in api.tokens()] == [True, False]
    assert api.expire_tokens(INSTALLATION) == 1
    assert api.request("GET", path + "/1", token=fresh).status == 401


def test_permissions_and_repository_access(api, keys):
    jwt = sign_app_jwt(keys["private"], APP_ID)
    r = api.request("POST", "/app/installations/%d/access_tokens" % INSTALLATION,
                    {"permissions": {"checks": "read"}}, jwt=jwt)
    assert r.status == 201 and r.json["permissions"] == {"checks": "read"}
    path = "/repos/%s/%s/check-runs" % (OWNER, REPO)
    r = api.request("POST", path, {"name": "a", "head_sha": SHA}, token=r.json["token"])
    assert (r.status, r.json["message"]) == (403, "Resource not accessible by integration")
    r = api.request("POST", "/app/installations/%d/access_tokens" % INSTALLATION,
                    {"permissions": {"checks": "admin"}}, jwt=jwt)  # through a $ref
    assert r.status == 422 and r.json["message"] == (
        "Invalid request.\n\nFor 'properties/permissions/properties/checks', \"admin\" is not a "
        "member of [\"read\", \"write\"].")
    r = api.request("POST", "/app/installations/99/access_tokens",
                    {"permissions": {"checks": "write"}}, jwt=jwt)
    assert r.status == 422 and "not granted" in r.json["message"]
    other = api.request("POST", "/app/installations/99/access_tokens", jwt=jwt).json["token"]
    r = api.request("GET", "/repos/other-org/two/commits/%s/check-runs" % SHA, token=other)
    assert r.status == 404
    assert api.request("GET", "/repos/other-org/one/commits/%s/check-runs" % SHA,
                       token=other).status == 200
    r = api.request("POST", path, {"name": "a", "head_sha": SHA}, token=PAT)
    assert (r.status, r.json["message"]) == (403, "You must authenticate via a GitHub App.")


# --- rate limits and faults ---------------------------------------------------------------


def test_rate_limit_headers_on_every_answer(api, keys):
    tok = installation_token(api, keys)
    path = "/repos/%s/%s/commits/%s/statuses" % (OWNER, REPO, SHA)
    seen = []
    for _ in range(3):
        r = api.request("GET", path, token=tok)
        assert r.status == 200
        seen.append({k: r.headers[k] for k in ("X-RateLimit-Limit", "X-RateLimit-Remaining",
                                                "X-RateLimit-Reset", "X-RateLimit-Used",
                                                "X-RateLimit-Resource")})
    assert [s["X-RateLimit-Limit"] for s in seen] == ["5000"] * 3
    used = [int(s["X-RateLimit-Used"]) for s in seen]
    assert used[1] == used[0] + 1 and used[2] == used[1] + 1
    assert [int(s["X-RateLimit-Remaining"]) for s in seen] == [5000 - u for u in used]
    assert int(seen[0]["X-RateLimit-Reset"]) > time.time() and seen[0][
        "X-RateLimit-Resource"] == "core"
    for r in (api.request("GET", path, token="ghs_" + "x" * 36),
              api.request("GET", "/repos/%s/%s/nope" % (OWNER, REPO), token=tok)):
        assert r.status in (401, 404) and r.headers["X-RateLimit-Limit"]
    api.config(rate_limit=int(seen[-1]["X-RateLimit-Used"]) + 1)
    assert api.request("GET", path, token=tok).status == 200
    r = api.request("GET", path, token=tok)
    assert r.status == 403 and r.headers["X-RateLimit-Remaining"] == "0"
    assert r.json["message"] == "API rate limit exceeded for installation ID %d." % INSTALLATION


def test_primary_rate_limit_fault_holds_until_reset(api, keys):
    tok = installation_token(api, keys)
    path = "/repos/%s/%s/statuses/%s" % (OWNER, REPO, SHA)
    api.set_faults([{"mode": "rate_limit", "reset_in": 1, "paths": ["/repos/*/statuses/*"],
                     "code": 429}])
    r = api.request("POST", path, {"state": "pending"}, token=tok)
    assert r.status == 429 and r.headers["X-RateLimit-Remaining"] == "0"
    reset = int(r.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 2
    assert r.json["message"] == "API rate limit exceeded for installation ID %d." % INSTALLATION
    # Until the reset, every call of that installation is refused (the rule's count is spent).
    r = api.request("GET", "/repos/%s/%s/commits/%s/status" % (OWNER, REPO, SHA), token=tok)
    assert r.status == 403 and r.headers["X-RateLimit-Remaining"] == "0"
    time.sleep(max(0, reset - time.time()) + 0.05)
    assert api.request("POST", path, {"state": "pending"}, token=tok).status == 201
    assert len(api.statuses()) == 1


def test_secondary_limit_with_retry_after(api):
    path = "/repos/%s/%s/statuses/%s" % (OWNER, REPO, SHA)
    api.set_faults([{"mode": "secondary_limit", "retry_after": 7, "methods": ["POST"]},
                    {"mode": "secondary_limit", "code": 429, "retry_after": None}])
    r = api.request("POST", path, {"state": "pending"}, token=PAT)
    assert r.status == 403 and r.headers["Retry-After"] == "7"
    assert r.json["message"].startswith("You have exceeded a secondary rate limit. Please wait "
                                        "a few minutes before you try again.")
    assert "secondary-rate-limits" in r.json["documentation_url"]
    assert r.headers["X-RateLimit-Limit"] == "5000"  # a fault's answer has them too
    r = api.request("POST", path, {"state": "pending"}, token=PAT)
    assert r.status == 429 and r.headers.get("Retry-After") is None
    assert api.request("POST", path, {"state": "pending"}, token=PAT).status == 201
    assert len(api.statuses()) == 1
    assert [e["fault"] for e in api.requests()] == ["secondary_limit", "secondary_limit", None]


def test_5xx_dropped_and_reset_connections(api):
    path = "/repos/%s/%s/commits/%s/status" % (OWNER, REPO, SHA)
    api.set_faults([{"mode": "status", "code": 502, "count": 1},
                    {"mode": "alternate", "modes": ["drop", "reset", "503", "delay:0.3"],
                     "count": 4}])
    assert api.request("GET", path, token=PAT).status == 502
    with pytest.raises(http.client.RemoteDisconnected):
        api.request("GET", path, token=PAT)
    with pytest.raises(ConnectionResetError):
        api.request("GET", path, token=PAT)
    r = api.request("GET", path, token=PAT)
    assert r.status == 503 and r.json["message"] == "Service Unavailable"
    t = time.monotonic()
    assert api.request("GET", path, token=PAT).status == 200
    assert time.monotonic() - t >= 0.3
    assert [f["count"] for f in api.faults()] == [0, 0]


def test_lost_answer_leaves_the_check_run_created(api, keys):
    tok = installation_token(api, keys)
    api.set_faults([{"mode": "perform_then_fail", "then": "drop", "methods": ["POST"],
                     "paths": ["/repos/*/check-runs"]}])
    with pytest.raises(http.client.RemoteDisconnected):
        api.request("POST", "/repos/%s/%s/check-runs" % (OWNER, REPO),
                    {"name": "gpu / lite", "head_sha": SHA}, token=tok)
    assert len(api.wait_check_runs(1)) == 1  # a blind retry would make a second one


def test_keepalive_restart_and_no_secrets_in_the_log(api, keys):
    tok = installation_token(api, keys)
    conn = api.connection()
    hdrs = {"Authorization": "token " + tok, "User-Agent": "t", "Content-Type": "application/json"}
    for name in ("one", "two"):
        conn.request("POST", "/repos/%s/%s/check-runs" % (OWNER, REPO),
                     body='{"name": "%s", "head_sha": "%s"}' % (name, SHA), headers=hdrs)
        r = conn.getresponse()
        r.read()
        assert r.status == 201
    conn.close()
    log = api.requests()
    assert log[-1]["conn"] == log[-2]["conn"]
    api.restart()
    assert [r["name"] for r in api.check_runs()] == ["one", "two"]
    assert api.request("GET", "/repos/%s/%s/commits/%s/check-runs" % (OWNER, REPO, SHA),
                       token=tok).status == 200  # tokens survive a restart too
    with open(os.path.join(api.state_dir, "server.log"), "rb") as f:
        text = f.read()
    with open(os.path.join(api.state_dir, "state.json"), "rb") as f:
        state = f.read()
    for secret in (tok, PAT, "eyJ"):
        assert secret.encode() not in text and secret.encode() not in state


def test_ghes_prefix(tmp_path, keys, description, monkeypatch):
    github = github_module()
    srv = FakeGitHub(str(tmp_path / "ghes"), prefix="/api/v3", app_id=APP_ID,
                     app_public_key=keys["public"],
                     installations=[{"id": INSTALLATION, "account": OWNER}])
    srv.start()
    try:
        assert srv.url.endswith("/api/v3")
        assert srv.variant == "ghes-3.19"
        ping = srv._control("GET", "/_test/ping")
        assert (ping["openapi"], ping["plan"], ping["release"]) == ("23.0.2", "ghes", 3.19)
        with open(keys["private"]) as f:
            token = github.GithubIntegration(APP_ID, f.read(),
                                             base_url=srv.url).get_access_token(
                                                 INSTALLATION).token
        g = github.Github(token, base_url=srv.url)
        run = g.get_repo("%s/%s" % (OWNER, REPO), lazy=True).create_check_run("gpu", SHA)
        assert run.url.startswith(srv.url + "/repos/")
        r = srv.request("GET", "/repos/%s/%s/check-runs/%d" % (OWNER, REPO, run.id),
                        token=token, api=False)
        assert r.status == 404  # outside the prefix
        r = srv.request("GET", "/repos/%s/%s/check-runs/%d" % (OWNER, REPO, run.id),
                        token=token)
        assert r.status == 200 and r.json["id"] == run.id
    finally:
        srv.stop()


def test_missing_npm_fails_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUHOOK_OPENAPI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GPUHOOK_OPENAPI_FILE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError) as e:
        openapi.ensure()
    assert "npm is not installed" in str(e.value) and openapi.VERSION in str(e.value)
    r = subprocess.run([sys.executable, os.path.join(HERE, "..", "githubapi", "openapi.py")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ), check=False)
    assert r.returncode == 1 and b"npm is not installed" in r.stderr
