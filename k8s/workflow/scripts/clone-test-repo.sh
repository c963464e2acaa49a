#!/bin/sh
# Step 5: clones the private test repository into src/test-repo with the token
# of the Secret github-token (key token, mounted as a file), then puts the
# rendered HTML into its input/ folder, where the tests read it.
#
# Step 3 ran code from the triggering commit with the workspace writable, so
# nothing in the workspace may steer git here: this script does not take
# HOME, PATH or any git config from it (the Task gives it a fresh HOME on an
# emptyDir; the PATH below is fixed; GIT_CONFIG_GLOBAL=/dev/null and
# GIT_CONFIG_NOSYSTEM=1), runs git from /, and the credential helper answers
# only https for the test repository's host.
#
# Environment: WORKSPACE, VARIANT, TEST_REPO_URL, TEST_REPO_REVISION (empty:
# the default branch), GITHUB_TOKEN_FILE (default /etc/github-token/token).
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
GIT_CONFIG_GLOBAL=/dev/null
GIT_CONFIG_NOSYSTEM=1
GIT_TERMINAL_PROMPT=0
export PATH GIT_CONFIG_GLOBAL GIT_CONFIG_NOSYSTEM GIT_TERMINAL_PROMPT
unset GIT_ASKPASS SSH_ASKPASS GIT_SSH GIT_SSH_COMMAND GIT_PROXY_COMMAND GIT_EXEC_PATH \
    GIT_TEMPLATE_DIR GIT_CONFIG GIT_CONFIG_PARAMETERS GIT_CONFIG_COUNT GIT_DIR GIT_WORK_TREE \
    XDG_CONFIG_HOME PYTHONUSERBASE LD_PRELOAD LD_LIBRARY_PATH 2>/dev/null || true
SCRIPT_NAME=clone-test-repo
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_dirs
variant_init
case "${HOME:-}" in
"" | "$WORKSPACE" | "$WORKSPACE"/*) die "HOME must not be in the workspace (the Task mounts an emptyDir)" ;;
esac

url=${TEST_REPO_URL:?TEST_REPO_URL is not set}
GITHUB_TOKEN_FILE=${GITHUB_TOKEN_FILE:-/etc/github-token/token}
export GITHUB_TOKEN_FILE
case "$url" in
*://*@*) die "TEST_REPO_URL must not carry credentials; the token comes from the Secret github-token" ;;
https://*)
    GITHUB_TOKEN_HOST=${url#https://}
    GITHUB_TOKEN_HOST=${GITHUB_TOKEN_HOST%%/*}
    ;;
*) GITHUB_TOKEN_HOST='' ;; # the helper then hands the token to no host

esac
export GITHUB_TOKEN_HOST
[ -s "$GITHUB_TOKEN_FILE" ] ||
    die "no token at $GITHUB_TOKEN_FILE: the Secret github-token (key token) is missing or empty in this namespace; create it (docs/deploy.md, step 2)"
html=$OUTPUT_DIR/$OUTPUT_HTML
[ -s "$html" ] || die "$OUTPUT_HTML not found in output/: step 4 did not produce it"

dest=$WORKSPACE/src/test-repo
rm -rf "$dest"
mkdir -p "$WORKSPACE/src"
helper="!sh '$(cd "$(dirname "$0")" && pwd)/git-credential-token.sh'"
info "cloning $url"
cd /
# "credential.helper=" first drops any helper from the image's git config.
git -c credential.helper= -c "credential.helper=$helper" clone --quiet "$url" "$dest" ||
    die "git clone of $url failed (is the token in github-token allowed to read it?)"
if [ -n "${TEST_REPO_REVISION:-}" ]; then
    git -C "$dest" checkout --quiet --detach "$TEST_REPO_REVISION" ||
        die "revision $TEST_REPO_REVISION not found in $url"
fi
commit=$(git -C "$dest" rev-parse HEAD)
info "checked out $commit"

rm -rf "$dest/input"
mkdir -p "$dest/input"
cp "$html" "$dest/input/"
info "copied $OUTPUT_HTML into input/"
record_outcome 5 success "cloned $url at $commit; $OUTPUT_HTML in input/"
