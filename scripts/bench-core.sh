#!/usr/bin/env bash
# Core benchmark of qsfs: seal/open throughput, put latency, peak RSS,
# storage overhead and the bare-disk I/O floor for 1 KiB .. 1 GiB files and
# EC (2,3), (3,5), (4,6), plus a group-commit table. Prints markdown tables
# (see docs/BENCHMARKS.md for what each column means).
#
#   scripts/bench-core.sh              full run (a few minutes; < 15 min)
#   scripts/bench-core.sh --quick      fast subset (no 1 GiB, one repetition)
#   scripts/bench-core.sh --direct     vaults without the in-process QKD
#                                      links (node folders written directly)
#   scripts/bench-core.sh --dir DIR    put sources, vaults and floor files
#                                      under DIR (default /var/tmp; use a
#                                      real disk, not tmpfs)
# Any other option is passed to `bench_core run` (e.g. --json FILE,
# --sizes 1K,100M, --ec 3/5, --no-group). Cold reads drop the page cache
# (`sync; echo 3 > /proc/sys/vm/drop_caches`) and need root; without it
# they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

dir=/var/tmp
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) pass+=(--quick) ;;
        --direct) export QSFS_BENCH_DIRECT=1 ;;
        --dir) [ $# -ge 2 ] || { echo "--dir needs a folder" >&2; exit 2; }; dir=$2; shift ;;
        --dir=*) dir=${1#--dir=} ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) pass+=("$1") ;;
    esac
    shift
done

mkdir -p "$dir"
fstype=$(stat -f -c %T "$dir")
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
    echo "warning: $dir is on $fstype; the numbers will not include a disk" >&2
fi

cargo build --release --locked --example bench_core >&2
bin="$PWD/target/release/examples/bench_core"

work=$(mktemp -d -p "$dir" qsfs-bench.XXXXXX)
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
"$bin" run --dir "$work" "${pass[@]}"
echo "(bench-core.sh wall time: $(( $(date +%s) - start )) s)"
