#!/bin/sh
# Step 6: runs the test repository's tests against the rendered HTML, with
# coverage. Dependencies come from Poetry; when Poetry cannot be installed or
# fails, from pip. Writes the JUnit XML, the coverage XML, the HTML report and
# output/pytest_output.log.
#
# Failing tests do not fail this step: the artifacts are still collected, and
# the final summary reports the failure and fails the run. Any other pytest
# error (usage, internal, interrupted) fails the step at once.
#
# Environment: WORKSPACE, VARIANT, PYTEST_MARKER (empty: all tests).
set -eu
SCRIPT_NAME=run-pytest
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

repo=$WORKSPACE/src/test-repo
[ -d "$repo" ] || die "src/test-repo not found: step 5 did not clone it"
cd "$repo"
mkdir -p "$OUTPUT_DIR"
export POETRY_VIRTUALENVS_IN_PROJECT=true POETRY_NO_INTERACTION=1
export POETRY_CACHE_DIR="$WORKSPACE/.home/.cache/pypoetry"
pip_quiet="--quiet --disable-pip-version-check"

installer=pip
if [ -f pyproject.toml ]; then
    # shellcheck disable=SC2086
    if python3 -m pip install --user $pip_quiet poetry && python3 -m poetry --version; then
        if python3 -m poetry install --no-root; then
            installer=poetry
        else
            warn "poetry install failed; falling back to pip"
        fi
    else
        warn "Poetry could not be installed; falling back to pip"
    fi
fi

if [ "$installer" = poetry ]; then
    # shellcheck disable=SC2086
    python3 -m poetry run python -m pip install $pip_quiet pytest pytest-cov pytest-html ||
        die "cannot install pytest, pytest-cov and pytest-html into the Poetry environment"
else
    if [ -f requirements.txt ]; then
        # shellcheck disable=SC2086
        python3 -m pip install --user $pip_quiet -r requirements.txt ||
            die "pip could not install requirements.txt"
    elif [ -f pyproject.toml ] || [ -f setup.py ]; then
        # shellcheck disable=SC2086
        python3 -m pip install --user $pip_quiet . || warn "pip could not install the test project"
    fi
    # shellcheck disable=SC2086
    python3 -m pip install --user $pip_quiet pytest pytest-cov pytest-html ||
        die "pip could not install pytest, pytest-cov and pytest-html"
fi
info "dependencies installed with $installer"

run_pytest() {
    if [ "$installer" = poetry ]; then
        python3 -m poetry run python -m pytest "$@"
    else
        python3 -m pytest "$@"
    fi
}

if [ -n "${PYTEST_MARKER:-}" ]; then
    set -- -m "$PYTEST_MARKER"
else
    set --
fi
log=$OUTPUT_DIR/pytest_output.log
rcfile=$OUTPUT_DIR/.pytest.rc
{
    rc=0
    run_pytest "$@" -v \
        --junitxml="$OUTPUT_DIR/$JUNIT_XML" \
        --cov=. --cov-report=term --cov-report=xml:"$OUTPUT_DIR/$COVERAGE_XML" \
        --html="$OUTPUT_DIR/$PYTEST_HTML" --self-contained-html || rc=$?
    echo "$rc" >"$rcfile"
} 2>&1 | tee "$log"
rc=$(cat "$rcfile")
rm -f "$rcfile"

case "$rc" in
0) record_outcome 6 success "tests passed ($installer)" ;;
1) record_outcome 6 failure "some tests failed; see $PYTEST_HTML"
   warn "some tests failed; the final summary will fail the run" ;;
5) record_outcome 6 failure "no tests collected${PYTEST_MARKER:+ with marker $PYTEST_MARKER}"
   warn "no tests collected; the final summary will fail the run" ;;
*) record_outcome 6 failure "pytest exited with status $rc"
   die "pytest exited with status $rc; see $log" ;;
esac
