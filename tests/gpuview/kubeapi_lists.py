"""Lists the agents' EndpointSlices and the GPU Nodes from the stand-in API.

Usage: kubeapi_lists.py SOURCE_DIR OUT_DIR NAME=PORT ...

Starts tests/kubeapi's stand-in kube-apiserver, stores in it one EndpointSlice
of the gpuhook-agent Service per NAME (an endpoint on 127.0.0.1:PORT with
nodeName NAME), a slice of another Service, and Nodes as GPU Feature Discovery
and the device plugin label them (sample_node). Then it lists them over plain
HTTP the way the server's Kubernetes client will, with label selectors, and
writes the bodies to OUT_DIR/endpointslices.json and OUT_DIR/nodes.json, so
that tests/test_gpupoll.c feeds gpuview exactly what the API answers.
"""
import os
import sys
import tempfile
import urllib.request

SRC = sys.argv[1]
sys.path.insert(0, os.path.join(SRC, "tests", "kubeapi"))
from fake_apiserver import FakeApiServer  # noqa: E402
from kube_client import sample_endpointslice, sample_node  # noqa: E402

NS = "tekton-pipelines"
NODES = {
    "gpu-a": dict(gpu_memory_mib=143771, gpu_count=1, product="NVIDIA-H200"),
    "gpu-b": dict(gpu_memory_mib=143771, gpu_count=1, product="NVIDIA-H200"),
    "gpu-c": dict(gpu_memory_mib=81559, gpu_count=2, product="NVIDIA-H100-80GB-HBM3"),
}


def get(api, path):
    with urllib.request.urlopen(api.url + path, timeout=10) as r:
        assert r.status == 200, (path, r.status)
        return r.read()


def main():
    out = sys.argv[2]
    agents = [a.split("=", 1) for a in sys.argv[3:]]
    with tempfile.TemporaryDirectory() as state:
        api = FakeApiServer(state)
        api.start()
        try:
            for name, port in agents:
                api.put_object(sample_endpointslice("gpuhook-agent-" + name, "gpuhook-agent",
                                                    ["127.0.0.1"], port=int(port),
                                                    namespace=NS, node_names=[name]))
            api.put_object(sample_endpointslice("other-xyz", "other", ["10.0.0.9"],
                                                namespace=NS, node_names=["cpu-1"]))
            for name, gpu in NODES.items():
                api.put_object(sample_node(name, **gpu))
            api.put_object(sample_node("cpu-1"))
            slices = get(api, "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices"
                              "?labelSelector=kubernetes.io%%2Fservice-name%%3Dgpuhook-agent" % NS)
            nodes = get(api, "/api/v1/nodes?labelSelector=nvidia.com%2Fgpu.present")
        finally:
            api.stop()
    with open(os.path.join(out, "endpointslices.json"), "wb") as f:
        f.write(slices)
    with open(os.path.join(out, "nodes.json"), "wb") as f:
        f.write(nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
