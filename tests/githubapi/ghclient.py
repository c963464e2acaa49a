"""FakeGitHub: runs fake_github.py as a subprocess and talks to it (control API and raw calls).

    sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "githubapi"))
    from fake_github import FakeGitHub, make_app_key, sign_app_jwt, make_tls

See README.md for every member.
"""

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "..", "kubeapi"))

import openapi  # noqa: E402
from fake_apiserver import Response  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
USER_AGENT = "gpuhook-tests"


class FakeGitHub:
    """The stand-in GitHub API in a subprocess.

    state_dir keeps check runs, statuses and issued tokens (and server.log); prefix is "" or
    "/api/v3"; tls_dir (see make_tls) switches to https; app_id and app_public_key configure
    the App; installations is a list of dicts ({"id", "account", "repositories",
    "permissions"}); pats a list of tokens; token_ttl the lifetime of installation tokens.
    """

    def __init__(self, state_dir, prefix="", tls_dir=None, app_id=None, app_public_key=None,
                 installations=None, pats=None, token_ttl=3600, rate_limit=5000, port=0,
                 faults=None, max_statuses=None, openapi_file=None, variant=None, python=None):
        self.state_dir = os.path.abspath(state_dir)
        self.prefix = prefix.rstrip("/")
        self.tls_dir = os.path.abspath(tls_dir) if tls_dir else None
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.installations = list(installations or [])
        self.pats = list(pats or [])
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.port = port
        self.initial_faults = faults
        self.max_statuses = max_statuses
        self.openapi_file = openapi_file
        # The description to check against: GHES's own for the /api/v3 prefix by default.
        self.variant = variant or ("ghes-3.19" if self.prefix == "/api/v3" else "api.github.com")
        self.python = python or (SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON)
                                 else sys.executable)
        self.proc = None
        self.host = "127.0.0.1"
        os.makedirs(self.state_dir, exist_ok=True)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls_dir else "http"

    @property
    def root(self):
        """scheme://127.0.0.1:PORT, where the control endpoints are."""
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    @property
    def url(self):
        """The API's base URL: root plus prefix (what a client's api_url is)."""
        return self.root + self.prefix

    @property
    def ca_file(self):
        return os.path.join(self.tls_dir, "ca.crt") if self.tls_dir else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, port=None, timeout=60):
        """Start the server (installing the OpenAPI package first if needed) and wait until it
        listens; returns self. Raises RuntimeError, with the reason, when it cannot start."""
        if self.running:
            raise RuntimeError("already running")
        if port is not None:
            self.port = port
        path = self.openapi_file or openapi.ensure(self.variant)  # a clear error if npm fails
        port_file = os.path.join(self.state_dir, "port")
        try:
            os.unlink(port_file)
        except OSError:
            pass
        cmd = [self.python, os.path.join(HERE, "fake_github.py"), "--state-dir",
               self.state_dir, "--port", str(self.port), "--port-file", port_file,
               "--openapi", path, "--prefix", self.prefix, "--token-ttl", str(self.token_ttl),
               "--rate-limit", str(self.rate_limit)]
        if self.tls_dir:
            cmd += ["--tls-dir", self.tls_dir]
        if self.app_id is not None:
            cmd += ["--app-id", str(self.app_id), "--app-public-key", self.app_public_key]
        for inst in self.installations:
            cmd += ["--installation", json.dumps(inst)]
        for i, tok in enumerate(self.pats):
            f = os.path.join(self.state_dir, "pat-%d" % i)
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(tok + "\n")
            cmd += ["--pat-file", f]
        if self.max_statuses is not None:
            cmd += ["--max-statuses", str(self.max_statuses)]
        if self.initial_faults:
            cmd += ["--faults", json.dumps({"rules": self.initial_faults})]
        log = open(os.path.join(self.state_dir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     close_fds=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(os.path.join(self.state_dir, "server.log"), errors="replace") as f:
                    tail = f.read()[-2000:]
                raise RuntimeError("fake_github exited with %s:\n%s" % (self.proc.returncode,
                                                                       tail))
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("fake_github did not start within %s s" % timeout)

    def stop(self, timeout=5):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, down_seconds=0):
        self.kill()
        if down_seconds:
            time.sleep(down_seconds)
        return self.start(port=self.port)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- raw client ---------------------------------------------------------------------------

    def ssl_context(self):
        if not self.tls_dir:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def connection(self, timeout=10):
        if self.tls_dir:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.ssl_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=None, jwt=None,
                timeout=10, api=True):
        """One request on a fresh connection. path is under the prefix when api is true
        (pass api=False for an exact path). body may be a dict (sent as JSON), str or bytes;
        token adds 'Authorization: token X', jwt 'Authorization: Bearer JWT'. A User-Agent
        and GitHub's Accept are sent unless headers override them. Returns a Response."""
        hdrs = {"User-Agent": USER_AGENT, "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        if token is not None:
            hdrs["Authorization"] = "token " + token
        if jwt is not None:
            hdrs["Authorization"] = "Bearer " + jwt
        conn = self.connection(timeout)
        try:
            conn.request(method, (self.prefix if api else "") + path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    # --- control ------------------------------------------------------------------------------

    def _control(self, method, path, payload=None):
        r = self.request(method, path, payload, api=False)
        if r.status != 200:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, r.body[:300]))
        return r.json

    @staticmethod
    def _q(**kw):
        kw = {k: v for k, v in kw.items() if v is not None}
        return ("?" + urllib.parse.urlencode(kw)) if kw else ""

    def check_runs(self, repo=None, head_sha=None):
        return self._control("GET", "/_test/check-runs" + self._q(repo=repo,
                                                                   head_sha=head_sha))["items"]

    def check_run(self, check_run_id):
        """{"check_run": ..., "history": [...]}"""
        return self._control("GET", "/_test/check-runs/%d" % int(check_run_id))

    def history(self, check_run_id=None):
        return self._control("GET", "/_test/history" + self._q(
            check_run_id=check_run_id))["items"]

    def statuses(self, repo=None, sha=None):
        return self._control("GET", "/_test/statuses" + self._q(repo=repo, sha=sha))["items"]

    def requests(self):
        return self._control("GET", "/_test/requests")["items"]

    def clear_requests(self):
        self._control("DELETE", "/_test/requests")

    def set_faults(self, rules, append=False):
        return self._control("POST", "/_test/faults", {"rules": list(rules),
                                                       "append": append})["rules"]

    def faults(self):
        return self._control("GET", "/_test/faults")["rules"]

    def clear_faults(self):
        self._control("DELETE", "/_test/faults")

    def tokens(self):
        """Issued installation tokens (never the tokens themselves), oldest first."""
        return self._control("GET", "/_test/tokens")["items"]

    def issue_token(self, installation_id, ttl=None, permissions=None):
        """An installation token without a JWT, for tests of the token path."""
        return self._control("POST", "/_test/tokens", {"installation_id": installation_id,
                                                       "ttl": ttl,
                                                       "permissions": permissions})["token"]

    def expire_tokens(self, installation_id=None):
        return self._control("POST", "/_test/expire-tokens",
                             {"installation_id": installation_id})["expired"]

    def add_pat(self, token, login="octocat", user_id=1):
        self._control("POST", "/_test/pats", {"token": token, "login": login, "id": user_id})

    def config(self, **changes):
        """Read, or with keyword arguments change, token_ttl, rate_limit, max_statuses and
        require_user_agent."""
        if changes:
            return self._control("PATCH", "/_test/config", changes)
        return self._control("GET", "/_test/config")

    def rate_limits(self):
        return self._control("GET", "/_test/rate-limits")["items"]

    def reset(self, tokens=False):
        self._control("POST", "/_test/reset", {"tokens": tokens})

    def wait_check_runs(self, count, timeout=10, **filters):
        deadline = time.monotonic() + timeout
        while True:
            runs = self.check_runs(**filters)
            if len(runs) >= count:
                return runs
            if time.monotonic() > deadline:
                raise AssertionError("expected %d check runs, have %d" % (count, len(runs)))
            time.sleep(0.05)

    def wait_statuses(self, count, timeout=10, **filters):
        deadline = time.monotonic() + timeout
        while True:
            items = self.statuses(**filters)
            if len(items) >= count:
                return items
            if time.monotonic() > deadline:
                raise AssertionError("expected %d statuses, have %d" % (count, len(items)))
            time.sleep(0.05)

    def wait_history(self, predicate, timeout=10):
        """Poll the history until predicate(items) is true; returns the items."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.history()
            if predicate(items):
                return items
            if time.monotonic() > deadline:
                raise AssertionError("history did not reach the expected state: %r" % items)
            time.sleep(0.05)
