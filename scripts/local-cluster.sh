#!/usr/bin/env bash
# Five (or --nodes N) qsfs node servers on 127.0.0.1, each behind its own
# QKD-keyed link with a fresh key pool pair, and a vault that uses them.
#
#   scripts/local-cluster.sh start VAULT [--nodes N] [--keys K] [-- INIT-ARGS...]
#       VAULT missing: `qsfs init --direct VAULT INIT-ARGS` first. VAULT
#       existing and still empty (no files stored): its nodes are replaced.
#       A VAULT that was already a cluster gets its servers started again on
#       their folders and its addresses updated. Node folders, the servers'
#       pool files and logs live in VAULT.cluster/; the vault's ends of the
#       links in VAULT/links/. Prints one line per server.
#   scripts/local-cluster.sh stop VAULT
#       Stops the servers this script started for VAULT (by PID, SIGTERM).
#   scripts/local-cluster.sh status VAULT
#
# To spread nodes over machines, run on each machine
#   qsfs keypool gen --link node-3 --keys 1000000 --out node-3.a.pool --peer-out node-3.b.pool
#   (copy node-3.b.pool to the node machine over a trusted channel), then
#   qsfs node serve --dir /srv/qsfs-node --listen 0.0.0.0:7103 --keypool node-3.b.pool
# and name it in the vault's qsfs.toml (see README, "Remote nodes").
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
Q=${QSFS_BIN:-$here/target/release/qsfs}
[ -x "$Q" ] || { echo "local-cluster: $Q not found; build with cargo build --release or set QSFS_BIN" >&2; exit 1; }

cmd=${1:-}; vault=${2:-}
[ -n "$cmd" ] && [ -n "$vault" ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift 2
nodes=5; nodes_given=0; keys=100000; init_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) nodes=$2; nodes_given=1; shift ;;
        --keys) keys=$2; shift ;;
        --) shift; init_args=("$@"); break ;;
        *) echo "local-cluster: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# One spelling of the path, so `stop` recognises the servers `start` made.
vault=$(realpath -m -- "$vault")
cluster="$vault.cluster"

# True while PID is still the node server this script started for the
# cluster (a PID reused by another process is left alone).
ours() {
    local cmd
    cmd=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *"node serve --dir $cluster/node-"* ]]
}

stop() {
    [ -f "$cluster/pids" ] || return 0
    local pid
    while read -r pid; do
        [ -n "$pid" ] || continue
        if ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done < "$cluster/pids"
    while read -r pid; do
        [ -n "$pid" ] || continue
        for _ in $(seq 100); do ours "$pid" || break; sleep 0.05; done
        if ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done < "$cluster/pids"
    while read -r pid; do
        [ -n "$pid" ] || continue
        if ours "$pid"; then echo "local-cluster: node server $pid did not stop; $cluster/pids kept" >&2; return 1; fi
    done < "$cluster/pids"
    rm -f "$cluster/pids"
}

case "$cmd" in
    stop) stop; exit 0 ;;
    status)
        [ -f "$cluster/pids" ] || { echo "no cluster running for $vault"; exit 0; }
        i=0
        while read -r pid; do
            state=stopped; ours "$pid" && state=running
            echo "node-$i pid $pid $state $(cat "$cluster/node-$i.addr" 2>/dev/null)"
            i=$((i + 1))
        done < "$cluster/pids"
        exit 0 ;;
    start) ;;
    *) echo "local-cluster: unknown command $cmd (start, stop, status)" >&2; exit 2 ;;
esac

[ -f "$cluster/pids" ] && stop
if [ ! -e "$vault/qsfs.toml" ]; then
    n_arg=(--n "$nodes")
    [[ " ${init_args[*]-} " == *" --n "* ]] && n_arg=()
    "$Q" init --direct ${n_arg[@]+"${n_arg[@]}"} "$vault" ${init_args[@]+"${init_args[@]}"} >/dev/null
fi
n_cfg=$(grep -c '^\[\[node\]\]' "$vault/qsfs.toml")
fresh=0
if [ ! -d "$cluster" ]; then
    objects=$("$Q" status --json "$vault" | sed -n 's/^  "objects": \([0-9]*\).*/\1/p')
    [ -n "$objects" ] || { echo "local-cluster: cannot tell whether $vault stores data (qsfs status --json); not touching it" >&2; exit 1; }
    if [ "$objects" != 0 ]; then
        echo "local-cluster: $vault already stores $objects objects on its nodes; start a cluster with a new vault" >&2
        exit 1
    fi
    fresh=1
    [ $nodes_given -eq 1 ] || nodes=$n_cfg
    if [ "$n_cfg" -ne "$nodes" ]; then
        echo "local-cluster: $vault has $n_cfg nodes, not $nodes (--nodes)" >&2; exit 1
    fi
    mkdir -p "$cluster" "$vault/links"
    # The vault's ends of the links are key material: owner-only, whatever
    # the umask (qsfs refuses a vault whose key stores others can read).
    chmod 700 "$vault/links"
    for i in $(seq 0 $((nodes - 1))); do
        mkdir -p "$cluster/node-$i"
        "$Q" keypool gen --link "node-$i" --keys "$keys" --no-refill \
            --out "$vault/links/node-$i.pool" --peer-out "$cluster/node-$i.pool" >/dev/null
    done
else
    nodes=$(find "$cluster" -maxdepth 1 -name 'node-*.pool' | wc -l)
fi

: > "$cluster/pids"
for i in $(seq 0 $((nodes - 1))); do
    out="$cluster/node-$i.out"
    "$Q" node serve --dir "$cluster/node-$i" --listen 127.0.0.1:0 \
        --keypool "$cluster/node-$i.pool" > "$out" 2> "$cluster/node-$i.log" &
    echo $! >> "$cluster/pids"
done
i=0
while read -r pid; do
    for _ in $(seq 200); do
        grep -q '^listening on ' "$cluster/node-$i.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { echo "local-cluster: node-$i exited:" >&2; cat "$cluster/node-$i.log" >&2; stop; exit 1; }
        sleep 0.05
    done
    addr=$(sed -n 's/^listening on //p' "$cluster/node-$i.out" | head -n 1)
    [ -n "$addr" ] || { echo "local-cluster: node-$i did not start" >&2; stop; exit 1; }
    echo "$addr" > "$cluster/node-$i.addr"
    echo "node-$i pid $pid listening on $addr (folder $cluster/node-$i)"
    i=$((i + 1))
done < "$cluster/pids"

# The vault's nodes: everything up to the first [[node]] stays, the node
# tables are written anew with the current addresses.
cfg="$vault/qsfs.toml"
tmp="$vault/.qsfs.toml.cluster"
awk '/^\[\[node\]\]/ { exit } { print }' "$cfg" > "$tmp"
for i in $(seq 0 $((nodes - 1))); do
    printf '\n[[node]]\nname = "node-%d"\nkind = "remote"\naddress = "%s"\nkeypool = "links/node-%d.pool"\n' \
        "$i" "$(cat "$cluster/node-$i.addr")" "$i" >> "$tmp"
done
mv "$tmp" "$cfg"
if [ $fresh -eq 1 ]; then rm -rf "$vault/nodes" "$vault"/links/*.a.pool "$vault"/links/*.b.pool; fi
