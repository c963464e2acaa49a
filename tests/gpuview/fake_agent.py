"""Fake gpuhook agents on loopback, for tests/test_gpupoll.c.

Usage: fake_agent.py FIXTURE_DIR NAME=MODE[:FIXTURE] ...

Each NAME gets its own HTTP server on 127.0.0.1 and an ephemeral port, and
answers GET /gpu?verbose according to MODE:
  serve    the recorded body FIXTURE (from FIXTURE_DIR), with "node" set to NAME
  hang     accepts, then sends nothing for 30 s
  garbage  200 with a body that is not JSON
  huge     200 with 2 MiB of JSON and its Content-Length
  flood    200 without a Content-Length, then JSON until the client hangs up
  notfound 404
A control server takes GET /stop/NAME (the agent goes away: its port refuses
connections), GET /start/NAME (it comes back on the same port) and
GET /serve/NAME/FIXTURE. The first line on stdout is a JSON object mapping
every NAME, and "control", to its port. It runs until killed.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURES = sys.argv[1]
agents = {}


# HTTP/1.0: every answer closes its connection, so a stopped agent is gone at once.
class Agent:
    def __init__(self, name, mode, fixture):
        self.name, self.mode, self.fixture = name, mode, fixture
        self.port = 0
        self.server = None
        self.hits = 0

    def body(self):
        with open(f"{FIXTURES}/{self.fixture}") as f:
            doc = json.load(f)
        doc["node"] = self.name
        return json.dumps(doc).encode()

    def start(self):
        agent = self

        class Handler(BaseHTTPRequestHandler):

            def log_message(self, *args):
                pass

            def do_GET(self):
                agent.hits += 1
                if self.path != "/gpu?verbose":
                    return self.answer(404, b'{"error":"not found"}')
                if agent.mode == "hang":
                    time.sleep(30)
                    return None
                if agent.mode == "garbage":
                    return self.answer(200, b"<html>this is not json")
                if agent.mode == "huge":
                    return self.answer(200, b'{"pad":"' + b"x" * (2 << 20) + b'"}')
                if agent.mode == "flood":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        self.wfile.write(b'{"pad":"')
                        for _ in range(64):
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                    return None
                if agent.mode == "notfound":
                    return self.answer(404, b'{"error":"no such route"}')
                return self.answer(200, agent.body())

            def answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Control(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        agent = agents.get(parts[1]) if len(parts) > 1 else None
        if agent is None:
            self.send_response(404)
            self.end_headers()
            return
        if parts[0] == "stop":
            agent.stop()
        elif parts[0] == "start":
            agent.start()
        elif parts[0] == "serve" and len(parts) == 3:
            agent.mode, agent.fixture = "serve", parts[2]
        body = json.dumps({"hits": agent.hits}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    for spec in sys.argv[2:]:
        name, _, rest = spec.partition("=")
        mode, _, fixture = rest.partition(":")
        agents[name] = Agent(name, mode, fixture)
        agents[name].start()
    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    ports = {n: a.port for n, a in agents.items()}
    ports["control"] = control.server_address[1]
    print(json.dumps(ports), flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
