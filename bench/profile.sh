#!/usr/bin/env bash
# Counts the instructions one request costs, with valgrind's callgrind, which
# counts repeatably on a noisy machine (unlike req/s). Use it before and after
# an optimisation.
#
#   bench/profile.sh [BUILD_DIR] [SCENARIO...]
#
# SCENARIO: dry-run (default), rejections, end-to-end, floor. Each runs the
# server under callgrind, loads it for PROFILE_SECONDS (10) with wrk (1 thread,
# 4 connections), then prints instructions per request (start-up included, a
# few million, spread over the requests) and the top functions by inclusive
# cost. The callgrind files stay in PROFILE_OUT (bench/out/profile/) for
# callgrind_annotate or kcachegrind.
#
# Caveats: callgrind counts instructions, not time. Under valgrind OpenSSL
# takes its generic SHA-256 path, so HMAC looks costlier than on hardware with
# SHA extensions; a `rep stosb` memset counts one instruction per byte. Use
# `perf record -g -p PID` during bench/run.sh for where the time goes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$ROOT/build
if [[ $# -ge 1 && -d $1 ]]; then
    BUILD_DIR=$(cd "$1" && pwd)
    shift
fi
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(dry-run)
SECONDS_LOAD=${PROFILE_SECONDS:-10}
OUT=${PROFILE_OUT:-$ROOT/bench/out/profile}
GPUHOOK=$BUILD_DIR/gpuhook
FIXTURE=$ROOT/tests/fixtures/github/push_with-new-branch.json

die() {
    echo "profile: $*" >&2
    exit 1
}
command -v valgrind >/dev/null 2>&1 || die "valgrind is missing: apt-get install valgrind"
command -v wrk >/dev/null 2>&1 || die "wrk is missing: apt-get install wrk"
[[ -x $GPUHOOK ]] || die "$GPUHOOK is missing: build first"

mkdir -p "$OUT"
TOOLS=$OUT/tools
mkdir -p "$TOOLS"
for tool in floor fakeapi benchtool; do
    if [[ ! -x $TOOLS/$tool || $ROOT/bench/$tool.c -nt $TOOLS/$tool ]]; then
        # shellcheck disable=SC2046 # pkg-config output is a word list.
        cc -std=c11 -O2 -g -o "$TOOLS/$tool" "$ROOT/bench/$tool.c" \
            $(pkg-config --cflags --libs libmicrohttpd libcrypto libcjson) -lpthread
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpuhook-profile.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

umask 077
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$WORK/secret"
printf 'token' >"$WORK/token"
mkdir -p "$WORK/spool"
SIGNATURE=$("$TOOLS/benchtool" sign "$WORK/secret" "$FIXTURE")

# gpu_fit is downgrade, not the default queue: see bench/run.sh's write_config.
config() {
    cat >"$1" <<EOF
{
  "listen": "127.0.0.1:$2",
  "log_level": "error",
  "shutdown_grace_seconds": 2,
  "github": { "secret_files": ["$WORK/secret"], "events": ["push", "pull_request", "ping"] },
  "trigger": { "token_file": "$WORK/token" },
  "kubernetes": $3,
  "template": "$ROOT/k8s/triggers/trigger-template.yaml",
  "bindings": "$ROOT/k8s/triggers/trigger-binding.yaml",
  "selection": { "default": "lite", "rules": [
      { "name": "skip-marker", "when": { "message_contains": "[skip gpu]" }, "variant": "skip" },
      { "name": "main-original", "when": { "event": "push", "branch": "main" }, "variant": "original" } ],
    "gpu_fit": { "on_insufficient": "downgrade" } },
  "spool_dir": "$WORK/spool"
}
EOF
}

for scenario in "${SCENARIOS[@]}"; do
    port=$("$TOOLS/benchtool" freeport)
    mode=push
    api=
    case $scenario in
    dry-run | rejections)
        config "$WORK/c.json" "$port" '{ "mode": "dry-run" }'
        cmd=("$GPUHOOK" --config "$WORK/c.json")
        [[ $scenario == rejections ]] && mode=bad
        ;;
    end-to-end)
        "$TOOLS/fakeapi" 0 >"$WORK/api.out" &
        api=$!
        PIDS+=("$api")
        sleep 0.3
        config "$WORK/c.json" "$port" \
            "{ \"mode\": \"url\", \"url\": \"http://127.0.0.1:$(awk '/^port/ {print $2}' "$WORK/api.out")\" }"
        cmd=("$GPUHOOK" --config "$WORK/c.json")
        ;;
    floor)
        cmd=("$TOOLS/floor" "$port" "$WORK/secret" tpc)
        ;;
    *) die "unknown scenario $scenario" ;;
    esac
    file=$OUT/callgrind.$scenario
    valgrind --tool=callgrind --callgrind-out-file="$file" "${cmd[@]}" 2>"$WORK/vg.err" >/dev/null &
    vg=$!
    PIDS+=("$vg")
    for _ in $(seq 1 200); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" && break
        sleep 0.1
    done
    url=http://127.0.0.1:$port/webhook
    requests=$(wrk -t1 -c4 -d"${SECONDS_LOAD}s" -s "$ROOT/bench/push.lua" "$url" -- "$mode" \
        "$FIXTURE" "$SIGNATURE" "profile-$RANDOM" | awk '/requests in/ {print $1}')
    kill -TERM "$vg"
    wait "$vg" 2>/dev/null || true
    if [[ -n $api ]]; then
        kill -TERM "$api"
        wait "$api" 2>/dev/null || true
    fi
    callgrind_annotate --inclusive=yes "$file" >"$WORK/annotate" 2>/dev/null
    total=$(awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}' "$WORK/annotate")
    echo "== $scenario: $requests requests, $total instructions, $(awk -v t="$total" -v r="$requests" \
        'BEGIN {printf "%.0f", t / r}') per request ($file)"
    # The first table only (inclusive costs); the source annotations follow it.
    awk -v r="$requests" '/file:function/ {table = 1; next} table && /^--/ {next}
        table && /^$/ && shown {table = 0}
        table && shown < 30 && /^ *[0-9,]+ \([ 0-9.]+%\)  [^<=>]*:[A-Za-z_]/ {
            n = $1; gsub(",", "", n); if (n / r < 2000) next
            fn = $0; sub(/^ *[0-9,]+ \([ 0-9.]+%\)  /, "", fn); sub(/ \[.*/, "", fn)
            if (fn ~ /^\?\?\?:0x/ || fn ~ /start_thread|clone/) next
            name = fn; sub(/.*:/, "", name); if (seen[name]++) next
            printf "%10.0f  %s\n", n / r, fn
            shown++ }' "$WORK/annotate"
    echo
done
