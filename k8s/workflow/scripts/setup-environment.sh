#!/bin/sh
# Step 1a: sets up the Python environment every later step uses. Packages go
# to the user site inside the workspace (PYTHONUSERBASE), so steps in other
# pods of the same run find them.
#
# Environment: WORKSPACE, VARIANT, PIP_PACKAGES (space-separated).
set -eu
SCRIPT_NAME=setup-environment
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

info "variant $VARIANT, workspace $WORKSPACE"
info "python: $(python3 --version 2>&1)"
mkdir -p "$OUTPUT_DIR" "$ARTIFACTS_DIR" "$STATUS_DIR" "$HOME" "$PYTHONUSERBASE" "$IPYTHONDIR"

if [ -n "${PIP_PACKAGES:-}" ]; then
    info "installing into $PYTHONUSERBASE: $PIP_PACKAGES"
    # PIP_PACKAGES is a list of requirement specifiers; splitting it is the point.
    # shellcheck disable=SC2086
    python3 -m pip install --user --quiet --disable-pip-version-check $PIP_PACKAGES ||
        die "pip could not install: $PIP_PACKAGES"
fi
python3 -m papermill --version >/dev/null 2>&1 ||
    die "papermill is not importable; add it to the pip-packages param"
info "papermill $(python3 -m papermill --version 2>&1 | head -n 1)"
