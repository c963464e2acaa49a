#!/bin/sh
# Step 1a: prepares the shared workspace, as the workflow's non-root uid. The
# PipelineRun's pod template sets fsGroup, so the volume is group-owned and
# group-writable by every step (all run as uid 1001, group 1000); no step
# needs root, CHOWN or DAC_OVERRIDE, and every pod passes Pod Security
# "restricted" (see docs/deploy.md).
#
# Usage: fix-permissions.sh [--reset]
#   --reset  also removes what an earlier run left (step 1 only)
# Environment: WORKSPACE.
set -eu
SCRIPT_NAME=fix-permissions
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_dirs

if [ "${1:-}" = "--reset" ]; then
    # A PVC bound by name (not a volumeClaimTemplate) keeps earlier runs'
    # files; stale artifacts must not reach this run's summary.
    rm -rf "$OUTPUT_DIR" "$ARTIFACTS_DIR" "$STATUS_DIR" "$WORKSPACE/src" \
        "$WORKSPACE/.home" "$WORKSPACE/.local" "$WORKSPACE/.ipython" ||
        die "cannot clear $WORKSPACE: files of an earlier run belong to another uid"
    info "removed what earlier runs left"
fi
mkdir -p "$OUTPUT_DIR" "$ARTIFACTS_DIR" "$STATUS_DIR" "$WORKSPACE/src" \
    "$WORKSPACE/.home" "$WORKSPACE/.local" "$WORKSPACE/.ipython"
chmod -R u+rwX,g+rwX "$OUTPUT_DIR" "$ARTIFACTS_DIR" "$STATUS_DIR" "$WORKSPACE/src" 2>/dev/null ||
    warn "some files in $WORKSPACE are not ours; later steps may not write them"
[ -w "$WORKSPACE" ] || die "workspace $WORKSPACE is not writable by uid $(id -u); set fsGroup in the pod template"
info "workspace $WORKSPACE ready for uid $(id -u), gid $(id -g)"
