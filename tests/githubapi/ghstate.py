"""What the stand-in GitHub API keeps: check runs (with every update, in order) and commit
statuses, and the JSON GitHub renders for them, apps, installations and users.

Each handler takes the decoded, already validated body and returns (status, body). The state
persists in STATE_DIR/state.json after every change, so a restarted stand-in still has it.
"""

import datetime
import hashlib
import json
import os
import re
import threading
import time

SHA = re.compile(r"^[0-9a-fA-F]{40}$")
CHECK_RUN_DOCS = "https://docs.github.com/rest/checks/runs"
STATUS_DOCS = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
MAX_STATUSES = 1000        # GitHub's limit per sha and context
MAX_DESCRIPTION = 140      # a commit status's description


def iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text):
    text = text.replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.datetime.fromisoformat(text).timestamp()


def node_id(kind, ident):
    return kind + "_" + hashlib.sha1(("%s:%s" % (kind, ident)).encode()).hexdigest()[:20]


def simple_user(api, login, user_id, kind="User"):
    u = api + "/users/" + login
    return {"login": login, "id": user_id, "node_id": node_id("U", user_id),
            "avatar_url": "https://avatars.githubusercontent.com/u/%d?v=4" % user_id,
            "gravatar_id": "", "url": u, "html_url": "https://github.com/" + login,
            "followers_url": u + "/followers", "following_url": u + "/following{/other_user}",
            "gists_url": u + "/gists{/gist_id}", "starred_url": u + "/starred{/owner}{/repo}",
            "subscriptions_url": u + "/subscriptions", "organizations_url": u + "/orgs",
            "repos_url": u + "/repos", "events_url": u + "/events{/privacy}",
            "received_events_url": u + "/received_events", "type": kind, "site_admin": False}


def validation_failed(errors, docs):
    return 422, {"message": "Validation Failed", "errors": errors, "documentation_url": docs,
                 "status": "422"}


def unprocessable(message, docs):
    return 422, {"message": message, "documentation_url": docs, "status": "422"}


class State:
    def __init__(self, state_dir, app=None):
        self.lock = threading.RLock()
        self.path = os.path.join(state_dir, "state.json")
        self.app = app or {"id": 1, "slug": "gpuhook-test", "name": "gpuhook test",
                           "owner": "octo-org"}
        self.max_statuses = MAX_STATUSES
        self.runs = {}        # id (str) -> stored run
        self.history = []     # every create and update, in order
        self.statuses = []    # every status, in order
        self.next_id = 4000000001
        self.creds_state = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
            self.runs = saved.get("runs", {})
            self.history = saved.get("history", [])
            self.statuses = saved.get("statuses", [])
            self.next_id = saved.get("next_id", self.next_id)
            self.creds_state = saved.get("credentials", {})

    def save(self, creds_state=None):
        from fake_apiserver import write_file_atomic  # tests/kubeapi, on sys.path

        with self.lock:
            if creds_state is not None:
                self.creds_state = creds_state
            data = {"runs": self.runs, "history": self.history, "statuses": self.statuses,
                    "next_id": self.next_id, "credentials": self.creds_state}
            write_file_atomic(self.path, json.dumps(data).encode())

    def clear(self):
        with self.lock:
            self.runs, self.history, self.statuses = {}, [], []

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    # --- rendering ----------------------------------------------------------------------------

    def app_json(self, api):
        a = self.app
        return {"id": a["id"], "slug": a["slug"], "node_id": node_id("A", a["id"]),
                "client_id": "Iv1.%016x" % a["id"],
                "owner": simple_user(api, a["owner"], 9000 + a["id"], "Organization"),
                "name": a["name"], "description": "gpuhook's test App",
                "external_url": "https://example.invalid/gpuhook",
                "html_url": "https://github.com/apps/" + a["slug"],
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "permissions": {"checks": "write", "statuses": "write", "contents": "read",
                                "pull_requests": "read", "metadata": "read"},
                "events": ["check_run", "check_suite", "pull_request", "push"]}

    def installation_json(self, api, inst):
        acct = inst["account"]
        return {"id": inst["id"], "app_id": self.app["id"], "app_slug": self.app["slug"],
                "target_id": 7000 + inst["id"] % 1000, "target_type": "Organization",
                "account": simple_user(api, acct, 7000 + inst["id"] % 1000, "Organization"),
                "single_file_name": None,
                "repository_selection": "all" if inst["repositories"] is None else "selected",
                "access_tokens_url": "%s/app/installations/%d/access_tokens" % (api, inst["id"]),
                "repositories_url": api + "/installation/repositories",
                "html_url": "https://github.com/organizations/%s/settings/installations/%d"
                            % (acct, inst["id"]),
                "events": ["check_run", "pull_request", "push"],
                "permissions": inst["permissions"], "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z", "suspended_by": None, "suspended_at": None}

    @staticmethod
    def repo_id(full):
        return int(hashlib.sha1(full.lower().encode()).hexdigest()[:7], 16)

    def repo_json(self, api, owner, repo):
        full = owner + "/" + repo
        base = "%s/repos/%s" % (api, full)
        out = {"id": self.repo_id(full), "node_id": node_id("R", full), "name": repo,
               "full_name": full, "owner": simple_user(api, owner, 7000, "Organization"),
               "private": True, "fork": False, "description": None, "url": base,
               "html_url": "https://github.com/" + full}
        for key, tail in (("archive_url", "/{archive_format}{/ref}"),
                          ("assignees_url", "/assignees{/user}"), ("blobs_url", "/git/blobs{/sha}"),
                          ("branches_url", "/branches{/branch}"),
                          ("collaborators_url", "/collaborators{/collaborator}"),
                          ("comments_url", "/comments{/number}"), ("commits_url", "/commits{/sha}"),
                          ("compare_url", "/compare/{base}...{head}"),
                          ("contents_url", "/contents/{+path}"),
                          ("contributors_url", "/contributors"),
                          ("deployments_url", "/deployments"), ("downloads_url", "/downloads"),
                          ("events_url", "/events"), ("forks_url", "/forks"),
                          ("git_commits_url", "/git/commits{/sha}"),
                          ("git_refs_url", "/git/refs{/sha}"),
                          ("git_tags_url", "/git/tags{/sha}"), ("hooks_url", "/hooks"),
                          ("issue_comment_url", "/issues/comments{/number}"),
                          ("issue_events_url", "/issues/events{/number}"),
                          ("issues_url", "/issues{/number}"), ("keys_url", "/keys{/key_id}"),
                          ("labels_url", "/labels{/name}"), ("languages_url", "/languages"),
                          ("merges_url", "/merges"), ("milestones_url", "/milestones{/number}"),
                          ("notifications_url", "/notifications{?since,all,participating}"),
                          ("pulls_url", "/pulls{/number}"), ("releases_url", "/releases{/id}"),
                          ("stargazers_url", "/stargazers"), ("statuses_url", "/statuses/{sha}"),
                          ("subscribers_url", "/subscribers"),
                          ("subscription_url", "/subscription"),
                          ("tags_url", "/tags"), ("teams_url", "/teams"),
                          ("trees_url", "/git/trees{/sha}")):
            out[key] = base + tail
        return out

    def run_json(self, api, run):
        owner, repo = run["repo"].split("/", 1)
        rid = int(run["id"])
        base = "%s/repos/%s/check-runs/%d" % (api, run["repo"], rid)
        out = run["output"]
        return {"id": rid, "node_id": node_id("CR", rid), "head_sha": run["head_sha"],
                "external_id": run.get("external_id", ""), "url": base,
                "html_url": "https://github.com/%s/runs/%d" % (run["repo"], rid),
                "details_url": run.get("details_url") or "https://example.invalid/gpuhook",
                "status": run["status"], "conclusion": run.get("conclusion"),
                "started_at": run.get("started_at"), "completed_at": run.get("completed_at"),
                "output": {"title": out.get("title"), "summary": out.get("summary"),
                           "text": out.get("text"),
                           "annotations_count": out.get("annotations_count", 0),
                           "annotations_url": base + "/annotations"},
                "name": run["name"], "check_suite": {"id": run["suite_id"]},
                "app": self.app_json(api), "pull_requests": []}

    def status_json(self, api, st, creator=True):
        out = {"url": "%s/repos/%s/statuses/%s" % (api, st["repo"], st["sha"]),
               "avatar_url": "https://avatars.githubusercontent.com/in/%d?v=4" % self.app["id"],
               "id": st["id"], "node_id": node_id("SC", st["id"]), "state": st["state"],
               "description": st.get("description"), "target_url": st.get("target_url"),
               "context": st["context"], "created_at": st["created_at"],
               "updated_at": st["created_at"]}
        if creator:
            out["creator"] = simple_user(api, st.get("creator", "octocat"), 1)
        return out

    # --- check runs ---------------------------------------------------------------------------

    def _apply(self, run, body, now, creating):
        """Apply GitHub's rules for status, conclusion and the timestamps; returns an error
        (status, body) or None."""
        docs = CHECK_RUN_DOCS + ("#create-a-check-run" if creating else "#update-a-check-run")
        if body.get("conclusion") == "stale":
            return validation_failed([{"resource": "CheckRun", "code": "invalid",
                                       "field": "conclusion",
                                       "message": "conclusion cannot be set to stale"}], docs)
        status = body.get("status")
        conclusion = body.get("conclusion")
        if conclusion is not None:
            status = "completed"  # "Providing conclusion will automatically set status"
        if (status == "completed" or "completed_at" in body) and conclusion is None \
                and not (status is None and run.get("conclusion")):
            return validation_failed([{"resource": "CheckRun", "code": "missing_field",
                                       "field": "conclusion",
                                       "message": "conclusion is required when status is "
                                                  "completed or completed_at is given"}], docs)
        for key in ("name", "details_url", "external_id", "started_at", "completed_at"):
            if key in body:
                run[key] = body[key]
        if status is not None:
            run["status"] = status
        if conclusion is not None:
            run["conclusion"] = conclusion
        if run["status"] != "completed":
            run["conclusion"] = None
            run["completed_at"] = None
        elif not run.get("completed_at"):
            run["completed_at"] = iso(now)
        if not run.get("started_at"):
            run["started_at"] = iso(now)
        if "output" in body:
            out = body["output"] or {}
            o = run["output"]
            for key in ("title", "summary", "text"):
                if key in out:
                    o[key] = out[key]
            added = len(out.get("annotations") or [])
            o["annotations_count"] = o.get("annotations_count", 0) + added
        return None

    def create_run(self, api, owner, repo, body, who):
        now = time.time()
        if not SHA.match(body["head_sha"]):
            return unprocessable("No commit found for SHA: %s" % body["head_sha"],
                                 CHECK_RUN_DOCS + "#create-a-check-run")
        with self.lock:
            full = owner + "/" + repo
            suite = next((r["suite_id"] for r in self.runs.values()
                          if r["repo"].lower() == full.lower()
                          and r["head_sha"].lower() == body["head_sha"].lower()), None)
            run = {"repo": full, "head_sha": body["head_sha"].lower(), "name": body["name"],
                   "status": "queued", "conclusion": None, "started_at": None,
                   "completed_at": None, "output": {}, "suite_id": suite or self._id()}
            err = self._apply(run, body, now, True)
            if err:
                return err
            run["id"] = str(self._id())
            self.runs[run["id"]] = run
            self._record(run, "created", body, who, now)
            return 201, self.run_json(api, run)

    def update_run(self, api, owner, repo, run_id, body, who):
        now = time.time()
        with self.lock:
            run = self.runs.get(str(run_id))
            if not run or run["repo"].lower() != (owner + "/" + repo).lower():
                return None
            trial = json.loads(json.dumps(run))
            err = self._apply(trial, body, now, False)
            if err:
                return err
            run.clear()
            run.update(trial)
            self._record(run, "updated", body, who, now)
            return 200, self.run_json(api, run)

    def _record(self, run, action, body, who, now):
        self.history.append({"seq": len(self.history) + 1, "time": now, "action": action,
                             "check_run_id": int(run["id"]), "repo": run["repo"],
                             "head_sha": run["head_sha"], "name": run["name"],
                             "status": run["status"], "conclusion": run["conclusion"],
                             "body": body, "by": who})

    def get_run(self, api, owner, repo, run_id):
        with self.lock:
            run = self.runs.get(str(run_id))
            if not run or run["repo"].lower() != (owner + "/" + repo).lower():
                return None
            return self.run_json(api, run)

    def runs_for_ref(self, owner, repo, ref, check_name=None, status=None, latest=True):
        full = (owner + "/" + repo).lower()
        with self.lock:
            runs = [r for r in self.runs.values() if r["repo"].lower() == full
                    and r["head_sha"] == ref.lower()]
        runs.sort(key=lambda r: -int(r["id"]))
        if check_name is not None:
            runs = [r for r in runs if r["name"] == check_name]
        if status is not None:
            runs = [r for r in runs if r["status"] == status]
        if latest:
            seen, out = set(), []
            for r in runs:
                if r["name"] not in seen:
                    seen.add(r["name"])
                    out.append(r)
            runs = out
        return runs

    # --- commit statuses ----------------------------------------------------------------------

    def create_status(self, api, owner, repo, sha, body, who):
        if not SHA.match(sha):
            return unprocessable("No commit found for SHA: %s" % sha, STATUS_DOCS)
        desc = body.get("description")
        if desc is not None and len(desc) > MAX_DESCRIPTION:
            return validation_failed([{"resource": "Status", "code": "custom",
                                       "field": "description",
                                       "message": "description is too long (maximum is %d "
                                                  "characters)" % MAX_DESCRIPTION}], STATUS_DOCS)
        context = body.get("context") or "default"
        full = owner + "/" + repo
        with self.lock:
            same = [s for s in self.statuses if s["repo"].lower() == full.lower()
                    and s["sha"] == sha.lower() and s["context"].lower() == context.lower()]
            if len(same) >= self.max_statuses:
                return validation_failed(["Validation failed: This SHA and context has reached "
                                          "the maximum number of statuses."], STATUS_DOCS)
            st = {"id": self._id(), "repo": full, "sha": sha.lower(), "state": body["state"],
                  "context": context, "description": desc, "target_url": body.get("target_url"),
                  "created_at": iso(time.time()), "creator": who.get("login", "octocat"),
                  "seq": len(self.statuses) + 1, "time": time.time()}
            self.statuses.append(st)
            return 201, self.status_json(api, st)

    def statuses_for_ref(self, owner, repo, ref):
        """Newest first, as GitHub lists them."""
        full = (owner + "/" + repo).lower()
        with self.lock:
            out = [s for s in self.statuses
                   if s["repo"].lower() == full and s["sha"] == ref.lower()]
        return out[::-1]

    def combined(self, api, owner, repo, ref):
        latest, seen = [], set()
        for s in self.statuses_for_ref(owner, repo, ref):
            if s["context"].lower() not in seen:
                seen.add(s["context"].lower())
                latest.append(s)
        states = {s["state"] for s in latest}
        if states & {"error", "failure"}:
            state = "failure"
        elif not latest or "pending" in states:
            state = "pending"
        else:
            state = "success"
        return {"state": state, "sha": ref.lower(), "total_count": len(latest),
                "statuses": [self.status_json(api, s, creator=False) for s in latest],
                "repository": self.repo_json(api, owner, repo),
                "commit_url": "%s/repos/%s/%s/commits/%s" % (api, owner, repo, ref),
                "url": "%s/repos/%s/%s/commits/%s/status" % (api, owner, repo, ref)}
