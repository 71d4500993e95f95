#!/usr/bin/env bash
# What the sealed keystore costs: unlocking (open and mount) with each
# method, and put/get throughput against a build from before the sealed
# keystore, in the same run. Prints markdown tables (docs/BENCHMARKS.md).
#
#   scripts/bench-unlock.sh [--reps N] [--size MiB] [--old-bin PATH] [--dir DIR]
#     --old-bin  a qsfs binary to compare put/get with (e.g. one built at
#                the commit before the sealed keystore); without it, only
#                this build is measured
#   QSFS_BIN overrides the binary measured (default target/release/qsfs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

reps=3 size=100 old="" dir=/var/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift ;;
        --size) size=$2; shift ;;
        --old-bin) old=$2; shift ;;
        --dir) dir=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "${QSFS_BIN:-}" ]; then
    cargo build --release --locked --workspace --bins >&2
    QSFS_BIN="$PWD/target/release/qsfs"
fi
Q="$QSFS_BIN"
work=$(mktemp -d -p "$dir" qsfs-bench-unlock.XXXXXX)
export XDG_CONFIG_HOME="$work/config"
holder_pids=()
cleanup() {
    for p in "${holder_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for m in "$work"/*.mnt; do
        mountpoint -q "$m" 2>/dev/null && "$Q" umount "$m" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
secs() { # CMD...: wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

printf 'a passphrase for the benchmark\n' > "$work/pass"
# Five key holders on loopback, each behind its own key pool pair.
specs=()
for i in 1 2 3 4 5; do
    "$Q" keypool gen --link "h$i" --keys 100000 --out "$work/h$i.a" --peer-out "$work/h$i.b" >/dev/null
    "$Q" keyholder serve --dir "$work/h$i" --listen 127.0.0.1:0 --keypool "$work/h$i.b" \
        --releases-per-minute 100000 > "$work/h$i.out" &
    holder_pids+=($!)
done
for i in 1 2 3 4 5; do
    for _ in $(seq 100); do grep -q listening "$work/h$i.out" && break; sleep 0.05; done
    addr=$(sed -n 's/^key holder listening on //p' "$work/h$i.out")
    specs+=(--holder "name=h$i,addr=$addr,pool=$work/h$i.a")
done

declare -A init_args=(
    [none]="--unlock none"
    [key-file]="--unlock key-file"
    [passphrase]="--unlock passphrase --passphrase-file $work/pass"
    [holders]="--unlock holders --threshold 3 ${specs[*]}"
)
methods=(none key-file passphrase holders)
echo "### Unlocking ($reps repetitions, median; $(nproc) cores)"
echo
echo "| method | open (\`qsfs ls\`) s | mount s | umount s |"
echo "| --- | --- | --- | --- |"
for m in "${methods[@]}"; do
    v="$work/$m.vault" mnt="$work/$m.mnt"
    # shellcheck disable=SC2086
    "$Q" init "$v" ${init_args[$m]} >/dev/null
    mkdir -p "$mnt"
    export QSFS_PASSPHRASE_FILE="$work/pass"
    open=() mount=() umount=()
    for _ in $(seq "$reps"); do
        open+=("$(secs "$Q" ls "$v" /)")
        mount+=("$(secs "$Q" mount "$v" "$mnt")")
        umount+=("$(secs "$Q" umount "$mnt")")
    done
    printf '| %s | %.3f | %.3f | %.3f |\n' "$m" \
        "$(printf '%s\n' "${open[@]}" | median)" \
        "$(printf '%s\n' "${mount[@]}" | median)" \
        "$(printf '%s\n' "${umount[@]}" | median)"
done

echo
# The default vault without a terminal: a key file (a passphrase costs its
# Argon2id time, as in the table above, on every command that opens it).
unset QSFS_PASSPHRASE_FILE
src="$work/src.bin"
head -c $((size << 20)) /dev/urandom > "$src"
cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
echo "### put and cold get of $size MiB, default vault with a key file ($reps repetitions, median)"
echo
echo "| build | put s | put MB/s | get s | get MB/s |"
echo "| --- | --- | --- | --- | --- |"
bins=("this:$Q")
[ -n "$old" ] && bins+=("before:$old")
sync
declare -A puts gets
for b in "${bins[@]}"; do
    name=${b%%:*} bin=${b#*:}
    "$bin" init "$work/tp-$name.vault" >/dev/null 2>&1 </dev/null
done
# Builds alternate within each repetition, so drift on a shared machine
# hits both alike.
for r in $(seq "$reps"); do
    for b in "${bins[@]}"; do
        name=${b%%:*} bin=${b#*:}
        v="$work/tp-$name.vault"
        cold
        puts[$name]+="$(secs "$bin" put "$v" "$src" "/f$r") "
        cold
        gets[$name]+="$(secs "$bin" get "$v" "/f$r" "$work/out") "
        cmp -s "$src" "$work/out" || { echo "get of /f$r differs ($name)" >&2; exit 1; }
        rm -f "$work/out"
    done
done
for b in "${bins[@]}"; do
    name=${b%%:*}
    p=$(printf '%s\n' ${puts[$name]} | median) g=$(printf '%s\n' ${gets[$name]} | median)
    printf '| %s | %.2f | %.0f | %.2f | %.0f |\n' "$name" "$p" "$(echo "$size*1.048576/$p" | bc -l)" "$g" "$(echo "$size*1.048576/$g" | bc -l)"
done
