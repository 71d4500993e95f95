#!/usr/bin/env bash
# What whole-lifecycle care costs on a vault with 10 GiB of data (the
# default vault: 3-of-5, node folders behind in-process QKD-keyed links):
#   scrub          qsfs scrub: every chunk of every shard read and checked
#                  (cold: page cache dropped first; warm: right after)
#   audit S        qsfs audit --samples S: bytes moved and time per node
#                  (first audit: each node reads its challenged shards and
#                  saves their trees; later audits read the saved trees)
#   drain          qsfs node drain of one node onto a sixth node
# A benchmark, not a test: it fails only if a command fails or reports
# damage. Needs about 2.7 x the data size of free disk in --dir.
#
#   scripts/bench-maint.sh [--gib 10] [--file-mib 1024] [--dir /var/tmp]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
gib=10; file_mib=1024; dir=/var/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --gib) gib=$2; shift ;;
        --file-mib) file_mib=$2; shift ;;
        --dir) dir=$2; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "[bench-maint $(date +%H:%M:%S)] $*" >&2; }
scripts/deps.sh >&2
cargo build --release --locked --bin qsfs >&2
Q="$repo/target/release/qsfs"
work=$(mktemp -d -p "$dir" qsfs-bench-maint.XXXXXX)
# Key files `qsfs init` makes go with the run, not ~/.config.
export XDG_CONFIG_HOME="$work/config"
trap 'rm -rf -- "$work"' EXIT
trap 'exit 130' INT TERM
drop_caches() { sync; [ "$(id -u)" -eq 0 ] && echo 3 > /proc/sys/vm/drop_caches || true; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

v="$work/vault"
"$Q" init "$v" > /dev/null
src="$work/src.bin"
log "making a ${file_mib} MiB source"
head -c $((file_mib << 20)) /dev/urandom > "$src"
files=$(( (gib * 1024 + file_mib - 1) / file_mib ))
log "storing $files x ${file_mib} MiB (each sealed under its own keys)"
t=$(now)
for i in $(seq "$files"); do "$Q" put "$v" "$src" "/f$i"; done
put_s=$(since "$t")
rm -f "$src"

scrub() { # LABEL -> prints a table row
    local out="$work/scrub.json" t s
    t=$(now)
    "$Q" scrub "$v" --json > "$out"
    s=$(since "$t")
    python3 - "$out" "$1" "$s" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); label, wall = sys.argv[2], float(sys.argv[3])
assert r["missing"] == 0 and r["corrupt"] == 0 and not r["lost"], "scrub found damage"
mb = r["bytes_read"] / 1e6
print(f"| scrub ({label}) | {r['objects']} objects, {r['shards']} shards, {r['bytes_read']/2**30:.2f} GiB read | {wall:.1f} s | {mb / wall:.0f} MB/s |")
PY
}

audit() { # SAMPLES LABEL -> prints one row per node
    local out="$work/audit.json"
    drop_caches
    "$Q" audit "$v" --samples "$1" --json > "$out"
    python3 - "$out" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = sys.argv[2] + " samples, " + sys.argv[3]
for n in r["nodes"]:
    assert n["verdict"] == "ok", n
    esc = {round(e["missing_fraction"], 2): e["probability"] for e in n["escape"]}
    print(f"| audit {s}, {n['name']} | {n['shards']} shards, {n['bytes_held']/2**30:.2f} GiB held; "
          f"{n['blocks_challenged']} blocks, {n['bytes_moved']/1024:.0f} KiB moved "
          f"({100 * n['bytes_moved'] / max(n['bytes_held'], 1):.4f}%) | {n['elapsed_ms']/1000:.1f} s | "
          f"escape at 1%: {esc.get(0.01, float('nan')):.3g}, at 10%: {esc.get(0.1, float('nan')):.3g} |")
PY
}

echo
echo "vault: $files x ${file_mib} MiB = $((files * file_mib)) MiB of data, stored in ${put_s} s; $(du -sh "$v/nodes" | cut -f1) on the node folders"
echo
echo "| run | what | time | rate |"
echo "| --- | --- | --- | --- |"
drop_caches
scrub cold
scrub warm
rm -rf "$v"/nodes/*/trees   # no saved audit trees yet
audit 300 "first audit"
audit 300 "again (saved trees)"
audit 1000 "saved trees"
"$Q" node add "$v" node-5 --dir "$v/nodes/node-5" > /dev/null
drop_caches
t=$(now)
"$Q" node drain "$v" node-2 --json > "$work/drain.json"
s=$(since "$t")
python3 - "$work/drain.json" "$s" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); wall = float(sys.argv[2])
assert r["deletion"]["matches"], r["deletion"]
print(f"| drain node-2 -> node-5 | {r['shards_moved']} shards, {r['bytes_written']/2**30:.2f} GiB moved "
      f"({r['chunks_copied']} chunks copied, {r['chunks_rebuilt']} rebuilt) | {wall:.1f} s | {r['bytes_written'] / 1e6 / wall:.0f} MB/s |")
PY
