#!/bin/sh
# Step 3: runs the analysis notebook with papermill on the GPU. RMM is
# initialised first, in this same container: a second step with its own
# nvidia.com/gpu limit would make the pod ask for two GPUs, and a step without
# one sees none. rmm-init.py fails the step clearly when the pool cannot be
# had, and installs an IPython startup file so the notebook's kernel uses the
# same pool.
#
# With SUBSAMPLE_CELLS and SUBSAMPLE_GENES (the lite variant), a copy of the
# notebook gets a subsampling cell right after the cell that loads the data
# (subsample-notebook.py), and the shape it prints ("lite subsample: ...",
# in papermill.log) goes into the step's outcome and the final summary.
#
# Usage: run-notebook.sh [NAME=VALUE]...   (papermill parameters)
# Environment: WORKSPACE, VARIANT, NOTEBOOK (path inside the analysis
# repository), RMM_POOL_SIZE (e.g. 3GiB), SUBSAMPLE_CELLS and SUBSAMPLE_GENES
# (both empty: no subsampling), KERNEL (default python3).
# Writes output/<output notebook> and output/papermill.log.
set -eu
SCRIPT_NAME=run-notebook
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

notebook=$WORKSPACE/src/analysis/${NOTEBOOK:?NOTEBOOK is not set}
[ -f "$notebook" ] || die "notebook $NOTEBOOK not found in the analysis repository"
out=$OUTPUT_DIR/$OUTPUT_NOTEBOOK
log=$OUTPUT_DIR/papermill.log
mkdir -p "$OUTPUT_DIR"

python3 "$(dirname "$0")/rmm-init.py" --pool-size "${RMM_POOL_SIZE:?RMM_POOL_SIZE is not set}" \
    --ipython-dir "$IPYTHONDIR" || die "RMM initialisation failed (see above)"

# Turn NAME=VALUE arguments into papermill -p NAME VALUE options.
described=
for kv do
    shift
    name=${kv%%=*}
    case "$name" in
    "" | *[!A-Za-z0-9_]* | [0-9]*) die "papermill parameter \"$kv\" is not NAME=VALUE" ;;
    esac
    [ "$name" != "$kv" ] || die "papermill parameter \"$kv\" is not NAME=VALUE"
    set -- "$@" -p "$name" "${kv#*=}"
    described="$described $name=${kv#*=}"
done
input=$notebook
if [ -n "${SUBSAMPLE_CELLS:-}" ] || [ -n "${SUBSAMPLE_GENES:-}" ]; then
    input=$(dirname "$notebook")/.gpu-workflow-$(basename "$notebook")
    python3 "$(dirname "$0")/subsample-notebook.py" "$notebook" "$input" \
        --max-cells "${SUBSAMPLE_CELLS:?SUBSAMPLE_CELLS is not set}" \
        --max-genes "${SUBSAMPLE_GENES:?SUBSAMPLE_GENES is not set}" ||
        die "cannot subsample $NOTEBOOK (see above)"
fi
info "running $NOTEBOOK ($VARIANT)${described:+ with$described}"

# The pipe to tee hides papermill's status in POSIX sh, so it goes to a file.
rcfile=$OUTPUT_DIR/.papermill.rc
{
    rc=0
    python3 -m papermill "$input" "$out" --cwd "$(dirname "$notebook")" \
        --kernel "${KERNEL:-python3}" --log-output --log-level INFO "$@" || rc=$?
    echo "$rc" >"$rcfile"
} 2>&1 | tee "$log"
rc=$(cat "$rcfile")
rm -f "$rcfile"
[ "$rc" -eq 0 ] || die "papermill exited with status $rc; see $log"
[ -s "$out" ] || die "papermill wrote no notebook at $out"
info "wrote $OUTPUT_NOTEBOOK ($(file_size "$out") bytes) and papermill.log"
shape=
if [ "$input" != "$notebook" ]; then
    rm -f "$input"
    shape=$(grep -h 'lite subsample: ' "$log" | tail -n 1 | sed 's/.*lite subsample: //' || true)
    [ -n "$shape" ] || die "the subsampling cell printed no shape to $log"
    info "data subsampled: $shape"
fi
record_outcome 3 success "executed $NOTEBOOK (RMM pool $RMM_POOL_SIZE)${shape:+; subsampled: $shape}${described:+;$described}"
