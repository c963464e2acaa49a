# shellcheck shell=sh disable=SC2034
# (SC2034: the variables set here are used by the scripts that source this file.)
#
# Shared helpers for the GPU workflow's step scripts. Each step script sources
# this file; it is POSIX sh so that the same scripts run in the RAPIDS image
# (dash/bash), in alpine/git (busybox ash) and in debian:12-slim.
#
# Inputs (environment, set by the Task from its params):
#   WORKSPACE  the shared-storage workspace (required)
#   VARIANT    lite or original (required by the scripts that name artifacts)
#
# Layout of the workspace:
#   src/analysis   the analysis repository (step 2)
#   src/test-repo  the private test repository (step 5)
#   output/        everything the steps produce (steps 3 to 6)
#   artifacts/     the collected artifacts and the summary (steps 7 and 8)
#   status/stepN   one line per finished step: "<outcome><TAB><message>"
#   .home, .local, .ipython  HOME, PYTHONUSERBASE and IPYTHONDIR, shared by the
#                  steps that run workspace code (never by step 5, which holds the token)
#   status/analysis-commit  the analysis commit (step 2), for the final summary

SCRIPT_NAME=${SCRIPT_NAME:-$(basename "$0" .sh)}

die() {
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2
}

info() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*"
}

# workflow_dirs checks WORKSPACE and sets the folders of its layout. It
# changes nothing else: step 5 uses it alone, so that nothing the notebook's
# code wrote into the workspace (tools, a .gitconfig) reaches the token.
workflow_dirs() {
    [ -n "${WORKSPACE:-}" ] || die "WORKSPACE is not set"
    [ -d "$WORKSPACE" ] || die "workspace $WORKSPACE does not exist"
    OUTPUT_DIR=$WORKSPACE/output
    ARTIFACTS_DIR=$WORKSPACE/artifacts
    STATUS_DIR=$WORKSPACE/status
}

# workflow_init also points HOME and the Python user site into the workspace,
# so that every step (whatever its image) sees the same tools. Never in a
# step that holds a secret: step 3 runs the triggering commit's code, which
# can write anything there.
workflow_init() {
    workflow_dirs
    HOME=$WORKSPACE/.home
    PYTHONUSERBASE=$WORKSPACE/.local
    IPYTHONDIR=$WORKSPACE/.ipython
    PATH=$PYTHONUSERBASE/bin:$PATH
    export HOME PYTHONUSERBASE IPYTHONDIR PATH
}

# variant_init sets the artifact names of VARIANT (lite adds "_lite").
variant_init() {
    case "${VARIANT:-}" in
    lite)
        SUFFIX=_lite
        SUMMARY_NAME=STEP_SUMMARY_LITE.md
        ;;
    original)
        SUFFIX=
        SUMMARY_NAME=STEP_SUMMARY_ORIGINAL.md
        ;;
    *) die "VARIANT must be lite or original, not \"${VARIANT:-}\"" ;;
    esac
    OUTPUT_NOTEBOOK=output_analysis$SUFFIX.ipynb
    OUTPUT_HTML=output_analysis$SUFFIX.html
    COVERAGE_XML=coverage$SUFFIX.xml
    JUNIT_XML=pytest_results$SUFFIX.xml
    PYTEST_HTML=pytest_report$SUFFIX.html
}

# artifact_names prints the eight artifacts of the variant, one per line, in
# the order of the summary. The summary itself is the ninth.
artifact_names() {
    printf '%s\n' "$OUTPUT_NOTEBOOK" "$OUTPUT_HTML" "$COVERAGE_XML" "$JUNIT_XML" \
        "$PYTEST_HTML" papermill.log jupyter_nbconvert.log pytest_output.log
}

# record_outcome STEP OUTCOME MESSAGE writes status/stepSTEP for the summary.
# OUTCOME is success or failure; the message is kept to one line.
record_outcome() {
    mkdir -p "$STATUS_DIR"
    printf '%s\t%s\n' "$2" "$(printf '%s' "$3" | tr '\n\t' '  ')" >"$STATUS_DIR/step$1"
}

# file_size prints the size of a file in bytes.
file_size() {
    wc -c <"$1" | tr -d ' '
}
