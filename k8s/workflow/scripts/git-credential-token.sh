#!/bin/sh
# A git credential helper that answers "get" with the token in the file named
# by GITHUB_TOKEN_FILE. git runs it and reads its output, so the token is never
# on a command line, in the environment, in .git/config or in a log.
# See gitcredentials(7); "store" and "erase" are ignored.
set -eu
[ "${1:-}" = "get" ] || exit 0
token=$(cat "${GITHUB_TOKEN_FILE:?GITHUB_TOKEN_FILE is not set}")
printf 'username=x-access-token\npassword=%s\n' "$token"
