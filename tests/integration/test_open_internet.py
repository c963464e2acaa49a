"""The open internet (issue 15): no client without the secret exhausts memory, connection slots
or metrics, readiness means "can accept and persist", and the spool survives odd files."""
import json
import os
import random
import re
import resource
import socket
import string
import threading
import time

import pytest

from harness import (WRAPPER, GpuHook, fixture, memory_bound, metric_value, raw_http, sign,
                     timing_free)
from fake_apiserver import FakeApiServer

PUSH = fixture("push_with-new-branch.json")
FORGED = "sha256=" + "0" * 64


def push(n):
    p = json.loads(PUSH)
    p["after"] = "%040x" % (n + 1)
    return json.dumps(p).encode()


def wait_for(pred, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def forged_body(port, size, results, lock):
    """Sends a 25 MB body under a well-formed but forged signature, as fast as it can."""
    head = ("POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            "X-GitHub-Delivery: forged-%d\r\nContent-Type: application/json\r\n"
            "X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n" % (random.getrandbits(32), FORGED, size))
    chunk = b"x" * (1024 * 1024)
    status = "closed"
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(head.encode())
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent)
            s.sendall(chunk[:n])
            sent += n
        data = s.recv(4096)
        status = data.split(b" ", 2)[1].decode() if data else "closed"
        s.close()
    except OSError:
        pass
    with lock:
        results.append(status)


@memory_bound()
def test_twenty_forged_25mb_bodies_stay_in_budget_and_a_signed_delivery_lands():
    with GpuHook() as g:
        results, lock = [], threading.Lock()
        attackers = [threading.Thread(target=forged_body, args=(g.port, 25 * 1024 * 1024, results, lock))
                     for _ in range(20)]
        for t in attackers:
            t.start()
        time.sleep(0.5)  # the attack is under way
        r = g.deliver("push", PUSH, delivery="during-the-attack")
        assert r.status == 201, r.body
        for t in attackers:
            t.join(120)
        hwm_kib = proc_status(g.proc.pid, "VmHWM")
        print("VmHWM %.1f MiB; answers %s" % (hwm_kib / 1024, sorted(results)))
        assert hwm_kib <= 128 * 1024, hwm_kib
        assert len(results) == 20 and all(s in ("401", "503", "closed") for s in results), results
        assert "503" in results  # the budget, not luck, kept the memory down
        assert list(g.runs()) == [r.json["pipelinerun"]]
        m = g.metrics()
        assert metric_value(m, "gpuhook_body_budget_refusals_total") >= 1
        assert metric_value(m, "gpuhook_unverified_body_bytes") == 0


def test_budget_refusal_is_a_json_503_with_retry_after():
    g = GpuHook()
    g.config["unverified_body_budget_bytes"] = 1024 * 1024
    with g:
        body = b"{" + b" " * (3 * 1024 * 1024) + b"}"
        r = g.deliver("push", body, signature=FORGED)
        assert r.status == 503, r.body
        assert r.header("Retry-After") == "5"
        assert r.header("Content-Type") == "application/json"
        assert "unverified_body_budget_bytes" in r.json["error"] and r.json["request_id"]
        # A signed delivery of ordinary size still fits.
        assert g.deliver("push", PUSH).status == 201


def test_announced_length_reserves_nothing():
    with GpuHook() as g:
        socks = []
        for i in range(40):
            s = socket.create_connection(("127.0.0.1", g.port))
            s.sendall(("POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                       "X-GitHub-Delivery: big-%d\r\nContent-Type: application/json\r\n"
                       "X-Hub-Signature-256: %s\r\nContent-Length: 26214400\r\n\r\n{" % (i, FORGED)).encode())
            socks.append(s)
        time.sleep(0.5)
        held = metric_value(g.metrics(), "gpuhook_unverified_body_bytes")
        assert held <= 40 * 8192, held  # bytes that came, not bytes announced
        assert proc_status(g.proc.pid, "VmHWM") < 64 * 1024
        for s in socks:
            s.close()


@pytest.mark.hostile
@timing_free()
def test_1100_clients_dripping_headers_do_not_starve_30_deliveries():
    if raise_fd_limit(1300) < 1300:
        pytest.skip("the test needs 1300 descriptors")
    with GpuHook() as g:
        slow, stop = [], threading.Event()

        def opener():
            s = socket.create_connection(("127.0.0.1", g.port))
            s.setblocking(False)
            return s

        for _ in range(1100):
            slow.append(opener())
        cut = [0]

        def drip():
            # One header byte a second from each; a client that was cut comes straight back.
            while not stop.is_set():
                for i, s in enumerate(slow):
                    try:
                        s.send(b"X")
                    except OSError:
                        cut[0] += 1
                        s.close()
                        try:
                            slow[i] = opener()
                        except OSError:
                            pass
                stop.wait(1.0)
        t = threading.Thread(target=drip)
        t.start()
        try:
            worst, landed = 0.0, 0
            for i in range(30):
                t0 = time.monotonic()
                r = g.deliver("push", push(i), delivery="drip-%d" % i)
                worst = max(worst, time.monotonic() - t0)
                landed += r.status == 201
                time.sleep(0.4)  # 30 deliveries over ~13 s: past the 10 s header deadline
            print("worst %.3f s; cut %d" % (worst, cut[0]))
            assert landed == 30 and len(g.runs()) == 30
            assert worst < 2.0, worst
        finally:
            stop.set()
            t.join()
            for s in slow:
                s.close()
        assert metric_value(g.metrics(), 'gpuhook_connections_cut_total{reason="header_deadline"}') >= 1000


def drip_until_closed(port, first, each, limit):
    """Sends first, then one byte of each a second; returns the seconds until the server hung up."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    t0 = time.monotonic()
    s.sendall(first)
    try:
        while time.monotonic() - t0 < limit:
            time.sleep(1.0)
            s.sendall(each)
    except OSError:
        return time.monotonic() - t0
    finally:
        s.close()
    return None


def test_a_header_block_has_a_deadline_that_dripping_cannot_reset():
    g = GpuHook()
    g.config["header_timeout_seconds"] = 2
    with g:
        took = drip_until_closed(g.port, b"GET /healthz HTTP/1.1\r\n", b"X", 20)
        assert took is not None and took < 6, took
        assert metric_value(g.metrics(), 'gpuhook_connections_cut_total{reason="header_deadline"}') == 1


def test_a_body_below_the_minimum_rate_is_cut():
    g = GpuHook()
    g.config["header_timeout_seconds"] = 1
    g.config["min_body_bytes_per_second"] = 100
    with g:
        head = ("POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: d\r\n"
                "Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n"
                "Content-Length: 100000\r\n\r\n" % FORGED).encode()
        took = drip_until_closed(g.port, head, b"x", 20)
        assert took is not None and took < 6, took
        assert metric_value(g.metrics(), 'gpuhook_connections_cut_total{reason="body_rate"}') == 1
        # A body at a fair rate is not cut.
        assert g.deliver("push", PUSH).status == 201


@timing_free()
def test_a_full_table_evicts_the_oldest_slow_client():
    g = GpuHook()
    g.config["max_connections"] = 64
    with g:
        slow = []
        for _ in range(120):
            try:
                s = socket.create_connection(("127.0.0.1", g.port))
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
                slow.append(s)
            except OSError:
                pass
            time.sleep(0.02)
        time.sleep(1.2)  # the oldest are now past the eviction age
        for i in range(10):
            t0 = time.monotonic()
            r = g.deliver("push", push(i), delivery="evict-%d" % i)
            assert r.status == 201, r.body
            assert time.monotonic() - t0 < 2.0
        assert metric_value(g.metrics(), 'gpuhook_connections_cut_total{reason="evicted"}') >= 1
        for s in slow:
            s.close()


def test_300_forged_random_events_leave_every_known_series_counting(tmp_path):
    api = FakeApiServer(str(tmp_path / "api")).start()
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": api.url, "timeout_seconds": 3}
    try:
        with g:
            conn = g.connection()
            rnd = random.Random(15)
            for i in range(300):
                event = "".join(rnd.choice(string.ascii_letters) for _ in range(12))
                r = g.deliver(event, PUSH, signature=FORGED, delivery="forged-%d" % i, conn=conn)
                assert r.status == 401, r.body
            r = g.deliver("push", PUSH, delivery="real-one")
            assert r.status == 201, r.body
            assert g.trigger({"revision": "main"}).status == 201
            m = g.metrics()
            assert metric_value(m, 'gpuhook_deliveries_total{event="other",outcome="unauthorized"}') == 300
            assert metric_value(m, 'gpuhook_deliveries_total{event="push",outcome="created"}') == 1
            assert metric_value(m, 'gpuhook_pipelineruns_created_total{variant="lite"}') >= 1
            assert metric_value(m, 'gpuhook_kube_requests_total{code="201"}') == 2
            events = set(re.findall(r'^gpuhook_deliveries_total\{event="([^"]*)"', m, re.M))
            # The documented bound: the configured events, trigger and other.
            assert events <= set(g.config["github"]["events"]) | {"trigger", "other"}, events
            series = [l for l in m.splitlines() if l and not l.startswith("#")]
            assert len(series) < 400, len(series)
    finally:
        api.stop()


def test_api_down_readyz_200_and_delivery_queued_then_spool_unwritable_503(tmp_path):
    api = FakeApiServer(str(tmp_path / "api")).start()
    port = api.port
    api.kill()
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": "http://127.0.0.1:%d" % port, "timeout_seconds": 1}
    with g:
        r = g.request("GET", "/readyz")
        assert r.status == 200, r.body
        checks = r.json["checks"]
        assert checks["spool"]["ok"] is True and checks["api"]["ok"] is False
        assert checks["api"]["required"] is False
        assert metric_value(g.metrics(), "gpuhook_kube_api_up") == 0
        d = g.deliver("push", PUSH)
        assert d.status == 202 and d.json["status"] == "queued", d.body
        # The spool stops taking writes: a file where its folder was.
        spool = os.path.join(g.tmp, "spool")
        os.rename(spool, spool + ".moved")
        with open(spool, "w") as f:
            f.write("not a folder")
        time.sleep(1.1)  # past the readiness cache
        r = g.request("GET", "/readyz")
        assert r.status == 503, r.body
        assert r.json["status"] == "unavailable"
        assert r.json["checks"]["spool"]["ok"] is False
        assert "spool_dir " + spool in r.json["checks"]["spool"]["detail"]
        assert g.request("GET", "/healthz").status == 200  # liveness is independent
        os.unlink(spool)
        os.rename(spool + ".moved", spool)


def spooled_run(name):
    return json.dumps({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                       "metadata": {"name": name, "namespace": "tekton-pipelines"},
                       "spec": {"pipelineRef": {"name": "gpu-lite"}}})


def test_a_fifo_and_a_symlink_in_the_spool_go_to_failed_and_others_are_delivered(tmp_path):
    api = FakeApiServer(str(tmp_path / "api")).start()
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": api.url, "timeout_seconds": 3}
    spool = os.path.join(g.tmp, "spool")
    os.makedirs(os.path.join(spool, "failed"))
    os.mkfifo(os.path.join(spool, "aaa-fifo.json"))
    target = tmp_path / "elsewhere.json"
    target.write_text(spooled_run("zzz-elsewhere"))
    os.symlink(str(target), os.path.join(spool, "aab-link.json"))
    names = ["run-%d" % i for i in range(3)]
    for n in names:
        with open(os.path.join(spool, n + ".json"), "w") as f:
            f.write(spooled_run(n))
    try:
        with g:
            t0 = time.monotonic()
            assert wait_for(lambda: len(api.objects()) == 3, timeout=10), api.objects()
            assert time.monotonic() - t0 < 5
            assert sorted(o["metadata"]["name"] for o in api.objects()) == names
            failed = os.path.join(spool, "failed")
            assert wait_for(lambda: sorted(os.listdir(spool)) == ["failed"], timeout=5), os.listdir(spool)
            with open(os.path.join(failed, "aaa-fifo.error")) as f:
                assert "not a regular file" in f.read()
            with open(os.path.join(failed, "aab-link.error")) as f:
                assert "symbolic link" in f.read()
            assert os.path.islink(os.path.join(failed, "aab-link.json"))
            assert target.read_text() == spooled_run("zzz-elsewhere")  # never followed
    finally:
        api.stop()


def test_nul_in_a_header_value_is_400_and_in_a_path_404():
    with GpuHook() as g:
        sig = sign(PUSH)
        head = ("POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                "X-GitHub-Event: push\r\nX-GitHub-Delivery: nul\r\n"
                "Content-Type: application/json\r\nX-Hub-Signature-256: %s\r\n"
                "Content-Length: %d\r\n" % (sig, len(PUSH))).encode()
        out = raw_http(g.port, head + b"X-GitHub-Hook-ID: 42\x00999\r\n\r\n" + PUSH)
        assert out.split(b" ", 2)[1] == b"400", out[:300]
        body = json.loads(out.split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "header X-GitHub-Hook-ID contains a NUL byte"
        assert g.runs() == {}
        # What looks alike but holds no NUL still passes: blanks, empty values, bare LF endings.
        for i, extra in enumerate([b"X-Trail: v   \r\n", b"X-Empty:\r\n", b"X-Tab: a\tb \t\r\n"]):
            ok = head.replace(b"Delivery: nul", b"Delivery: ok-%d" % i) + extra + b"\r\n" + PUSH
            out = raw_http(g.port, ok)
            assert out.split(b" ", 2)[1] == b"201", out[:300]
        bare = (head.replace(b"Delivery: nul", b"Delivery: bare") + b"\r\n").replace(b"\r\n", b"\n")
        out = raw_http(g.port, bare + PUSH)
        assert out.split(b" ", 2)[1] == b"201", out[:300]
        out = raw_http(g.port, bare.replace(b"Delivery: bare", b"Delivery: nul2\x00x") + PUSH)
        assert out.split(b" ", 2)[1] == b"400", out[:300]
        assert len(g.runs()) == 4
        for path in ("/healthz%00", "/healthz%00x", "/readyz%00.json"):
            r = g.request("GET", path)
            assert r.status == 404, (path, r.status)
            assert r.json["error"].startswith("no such endpoint")
        assert g.request("GET", "/healthz%3f").status == 404
        assert g.request("GET", "/health%7a").status == 200  # ordinary escapes still decode


@pytest.mark.parametrize("method,path,headers,body,status", [
    ("GET", "/nope", {}, None, 404),
    ("DELETE", "/webhook", {}, None, 405),
    ("POST", "/webhook", {"X-GitHub-Delivery": "d"}, b"{}", 400),
    ("POST", "/webhook", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d",
                          "Content-Type": "text/plain", "X-Hub-Signature-256": FORGED}, b"{}", 415),
    ("POST", "/webhook", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d",
                          "Content-Type": "application/json", "X-Hub-Signature-256": FORGED}, b"{}", 401),
    ("POST", "/webhook", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d",
                          "Content-Type": "application/json", "X-Hub-Signature-256": FORGED,
                          "Content-Length": "99999999"}, None, 413),
    ("POST", "/trigger", {}, b"{}", 401),
    ("GET", "/healthz", {}, None, 200),
    ("GET", "/readyz", {}, None, 200),
])
def test_every_answer_gpuhook_decides_is_json(method, path, headers, body, status):
    with GpuHook() as g:
        if "Content-Length" in headers:
            head = "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
                method, path, "".join("%s: %s\r\n" % kv for kv in headers.items()))
            out = raw_http(g.port, head.encode())
            assert out.split(b" ", 2)[1] == str(status).encode(), out[:200]
            assert b"Content-Type: application/json" in out.split(b"\r\n\r\n")[0]
            json.loads(out.split(b"\r\n\r\n", 1)[1])
            return
        r = g.request(method, path, body=body, headers=headers)
        assert r.status == status, r.body
        assert r.header("Content-Type") == "application/json"
        assert isinstance(r.json, dict)
        if status >= 400:
            assert r.json["error"] and r.json["request_id"]


@pytest.mark.hostile
def test_the_work_pool_shrinks_back_after_a_burst():
    # Local mode: each delivery's write and fsync runs on the work pool.
    with GpuHook() as g:
        base = proc_status(g.proc.pid, "Threads")
        peak, done = [base], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], proc_status(g.proc.pid, "Threads"))
                time.sleep(0.005)
        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=g.deliver, args=("push", push(i)),
                                    kwargs={"delivery": "burst-%d" % i}) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        done.set()
        sampler.join()
        assert len(g.runs()) == 60
        print("threads: %d at rest, %d at the peak" % (base, peak[0]))
        # How far the pool grows depends on how fast fsync is and how busy the machine is;
        # any growth at all is what the shrinking below needs to prove something.
        assert peak[0] > base, (base, peak[0])
        # Idle threads leave after 10 s, down to the pool's minimum.
        assert wait_for(lambda: proc_status(g.proc.pid, "Threads") <= base, timeout=25), \
            (base, peak[0], proc_status(g.proc.pid, "Threads"))


def test_entries_the_api_is_slow_to_answer_delay_none_of_the_others(tmp_path):
    # Runs in a namespace that does not exist get 404, which the client retries until its
    # 5 s deadline: tried one after another, three of them held every other entry 15 s.
    api = FakeApiServer(str(tmp_path / "api"), namespaces=["tekton-pipelines"]).start()
    g = GpuHook()
    g.config["kubernetes"] = {"mode": "url", "url": api.url, "timeout_seconds": 3}
    spool = os.path.join(g.tmp, "spool")
    os.makedirs(os.path.join(spool, "failed"))
    for i in range(3):
        run = json.loads(spooled_run("lost-%d" % i))
        run["metadata"]["namespace"] = "no-such-namespace"
        with open(os.path.join(spool, "lost-%d.json" % i), "w") as f:
            json.dump(run, f)
    names = ["good-%d" % i for i in range(5)]
    for n in names:
        with open(os.path.join(spool, n + ".json"), "w") as f:
            f.write(spooled_run(n))
    try:
        with g:
            t0 = time.monotonic()
            assert wait_for(lambda: len(api.objects()) == 5, timeout=20), api.objects()
            took = time.monotonic() - t0
            assert took < 3.0, took
            assert sorted(o["metadata"]["name"] for o in api.objects()) == names
            assert sorted(f for f in os.listdir(spool) if f.startswith("lost-")) == \
                ["lost-%d.json" % i for i in range(3)]
    finally:
        api.stop()


def open_files_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise KeyError("Max open files")


def limited_binary(tmp_path, ulimit):
    """A wrapper that starts gpuhook under a descriptor limit (ulimit -n sets soft and hard)."""
    from harness import BINARY
    path = tmp_path / "limited-gpuhook"
    path.write_text("#!/bin/sh\nulimit %s || exit 99\nexec %s \"$@\"\n" % (ulimit, BINARY))
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(bool(WRAPPER), reason="the wrapper would run the shell, not gpuhook")
def test_the_descriptor_limit_is_raised_to_fit_max_connections(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096 + 64:
        pytest.skip("the hard descriptor limit is below 4160")
    with GpuHook(binary=limited_binary(tmp_path, "-S -n 256")) as g:
        assert open_files_limit(g.proc.pid) == 4096 + 64
        assert "descriptor limit" not in g.log_text()
    # Where the hard limit is lower, gpuhook serves what fits and says so.
    with GpuHook(binary=limited_binary(tmp_path, "-n 300")) as g:
        assert open_files_limit(g.proc.pid) == 300
        warn = [l for l in g.log_lines() if l.get("msg", "").startswith("the descriptor limit")]
        assert warn and warn[0]["connections"] == "236", warn
        assert g.deliver("push", PUSH).status == 201
