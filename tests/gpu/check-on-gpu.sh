#!/usr/bin/env bash
# Checks GET /gpu against a real GPU.
#
#   tests/gpu/check-on-gpu.sh prepare      (here, on the build machine)
#       builds build-gpu/gpuhook and tests/gpu/gpu_probe_main.c, and copies
#       them with the shared libraries a bare GPU machine lacks into .devcarry/
#   tests/gpu/check-on-gpu.sh run OUTDIR   (there, from the repository root)
#       starts gpuhook on 127.0.0.1:$PORT with a dry-run config, captures
#       /gpu and /gpu?verbose, times the first refresh and 100 cached requests,
#       checks with nvidia-smi that gpuhook holds no GPU memory (no context),
#       runs again with CUDA_VISIBLE_DEVICES="" to see the 503, runs the probe
#       harness, then the cluster view (issue 19): `gpuhook agent` and a
#       server polling it through a small stand-in API (tests/gpu/mini_kubeapi.py),
#       with hold_memory taking all but 5000 MiB: the decision follows the
#       agent's figures, neither process holds GPU memory. Everything, with
#       summary.txt, goes under OUTDIR.
#
# The run step needs bash, python3 and (preferably) curl; nvidia-smi when
# there is a GPU. It never fails half-way: each check is recorded in
# summary.txt as PASS or FAIL, and the exit status is 1 when any failed.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARRY="$ROOT/.devcarry"
PORT=${PORT:-18087}
REQUESTS=${REQUESTS:-100}

die() {
    echo "check-on-gpu: $*" >&2
    exit 2
}

prepare() {
    cd "$ROOT" || die "no repository root"
    mkdir -p "$CARRY/lib" "$CARRY/extra"
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENABLE_WERROR=OFF >/dev/null ||
        die "cmake configure failed"
    if cmake --build build-gpu -j2 --target gpuhook >"$CARRY/build.log" 2>&1; then
        cp build-gpu/gpuhook "$CARRY/gpuhook"
    else
        echo "check-on-gpu: gpuhook did not build (see $CARRY/build.log); only the probe will run" >&2
        rm -f "$CARRY/gpuhook"
    fi

    local cuda=/usr/local/cuda
    gcc -std=c11 -D_GNU_SOURCE -O2 -g -DGPUHOOK_HAVE_CUDA=1 -Wall -Wextra -Werror \
        -Iinclude -Iserver -isystem "$cuda/include" \
        server/gpu.c server/gpu_rules.c server/gpu_json.c server/gpu_cuda.c server/gpu_nvml.c \
        server/buf.c server/error.c server/clock.c server/promtext.c \
        tests/gpu/gpu_probe_main.c -o "$CARRY/gpu_probe" \
        -L"$cuda/lib64" -lcudart_static -lcjson -lpthread -ldl -lrt ||
        die "the probe harness did not build"
    # The cluster check's other workload: a few lines of cudaMalloc.
    gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -isystem "$cuda/include" \
        tests/gpu/hold_memory.c -o "$CARRY/hold_memory" -L"$cuda/lib64" -lcudart_static \
        -lpthread -ldl -lrt || die "hold_memory did not build"

    # The GPU machine lacks these; they travel in lib/. Everything else ldd
    # lists travels in extra/, used there only for what is still missing.
    local bin lib path
    for bin in "$CARRY/gpuhook" "$CARRY/gpu_probe"; do
        [ -x "$bin" ] || continue
        ldd "$bin" | awk '$3 ~ /^\// {print $1, $3}' | while read -r lib path; do
            case "$lib" in
            libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) ;;
            libmicrohttpd.so.* | libcjson.so.* | libyaml-0.so.*) cp -L "$path" "$CARRY/lib/$lib" ;;
            *) cp -L "$path" "$CARRY/extra/$lib" ;;
            esac
        done
    done
    du -sh "$CARRY"
    ls -l "$CARRY" "$CARRY/lib"
}

# ---------- run ----------

OUTDIR=
SUMMARY=
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }

check() {
    local name=$1
    shift
    if "$@"; then
        note "PASS $name"
    else
        note "FAIL $name"
        FAILED=1
    fi
}

# Prints the value at a dotted path of a JSON file ("" when absent).
json_get() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2].split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
except Exception:
    print("")
EOF
}

# GET path: writes the body to $2 and prints the status code.
http_get() {
    if command -v curl >/dev/null; then
        curl -s -o "$2" -w '%{http_code}' "http://127.0.0.1:$PORT$1"
    else
        python3 - "http://127.0.0.1:$PORT$1" "$2" <<'EOF'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception:
    code, body = 0, b""
open(sys.argv[2], "wb").write(body)
print(code, end="")
EOF
    fi
}

# Resolves the libraries the binaries need: lib/ always, extra/ only for
# what the machine lacks (a symlink farm, so system copies still win).
setup_libs() {
    local farm=/tmp/gpuhook-extra-libs lib
    rm -rf "$farm"
    mkdir -p "$farm"
    export LD_LIBRARY_PATH="$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for bin in "$CARRY/gpuhook" "$CARRY/gpu_probe"; do
        [ -x "$bin" ] || continue
        ldd "$bin" | awk '/not found/ {print $1}' | while read -r lib; do
            [ -e "$CARRY/extra/$lib" ] && ln -sf "$CARRY/extra/$lib" "$farm/$lib"
        done
    done
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$farm"
    {
        echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
        ls "$farm"
        for bin in "$CARRY/gpuhook" "$CARRY/gpu_probe"; do
            [ -x "$bin" ] && echo "== $bin" && ldd "$bin"
        done
    } >"$OUTDIR/ldd.txt" 2>&1
}

write_config() {
    local dir=$1
    mkdir -p "$dir/spool"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/webhook-secret"
    chmod 600 "$dir/webhook-secret"
    cat >"$dir/gpuhook.json" <<EOF
{
  "listen": "127.0.0.1:$PORT",
  "log_level": "info",
  "shutdown_grace_seconds": 2,
  "github": { "secret_files": ["webhook-secret"], "events": ["push", "pull_request", "ping"] },
  "kubernetes": { "mode": "dry-run", "namespace": "tekton-pipelines" },
  "template": "$ROOT/k8s/triggers/trigger-template.yaml",
  "bindings": "$ROOT/k8s/triggers/trigger-binding.yaml",
  "spool_dir": "spool",
  "gpu": { "refresh_seconds": 5, "required": false }
}
EOF
}

SERVER_PID=

start_server() {
    local tag=$1
    "$CARRY/gpuhook" --config "$CFGDIR/gpuhook.json" 2>"$OUTDIR/gpuhook-$tag.log" &
    SERVER_PID=$!
    START_NS=$(date +%s%N)
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

# Waits until /gpu reports something other than "starting"; prints ms since start.
wait_first_snapshot() {
    local tmp="$OUTDIR/.wait.json"
    for _ in $(seq 1 3000); do
        if [ "$(http_get /gpu "$tmp")" != "000" ] && [ -s "$tmp" ] &&
            ! grep -q '"starting"' "$tmp"; then
            echo $((($(date +%s%N) - START_NS) / 1000000))
            rm -f "$tmp"
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.01
    done
    echo -1
    return 1
}

wait_healthz() {

    for _ in $(seq 1 1000); do
        [ "$(http_get /healthz /dev/null)" = 200 ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

compute_apps() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv 2>&1
    else
        echo "nvidia-smi not found"
    fi
}

gpu_memory_used() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader 2>&1 |
            tr '\n' ';'
    else
        echo "n/a"
    fi
}

# Times $REQUESTS GETs of /gpu; writes one latency in ms per line to $1.
time_requests() {
    local out=$1
    : >"$out"
    if command -v curl >/dev/null; then
        for _ in $(seq 1 "$REQUESTS"); do
            curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/gpu" |
                awk '{printf "%.3f\n", $1 * 1000}' >>"$out"
        done
        echo "curl, one connection per request" >"$out.how"
    else
        python3 - "$PORT" "$REQUESTS" "$out" <<'EOF'
import http.client, sys, time
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(out, "w") as f:
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        t = time.perf_counter()
        c.request("GET", "/gpu")
        c.getresponse().read()
        f.write("%.3f\n" % ((time.perf_counter() - t) * 1000))
        c.close()
EOF
        echo "python3 http.client, one connection per request" >"$out.how"
    fi
}

usable_answer() {
    [ "$1" = 200 ] && { [ "$2" = ok ] || [ "$2" = degraded ]; }
}

stats() {
    sort -n "$1" | awk '{a[NR] = $1; s += $1} END {
        if (NR == 0) { print "no samples"; exit }
        printf "n=%d min=%.3f median=%.3f p95=%.3f p99=%.3f max=%.3f mean=%.3f ms\n",
            NR, a[1], a[int((NR + 1) / 2)], a[int(NR * 0.95 + 0.5)], a[int(NR * 0.99 + 0.5)],
            a[NR], s / NR }'
}

run() {
    OUTDIR=$1
    mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
    OUTDIR=$(cd "$OUTDIR" && pwd)
    SUMMARY="$OUTDIR/summary.txt"
    : >"$SUMMARY"
    CFGDIR=$(mktemp -d)
    trap 'stop_server; rm -rf "$CFGDIR"' EXIT
    setup_libs
    write_config "$CFGDIR"

    {
        date -u +%Y-%m-%dT%H:%M:%SZ
        uname -a
        grep PRETTY_NAME /etc/os-release
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi
            nvidia-smi --query-gpu=name,uuid,pci.bus_id,driver_version,memory.total,memory.used,memory.free,memory.reserved,temperature.gpu,power.draw,utilization.gpu,compute_cap,ecc.mode.current,mig.mode.current,clocks_event_reasons.active --format=csv
        fi
    } >"$OUTDIR/machine.txt" 2>&1
    note "machine: $(grep PRETTY_NAME /etc/os-release | cut -d= -f2)"
    if command -v nvidia-smi >/dev/null; then
        note "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
    fi

    if [ -x "$CARRY/gpuhook" ]; then
        note "gpuhook --version: $("$CARRY/gpuhook" --version 2>&1 | tr '\n' ' ')"
        note "compute apps before start: $(compute_apps | tr '\n' ';')"

        # 1. The normal run.
        start_server normal
        check "healthz answers" wait_healthz
        local first
        first=$(wait_first_snapshot)
        note "first /gpu with a snapshot: ${first} ms after exec"
        local code vcode
        code=$(http_get /gpu "$OUTDIR/gpu.json")
        vcode=$(http_get '/gpu?verbose' "$OUTDIR/gpu-verbose.json")
        http_get /metrics "$OUTDIR/metrics.txt" >/dev/null
        grep '^gpuhook_gpu\|gpuhook_build_info' "$OUTDIR/metrics.txt" >"$OUTDIR/metrics-gpu.txt"
        rm -f "$OUTDIR/metrics.txt"
        http_get /readyz "$OUTDIR/readyz.json" >/dev/null
        note "GET /gpu: $code $(cat "$OUTDIR/gpu.json")"
        note "GET /gpu?verbose: $vcode"
        note "probe.first_refresh_ms (inside gpuhook): $(json_get "$OUTDIR/gpu-verbose.json" probe.first_refresh_ms)"
        note "probe.last_refresh_ms: $(json_get "$OUTDIR/gpu-verbose.json" probe.last_refresh_ms)"
        local status
        status=$(json_get "$OUTDIR/gpu.json" status)
        check "/gpu answers 200 with ok or degraded (got $code $status)" \
            usable_answer "$code" "$status"
        check "/gpu sees at least one device" \
            test "$(json_get "$OUTDIR/gpu.json" device_count)" -ge 1
        check "verbose names the device ($(json_get "$OUTDIR/gpu-verbose.json" devices.0.name))" \
            test -n "$(json_get "$OUTDIR/gpu-verbose.json" devices.0.uuid)"
        check "NVML is loaded" test "$(json_get "$OUTDIR/gpu-verbose.json" nvml.loaded)" = true
        check "NVML memory was read" \
            test -n "$(json_get "$OUTDIR/gpu-verbose.json" devices.0.memory.free_mib | grep -v null)"

        local before after rss_before rss_after
        before=$(compute_apps)
        rss_before=$(grep VmRSS "/proc/$SERVER_PID/status" | awk '{print $2 " " $3}')
        note "GPU memory.used before requests: $(gpu_memory_used)"
        time_requests "$OUTDIR/latency-ms.txt"
        note "GET /gpu x$REQUESTS ($(cat "$OUTDIR/latency-ms.txt.how")): $(stats "$OUTDIR/latency-ms.txt")"
        after=$(compute_apps)
        rss_after=$(grep VmRSS "/proc/$SERVER_PID/status" | awk '{print $2 " " $3}')
        note "GPU memory.used after requests: $(gpu_memory_used)"
        note "compute apps before requests: $(echo "$before" | tr '\n' ';')"
        note "compute apps after requests: $(echo "$after" | tr '\n' ';')"
        note "gpuhook RSS before/after: $rss_before / $rss_after; threads: $(grep Threads "/proc/$SERVER_PID/status" | awk '{print $2}')"
        note "gpuhook open /dev/nvidia* files: $(find "/proc/$SERVER_PID/fd" -lname '/dev/nvidia*' 2>/dev/null | wc -l)"
        check "gpuhook (pid $SERVER_PID) holds no CUDA context before the requests" \
            bash -c "! echo \"\$1\" | grep -q \"^$SERVER_PID,\"" _ "$before"
        check "gpuhook (pid $SERVER_PID) holds no CUDA context after the requests" \
            bash -c "! echo \"\$1\" | grep -q \"^$SERVER_PID,\"" _ "$after"
        check "gpuhook still serves /healthz" test "$(http_get /healthz /dev/null)" = 200
        stop_server
        echo "--- normal run log" >>"$OUTDIR/gpuhook.log"
        cat "$OUTDIR/gpuhook-normal.log" >>"$OUTDIR/gpuhook.log"
        rm -f "$OUTDIR/gpuhook-normal.log"

        # 2. No visible device.
        CUDA_VISIBLE_DEVICES="" start_server novisible
        wait_healthz >/dev/null
        first=$(wait_first_snapshot)
        code=$(http_get '/gpu?verbose' "$OUTDIR/gpu-novisible.json")
        note "CUDA_VISIBLE_DEVICES=\"\": first snapshot ${first} ms; GET /gpu?verbose: $code $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["status"], d["reasons"], d["cuda"]["error"], d["cuda"]["visible_devices"])' "$OUTDIR/gpu-novisible.json" 2>&1)"
        check "CUDA_VISIBLE_DEVICES=\"\" gives 503 with no_device" \
            bash -c "test $code = 503 && grep -q '\"no_device\"' \"\$1\"" _ "$OUTDIR/gpu-novisible.json"
        check "healthz does not depend on the GPU" test "$(http_get /healthz /dev/null)" = 200
        stop_server
        echo "--- CUDA_VISIBLE_DEVICES=\"\" run log" >>"$OUTDIR/gpuhook.log"
        cat "$OUTDIR/gpuhook-novisible.log" >>"$OUTDIR/gpuhook.log"
        rm -f "$OUTDIR/gpuhook-novisible.log"
    else
        note "SKIP gpuhook: not built, see .devcarry/build.log"
    fi

    # 3. The probe harness, without the HTTP server.
    if [ -x "$CARRY/gpu_probe" ]; then
        {
            echo "=== gpu_probe"
            "$CARRY/gpu_probe" 10000
            echo "=== compute apps while no probe runs"
            compute_apps
            echo "=== gpu_probe with CUDA_VISIBLE_DEVICES=\"\""
            CUDA_VISIBLE_DEVICES="" "$CARRY/gpu_probe" 1000
        } >"$OUTDIR/probe.txt" 2>&1
        note "probe: $(grep -E '^(first_snapshot_ms|gpu_http_status|gpu_status_json_us|gpu_status_json_verbose_us|fit_original|gpu_stop_ms)' "$OUTDIR/probe.txt" | tr '\n' ';')"
        check "probe sees the GPU (200)" grep -q '^gpu_http_status: 200' "$OUTDIR/probe.txt"
        check "probe with CUDA_VISIBLE_DEVICES=\"\" answers 503" \
            bash -c "grep '^gpu_http_status:' \"\$1\" | tail -1 | grep -q 503" _ "$OUTDIR/probe.txt"
    fi
    if [ -x "$CARRY/gpuhook" ] && [ -x "$CARRY/hold_memory" ]; then
        run_cluster
        run_queue
    else
        note "SKIP cluster and queue: gpuhook or hold_memory not built"
    fi
    note "overall: $([ "$FAILED" = 0 ] && echo PASS || echo FAIL)"
    return "$FAILED"
}

# ---------- the cluster view (issue 19): agent + server ----------

# POST JSON $2 to path $1 of the cluster server with the trigger token; body to $3, status out.
cluster_trigger() { cluster_trigger_at "$CPORT" "$@"; }

# The same on port $1.
cluster_trigger_at() {
    local port=$1
    shift
    python3 - "http://127.0.0.1:$port$1" "$2" "$3" "$CFGDIR/trigger-token" <<'EOF'
import sys, urllib.request, urllib.error
tok = open(sys.argv[4]).read().strip()
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
                             headers={"Content-Type": "application/json",
                                      "Authorization": "Bearer " + tok})
try:
    r = urllib.request.urlopen(req, timeout=10)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception as e:
    code, body = 0, str(e).encode()
open(sys.argv[3], "wb").write(body)
print(code, end="")
EOF
}

# Waits until the cluster /gpu says the node's agent is fresh and its GPU 0's free memory
# satisfies the python expression $1 (on f); leaves the body in $2.
cluster_wait_free() {
    for _ in $(seq 1 150); do
        PORT=$CPORT http_get "/gpu?node=$CNODE" "$2" >/dev/null
        if python3 - "$2" "$1" <<'EOF'; then
import json, sys
b = json.load(open(sys.argv[1]))
n = b["nodes"][0]
assert b["view"] == "cluster" and n["agent"]["state"] == "fresh"
f = n["gpus"][0]["free_mib"]
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Prints "variant|reason|preferred hosts" of a trigger answer (dry_run or created).
cluster_answer() {
    python3 - "$1" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
run = b.get("pipelinerun") if isinstance(b.get("pipelinerun"), dict) else {}
aff = (run.get("spec", {}).get("taskRunTemplate", {}).get("podTemplate", {})
       .get("affinity", {}).get("nodeAffinity", {}))
hosts = [v for t in aff.get("preferredDuringSchedulingIgnoredDuringExecution", [])
         for e in t["preference"]["matchExpressions"] for v in e["values"]]
print("%s|%s|%s" % (b.get("variant"), b.get("reason"), ",".join(hosts)))
EOF
}

# "original|...node NODE, GPU 0...|NODE": kept and placed on NODE.
cluster_kept() {
    [[ $1 == original\|*"node $2, GPU 0"*\|$2 ]]
}

# True when none of the pids $2... is in the compute-apps list $1.
cluster_no_pid() {
    local apps=$1 pid
    shift
    for pid in "$@"; do
        if echo "$apps" | grep -qE "^$pid,"; then return 1; fi
    done
    return 0
}

cluster_has_pid() {
    echo "$1" | grep -qE "^$2,"
}

run_cluster() {
    local dir=$CFGDIR/cluster apid aport ans
    CPORT=$((PORT + 1))
    APORT=$((PORT + 2))
    CNODE=h200-node
    mkdir -p "$dir/spool" "$dir/runs"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CFGDIR/trigger-token"
    chmod 600 "$CFGDIR/trigger-token"

    NODE_NAME=$CNODE "$CARRY/gpuhook" agent --listen "127.0.0.1:$APORT" \
        2>"$OUTDIR/agent.log" &
    local agent_pid=$!
    python3 "$ROOT/tests/gpu/mini_kubeapi.py" --port-file "$dir/api-port" --agent-port "$APORT" \
        --node "$CNODE" --runs-dir "$dir/runs" 2>"$OUTDIR/mini-kubeapi.log" &
    apid=$!
    for _ in $(seq 1 100); do [ -s "$dir/api-port" ] && break; sleep 0.05; done
    aport=$(cat "$dir/api-port" 2>/dev/null)
    cat >"$dir/gpuhook.json" <<EOF
{
  "listen": "127.0.0.1:$CPORT",
  "shutdown_grace_seconds": 2,
  "github": { "secret_files": ["$CFGDIR/webhook-secret"], "events": ["push"] },
  "trigger": { "token_file": "$CFGDIR/trigger-token", "default_repo_url": "https://github.com/o/r.git" },
  "kubernetes": { "mode": "url", "url": "http://127.0.0.1:$aport", "namespace": "gpu-runs", "timeout_seconds": 5 },
  "template": "$ROOT/k8s/triggers/trigger-template.yaml",
  "bindings": "$ROOT/k8s/triggers/trigger-binding.yaml",
  "selection": { "default": "lite",
                 "gpu_fit": { "lite_min_free_mib": 2048, "original_min_free_mib": 8192, "on_insufficient": "downgrade" } },
  "spool_dir": "$dir/spool",
  "gpu": { "refresh_seconds": 5 },
  "cluster_gpu": { "service": "gpuhook-agent", "poll_seconds": 1, "nodes": true }
}
EOF
    "$CARRY/gpuhook" --config "$dir/gpuhook.json" 2>"$OUTDIR/server-cluster.log" &
    local server_pid=$!

    check "cluster: the server sees the agent's GPU with more than 8192 MiB free" \
        cluster_wait_free "f > 8192" "$OUTDIR/cluster-gpu-idle.json"
    note "cluster: GET /gpu?node=$CNODE (idle): $(head -c 1500 "$OUTDIR/cluster-gpu-idle.json")"
    note "cluster: nvidia-smi memory.free (idle): $(nvidia-smi --query-gpu=memory.free --format=csv,noheader 2>&1 | head -1)"
    cluster_trigger "/trigger?dry_run=true" '{"variant":"original","revision":"main"}' \
        "$OUTDIR/cluster-trigger-idle.json" >/dev/null
    ans=$(cluster_answer "$OUTDIR/cluster-trigger-idle.json")
    note "cluster: original on an idle GPU: $ans"
    check "cluster: original is kept and placed on $CNODE, GPU 0" \
        cluster_kept "$ans" "$CNODE"

    # Another workload takes all but 5000 MiB.
    "$CARRY/hold_memory" 5000 >"$OUTDIR/hold_memory.txt" 2>&1 &
    local hold_pid=$!
    for _ in $(seq 1 200); do grep -q holding "$OUTDIR/hold_memory.txt" && break; sleep 0.05; done
    note "cluster: hold_memory: $(cat "$OUTDIR/hold_memory.txt")"
    check "cluster: the agent's figure follows the held memory (free below 8192 MiB)" \
        cluster_wait_free "f < 8192" "$OUTDIR/cluster-gpu-held.json"
    note "cluster: GET /gpu?node=$CNODE (held): $(head -c 1500 "$OUTDIR/cluster-gpu-held.json")"
    note "cluster: nvidia-smi memory.free (held): $(nvidia-smi --query-gpu=memory.free --format=csv,noheader 2>&1 | head -1)"
    check "cluster: the held GPU is busy (compute processes seen by the agent)" \
        test "$(json_get "$OUTDIR/cluster-gpu-held.json" nodes.0.gpus.0.busy)" = true
    cluster_trigger "/trigger" '{"variant":"original","revision":"main"}' \
        "$OUTDIR/cluster-trigger-held.json" >"$OUTDIR/cluster-trigger-held.status"
    local run
    run=$(find "$dir/runs" -name '*.json' | head -1)
    [ -z "$run" ] || cp "$run" "$OUTDIR/cluster-run-held.json"
    note "cluster: original with 5000 MiB left: HTTP $(cat "$OUTDIR/cluster-trigger-held.status") $(head -c 600 "$OUTDIR/cluster-trigger-held.json")"
    check "cluster: the created run is lite, its reason names $CNODE and GPU 0" \
        python3 - "$OUTDIR/cluster-run-held.json" "$CNODE" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
md = run["metadata"]
reason = md["annotations"]["gpuhook.dev/reason"]
print("reason:", reason)
assert md["labels"]["gpuhook.dev/variant"] == "lite", md["labels"]
assert sys.argv[2] in reason and "GPU 0" in reason, reason
aff = run["spec"]["taskRunTemplate"]["podTemplate"]["affinity"]["nodeAffinity"]
assert sys.argv[2] in json.dumps(aff["preferredDuringSchedulingIgnoredDuringExecution"])
EOF
    local apps
    apps=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>&1)
    note "cluster: compute apps while held: $(echo "$apps" | tr '\n' ';') (agent $agent_pid, server $server_pid, hold $hold_pid)"
    check "cluster: neither the agent nor the server holds GPU memory" \
        cluster_no_pid "$apps" "$agent_pid" "$server_pid"
    check "cluster: nvidia-smi lists the holder" \
        cluster_has_pid "$apps" "$hold_pid"
    kill -TERM "$hold_pid" "$server_pid" "$agent_pid" "$apid" 2>/dev/null
    wait "$hold_pid" "$server_pid" "$agent_pid" "$apid" 2>/dev/null
}

# ---------- the GPU queue (issue 18): the server's scheduler on the real GPU ----------

# The stand-in API's PipelineRuns in gpu-runs as "name|spec.status|waiting-for|started-at" lines.
queue_runs() {
    python3 - "http://127.0.0.1:$QAPI/apis/tekton.dev/v1/namespaces/gpu-runs/pipelineruns" <<'EOF'
import json, sys, urllib.request
for r in json.load(urllib.request.urlopen(sys.argv[1], timeout=5))["items"]:
    a = r["metadata"].get("annotations", {})
    print("%s|%s|%s|%s" % (r["metadata"]["name"], r["spec"].get("status", ""),
                           a.get("gpuhook.dev/waiting-for", ""), a.get("gpuhook.dev/started-at", "")))
EOF
}

# Waits (up to $1 s) until the run $2 has no spec.status and a started-at annotation.
queue_wait_started() {
    local _i
    for _i in $(seq 1 $(($1 * 10))); do
        if queue_runs | grep -qE "^$2\|\|.*\|.+$"; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Waits until the server's local /gpu shows device 0 with free memory satisfying $1 (on f).
queue_wait_free() {
    for _ in $(seq 1 150); do
        PORT=$QPORT http_get "/gpu?verbose" "$2" >/dev/null
        if python3 - "$2" "$1" <<'EOF'; then
import json, sys
b = json.load(open(sys.argv[1]))
f = b["devices"][0]["memory"]["free_mib"]
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
            return 0
        fi
        sleep 0.2
    done
    return 1
}

run_queue() {
    local dir=$CFGDIR/queue apid server_pid hold_pid name t0 t1 apps
    QPORT=$((PORT + 3))
    mkdir -p "$dir/spool" "$dir/state"
    # The full stand-in (watch, merge patch, Leases, Tekton's controller) over plain http; the
    # machine has no python3-jsonschema, so the CRD schema prunes but does not validate.
    GPUHOOK_STANDIN_WITHOUT_JSONSCHEMA=1 python3 "$ROOT/tests/kubeapi/fake_apiserver.py" \
        --state-dir "$dir/state" --port-file "$dir/api-port" --bookmark-seconds 1 \
        >"$OUTDIR/queue-kubeapi.out" 2>"$OUTDIR/queue-kubeapi.log" &
    apid=$!
    for _ in $(seq 1 100); do [ -s "$dir/api-port" ] && break; sleep 0.05; done
    QAPI=$(cat "$dir/api-port" 2>/dev/null)
    check "queue: the stand-in API started" test -n "$QAPI"
    # Another workload takes all but 1000 MiB before the delivery.
    "$CARRY/hold_memory" 1000 >"$OUTDIR/queue-hold.txt" 2>&1 &
    hold_pid=$!
    for _ in $(seq 1 200); do grep -q holding "$OUTDIR/queue-hold.txt" && break; sleep 0.05; done
    note "queue: hold_memory: $(cat "$OUTDIR/queue-hold.txt")"
    cat >"$dir/gpuhook.json" <<EOF
{
  "listen": "127.0.0.1:$QPORT",
  "shutdown_grace_seconds": 2,
  "github": { "secret_files": ["$CFGDIR/webhook-secret"], "events": ["push"] },
  "trigger": { "token_file": "$CFGDIR/trigger-token", "default_repo_url": "https://github.com/o/r.git" },
  "kubernetes": { "mode": "url", "url": "http://127.0.0.1:$QAPI", "namespace": "gpu-runs", "timeout_seconds": 5 },
  "template": "$ROOT/k8s/triggers/trigger-template.yaml",
  "bindings": "$ROOT/k8s/triggers/trigger-binding.yaml",
  "selection": { "default": "lite",
                 "gpu_fit": { "lite_min_free_mib": 2048, "original_min_free_mib": 8192 } },
  "spool_dir": "$dir/spool",
  "gpu": { "refresh_seconds": 1 },
  "concurrency": { "group": "{repo_full_name}/{branch}",
                   "lease": { "name": "gpuhook-scheduler", "duration_seconds": 4 } }
}
EOF
    "$CARRY/gpuhook" --config "$dir/gpuhook.json" 2>"$OUTDIR/server-queue.log" &
    server_pid=$!
    check "queue: the server's probe sees less than 8192 MiB free" \
        queue_wait_free "f < 8192" "$OUTDIR/queue-gpu-held.json"
    note "queue: nvidia-smi memory.free (held): $(nvidia-smi --query-gpu=memory.free --format=csv,noheader 2>&1 | head -1)"
    for _ in $(seq 1 50); do
        PORT=$QPORT http_get /metrics "$dir/metrics.txt" >/dev/null
        grep -q '^gpuhook_queue_leader 1' "$dir/metrics.txt" && break
        sleep 0.2
    done
    cluster_trigger_at "$QPORT" "/trigger" '{"variant":"original","revision":"main"}' \
        "$OUTDIR/queue-trigger.json" >"$OUTDIR/queue-trigger.status"
    note "queue: original with 1000 MiB left: HTTP $(cat "$OUTDIR/queue-trigger.status") $(head -c 600 "$OUTDIR/queue-trigger.json")"
    check "queue: the delivery is answered 202 queued, as original" \
        python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); assert b["status"] == "queued" and b["variant"] == "original", b' "$OUTDIR/queue-trigger.json"
    name=$(json_get "$OUTDIR/queue-trigger.json" pipelinerun)
    sleep 3
    queue_runs >"$OUTDIR/queue-runs-held.txt"
    note "queue: runs while held: $(tr '\n' ';' <"$OUTDIR/queue-runs-held.txt")"
    check "queue: 3 s later the run still waits (PipelineRunPending, waiting-for gpu)" \
        grep -qE "^$name\|PipelineRunPending\|gpu: original needs 8192 MiB" "$OUTDIR/queue-runs-held.txt"
    PORT=$QPORT http_get /queue "$OUTDIR/queue-held.json" >/dev/null
    note "queue: GET /queue (held): $(head -c 600 "$OUTDIR/queue-held.json")"
    apps=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>&1)
    check "queue: the server holds no GPU memory" cluster_no_pid "$apps" "$server_pid"
    # The other workload ends: the scheduler must start the run from the real figure.
    t0=$(date +%s.%N)
    kill -TERM "$hold_pid" 2>/dev/null
    wait "$hold_pid" 2>/dev/null
    check "queue: the run starts once the memory is free (within 20 s)" \
        queue_wait_started 20 "$name"
    t1=$(date +%s.%N)
    queue_runs >"$OUTDIR/queue-runs-freed.txt"
    note "queue: started $(python3 -c "print('%.1f' % ($t1 - $t0))") s after the holder exited; runs: $(tr '\n' ';' <"$OUTDIR/queue-runs-freed.txt")"
    note "queue: nvidia-smi memory.free (freed): $(nvidia-smi --query-gpu=memory.free --format=csv,noheader 2>&1 | head -1)"
    PORT=$QPORT http_get /metrics "$dir/metrics.txt" >/dev/null
    note "queue: metrics: $(grep -E '^gpuhook_queue_(actions_total|wait_seconds_count|wait_seconds_sum)' "$dir/metrics.txt" | tr '\n' ';')"
    kill -TERM "$server_pid" "$apid" 2>/dev/null
    wait "$server_pid" "$apid" 2>/dev/null
}

case "${1:-}" in
prepare) prepare ;;
run)
    [ $# -ge 2 ] || die "usage: $0 run OUTDIR"
    run "$2"
    ;;
*) die "usage: $0 prepare | run OUTDIR" ;;
esac
