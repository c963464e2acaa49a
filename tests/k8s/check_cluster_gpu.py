"""Checks a kustomize build of k8s/overlays/cluster-gpu (issue 19): the agent DaemonSet as the
issue asks (NVIDIA runtime, all GPUs visible, none requested, read-only, non-root, restricted,
node name from the downward API), its headless Service, the EndpointSlice Role, the server's
cluster_gpu config naming that Service, and the nodes ClusterRole only with its component.
Usage: check_cluster_gpu.py BUILD.yaml NAME (NAME nodes-overlay: the component is in)."""
import json
import os
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
nodes = sys.argv[2] == "nodes-overlay"
errors = []


def one(kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        errors.append(f"{kind} {name}: {len(found)} built")
        return {}
    return found[0]


ds = one("DaemonSet", "gpuhook-agent")
pod = ds.get("spec", {}).get("template", {}).get("spec", {})
c = (pod.get("containers") or [{}])[0]
env = {e["name"]: e for e in c.get("env") or []}
sc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
node_ref = env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
checks = {
    "runtimeClassName nvidia": pod.get("runtimeClassName") == "nvidia",
    "NVIDIA_VISIBLE_DEVICES=all": env.get("NVIDIA_VISIBLE_DEVICES", {}).get("value") == "all",
    "NODE_NAME from spec.nodeName": node_ref.get("fieldPath") == "spec.nodeName",
    "no GPU requested": "nvidia.com/gpu" not in json.dumps(c.get("resources") or {}),
    "read-only root": sc.get("readOnlyRootFilesystem") is True,
    "non-root": sc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True,
    "restricted: no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
    "restricted: drops ALL": (sc.get("capabilities") or {}).get("drop") == ["ALL"],
    "restricted: RuntimeDefault seccomp":
        (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
    "no service account token": pod.get("automountServiceAccountToken") is False,
    "args start the agent": (c.get("args") or [""])[0] == "agent",
    "in gpu-runs": ds.get("metadata", {}).get("namespace") == "gpu-runs",
}
svc = one("Service", "gpuhook-agent")
checks["headless Service"] = svc.get("spec", {}).get("clusterIP") == "None"
checks["Service port named as cluster_gpu.port_name"] = \
    [p.get("name") for p in svc.get("spec", {}).get("ports") or []] == ["http"]
role = one("Role", "gpuhook-agents")
checks["Role lists endpointslices only"] = role.get("rules") == [
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}]
cms = [d for d in docs if d["kind"] == "ConfigMap"
       and d["metadata"]["name"].startswith("gpuhook-config")]
cfg = json.loads(cms[0]["data"]["gpuhook.json"]) if len(cms) == 1 else {}
checks["server config names the agents' Service"] = \
    cfg.get("cluster_gpu", {}).get("service") == svc.get("metadata", {}).get("name")
base = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "k8s",
                                 "gpuhook", "gpuhook.json")))
checks["the overlay's gpuhook.json is the base's plus cluster_gpu (keep them in step)"] = \
    {k: v for k, v in cfg.items() if k != "cluster_gpu"} == base
crs = [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
checks["nodes ClusterRole only with the component"] = len(crs) == (2 if nodes else 0)
if nodes:
    # What the server reads: Nodes (GFD labels, allocatable) and one Pod list per poll
    # (the GPUs pods request); nothing else, and no write.
    cr = one("ClusterRole", "gpuhook-gpu-nodes")
    checks["ClusterRole reads nodes and lists pods only"] = cr.get("rules") == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
errors += [k for k, ok in checks.items() if not ok]
print("; ".join(errors) if errors else f"{len(checks)} checks")
sys.exit(1 if errors else 0)
