#!/bin/sh
# Step 4: converts the executed notebook to HTML with nbconvert, logging to
# output/jupyter_nbconvert.log.
#
# Environment: WORKSPACE, VARIANT.
set -eu
SCRIPT_NAME=nbconvert
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

in=$OUTPUT_DIR/$OUTPUT_NOTEBOOK
log=$OUTPUT_DIR/jupyter_nbconvert.log
[ -s "$in" ] || die "$OUTPUT_NOTEBOOK not found in output/: step 3 did not produce it"
info "converting $OUTPUT_NOTEBOOK to $OUTPUT_HTML"
if ! python3 -m jupyter nbconvert --to html "$in" --output "${OUTPUT_HTML%.html}" \
    --output-dir "$OUTPUT_DIR" >"$log" 2>&1; then
    cat "$log" >&2
    die "nbconvert failed; see $log"
fi
cat "$log"
[ -s "$OUTPUT_DIR/$OUTPUT_HTML" ] || die "nbconvert wrote no $OUTPUT_HTML"
info "wrote $OUTPUT_HTML ($(file_size "$OUTPUT_DIR/$OUTPUT_HTML") bytes)"
record_outcome 4 success "converted $OUTPUT_NOTEBOOK to $OUTPUT_HTML"
