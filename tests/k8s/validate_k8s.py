#!/usr/bin/python3
"""Offline checks of a kustomize tree of Kubernetes and Tekton objects.

usage: validate_k8s.py [--schemas DIR] [--config-sync FILE] ROOT

Checks, for every file under ROOT:
  * YAML files parse, and every object has apiVersion, kind and metadata.name;
  * every file is listed by a kustomization.yaml (resources, components,
    patches, generators, configurations), and every listed path exists and
    stays inside its kustomization's folder (kustomize's load restrictor);
  * every tekton.dev/v1 Task, Pipeline and PipelineRun (including embedded
    taskSpec/pipelineSpec and the PipelineRun of a TriggerTemplate) validates
    against the Tekton v1 CRD schema, and has no field the schema does not
    declare (as the API server's strict field validation would reject);
  * references resolve: taskRef and pipelineRef names, params used and passed
    (declared, required ones passed, types), workspaces declared and bound,
    runAfter names, results used ($(tasks.X.results.Y), $(results.Y.path)),
    volumes mounted by steps, and scripts a step runs from a ConfigMap mount;
  * policy: nothing cluster-wide (no ClusterRole, ClusterRoleBinding or
    cluster-admin), no wildcard RBAC, Secrets without values, and long-running
    pods that are non-root, read-only, capability-free, with resources and
    probes; the paths a gpuhook config names are mounted into its container.

With --workflow, also the checks of workflow_checks.py: Pod Security
"restricted" for every TaskRun pod Tekton would build, affinity-assistant
placement, one GPU-memory number per variant, step 5's token isolation, and
the summary in finally.

With --config-sync FILE, the .selection of every gpuhook config in the tree
must equal FILE's (config/gpuhook.json), so both ship the same rules.

Prints one line per error and exits 1 if there is any, else prints a summary
and exits 0. Needs Debian's python3-yaml and python3-jsonschema.
"""

import argparse
import json
import os
import re
import sys

import jsonschema
import yaml

import workflow_checks

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMAS = os.path.join(HERE, "..", "fixtures", "tekton")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
TEKTON_KINDS = {"Task": "task", "Pipeline": "pipeline", "PipelineRun": "pipelinerun"}
# ObjectMeta, which CRD schemas leave to the API server.
OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "labels", "annotations", "finalizers",
    "ownerReferences", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
}
# gpuhook's variants (issue 4): what $(extensions.variant) can be.
GPUHOOK_VARIANTS = ("lite", "original")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
VAR_RE = re.compile(r"\$\(([^()]*)\)")
PARAM_REF_RE = re.compile(
    r"""^params(?:\.([A-Za-z0-9_.-]+?)|\[['"]([^'"]+)['"]\])(\[\*\]|\[\d+\])?(?:\.([A-Za-z0-9_-]+))?$""")


class Report:
    def __init__(self):
        self.errors = []

    def error(self, where, msg):
        self.errors.append(f"{where}: {msg}")


class Obj:
    """One YAML document from the tree."""

    def __init__(self, path, index, doc):
        self.path = path
        self.index = index
        self.doc = doc

    @property
    def kind(self):
        return self.doc.get("kind")

    @property
    def api(self):
        return self.doc.get("apiVersion")

    @property
    def name(self):
        meta = self.doc.get("metadata") or {}
        return meta.get("name") or meta.get("generateName")

    def where(self):
        return f"{rel(self.path)}: {self.kind} {self.name}"


def rel(path):
    return os.path.relpath(path)


def jpath(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out or "."


def strings(node, path=()):
    """Yields (path, string) for every string in a YAML tree."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, path + (i,))


def variables(node, path=()):
    """Yields (path, expression) for every $(expression) in a YAML tree."""
    for p, s in strings(node, path):
        for m in VAR_RE.finditer(s):
            yield p, m.group(1).strip()


# ---------------------------------------------------------------- loading --

def walk_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x != "__pycache__")
        out.extend(os.path.join(d, f) for f in sorted(files) if not f.startswith("."))
    return out


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys, as kubectl's parser does."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path, report):
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        report.error(f"{rel(path)}{at}", f"YAML does not parse: {problem}")
    except (OSError, UnicodeDecodeError) as e:
        report.error(rel(path), f"cannot read: {e}")
    return None


# ---------------------------------------------------------- kustomization --

class Kustomizations:
    """What every kustomization.yaml lists, and the ConfigMaps it generates."""

    def __init__(self):
        self.referenced = set()       # absolute paths of listed files and folders
        self.generated = {}           # ConfigMap or Secret name -> {key: path}
        self.patch_files = set()      # partial objects, not validated as objects
        self.count = 0


def check_kustomization(path, doc, kz, report):
    kz.count += 1
    base = os.path.dirname(os.path.abspath(path))
    where = rel(path)
    if not isinstance(doc, dict):
        report.error(where, "a kustomization must be a mapping")
        return

    def ref(entry, field, allow_dir):
        if not isinstance(entry, str) or not entry:
            report.error(where, f"{field}: {entry!r} is not a path")
            return None
        if "://" in entry or entry.startswith(("github.com/", "git@")):
            return None  # a remote base; nothing to check offline
        target = os.path.normpath(os.path.join(base, entry))
        if os.path.isdir(target):
            if not allow_dir:
                report.error(where, f"{field}: {entry} is a folder, not a file")
                return None
            if not any(os.path.isfile(os.path.join(target, n)) for n in KUSTOMIZATION_NAMES):
                report.error(where, f"{field}: folder {entry} has no kustomization.yaml")
            kz.referenced.add(target)
            return target
        if not os.path.isfile(target):
            report.error(where, f"{field}: {entry} does not exist")
            return None
        inside = os.path.commonpath([base, target]) == base
        if not inside:
            report.error(where, f"{field}: {entry} is outside {rel(base)}; kustomize only "
                                "loads files inside the kustomization's folder")
        kz.referenced.add(target)
        return target

    for field in ("resources", "components", "crds", "configurations", "generators",
                  "transformers", "validators", "patchesStrategicMerge"):
        for entry in doc.get(field) or []:
            if isinstance(entry, str) and "\n" in entry:
                continue  # an inline patch
            target = ref(entry, field, allow_dir=field in (
                "resources", "components", "generators", "transformers", "validators"))
            if target and field == "patchesStrategicMerge":
                kz.patch_files.add(target)
    for field in ("patches", "patchesJson6902", "replacements"):
        for i, entry in enumerate(doc.get(field) or []):
            if isinstance(entry, dict) and "path" in entry:
                target = ref(entry["path"], f"{field}[{i}].path", allow_dir=False)
                if target:
                    kz.patch_files.add(target)
    if isinstance(doc.get("openapi"), dict) and "path" in doc["openapi"]:
        ref(doc["openapi"]["path"], "openapi.path", allow_dir=False)
    for field in ("configMapGenerator", "secretGenerator"):
        for i, gen in enumerate(doc.get(field) or []):
            if not isinstance(gen, dict) or not gen.get("name"):
                report.error(where, f"{field}[{i}]: a generator needs a name")
                continue
            keys = kz.generated.setdefault(gen["name"], {})
            if gen.get("behavior") == "replace":
                keys.clear()  # an overlay's replacement starts the generator over
            for entry in gen.get("files") or []:
                key, _, src = entry.rpartition("=") if "=" in entry else ("", "", entry)
                target = ref(src, f"{field}[{i}].files", allow_dir=False)
                key = key or os.path.basename(src)
                if key in keys:
                    report.error(where, f"{field}[{i}]: key {key} appears twice")
                keys[key] = target
            for entry in gen.get("envs") or ([gen["env"]] if gen.get("env") else []):
                ref(entry, f"{field}[{i}].envs", allow_dir=False)
            for lit in gen.get("literals") or []:
                keys[str(lit).split("=", 1)[0]] = None


# ------------------------------------------------------- schema strictness --

def strict_walk(node, schema, path, report, where):
    """Reports fields the structural schema does not declare."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        if isinstance(schema, dict) and isinstance(node, dict) and "properties" in schema:
            for k, v in node.items():
                if k in schema["properties"]:
                    strict_walk(v, schema["properties"][k], path + (k,), report, where)
        return
    if isinstance(node, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and extra is None:
            if path and path[-1] == "metadata":
                check_object_meta(node, path, report, where)
            elif node:
                for k in node:
                    report.error(where, f"{jpath(path + (k,))}: unknown field "
                                        "(the schema declares no fields here)")
            return
        for k, v in node.items():
            if props is not None and k in props:
                strict_walk(v, props[k], path + (k,), report, where)
            elif isinstance(extra, dict):
                strict_walk(v, extra, path + (k,), report, where)
            elif extra is True:
                continue
            else:
                report.error(where, f"{jpath(path + (k,))}: unknown field")
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(node):
            strict_walk(v, schema["items"], path + (i,), report, where)


def check_object_meta(meta, path, report, where):
    for k, v in meta.items():
        if k not in OBJECT_META_FIELDS:
            report.error(where, f"{jpath(path + (k,))}: unknown field in metadata")
        elif k in ("labels", "annotations"):
            if not isinstance(v, dict):
                report.error(where, f"{jpath(path + (k,))}: must be a map")
                continue
            for lk, lv in v.items():
                if not isinstance(lv, str):
                    report.error(where, f"{jpath(path + (k, lk))}: value must be a string, "
                                        f"not {type(lv).__name__} (quote it)")


def subschema(schema, *names):
    for n in names:
        schema = schema["properties"][n]
    return schema


def validate_schema(node, schema, path, report, where):
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(node), key=lambda e: list(e.absolute_path)):
        report.error(where, f"{jpath(path + tuple(e.absolute_path))}: {e.message}")
    strict_walk(node, schema, path, report, where)


# ------------------------------------------------------------ tekton refs --

def parse_param_ref(expr):
    """Returns (name, index, key) for a params reference, or None."""
    m = PARAM_REF_RE.match(expr)
    if not m:
        return None
    # In $(params.a.b), "b" is a key of object param "a"; param_decl decides.
    return m.group(1) or m.group(2), m.group(3), m.group(4)


def param_decl(declared, name):
    """Finds a declared param for a reference, allowing object keys."""
    if name in declared:
        return name, None
    if "." in name:
        head, _, key = name.partition(".")
        if head in declared and declared[head].get("type") == "object":
            return head, key
    return None, None


def declared_params(params, where, path, report):
    out = {}
    for i, p in enumerate(params or []):
        if not isinstance(p, dict) or "name" not in p:
            continue
        if p["name"] in out:
            report.error(where, f"{jpath(path + (i,))}: param {p['name']} is declared twice")
        out[p["name"]] = p
    return out


def check_param_use(expr, declared, where, path, report, used):
    ref = parse_param_ref(expr)
    if ref is None:
        return
    name, index, key = ref
    full = name + (f".{key}" if key else "")
    pname, objkey = param_decl(declared, full) if key else param_decl(declared, name)
    if pname is None:
        report.error(where, f"{jpath(path)}: $({expr}) uses param {name}, which is not declared")
        return
    used.add(pname)
    ptype = declared[pname].get("type", "string")
    if index == "[*]" and ptype == "string":
        report.error(where, f"{jpath(path)}: $({expr}) expands string param {pname} as an array")
    if ptype == "array" and not index:
        report.error(where, f"{jpath(path)}: array param {pname} must be used as "
                            f"$(params.{pname}[*]) or with an index")


class Tree:
    def __init__(self, objs):
        self.tasks, self.pipelines = {}, {}
        self.configmaps, self.secrets = set(), set()
        for o in objs:
            if o.api == "tekton.dev/v1" and o.kind == "Task":
                self.tasks.setdefault(o.name, []).append(o)
            elif o.api == "tekton.dev/v1" and o.kind == "Pipeline":
                self.pipelines.setdefault(o.name, []).append(o)
            elif o.api == "v1" and o.kind == "ConfigMap":
                self.configmaps.add(o.name)
            elif o.api == "v1" and o.kind == "Secret":
                self.secrets.add(o.name)


def check_task_spec(spec, where, path, tree, kz, report):
    """Checks a Task's spec (or an embedded taskSpec). Returns the declared
    params, workspaces and results, for the Pipeline checks."""
    if not isinstance(spec, dict):
        return {}, {}, set()
    params = declared_params(spec.get("params"), where, path + ("params",), report)
    workspaces = {w["name"]: w for w in spec.get("workspaces") or [] if isinstance(w, dict)}
    results = {r["name"] for r in spec.get("results") or [] if isinstance(r, dict)}
    volumes = {v.get("name"): v for v in spec.get("volumes") or [] if isinstance(v, dict)}
    used = set()

    scanned = {k: spec.get(k) for k in ("steps", "stepTemplate", "sidecars", "volumes")}
    for p, expr in variables(scanned, path):
        if expr.startswith(("params.", "params[")):
            check_param_use(expr, params, where, p, report, used)
        elif expr.startswith("workspaces."):
            parts = expr.split(".")
            if len(parts) != 3 or parts[2] not in ("path", "bound", "claim", "volume"):
                report.error(where, f"{jpath(p)}: $({expr}) is not a workspace variable")
            elif parts[1] not in workspaces:
                report.error(where, f"{jpath(p)}: $({expr}) names workspace {parts[1]}, "
                                    "which is not declared")
        elif expr.startswith("results."):
            parts = expr.split(".")
            if len(parts) != 3 or parts[2] != "path":
                report.error(where, f"{jpath(p)}: $({expr}) is not a result variable")
            elif parts[1] not in results:
                report.error(where, f"{jpath(p)}: $({expr}) names result {parts[1]}, "
                                    "which is not declared")
    for name in params:
        if name not in used:
            report.error(where, f"{jpath(path + ('params',))}: param {name} is declared "
                                "but never used")

    for vname, vol in volumes.items():
        cm = (vol.get("configMap") or {}).get("name")
        if cm and cm not in tree.configmaps and cm not in kz.generated:
            report.error(where, f"{jpath(path + ('volumes',))}: volume {vname} names ConfigMap "
                                f"{cm}, which the tree neither defines nor generates")
        sec = (vol.get("secret") or {}).get("secretName")
        if sec and sec not in tree.secrets and sec not in kz.generated:
            report.error(where, f"{jpath(path + ('volumes',))}: volume {vname} names Secret "
                                f"{sec}, which has no template in the tree")

    template_mounts = ((spec.get("stepTemplate") or {}).get("volumeMounts") or [])
    names = set()
    for i, step in enumerate(spec.get("steps") or []):
        if not isinstance(step, dict):
            continue
        sp = path + ("steps", i)
        if step.get("name") in names:
            report.error(where, f"{jpath(sp)}: step name {step.get('name')} is used twice")
        names.add(step.get("name"))
        if step.get("script") and step.get("command"):
            report.error(where, f"{jpath(sp)}: a step cannot have both script and command")
        mounts = list(template_mounts) + list(step.get("volumeMounts") or [])
        for m in mounts:
            if isinstance(m, dict) and m.get("name") not in volumes:
                report.error(where, f"{jpath(sp)}: volumeMount {m.get('name')} names no volume "
                                    "of the Task")
        check_script_refs(step, mounts, volumes, kz, where, sp, report)
    return params, workspaces, results


def check_script_refs(step, mounts, volumes, kz, where, path, report):
    """A step that runs /mount/file from a ConfigMap volume needs that key."""
    for m in mounts:
        if not isinstance(m, dict):
            continue
        cm = (volumes.get(m.get("name")) or {}).get("configMap") or {}
        keys = kz.generated.get(cm.get("name"))
        if not cm or keys is None or not m.get("mountPath"):
            continue
        prefix = m["mountPath"].rstrip("/") + "/"
        fields = {k: step.get(k) for k in ("command", "args", "script", "env")}
        for p, s in strings(fields, path):
            for hit in re.finditer(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", s):
                if hit.group(1) not in keys:
                    report.error(where, f"{jpath(p)}: {prefix}{hit.group(1)} is not a key of "
                                        f"ConfigMap {cm['name']} (mounted at {m['mountPath']})")


def resolve_task(ptask, tree, where, path, report, kz):
    """Returns (params, workspaces, results) of a pipeline task's Task, or None."""
    if "taskSpec" in ptask:
        spec = ptask["taskSpec"]
        task_schema = load_schema.cache["task"]
        validate_schema(spec, embedded_task_schema(task_schema), path + ("taskSpec",),
                        report, where)
        return check_task_spec(spec, where, path + ("taskSpec",), tree, kz, report)
    ref = ptask.get("taskRef") or {}
    if ref.get("resolver"):
        return None  # a remote Task: nothing to check offline
    if ref.get("kind", "Task") != "Task":
        report.error(where, f"{jpath(path + ('taskRef',))}: kind {ref.get('kind')} is not a "
                            "Task; only Tasks are checked")
        return None
    name = ref.get("name")
    if name not in tree.tasks:
        report.error(where, f"{jpath(path + ('taskRef', 'name'))}: Task {name} not found in "
                            "the tree")
        return None
    spec = tree.tasks[name][0].doc.get("spec") or {}
    quiet = Report()  # the Task's own errors are reported with the Task
    return check_task_spec(spec, where, path, tree, kz, quiet)


def embedded_task_schema(task_schema):
    spec = dict(subschema(task_schema, "spec"))
    props = dict(spec.get("properties", {}))
    # An embedded taskSpec may also carry metadata (labels, annotations), and
    # apiVersion/kind/spec for custom tasks.
    props["metadata"] = {"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
    for k in ("apiVersion", "kind"):
        props[k] = {"type": "string"}
    props["spec"] = {"x-kubernetes-preserve-unknown-fields": True}
    spec["properties"] = props
    return spec


def check_pipeline_spec(spec, where, path, tree, kz, report):
    """Checks a Pipeline's spec. Returns its declared params and workspaces."""
    params = declared_params(spec.get("params"), where, path + ("params",), report)
    workspaces = {w["name"]: w for w in spec.get("workspaces") or [] if isinstance(w, dict)}
    used = set()
    tasks = [("tasks", i, t) for i, t in enumerate(spec.get("tasks") or [])]
    finals = [("finally", i, t) for i, t in enumerate(spec.get("finally") or [])]
    names = {}
    for field, i, t in tasks + finals:
        if isinstance(t, dict) and t.get("name"):
            if t["name"] in names:
                report.error(where, f"{jpath(path + (field, i, 'name'))}: pipeline task "
                                    f"{t['name']} is defined twice")
            names[t["name"]] = t
    task_names = {t.get("name") for _, _, t in tasks if isinstance(t, dict)}
    resolved = {}
    for field, i, t in tasks + finals:
        if isinstance(t, dict):
            resolved[t.get("name")] = resolve_task(t, tree, where, path + (field, i), report, kz)

    def check_refs(node, npath, allow_status):
        for p, expr in variables(node, npath):
            if expr.startswith(("params.", "params[")):
                check_param_use(expr, params, where, p, report, used)
            elif expr.startswith("tasks."):
                parts = expr.split(".")
                status = expr == "tasks.status" or (len(parts) == 3 and parts[2] == "status")
                if status:
                    if not allow_status:
                        report.error(where, f"{jpath(p)}: $({expr}) is only allowed in finally")
                    elif len(parts) == 3 and parts[1] not in names:
                        report.error(where, f"{jpath(p)}: $({expr}) names pipeline task "
                                            f"{parts[1]}, which does not exist")
                elif len(parts) < 4 or parts[2] != "results":
                    report.error(where, f"{jpath(p)}: $({expr}) is not a task result variable")
                elif parts[1] not in names:
                    report.error(where, f"{jpath(p)}: $({expr}) names pipeline task "
                                        f"{parts[1]}, which does not exist")
                else:
                    got = resolved.get(parts[1])
                    result = parts[3].split("[")[0]
                    if got is not None and result not in got[2]:
                        report.error(where, f"{jpath(p)}: $({expr}): task {parts[1]} does not "
                                            f"produce result {result}")
            elif expr.startswith("workspaces."):
                parts = expr.split(".")
                if len(parts) != 3 or parts[1] not in workspaces:
                    report.error(where, f"{jpath(p)}: $({expr}) names no declared workspace")
            elif expr.startswith("context."):
                if expr not in ("context.pipelineRun.name", "context.pipelineRun.namespace",
                                "context.pipelineRun.uid", "context.pipeline.name",
                                "context.pipelineTask.retries", "context.pipelineRun.timeout"):
                    report.error(where, f"{jpath(p)}: $({expr}) is not a pipeline context "
                                        "variable")

    for field, i, t in tasks + finals:
        if not isinstance(t, dict):
            continue
        tp = path + (field, i)
        run_after = t.get("runAfter") if isinstance(t.get("runAfter"), list) else []
        for j, after in enumerate(run_after):
            if field == "finally":
                report.error(where, f"{jpath(tp + ('runAfter',))}: finally tasks cannot "
                                    "have runAfter")
            elif after == t.get("name"):
                report.error(where, f"{jpath(tp + ('runAfter', j))}: task runs after itself")
            elif after not in task_names:
                report.error(where, f"{jpath(tp + ('runAfter', j))}: runAfter names {after}, "
                                    "which is not a task of this Pipeline")
        check_refs({k: t.get(k) for k in ("params", "when", "matrix", "timeout")}, tp,
                   field == "finally")
        got = resolved.get(t.get("name"))
        if got is None:
            continue
        tparams, tworkspaces, _ = got
        passed = {}
        for j, p in enumerate(t.get("params") or []):
            if not isinstance(p, dict):
                continue
            pp = tp + ("params", j)
            if p.get("name") in passed:
                report.error(where, f"{jpath(pp)}: param {p.get('name')} is passed twice")
            passed[p.get("name")] = p.get("value")
            decl = tparams.get(p.get("name"))
            if decl is None:
                report.error(where, f"{jpath(pp)}: passes param {p.get('name')}, which task "
                                    f"{t.get('name')} does not declare")
                continue
            check_param_type(decl, p.get("value"), params, where, pp, report)
        for pname, decl in tparams.items():
            if "default" not in decl and pname not in passed:
                report.error(where, f"{jpath(tp + ('params',))}: required param {pname} of "
                                    f"task {t.get('name')} is not passed")
        bound = set()
        for j, b in enumerate(t.get("workspaces") or []):
            if not isinstance(b, dict):
                continue
            bp = tp + ("workspaces", j)
            bound.add(b.get("name"))
            if b.get("name") not in tworkspaces:
                report.error(where, f"{jpath(bp)}: binds workspace {b.get('name')}, which task "
                                    f"{t.get('name')} does not declare")
            target = b.get("workspace", b.get("name"))
            if target not in workspaces:
                report.error(where, f"{jpath(bp)}: workspace {target} is not declared by the "
                                    "Pipeline")
        for wname, w in tworkspaces.items():
            if not w.get("optional") and wname not in bound:
                report.error(where, f"{jpath(tp + ('workspaces',))}: workspace {wname} of task "
                                    f"{t.get('name')} is not bound")

    for j, r in enumerate(spec.get("results") or []):
        if isinstance(r, dict):
            check_refs(r.get("value"), path + ("results", j, "value"), False)
    for name in params:
        if name not in used:
            report.error(where, f"{jpath(path + ('params',))}: param {name} is declared but "
                                "never used")
    return params, workspaces


def check_param_type(decl, value, scope_params, where, path, report):
    ptype = decl.get("type", "string")
    if isinstance(value, list) and ptype != "array":
        report.error(where, f"{jpath(path)}: passes an array to {ptype} param {decl['name']}")
    elif isinstance(value, dict) and ptype != "object":
        report.error(where, f"{jpath(path)}: passes an object to {ptype} param {decl['name']}")
    elif isinstance(value, str) and ptype in ("array", "object"):
        m = re.fullmatch(r"\$\(params\.([A-Za-z0-9_-]+)(\[\*\])?\)", value.strip())
        if not m or scope_params.get(m.group(1), {}).get("type", "string") != ptype:
            report.error(where, f"{jpath(path)}: passes a string to {ptype} param "
                                f"{decl['name']}")


def check_pipelinerun(doc, where, path, tree, kz, report, names=None):
    """Checks a PipelineRun against the Pipeline it names (or each of names)."""
    spec = doc.get("spec") or {}
    if "pipelineSpec" in spec:
        pschema = load_schema.cache["pipeline"]
        validate_schema(spec["pipelineSpec"], subschema(pschema, "spec"),
                        path + ("spec", "pipelineSpec"), report, where)
        targets = [("pipelineSpec", spec["pipelineSpec"])]
        check_pipeline_spec(spec["pipelineSpec"], where, path + ("spec", "pipelineSpec"),
                            tree, kz, report)
    else:
        ref = spec.get("pipelineRef") or {}
        if ref.get("resolver"):
            return
        targets = []
        for name in names or [ref.get("name")]:
            if name not in tree.pipelines:
                report.error(where, f"{jpath(path + ('spec', 'pipelineRef', 'name'))}: Pipeline "
                                    f"{name} not found in the tree")
                continue
            targets.append((name, tree.pipelines[name][0].doc.get("spec") or {}))
    for label, pspec in targets:
        pparams = {p["name"]: p for p in pspec.get("params") or [] if isinstance(p, dict)}
        pworkspaces = {w["name"]: w for w in pspec.get("workspaces") or [] if isinstance(w, dict)}
        passed = set()
        for j, p in enumerate(spec.get("params") or []):
            if not isinstance(p, dict):
                continue
            passed.add(p.get("name"))
            if p.get("name") not in pparams:
                report.error(where, f"{jpath(path + ('spec', 'params', j))}: passes param "
                                    f"{p.get('name')}, which {label} does not declare")
        for pname, decl in pparams.items():
            if "default" not in decl and pname not in passed:
                report.error(where, f"{jpath(path + ('spec', 'params'))}: required param {pname} "
                                    f"of {label} is not passed")
        bound = set()
        for j, w in enumerate(spec.get("workspaces") or []):
            if not isinstance(w, dict):
                continue
            bound.add(w.get("name"))
            if w.get("name") not in pworkspaces:
                report.error(where, f"{jpath(path + ('spec', 'workspaces', j))}: binds workspace "
                                    f"{w.get('name')}, which {label} does not declare")
        for wname, w in pworkspaces.items():
            if not w.get("optional") and wname not in bound:
                report.error(where, f"{jpath(path + ('spec', 'workspaces'))}: workspace {wname} "
                                    f"of {label} is not bound")


def check_trigger_template(obj, bindings, tree, kz, report):
    """Checks a TriggerTemplate's params and its PipelineRun resourcetemplates."""
    where = obj.where()
    spec = obj.doc.get("spec") or {}
    tparams = {p["name"]: p for p in spec.get("params") or [] if isinstance(p, dict)}
    bound = {}
    for b in bindings:
        for p in (b.doc.get("spec") or {}).get("params") or []:
            if isinstance(p, dict):
                bound[p.get("name")] = p.get("value")
    for name, value in bound.items():
        if name not in tparams:
            report.error(where, f"binding param {name} is not declared by the template")
    for name, decl in tparams.items():
        if "default" not in decl and name not in bound:
            report.error(where, f".spec.params: param {name} has no default and no binding")
    for i, rt in enumerate(spec.get("resourcetemplates") or []):
        rpath = ("spec", "resourcetemplates", i)
        for p, expr in variables(rt, rpath):
            if expr.startswith("tt.params.") and expr[len("tt.params."):] not in tparams:
                report.error(where, f"{jpath(p)}: $({expr}) is not declared by the template")
        if not isinstance(rt, dict) or rt.get("kind") != "PipelineRun":
            continue
        if rt.get("apiVersion") != "tekton.dev/v1":
            report.error(where, f"{jpath(rpath)}: PipelineRun must be tekton.dev/v1")
            continue
        validate_schema(rt, load_schema.cache["pipelinerun"], rpath, report, where)
        ref = ((rt.get("spec") or {}).get("pipelineRef") or {}).get("name")
        names = None
        if isinstance(ref, str) and "$(tt.params." in ref:
            names = sorted(expand_tt(ref, tparams, bound))
        check_pipelinerun(rt, where, rpath, tree, kz, report, names)


def expand_tt(text, tparams, bound):
    """Every value text takes for the values its tt.params can have: the
    default, and gpuhook's variants when bound to $(extensions.variant)."""
    out = {text}
    for name, decl in tparams.items():
        values = set()
        if "default" in decl:
            values.add(str(decl["default"]))
        if isinstance(bound.get(name), str) and bound[name].strip() == "$(extensions.variant)":
            values.update(GPUHOOK_VARIANTS)
        token = f"$(tt.params.{name})"
        if values:
            out = {t.replace(token, v) for t in out for v in values}
    return out


# ----------------------------------------------------------------- policy --

# The one cluster-wide exception: the opt-in component that lets gpuhook read
# Nodes, and list Pods to count the GPUs they request, for the cluster GPU view
# (issue 19). Read-only, Nodes and a Pod list only, bound to gpuhook's
# ServiceAccount only.
NODE_COMPONENT = "k8s/components/cluster-gpu-nodes/"


def check_node_component(obj, report):
    where = obj.where()
    d = obj.doc
    if obj.kind == "ClusterRole":
        for rule in d.get("rules") or []:
            if rule.get("apiGroups") != [""] or rule.get("resources") not in (["nodes"],
                                                                             ["pods"]):
                report.error(where, "the nodes component may grant only core nodes and pods")
            elif rule.get("resources") == ["pods"]:
                if set(rule.get("verbs") or []) - {"list"}:
                    report.error(where, "the nodes component may only list pods")
            elif set(rule.get("verbs") or []) - {"get", "list", "watch"}:
                report.error(where, "the nodes component may only get, list and watch")
    else:
        if (d.get("roleRef") or {}).get("name") != "gpuhook-gpu-nodes":
            report.error(where, "the nodes component binds only gpuhook-gpu-nodes")
        subs = d.get("subjects") or []
        if [(x.get("kind"), x.get("name")) for x in subs] != [("ServiceAccount", "gpuhook")]:
            report.error(where, "the nodes component binds only gpuhook's ServiceAccount")


def check_policy(obj, report):
    where = obj.where()
    d = obj.doc
    if obj.kind in ("ClusterRole", "ClusterRoleBinding") and rel(obj.path).startswith(
            NODE_COMPONENT):
        check_node_component(obj, report)
        return
    if obj.kind in ("ClusterRole", "ClusterRoleBinding"):
        report.error(where, "nothing cluster-wide: use a namespaced Role and RoleBinding")
    if obj.kind in ("RoleBinding", "ClusterRoleBinding"):
        if (d.get("roleRef") or {}).get("name") == "cluster-admin":
            report.error(where, "binds cluster-admin")
        if (d.get("roleRef") or {}).get("kind") == "ClusterRole":
            report.error(where, "binds a ClusterRole; bind a namespaced Role")
    if obj.kind == "Role":
        for i, rule in enumerate(d.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in (rule.get(field) or []):
                    report.error(where, f".rules[{i}].{field}: no wildcards")
    if obj.kind == "Secret" and obj.api == "v1":
        for field in ("data", "stringData"):
            for k, v in (d.get(field) or {}).items():
                if v not in (None, ""):
                    report.error(where, f".{field}.{k}: carries a value; ship Secret templates "
                                        "only, and create the Secret with kubectl")
    if obj.kind in WORKLOAD_KINDS:
        check_pod_policy(obj, report)


def pod_spec_of(obj):
    d = obj.doc
    if obj.kind == "Pod":
        return d.get("spec") or {}, ("spec",)
    if obj.kind == "CronJob":
        return ((((d.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {})
                .get("template") or {}).get("spec") or {}, (
            "spec", "jobTemplate", "spec", "template", "spec")
    return ((d.get("spec") or {}).get("template") or {}).get("spec") or {}, (
        "spec", "template", "spec")


def check_pod_policy(obj, report):
    where = obj.where()
    pod, path = pod_spec_of(obj)
    psc = pod.get("securityContext") or {}
    for i, c in enumerate((pod.get("initContainers") or []) + (pod.get("containers") or [])):
        cp = jpath(path + ("containers", i))
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or (psc.get("runAsNonRoot") and
                                           sc.get("runAsNonRoot") is not False)):
            report.error(where, f"{cp}: must run as non-root (runAsNonRoot: true)")
        if sc.get("readOnlyRootFilesystem") is not True:
            report.error(where, f"{cp}: needs readOnlyRootFilesystem: true")
        if sc.get("allowPrivilegeEscalation") is not False:
            report.error(where, f"{cp}: needs allowPrivilegeEscalation: false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            report.error(where, f"{cp}: must drop ALL capabilities")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            if not res.get(kind):
                report.error(where, f"{cp}: needs resources.{kind}")
        if obj.kind in LONG_RUNNING_KINDS:
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    report.error(where, f"{cp}: needs a {probe}")


def check_config_mounts(workloads, kz, report):
    """Every absolute path a gpuhook config names must be mounted into the
    container that reads that config."""
    for name, keys in kz.generated.items():
        for key, src in keys.items():
            if not src or not key.endswith(".json"):
                continue
            try:
                with open(src, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, ValueError) as e:
                report.error(rel(src), f"does not parse as JSON: {e}")
                continue
            if not (isinstance(cfg, dict) and "listen" in cfg and "selection" in cfg):
                continue
            for obj in workloads:
                pod, path = pod_spec_of(obj)
                volumes = {v.get("name"): v for v in pod.get("volumes") or []}
                claims = {(t.get("metadata") or {}).get("name")
                          for t in (obj.doc.get("spec") or {}).get("volumeClaimTemplates") or []}
                for c in pod.get("containers") or []:
                    mounts = c.get("volumeMounts") or []
                    config_mount = find_config_mount(mounts, volumes, name, key)
                    if config_mount is None:
                        continue
                    for cpath, value in config_paths(cfg):
                        check_mounted(value, cpath, mounts, volumes, claims, kz, obj, src,
                                      report)


def find_config_mount(mounts, volumes, cm_name, key):
    for m in mounts:
        v = volumes.get(m.get("name")) or {}
        sources = (v.get("projected") or {}).get("sources") if "projected" in v else [v]
        for s in sources or []:
            if (s.get("configMap") or {}).get("name") == cm_name:
                return m
    return None


def config_paths(cfg):
    gh = cfg.get("github") or {}
    for i, p in enumerate(gh.get("secret_files") or []):
        yield f".github.secret_files[{i}]", p
    for key, value in (("trigger.token_file", (cfg.get("trigger") or {}).get("token_file")),
                       ("template", cfg.get("template")), ("bindings", cfg.get("bindings")),
                       ("spool_dir", cfg.get("spool_dir"))):
        if value:
            yield "." + key, value


def check_mounted(value, cpath, mounts, volumes, claims, kz, obj, src, report):
    where = f"{rel(src)}: {cpath}"
    if not value.startswith("/"):
        report.error(where, f"{value} is relative; in a container use absolute paths")
        return
    best = None
    for m in mounts:
        mp = m.get("mountPath", "").rstrip("/")
        if value == mp or value.startswith(mp + "/"):
            if best is None or len(mp) > len(best.get("mountPath", "").rstrip("/")):
                best = m
    if best is None:
        report.error(where, f"{value} is not inside any volumeMount of {obj.kind} {obj.name}")
        return
    rest = value[len(best["mountPath"].rstrip("/")) + 1:]
    v = volumes.get(best.get("name"))
    if v is None:
        if best.get("name") not in claims:
            report.error(where, f"mount {best.get('name')} has no volume")
        return
    sources = (v.get("projected") or {}).get("sources") if "projected" in v else [v]
    provided = set()
    opaque = False
    for s in sources or []:
        if s.get("configMap"):
            keys = kz.generated.get(s["configMap"].get("name"))
            if keys is None:
                opaque = True
            else:
                provided.update(keys)
        elif s.get("secret"):
            items = s["secret"].get("items")
            if items is None:
                opaque = True
            else:
                provided.update(it.get("path") for it in items)
        else:
            opaque = True
    if not opaque and rest and rest not in provided:
        report.error(where, f"{value}: the volume mounted at {best['mountPath']} provides "
                            f"{', '.join(sorted(provided))}, not {rest}")


# ------------------------------------------------------------------- main --

def load_schema(schemas, kind):
    path = os.path.join(schemas, f"tekton-v1-{kind}.schema.json")
    with open(path, encoding="utf-8") as f:
        load_schema.cache[kind] = json.load(f)
    return load_schema.cache[kind]


load_schema.cache = {}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="the kustomize tree, e.g. k8s/")
    ap.add_argument("--schemas", default=DEFAULT_SCHEMAS,
                    help="folder of tekton-v1-{task,pipeline,pipelinerun}.schema.json")
    ap.add_argument("--workflow", action="store_true",
                    help="also check how the GPU workflow runs on a cluster (workflow_checks.py)")
    ap.add_argument("--config-sync", metavar="FILE",
                    help="a gpuhook config whose .selection every gpuhook config in the "
                         "tree must equal")
    args = ap.parse_args(argv)
    report = Report()
    schemas = {k: load_schema(args.schemas, k) for k in TEKTON_KINDS.values()}

    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        print(f"validate_k8s: {args.root} is not a folder", file=sys.stderr)
        return 2
    files = walk_files(root)
    kz = Kustomizations()
    objs = []
    kustomization_files = []
    for path in files:
        if os.path.basename(path) in KUSTOMIZATION_NAMES:
            docs = load_yaml(path, report)
            if docs is not None:
                if len(docs) != 1:
                    report.error(rel(path), "a kustomization must be one YAML document")
                kustomization_files.append((path, docs[0] if docs else {}))
        elif path.endswith((".yaml", ".yml")):
            docs = load_yaml(path, report)
            for i, d in enumerate(docs or []):
                if not isinstance(d, dict):
                    report.error(rel(path), f"document {i + 1} is not a mapping")
                    continue
                o = Obj(path, i, d)
                if d.get("kind") in ("Kustomization", "Component") or _is_kustomize_config(d):
                    continue
                for field in ("apiVersion", "kind"):
                    if not d.get(field):
                        report.error(rel(path), f"document {i + 1} has no {field}")
                if not o.name:
                    report.error(rel(path), f"document {i + 1} has no metadata.name")
                objs.append(o)
    for path, doc in kustomization_files:
        check_kustomization(path, doc, kz, report)

    kustomization_paths = {os.path.abspath(p) for p, _ in kustomization_files}
    for path in files:
        if os.path.abspath(path) in kustomization_paths:
            continue
        if os.path.abspath(path) not in kz.referenced:
            report.error(rel(path), "is not listed by any kustomization.yaml (resources, "
                                    "components, patches or a generator)")

    objs = [o for o in objs if os.path.abspath(o.path) not in kz.patch_files]
    tree = Tree(objs)
    for kind, table in (("Task", tree.tasks), ("Pipeline", tree.pipelines)):
        for name, defs in table.items():
            if len(defs) > 1:
                report.error(defs[1].where(), f"{kind} {name} is also defined in "
                                              f"{rel(defs[0].path)}")

    counts = {"Task": 0, "Pipeline": 0, "PipelineRun": 0}
    bindings = [o for o in objs if o.kind == "TriggerBinding"]
    for o in objs:
        group = (o.api or "").split("/")[0]
        if group == "tekton.dev":
            if o.api != "tekton.dev/v1" or o.kind not in TEKTON_KINDS:
                report.error(o.where(), f"{o.api} {o.kind}: only tekton.dev/v1 Task, Pipeline "
                                        "and PipelineRun are supported")
                continue
            counts[o.kind] += 1
            validate_schema(o.doc, schemas[TEKTON_KINDS[o.kind]], (), report, o.where())
            if o.kind == "Task":
                check_task_spec(o.doc.get("spec") or {}, o.where(), ("spec",), tree, kz, report)
            elif o.kind == "Pipeline":
                check_pipeline_spec(o.doc.get("spec") or {}, o.where(), ("spec",), tree, kz,
                                    report)
            else:
                check_pipelinerun(o.doc, o.where(), (), tree, kz, report)
        elif o.api == "triggers.tekton.dev/v1beta1" and o.kind == "TriggerTemplate":
            check_trigger_template(o, bindings, tree, kz, report)
        check_policy(o, report)
    check_config_mounts([o for o in objs if o.kind in WORKLOAD_KINDS], kz, report)

    if args.config_sync:
        check_config_sync(args.config_sync, kz, report)
    if args.workflow:
        configs = gpuhook_configs(kz)
        if args.config_sync:
            with open(args.config_sync, encoding="utf-8") as f:
                configs.append((args.config_sync, json.load(f)))
        workflow_checks.run_all(objs, tree, configs, pod_spec_of, report)

    for e in report.errors:
        print(f"ERROR {e}")
    if report.errors:
        print(f"validate_k8s: {len(report.errors)} error(s) in {rel(root)}", file=sys.stderr)
        return 1
    print(f"validate_k8s: ok: {len(files)} files, {kz.count} kustomizations, "
          f"{counts['Task']} Tasks, {counts['Pipeline']} Pipelines, "
          f"{counts['PipelineRun']} PipelineRuns, {len(objs)} objects in {rel(root)}")
    return 0


def _is_kustomize_config(doc):
    """A kustomize configurations file (nameReference and friends)."""
    return isinstance(doc, dict) and "kind" not in doc and any(
        k in doc for k in ("nameReference", "commonLabels", "namePrefix", "varReference",
                           "images", "namespace"))


def gpuhook_configs(kz):
    """(path, config) of every gpuhook config a generator packs."""
    out = []
    for keys in kz.generated.values():
        for src in keys.values():
            if not src or not src.endswith(".json"):
                continue
            try:
                with open(src, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, ValueError):
                continue  # reported by check_config_mounts
            if isinstance(cfg, dict) and "selection" in cfg:
                out.append((rel(src), cfg))
    return out


def check_config_sync(path, kz, report):
    try:
        with open(path, encoding="utf-8") as f:
            want = json.load(f).get("selection")
    except (OSError, ValueError) as e:
        report.error(path, f"cannot read: {e}")
        return
    for keys in kz.generated.values():
        for key, src in keys.items():
            if not src or not src.endswith(".json"):
                continue
            try:
                with open(src, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, ValueError):
                continue  # reported by check_config_mounts
            if isinstance(cfg, dict) and "selection" in cfg and cfg["selection"] != want:
                report.error(f"{rel(src)}: .selection", f"differs from {path}; keep the two "
                                                        "configs' rules the same")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
