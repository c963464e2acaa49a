"""The stand-in GitHub API's control endpoints under /_test/ (no auth, JSON). See README.md."""

import json
import os
import re
import time
import urllib.parse

import ghfaults
import ghstate


def _ok(h, body, code=200):
    h._send(code, body, "application/json")


def _bad(h, message, code=400):
    h._send(code, {"error": message}, "application/json")


def handle(h, raw):
    srv, st, creds = h.server, h.server.state, h.server.creds
    path, method = h.req_path, h.command
    qs = {k: v[-1] for k, v in urllib.parse.parse_qs(h.req_query).items()}
    try:
        payload = json.loads(raw) if raw and raw.strip() else {}
    except ValueError:
        _bad(h, "control bodies are JSON")
        return
    api = h._api_base()

    if path == "/_test/ping" and method == "GET":
        _ok(h, {"ok": True, "pid": os.getpid(), "prefix": srv.prefix,
                "openapi": srv.desc.info.get("version"),
                "plan": srv.desc.info.get("x-github-plan"),
                "release": srv.desc.info.get("x-github-release")})
    elif path == "/_test/check-runs" and method == "GET":
        with st.lock:
            runs = sorted(st.runs.values(), key=lambda r: int(r["id"]))
            items = [st.run_json(api, r) for r in runs
                     if ("repo" not in qs or r["repo"].lower() == qs["repo"].lower())
                     and ("head_sha" not in qs or r["head_sha"] == qs["head_sha"].lower())]
        _ok(h, {"items": items})
    elif re.fullmatch(r"/_test/check-runs/\d+", path) and method == "GET":
        rid = path.rsplit("/", 1)[1]
        with st.lock:
            run = st.runs.get(rid)
            if not run:
                _bad(h, "no check run %s" % rid, 404)
                return
            _ok(h, {"check_run": st.run_json(api, run),
                    "history": [e for e in st.history if str(e["check_run_id"]) == rid]})
    elif path == "/_test/history" and method == "GET":
        with st.lock:
            items = [e for e in st.history
                     if "check_run_id" not in qs or str(e["check_run_id"]) == qs["check_run_id"]]
        _ok(h, {"items": items})
    elif path == "/_test/statuses" and method == "GET":
        with st.lock:
            items = [dict(st.status_json(api, s), seq=s["seq"], repo=s["repo"], sha=s["sha"])
                     for s in st.statuses
                     if ("repo" not in qs or s["repo"].lower() == qs["repo"].lower())
                     and ("sha" not in qs or s["sha"] == qs["sha"].lower())]
        _ok(h, {"items": items})
    elif path == "/_test/requests" and method in ("GET", "DELETE"):
        with srv.log_lock:
            if method == "DELETE":
                srv.log.clear()
            items = list(srv.log)
        _ok(h, {"items": items})
    elif path == "/_test/faults":
        if method == "GET":
            _ok(h, {"rules": srv.faults.list()})
        elif method == "DELETE":
            _ok(h, {"rules": srv.faults.set([])})
        elif method == "POST":
            try:
                rules = srv.faults.set(payload.get("rules", []), bool(payload.get("append")))
            except ghfaults.RuleError as e:
                _bad(h, str(e))
                return
            _ok(h, {"rules": rules})
        else:
            _bad(h, "GET, POST or DELETE", 405)
    elif path == "/_test/tokens" and method == "GET":
        now = time.time()
        with creds.lock:
            items = sorted(({k: v for k, v in rec.items()} for rec in creds.tokens.values()),
                           key=lambda r: r["issued_at"])
        for r in items:
            r["expired"] = r["expires_at"] <= now
        _ok(h, {"items": items, "issued": creds.issued})
    elif path == "/_test/tokens" and method == "POST":
        iid = payload.get("installation_id")
        if iid not in creds.installations:
            _bad(h, "no installation %r" % iid, 404)
            return
        token, rec = creds.issue(iid, payload.get("permissions"), payload.get("repositories"),
                                 payload.get("ttl"))
        srv.save()
        _ok(h, {"token": token, "expires_at": ghstate.iso(rec["expires_at"]),
                "permissions": rec["permissions"]})
    elif path == "/_test/expire-tokens" and method == "POST":
        n, now = 0, time.time()
        with creds.lock:
            for rec in creds.tokens.values():
                if payload.get("installation_id") in (None, rec["installation_id"]) \
                        and rec["expires_at"] > now:
                    rec["expires_at"] = int(now) - 1
                    n += 1
        srv.save()
        _ok(h, {"expired": n})
    elif path == "/_test/pats" and method == "POST":
        if not isinstance(payload.get("token"), str) or not payload["token"]:
            _bad(h, "token (a string) is required")
            return
        creds.add_pat(payload["token"], payload.get("login", "octocat"), payload.get("id", 1))
        _ok(h, {"ok": True})
    elif path == "/_test/installations" and method == "POST":
        if not isinstance(payload.get("id"), int):
            _bad(h, "id (an integer) is required")
            return
        _ok(h, {"installation": creds.add_installation(payload)})
    elif path == "/_test/config":
        if method == "PATCH":
            for key in payload:
                if key not in ("token_ttl", "rate_limit", "max_statuses", "require_user_agent"):
                    _bad(h, "unknown config key %r" % key)
                    return
            if "token_ttl" in payload:
                creds.token_ttl = float(payload["token_ttl"])
            if "rate_limit" in payload:
                srv.rate_limit = int(payload["rate_limit"])
                with srv.bucket_lock:
                    for b in srv.buckets.values():
                        if b.label.startswith(("installation", "user", "app")):
                            b.limit = srv.rate_limit
            if "max_statuses" in payload:
                st.max_statuses = int(payload["max_statuses"])
            if "require_user_agent" in payload:
                srv.require_user_agent = bool(payload["require_user_agent"])
        elif method != "GET":
            _bad(h, "GET or PATCH", 405)
            return
        _ok(h, {"token_ttl": creds.token_ttl, "rate_limit": srv.rate_limit,
                "max_statuses": st.max_statuses, "require_user_agent": srv.require_user_agent,
                "prefix": srv.prefix, "app_id": creds.app_id,
                "installations": list(creds.installations.values())})
    elif path == "/_test/rate-limits" and method in ("GET", "DELETE"):
        with srv.bucket_lock:
            if method == "DELETE":
                srv.buckets.clear()
            items = [{"label": b.label, "limit": b.limit, "used": b.used, "reset": b.reset,
                      "blocked_until": b.blocked_until} for b in srv.buckets.values()]
        _ok(h, {"items": items})
    elif path == "/_test/reset" and method == "POST":
        st.clear()
        srv.faults.set([])
        with srv.log_lock:
            srv.log.clear()
        with srv.bucket_lock:
            srv.buckets.clear()
        if payload.get("tokens"):
            with creds.lock:
                creds.tokens.clear()
        srv.save()
        _ok(h, {"ok": True})
    else:
        _bad(h, "no control endpoint %s %s" % (method, path), 404)
