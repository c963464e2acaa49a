"""Fault rules of the stand-in GitHub API, in the design of tests/kubeapi's fake_apiserver.

A request takes the first rule, in order, that matches it (method and path glob) and whose
`count` is not 0; the count then drops by one unless it is -1 (forever). See README.md.
"""

import fnmatch
import threading

MODES = ("status", "rate_limit", "secondary_limit", "drop", "reset", "delay", "pass",
         "alternate", "perform_then_fail")
STATUS_MESSAGES = {
    400: "Bad Request", 401: "Bad credentials", 403: "Forbidden", 404: "Not Found",
    409: "Conflict", 422: "Validation Failed", 500: "Server Error", 502: "Server Error",
    503: "Service Unavailable", 504: "We couldn't respond to your request in time. Sorry "
                                     "about that. Please try resubmitting your request and "
                                     "contact us if the problem persists.",
}


class RuleError(ValueError):
    pass


def normalize(rule, sub=False):
    """A rule in its full form, or RuleError."""
    if isinstance(rule, int) and not isinstance(rule, bool):
        rule = {"mode": "status", "code": rule}
    elif isinstance(rule, str):
        if rule in ("drop", "reset", "pass"):
            rule = {"mode": rule}
        elif rule.isdigit():
            rule = {"mode": "status", "code": int(rule)}
        elif rule.startswith("delay:"):
            try:
                rule = {"mode": "delay", "seconds": float(rule[6:])}
            except ValueError:
                raise RuleError("bad delay shorthand %r" % rule) from None
        elif rule in ("rate_limit", "secondary_limit"):
            rule = {"mode": rule}
        else:
            raise RuleError("unknown shorthand %r" % rule)
    if not isinstance(rule, dict):
        raise RuleError("a rule is an object or a shorthand string")
    r = dict(rule)
    mode = r.get("mode")
    if mode not in MODES:
        raise RuleError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
    if not sub:
        c = r.setdefault("count", 1)
        if not isinstance(c, int) or isinstance(c, bool) or c < -1:
            raise RuleError("count must be an integer >= -1")
        for key in ("paths", "methods"):
            if key in r and (not isinstance(r[key], list)
                             or not all(isinstance(p, str) for p in r[key])):
                raise RuleError("%s must be a list of strings" % key)
        if "methods" in r:
            r["methods"] = [m.upper() for m in r["methods"]]
        r["applied"] = r.get("applied", 0)
    if mode == "status":
        code = r.get("code")
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise RuleError("status needs an integer code")
    elif mode in ("rate_limit", "secondary_limit"):
        code = r.setdefault("code", 403)
        if code not in (403, 429):
            raise RuleError("%s answers 403 or 429" % mode)
        if mode == "rate_limit":
            r.setdefault("reset_in", 2)
            if not isinstance(r["reset_in"], (int, float)) or r["reset_in"] < 0:
                raise RuleError("reset_in must be a number of seconds")
        else:
            r.setdefault("retry_after", 1)
            if r["retry_after"] is not None and (not isinstance(r["retry_after"], int)
                                                  or r["retry_after"] < 0):
                raise RuleError("retry_after must be a whole number of seconds or null")
    elif mode == "delay":
        s = r.setdefault("seconds", 1)
        if not isinstance(s, (int, float)) or s < 0:
            raise RuleError("delay seconds must be a number >= 0")
    elif mode == "alternate":
        if sub:
            raise RuleError("alternate cannot nest")
        modes = r.get("modes")
        if not isinstance(modes, list) or not modes:
            raise RuleError("alternate needs a non-empty list of modes")
        r["modes"] = [normalize(m, sub=True) for m in modes]
        r["next"] = r.get("next", 0)
    elif mode == "perform_then_fail":
        then = normalize(r.get("then", "drop"), sub=True)
        if then["mode"] not in ("drop", "reset", "status", "delay"):
            raise RuleError("perform_then_fail's then is drop, reset, a status or a delay")
        r["then"] = then
    return r


class Faults:
    def __init__(self, rules=None):
        self.lock = threading.Lock()
        self.rules = [normalize(r) for r in (rules or [])]

    def set(self, rules, append=False):
        new = [normalize(r) for r in rules]  # all or nothing
        with self.lock:
            self.rules = (self.rules + new) if append else new
            return [dict(r) for r in self.rules]

    def list(self):
        with self.lock:
            return [dict(r) for r in self.rules]

    @staticmethod
    def _matches(rule, method, path):
        if rule.get("methods") and method not in rule["methods"]:
            return False
        pats = rule.get("paths")
        return not pats or any(fnmatch.fnmatchcase(path, p) for p in pats)

    def take(self, method, path):
        """The sub-rule to apply to this request (path without prefix and query), or None."""
        with self.lock:
            for r in self.rules:
                if r["count"] == 0 or not self._matches(r, method, path):
                    continue
                if r["count"] > 0:
                    r["count"] -= 1
                r["applied"] += 1
                if r["mode"] == "alternate":
                    sub = r["modes"][r["next"] % len(r["modes"])]
                    r["next"] += 1
                    return dict(sub)
                return {k: v for k, v in r.items() if k not in ("count", "applied")}
        return None
