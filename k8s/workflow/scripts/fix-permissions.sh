#!/bin/sh
# Gives the shared workspace to the uid and gid the workflow's other steps run
# as. A fresh PersistentVolume is usually owned by root, and the git steps may
# leave files a different image user cannot write, so this runs as root with
# only CHOWN, FOWNER and DAC_OVERRIDE (see docs/deploy.md on Pod Security).
#
# Usage: fix-permissions.sh [--reset]
#   --reset  also removes what an earlier run left (step 1 only)
# Environment: WORKSPACE, WORKSPACE_UID, WORKSPACE_GID.
set -eu
SCRIPT_NAME=fix-permissions
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

[ -n "${WORKSPACE:-}" ] || die "WORKSPACE is not set"
[ -d "$WORKSPACE" ] || die "workspace $WORKSPACE does not exist"
uid=${WORKSPACE_UID:?WORKSPACE_UID is not set}
gid=${WORKSPACE_GID:?WORKSPACE_GID is not set}

if [ "${1:-}" = "--reset" ]; then
    # A PVC bound by name (not a volumeClaimTemplate) keeps earlier runs'
    # files; stale artifacts must not reach this run's summary.
    rm -rf "$WORKSPACE/output" "$WORKSPACE/artifacts" "$WORKSPACE/status" "$WORKSPACE/src"
    info "removed output/, artifacts/, status/ and src/ from earlier runs"
fi
mkdir -p "$WORKSPACE/output" "$WORKSPACE/artifacts" "$WORKSPACE/status" "$WORKSPACE/src" \
    "$WORKSPACE/.home" "$WORKSPACE/.local" "$WORKSPACE/.ipython"
chown -R "$uid:$gid" "$WORKSPACE"
chmod -R u+rwX,g+rwX "$WORKSPACE"
info "workspace $WORKSPACE is owned by $uid:$gid"
