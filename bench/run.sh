#!/usr/bin/env bash
# gpuhook's benchmark suite (issue 8): every scenario in one run, side by side
# with the stack's floor (bench/floor.c) and a peer (adnanh/webhook).
#
#   bench/run.sh [BUILD_DIR]      (make bench runs bench/run.sh build)
#
# BUILD_DIR holds the gpuhook binary; the bench tools are built into
# BUILD_DIR/bench/ (bench/out/ without an argument, with gpuhook taken from
# build/). Results go to bench/results/<date>-<commit>.md and to stdout.
#
# Settings (environment):
#   BENCH_DURATION     seconds of load per scenario and round (5)
#   BENCH_ROUNDS       rounds; every figure is the median over them (3)
#   BENCH_CONNECTIONS  wrk connections (32)
#   BENCH_THREADS      wrk threads (2)
#   BENCH_WARMUP       seconds of unmeasured load after each start (1)
#   BENCH_BIG_REQUESTS requests per big payload and server (5)
#   BENCH_STARTUPS     start-ups timed (7)
#   BENCH_ONLY         space-separated scenario ids to run (all), e.g. "floor-tpc dry-run big"
#   BENCH_FLOOR        auto (the floor mode with the higher median req/s), tpc or pool
#
# wrk, the server under test and (end to end) the stand-in API share the
# machine's cores, so absolute numbers depend on the machine and on whatever
# else runs; compare ratios measured in the same run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-1}
BIG_REQUESTS=${BENCH_BIG_REQUESTS:-5}
STARTUPS=${BENCH_STARTUPS:-7}
ONLY=${BENCH_ONLY:-}
FLOOR_MODE=${BENCH_FLOOR:-auto}
FIXTURE=$ROOT/tests/fixtures/github/push_with-new-branch.json

if [[ $# -ge 1 && -n $1 ]]; then
    BUILD_DIR=$(cd "$1" && pwd)
    OUT=$BUILD_DIR/bench
else
    BUILD_DIR=$ROOT/build
    OUT=$ROOT/bench/out
fi
GPUHOOK=$BUILD_DIR/gpuhook

die() {
    echo "bench: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- tools
need_packages=()
command -v wrk >/dev/null 2>&1 || need_packages+=(wrk)
command -v webhook >/dev/null 2>&1 || need_packages+=(webhook)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
command -v pkg-config >/dev/null 2>&1 || need_packages+=(pkg-config)
if [[ ${#need_packages[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "bench: installing ${need_packages[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${need_packages[@]}" >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y \
                --no-install-recommends "${need_packages[@]}" >&2; } ||
            die "cannot install ${need_packages[*]}"
    else
        die "missing ${need_packages[*]}: run sudo apt-get install ${need_packages[*]}"
    fi
fi
[[ -x $GPUHOOK ]] || die "$GPUHOOK is missing: build first (make build, or cmake --build $BUILD_DIR)"
[[ -r $FIXTURE ]] || die "$FIXTURE is missing"

mkdir -p "$OUT"
CFLAGS_BENCH="-std=c11 -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes"
for tool in floor fakeapi benchtool; do
    if [[ ! -x $OUT/$tool || $ROOT/bench/$tool.c -nt $OUT/$tool ]]; then
        # shellcheck disable=SC2046,SC2086 # pkg-config output and flags are word lists.
        cc $CFLAGS_BENCH -o "$OUT/$tool" "$ROOT/bench/$tool.c" \
            $(pkg-config --cflags --libs libmicrohttpd libcrypto libcjson) -lpthread ||
            die "cannot build bench/$tool.c (needs libmicrohttpd-dev, libssl-dev, libcjson-dev)"
    fi
done
BENCHTOOL=$OUT/benchtool

# ---------------------------------------------------------------- set-up
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpuhook-bench.XXXXXX")
SERVER_PID=
API_PID=

stop_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        [[ $i -eq 50 ]] && kill -KILL "$pid" 2>/dev/null
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$SERVER_PID"
    stop_pid "$API_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

umask 077
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$WORK/secret"
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$WORK/token"
SECRET=$(cat "$WORK/secret")
mkdir -p "$WORK/spool"
SIGNATURE=$("$BENCHTOOL" sign "$WORK/secret" "$FIXTURE")

# gpuhook's config: the shipped selection rules, dry-run or the stand-in API. gpu_fit is
# downgrade, not the default queue: bench/fakeapi.c has no watch, so the admission queue would
# hold every run it created for 30 s and the figures would measure that (see
# bench/results/2026-12-02-admission-queue.md).
# $1 file, $2 port, $3 log level, $4 kubernetes object.
write_config() {
    cat >"$1" <<EOF
{
  "listen": "127.0.0.1:$2",
  "log_level": "$3",
  "max_body_bytes": 26214400,
  "shutdown_grace_seconds": 2,
  "github": { "secret_files": ["$WORK/secret"], "events": ["push", "pull_request", "ping"] },
  "trigger": { "token_file": "$WORK/token" },
  "kubernetes": $4,
  "template": "$ROOT/k8s/triggers/trigger-template.yaml",
  "bindings": "$ROOT/k8s/triggers/trigger-binding.yaml",
  "selection": {
    "default": "lite",
    "rules": [
      { "name": "skip-marker", "when": { "message_contains": "[skip gpu]" }, "variant": "skip" },
      { "name": "lite-marker", "when": { "message_contains": "[gpu:lite]" }, "variant": "lite" },
      { "name": "original-marker", "when": { "message_contains": "[gpu:original]" }, "variant": "original" },
      { "name": "original-label", "when": { "event": "pull_request", "label": "gpu:original" }, "variant": "original" },
      { "name": "main-original", "when": { "event": "push", "branch": "main" }, "variant": "original" }
    ],
    "gpu_fit": { "on_insufficient": "downgrade" }
  },
  "spool_dir": "$WORK/spool",
  "gpu": { "refresh_seconds": 5, "required": false }
}
EOF
}

# adnanh/webhook: the same HMAC and a ref match. "execute-command" is empty in
# the peer proper (webhook then runs nothing, as the issue asks); the
# peer-true variant runs /bin/true for every delivery.
write_hooks() {
    cat >"$1" <<EOF
[
  {
    "id": "bench",
    "execute-command": "$2",
    "response-message": "accepted",
    "trigger-rule": {
      "and": [
        { "match": { "type": "payload-hmac-sha256", "secret": "$SECRET",
                     "parameter": { "source": "header", "name": "X-Hub-Signature-256" } } },
        { "match": { "type": "value", "value": "refs/heads/master",
                     "parameter": { "source": "payload", "name": "ref" } } }
      ]
    }
  }
]
EOF
}
write_hooks "$WORK/hooks.json" ""
write_hooks "$WORK/hooks-true.json" /bin/true

free_port() {
    "$BENCHTOOL" freeport
}

# Waits until something answers HTTP on $1 (any status).
wait_http() {
    local url=$1 i
    for i in $(seq 1 200); do
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        [[ -n $SERVER_PID ]] && ! kill -0 "$SERVER_PID" 2>/dev/null && return 1
        [[ $i -lt 200 ]] && sleep 0.025
    done
    return 1
}

# Starts the stand-in API and sets API_PORT.
start_api() {
    "$OUT/fakeapi" 0 >"$WORK/fakeapi.out" 2>"$WORK/fakeapi.err" &
    API_PID=$!
    local i
    API_PORT=
    for i in $(seq 1 500); do
        API_PORT=$(awk '/^port/ {print $2; exit}' "$WORK/fakeapi.out" 2>/dev/null)
        [[ -n $API_PORT ]] && break
        kill -0 "$API_PID" 2>/dev/null || break
        sleep 0.02
    done
    [[ -n $API_PORT ]] || die "fakeapi did not start: $(cat "$WORK/fakeapi.err")"
}

stop_api() {
    stop_pid "$API_PID"
    API_PID=
    API_SUMMARY=$(awk '/^created/ {print}' "$WORK/fakeapi.out")
}

# Starts the server of scenario $1 and sets SERVER_PID and URL.
start_server() {
    local kind=$1 port
    port=$(free_port)
    local log=$WORK/$kind.err
    case $kind in
    floor-tpc | floor-pool)
        "$OUT/floor" "$port" "$WORK/secret" "${kind#floor-}" >/dev/null 2>"$log" &
        URL=http://127.0.0.1:$port/webhook
        ;;
    peer | peer-true)
        local hooks=$WORK/hooks.json
        [[ $kind == peer-true ]] && hooks=$WORK/hooks-true.json
        webhook -hooks "$hooks" -ip 127.0.0.1 -port "$port" >"$log" 2>&1 &
        URL=http://127.0.0.1:$port/hooks/bench
        ;;
    dry-run | rejections | healthz | gpu)
        write_config "$WORK/$kind.json" "$port" error '{ "mode": "dry-run", "namespace": "tekton-pipelines" }'
        "$GPUHOOK" --config "$WORK/$kind.json" 2>"$log" &
        URL=http://127.0.0.1:$port/webhook
        [[ $kind == healthz || $kind == gpu ]] && URL=http://127.0.0.1:$port/$kind
        ;;
    dry-run-info)
        # The access log at info, written to /dev/null: every write(2) is paid, no disk.
        write_config "$WORK/$kind.json" "$port" info '{ "mode": "dry-run", "namespace": "tekton-pipelines" }'
        "$GPUHOOK" --config "$WORK/$kind.json" 2>/dev/null &
        URL=http://127.0.0.1:$port/webhook
        ;;
    end-to-end)
        start_api
        write_config "$WORK/$kind.json" "$port" error \
            "{ \"mode\": \"url\", \"url\": \"http://127.0.0.1:$API_PORT\", \"namespace\": \"tekton-pipelines\" }"
        "$GPUHOOK" --config "$WORK/$kind.json" 2>"$log" &
        URL=http://127.0.0.1:$port/webhook
        ;;
    *) die "unknown server $kind" ;;
    esac
    SERVER_PID=$!
    wait_http "http://127.0.0.1:$port/healthz" || die "$kind did not start: $(tail -5 "$log" 2>/dev/null)"
}

stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=
    [[ -n $API_PID ]] && stop_api
    return 0
}

# CPU time (user + system) the process has used, in clock ticks.
CLK_TCK=$(getconf CLK_TCK)
proc_ticks() {
    awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0
}

proc_kib() {
    awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# wrk's latency figure in ms ("272.00us", "1.16ms", "2.01s").
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# One measured load: $1 scenario, $2 round, $3 wrk mode, then the script's args.
RESULTS=$WORK/results.tsv
load() {
    local scenario=$1 round=$2 mode=$3
    local nonce=$scenario-r$round-$RANDOM
    local -a args=()
    [[ $mode != get ]] && args=("$FIXTURE" "$SIGNATURE")
    if [[ $WARMUP != 0 ]]; then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$ROOT/bench/push.lua" "$URL" \
            -- "$mode" "${args[@]}" "$nonce-warm" >/dev/null
    fi
    local ticks0 api0=0 ticks1 api1=0
    ticks0=$(proc_ticks "$SERVER_PID")
    [[ -n $API_PID ]] && api0=$(proc_ticks "$API_PID")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$ROOT/bench/push.lua" \
        "$URL" -- "$mode" "${args[@]}" "$nonce" >"$WORK/wrk.out" 2>&1 || true
    ticks1=$(proc_ticks "$SERVER_PID")
    [[ -n $API_PID ]] && api1=$(proc_ticks "$API_PID")
    local rps p50 p99 non2xx errors total rss cpu api_cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")")
    total=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.out")
    errors=$(awk -F'[ ,]+' '/Socket errors/ {print $5 + $7 + $9 + $11}' "$WORK/wrk.out")
    rss=$(proc_kib "$SERVER_PID" VmRSS)
    [[ -n $rps ]] || die "wrk gave no result for $scenario: $(cat "$WORK/wrk.out")"
    # Server CPU per request: a figure that other load on the machine disturbs less than req/s.
    cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v n="${total:-0}" \
        'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
    api_cpu=$(awk -v t=$((api1 - api0)) -v hz="$CLK_TCK" -v n="${total:-0}" \
        'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$round" "$rps" "$p50" \
        "$p99" "$rss" "$cpu" "${total:-0}" "${non2xx:-0}" "${errors:-0}" "$api_cpu" >>"$RESULTS"
    printf 'bench: %-13s round %s: %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  RSS %6d KiB  CPU %5.1f us/req%s\n' \
        "$scenario" "$round" "$rps" "$p50" "$p99" "$rss" "$cpu" \
        "$([[ -n $non2xx ]] && echo "  non-2xx $non2xx/$total")" >&2
}

# The status a scenario answers, checked once before it is loaded.
probe_status() {
    local mode=$1 sig=$SIGNATURE
    [[ $mode == bad ]] && sig=${SIGNATURE%?}$([[ ${SIGNATURE: -1} == 0 ]] && echo 1 || echo 0)
    if [[ $mode == get ]]; then
        curl -s -o /dev/null -w '%{http_code}' "$URL"
    else
        curl -s -o /dev/null -w '%{http_code}' -X POST "$URL" -H 'X-GitHub-Event: push' \
            -H "X-GitHub-Delivery: probe-$RANDOM$RANDOM" -H 'X-GitHub-Hook-ID: 123456789' \
            -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$sig" \
            --data-binary "@$FIXTURE"
    fi
}

selected() {
    [[ -z $ONLY || " $ONLY " == *" $1 "* ]]
}

# scenario id, wrk mode
SCENARIOS=(
    "floor-tpc push"
    "floor-pool push"
    "peer push"
    "peer-true push"
    "dry-run push"
    "dry-run-info push"
    "end-to-end push"
    "rejections bad"
    "healthz get"
    "gpu get"
)
declare -A STATUS=()
declare -A API_NOTE=()

echo "bench: $ROUNDS rounds x ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads" >&2
for round in $(seq 1 "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        read -r scenario mode <<<"$entry"
        selected "$scenario" || continue
        start_server "$scenario"
        [[ $round -eq 1 ]] && STATUS[$scenario]=$(probe_status "$mode")
        load "$scenario" "$round" "$mode"
        stop_server
        if [[ $scenario == end-to-end ]]; then
            API_NOTE[$round]=$API_SUMMARY
        fi
    done
done

# ---------------------------------------------------------------- report
# median COLUMN SCENARIO (columns: 3 req/s, 4 p50, 5 p99, 6 RSS, 7 CPU us/req, 11 API CPU)
median() {
    awk -F'\t' -v c="$1" -v s="$2" '$1 == s {print $c}' "$RESULTS" | sort -g |
        awk '{a[NR] = $1} END { if (NR == 0) print ""; else
            print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}

declare -A RPS=() P50=() P99=() RSS=() CPU=()
RPS[floor-tpc]=""
RPS[floor-pool]=
for entry in "${SCENARIOS[@]}"; do
    read -r scenario _ <<<"$entry"
    RPS[$scenario]=$(median 3 "$scenario")
    P50[$scenario]=$(median 4 "$scenario")
    P99[$scenario]=$(median 5 "$scenario")
    RSS[$scenario]=$(median 6 "$scenario")
    CPU[$scenario]=$(median 7 "$scenario")
done

# The floor is the faster of its two threading modes (by median req/s) unless BENCH_FLOOR says.
FLOOR=floor-pool
if [[ $FLOOR_MODE == tpc ]] || { [[ $FLOOR_MODE == auto && -n ${RPS[floor-tpc]} ]] &&
    awk -v a="${RPS[floor-tpc]}" -v b="${RPS[floor-pool]:-0}" 'BEGIN {exit !(a > b)}'; }; then
    FLOOR=floor-tpc
fi

# ---------------------------------------------------------------- big payloads
BIG=$WORK/big.tsv
: >"$BIG"
big_payloads() {
    local bytes file sig kind code t i
    for bytes in 1000000 25000000; do
        file=$WORK/push-$bytes.json
        "$BENCHTOOL" payload "$FIXTURE" "$bytes" "$file" || die "cannot build a $bytes-byte payload"
        sig=$("$BENCHTOOL" sign "$WORK/secret" "$file")
        for kind in "$FLOOR" dry-run peer; do
            start_server "$kind"
            local times=()
            for i in $(seq 1 "$BIG_REQUESTS"); do
                read -r code t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
                    -X POST "$URL" -H 'X-GitHub-Event: push' \
                    -H "X-GitHub-Delivery: big-$bytes-$i-$RANDOM" -H 'X-GitHub-Hook-ID: 1' \
                    -H 'Content-Type: application/json' -H 'Expect:' \
                    -H "X-Hub-Signature-256: sha256=$sig" --data-binary "@$file")
                times+=("$t")
            done
            local med hwm rss
            med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR] = $1} END {
                printf "%.1f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) * 1000 }')
            hwm=$(proc_kib "$SERVER_PID" VmHWM)
            rss=$(proc_kib "$SERVER_PID" VmRSS)
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$bytes" "$code" "$med" "$hwm" "$rss" >>"$BIG"
            printf 'bench: %-10s %9d bytes: HTTP %s, median %s ms, peak RSS %d KiB\n' \
                "$kind" "$bytes" "$code" "$med" "$hwm" >&2
            stop_server
        done
    done
}
selected big && big_payloads

# ---------------------------------------------------------------- start-up
STARTUP_MS=
if selected startup; then
    port=$(free_port)
    write_config "$WORK/startup.json" "$port" error '{ "mode": "dry-run", "namespace": "tekton-pipelines" }'
    "$BENCHTOOL" startup "$port" "$STARTUPS" "$GPUHOOK" --config "$WORK/startup.json" \
        >"$WORK/startup.out" 2>"$WORK/startup.err" || die "start-up: $(cat "$WORK/startup.err")"
    STARTUP_MS=$(awk '/^median/ {print $2}' "$WORK/startup.out")
    STARTUP_RUNS=$(awk '/^run/ {printf "%s%s", sep, $3; sep = ", "}' "$WORK/startup.out")
    echo "bench: start-up to ready: median $STARTUP_MS ms ($STARTUP_RUNS)" >&2
fi

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-";
        else printf "%.2f", a / b }'
}
# meets VALUE ge|le LIMIT: the verdict on one target.
meets() {
    awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
        ok = (op == "ge") ? (a + 0 >= b + 0) : (a + 0 <= b + 0)
        print (a == "" ? "not measured" : ok ? "**met**" : "**not met**") }'
}

DATE=$(date -u +%Y-%m-%d)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=
if [[ $COMMIT != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null; then
    DIRTY=" (with uncommitted changes)"
fi
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
REPORT=$ROOT/bench/results/$DATE-$COMMIT.md
mkdir -p "$ROOT/bench/results"

describe() {
    case $1 in
    floor-tpc) echo "floor, thread per connection" ;;
    floor-pool) echo "floor, epoll thread pool ($(nproc) threads, gpuhook's mode)" ;;
    peer) echo "peer: adnanh/webhook, no command" ;;
    peer-true) echo "peer: adnanh/webhook running /bin/true" ;;
    dry-run) echo "gpuhook dry-run (log_level error)" ;;
    dry-run-info) echo "gpuhook dry-run, access log at info to /dev/null" ;;
    end-to-end) echo "gpuhook end to end (stand-in API)" ;;
    rejections) echo "gpuhook, bad signatures" ;;
    healthz) echo "gpuhook GET /healthz" ;;
    gpu) echo "gpuhook GET /gpu (cached)" ;;
    esac
}

# ---------------------------------------------------------------- report
{
    echo "# gpuhook benchmark, $DATE, commit $COMMIT$DIRTY"
    echo
    echo "Machine: $(nproc) cores, $CPU_MODEL, $MEM, Linux $(uname -r)."
    echo "wrk, the server and (end to end) the stand-in API all share those cores."
    echo
    echo "Load: wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), $CONNECTIONS connections, $THREADS threads," \
        "${DURATION} s per scenario after ${WARMUP} s of warm-up, $ROUNDS rounds interleaved;" \
        "each figure is the median of the rounds. Body: tests/fixtures/github/push_with-new-branch.json" \
        "($(wc -c <"$FIXTURE") bytes), a fresh X-GitHub-Delivery per request." \
        "RSS is the server's VmRSS right after the load."
    echo "gpuhook: $("$GPUHOOK" --version | tr '\n' ',' | sed 's/,$//; s/,/, /g')."
    echo "Peer: adnanh/webhook $(webhook -version 2>&1 | awk '{print $NF}'). Floor = $FLOOR ($([[ $FLOOR_MODE == auto ]] && echo "the mode with the higher median req/s" || echo "set by BENCH_FLOOR"))."
    echo
    echo "| scenario | req/s | p50 ms | p99 ms | RSS MiB | server CPU µs/req | × floor req/s | × peer req/s | p99 × floor | status |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for entry in "${SCENARIOS[@]}"; do
        read -r scenario _ <<<"$entry"
        [[ -n ${RPS[$scenario]} ]] || continue
        printf '| %s | %.0f | %.2f | %.2f | %.1f | %.1f | %s | %s | %s | %s |\n' \
            "$(describe "$scenario")" "${RPS[$scenario]}" "${P50[$scenario]}" "${P99[$scenario]}" \
            "$(awk -v k="${RSS[$scenario]}" 'BEGIN {print k / 1024}')" "${CPU[$scenario]}" \
            "$(ratio "${RPS[$scenario]}" "${RPS[$FLOOR]}")" "$(ratio "${RPS[$scenario]}" "${RPS[peer]}")" \
            "$(ratio "${P99[$scenario]}" "${P99[$FLOOR]}")" "${STATUS[$scenario]:-?}"
    done
    echo
    echo "Status is the HTTP status of one request checked before the load. Server CPU is the" \
        "server process's user + system time during the load divided by the requests served" \
        "(a median, like the rest); other load on the machine disturbs it less than req/s."
    if [[ -n ${API_NOTE[1]:-} ]]; then
        echo "Stand-in API, per end-to-end round: $(for r in $(seq 1 "$ROUNDS"); do printf '%s; ' "${API_NOTE[$r]:-}"; done)"
        echo "(runs created and the TCP connections they came over: keep-alive shows as few connections)." \
            "The stand-in API used a median $(median 11 end-to-end) µs of CPU per request on top of gpuhook's."
    fi
    echo
    echo "Per round (req/s, p50 ms, p99 ms, RSS KiB, server CPU µs/req, requests, non-2xx," \
        "socket errors, stand-in API CPU µs/req):"
    echo
    echo '```'
    sort -t$'\t' -k1,1 -k2,2n "$RESULTS" | column -t -s$'\t'
    echo '```'
    echo
    if [[ -s $BIG ]]; then
        echo "## Big payloads"
        echo
        echo "Signed pushes of 1 MB and 25 MB (the fixture plus commits; exact byte counts), sent" \
            "$BIG_REQUESTS times each with curl to a freshly started server; median time_total," \
            "peak RSS (VmHWM) after them."
        echo
        echo "| server | payload | status | median ms | peak RSS MiB | RSS after MiB |"
        echo "|---|---:|---|---:|---:|---:|"
        awk -F'\t' '{printf "| %s | %.0f MB | %s | %s | %.1f | %.1f |\n", $1, $2 / 1e6, $3, $4, $5 / 1024, $6 / 1024}' "$BIG"
        echo
    fi
    if [[ -n $STARTUP_MS ]]; then
        echo "## Start-up"
        echo
        echo "gpuhook (dry-run config), exec to the first 200 on /healthz, polled every 0.1 ms:" \
            "median **$STARTUP_MS ms** of $STARTUPS ($STARTUP_RUNS)."
        echo
    fi
    echo "## Targets (issue 8)"
    echo
    d=dry-run
    big_ms=$(awk -F'\t' '$1 == "dry-run" && $2 == 25000000 {print $4}' "$BIG")
    big_hwm=$(awk -F'\t' '$1 == "dry-run" && $2 == 25000000 {print $5}' "$BIG")
    big_limit=$(awk 'BEGIN {printf "%.0f", (2 * 25000000 / 1024) + 10 * 1024}')
    if [[ -n ${RPS[$d]} && -n ${RPS[$FLOOR]} ]]; then
        r=$(ratio "${RPS[$d]}" "${RPS[$FLOOR]}")
        echo "- dry-run ≥ 0.8 × floor throughput: $r × — $(meets "$r" ge 0.8)"
        r=$(ratio "${P99[$d]}" "${P99[$FLOOR]}")
        echo "- dry-run p99 ≤ 2 × floor p99: ${P99[$d]} ms vs ${P99[$FLOOR]} ms = $r × — $(meets "$r" le 2)"
    fi
    if [[ $FLOOR != floor-tpc && -n ${P99[$d]} && -n ${P99[floor-tpc]} ]]; then
        echo "  (against the thread-per-connection floor: ${P99[$d]} ms vs" \
            "${P99[floor-tpc]} ms = $(ratio "${P99[$d]}" "${P99[floor-tpc]}") ×)"
    fi
    if [[ -n ${RPS[$d]} && -n ${RPS[peer]} ]]; then
        r=$(ratio "${RPS[$d]}" "${RPS[peer]}")
        echo "- dry-run ≥ 5 × peer throughput: $r × — $(meets "$r" ge 5)"
    fi
    if [[ -n ${RPS[end-to-end]} && -n ${RPS[$FLOOR]} ]]; then
        r=$(ratio "${RPS[end-to-end]}" "${RPS[$FLOOR]}")
        echo "- end to end ≥ 0.4 × floor throughput: $r × — $(meets "$r" ge 0.4)"
        echo "- RSS ≤ 16 MiB after the end-to-end load: $(awk -v k="${RSS[end-to-end]}" 'BEGIN {printf "%.1f", k / 1024}') MiB —" \
            "$(meets "${RSS[end-to-end]}" le 16384)"
    fi
    if [[ -n ${big_ms:-} ]]; then
        echo "- 25 MB delivery ≤ 100 ms: $big_ms ms — $(meets "$big_ms" le 100)"
        echo "- its peak RSS ≤ 2 × payload + 10 MiB ($(awk -v k="$big_limit" 'BEGIN {printf "%.1f", k / 1024}') MiB):" \
            "$(awk -v k="$big_hwm" 'BEGIN {printf "%.1f", k / 1024}') MiB — $(meets "$big_hwm" le "$big_limit")"
    fi
    if [[ -n $STARTUP_MS ]]; then
        echo "- start-up to ready ≤ 50 ms: $STARTUP_MS ms — $(meets "$STARTUP_MS" le 50)"
    fi
    if [[ -n ${RPS[rejections]} && -n ${RPS[$FLOOR]} ]]; then
        r=$(ratio "${RPS[rejections]}" "${RPS[$FLOOR]}")
        echo "- rejections ≥ floor throughput: $r × — $(meets "$r" ge 1)"
    fi
} >"$REPORT"

cat "$REPORT"
echo "bench: wrote ${REPORT#"$ROOT"/}" >&2
