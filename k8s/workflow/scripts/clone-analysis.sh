#!/bin/sh
# Step 2: clones the analysis repository into src/analysis and checks that it
# has a notebooks/ folder. When the run was triggered by the analysis
# repository itself, the triggering revision is checked out; otherwise
# ANALYSIS_REVISION (empty: the default branch).
#
# Environment: WORKSPACE, ANALYSIS_REPO_URL, ANALYSIS_REVISION, GIT_REPO_URL,
# GIT_REVISION, RESULT_COMMIT (optional: file that receives the commit SHA).
set -eu
SCRIPT_NAME=clone-analysis
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init

# repo_key prints a URL reduced to host/owner/name, lower case, so that
# https://github.com/O/R.git, git@github.com:O/R and https://github.com/o/r/
# compare equal.
repo_key() {
    printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | sed -e 's#^[a-z+]*://##' -e 's#^[^@/]*@##' \
        -e 's#:#/#' -e 's#/*$##' -e 's#\.git$##'
}

url=${ANALYSIS_REPO_URL:?ANALYSIS_REPO_URL is not set}
rev=${ANALYSIS_REVISION:-}
if [ -n "${GIT_REPO_URL:-}" ] && [ -n "${GIT_REVISION:-}" ] &&
    [ "$(repo_key "$GIT_REPO_URL")" = "$(repo_key "$url")" ]; then
    rev=$GIT_REVISION
    info "triggered by the analysis repository: checking out $rev"
fi

dest=$WORKSPACE/src/analysis
rm -rf "$dest"
mkdir -p "$WORKSPACE/src"
export GIT_TERMINAL_PROMPT=0
info "cloning $url"
git clone --quiet "$url" "$dest" || die "git clone of $url failed"
if [ -n "$rev" ]; then
    # A pull request's head commit is on no branch: fetch it by name.
    if ! git -C "$dest" checkout --quiet --detach "$rev" 2>/dev/null; then
        git -C "$dest" fetch --quiet origin "$rev" || die "revision $rev not found in $url"
        git -C "$dest" checkout --quiet --detach FETCH_HEAD || die "cannot check out $rev"
    fi
fi
commit=$(git -C "$dest" rev-parse HEAD)
info "checked out $commit"

[ -d "$dest/notebooks" ] || die "$url has no notebooks/ folder at $commit"
info "notebooks:"
ls -1 "$dest/notebooks"

# The final summary (a finally task) reads the commit from here: a finally
# task that used the result would be skipped when step 2 failed.
mkdir -p "$STATUS_DIR"
printf '%s\n' "$commit" >"$STATUS_DIR/analysis-commit"
if [ -n "${RESULT_COMMIT:-}" ]; then
    printf '%s' "$commit" >"$RESULT_COMMIT"
fi
record_outcome 2 success "cloned $url at $commit"
