#!/usr/bin/env bash
# What the QKD-keyed links cost: the same work on three vaults side by side
#   direct     qsfs init --direct: node folders written directly
#   in-process the default vault: node folders behind in-process links
#   loopback   five `qsfs node serve` processes on 127.0.0.1 behind links
#              (scripts/local-cluster.sh)
# Rows: seal (qsfs put) and open (qsfs get) of a 1 GiB file, 1 GiB dd
# through the mount (write with conv=fsync, read after dropping caches),
# and link keys consumed per GiB sealed. A benchmark, not a test: it fails
# only if a command fails or data read back differs.
#
#   scripts/bench-links.sh [--size-mib 1024] [--dir /var/tmp] [--reps 2]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
size_mib=1024; dir=/var/tmp; reps=2
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mib) size_mib=$2; shift ;;
        --dir) dir=$2; shift ;;
        --reps) reps=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "[bench-links $(date +%H:%M:%S)] $*" >&2; }
scripts/deps.sh >&2
cargo build --release --locked --bin qsfs >&2
Q="$repo/target/release/qsfs"
export QSFS_BIN="$Q"
work=$(mktemp -d -p "$dir" qsfs-bench-links.XXXXXX)
# Key files `qsfs init` makes go with the run, not ~/.config.
export XDG_CONFIG_HOME="$work/config"
mounted=""
cleanup() {
    set +e
    [ -n "$mounted" ] && mountpoint -q "$mounted" && "$Q" umount "$mounted" >/dev/null 2>&1
    for v in "$work"/*.vault; do [ -d "$v.cluster" ] && scripts/local-cluster.sh stop "$v"; done
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
drop_caches() { sync; [ "$(id -u)" -eq 0 ] && echo 3 > /proc/sys/vm/drop_caches || true; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
keys_used() { # total link keys used by the vault's end (0 when direct)
    "$Q" status --json "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum((l.get("counts") or {}).get("used",0) for l in s["links"]))'
}

src="$work/src.bin"
log "making a ${size_mib} MiB source"
head -c $((size_mib << 20)) /dev/urandom > "$src"
bytes=$((size_mib << 20))
declare -A R=()
for rep in $(seq "$reps"); do
    for kind in direct in-process loopback; do
        v="$work/$kind.vault"; m="$work/$kind.mnt"
        rm -rf "$v" "$v.cluster" "$m"; mkdir -p "$m"
        case "$kind" in
            direct) "$Q" init --direct "$v" >/dev/null ;;
            in-process) "$Q" init "$v" >/dev/null ;;
            loopback) scripts/local-cluster.sh start "$v" >/dev/null ;;
        esac
        cat "$src" > /dev/null
        k0=$(keys_used "$v")
        log "$kind: seal (put)"
        t=$(now); "$Q" put "$v" "$src" /big; R[seal,$kind]+=" $(since "$t")"
        k1=$(keys_used "$v")
        R[keys,$kind]+=" $(( (k1 - k0) * 1024 / size_mib ))"
        drop_caches
        log "$kind: open (get)"
        t=$(now); "$Q" get "$v" /big "$work/out.bin"; R[open,$kind]+=" $(since "$t")"
        cmp "$src" "$work/out.bin"; rm -f "$work/out.bin"
        "$Q" mount "$v" "$m" >/dev/null; mounted=$m
        log "$kind: dd write through the mount"
        t=$(now); dd if="$src" of="$m/dd" bs=1M conv=fsync status=none; R[ddw,$kind]+=" $(since "$t")"
        drop_caches
        log "$kind: dd read (cold)"
        t=$(now); dd if="$m/dd" of=/dev/null bs=1M status=none; R[ddr,$kind]+=" $(since "$t")"
        "$Q" umount "$m" >/dev/null; mounted=""
        [ "$kind" = loopback ] && scripts/local-cluster.sh stop "$v"
        rm -rf "$v" "$v.cluster"
    done
done

best() { echo $1 | tr ' ' '\n' | sort -g | head -n 1; }
mbs() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
echo
echo "## bench-links: $(date -u '+%Y-%m-%d %H:%M UTC'), ${size_mib} MiB, best of ${reps}"
echo
echo "| row | direct | in-process links | loopback node servers | in-process / direct | loopback / direct |"
echo "|---|---:|---:|---:|---:|---:|"
for row in seal open ddw ddr; do
    case $row in seal) label="seal (qsfs put), MB/s" ;; open) label="open (qsfs get, cold), MB/s" ;;
                 ddw) label="dd write through the mount, conv=fsync, MB/s" ;; ddr) label="dd read through the mount, cold, MB/s" ;; esac
    d=$(best "${R[$row,direct]}"); i=$(best "${R[$row,in-process]}"); l=$(best "${R[$row,loopback]}")
    echo "| $label | $(mbs "$d") | $(mbs "$i") | $(mbs "$l") | $(awk -v a="$i" -v b="$d" 'BEGIN { printf "%.2fx", a / b }') | $(awk -v a="$l" -v b="$d" 'BEGIN { printf "%.2fx", a / b }') |"
done
echo "| link keys used per GiB sealed (vault's end, both directions) | 0 | $(best "${R[keys,in-process]}") | $(best "${R[keys,loopback]}") | | |"
echo
echo "Targets: in-process within 1.3x of direct, loopback within 1.5x (time ratios above)."
