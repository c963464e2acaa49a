#!/bin/sh
# Step 1b: checks that the step sees a GPU. It runs with a nvidia.com/gpu
# limit of 1, so nvidia-smi shows exactly the device the run was given.
#
# Environment: WORKSPACE.
set -eu
SCRIPT_NAME=check-gpu
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init

command -v nvidia-smi >/dev/null 2>&1 ||
    die "nvidia-smi not found: the pod must run with the NVIDIA container runtime and a nvidia.com/gpu limit"
nvidia-smi || die "nvidia-smi failed: no usable GPU in this pod"
gpus=$(nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv,noheader) ||
    die "nvidia-smi could not query the GPU"
[ -n "$gpus" ] || die "nvidia-smi lists no GPU"
info "GPU: $gpus"
record_outcome 1 success "environment ready; GPU: $(printf '%s' "$gpus" | head -n 1)"
