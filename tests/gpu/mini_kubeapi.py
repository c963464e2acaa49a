"""A very small stand-in Kubernetes API for check-on-gpu.sh's cluster check, standard library
only (the GPU machine has no python3-jsonschema for tests/kubeapi/): it lists one EndpointSlice
of the agents' Service, naming the node and the agent's port, answers 403 to a Node list (no
node access), and takes PipelineRun creates (201, each body saved under --runs-dir).
  python3 mini_kubeapi.py --port-file F --agent-port P --node NAME --runs-dir D"""
import argparse
import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port-file", required=True)
ap.add_argument("--agent-port", type=int, required=True)
ap.add_argument("--node", required=True)
ap.add_argument("--runs-dir", required=True)
ap.add_argument("--service", default="gpuhook-agent")
args = ap.parse_args()
os.makedirs(args.runs_dir, exist_ok=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, message):
        self.send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": reason, "message": message, "code": code})

    def do_GET(self):
        path, _, query = self.path.partition("?")
        m = re.match(r"^/apis/discovery\.k8s\.io/v1/namespaces/([^/]+)/endpointslices$", path)
        if m:
            want = "kubernetes.io%2Fservice-name%3D" + args.service
            items = [] if want not in query else [{
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": args.service + "-x", "namespace": m.group(1),
                             "labels": {"kubernetes.io/service-name": args.service}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "nodeName": args.node,
                               "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": args.agent_port, "protocol": "TCP"}]}]
            return self.send(200, {"apiVersion": "discovery.k8s.io/v1",
                                   "kind": "EndpointSliceList", "metadata": {},
                                   "items": items})
        if path == "/api/v1/nodes":
            return self.status(403, "Forbidden", 'nodes is forbidden: cannot list resource '
                               '"nodes" at the cluster scope')
        if path in ("/readyz", "/version"):
            return self.send(200, {"status": "ok"})
        self.status(404, "NotFound", "not found")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if re.match(r"^/apis/tekton\.dev/v1(beta1)?/namespaces/[^/]+/pipelineruns", self.path):
            obj = json.loads(body)
            name = obj["metadata"]["name"]
            with open(os.path.join(args.runs_dir, name + ".json"), "wb") as f:
                f.write(body)
            return self.send(201, obj)
        self.status(404, "NotFound", "not found")


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
srv.serve_forever()
