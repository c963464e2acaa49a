# shellcheck shell=bash disable=SC2154
# (SC2154: ROOT, PY, TMP, SCRIPTS and the helpers come from test_k8s.sh.)
#
# The checks of issue 17 that need nothing from the rest of test_k8s.sh,
# which sources this file: the --workflow checks each reject their fault,
# steps 7 and 8 after a failed step, the lite subsampling cell, and Pod
# Security with Tekton's injected prepare container.

# ------------------------------------- validator --workflow, faults back in --
echo "== validator --workflow on a copy of k8s/ with each issue-17 fault put back"
mut=$TMP/mut
mkdir -p "$mut"
cp -r k8s "$mut/k8s"
cp config/gpuhook.json "$mut/gpuhook.json"
if "$PY" - "$mut" <<'EOF'; then
import sys
root = sys.argv[1] + "/k8s/"
def swap(path, old, new):
    text = open(root + path).read()
    assert old in text, (path, old)
    open(root + path, "w").write(text.replace(old, new, 1))
swap("base/namespace.yaml", "enforce: restricted", "enforce: baseline")
swap("triggers/trigger-template.yaml",
     '            nodeSelector:\n              nvidia.com/gpu.present: "true"\n', "")
swap("triggers/trigger-template.yaml", "effect: NoSchedule", "effect: NoExecute")
swap("triggers/trigger-template.yaml", "key: nvidia.com/gpu", "key: example.com/other")
swap("workflow/tasks/07-collect-results.yaml", "runAsUser: 1001", "runAsUser: 0")
swap("workflow/pipelines/gpu-real-8-step-workflow-lite.yaml", "default: 3GiB", "default: 6GiB")
swap("workflow/pipelines/gpu-real-8-step-workflow-original.yaml", 'gpu-memory-mib: "8192"',
     'gpu-memory-mib: "6144"')
swap("workflow/tasks/05-clone-test-repo.yaml", "        optional: true\n", "")
swap("workflow/tasks/05-clone-test-repo.yaml", '        - name: GIT_CONFIG_NOSYSTEM\n          value: "1"\n', "")
swap("workflow/pipelines/gpu-real-8-step-workflow-lite.yaml",
     "            - 3=$(tasks.step3-papermill-execution.status)\n", "")
EOF
    rc=0
    "$PY" tests/k8s/validate_k8s.py --workflow --config-sync "$mut/gpuhook.json" "$mut/k8s" \
        >"$TMP/mut.out" 2>&1 || rc=$?
    expect_not_in "$TMP/mut.out" "does not parse" "the faulty copy still parses"
    if [ "$rc" -eq 1 ]; then pass "validator --workflow rejects the faulty copy"; else
        fail "validator --workflow exited $rc on the faulty copy:"
        cat "$TMP/mut.out" >&2
    fi
    for want in "Namespace gpu-runs: must enforce Pod Security restricted" \
        "the affinity assistant (a volumeClaimTemplate workspace) is placed only from" \
        "does not tolerate the nvidia.com/gpu taint" \
        "TaskRun step7-collect-results: Pod Security restricted rejects the container step-collect-results: runs as uid 0" \
        "rmm-pool-size default is 6144 MiB; with gpuhook.dev/gpu-memory-mib 4096 it must be 3072 MiB" \
        "gpuhook.dev/gpu-memory-mib 6144 is outside the seed's range for original" \
        ".selection.gpu_fit.original_min_free_mib: is 8192, but the original Pipeline needs 6144 MiB" \
        "secret volume github-token must be optional" \
        "step clone: needs GIT_CONFIG_NOSYSTEM=1" \
        "the final summary is not given \$(tasks.step3-papermill-execution.status)"; do
        expect_in "$TMP/mut.out" "$want" "validator --workflow: $want"
    done
else
    fail "could not put the faults into the copy of k8s/"
fi

# ------------------------------------------- a failed run: steps 7 and 8 --
echo "== steps 7 and 8 after step 3 failed (step 8 runs in finally)"
ws=$TMP/ws-step3-failed
mkdir -p "$ws/output" "$ws/status"
printf 'success\tenvironment ready\n' >"$ws/status/step1"
printf 'success\tcloned\n' >"$ws/status/step2"
printf 'abc123def\n' >"$ws/status/analysis-commit"
printf 'papermill: CellExecutionError in cell 7\n' >"$ws/output/papermill.log"
# Step 3 died before recording; steps 4 to 7 never ran (Tekton: None).
if WORKSPACE=$ws VARIANT=lite PIPELINE_STATUS=Failed SUMMARY_RESULT=$TMP/f3.result \
    SUMMARY_RESULT_MAX=400 sh "$SCRIPTS/final-summary.sh" \
    1=Succeeded 2=Succeeded 3=Failed 4=None 5=None 6=None 7=None >"$TMP/f3.out" 2>&1; then
    fail "final-summary.sh succeeded after step 3 failed"
else
    pass "final-summary.sh fails the run after step 3 failed"
fi
f3size=$(wc -c <"$TMP/f3.result" 2>/dev/null || echo 0)
if [ "$f3size" -gt 0 ] && [ "$f3size" -le 400 ]; then
    pass "a failed run's summary result is written and cut at its bound ($f3size bytes)"
else fail "a failed run's summary result holds $f3size bytes, want 1 to 400"; fi
expect_in "$TMP/f3.result" "| # | Step | Outcome | Details |" "a failed run's summary result starts with the steps"
md=$ws/artifacts/STEP_SUMMARY_LITE.md
if [ -s "$md" ]; then pass "a failed run still gets STEP_SUMMARY_LITE.md"; else
    fail "no STEP_SUMMARY_LITE.md after a failed run:"
    cat "$TMP/f3.out" >&2
fi
expect_in "$md" "| 3 | Papermill notebook execution with RMM | ❌ failure | the task failed before recording an outcome; see its log |" \
    "the summary reports step 3 from Tekton's status"
expect_in "$md" "| 4 | nbconvert to HTML | ⏭️ not run |" "the summary marks step 4 as not run"
expect_in "$md" "First failing step: 3 (Papermill notebook execution with RMM)" "the summary names the failing step"
expect_in "$md" "| Analysis commit | \`abc123def\` |" "the summary takes the analysis commit from step 2's record"
expect_in "$md" "Step 7 did not collect the artifacts" "the summary says the artifacts are uncollected"
expect_in "$md" "| papermill.log | 40 |" "the summary lists papermill.log from output/"
expect_not_in "$md" "🎉" "no completion line after a failure"
ws=$TMP/ws-all-passed-but-status
fake_workspace "$ws" ""
WORKSPACE=$ws VARIANT=original sh "$SCRIPTS/collect-results.sh" >/dev/null 2>&1 || true
if WORKSPACE=$ws VARIANT=original PIPELINE_STATUS=Failed sh "$SCRIPTS/final-summary.sh" \
    1=Succeeded 2=Succeeded 3=Succeeded 4=Succeeded 5=Succeeded 6=Failed 7=Succeeded \
    >"$TMP/f6.out" 2>&1; then
    fail "final-summary.sh succeeded although Tekton says step 6 failed"
else
    expect_not_in "$ws/artifacts/STEP_SUMMARY_ORIGINAL.md" "🎉" \
        "Tekton's Failed wins over a recorded success: no completion line"
fi
if WORKSPACE=$ws VARIANT=original sh "$SCRIPTS/final-summary.sh" 9=Succeeded >"$TMP/f9.out" 2>&1; then
    fail "final-summary.sh accepted a status for step 9"
else
    expect_in "$TMP/f9.out" 'task status "9=Succeeded" is not N=STATUS' "final-summary.sh rejects a bad status argument"
fi

# ------------------------------------------------ lite subsampling cell --
echo "== lite subsampling: the cell lands after the notebook loads its data"
nb=tests/k8s/fixtures/blueprint-01-structure.ipynb
if "$PY" "$SCRIPTS/subsample-notebook.py" "$nb" "$TMP/sub.ipynb" --max-cells 50000 --max-genes 10000 \
    >"$TMP/sub.out" 2>&1 && "$PY" - "$nb" "$TMP/sub.ipynb" >"$TMP/sub.check" 2>&1 <<'EOF'; then
import json, sys
old = json.load(open(sys.argv[1]))["cells"]
new = json.load(open(sys.argv[2]))["cells"]
src = lambda c: "".join(c["source"])
load = next(i for i, c in enumerate(old) if "adata = sc.read(output)" in src(c))
assert len(new) == len(old) + 1, "one cell inserted"
cell = new[load + 1]
assert "lite subsample" in src(cell), "the new cell follows the loading cell"
assert "rsc.get.anndata_to_GPU(adata)" in src(new[load + 2]), "and precedes the move to the GPU"
assert "_max_cells, _max_genes = 50000, 10000" in src(cell)
assert 'print(f"lite subsample:' in src(cell)
compile(src(cell), "subsample-cell", "exec")
assert [src(c) for i, c in enumerate(new) if i != load + 1] == [src(c) for c in old]
print(f"inserted at {load + 1}")
EOF
    pass "subsample-notebook.py inserts the cell right after 'adata = sc.read(output)' ($(cat "$TMP/sub.check"))"
else
    fail "subsample-notebook.py:"
    cat "$TMP/sub.out" "$TMP/sub.check" >&2
fi
printf '{"cells": [{"cell_type": "code", "source": ["x = 1\\n"]}], "nbformat": 4, "nbformat_minor": 4}\n' >"$TMP/noload.ipynb"
if "$PY" "$SCRIPTS/subsample-notebook.py" "$TMP/noload.ipynb" "$TMP/x.ipynb" --max-cells 1 --max-genes 1 \
    >"$TMP/sub.out" 2>&1; then
    fail "subsample-notebook.py accepted a notebook that loads no data"
else
    expect_in "$TMP/sub.out" "loads the data" "subsample-notebook.py fails clearly without a loading cell"
fi

# --------------------------------- Tekton's injected prepare container --
echo "== Pod Security restricted and Tekton's set-security-context"
if "$PY" - >"$TMP/psa.out" 2>&1 <<'EOF'; then
import sys, yaml
sys.path.insert(0, "tests/k8s")
import workflow_checks as w
run = yaml.safe_load(open("k8s/triggers/trigger-template.yaml"))["spec"]["resourcetemplates"][0]
pt = run["spec"]["taskRunTemplate"]["podTemplate"]
task = yaml.safe_load(open("k8s/workflow/tasks/01-environment-setup.yaml"))["spec"]
on = list(w.restricted_errors(pt.get("securityContext"), *w.tekton_pod(task, pt, True)))
off = list(w.restricted_errors(pt.get("securityContext"), *w.tekton_pod(task, pt, False)))
assert on == [], on
assert any(c == "prepare" for c, _ in off), off
print("prepare is admitted only with set-security-context: true")
EOF
    pass "$(cat "$TMP/psa.out")"
else
    fail "Pod Security check of step 1's pod:"
    cat "$TMP/psa.out" >&2
fi

