#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60),
# seeded from fuzz/corpus/<target>/ (new finds are added there), and prints
# a table: target, execs, seconds, crashes. Crash inputs land in
# fuzz/artifacts/<target>/; keep each as fuzz/regressions/<target>/<name>
# once the decoder is fixed (the normal suite replays them on stable).
# Exits non-zero if any target crashed.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_JOBS=2   targets run side by side (default 1)
#   FUZZ_RSS_MB=2048  libFuzzer -rss_limit_mb and -malloc_limit_mb
set -euo pipefail

cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
jobs=${FUZZ_JOBS:-1}
rss=${FUZZ_RSS_MB:-2048}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -O >&2

# FUZZ_LOGS=DIR keeps each target's libFuzzer output there.
if [ -n "${FUZZ_LOGS:-}" ]; then
    mkdir -p "$FUZZ_LOGS"
    logs=$(cd "$FUZZ_LOGS" && pwd)
else
    logs=$(mktemp -d)
    trap 'rm -rf "$logs"' EXIT
fi
# Only crash files written by this run count (older ones stay for triage).
touch "$logs/stamp"

run_one() {
    local t=$1
    mkdir -p "corpus/$t" "artifacts/$t"
    # Each run: own corpus dir first (new finds go there), then the
    # regression inputs as extra seeds.
    local extra=()
    [ -d "regressions/$t" ] && extra+=("regressions/$t")
    local start end rc=0
    start=$(date +%s)
    cargo +nightly fuzz run -O "$t" "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 \
        -rss_limit_mb="$rss" -malloc_limit_mb="$rss" -timeout=10 \
        >"$logs/$t.log" 2>&1 || rc=$?
    end=$(date +%s)
    echo "$rc $((end - start))" >"$logs/$t.rc"
}

running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=0
printf '%-20s %12s %8s %8s\n' target execs seconds crashes
for t in "${targets[@]}"; do
    read -r rc took <"$logs/$t.rc"
    execs=$(grep -ao 'stat::number_of_executed_runs:[[:space:]]*[0-9]*' "$logs/$t.log" | tail -n 1 | grep -o '[0-9]*$' || true)
    if [ -z "$execs" ]; then
        # libFuzzer builds without that stat print "Done N runs in S second(s)".
        execs=$(grep -ao '^Done [0-9]* runs' "$logs/$t.log" | tail -n 1 | grep -o '[0-9]\+' || true)
    fi
    if [ -z "$execs" ]; then
        # A crashed run prints no final stats: its last status line has the count.
        execs=$(grep -ao '^#[0-9]*' "$logs/$t.log" | tail -n 1 | tr -d '#' || true)
    fi
    crashes=$(find "artifacts/$t" -type f -newer "$logs/stamp" | wc -l)
    if [ "$rc" != 0 ] && [ "$crashes" = 0 ]; then
        # libFuzzer stopped without leaving an input (build or setup error).
        crashes="err"
    fi
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        failed=1
        tail -n 30 "$logs/$t.log" >&2
    fi
    printf '%-20s %12s %8s %8s\n' "$t" "${execs:-?}" "$took" "$crashes"
done
exit "$failed"
