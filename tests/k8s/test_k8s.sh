#!/usr/bin/env bash
# Offline checks of the k8s/ tree (issues 7 and 17). Run from the repository
# root:
#   bash tests/k8s/test_k8s.sh
# It validates the tree (with the --workflow checks of workflow_checks.py) and
# the fixtures it must reject, builds it with kustomize when kubectl is
# installed (also with another namespace), runs shellcheck on every shell
# script, and runs the workflow's step scripts that need no GPU or network
# (7 and 8 for passed and failed runs, step 3 with a stand-in papermill, the
# git steps against local repositories, step 5 in a poisoned workspace, the
# RMM scripts against a stand-in rmm module) on temporary workspaces; the
# self-contained cases of issue 17 are in workflow_cases.sh, sourced below.
# Exits 1 if any check fails.
set -euo pipefail

ROOT=$(pwd)
if [ ! -f "$ROOT/k8s/kustomization.yaml" ] || [ ! -f "$ROOT/tests/k8s/validate_k8s.py" ]; then
    echo "test_k8s: run me from the repository root" >&2
    exit 2
fi
PY=/usr/bin/python3
# The step scripts must not leave __pycache__ folders in k8s/.
export PYTHONDONTWRITEBYTECODE=1
SCRIPTS=$ROOT/k8s/workflow/scripts
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

pass() {
    checks=$((checks + 1))
    printf 'ok   %s\n' "$*"
}
fail() {
    checks=$((checks + 1))
    failures=$((failures + 1))
    printf 'FAIL %s\n' "$*" >&2
}
skip() {
    printf 'skip %s\n' "$*"
}
# expect_in FILE TEXT DESCRIPTION: TEXT (fixed string) appears in FILE.
expect_in() {
    if grep -qF -- "$2" "$1"; then pass "$3"; else
        fail "$3: \"$2\" not found in $(basename "$1"):"
        sed 's/^/     | /' "$1" >&2
    fi
}
expect_not_in() {
    if grep -qF -- "$2" "$1"; then fail "$3: \"$2\" found in $(basename "$1")"; else pass "$3"; fi
}

# ------------------------------------------------------------- validator --
echo "== validator on k8s/"
sync=()
[ -f config/gpuhook.json ] && sync=(--config-sync config/gpuhook.json)
if "$PY" tests/k8s/validate_k8s.py --workflow "${sync[@]}" k8s >"$TMP/validate.out" 2>&1; then
    pass "validate_k8s.py k8s/: $(tail -n 1 "$TMP/validate.out")"
else
    fail "validate_k8s.py k8s/ found errors:"
    cat "$TMP/validate.out" >&2
fi

echo "== validator on the trees it must reject (tests/k8s/bad/)"
for dir in tests/k8s/bad/*/; do
    case=${dir%/}
    expected=$case.expected
    out=$TMP/$(basename "$case").out
    if [ ! -f "$expected" ]; then
        fail "$case has no $(basename "$expected")"
        continue
    fi
    rc=0
    "$PY" tests/k8s/validate_k8s.py "$case" >"$out" 2>&1 || rc=$?
    if [ "$rc" -ne 1 ]; then
        fail "$case: validator exited $rc, expected 1"
        cat "$out" >&2
        continue
    fi
    ok=1
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        hits=$(grep '^ERROR' "$out" | grep -cF -- "$line" || true)
        if [ "$hits" -ne 1 ]; then
            fail "$case: expected exactly one error containing \"$line\", got $hits"
            ok=0
        fi
    done <"$expected"
    n=$(grep -c '^ERROR' "$out" || true)
    want=$(grep -c . "$expected" || true)
    if [ "$n" -ne "$want" ]; then
        fail "$case: $n errors reported, $want expected:"
        cat "$out" >&2
        ok=0
    fi
    [ "$ok" -eq 0 ] || pass "$case: rejected with its $want expected errors"
done

# ------------------------------------------------------------- kustomize --
echo "== gpuhook's RBAC"
# The Role grants what gpuhook's code calls, and nothing more: a new call adds its
# rule here and in k8s/gpuhook/role.yaml together.
if "$PY" - k8s/gpuhook/role.yaml >"$TMP/rbac.out" 2>&1 <<'EOF'; then
import sys, yaml
role = yaml.safe_load(open(sys.argv[1]))
allowed = [
    # the delivery (create, get after AlreadyExists) and the shared watcher (issues 18, 20)
    {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"],
     "verbs": ["create", "get", "list", "watch", "patch"]},
    # GitHub feedback (issue 20): a run's TaskRuns, and their Pods for the node
    {"apiGroups": ["tekton.dev"], "resources": ["taskruns"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    # the scheduler's Lease (issue 18)
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "resourceNames": ["gpuhook-scheduler"], "verbs": ["get", "update"]},
]
rules = role.get("rules")
if rules != allowed:
    print("gpuhook's Role differs from the allowance:")
    print(yaml.safe_dump(rules))
    sys.exit(1)
print(f"{len(rules)} rules, as allowed")
EOF
    pass "k8s/gpuhook/role.yaml: $(tail -n 1 "$TMP/rbac.out")"
else
    fail "k8s/gpuhook/role.yaml:"
    cat "$TMP/rbac.out" >&2
fi

echo "== kustomize builds"
if command -v kubectl >/dev/null 2>&1; then
    # The ingress component, as an overlay would use it (kustomize wants
    # relative paths).
    mkdir -p "$TMP/ingress-overlay"
    relto() { "$PY" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$@"; }
    cat >"$TMP/ingress-overlay/kustomization.yaml" <<EOF
resources:
  - $(relto "$ROOT/k8s/overlays/gpu-view" "$TMP/ingress-overlay")
components:
  - $(relto "$ROOT/k8s/components/webhook-ingress" "$TMP/ingress-overlay")
EOF
    for target in k8s k8s/overlays/gpu-view k8s/secrets k8s/runs "$TMP/ingress-overlay"; do
        name=${target#"$TMP/"}
        if kubectl kustomize "$target" >"$TMP/build.yaml" 2>"$TMP/build.err"; then
            pass "kubectl kustomize $name"
            cp "$TMP/build.yaml" "$TMP/build-$(echo "$name" | tr '/' '_').yaml"
        else
            fail "kubectl kustomize $name:"
            cat "$TMP/build.err" >&2
        fi
    done
    # The generated ConfigMaps carry a hash suffix; every reference to them
    # (StatefulSet, Tasks) must have been rewritten to the suffixed name.
    for built in "$TMP/build-k8s.yaml" "$TMP/build-k8s_overlays_gpu-view.yaml"; do
        [ -f "$built" ] || continue
        if "$PY" - "$built" >"$TMP/refs.out" 2>&1 <<'EOF'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cms = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
errors = []
namespaced = [d for d in docs if d["kind"] not in ("Namespace",)]
if [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"] != ["gpu-runs"]:
    errors.append("the build does not hold exactly the Namespace gpu-runs")
for d in namespaced:
    if d["metadata"].get("namespace") != "gpu-runs":
        errors.append(f"{d['kind']} {d['metadata']['name']} is not in gpu-runs")
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("configMap"), dict) and "name" in node["configMap"]:
            yield node["configMap"]["name"]
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)
refs = 0
for d in docs:
    for name in walk(d.get("spec")):
        refs += 1
        if name not in cms:
            errors.append(f"{d['kind']} {d['metadata']['name']} names ConfigMap {name}, not built")
for e in errors:
    print(e)
print(f"{refs} ConfigMap references, all resolved" if not errors else "")
sys.exit(1 if errors else 0)
EOF
            pass "$(basename "$built"): every object in gpu-runs; $(tail -n 1 "$TMP/refs.out")"
        else
            fail "$(basename "$built"):"
            cat "$TMP/refs.out" >&2
        fi
    done
    if [ -f "$TMP/build-k8s.yaml" ] && "$PY" - "$TMP/build-k8s.yaml" k8s/gpuhook/gpuhook.json \
        >"$TMP/prestop.out" 2>&1 <<'EOF'; then
import json, sys, yaml
sts = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "StatefulSet")
pod = sts["spec"]["template"]["spec"]
cmd = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
grace = json.load(open(sys.argv[2]))["shutdown_grace_seconds"]
assert cmd[0] == "/bin/sleep", cmd
total = int(cmd[1]) + grace
assert total < pod["terminationGracePeriodSeconds"], (total, pod["terminationGracePeriodSeconds"])
print(f"preStop sleep {cmd[1]}s + shutdown_grace_seconds {grace}s < {pod['terminationGracePeriodSeconds']}s")
EOF
        pass "gpuhook: $(cat "$TMP/prestop.out")"
    else
        fail "gpuhook's preStop and grace period:"
        cat "$TMP/prestop.out" >&2
    fi
    gv=$TMP/build-k8s_overlays_gpu-view.yaml
    if [ -f "$gv" ]; then
        expect_in "$gv" "runtimeClassName: nvidia" "gpu-view overlay sets runtimeClassName: nvidia"
        expect_in "$gv" "nvidia.com/gpu.present: \"true\"" "gpu-view overlay selects GPU nodes"
        if grep -A1 'name: NVIDIA_VISIBLE_DEVICES' "$gv" | grep -q 'value: all'; then
            pass "gpu-view overlay sets NVIDIA_VISIBLE_DEVICES=all"
        else
            fail "gpu-view overlay does not set NVIDIA_VISIBLE_DEVICES=all"
        fi
        if "$PY" - "$gv" <<'EOF'; then
import sys, yaml
sts = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "StatefulSet"]
text = yaml.safe_dump(sts)
sys.exit(1 if "nvidia.com/gpu:" in text or len(sts) != 1 else 0)
EOF
            pass "gpu-view overlay takes no GPU (no nvidia.com/gpu request on gpuhook)"
        else
            fail "gpu-view overlay gives gpuhook a nvidia.com/gpu request"
        fi
    fi
    [ ! -f "$gv" ] || expect_in "$gv" "image: ghcr.io/example/gpuhook:0.1.0-cuda" \
        "gpu-view overlay runs the CUDA build of the image"

    # The cluster GPU view (issue 19): the agent DaemonSet, its headless
    # Service, the EndpointSlice Role, and the opt-in nodes component.
    mkdir -p "$TMP/nodes-overlay"
    cat >"$TMP/nodes-overlay/kustomization.yaml" <<EOF
resources:
  - $(relto "$ROOT/k8s/overlays/cluster-gpu" "$TMP/nodes-overlay")
components:
  - $(relto "$ROOT/k8s/components/cluster-gpu-nodes" "$TMP/nodes-overlay")
EOF
    for target in k8s/overlays/cluster-gpu "$TMP/nodes-overlay"; do
        name=${target#"$TMP/"}
        if kubectl kustomize "$target" >"$TMP/cg.yaml" 2>"$TMP/cg.err" &&
            "$PY" tests/k8s/check_cluster_gpu.py "$TMP/cg.yaml" "$name" >"$TMP/cg.out" 2>&1; then
            pass "cluster GPU view, $name: $(cat "$TMP/cg.out")"
        else
            fail "cluster GPU view, $name:"
            cat "$TMP/cg.err" "$TMP/cg.out" >&2
        fi
    done

    # Another namespace, as an overlay would set it: the Namespace, every
    # object and the RoleBinding's subject follow (a stale subject is a 403).
    mkdir -p "$TMP/ns-overlay"
    cat >"$TMP/ns-overlay/kustomization.yaml" <<EOF
namespace: gpu-elsewhere
resources:
  - $(relto "$ROOT/k8s" "$TMP/ns-overlay")
EOF
    if kubectl kustomize "$TMP/ns-overlay" >"$TMP/ns.yaml" 2>"$TMP/ns.err" &&
        "$PY" - "$TMP/ns.yaml" >"$TMP/ns.out" 2>&1 <<'EOF'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []
rb = [d for d in docs if d["kind"] == "RoleBinding"]
if not rb:
    errors.append("no RoleBinding built")
for d in rb:
    for s in d.get("subjects") or []:
        if s.get("namespace") != "gpu-elsewhere":
            errors.append(f"RoleBinding {d['metadata']['name']} subject {s.get('name')} is in "
                          f"{s.get('namespace')}, not gpu-elsewhere")
ns = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
if ns != ["gpu-elsewhere"]:
    errors.append(f"Namespace objects: {ns}")
for d in docs:
    if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "gpu-elsewhere":
        errors.append(f"{d['kind']} {d['metadata']['name']} in {d['metadata'].get('namespace')}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
EOF
        pass "after a namespace change the RoleBinding's subject, the Namespace and every object follow"
    else
        fail "namespace change:"
        cat "$TMP/ns.err" "$TMP/ns.out" >&2
    fi
    ing=$TMP/build-ingress-overlay.yaml
    [ ! -f "$ing" ] || expect_in "$ing" "path: /webhook" "ingress component routes /webhook"
else
    skip "kubectl is not installed: kubectl kustomize k8s/ and the overlays not built"
fi

# ------------------------------------------------------------ shellcheck --
echo "== shellcheck"
if ! command -v shellcheck >/dev/null 2>&1; then
    fail "shellcheck is not installed (make test installs it: apt-get install shellcheck)"
else
    # Every *.sh, and every other file that starts with a sh or bash shebang.
    mapfile -t shell_scripts < <(find k8s tests -type f -not -path '*/.*' | sort | while IFS= read -r f; do
        case "$f" in
        *.sh) echo "$f" ;;
        *) if head -n 1 "$f" 2>/dev/null | grep -qE '^#! ?(/usr)?/bin/(env )?(ba)?sh\b'; then
            echo "$f"
        fi ;;
        esac
    done)
    for f in "${shell_scripts[@]}"; do
        if shellcheck -x "$f" >"$TMP/sc.out" 2>&1; then
            pass "shellcheck $f"
        else
            fail "shellcheck $f:"
            cat "$TMP/sc.out" >&2
        fi
    done
fi
for f in "$SCRIPTS"/*.py; do
    if "$PY" -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$f" \
        2>"$TMP/py.err"; then
        pass "python syntax ${f#"$ROOT/"}"
    else
        fail "python syntax ${f#"$ROOT/"}:"
        cat "$TMP/py.err" >&2
    fi
done

# ------------------------------------------------- steps 7 and 8, offline --
echo "== steps 7 (collect results) and 8 (final summary) on a temporary workspace"

# fake_workspace DIR SUFFIX: the eight artifacts in output/, and steps 1 to 6
# recorded as passed.
fake_workspace() {
    local ws=$1 sfx=$2 i
    mkdir -p "$ws/output" "$ws/status"
    printf '{"cells": []}\n' >"$ws/output/output_analysis$sfx.ipynb"
    printf '<html>analysis</html>\n' >"$ws/output/output_analysis$sfx.html"
    printf '<coverage line-rate="1.0"/>\n' >"$ws/output/coverage$sfx.xml"
    printf '<testsuite tests="3" failures="0"/>\n' >"$ws/output/pytest_results$sfx.xml"
    printf '<html>pytest report</html>\n' >"$ws/output/pytest_report$sfx.html"
    printf 'papermill: notebook executed\n' >"$ws/output/papermill.log"
    printf 'nbconvert: wrote html\n' >"$ws/output/jupyter_nbconvert.log"
    printf '3 passed in 0.1s\n' >"$ws/output/pytest_output.log"
    for i in 1 2 3 4 5 6; do
        printf 'success\tstep %s passed\n' "$i" >"$ws/status/step$i"
    done
}

# The rows the summary must hold: name, size in bytes, SHA-256 of the
# contents written by fake_workspace (computed independently, once).
expected_rows() {
    local sfx=$1
    cat <<EOF
| output_analysis$sfx.ipynb | 14 | \`d90e32235f8685d691ae092b9629f97d8848281f354124b4af84527bef1132f8\` |
| output_analysis$sfx.html | 22 | \`75713ac9cd2cd6029dcd475dfe7d87054b76b180934783b0e71381665f9b1ebf\` |
| coverage$sfx.xml | 28 | \`d982c50288a16d6d1cf0820309e37531b4ebf2e9d4c63a498f46e3f03c04a6b7\` |
| pytest_results$sfx.xml | 36 | \`2078695f499b79e0c8618089ee2666cd81d7bdc19599e3e41ffa72d9333c11ff\` |
| pytest_report$sfx.html | 27 | \`674138c82c65ab07a1a10ad4a6a4655cb3e1265a3cf3c42c7275087333643363\` |
| papermill.log | 29 | \`6a345889196213ad6401c24129a3d05c75156352a3bae38fee36e8798ef58fb9\` |
| jupyter_nbconvert.log | 22 | \`5aeb4da5924888bf8008bd579323da51b5e467ff45ae627f4f6d8f2dba4ac6db\` |
| pytest_output.log | 17 | \`c3ee749f68b6640943aa02a0313b8bfb51b70121dd9d16f73910ae76ed0a3619\` |
EOF
}

for variant in lite original; do
    if [ "$variant" = lite ]; then sfx=_lite summary=STEP_SUMMARY_LITE.md; else
        sfx='' summary=STEP_SUMMARY_ORIGINAL.md
    fi
    ws=$TMP/ws-$variant
    fake_workspace "$ws" "$sfx"
    # A stale artifact from an earlier run must not survive collection.
    mkdir -p "$ws/artifacts" && echo stale >"$ws/artifacts/old.txt"
    if WORKSPACE=$ws VARIANT=$variant sh "$SCRIPTS/collect-results.sh" >"$TMP/collect.out" 2>&1; then
        pass "$variant: collect-results.sh succeeds"
    else
        fail "$variant: collect-results.sh failed:"
        cat "$TMP/collect.out" >&2
    fi
    listing=$(find "$ws/artifacts" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ')
    want="coverage$sfx.xml jupyter_nbconvert.log output_analysis$sfx.html output_analysis$sfx.ipynb papermill.log pytest_output.log pytest_report$sfx.html pytest_results$sfx.xml "
    if [ "$listing" = "$want" ]; then pass "$variant: artifacts/ holds exactly the 8 artifacts"; else
        fail "$variant: artifacts/ holds \"$listing\", want \"$want\""
    fi
    if WORKSPACE=$ws VARIANT=$variant GIT_REPO_URL=https://github.com/o/r GIT_REVISION=abc123 \
        ANALYSIS_COMMIT=def456 PIPELINE_NAME=gpu-real-8-step-workflow-$variant \
        SUMMARY_RESULT=$TMP/summary-result-$variant \
        sh "$SCRIPTS/final-summary.sh" >"$TMP/summary.out" 2>&1; then
        pass "$variant: final-summary.sh succeeds"
    else
        fail "$variant: final-summary.sh failed:"
        cat "$TMP/summary.out" >&2
    fi
    md=$ws/artifacts/$summary
    if [ -s "$md" ]; then pass "$variant: wrote artifacts/$summary"; else
        fail "$variant: artifacts/$summary missing"
        continue
    fi
    expect_in "$md" "| Artifact | Size (bytes) | SHA-256 |" "$variant: summary has the artifact table"
    while IFS= read -r row; do
        expect_in "$md" "$row" "$variant: summary row ${row%% |*} |"
    done < <(expected_rows "$sfx")
    rows=$(grep -c "^| .* | [0-9]* | \`[0-9a-f]\{64\}\` |\$" "$md" || true)
    if [ "$rows" -eq 8 ]; then pass "$variant: exactly 8 artifact rows"; else
        fail "$variant: $rows artifact rows, want 8"
    fi
    for step in 1 2 3 4 5 6 7 8; do
        if grep -q "^| $step | .* | ✅ success |" "$md"; then pass "$variant: step $step reported a success"
        else fail "$variant: step $step not reported as a success"; fi
    done
    expect_in "$md" "| Revision | \`abc123\` |" "$variant: summary names the revision"
    # The summary result (issue 20): the steps and the verdict, within Tekton's 4096 bytes.
    res=$TMP/summary-result-$variant
    size=$(wc -c <"$res" 2>/dev/null || echo 0)
    if [ "$size" -gt 0 ] && [ "$size" -le 3072 ]; then
        pass "$variant: the summary result holds $size bytes (at most 3072)"
    else fail "$variant: the summary result holds $size bytes, want 1 to 3072"; fi
    expect_in "$res" "| 8 | Final summary | ✅ success |" "$variant: the summary result has the steps"
    expect_in "$res" "🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED" "$variant: the summary result ends with the verdict"
    if grep -q "SHA-256" "$res"; then fail "$variant: the summary result holds the artifact table"
    else pass "$variant: the summary result leaves the artifact table out"; fi
    last=$(tail -n 1 "$md")
    if [ "$last" = "🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED" ]; then
        pass "$variant: the summary ends with the completion line"
    else
        fail "$variant: last line is \"$last\""
    fi
    expect_in "$TMP/summary.out" "🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED" "$variant: the log shows the summary"
done

echo "== steps 7 and 8 with a missing, an empty artifact, or a failed step"
ws=$TMP/ws-missing
fake_workspace "$ws" _lite
rm "$ws/output/pytest_results_lite.xml"
: >"$ws/output/papermill.log"
if WORKSPACE=$ws VARIANT=lite sh "$SCRIPTS/collect-results.sh" >"$TMP/missing.out" 2>&1; then
    fail "collect-results.sh succeeded with a missing artifact"
else
    pass "collect-results.sh fails with a missing artifact"
fi
expect_in "$TMP/missing.out" "collect-results: error: missing artifact: pytest_results_lite.xml (expected at $ws/output/pytest_results_lite.xml)" \
    "collect-results.sh names the missing artifact and where it looked"
expect_in "$TMP/missing.out" "collect-results: error: empty artifact: papermill.log" \
    "collect-results.sh names the empty artifact"
expect_in "$TMP/missing.out" "2 of 8 artifacts missing or empty: pytest_results_lite.xml papermill.log" \
    "collect-results.sh sums up what is missing"
if WORKSPACE=$ws VARIANT=lite sh "$SCRIPTS/final-summary.sh" >"$TMP/missing-summary.out" 2>&1; then
    fail "final-summary.sh succeeded with a missing artifact"
else
    pass "final-summary.sh fails with a missing artifact"
fi
md=$ws/artifacts/STEP_SUMMARY_LITE.md
expect_in "$md" "| pytest_results_lite.xml | — | ❌ missing |" "the summary marks the missing artifact"
expect_in "$md" "| 7 | Collect results | ❌ failure |" "the summary marks step 7 as failed"
expect_not_in "$md" "🎉" "no completion line when an artifact is missing"
expect_in "$TMP/missing-summary.out" "final-summary: error: missing artifact: pytest_results_lite.xml" \
    "final-summary.sh names the missing artifact"

ws=$TMP/ws-tests-failed
fake_workspace "$ws" _lite
printf 'failure\tsome tests failed; see pytest_report_lite.html\n' >"$ws/status/step6"
WORKSPACE=$ws VARIANT=lite sh "$SCRIPTS/collect-results.sh" >/dev/null 2>&1 || true
if WORKSPACE=$ws VARIANT=lite sh "$SCRIPTS/final-summary.sh" >"$TMP/failed.out" 2>&1; then
    fail "final-summary.sh succeeded although step 6 failed"
else
    pass "final-summary.sh fails when step 6 failed"
fi
md=$ws/artifacts/STEP_SUMMARY_LITE.md
expect_in "$md" "| 6 | pytest with coverage | ❌ failure | some tests failed; see pytest_report_lite.html |" \
    "the summary reports step 6's failure"
if [ "$(tail -n 1 "$md")" = "❌ 8-STEP GPU WORKFLOW FAILED: step 6 (pytest with coverage) failed" ]; then
    pass "the summary ends by saying what failed"
else
    fail "last line is \"$(tail -n 1 "$md")\""
fi

if WORKSPACE=$TMP/ws-empty VARIANT=lite sh "$SCRIPTS/final-summary.sh" >"$TMP/noartifacts.out" 2>&1; then
    fail "final-summary.sh succeeded without a workspace"
else
    expect_in "$TMP/noartifacts.out" "final-summary: error: workspace $TMP/ws-empty does not exist" \
        "final-summary.sh says the workspace is missing"
fi
mkdir -p "$TMP/ws-bare"
if WORKSPACE=$TMP/ws-bare VARIANT=huge sh "$SCRIPTS/collect-results.sh" >"$TMP/variant.out" 2>&1; then
    fail "collect-results.sh accepted VARIANT=huge"
else
    expect_in "$TMP/variant.out" 'VARIANT must be lite or original, not "huge"' \
        "collect-results.sh rejects an unknown variant"
fi

# ------------------------------------------ steps 3 and 4, with a fake python3 --
echo "== steps 3 (papermill) and 4 (nbconvert) with a stand-in python3"
# The stand-in records its arguments and writes what papermill and nbconvert
# would; everything else (rmm-init.py) succeeds.
mkdir -p "$TMP/bin"
cat >"$TMP/bin/python3" <<'EOF'
#!/bin/sh
printf '%s\n' "$*" >>"$FAKE_PYTHON_LOG"
# The subsampling script needs no GPU: the real one runs.
case "$1" in */subsample-notebook.py) exec /usr/bin/python3 "$@" ;; esac
if [ "$1 $2" = "-m papermill" ]; then
    printf '{"cells": []}\n' >"$4"
    echo "papermill ran $3"
    if grep -q "lite subsample" "$3"; then
        echo "lite subsample: 60000 x 20000 -> 50000 cells x 10000 genes"
    fi
elif [ "$1 $2 $3" = "-m jupyter nbconvert" ]; then
    shift 3
    while [ $# -gt 0 ]; do
        case "$1" in
        --output) out=$2; shift ;;
        --output-dir) dir=$2; shift ;;
        esac
        shift
    done
    printf '<html></html>\n' >"$dir/$out.html"
    echo "[NbConvertApp] Writing to $dir/$out.html"
fi
EOF
chmod +x "$TMP/bin/python3"
ws=$TMP/ws-notebook
mkdir -p "$ws/src/analysis/notebooks"
echo '{}' >"$ws/src/analysis/notebooks/nb.ipynb"
export FAKE_PYTHON_LOG=$TMP/python.log
if PATH=$TMP/bin:$PATH WORKSPACE=$ws VARIANT=lite NOTEBOOK=notebooks/nb.ipynb RMM_POOL_SIZE=6GiB \
    sh "$SCRIPTS/run-notebook.sh" max_cells=50000 max_genes=10000 >"$TMP/nb.out" 2>&1 &&
    [ -s "$ws/output/output_analysis_lite.ipynb" ]; then
    pass "run-notebook.sh runs papermill and writes output_analysis_lite.ipynb"
else
    fail "run-notebook.sh failed:"
    cat "$TMP/nb.out" >&2
fi
if [ "$(head -n 1 "$TMP/python.log")" = "$SCRIPTS/rmm-init.py --pool-size 6GiB --ipython-dir $ws/.ipython" ]; then
    pass "run-notebook.sh initialises RMM before papermill"
else
    fail "run-notebook.sh did not start with rmm-init.py: $(head -n 1 "$TMP/python.log")"
fi
expect_in "$TMP/python.log" "-p max_cells 50000 -p max_genes 10000" \
    "run-notebook.sh passes NAME=VALUE arguments as papermill parameters"
expect_in "$ws/output/papermill.log" "papermill ran $ws/src/analysis/notebooks/nb.ipynb" \
    "papermill's output goes to papermill.log"
if PATH=$TMP/bin:$PATH WORKSPACE=$ws VARIANT=lite NOTEBOOK=notebooks/nb.ipynb RMM_POOL_SIZE=6GiB \
    sh "$SCRIPTS/run-notebook.sh" 'max cells=1' >"$TMP/nb.out" 2>&1; then
    fail "run-notebook.sh accepted a malformed papermill parameter"
else
    expect_in "$TMP/nb.out" 'papermill parameter "max cells=1" is not NAME=VALUE' \
        "run-notebook.sh rejects a malformed papermill parameter"
fi
if PATH=$TMP/bin:$PATH WORKSPACE=$ws VARIANT=lite sh "$SCRIPTS/nbconvert.sh" >"$TMP/nbc.out" 2>&1 &&
    [ -s "$ws/output/output_analysis_lite.html" ]; then
    pass "nbconvert.sh writes output_analysis_lite.html"
else
    fail "nbconvert.sh failed:"
    cat "$TMP/nbc.out" >&2
fi
expect_in "$ws/output/jupyter_nbconvert.log" "[NbConvertApp] Writing to" \
    "nbconvert's output goes to jupyter_nbconvert.log"
# The lite variant: run-notebook.sh inserts the subsampling cell into a copy
# of the notebook, papermill runs the copy, and the shape it prints reaches
# step 3's outcome.
ws=$TMP/ws-subsample
mkdir -p "$ws/src/analysis/notebooks"
cp tests/k8s/fixtures/blueprint-01-structure.ipynb "$ws/src/analysis/notebooks/01.ipynb"
: >"$FAKE_PYTHON_LOG"
if PATH=$TMP/bin:$PATH WORKSPACE=$ws VARIANT=lite NOTEBOOK=notebooks/01.ipynb RMM_POOL_SIZE=3GiB \
    SUBSAMPLE_CELLS=50000 SUBSAMPLE_GENES=10000 sh "$SCRIPTS/run-notebook.sh" >"$TMP/nb.out" 2>&1; then
    pass "run-notebook.sh runs the lite variant with subsampling"
else
    fail "run-notebook.sh with subsampling failed:"
    cat "$TMP/nb.out" >&2
fi
expect_in "$TMP/python.log" "-m papermill $ws/src/analysis/notebooks/.gpu-workflow-01.ipynb" \
    "papermill runs the copy with the subsampling cell"
expect_in "$ws/output/papermill.log" "lite subsample: 60000 x 20000 -> 50000 cells x 10000 genes" \
    "the subsample's shape is in papermill.log"
expect_in "$ws/status/step3" "subsampled: 60000 x 20000 -> 50000 cells x 10000 genes" \
    "step 3's outcome reports the subsample's shape"
if [ -e "$ws/src/analysis/notebooks/.gpu-workflow-01.ipynb" ]; then
    fail "run-notebook.sh left its copy of the notebook in the analysis repository"
else
    pass "run-notebook.sh removes its copy of the notebook"
fi
printf '{"cells": [], "nbformat": 4, "nbformat_minor": 5}\n' >"$ws/src/analysis/notebooks/empty.ipynb"
if PATH=$TMP/bin:$PATH WORKSPACE=$ws VARIANT=lite NOTEBOOK=notebooks/empty.ipynb RMM_POOL_SIZE=3GiB \
    SUBSAMPLE_CELLS=50000 SUBSAMPLE_GENES=10000 sh "$SCRIPTS/run-notebook.sh" >"$TMP/nb.out" 2>&1; then
    fail "run-notebook.sh ran lite on a notebook that loads no data"
else
    expect_in "$TMP/nb.out" "cannot subsample notebooks/empty.ipynb" \
        "run-notebook.sh fails lite when it cannot subsample"
fi
unset FAKE_PYTHON_LOG

# ------------------------------------------------ git steps (2 and 5) --
echo "== steps 2 and 5 (git clones) against local repositories"
if command -v git >/dev/null 2>&1; then
    export GIT_CONFIG_GLOBAL=$TMP/gitconfig GIT_CONFIG_NOSYSTEM=1
    git config --file "$GIT_CONFIG_GLOBAL" user.email test@example.com
    git config --file "$GIT_CONFIG_GLOBAL" user.name test
    git config --file "$GIT_CONFIG_GLOBAL" init.defaultBranch main
    repo=$TMP/analysis.git
    git init -q "$TMP/analysis-src"
    mkdir -p "$TMP/analysis-src/notebooks"
    echo '{}' >"$TMP/analysis-src/notebooks/01.ipynb"
    git -C "$TMP/analysis-src" add -A && git -C "$TMP/analysis-src" commit -qm one
    first=$(git -C "$TMP/analysis-src" rev-parse HEAD)
    echo more >"$TMP/analysis-src/README"
    git -C "$TMP/analysis-src" add -A && git -C "$TMP/analysis-src" commit -qm two
    second=$(git -C "$TMP/analysis-src" rev-parse HEAD)
    git clone -q --bare "$TMP/analysis-src" "$repo"

    ws=$TMP/ws-git
    mkdir -p "$ws"
    if WORKSPACE=$ws ANALYSIS_REPO_URL=file://$repo GIT_REPO_URL=file://$repo/ GIT_REVISION=$first \
        RESULT_COMMIT=$TMP/commit sh "$SCRIPTS/clone-analysis.sh" >"$TMP/clone.out" 2>&1 &&
        [ "$(cat "$TMP/commit")" = "$first" ]; then
        pass "clone-analysis.sh checks out the triggering revision of the analysis repository"
    else
        fail "clone-analysis.sh did not check out $first:"
        cat "$TMP/clone.out" >&2
    fi
    if WORKSPACE=$ws ANALYSIS_REPO_URL=file://$repo GIT_REPO_URL=https://github.com/other/repo \
        GIT_REVISION=$first RESULT_COMMIT=$TMP/commit sh "$SCRIPTS/clone-analysis.sh" \
        >"$TMP/clone.out" 2>&1 && [ "$(cat "$TMP/commit")" = "$second" ]; then
        pass "clone-analysis.sh takes the default branch when another repository triggered"
    else
        fail "clone-analysis.sh did not check out the default branch ($second):"
        cat "$TMP/clone.out" >&2
    fi
    git init -q "$TMP/no-notebooks"
    echo x >"$TMP/no-notebooks/x" && git -C "$TMP/no-notebooks" add -A &&
        git -C "$TMP/no-notebooks" commit -qm x
    if WORKSPACE=$ws ANALYSIS_REPO_URL=file://$TMP/no-notebooks sh "$SCRIPTS/clone-analysis.sh" \
        >"$TMP/clone.out" 2>&1; then
        fail "clone-analysis.sh accepted a repository without notebooks/"
    else
        expect_in "$TMP/clone.out" "has no notebooks/ folder" "clone-analysis.sh fails without notebooks/"
    fi

    # Step 5 with a sentinel token: it must reach git only through the helper.
    token=ghp_SENTINEL_$$_do_not_print
    printf '%s\n' "$token" >"$TMP/token"
    mkdir -p "$ws/output"
    printf '<html>analysis</html>\n' >"$ws/output/output_analysis_lite.html"
    if WORKSPACE=$ws VARIANT=lite TEST_REPO_URL=file://$repo GITHUB_TOKEN_FILE=$TMP/token \
        sh -x "$SCRIPTS/clone-test-repo.sh" >"$TMP/clone5.out" 2>&1 &&
        [ -s "$ws/src/test-repo/input/output_analysis_lite.html" ]; then
        pass "clone-test-repo.sh clones and puts the HTML into input/"
    else
        fail "clone-test-repo.sh failed:"
        cat "$TMP/clone5.out" >&2
    fi
    expect_not_in "$TMP/clone5.out" "$token" "clone-test-repo.sh never prints the token, even under sh -x"
    if grep -rqF -- "$token" "$ws/src/test-repo/.git"; then
        fail "the token is stored in the clone's .git/"
    else
        pass "the token is not stored in the clone's .git/"
    fi
    helper="!sh '$SCRIPTS/git-credential-token.sh'"
    if printf 'protocol=https\nhost=github.com\npath=o/r.git\n\n' |
        GITHUB_TOKEN_FILE=$TMP/token git -c credential.helper= -c "credential.helper=$helper" \
            credential fill 2>/dev/null | grep -qxF "password=$token"; then
        pass "the credential helper hands git the token from the file"
    else
        fail "the credential helper does not hand git the token"
    fi
    if WORKSPACE=$ws VARIANT=lite TEST_REPO_URL=file://$repo GITHUB_TOKEN_FILE=$TMP/absent \
        sh "$SCRIPTS/clone-test-repo.sh" >"$TMP/clone5.out" 2>&1; then
        fail "clone-test-repo.sh ran without a token"
    else
        expect_in "$TMP/clone5.out" "no token at $TMP/absent: the Secret github-token (key token) is missing or empty" \
            "clone-test-repo.sh fails clearly without the token"
    fi
    if WORKSPACE=$ws VARIANT=lite TEST_REPO_URL=https://user:secret@github.com/o/r.git \
        GITHUB_TOKEN_FILE=$TMP/token sh "$SCRIPTS/clone-test-repo.sh" >"$TMP/clone5.out" 2>&1; then
        fail "clone-test-repo.sh accepted credentials in the URL"
    else
        expect_in "$TMP/clone5.out" "TEST_REPO_URL must not carry credentials" \
            "clone-test-repo.sh refuses credentials in the URL"
    fi
    # Step 5 with a workspace that step 3's code has poisoned: a git on the
    # workspace's PATH and a .gitconfig in the workspace's HOME that rewrites
    # the URL. With the Task's environment, neither may run or apply.
    ws=$TMP/ws-poisoned
    mkdir -p "$ws/output" "$ws/.local/bin" "$ws/.home"
    printf '<html>analysis</html>\n' >"$ws/output/output_analysis_lite.html"
    cat >"$ws/.local/bin/git" <<EOF
#!/bin/sh
echo ran >"$TMP/planted-git-ran"
exec /usr/bin/git "\$@"
EOF
    chmod +x "$ws/.local/bin/git"
    printf '[url "file://%s"]\n\tinsteadOf = file://%s\n' "$TMP/no-notebooks" "$repo" >"$ws/.home/.gitconfig"
    cp "$ws/.home/.gitconfig" "$TMP/poisoned-global"
    # The Task's own environment for the step, read from its YAML.
    # HOME from the Task is /git-home; here a fresh folder plays that emptyDir.
    mkdir -p "$TMP/git-home"
    mapfile -t task_env < <("$PY" - k8s/workflow/tasks/05-clone-test-repo.yaml "$TMP/git-home" <<'EOF'
import sys, yaml
step = yaml.safe_load(open(sys.argv[1]))["spec"]["steps"][0]
for e in step["env"]:
    if e["name"] in ("HOME", "PATH", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM"):
        print(f"{e['name']}={sys.argv[2] if e['name'] == 'HOME' else e['value']}")
EOF
)
    if [ "${#task_env[@]}" -ne 4 ]; then
        fail "the step 5 Task does not set HOME, PATH, GIT_CONFIG_GLOBAL and GIT_CONFIG_NOSYSTEM"
    fi
    # Only the Task's environment: not this script's GIT_CONFIG_GLOBAL.
    if env -u GIT_CONFIG_GLOBAL -u GIT_CONFIG_NOSYSTEM "${task_env[@]}" WORKSPACE="$ws" VARIANT=lite TEST_REPO_URL="file://$repo" \
        GITHUB_TOKEN_FILE="$TMP/token" sh "$SCRIPTS/clone-test-repo.sh" >"$TMP/poison.out" 2>&1 &&
        [ -d "$ws/src/test-repo/notebooks" ]; then
        pass "step 5 with the Task's environment clones the real repository despite a planted .gitconfig"
    else
        fail "step 5 in a poisoned workspace:"
        cat "$TMP/poison.out" >&2
    fi
    # Even a caller that passes the workspace's PATH and HOME gets neither.
    rm -rf "$ws/src/test-repo"
    if PATH="$ws/.local/bin:$PATH" HOME="$TMP/git-home" GIT_CONFIG_GLOBAL="$TMP/poisoned-global" \
        WORKSPACE="$ws" VARIANT=lite TEST_REPO_URL="file://$repo" GITHUB_TOKEN_FILE="$TMP/token" \
        sh "$SCRIPTS/clone-test-repo.sh" >"$TMP/poison.out" 2>&1 && [ -d "$ws/src/test-repo/notebooks" ] &&
        [ ! -e "$TMP/planted-git-ran" ]; then
        pass "step 5 ignores a planted git on PATH and a GIT_CONFIG_GLOBAL from its caller"
    else
        fail "step 5 ran the planted git or followed the planted config:"
        cat "$TMP/poison.out" >&2
    fi
    if HOME="$ws/.home" WORKSPACE="$ws" VARIANT=lite TEST_REPO_URL="file://$repo" \
        GITHUB_TOKEN_FILE="$TMP/token" sh "$SCRIPTS/clone-test-repo.sh" >"$TMP/poison.out" 2>&1; then
        fail "step 5 accepted a HOME inside the workspace"
    else
        expect_in "$TMP/poison.out" "HOME must not be in the workspace" "step 5 refuses a HOME inside the workspace"
    fi
    for req in "http github.com" "https evil.example" "https github.com.evil.example"; do
        if printf 'protocol=%s\nhost=%s\npath=o/r.git\n\n' "${req% *}" "${req#* }" |
            GITHUB_TOKEN_FILE=$TMP/token GITHUB_TOKEN_HOST=github.com sh "$SCRIPTS/git-credential-token.sh" get \
                2>/dev/null | grep -qF "$token"; then
            fail "the credential helper gave the token for $req"
        else
            pass "the credential helper gives nothing for $req"
        fi
    done
    if printf 'protocol=https\nhost=github.com\n\n' | GITHUB_TOKEN_FILE=$TMP/token GITHUB_TOKEN_HOST='' \
        sh "$SCRIPTS/git-credential-token.sh" get 2>/dev/null | grep -qF "$token"; then
        fail "the credential helper gave the token for a test repository not on https"
    else
        pass "the credential helper gives nothing when the test repository is not on https"
    fi
else
    skip "git is not installed: steps 2 and 5 not run"
fi

# ------------------------------------------------- issue 17's own cases --
# shellcheck source-path=SCRIPTDIR source=workflow_cases.sh
. "$ROOT/tests/k8s/workflow_cases.sh"

# --------------------------------------------------- RMM, with a fake rmm --
echo "== RMM scripts against a stand-in rmm module"
export PYTHONPATH=$ROOT/tests/k8s/fake_rmm
if "$PY" "$SCRIPTS/rmm-init.py" --pool-size 6GiB --ipython-dir "$TMP/ipython" >"$TMP/rmm.out" 2>&1 &&
    grep -q 'initial_pool_size=6442450944' "$TMP/ipython/profile_default/startup/00-rmm-pool.py"; then
    pass "rmm-init.py reserves the pool and gives the kernel the same pool"
else
    fail "rmm-init.py did not set up the pool:"
    cat "$TMP/rmm.out" >&2
fi
if FAKE_RMM_FREE=$((5 << 30)) "$PY" "$SCRIPTS/rmm-init.py" --pool-size 20GiB >"$TMP/rmm.out" 2>&1; then
    fail "rmm-init.py accepted a pool larger than the free memory"
else
    expect_in "$TMP/rmm.out" "rmm-init: error: an RMM pool of 20.0 GiB does not fit on GPU 0 (free 5.0 GiB of 16.0 GiB); lower the rmm-pool-size param, or run the lite pipeline" \
        "rmm-init.py fails clearly when the pool does not fit"
fi
if FAKE_RMM_FAIL=1 "$PY" "$SCRIPTS/rmm-init.py" --pool-size 1GiB >"$TMP/rmm.out" 2>&1; then
    fail "rmm-init.py succeeded although RMM failed"
else
    expect_in "$TMP/rmm.out" "cannot get an RMM pool of 1.0 GiB on GPU 0 (free 12.0 GiB of 16.0 GiB): MemoryError" \
        "rmm-init.py fails clearly when RMM refuses the pool"
fi
if "$PY" "$SCRIPTS/rmm-init.py" --pool-size lots >"$TMP/rmm.out" 2>&1; then
    fail "rmm-init.py accepted --pool-size lots"
else
    expect_in "$TMP/rmm.out" '"lots" is not a size' "rmm-init.py rejects a malformed size"
fi
if "$PY" "$SCRIPTS/rmm-verify.py" --pool-size 1GiB --buffer-size 256MiB \
    --pool-size-result "$TMP/pool" --free-memory-result "$TMP/free" >"$TMP/verify.out" 2>&1 &&
    [ "$(cat "$TMP/pool")" = 1073741824 ] && [ "$(cat "$TMP/free")" = $((12 << 30)) ]; then
    pass "rmm-verify.py allocates, frees and reports the pool size and free memory"
else
    fail "rmm-verify.py failed:"
    cat "$TMP/verify.out" >&2
fi
unset PYTHONPATH

# ---------------------------------------------------------- Containerfile --
echo "== Containerfile (Docker does not run here: its package lists are checked)"
if [ -f Containerfile ]; then
    # The build stage's apt-get install: everything up to the runtime stage.
    build_stage=$(sed -n '1,/^FROM .* AS runtime/p' Containerfile)
    runtime_stage=$(sed -n '/^FROM .* AS runtime/,$p' Containerfile)
    if [ -f scripts/install-deps.sh ]; then
        while IFS= read -r pkg; do
            if grep -qw -- "$pkg" <<<"$build_stage"; then
                pass "Containerfile builds with $pkg, as scripts/install-deps.sh does"
            else
                fail "Containerfile's build stage lacks $pkg, which scripts/install-deps.sh installs"
            fi
        done < <(grep -o '[a-z0-9.+-]*-dev\b\|\bbuild-essential\b\|\bcmake\b\|\bpkg-config\b' \
            scripts/install-deps.sh | grep -v '^libcmocka-dev$' | sort -u)
    else
        skip "scripts/install-deps.sh not found: build packages not compared"
    fi
    # Each -dev package's runtime library must be in the runtime stage.
    while IFS= read -r dev; do
        libs=$(apt-cache depends "$dev" 2>/dev/null | awk '$1 == "Depends:" {print $2}' |
            grep -v -- '-dev$' || true)
        if [ -z "$libs" ]; then
            skip "apt-cache knows no runtime library of $dev"
            continue
        fi
        found=
        for lib in $libs; do
            if grep -qw -- "$lib" <<<"$runtime_stage"; then found=$lib; fi
        done
        if [ -n "$found" ]; then pass "Containerfile's runtime stage has $found (for $dev)"; else
            fail "Containerfile's runtime stage lacks the library of $dev (one of: $libs)"
        fi
    done < <(grep -o '\blib[a-z0-9.+-]*-dev\b' <<<"$build_stage" | sort -u)
    expect_in Containerfile "USER 10001:10001" "Containerfile runs as a numeric non-root user"
else
    fail "Containerfile not found at the repository root"
fi

# ------------------------------------------------- gpuhook --check-config --
echo "== the in-cluster config with gpuhook --check-config"
bin=${GPUHOOK_BIN:-}
[ -n "$bin" ] || { [ -x build/gpuhook ] && bin=build/gpuhook; } || true
if [ -n "$bin" ] && [ -x "$bin" ]; then
    cfg=$TMP/incluster
    mkdir -p "$cfg/spool"
    echo webhook-secret >"$cfg/webhook"
    echo trigger-token >"$cfg/trigger"
    # The same file with the container's paths pointed at this checkout.
    sed -e "s#/etc/gpuhook/secrets/webhook/secret#$cfg/webhook#" \
        -e "s#/etc/gpuhook/secrets/trigger/token#$cfg/trigger#" \
        -e "s#/etc/gpuhook/config/#$ROOT/k8s/triggers/#" \
        -e "s#/var/lib/gpuhook/spool#$cfg/spool#" k8s/gpuhook/gpuhook.json >"$cfg/gpuhook.json"
    if "$bin" --config "$cfg/gpuhook.json" --check-config >"$TMP/check.out" 2>&1; then
        pass "gpuhook --check-config accepts k8s/gpuhook/gpuhook.json"
    else
        fail "gpuhook --check-config rejects k8s/gpuhook/gpuhook.json:"
        cat "$TMP/check.out" >&2
    fi
else
    skip "no gpuhook binary (set GPUHOOK_BIN): k8s/gpuhook/gpuhook.json not checked by gpuhook"
fi

echo
if [ "$failures" -ne 0 ]; then
    echo "test_k8s: $failures of $checks checks failed" >&2
    exit 1
fi
echo "test_k8s: all $checks checks passed"
