# Remote nodes behind real network faults. Five `qsfs node serve`
# processes, each in its own network namespace reached over a veth pair
# (host 10.X.i.1/24, node 10.X.i.2/24) and a QKD-keyed link (key pools
# as scripts/local-cluster.sh makes them), serve a 3-of-5 vault with write
# quorum 3 on the host. Packets are delayed or dropped by the kernel's
# real network path, not by a mock:
#   1. 100 ms more round trip on every node: puts and gets of small and
#      multi-MiB files read back identical;
#   2. 2% packet loss on every node (both directions): the same;
#   3. nodes 0 and 1 partitioned (every packet silently dropped, no RST):
#      writes succeed at quorum 3, `qsfs status` records the repair debt,
#      every read (files written before and during the partition)
#      completes within a bound derived from the configured timeouts, and
#      each read's time is printed;
#   4. a 64 MiB put starts with nodes 0 and 1 partitioned and the
#      partition heals while it runs: the put succeeds;
#   5. with the network whole again, `qsfs scrub` reports the missing
#      shards, `qsfs scrub --repair` rebuilds them, a second scrub is
#      clean, and every file of every phase reads back identical.
#
# How the faults are made. The brief was `tc netem`, but this machine's
# kernel (the kind CI runs on) has no sch_netem, nor gact/matchall, so:
#   - loss and partitions are nftables rules in the node's namespace on
#     its veth (netdev family, ingress and egress hooks): `numgen random
#     mod 50 == 0 drop` for 2%, `drop` for a partition; each rule counts
#     what it dropped and the case asserts the count moved;
#   - latency: a tc u32 filter with a mirred action on the node veth's
#     ingress hands every IPv4 packet from the host to a tun device whose
#     owner (a small Python program in the namespace) writes it back
#     100 ms later, so the node's kernel receives it late; a TCP connect
#     to a closed port on the node is asserted to take >= 90 ms.
# Each fault is checked with a probe before the phase relies on it.
#
# Timeouts. The vault's node entries set connect_timeout_ms = 2000 and
# io_timeout_ms = 5000 (defaults 3000 and 30000): a partitioned node costs
# a command at most one connect timeout plus one I/O timeout before the
# client marks it down (10 s), so with two partitioned nodes a read is
# bounded by 2 * (2 + 5) s plus 5 s for the work itself = 19 s, and the
# case stays within a few minutes. Those bounds are asserted, not
# loosened: a read over the bound fails the case with its measured time.
#
# Needs root, iproute2 (ip, tc), nftables and python3 (scripts/deps.sh
# installs them); without network namespaces the case FAILS, it does not
# skip. An EXIT trap stops every process it started (by PID) and deletes
# its namespaces and veths, on failure too.
Q="$QSFS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in ip tc nft python3; do
    command -v "$tool" >/dev/null ||
        fail "$tool is missing: the network fault case needs iproute2, nftables and python3 (scripts/deps.sh installs them)"
done
[ "$(id -u)" -eq 0 ] || fail "the network fault case needs root (network namespaces)"

N=5
C_MS=2000
IO_MS=5000
# Bound on one read with two nodes partitioned (see the header).
READ_BOUND_MS=$(( 2 * (C_MS + IO_MS) + 5000 ))
PORT=7100
TAG="nf$$"
NSP="qsfs-$TAG"
# Second octet from the PID, moved on while the host already routes it.
X=$(( 100 + $$ % 150 ))
for _ in $(seq 150); do
    ip -4 route show | grep -q "^10\.$X\." || ip -4 addr show | grep -q " 10\.$X\." || break
    X=$(( 100 + (X - 99) % 150 ))
done

NODE_PIDS=()
DELAY_PIDS=()
cleanup() {
    set +e
    local pid
    for pid in "${DELAY_PIDS[@]}" "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${DELAY_PIDS[@]}" "${NODE_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for i in $(seq 0 $((N - 1))); do
        ip netns del "$NSP-$i" 2>/dev/null
        ip link del "${TAG}h$i" 2>/dev/null
    done
    return 0
}
trap cleanup EXIT

ns() { local i=$1; shift; ip netns exec "$NSP-$i" "$@"; }
node_addr() { echo "10.$X.$1.2"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# q SECS ARGS...: qsfs ARGS, killed after SECS so that a hung command
# fails the case (exit 124, with its time) instead of hanging the suite.
q() { local limit=$1; shift; timeout -k 5 "$limit" "$Q" "$@"; }
# Hard limit of every other qsfs command here (a healthy one takes < 10 s).
HARD=120
node_logs() {
    local i
    for i in $(seq 0 $((N - 1))); do
        [ -f "cluster/node-$i.log" ] && tail -n 5 "cluster/node-$i.log" | sed "s/^/    node-$i: /" >&2
    done
    return 0
}

echo "namespaces $NSP-0..$((N - 1)), addresses 10.$X.0-$((N - 1)).2, connect ${C_MS} ms, io ${IO_MS} ms"

# --- the network -------------------------------------------------------
t_setup=$(now_ms)
for i in $(seq 0 $((N - 1))); do
    ip netns add "$NSP-$i" ||
        fail "cannot create network namespace $NSP-$i (ip netns add): this case needs network namespaces (root, CONFIG_NET_NS)"
    ip link add "${TAG}h$i" type veth peer name "${TAG}n$i" || fail "cannot create veth pair ${TAG}h$i"
    # One TCP segment per packet (no 64 KiB GSO packets), so a 2% loss
    # drops 2% of what crosses the wire.
    ip link set dev "${TAG}h$i" gso_max_segs 1
    ip link set dev "${TAG}n$i" gso_max_segs 1
    ip link set "${TAG}n$i" netns "$NSP-$i"
    ip addr add "10.$X.$i.1/24" dev "${TAG}h$i"
    ip link set "${TAG}h$i" up
    ns "$i" ip link set lo up
    ns "$i" ip addr add "$(node_addr "$i")/24" dev "${TAG}n$i"
    ns "$i" ip link set "${TAG}n$i" up
    # Delayed packets come back on the tun device, not the veth they
    # arrived on: no reverse-path filter may drop them.
    ns "$i" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ns "$i" tc qdisc add dev "${TAG}n$i" clsact || fail "tc clsact qdisc on ${TAG}n$i"
done

# --- the vault and its node servers ------------------------------------
init=$("$Q" init --direct --quorum 3 v)
[ "$(head -n1 <<<"$init")" = "created vault v (3 of 5 shards rebuild a file, write quorum 3, 5 nodes)" ] || fail "init said: $init"
# Without a terminal, the vault key is wrapped under a new key file.
[[ "$(sed -n 2p <<<"$init")" == "unlock: key file $XDG_CONFIG_HOME/qsfs/"*".key (mode 0600)"* ]] || fail "init said: $init"
mkdir -p cluster && mkdir -p -m 700 v/links  # key material: owner-only
for i in $(seq 0 $((N - 1))); do
    mkdir -p "cluster/node-$i"
    "$Q" keypool gen --link "node-$i" --keys 200000 --no-refill \
        --out "v/links/node-$i.pool" --peer-out "cluster/node-$i.pool" >/dev/null
    ip netns exec "$NSP-$i" "$Q" node serve --dir "$PWD/cluster/node-$i" \
        --listen "$(node_addr "$i"):$PORT" --keypool "$PWD/cluster/node-$i.pool" \
        > "cluster/node-$i.out" 2> "cluster/node-$i.log" &
    NODE_PIDS+=($!)
done
for i in $(seq 0 $((N - 1))); do
    for _ in $(seq 200); do
        grep -q '^listening on ' "cluster/node-$i.out" 2>/dev/null && break
        kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || { node_logs; fail "node server $i exited"; }
        sleep 0.05
    done
    grep -q "^listening on $(node_addr "$i"):$PORT" "cluster/node-$i.out" ||
        fail "node server $i did not start: $(cat "cluster/node-$i.out" "cluster/node-$i.log")"
done
awk '/^\[\[node\]\]/ { exit } { print }' v/qsfs.toml > v/qsfs.toml.new
for i in $(seq 0 $((N - 1))); do
    printf '\n[[node]]\nname = "node-%d"\nkind = "remote"\naddress = "%s:%d"\nkeypool = "links/node-%d.pool"\nconnect_timeout_ms = %d\nio_timeout_ms = %d\n' \
        "$i" "$(node_addr "$i")" "$PORT" "$i" "$C_MS" "$IO_MS" >> v/qsfs.toml.new
done
mv v/qsfs.toml.new v/qsfs.toml
rm -rf v/nodes
st=$("$Q" status v) || fail "status of the new cluster vault: $st"
[ "$(grep -c 'qkd pool' <<<"$st")" -ge "$N" ] || fail "the nodes' links are not QKD-keyed: $st"
echo "setup: $(( $(now_ms) - t_setup )) ms"

# --- faults -------------------------------------------------------------
# nft_drop I RULE: replace node I's drop rules (both directions on its
# veth) with RULE, counted; nft_clear I: remove them.
nft_drop() {
    local i=$1 rule=$2 dev="${TAG}n$1"
    ns "$i" nft delete table netdev qsfsnf 2>/dev/null || true
    ns "$i" nft -f - <<EOF || fail "nft rules on node $i"
table netdev qsfsnf {
    chain in { type filter hook ingress device "$dev" priority 0; $rule counter drop; }
    chain out { type filter hook egress device "$dev" priority 0; $rule counter drop; }
}
EOF
}
nft_clear() { ns "$1" nft delete table netdev qsfsnf; }
# Packets node I's rules dropped so far (both directions).
nft_dropped() {
    ns "$1" nft list table netdev qsfsnf | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}

cat > delayer.py <<'PY'
# Owns tun device NAME: every packet the kernel hands it is written back
# DELAY_MS later (the kernel then receives it as if it arrived late).
import fcntl, heapq, os, select, struct, sys, time
name, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
print("ready", flush=True)
queue, seq = [], 0
poll = select.poll()
poll.register(fd, select.POLLIN)
while True:
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        try:
            os.write(fd, heapq.heappop(queue)[2])
        except OSError:
            pass
    wait = -1 if not queue else max(0, int((queue[0][0] - now) * 1000) + 1)
    if poll.poll(wait):
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                break
            seq += 1
            heapq.heappush(queue, (time.monotonic() + delay, seq, packet))
PY

# delay_on I MS: node I receives every IPv4 packet MS late.
delay_on() {
    local i=$1 ms=$2
    ip netns exec "$NSP-$i" python3 delayer.py nfdelay "$ms" > "delay-$i.out" 2>&1 &
    DELAY_PIDS+=($!)
    for _ in $(seq 200); do grep -q ready "delay-$i.out" && break; sleep 0.05; done
    grep -q ready "delay-$i.out" || fail "delayer of node $i did not start: $(cat "delay-$i.out")"
    ns "$i" ip link set nfdelay up
    ns "$i" tc filter add dev "${TAG}n$i" ingress protocol ip u32 match u32 0 0 \
        action mirred egress redirect dev nfdelay || fail "tc u32/mirred filter on node $i"
}
delay_off() { ns "$1" tc filter del dev "${TAG}n$1" ingress; }

# probe I: how a TCP connect to a closed port of node I ends: "refused
# SECONDS" (the RST came back), or "silent" (nothing within 1.5 s).
probe() {
    python3 - "$(node_addr "$1")" <<'PY'
import socket, sys, time
s = socket.socket()
s.settimeout(1.5)
t = time.monotonic()
try:
    s.connect((sys.argv[1], 9))
    print("open")
except ConnectionRefusedError:
    print("refused %.3f" % (time.monotonic() - t))
except socket.timeout:
    print("silent")
PY
}

# --- files --------------------------------------------------------------
mkdir src
# make_files PHASE: small and multi-MiB files for PHASE in src/PHASE.
make_files() {
    mkdir -p "src/$1"
    printf 'x' > "src/$1/one"
    head -c 4096 /dev/urandom > "src/$1/4k"
    head -c 100000 /dev/urandom > "src/$1/100k"
    head -c $((3 * 1048576 + 17)) /dev/urandom > "src/$1/3m"
    head -c $((5 * 1048576)) /dev/urandom > "src/$1/5m"
}
# put_all PHASE: put every file of src/PHASE at /PHASE/NAME, timed.
put_all() {
    local f t rc
    q "$HARD" mkdir v "/$1" || fail "$1: mkdir /$1"
    for f in src/"$1"/*; do
        t=$(now_ms)
        rc=0
        q "$HARD" put v "$f" "/$1/$(basename "$f")" 2> put.err || rc=$?
        [ "$rc" -eq 0 ] || { node_logs; fail "$1: put of $(basename "$f") failed (exit $rc; 124: hung, killed) after $(( $(now_ms) - t )) ms: $(cat put.err)"; }
        echo "  $1: put $(basename "$f") ($(stat -c %s "$f") bytes) $(( $(now_ms) - t )) ms"
    done
}
# get_all PHASE [BOUND_MS]: read back every file of PHASE, timed and
# compared; with BOUND_MS each read must end within it (and is killed 10 s
# after it, so a hung read fails the case with its time).
get_all() {
    local f t ms rc limit=$HARD
    [ -z "${2:-}" ] || limit=$(( $2 / 1000 + 10 ))
    for f in src/"$1"/*; do
        t=$(now_ms)
        rc=0
        q "$limit" get v "/$1/$(basename "$f")" got 2> get.err || rc=$?
        [ "$rc" -eq 0 ] || { node_logs; fail "$1: get of /$1/$(basename "$f") failed (exit $rc; 124: hung, killed) after $(( $(now_ms) - t )) ms: $(cat get.err)"; }
        ms=$(( $(now_ms) - t ))
        echo "  get /$1/$(basename "$f") $ms ms"
        cmp -s "$f" got || fail "/$1/$(basename "$f") reads back different"
        if [ -n "${2:-}" ] && [ "$ms" -gt "$2" ]; then
            fail "read of /$1/$(basename "$f") took $ms ms, over the bound of $2 ms (2 x (connect $C_MS + io $IO_MS) + 5000)"
        fi
    done
    rm -f got
}
phase_start() { PHASE_T=$(now_ms); echo "== $1"; }
phase_end() { echo "== $1: $(( $(now_ms) - PHASE_T )) ms"; }

# --- phase 1: 100 ms latency ------------------------------------------
phase_start "phase 1: 100 ms added round trip on all five nodes"
for i in $(seq 0 $((N - 1))); do delay_on "$i" 100; done
for i in $(seq 0 $((N - 1))); do
    p=$(probe "$i")
    [[ "$p" == refused* ]] || fail "phase 1: probe of node $i: $p"
    awk -v s="${p#refused }" 'BEGIN { exit !(s >= 0.09) }' || fail "phase 1: node $i answers in ${p#refused } s, the delay is not in effect"
    echo "  node-$i: connect refused after ${p#refused } s"
done
make_files p1
put_all p1
get_all p1
for i in $(seq 0 $((N - 1))); do delay_off "$i"; done
phase_end "phase 1"

# --- phase 2: 2% loss -----------------------------------------------------
phase_start "phase 2: 2% packet loss on all five nodes"
for i in $(seq 0 $((N - 1))); do nft_drop "$i" "meta protocol ip numgen random mod 50 == 0"; done
make_files p2
put_all p2
get_all p2
get_all p1
dropped=0
for i in $(seq 0 $((N - 1))); do
    d=$(nft_dropped "$i"); dropped=$((dropped + d)); echo "  node-$i: $d packets dropped"
    nft_clear "$i"
done
[ "$dropped" -gt 0 ] || fail "phase 2: no packet was dropped, the loss was not in effect"
phase_end "phase 2"

# --- phase 3: two nodes partitioned ---------------------------------------
phase_start "phase 3: nodes 0 and 1 partitioned (packets dropped silently)"
nft_drop 0 ""
nft_drop 1 ""
for i in 0 1; do p=$(probe "$i"); [ "$p" = silent ] || fail "phase 3: node $i is not partitioned: probe $p"; done
for i in 2 3 4; do p=$(probe "$i"); [[ "$p" == refused* ]] || fail "phase 3: node $i should answer: probe $p"; done
make_files p3
put_all p3
objects_p3=$(find src/p3 -type f | wc -l)
t=$(now_ms)
q "$HARD" status --json v > status3.json 2> status3.err || fail "phase 3: status during the partition: $(cat status3.err)"
echo "  status during the partition: $(( $(now_ms) - t )) ms"
python3 - status3.json "$objects_p3" <<'PY' || fail "phase 3: the partition's repair debt is not recorded: $(cat status3.json)"
import json, sys
s = json.load(open(sys.argv[1])); n = int(sys.argv[2])
# Each file written during the partition lacks its shards on node-0 and node-1.
assert s["degraded_objects"] >= n, (s["degraded_objects"], n)
assert s["missing_shards"] >= 2 * n, (s["missing_shards"], n)
print("  status: %d degraded objects, %d missing shards" % (s["degraded_objects"], s["missing_shards"]))
PY
echo "  reads with nodes 0 and 1 partitioned (bound $READ_BOUND_MS ms each):"
get_all p3 "$READ_BOUND_MS"
get_all p1 "$READ_BOUND_MS"
for i in 0 1; do [ "$(nft_dropped "$i")" -gt 0 ] || fail "phase 3: node $i's partition dropped nothing"; done
phase_end "phase 3"

# --- phase 4: the partition heals during a write --------------------------
phase_start "phase 4: a 64 MiB put while the partition of nodes 0 and 1 heals"
mkdir -p src/p4
head -c $((64 * 1048576)) /dev/urandom > src/p4/big
q "$HARD" mkdir v /p4
t=$(now_ms)
q "$HARD" put v src/p4/big /p4/big > put4.out 2> put4.err &
put_pid=$!
sleep 1
kill -0 "$put_pid" 2>/dev/null || fail "phase 4: the put ended within 1 s, before the partition healed (make the file larger)"
nft_clear 0
echo "  node-0 healed at $(( $(now_ms) - t )) ms"
sleep 1
if kill -0 "$put_pid" 2>/dev/null; then echo "  node-1 healed at $(( $(now_ms) - t )) ms (put still running)"; else echo "  node-1 healed at $(( $(now_ms) - t )) ms (put already ended)"; fi
nft_clear 1
rc=0
wait "$put_pid" || rc=$?
echo "  put of 64 MiB: $(( $(now_ms) - t )) ms, exit $rc"
[ "$rc" -eq 0 ] || { node_logs; fail "phase 4: the put across the healing partition failed: $(cat put4.err)"; }
get_all p4
phase_end "phase 4"

# --- phase 5: scrub, repair, everything back --------------------------------
phase_start "phase 5: network whole; scrub, scrub --repair, read all"
for i in $(seq 0 $((N - 1))); do p=$(probe "$i"); [[ "$p" == refused* ]] || fail "phase 5: node $i unreachable: probe $p"; done
rc=0
q "$HARD" scrub --json v > scrub1.json 2> scrub1.err || rc=$?
[ "$rc" -eq 1 ] || fail "phase 5: scrub before repair exited $rc (want 1: missing shards): $(cat scrub1.err)"
python3 - scrub1.json "$objects_p3" <<'PY' || fail "phase 5: scrub before repair: $(cat scrub1.json)"
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert not r["lost"], r["lost"]
rows = {x["name"]: x for x in r["nodes"]}
assert rows["node-0"]["missing"] >= n and rows["node-1"]["missing"] >= n, rows
print("  scrub: %d missing shards (node-0 %d, node-1 %d), nothing lost" % (r["missing"], rows["node-0"]["missing"], rows["node-1"]["missing"]))
PY
t=$(now_ms)
q "$HARD" scrub --repair --json v > scrub2.json 2> scrub2.err || fail "phase 5: scrub --repair failed: $(cat scrub2.err)"
echo "  scrub --repair: $(( $(now_ms) - t )) ms"
python3 - scrub2.json <<'PY' || fail "phase 5: scrub --repair: $(cat scrub2.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert not r["lost"] and r["repaired"] > 0, r
print("  repaired %d shards" % r["repaired"])
PY
q "$HARD" scrub --json v > scrub3.json 2> scrub3.err || fail "phase 5: scrub after repair is not clean: $(cat scrub3.err)"
python3 - scrub3.json <<'PY' || fail "phase 5: scrub after repair: $(cat scrub3.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["missing"] == 0 and r["corrupt"] == 0 and not r["lost"] and r["debt"] == 0, r
PY
q "$HARD" status --json v > status5.json
python3 - status5.json <<'PY' || fail "phase 5: status after repair still shows debt: $(cat status5.json)"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["degraded_objects"] == 0 and s["missing_shards"] == 0, s
PY
for p in p1 p2 p3 p4; do get_all "$p"; done
phase_end "phase 5"
