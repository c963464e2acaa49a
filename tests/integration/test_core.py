"""Service core (issue 2): command line, config, routes, limits, logs, metrics, signals."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from harness import (timing_free, BINARY, SECRET, TOKEN, GpuHook, default_config, fixture, raw_http, sign)


def run_cli(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=env, timeout=30)


def test_version_names_features():
    r = run_cli("--version")
    assert r.returncode == 0
    for word in ("gpuhook", "libmicrohttpd", "OpenSSL", "libcurl", "cJSON"):
        assert word in r.stdout
    assert "cuda " in r.stdout


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "--check-config" in r.stdout and "render" in r.stdout


def test_unknown_argument_exits_2():
    r = run_cli("--bogus")
    assert r.returncode == 2
    assert "unknown argument --bogus" in r.stderr


def test_check_config_ok():
    g = GpuHook()
    g.write_config()
    r = run_cli("--config", g.config_path, "--check-config")
    assert (r.returncode, r.stdout) == (0, "ok\n")


def test_check_config_prints_every_error_and_exits_2():
    g = GpuHook()
    g.config["kubernetes"]["mode"] = "cloud"
    g.config["max_body_bytes"] = "big"
    g.config["colour"] = "blue"
    g.write_config()
    r = run_cli("--config", g.config_path, "--check-config")
    assert r.returncode == 2
    assert '.kubernetes.mode: "cloud" is not one of local, url, in-cluster, dry-run' in r.stderr
    assert '.max_body_bytes: "big" is not an integer' in r.stderr
    assert ".colour: unknown key" in r.stderr
    assert r.stderr.count(g.config_path) == 3


def test_empty_secret_refuses_start_naming_file_not_contents():
    g = GpuHook()
    with open(os.path.join(g.tmp, "secret"), "w") as f:
        f.write("\n")
    g.write_config()
    r = run_cli("--config", g.config_path)
    assert r.returncode == 2
    assert "secret_files[0]" in r.stderr and os.path.join(g.tmp, "secret") in r.stderr


def test_missing_token_file_refuses_start():
    g = GpuHook()
    g.config["trigger"]["token_file"] = os.path.join(g.tmp, "nope")
    g.write_config()
    r = run_cli("--config", g.config_path)
    assert r.returncode == 2
    assert ".trigger.token_file: cannot read" in r.stderr


def test_secret_never_printed_on_config_errors():
    g = GpuHook()
    g.config["kubernetes"]["mode"] = "cloud"
    g.write_config()
    r = run_cli("--config", g.config_path)
    assert SECRET not in r.stderr + r.stdout and TOKEN not in r.stderr + r.stdout


def test_healthz_readyz_and_request_ids():
    with GpuHook() as g:
        r = g.request("GET", "/healthz")
        assert (r.status, r.json) == (200, {"status": "ok"})
        assert len(r.header("X-Request-Id")) == 24
        r = g.request("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
        assert r.header("X-Request-Id") == "abc-123"
        r = g.request("GET", "/readyz")
        assert r.status == 200
        body = r.json
        assert body["status"] == "ok" and body["checks"]["delivery"]["ok"] is True
        assert body["checks"]["config"]["ok"] is True


def test_readyz_503_when_local_dir_unwritable():
    g = GpuHook()
    with g:
        d = g.config["kubernetes"]["local_dir"]
        # A file where the folder was: unwritable even for root.
        os.rename(d, d + ".moved")
        open(d, "w").close()
        time.sleep(1.1)
        r = g.request("GET", "/readyz")
        assert r.status == 503
        assert r.json["status"] == "unavailable"
        assert r.json["checks"]["delivery"]["ok"] is False
        assert "not writable" in r.json["checks"]["delivery"]["detail"]
        # The webhook answers 503 too: no backend is ready.
        r = g.deliver("push", fixture("push_with-new-branch.json"))
        assert r.status == 503 and "no delivery backend is ready" in r.json["error"]


def test_unknown_path_404_and_wrong_method_405_with_allow():
    with GpuHook() as g:
        r = g.request("GET", "/nope")
        assert r.status == 404
        assert r.json["error"] == "no such endpoint: /nope" and r.json["request_id"]
        r = g.request("GET", "/webhook")
        assert r.status == 405 and r.header("Allow") == "POST"
        assert "not allowed" in r.json["error"]
        r = g.request("POST", "/healthz", body=b"x")
        assert r.status == 405 and r.header("Allow") == "GET, HEAD"
        r = g.request("DELETE", "/trigger")
        assert r.status == 405 and r.header("Allow") == "POST"


def test_content_length_over_limit_gets_413_before_body():
    cfg_tmp = GpuHook()
    cfg_tmp.config["max_body_bytes"] = 4096
    with cfg_tmp as g:
        head = ("POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                "X-GitHub-Delivery: d1\r\nContent-Type: application/json\r\n"
                "X-Hub-Signature-256: %s\r\nContent-Length: 5000\r\n\r\n" % ("sha256=" + "0" * 64))
        out = raw_http(g.port, head.encode())  # no body sent at all
        assert out.startswith(b"HTTP/1.1 413")
        assert b"exceeds the limit" in out


def test_chunked_body_over_limit_gets_413_and_close():
    g = GpuHook()
    g.config["max_body_bytes"] = 4096
    with g:
        head = ("POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                "X-GitHub-Delivery: d1\r\nContent-Type: application/json\r\n"
                "X-Hub-Signature-256: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % ("sha256=" + "0" * 64))
        chunk = b"1000\r\n" + b"a" * 4096 + b"\r\n"
        out = raw_http(g.port, head.encode() + chunk * 3 + b"0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413")
        assert b"close" in out.lower().split(b"\r\n\r\n")[0]
        assert g.runs() == {}


def test_metrics_exposition_has_every_family():
    with GpuHook() as g:
        g.request("GET", "/healthz")
        g.deliver("push", fixture("push_with-new-branch.json"), signature="sha256=" + "1" * 64)
        text = g.metrics()
        r = g.request("GET", "/metrics")
        assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
        for fam in ("gpuhook_http_requests_total", "gpuhook_http_request_duration_seconds",
                    "gpuhook_deliveries_total", "gpuhook_pipelineruns_created_total",
                    "gpuhook_signature_failures_total", "gpuhook_spool_depth",
                    "gpuhook_kube_requests_total", "gpuhook_build_info"):
            assert "# TYPE %s " % fam in text
        assert 'gpuhook_http_requests_total{route="healthz",code="200"} 1' in text
        assert "gpuhook_signature_failures_total 1" in text
        assert 'gpuhook_http_request_duration_seconds_count{route="healthz"} 1' in text
        assert 'gpuhook_build_info{version="' in text


def test_logs_are_json_lines_with_access_fields():
    with GpuHook() as g:
        g.request("GET", "/healthz", headers={"X-Request-Id": "rid-1"})
        time.sleep(0.1)
        lines = g.log_lines()
    assert all("raw" not in l for l in lines), lines
    access = [l for l in lines if l.get("request_id") == "rid-1"]
    assert access and access[0]["status"] == 200 and access[0]["msg"] == "request"
    assert access[0]["ts"].endswith("Z") and "duration_ms" in access[0]


def test_sighup_reloads_and_keeps_old_config_when_invalid():
    g = GpuHook()
    with g:
        body = fixture("push_with-new-branch.json")
        assert g.deliver("push", body).status == 201
        # Invalid reload: the old config stays in force.
        g.config["kubernetes"]["mode"] = "cloud"
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert g.deliver("push", body).status == 201
        assert any("reload refused" in l.get("msg", "") for l in g.log_lines())
        # Valid reload with a new secret: only the new one verifies.
        g.config["kubernetes"]["mode"] = "local"
        with open(os.path.join(g.tmp, "secret2"), "w") as f:
            f.write("new-secret\n")
        g.config["github"]["secret_files"] = [os.path.join(g.tmp, "secret2")]
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert g.deliver("push", body).status == 401
        assert g.deliver("push", body, secret="new-secret").status == 201


def test_sigterm_lets_requests_in_flight_finish_and_exits_0():
    from fake_apiserver import FakeApiServer
    import tempfile
    api = FakeApiServer(tempfile.mkdtemp(), faults=[{"mode": "delay", "seconds": 1.5, "count": -1}])
    api.start()
    try:
        g = GpuHook()
        g.config["kubernetes"] = {"mode": "url", "url": api.url, "timeout_seconds": 5}
        g.start()
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=g.deliver("push", fixture("push_with-new-branch.json"))))
        t.start()
        time.sleep(0.5)
        g.proc.send_signal(signal.SIGTERM)
        t.join(10)
        assert g.proc.wait(10) == 0
        assert result["r"].status == 201
        assert len(api.objects()) == 1
    finally:
        api.stop()


def test_tls_serving():
    from fake_apiserver import make_tls
    import tempfile
    d = tempfile.mkdtemp()
    paths = make_tls(d)
    g = GpuHook(tls=paths["ca_crt"])
    g.config["tls"] = {"cert_file": paths["server_crt"], "key_file": paths["server_key"]}
    with g:
        r = g.request("GET", "/healthz")
        assert (r.status, r.json) == (200, {"status": "ok"})


@timing_free()
def test_slow_api_never_delays_healthz_or_metrics():
    from fake_apiserver import FakeApiServer
    import tempfile
    api = FakeApiServer(tempfile.mkdtemp(), faults=[{"mode": "delay", "seconds": 2, "count": -1}])
    api.start()
    try:
        g = GpuHook()
        g.config["kubernetes"] = {"mode": "url", "url": api.url, "timeout_seconds": 5}
        with g:
            body = fixture("push_with-new-branch.json")
            threads = [threading.Thread(target=g.deliver, args=("push", body)) for _ in range(16)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            worst = 0
            for _ in range(10):
                for path in ("/healthz", "/metrics"):
                    t0 = time.monotonic()
                    assert g.request("GET", path).status == 200
                    worst = max(worst, time.monotonic() - t0)
            for t in threads:
                t.join(30)
            assert worst < 0.1, worst
            assert len(api.objects()) == 16
    finally:
        api.stop()


def test_duplicate_config_key_is_an_error():
    g = GpuHook()
    g.write_config()
    text = open(g.config_path).read().replace('"log_level": "info"', '"log_level": "info", "log_level": "debug"')
    open(g.config_path, "w").write(text)
    r = run_cli("--config", g.config_path, "--check-config")
    assert r.returncode == 2 and ".log_level: duplicate key" in r.stderr


def test_sigterm_exits_0_when_the_grace_period_ends_first():
    from fake_apiserver import FakeApiServer
    import tempfile
    api = FakeApiServer(tempfile.mkdtemp(), faults=[{"mode": "delay", "seconds": 4, "count": -1}])
    api.start()
    try:
        g = GpuHook()
        g.config["kubernetes"] = {"mode": "url", "url": api.url, "timeout_seconds": 5}
        g.config["shutdown_grace_seconds"] = 1
        g.start()
        t = threading.Thread(target=lambda: g.deliver("push", fixture("push_with-new-branch.json")))
        t.daemon = True
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        assert g.proc.wait(10) == 0
        assert time.monotonic() - t0 < 3
        assert any(l.get("msg") == "grace period over with requests in flight" for l in g.log_lines())
    finally:
        api.stop()
