"""Checks of how the GPU workflow behaves on a real cluster (issue 17), which
the schema and reference checks of validate_k8s.py cannot see. validate_k8s.py
runs them with --workflow; each returns nothing and reports through report.

  * Pod Security "restricted" for every pod Tekton would build for a TaskRun
    of a shipped PipelineRun (the PipelineRun's pod template, the Task's steps
    merged with its stepTemplate, and the init containers Tekton injects), and
    for every workload; the runs' namespace enforces "restricted";
  * placement: a PipelineRun whose workspace is a volumeClaimTemplate gets an
    affinity assistant, placed only from taskRunTemplate.podTemplate, so it
    must select and tolerate GPU nodes when any of its Tasks takes a GPU;
  * one GPU-memory number per variant: the Pipeline's annotation, its
    rmm-pool-size default and gpuhook's gpu_fit agree, within the seed's range;
  * step 5 takes nothing from the shared workspace that could steer git;
  * the final summary runs in finally and gets every task's status.

What Tekton injects is from tektoncd/pipeline pkg/pod (v0.50 and later): an
init container "prepare" (the entrypoint binary's "init" mode), plus
"place-scripts" when a step has a script and "working-dir-initializer" when one
has a workingDir. They get a securityContext only
when the feature flag set-security-context is "true": allowPrivilegeEscalation
false, capabilities drop ALL, runAsNonRoot true, seccompProfile RuntimeDefault.
"""

import json
import re

# Tekton's securityContext for the containers it injects, with
# set-security-context: "true" (docs/deploy.md says to set it).
TEKTON_INJECTED_SC = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Volume types Pod Security "restricted" admits.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
GPU_RESOURCE = "nvidia.com/gpu"
# The seed's GPU memory per variant, in MiB: (least, most); None is no bound.
SEED_GPU_MIB = {"lite": (2048, 4096), "original": (8192, None)}
POOL_HEADROOM_MIB = 1024
SIZE_RE = re.compile(r"^(\d+)(MiB|GiB)$")


def _sc_get(sc, key):
    return (sc or {}).get(key)


def restricted_errors(pod_sc, containers, volumes):
    """Yields (container or None, reason) for what Pod Security "restricted"
    (Kubernetes' pod-security-standards, latest) rejects."""
    pod_sc = pod_sc or {}
    if pod_sc.get("runAsUser") == 0:
        yield None, "securityContext.runAsUser is 0 (root)"
    pod_seccomp = (_sc_get(pod_sc, "seccompProfile") or {}).get("type")
    for v in volumes:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield None, f"volume {v.get('name')} is {', '.join(sorted(kinds))}, not admitted"
    for c in containers:
        name = c.get("name")
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            yield name, "privileged"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield name, "allowPrivilegeEscalation must be false"
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield name, "capabilities must drop ALL"
        extra = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            yield name, f"adds capabilities {', '.join(extra)}"
        non_root = sc.get("runAsNonRoot")
        if non_root is None:
            non_root = pod_sc.get("runAsNonRoot")
        if non_root is not True:
            yield name, "runAsNonRoot must be true (container or pod)"
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if uid == 0:
            yield name, "runs as uid 0"
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield name, "seccompProfile must be RuntimeDefault or Localhost (container or pod)"


def merge_step(template, step):
    """A step merged with the Task's stepTemplate, as Tekton does (the step's
    fields win; securityContext fields merge)."""
    out = dict(template or {})
    for k, v in step.items():
        if k == "securityContext" and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        elif k in ("env", "volumeMounts") and out.get(k):
            names = {e.get("name") if k == "env" else e.get("mountPath") for e in v}
            out[k] = [e for e in out[k] if (e.get("name") if k == "env" else
                                             e.get("mountPath")) not in names] + list(v)
        else:
            out[k] = v
    return out


def tekton_pod(task_spec, pod_template, set_security_context=True):
    """The containers and volumes of the pod Tekton builds for a TaskRun."""
    injected_sc = dict(TEKTON_INJECTED_SC) if set_security_context else None
    init = [{"name": "prepare", "securityContext": injected_sc}]
    steps = [merge_step(task_spec.get("stepTemplate"), s) for s in task_spec.get("steps") or []]
    if any(s.get("script") for s in steps):
        init.append({"name": "place-scripts", "securityContext": injected_sc})
    if any(s.get("workingDir") for s in steps):
        init.append({"name": "working-dir-initializer", "securityContext": injected_sc})
    containers = [dict(s, name="step-" + str(s.get("name"))) for s in steps]
    volumes = list(task_spec.get("volumes") or []) + list(pod_template.get("volumes") or [])
    return init + containers, volumes


def pipelineruns(objs):
    """(where, PipelineRun document) for every PipelineRun of the tree,
    including those in a TriggerTemplate, with the Pipeline names it runs."""
    for o in objs:
        if o.kind == "PipelineRun":
            yield o.where(), o.doc, [((o.doc.get("spec") or {}).get("pipelineRef") or {})
                                     .get("name")]
        elif o.kind == "TriggerTemplate":
            spec = o.doc.get("spec") or {}
            for rt in spec.get("resourcetemplates") or []:
                if not isinstance(rt, dict) or rt.get("kind") != "PipelineRun":
                    continue
                ref = ((rt.get("spec") or {}).get("pipelineRef") or {}).get("name") or ""
                names = {ref}
                if "$(tt.params.pipeline-version)" in ref:
                    names = {ref.replace("$(tt.params.pipeline-version)", v)
                             for v in ("lite", "original")}
                yield o.where(), rt, sorted(names)


def takes_gpu(task_spec):
    for s in task_spec.get("steps") or []:
        limits = ((s.get("computeResources") or {}).get("limits") or {})
        if GPU_RESOURCE in limits:
            return True
    return False


def pipeline_task_specs(tree, pipeline_name):
    for defs in [tree.pipelines.get(pipeline_name) or []]:
        for p in defs[:1]:
            spec = p.doc.get("spec") or {}
            for field in ("tasks", "finally"):
                for t in spec.get(field) or []:
                    if "taskSpec" in t:
                        yield t.get("name"), t["taskSpec"]
                    else:
                        ref = (t.get("taskRef") or {}).get("name")
                        for task in (tree.tasks.get(ref) or [])[:1]:
                            yield t.get("name"), task.doc.get("spec") or {}


def check_runs(objs, tree, report):
    """Pod Security and placement of every TaskRun pod of every PipelineRun."""
    for where, run, names in pipelineruns(objs):
        spec = run.get("spec") or {}
        pod_template = ((spec.get("taskRunTemplate") or {}).get("podTemplate") or {})
        claims = any("volumeClaimTemplate" in (w or {}) for w in spec.get("workspaces") or [])
        for name in names:
            gpu = False
            for ptask, tspec in pipeline_task_specs(tree, name):
                gpu = gpu or takes_gpu(tspec)
                containers, volumes = tekton_pod(tspec, pod_template)
                for cname, why in restricted_errors(pod_template.get("securityContext"),
                                                    containers, volumes):
                    at = f"container {cname}" if cname else "pod"
                    report.error(where, f"{name}: TaskRun {ptask}: Pod Security restricted "
                                        f"rejects the {at}: {why}")
            if gpu and claims:
                check_placement(where, name, pod_template, report)


def check_placement(where, name, pod_template, report):
    # Tekton copies the pod template's nodeSelector, tolerations, securityContext,
    # imagePullSecrets and priorityClassName to the assistant, not its affinity.
    if not pod_template.get("nodeSelector"):
        report.error(where, f"{name}: the affinity assistant (a volumeClaimTemplate workspace) "
                            "is placed only from taskRunTemplate.podTemplate's nodeSelector, "
                            "which selects no GPU nodes: it may land on a CPU node and pin the "
                            "GPU TaskRuns there")
    tolerated = any(t.get("key") == GPU_RESOURCE or
                    (t.get("operator") == "Exists" and not t.get("key"))
                    for t in pod_template.get("tolerations") or [])
    if not tolerated:
        report.error(where, f"{name}: taskRunTemplate.podTemplate does not tolerate the "
                            f"{GPU_RESOURCE} taint; on tainted GPU nodes the affinity assistant "
                            "never schedules")


def check_workloads(objs, pod_spec_of, report):
    for o in objs:
        if o.kind not in ("StatefulSet", "Deployment", "DaemonSet", "Job", "Pod"):
            continue
        pod, _ = pod_spec_of(o)
        containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
        for cname, why in restricted_errors(pod.get("securityContext"), containers,
                                            pod.get("volumes") or []):
            at = f"container {cname}" if cname else "pod"
            report.error(o.where(), f"Pod Security restricted rejects the {at}: {why}")


def check_namespace(objs, configs, report):
    spaces = [o for o in objs if o.kind == "Namespace"]
    if not spaces:
        report.error("tree", "no Namespace object: the runs' namespace must enforce Pod "
                             "Security restricted (base/namespace.yaml)")
    for o in spaces:
        labels = (o.doc.get("metadata") or {}).get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            report.error(o.where(), "must enforce Pod Security restricted "
                                    "(pod-security.kubernetes.io/enforce: restricted)")
        if o.name == "tekton-pipelines":
            report.error(o.where(), "Tekton's own namespace is Tekton's: do not ship or relabel it")
    for src, cfg in configs:
        ns = (cfg.get("kubernetes") or {}).get("namespace")
        if ns == "tekton-pipelines":
            report.error(f"{src}: .kubernetes.namespace", "PipelineRuns must not go to "
                                                          "Tekton's control-plane namespace")


def parse_mib(text):
    m = SIZE_RE.match(str(text or ""))
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "GiB" else 1)


def check_gpu_sizes(tree, configs, report):
    numbers = {}
    for name, defs in tree.pipelines.items():
        doc = defs[0].doc
        variant = ((doc.get("metadata") or {}).get("labels") or {}).get("gpuhook.dev/variant")
        if variant not in SEED_GPU_MIB:
            continue
        where = defs[0].where()
        ann = ((doc.get("metadata") or {}).get("annotations") or {}).get(
            "gpuhook.dev/gpu-memory-mib")
        if not (isinstance(ann, str) and ann.isdigit()):
            report.error(where, "needs the annotation gpuhook.dev/gpu-memory-mib (MiB the "
                                "variant needs free), the one number for its GPU memory")
            continue
        need = int(ann)
        numbers[variant] = need
        low, high = SEED_GPU_MIB[variant]
        if need < low or (high is not None and need > high):
            report.error(where, f"gpuhook.dev/gpu-memory-mib {need} is outside the seed's range "
                                f"for {variant} ({low} to {high or 'any'} MiB)")
        params = {p.get("name"): p for p in (doc.get("spec") or {}).get("params") or []}
        pool = parse_mib((params.get("rmm-pool-size") or {}).get("default"))
        if pool is None:
            report.error(where, "param rmm-pool-size needs a default in MiB or GiB")
        elif pool != need - POOL_HEADROOM_MIB:
            report.error(where, f"rmm-pool-size default is {pool} MiB; with "
                                f"gpuhook.dev/gpu-memory-mib {need} it must be "
                                f"{need - POOL_HEADROOM_MIB} MiB (less {POOL_HEADROOM_MIB} MiB "
                                "for the CUDA context)")
    for src, cfg in configs:
        fit = (cfg.get("selection") or {}).get("gpu_fit") or {}
        for variant, need in numbers.items():
            got = fit.get(f"{variant}_min_free_mib")
            if got != need:
                report.error(f"{src}: .selection.gpu_fit.{variant}_min_free_mib",
                             f"is {got}, but the {variant} Pipeline needs {need} MiB "
                             "(gpuhook.dev/gpu-memory-mib); admit exactly what the run needs")


def _env(step):
    return {e.get("name"): e.get("value") for e in step.get("env") or []}


def check_token_isolation(tree, report):
    """Every Task that mounts a Secret must not let the workspace steer its steps."""
    for name, defs in tree.tasks.items():
        spec = defs[0].doc.get("spec") or {}
        where = defs[0].where()
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        secrets = {n for n, v in volumes.items() if "secret" in v}
        if not secrets:
            continue
        for n in secrets:
            if volumes[n]["secret"].get("optional") is not True:
                report.error(where, f"secret volume {n} must be optional, so a missing Secret "
                                    "fails the step with its message instead of leaving the "
                                    "pod in ContainerCreating")
        for raw in spec.get("steps") or []:
            step = merge_step(spec.get("stepTemplate"), raw)
            env = _env(step)
            mounts = {m.get("mountPath"): m.get("name") for m in step.get("volumeMounts") or []}
            sname = f"step {step.get('name')}"
            home = env.get("HOME") or ""
            if "emptyDir" not in (volumes.get(mounts.get(home)) or {}):
                report.error(where, f"{sname}: HOME must be an emptyDir mount, not "
                                    f"{home or 'the image default'}")
            path = env.get("PATH") or ""
            if not path or "$(" in path or "workspace" in path:
                report.error(where, f"{sname}: PATH must be fixed and outside the workspace")
            if env.get("GIT_CONFIG_GLOBAL") != "/dev/null":
                report.error(where, f"{sname}: needs GIT_CONFIG_GLOBAL=/dev/null")
            if env.get("GIT_CONFIG_NOSYSTEM") != "1":
                report.error(where, f"{sname}: needs GIT_CONFIG_NOSYSTEM=1")


def check_finally(tree, report):
    for name, defs in tree.pipelines.items():
        doc = defs[0].doc
        spec = doc.get("spec") or {}
        if "gpuhook.dev/variant" not in ((doc.get("metadata") or {}).get("labels") or {}):
            continue
        where = defs[0].where()
        finals = [t for t in spec.get("finally") or []
                  if (t.get("taskRef") or {}).get("name") == "gpu-workflow-final-summary"]
        if not finals:
            report.error(where, "the final summary must run in finally, so that a failed run "
                                "still writes its STEP_SUMMARY")
            continue
        text = json.dumps(finals[0].get("params") or [])
        for t in spec.get("tasks") or []:
            if f"$(tasks.{t.get('name')}.status)" not in text:
                report.error(where, f"the final summary is not given "
                                    f"$(tasks.{t.get('name')}.status)")
        if "$(tasks.status)" not in text:
            report.error(where, "the final summary is not given $(tasks.status)")
        if ".results." in text:
            report.error(where, "the final summary uses a task result; Tekton skips a finally "
                                "task whose result reference failed")


def run_all(objs, tree, configs, pod_spec_of, report):
    check_runs(objs, tree, report)
    check_workloads(objs, pod_spec_of, report)
    check_namespace(objs, configs, report)
    check_gpu_sizes(tree, configs, report)
    check_token_isolation(tree, report)
    check_finally(tree, report)
