#!/bin/sh
# A git credential helper that answers "get" with the token in the file named
# by GITHUB_TOKEN_FILE, and only for protocol=https and the host named by
# GITHUB_TOKEN_HOST (default github.com). git runs it and reads its output, so
# the token is never on a command line, in the environment, in .git/config or
# in a log; a redirect or an insteadOf rewrite to another host or to plain
# http gets nothing. See gitcredentials(7); "store" and "erase" are ignored.
set -eu
[ "${1:-}" = "get" ] || exit 0
# Unset: github.com; set but empty (a test repository not on https): no host.
want_host=${GITHUB_TOKEN_HOST-github.com}
protocol=''
host=''
while IFS= read -r line && [ -n "$line" ]; do
    case "$line" in
    protocol=*) protocol=${line#protocol=} ;;
    host=*) host=${line#host=} ;;
    esac
done
if [ -z "$want_host" ] || [ "$protocol" != https ] || [ "$host" != "$want_host" ]; then
    printf 'git-credential-token: no token for %s://%s (only https://%s)\n' \
        "$protocol" "$host" "$want_host" >&2
    exit 0
fi
token=$(cat "${GITHUB_TOKEN_FILE:?GITHUB_TOKEN_FILE is not set}")
printf 'username=x-access-token\npassword=%s\n' "$token"
