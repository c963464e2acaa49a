#!/usr/bin/env bash
# Usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
#
# Builds the libFuzzer targets (Clang) into BUILD_DIR (default build-fuzz) when
# needed, then runs each target for SECONDS (default 30) from its seed corpus,
# its dictionary and its regression inputs. Fails when any target crashes,
# leaks, times out or breaks an invariant; the log and the crashing input are
# kept under BUILD_DIR/fuzz-work/<target>/. FUZZ_TARGETS="event config" runs a
# subset. New corpus entries stay in BUILD_DIR; the committed seeds are not touched.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-30}
build=${2:-build-fuzz}
read -r -a targets <<< "${FUZZ_TARGETS:-signature event template config request retryafter kwatch gpuview ghsummary}"

if ! command -v clang > /dev/null; then
    echo "run.sh: clang not found: apt-get install clang libclang-rt-14-dev" >&2
    exit 2
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=clang cmake -S . -B "$build" -DENABLE_FUZZING=ON -DBUILD_TESTING=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
elif ! grep -q '^ENABLE_FUZZING:BOOL=ON' "$build/CMakeCache.txt"; then
    echo "run.sh: $build was configured without ENABLE_FUZZING; use another folder" >&2
    exit 2
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

failed=()
for t in "${targets[@]}"; do
    work="$build/fuzz-work/$t"
    # Scratch files go here too, so an aborted run leaves nothing in /tmp.
    rm -rf "$work/tmp"
    mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
    inputs=("$work/corpus" "tests/fuzz/corpus/$t")
    [ -d "tests/fuzz/regressions/$t" ] && inputs+=("tests/fuzz/regressions/$t")
    rc=0
    TMPDIR="$work/tmp" "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -dict="tests/fuzz/$t.dict" -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
        "${inputs[@]}" < /dev/null > "$work/log" 2>&1 || rc=$?
    stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log" | tail -n 1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: //p' "$work/log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: //p' "$work/log")
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        echo "fuzz_$t: FAILED (exit $rc); log: $work/log" >&2
        tail -n 40 "$work/log" >&2
        ls "$work/artifacts" >&2
    else
        echo "fuzz_$t: ok, ${runs:-?} runs, ${speed:-?} exec/s, ${stats#*DONE }"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
