#!/bin/sh
# Step 5: clones the private test repository into src/test-repo with the token
# of the Secret github-token (key token, mounted as a file), then puts the
# rendered HTML into its input/ folder, where the tests read it.
#
# Environment: WORKSPACE, VARIANT, TEST_REPO_URL, TEST_REPO_REVISION (empty:
# the default branch), GITHUB_TOKEN_FILE (default /etc/github-token/token).
set -eu
SCRIPT_NAME=clone-test-repo
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
workflow_init
variant_init

url=${TEST_REPO_URL:?TEST_REPO_URL is not set}
GITHUB_TOKEN_FILE=${GITHUB_TOKEN_FILE:-/etc/github-token/token}
export GITHUB_TOKEN_FILE
[ -s "$GITHUB_TOKEN_FILE" ] ||
    die "$GITHUB_TOKEN_FILE is missing or empty: create the Secret github-token with key token"
case "$url" in
*://*@*) die "TEST_REPO_URL must not carry credentials; the token comes from the Secret github-token" ;;
esac
html=$OUTPUT_DIR/$OUTPUT_HTML
[ -s "$html" ] || die "$OUTPUT_HTML not found in output/: step 4 did not produce it"

dest=$WORKSPACE/src/test-repo
rm -rf "$dest"
mkdir -p "$WORKSPACE/src"
export GIT_TERMINAL_PROMPT=0
helper="!sh '$(cd "$(dirname "$0")" && pwd)/git-credential-token.sh'"
info "cloning $url"
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
