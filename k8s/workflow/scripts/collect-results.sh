#!/bin/sh
# Step 7: gathers the variant's eight artifacts from output/ into a clean
# artifacts/ folder and checks that each one exists and is not empty. Every
# missing or empty artifact is named before the step fails.
#
# Environment: WORKSPACE, VARIANT.
# Runs without a GPU or network: tests/k8s/test_k8s.sh runs it on a temporary
# workspace.
set -eu
SCRIPT_NAME=collect-results
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

[ -d "$OUTPUT_DIR" ] || die "$OUTPUT_DIR does not exist: no earlier step produced output"
rm -rf "$ARTIFACTS_DIR"
mkdir -p "$ARTIFACTS_DIR"

total=0
count=0
bad=
for name in $(artifact_names); do
    total=$((total + 1))
    src=$OUTPUT_DIR/$name
    if [ ! -f "$src" ]; then
        printf '%s: error: missing artifact: %s (expected at %s)\n' "$SCRIPT_NAME" "$name" "$src" >&2
        bad="$bad $name"
        count=$((count + 1))
    elif [ ! -s "$src" ]; then
        printf '%s: error: empty artifact: %s (%s is 0 bytes)\n' "$SCRIPT_NAME" "$name" "$src" >&2
        bad="$bad $name"
        count=$((count + 1))
    else
        cp "$src" "$ARTIFACTS_DIR/$name"
        info "collected $name ($(file_size "$src") bytes)"
    fi
done

if [ -n "$bad" ]; then
    record_outcome 7 failure "$count of $total artifacts missing or empty:$bad"
    die "$count of $total artifacts missing or empty:$bad"
fi
record_outcome 7 success "collected $total artifacts into artifacts/"
info "collected $total artifacts into $ARTIFACTS_DIR"
