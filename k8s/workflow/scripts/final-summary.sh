#!/bin/sh
# Step 8: writes artifacts/STEP_SUMMARY_LITE.md or STEP_SUMMARY_ORIGINAL.md,
# a GitHub-Actions-style step summary: the outcome of every step and the size
# and SHA-256 of every artifact. Its last line is
# "🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED" when everything passed; otherwise
# it ends with a line saying what failed, and the step fails.
#
# Environment: WORKSPACE, VARIANT, and for the header (all optional):
# PIPELINE_NAME, PIPELINERUN_NAME, GIT_REPO_URL, GIT_REVISION, ANALYSIS_COMMIT.
# Runs without a GPU or network: tests/k8s/test_k8s.sh runs it on a temporary
# workspace.
set -eu
SCRIPT_NAME=final-summary
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

[ -d "$ARTIFACTS_DIR" ] || die "$ARTIFACTS_DIR does not exist: run collect-results first"
summary=$ARTIFACTS_DIR/$SUMMARY_NAME
tmp=$summary.partial

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
    printf '| Finished | %s |\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"

    printf '## Steps\n\n| # | Step | Outcome | Details |\n| ---: | --- | --- | --- |\n'
} >"$tmp"

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
    case "$outcome" in
    success) mark="✅ success" ;;
    failure) mark="❌ failure"; fail "step $step ($title) failed" ;;
    *) mark="❔ unknown"; fail "step $step ($title) recorded no outcome" ;;
    esac
    printf '| %s | %s | %s | %s |\n' "$step" "$title" "$mark" "$(cell "$details")" >>"$tmp"
done

artifacts_table=
for name in $(artifact_names); do
    path=$ARTIFACTS_DIR/$name
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
    printf '\n## Artifacts\n\n| Artifact | Size (bytes) | SHA-256 |\n| --- | ---: | --- |\n'
    printf '%s' "$artifacts_table"
    printf '\n'
    if [ -z "$failures" ]; then
        printf '🎉 ENTIRE 8-STEP GPU WORKFLOW COMPLETED\n'
    else
        printf '❌ 8-STEP GPU WORKFLOW FAILED: %s\n' "$failures"
    fi
} >>"$tmp"
mv "$tmp" "$summary"
cat "$summary"

if [ -n "$failures" ]; then
    record_outcome 8 failure "$failures"
    die "$failures"
fi
record_outcome 8 success "wrote $SUMMARY_NAME"
