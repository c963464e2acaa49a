"""SIGHUP and the restart-only keys: the real binary names, per key, what a
reload keeps until a restart (from config.c's table), and applies the rest."""
import os
import signal
import time

from harness import GpuHook, fixture


def _reload(g):
    since = os.path.getsize(g.log_path)
    g.write_config()
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while time.time() < deadline:
        lines = g.log_lines(since=since)
        if any(l.get("msg") in ("config reloaded", "reload refused; the old config stays in force")
               for l in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError("no reload logged:\n" + g.log_text(since))


def test_sighup_names_each_restart_only_key_and_applies_the_rest():
    with GpuHook() as g:
        # Restart-only keys the old hand-written check missed, and live ones beside them.
        g.config["spool_max_age_hours"] = 24
        g.config["kubernetes"]["timeout_seconds"] = 3
        g.config["shutdown_grace_seconds"] = 7
        g.config["selection"]["default"] = "original"
        lines = _reload(g)
        keys = sorted(l["key"] for l in lines
                      if l.get("msg") == "changed, but takes effect only after a restart")
        assert keys == [".kubernetes.timeout_seconds", ".spool_max_age_hours"], lines
        assert any(l.get("msg") == "config reloaded" for l in lines)
        # The live change took effect: a push to a feature branch now gets the new default.
        r = g.deliver("push", fixture("push_with-new-branch.json"))
        assert r.status == 201, r.body
        assert r.json["variant"] == "original", r.body
        # Nothing changed: no warning.
        lines = _reload(g)
        assert not [l for l in lines if "restart" in l.get("msg", "")], lines
