#!/usr/bin/python3
"""A stand-in GitHub REST API for gpuhook's tests.

Every request is checked against GitHub's published OpenAPI description (@octokit/openapi,
pinned in openapi.py): an unknown path or method gets 404, parameters and JSON bodies that do
not fit the operation get GitHub's 422. Apps authenticate with RS256 JWTs verified against
the App's public key and exchange them for expiring installation tokens; installation tokens
and personal access tokens authorize the repository endpoints. Check runs (with the history
of every update) and commit statuses are kept and can be read back through /_test/. Every
answer carries GitHub's rate-limit headers; faults (5xx, primary and secondary rate limits,
dropped and reset connections, delays, lost answers) are injected through /_test/faults.
It serves under a prefix, "" like api.github.com or "/api/v3" like GitHub Enterprise Server,
over http or https, HTTP/1.1 with keep-alive.

It is both a command-line program and a module: tests import FakeGitHub, which runs it as a
subprocess so that it can be killed and restarted on the same port. Needs /usr/bin/python3
with Debian's python3-jsonschema, python3-jwt and python3-cryptography. Nothing it prints
contains a token, a JWT or a body. See README.md beside this file.
"""

import argparse
import http.server
import itertools
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "..", "kubeapi"))

import ghauth  # noqa: E402
import ghfaults  # noqa: E402
import ghstate  # noqa: E402
import openapi  # noqa: E402
from fake_apiserver import DropConnection, Handler as _KubeHandler  # noqa: E402
from fake_apiserver import Response, make_tls, write_file_atomic  # noqa: E402,F401
from ghauth import make_app_key, sign_app_jwt  # noqa: E402,F401
from ghclient import FakeGitHub  # noqa: E402,F401  (the test-side class, in its own file)

__all__ = ["FakeGitHub", "GitHubServer", "Response", "make_app_key", "make_tls", "sign_app_jwt"]
SYSTEM_PYTHON = "/usr/bin/python3"
DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
SECONDARY_DOCS = RATE_DOCS + "#about-secondary-rate-limits"
NO_USER_AGENT = ("Request forbidden by administrative rules. Please make sure your request has "
                 "a User-Agent header (https://docs.github.com/en/rest/overview/"
                 "resources-in-the-rest-api#user-agent-required). Check "
                 "https://developer.github.com for other possible causes.")
# Operations an App calls with its JWT; everything else takes a token.
JWT_OPERATIONS = {"apps/get-authenticated", "apps/create-installation-access-token",
                  "apps/get-installation", "apps/list-installations",
                  "apps/get-repo-installation", "apps/get-org-installation",
                  "apps/get-user-installation"}
# GET /repos/{owner}/{repo}/statuses/{ref}: the old name of .../commits/{ref}/statuses, which
# api.github.com still answers (PyGithub 1.55's Commit.get_statuses calls it) but the
# description no longer lists.
LEGACY = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/(.+)$")
NEEDS = {"checks/create": ("checks", "write"), "checks/update": ("checks", "write"),
         "checks/get": ("checks", "read"), "checks/list-for-ref": ("checks", "read"),
         "repos/create-commit-status": ("statuses", "write"),
         "repos/list-commit-statuses-for-ref": ("statuses", "read"),
         "repos/get-combined-status-for-ref": ("statuses", "read"),
         "repos/get": ("metadata", "read"), "repos/get-commit": ("contents", "read")}


class Bucket:
    """A primary rate-limit window of one credential."""

    def __init__(self, limit, label):
        self.limit, self.label, self.used = limit, label, 0
        self.reset = int(time.time()) + 3600
        self.blocked_until = 0

    def roll(self, now):
        if now >= self.reset:
            self.used, self.reset = 0, int(now) + 3600

    def headers(self):
        return [("X-RateLimit-Limit", str(self.limit)),
                ("X-RateLimit-Remaining", str(max(0, self.limit - self.used))),
                ("X-RateLimit-Reset", str(self.reset)), ("X-RateLimit-Used", str(self.used)),
                ("X-RateLimit-Resource", "core")]


class GitHubServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state_dir, description, prefix="", ssl_ctx=None, creds=None,
                 rate_limit=5000, require_user_agent=True):
        self.prefix = prefix.rstrip("/")
        self.desc = description
        self.creds = creds or ghauth.Credentials()
        self.state = ghstate.State(state_dir, app={
            "id": int(self.creds.app_id) if self.creds.app_id else 1, "slug": "gpuhook-test",
            "name": "gpuhook test", "owner": "octo-org"})
        self.creds.load_state(self.state.creds_state)
        self.ssl_ctx = ssl_ctx
        self.faults = ghfaults.Faults()
        self.rate_limit = rate_limit
        self.require_user_agent = require_user_agent
        self.buckets = {}
        self.bucket_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.log = []
        self.log_seq = itertools.count(1)
        self.conn_seq = itertools.count(1)
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout, OSError)):
            return
        sys.stderr.write("fake_github: %s: %s\n" % (type(exc).__name__, exc))

    def bucket(self, key, label, limit):
        with self.bucket_lock:
            b = self.buckets.get(key)
            if b is None:
                b = self.buckets[key] = Bucket(limit, label)
            b.roll(time.time())
            return b

    def record(self, entry):
        with self.log_lock:
            entry["seq"] = next(self.log_seq)
            self.log.append(entry)
            if len(self.log) > 20000:
                del self.log[:10000]

    def save(self):
        self.state.save(self.creds.to_state())


class Handler(_KubeHandler):
    """HTTP plumbing (keep-alive, TLS, drop and reset, body reading) comes from the stand-in
    kube-apiserver's handler; everything GitHub-specific is here."""

    server_version = "GitHub.com"

    # --- responses --------------------------------------------------------------------------

    def _send(self, code, body, content_type="application/json; charset=utf-8", headers=()):
        extra = list(headers)
        if self.bucket_obj is not None and not any(k == "X-RateLimit-Limit" for k, _ in extra):
            extra = self.bucket_obj.headers() + extra
        extra += [("X-GitHub-Media-Type", "github.v3; format=json"),
                  ("X-GitHub-Api-Version-Selected", "2022-11-28"),
                  ("X-GitHub-Request-Id", self.request_id)]
        super()._send(code, body, content_type, extra)

    def _error(self, code, message, docs=DOCS, headers=(), extra=None):
        body = {"message": message, "documentation_url": docs, "status": str(code)}
        body.update(extra or {})
        self._send(code, body, headers=headers)

    def _fault(self, rule, who):
        mode = rule["mode"]
        if mode in ("drop", "reset"):
            raise DropConnection(reset=(mode == "reset"))
        code = rule["code"]
        if mode == "rate_limit":
            b = self._bucket(who)
            b.blocked_until = max(b.blocked_until, time.time() + rule["reset_in"])
            self._primary_limited(b, code)
            return
        if mode == "secondary_limit":
            headers = []
            if rule.get("retry_after") is not None:
                headers.append(("Retry-After", str(rule["retry_after"])))
            self._error(code, rule.get("message") or (
                "You have exceeded a secondary rate limit. Please wait a few minutes before "
                "you try again. If you reach out to GitHub Support for help, please include "
                "the request ID %s." % self.request_id), SECONDARY_DOCS, headers)
            return
        headers = [("Retry-After", str(rule["retry_after"]))] if rule.get("retry_after") else []
        if "body" in rule:
            self._send(code, rule["body"], rule.get("content_type", "text/html"), headers)
        else:
            self._error(code, rule.get("message") or ghfaults.STATUS_MESSAGES.get(code, "Error"),
                        headers=headers)

    def _primary_limited(self, b, code=403):
        reset = int(max(b.blocked_until, time.time()) + 0.999)
        if b.blocked_until > time.time():
            b.reset = reset
        headers = [("X-RateLimit-Limit", str(b.limit)), ("X-RateLimit-Remaining", "0"),
                   ("X-RateLimit-Reset", str(b.reset)), ("X-RateLimit-Used", str(b.used)),
                   ("X-RateLimit-Resource", "core")]
        self._error(code, "API rate limit exceeded for %s." % b.label, RATE_DOCS + "#about-"
                    "primary-rate-limits", headers)

    # --- dispatch ---------------------------------------------------------------------------

    def _handle(self):
        started = time.time()
        url = urllib.parse.urlsplit(self.path)
        self.req_path, self.req_query = url.path, url.query
        self.status, self.bucket_obj, self.request_id = None, None, \
            uuid.uuid4().hex[:20].upper()
        self.extra_headers = []  # a list's Link; per request, not per kept-alive connection
        self.note = {"operation": None, "auth": "none", "installation_id": None,
                     "validation": None, "check_run_id": None}
        entry = {"time": started, "method": self.command, "path": url.path, "query": url.query,
                 "conn": self.conn_id, "user_agent": self.headers.get("User-Agent"),
                 "accept": self.headers.get("Accept"),
                 "api_version": self.headers.get("X-GitHub-Api-Version"),
                 "content_type": self.headers.get("Content-Type")}
        fault = None
        try:
            body = self._read_body()
            if url.path.startswith("/_test/"):
                self._control(body)
                return
            rel = self._relative(url.path)
            if body is None:
                self.close_connection = True
                self._error(413, "Request body too large")
                return
            who = self._who()
            # Rate-limit headers go on every answer (a fault's and a 404 too): the caller's
            # bucket; a JWT's only once it is verified, the address's before.
            self.bucket_obj = self._bucket(who if who[0] in ("none", "token")
                                           else ("none", None, None))
            fault = self.server.faults.take(self.command, rel if rel is not None else url.path)
            if fault and fault["mode"] == "delay":
                time.sleep(fault["seconds"])
            if fault and fault["mode"] not in ("delay", "pass", "perform_then_fail"):
                self._fault(fault, who)
                return
            then = fault["then"] if fault and fault["mode"] == "perform_then_fail" else None
            self._api(rel, body, who, then)
        except DropConnection as d:
            self._drop(d.reset)
        except (ConnectionError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # a bug here: say so instead of a silent hang-up
            sys.stderr.write("fake_github: %s %s: %s\n" % (self.command, url.path,
                                                           traceback.format_exc()))
            if self.status is None:
                self.close_connection = True
                self._error(500, "fake_github failed: %s (see server.log)" % type(e).__name__)
        finally:
            if not url.path.startswith("/_test/"):
                entry.update(self.note)
                entry.update({"status": self.status, "fault": fault["mode"] if fault else None,
                              "duration": time.time() - started})
                self.server.record(entry)

    def _relative(self, path):
        p = self.server.prefix
        if not p:
            return path
        if path == p or path.startswith(p + "/"):
            return path[len(p):] or "/"
        return None

    def _api_base(self):
        scheme = "https" if self.server.ssl_ctx is not None else "http"
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return "%s://%s%s" % (scheme, host, self.server.prefix)

    def _who(self):
        """Who the request claims to be, without refusing anything: (kind, token, detail)."""
        hdr = (self.headers.get("Authorization") or "").strip()
        if not hdr:
            return ("none", None, None)
        scheme, _, cred = hdr.partition(" ")
        cred = cred.strip()
        if scheme.lower() not in ("token", "bearer") or not cred:
            return ("bad", None, None)
        if scheme.lower() == "bearer" and ghauth.looks_like_jwt(cred):
            return ("jwt", cred, None)
        try:
            return ("token", cred, self.server.creds.identify(cred))
        except ghauth.AuthError:
            return ("bad", cred, None)

    def _bucket(self, who):
        kind, _, detail = who
        limit = self.server.rate_limit
        if kind == "token" and detail["kind"] == "installation":
            iid = detail["installation_id"]
            return self.server.bucket(("i", iid), "installation ID %d" % iid, limit)
        if kind == "token":
            return self.server.bucket(("u", detail["login"]), "user ID %d" % detail["id"], limit)
        if kind == "jwt":
            return self.server.bucket(("app",), "app ID %s" % self.server.creds.app_id, limit)
        ip = self.client_address[0]
        return self.server.bucket(("ip", ip), ip, 60)

    def _api(self, rel, raw, who, then):
        if rel is None:
            self._error(404, "Not Found")
            return
        if self.server.require_user_agent and not self.headers.get("User-Agent"):
            self._send(403, NO_USER_AGENT + "\n", "text/plain; charset=utf-8")
            return
        m = self.server.desc.find(self.command, rel)
        if m is None:
            alias = LEGACY.match(rel) if self.command == "GET" else None
            if alias:  # served by GitHub, absent from the description: routed as its twin
                m = self.server.desc.find("GET", "/repos/%s/%s/commits/%s/statuses"
                                          % alias.groups())
        if m is None:
            self._error(404, "Not Found")
            return
        op = m.operation
        self.note["operation"] = op.operation_id
        kind, cred, detail = who
        # Authentication, then the rate limit, then what the credential may do.
        claims = None
        if kind == "jwt":
            try:
                claims = self.server.creds.check_jwt(cred)
            except ghauth.AuthError as e:
                self.note["auth"] = "bad-jwt"
                self.bucket_obj = self._bucket(("none", None, None))
                self._error(e.status, e.message)
                return
            self.note["auth"] = "app"
        elif kind == "bad":
            self.note["auth"] = "bad"
            self.bucket_obj = self._bucket(("none", None, None))
            self._error(401, ghauth.BAD_CREDENTIALS)
            return
        elif kind == "token":
            self.note["auth"] = detail["kind"]
            self.note["installation_id"] = detail.get("installation_id")
        b = self.bucket_obj = self._bucket(who)
        if op.operation_id != "rate-limit/get":
            now = time.time()
            if b.blocked_until > now or b.used >= b.limit:
                self._primary_limited(b)
                return
            b.used += 1
        if op.operation_id in JWT_OPERATIONS and kind != "jwt":
            self._error(401, ghauth.JWT_UNDECODABLE)
            return
        if op.operation_id not in JWT_OPERATIONS and kind == "jwt" \
                and op.operation_id != "rate-limit/get":
            self._error(403, "Resource not accessible by integration", op.docs)
            return
        if kind == "none" and op.operation_id not in ("rate-limit/get", "meta/root"):
            self._error(401, "Requires authentication", op.docs)
            return
        refused = self._permitted(op, m.args, detail)
        if refused:
            self._error(*refused)
            return
        # The request itself, as the description has it.
        bad = self.server.desc.check_params(m, self.req_query)
        if bad:
            code, lines = bad
            if code == 404:
                self._error(404, "Not Found")
            else:
                self.note["validation"] = lines
                self._error(422, openapi.invalid_request(lines), op.docs)
            return
        body = None
        if raw and raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                self._error(400, "Problems parsing JSON", op.docs)
                return
        if op.body is not None:
            lines = self.server.desc.check_body(m, body)
            if lines:
                self.note["validation"] = lines
                self._error(422, openapi.invalid_request(lines), op.docs)
                return
        code, out = self._operation(op, m.args, body or {}, detail, claims)
        if then is not None:
            if then["mode"] in ("drop", "reset"):
                raise DropConnection(reset=(then["mode"] == "reset"))
            if then["mode"] == "delay":
                time.sleep(then["seconds"])
            else:
                self._fault(then, who)
                return
        self._send(code, out, headers=self.extra_headers)

    def _permitted(self, op, args, detail):
        """403/404 for a token that may not touch this repository or lacks a permission."""
        if detail is None or "owner" not in args:
            return None
        full = "%s/%s" % (args["owner"], args["repo"])
        if detail["kind"] == "pat":
            if op.operation_id in ("checks/create", "checks/update"):
                return 403, "You must authenticate via a GitHub App.", op.docs
            return None
        inst = self.server.creds.installations.get(detail["installation_id"])
        allowed = inst and (full.lower().split("/")[0] == inst["account"].lower()
                            if inst["repositories"] is None else
                            full.lower() in [r.lower() for r in inst["repositories"]])
        if detail.get("repos") is not None:
            allowed = allowed and args["repo"].lower() in [r.lower() for r in detail["repos"]]
        if not allowed:
            return 404, "Not Found", op.docs
        need = NEEDS.get(op.operation_id)
        if need and need[0] != "metadata":  # metadata: read comes with every installation
            have = detail["permissions"].get(need[0])
            if need[1] == "write" and have != "write" or not have:
                return 403, "Resource not accessible by integration", op.docs
        return None

    # --- operations ---------------------------------------------------------------------------

    def _page(self, items, key=None, total=None):
        qs = urllib.parse.parse_qs(self.req_query)
        per = max(1, min(100, int((qs.get("per_page") or ["30"])[-1])))
        page = max(1, int((qs.get("page") or ["1"])[-1]))
        last = max(1, (len(items) + per - 1) // per)
        chunk = items[(page - 1) * per: page * per]
        links = []
        for rel, n in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if (rel == "prev" and page > 1) or (rel == "next" and page < last) or \
                    (rel in ("last", "first") and last > 1):
                q = dict((k, v[-1]) for k, v in qs.items())
                q.update({"per_page": str(per), "page": str(n)})
                root = self._api_base()[:len(self._api_base()) - len(self.server.prefix)]
                links.append('<%s%s?%s>; rel="%s"' % (root, self.req_path,
                                                      urllib.parse.urlencode(q), rel))
        self.extra_headers = [("Link", ", ".join(links))] if links else []
        if key is None:
            return chunk
        return {"total_count": len(items) if total is None else total, key: chunk}

    def _operation(self, op, args, body, detail, claims):
        api, st, creds = self._api_base(), self.server.state, self.server.creds
        oid = op.operation_id
        owner, repo = args.get("owner"), args.get("repo")
        who = {"login": (detail or {}).get("login") or "gpuhook-test[bot]"}
        if oid == "apps/create-installation-access-token":
            iid = args["installation_id"]
            inst = creds.installations.get(iid)
            if not inst:
                return 404, {"message": "Not Found", "documentation_url": op.docs,
                             "status": "404"}
            if creds.permissions_exceed(body.get("permissions"), inst["permissions"]):
                return 422, {"message": "The permissions requested are not granted to this "
                                        "installation.", "documentation_url": op.docs,
                             "status": "422"}
            token, rec = creds.issue(iid, body.get("permissions"), body.get("repositories"))
            self.note["installation_id"] = iid
            self.server.save()
            out = {"token": token, "expires_at": ghstate.iso(rec["expires_at"]),
                   "permissions": rec["permissions"],
                   "repository_selection": "all" if inst["repositories"] is None else "selected"}
            return 201, out
        if oid == "apps/get-authenticated":
            return 200, st.app_json(api)
        if oid in ("apps/get-installation", "apps/get-repo-installation"):
            if oid == "apps/get-installation":
                inst = creds.installations.get(args["installation_id"])
            else:
                full = ("%s/%s" % (owner, repo)).lower()
                inst = next((i for i in creds.installations.values()
                             if (i["repositories"] is None
                                 and i["account"].lower() == owner.lower())
                             or full in [r.lower() for r in i["repositories"] or []]), None)
            if not inst:
                return 404, {"message": "Not Found", "documentation_url": op.docs,
                             "status": "404"}
            return 200, st.installation_json(api, inst)
        if oid == "apps/list-installations":
            return 200, self._page([st.installation_json(api, i)
                                    for i in creds.installations.values()])
        if oid == "rate-limit/get":
            b = self.bucket_obj
            rate = {"limit": b.limit, "remaining": max(0, b.limit - b.used), "reset": b.reset,
                    "used": b.used, "resource": "core"}
            return 200, {"resources": {"core": rate}, "rate": rate}
        if oid == "repos/get":
            return 200, st.repo_json(api, owner, repo)
        if oid == "repos/get-commit":
            ref = args["ref"]
            if not ghstate.SHA.match(ref):
                return 422, {"message": "No commit found for SHA: %s" % ref,
                             "documentation_url": op.docs, "status": "422"}
            return 200, {"sha": ref.lower(), "node_id": ghstate.node_id("C", ref),
                         "url": "%s/repos/%s/%s/commits/%s" % (api, owner, repo, ref.lower()),
                         "html_url": "https://github.com/%s/%s/commit/%s" % (owner, repo, ref),
                         "comments_url": "%s/repos/%s/%s/commits/%s/comments" % (api, owner,
                                                                                 repo, ref),
                         "commit": {"message": "test commit", "comment_count": 0,
                                    "url": "%s/repos/%s/%s/git/commits/%s" % (api, owner, repo,
                                                                             ref),
                                    "author": None, "committer": None,
                                    "tree": {"sha": "0" * 40, "url": api + "/tree"}},
                         "author": None, "committer": None, "parents": [], "files": []}
        if oid == "checks/create":
            code, out = st.create_run(api, owner, repo, body, who)
            if code == 201:
                self.note["check_run_id"] = out["id"]
                self.server.save()
            return code, out
        if oid in ("checks/update", "checks/get"):
            rid = args["check_run_id"]
            self.note["check_run_id"] = rid
            res = st.update_run(api, owner, repo, rid, body, who) if oid == "checks/update" \
                else (lambda o: (200, o) if o else None)(st.get_run(api, owner, repo, rid))
            if res is None:
                return 404, {"message": "Not Found", "documentation_url": op.docs,
                             "status": "404"}
            if oid == "checks/update" and res[0] == 200:
                self.server.save()
            return res
        if oid == "checks/list-for-ref":
            qs = urllib.parse.parse_qs(self.req_query)
            runs = st.runs_for_ref(owner, repo, args["ref"],
                                   check_name=(qs.get("check_name") or [None])[-1],
                                   status=(qs.get("status") or [None])[-1],
                                   latest=(qs.get("filter") or ["latest"])[-1] == "latest")
            return 200, self._page([st.run_json(api, r) for r in runs], "check_runs")
        if oid == "repos/create-commit-status":
            code, out = st.create_status(api, owner, repo, args["sha"], body, who)
            if code == 201:
                self.server.save()
            return code, out
        if oid == "repos/list-commit-statuses-for-ref":
            return 200, self._page([st.status_json(api, s)
                                    for s in st.statuses_for_ref(owner, repo, args["ref"])])
        if oid == "repos/get-combined-status-for-ref":
            return 200, st.combined(api, owner, repo, args["ref"])
        return 501, {"message": "fake_github does not implement %s (%s %s); the request was "
                                "valid" % (oid, op.method, op.template),
                     "documentation_url": op.docs, "status": "501"}

    # --- control ------------------------------------------------------------------------------

    def _control(self, raw):
        import ghcontrol

        ghcontrol.handle(self, raw)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A stand-in GitHub REST API for gpuhook's tests.")
    ap.add_argument("--state-dir", required=True, help="check runs and statuses persist here")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--tls-dir", help="serve https with DIR/server.crt and DIR/server.key")
    ap.add_argument("--prefix", default="", help='"" (api.github.com) or "/api/v3" (GHES)')
    ap.add_argument("--openapi", help="the description (default: openapi.ensure())")
    ap.add_argument("--app-id", help="the App's id (the JWT's iss)")
    ap.add_argument("--app-public-key", help="PEM file of the App's public key")
    ap.add_argument("--installation", action="append", default=[],
                    help='JSON {"id":N,"account":"org","repositories":["org/r"]|null,'
                         '"permissions":{...}} (repeatable)')
    ap.add_argument("--pat-file", action="append", default=[],
                    help="a file holding a personal access token (repeatable)")
    ap.add_argument("--token-ttl", type=float, default=3600,
                    help="lifetime of installation tokens, seconds")
    ap.add_argument("--rate-limit", type=int, default=5000, help="requests per hour per token")
    ap.add_argument("--max-statuses", type=int, default=ghstate.MAX_STATUSES)
    ap.add_argument("--no-user-agent-check", action="store_true")
    ap.add_argument("--faults", help='initial fault rules, JSON {"rules": [...]}')
    args = ap.parse_args(argv)

    try:
        path = args.openapi or openapi.ensure()
    except RuntimeError as e:
        sys.stderr.write("fake_github: %s\n" % e)
        return 2
    desc = openapi.Description(path)
    creds = ghauth.Credentials(args.app_id, args.app_public_key,
                               [json.loads(i) for i in args.installation], args.token_ttl)
    for i, f in enumerate(args.pat_file):
        with open(f, encoding="utf-8") as fh:
            creds.add_pat(fh.read().strip(), login="user%d" % (i + 1), user_id=1000 + i)
    ssl_ctx = None
    if args.tls_dir:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_ctx.load_cert_chain(os.path.join(args.tls_dir, "server.crt"),
                                os.path.join(args.tls_dir, "server.key"))
    srv = GitHubServer((args.host, args.port), args.state_dir, desc, args.prefix, ssl_ctx,
                       creds, args.rate_limit, not args.no_user_agent_check)
    srv.state.max_statuses = args.max_statuses
    if args.faults:
        srv.faults.set(json.loads(args.faults).get("rules", []))
    port = srv.server_address[1]
    if args.port_file:
        write_file_atomic(args.port_file, ("%d\n" % port).encode())
    sys.stdout.write("fake_github listening on %s://%s:%d%s\n" % (
        "https" if ssl_ctx else "http", args.host, port, srv.prefix))
    sys.stdout.flush()

    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
