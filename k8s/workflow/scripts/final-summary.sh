#!/bin/sh
# Step 8 (a finally task, so it runs whatever happened before): writes
# artifacts/STEP_SUMMARY_LITE.md or STEP_SUMMARY_ORIGINAL.md, a
# GitHub-Actions-style step summary: the outcome of every step and the size
# and SHA-256 of every artifact. Its last line is
# "🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED" only when every step passed;
# otherwise it names the first failing step and ends with a line saying what
# failed, and the step fails.
#
# Usage: final-summary.sh [N=STATUS]...
#   Tekton's $(tasks.<step N>.status) for steps 1 to 7: Succeeded, Failed or
#   None (not run). A step that failed before recording its outcome in
#   status/stepN is reported from this.
# Environment: WORKSPACE, VARIANT, PIPELINE_STATUS ($(tasks.status): Succeeded,
# Failed, Completed or None; empty offline), and for the header (all
# optional): PIPELINE_NAME, PIPELINERUN_NAME, GIT_REPO_URL, GIT_REVISION,
# ANALYSIS_COMMIT (default: status/analysis-commit, written by step 2).
# SUMMARY_RESULT (optional): a file, Tekton's $(results.summary.path), that
# gets a short summary (the steps table and the last line, at most
# SUMMARY_RESULT_MAX bytes, default 3072, cut at a line) for gpuhook's check
# run; Tekton's results of one Task share 4096 bytes by default.
# Runs without a GPU or network: tests/k8s/test_k8s.sh runs it on temporary
# workspaces of passed and failed runs.
set -eu
SCRIPT_NAME=final-summary
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_dirs
variant_init

# Tekton's status of each step, as tekton_status_N variables.
for kv do
    n=${kv%%=*}
    case "$kv" in *=*) ;; *) n= ;; esac
    case "$n" in
    [1-7]) eval "tekton_status_$n=\${kv#*=}" ;;
    *) die "task status \"$kv\" is not N=STATUS with N from 1 to 7" ;;
    esac
done
tekton_status() {
    eval "printf '%s' \"\${tekton_status_$1:-}\""
}

mkdir -p "$ARTIFACTS_DIR"
summary=$ARTIFACTS_DIR/$SUMMARY_NAME
tmp=$summary.partial
if [ -z "${ANALYSIS_COMMIT:-}" ] && [ -s "$STATUS_DIR/analysis-commit" ]; then
    ANALYSIS_COMMIT=$(head -n 1 "$STATUS_DIR/analysis-commit")
fi
# Step 7 copies the artifacts; when it did not run, report what output/ holds.
artifact_dir=$ARTIFACTS_DIR
if ! grep -q '^success' "$STATUS_DIR/step7" 2>/dev/null; then
    artifact_dir=$OUTPUT_DIR
fi

# Markdown table cells must not contain a bare "|".
cell() {
    printf '%s' "$1" | sed 's/|/\\|/g'
}

failures=
fail() {
    failures="$failures${failures:+; }$1"
}

{
    printf '# GPU single-cell workflow: %s\n\n' "$VARIANT"
    printf '| | |\n| --- | --- |\n'
    printf '| Pipeline | %s |\n' "$(cell "${PIPELINE_NAME:-gpu-real-8-step-workflow-$VARIANT}")"
    [ -z "${PIPELINERUN_NAME:-}" ] || printf '| PipelineRun | %s |\n' "$(cell "$PIPELINERUN_NAME")"
    [ -z "${GIT_REPO_URL:-}" ] || printf '| Repository | %s |\n' "$(cell "$GIT_REPO_URL")"
    [ -z "${GIT_REVISION:-}" ] || printf '| Revision | %s |\n' "\`$(cell "$GIT_REVISION")\`"
    [ -z "${ANALYSIS_COMMIT:-}" ] || printf '| Analysis commit | %s |\n' "\`$(cell "$ANALYSIS_COMMIT")\`"
    shape=$(grep -h 'lite subsample: ' "$OUTPUT_DIR/papermill.log" 2>/dev/null | tail -n 1 |
        sed 's/.*lite subsample: //' || true)
    [ -z "$shape" ] || printf '| Data | %s |\n' "$(cell "$shape")"
    printf '| Finished | %s |\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"

    printf '## Steps\n\n| # | Step | Outcome | Details |\n| ---: | --- | --- | --- |\n'
} >"$tmp"

first_failed=
step=0
for title in "Container environment setup" "Git clone of the analysis repository" \
    "Papermill notebook execution with RMM" "nbconvert to HTML" \
    "Clone of the private test repository" "pytest with coverage" "Collect results"; do
    step=$((step + 1))
    outcome=
    details="no outcome recorded"
    if [ -f "$STATUS_DIR/step$step" ]; then
        line=$(head -n 1 "$STATUS_DIR/step$step")
        outcome=$(printf '%s' "$line" | cut -f 1)
        details=$(printf '%s' "$line" | cut -f 2-)
    fi
    tekton=$(tekton_status "$step")
    case "$tekton:$outcome" in
    Failed:success) outcome=failure details="the task failed after recording: $details" ;;
    Failed:failure) ;;
    Failed:*) outcome=failure details="the task failed before recording an outcome; see its log" ;;
    None:*) outcome=notrun details="not run: an earlier step failed" ;;
    esac
    case "$outcome" in
    success) mark="✅ success" ;;
    failure)
        mark="❌ failure"
        fail "step $step ($title) failed"
        first_failed=${first_failed:-"$step ($title)"}
        ;;
    notrun) mark="⏭️ not run"; fail "step $step ($title) did not run" ;;
    *) mark="❔ unknown"; fail "step $step ($title) recorded no outcome" ;;
    esac
    printf '| %s | %s | %s | %s |\n' "$step" "$title" "$mark" "$(cell "$details")" >>"$tmp"
done
case "${PIPELINE_STATUS:-}" in
"" | Succeeded) ;;
*) fail "the pipeline's tasks ended $PIPELINE_STATUS" ;;
esac

artifacts_table=
for name in $(artifact_names); do
    path=$artifact_dir/$name
    if [ ! -f "$path" ]; then
        printf '%s: error: missing artifact: %s (expected at %s)\n' "$SCRIPT_NAME" "$name" "$path" >&2
        fail "artifact $name is missing"
        row="| $name | — | ❌ missing |"
    elif [ ! -s "$path" ]; then
        printf '%s: error: empty artifact: %s (%s is 0 bytes)\n' "$SCRIPT_NAME" "$name" "$path" >&2
        fail "artifact $name is empty"
        row="| $name | 0 | ❌ empty |"
    else
        sum=$(sha256sum "$path" | cut -d ' ' -f 1)
        row="| $name | $(file_size "$path") | \`$sum\` |"
    fi
    artifacts_table="$artifacts_table$row
"
done

if [ -z "$failures" ]; then
    printf '| 8 | Final summary | ✅ success | %s |\n' "$SUMMARY_NAME" >>"$tmp"
else
    printf '| 8 | Final summary | ❌ failure | %s |\n' "$(cell "$failures")" >>"$tmp"
fi
{
    printf '\n## Artifacts\n\n'
    [ "$artifact_dir" = "$ARTIFACTS_DIR" ] ||
        printf 'Step 7 did not collect the artifacts; these are what output/ holds.\n\n'
    printf '| Artifact | Size (bytes) | SHA-256 |\n| --- | ---: | --- |\n'
    printf '%s' "$artifacts_table"
    printf '\n'
    if [ -z "$failures" ]; then
        printf '🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED\n'
    else
        [ -z "$first_failed" ] || printf 'First failing step: %s\n\n' "$first_failed"
        printf '❌ 8-STEP GPU WORKFLOW FAILED: %s\n' "$failures"
    fi
} >>"$tmp"
mv "$tmp" "$summary"
cat "$summary"
if [ -n "${SUMMARY_RESULT:-}" ]; then
    # The steps table and the verdict, whole lines only, within the result limit.
    { sed -n '/^## Steps$/,/^## Artifacts$/p' "$summary" | sed '$d'; tail -n 1 "$summary"; } |
        LC_ALL=C awk -v max="${SUMMARY_RESULT_MAX:-3072}" \
            '{ n += length($0) + 1; if (n > max) exit; print }' >"$SUMMARY_RESULT"
fi

if [ -n "$failures" ]; then
    record_outcome 8 failure "$failures"
    die "$failures"
fi
record_outcome 8 success "wrote $SUMMARY_NAME"
