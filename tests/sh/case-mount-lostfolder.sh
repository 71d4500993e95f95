# Two node folders lose their contents while the vault is mounted (issue
# 10): `rm -rf` of node-1's and node-3's `shards/` (their markers stay).
# Every file still reads back identical, and the log stays readable: one
# line per node and cause, then summaries, not a warning per read. scrub
# and node list call both nodes damaged with the same counts; fsck
# sends to `scrub --repair`, which (through the mount's control socket)
# rebuilds everything with exit 0; the next scrub finds nothing, node list
# agrees, and fsck is clean. With QSFS_TEST_CLUSTER=1 the node folders are
# those of five node servers (the same folder code on the server side).
source "$(dirname "$0")/lib-mount.sh"

FILES=300
mkdir src
for i in $(seq 1 "$FILES"); do
    head -c $(( (i * 7919) % 30000 + 1 )) /dev/urandom > "src/f$i"
done

node_dir() {
    if [ -n "${QSFS_TEST_CLUSTER:-}" ]; then echo "$VAULT.cluster/$1"; else echo "$VAULT/nodes/$1"; fi
}
shard_count() {
    find "$(node_dir "$1")/shards" -type f ! -name '.*' 2>/dev/null | wc -l
}

# A file per shard (`--no-packs`): the fault is the loss of the shard
# files; case-mount-packs loses a pack.
mount_fresh --no-packs
mkdir "$MNT/d"
cp src/* "$MNT/d/"
# Every seal finished and committed; the new mount starts with cold caches,
# so the reads below go to the nodes.
remount

for n in node-1 node-3; do
    [ "$(shard_count "$n")" -ge "$FILES" ] || fail "$n holds $(shard_count "$n") shards before the fault"
    [ -f "$(node_dir "$n")/qsfs-node" ] || fail "$n has no marker"
    rm -rf "$(node_dir "$n")/shards"
done
log_before=$(wc -l < "$VAULT/qsfs.log")

# Reads go around the lost shards.
for i in $(seq 1 "$FILES"); do
    cmp -s "src/f$i" "$MNT/d/f$i" || fail "f$i differs with node-1 and node-3 emptied"
done
tail -n +"$((log_before + 1))" "$VAULT/qsfs.log" > reads.log
warns=$(grep -c ' WARN ' reads.log || true)
for n in node-1 node-3; do
    grep -q "shard [0-9] of object [0-9a-f]* on $n is bad (missing); read around it" reads.log ||
        fail "no warning about $n's missing shards: $(head -n 5 reads.log)"
done
[ "$warns" -lt 20 ] || fail "$warns warnings for $FILES reads (one per read?): $(head -n 30 reads.log)"

# Everyone calls both nodes damaged, with the same counts.
"$Q" scrub "$VAULT" --json > before.json 2> before.err && fail "scrub found nothing: $(cat before.json)"
"$Q" node list "$VAULT" --json > list-before.json || fail "node list: $(cat list-before.json)"
"$Q" node list "$VAULT" > list-before.txt
compare() { # SCRUB-JSON LIST-JSON WANT-DAMAGED
    python3 - "$@" <<'PY'
import json, sys
scrub = {n["name"]: n for n in json.load(open(sys.argv[1]))["nodes"]}
nodes = {n["name"]: n for n in json.load(open(sys.argv[2]))}
damaged = set(sys.argv[3].split(",")) if sys.argv[3] else set()
bad = []
assert set(scrub) == set(nodes), (scrub.keys(), nodes.keys())
for name, s in scrub.items():
    n = nodes[name]
    if n["missing"] != s["missing"] or n["shards"] != s["ok"] + s["corrupt"]:
        bad.append(f"{name}: node list {n['shards']} held/{n['missing']} missing, "
                   f"scrub {s['ok']} ok/{s['corrupt']} corrupt/{s['missing']} missing")
    want = "damaged" if name in damaged else "ok"
    if n["health"] != want or s["health"].split(":")[0] != want:
        bad.append(f"{name}: health node list {n['health']!r}, scrub {s['health']!r}, want {want}")
    if name in damaged and s["missing"] == 0:
        bad.append(f"{name}: scrub counts no missing shard")
if bad:
    sys.exit("; ".join(bad))
PY
}
compare before.json list-before.json node-1,node-3 || fail "scrub and node list disagree before the repair"
grep -q "^node-1 .*damaged" list-before.txt || fail "node list: $(cat list-before.txt)"

# fsck's advice leads to the repair.
"$Q" fsck "$VAULT" > fsck.out 2> fsck.err && fail "fsck found nothing"
grep -q "on node-1: missing -- .*\`qsfs scrub --repair\` rebuilds it" fsck.out || fail "fsck's advice: $(tail -n 5 fsck.out)"

# The repair, inside the mount process.
"$Q" scrub "$VAULT" --repair > repair.out 2> repair.err ||
    fail "scrub --repair exit $?: $(tail -n 20 repair.out) $(tail -n 5 repair.err)"
grep -q "internal error" repair.out repair.err && fail "internal error in the repair: $(grep -m 3 'internal error' repair.out repair.err)"
grep -q "healthy: everything found was repaired" repair.out || fail "repair: $(tail -n 5 repair.out)"
for n in node-1 node-3; do
    [ "$(shard_count "$n")" -ge "$FILES" ] || fail "$n holds $(shard_count "$n") shards after the repair"
done

# Clean afterwards, and node list agrees.
"$Q" scrub "$VAULT" --json > after.json 2> after.err || fail "second scrub not clean: $(cat after.json) $(cat after.err)"
python3 - after.json <<'PY' || fail "second scrub: $(cat after.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["findings"] == [] and r["missing"] == 0 and r["corrupt"] == 0, r
PY
"$Q" node list "$VAULT" --json > list-after.json
compare after.json list-after.json "" || fail "scrub and node list disagree after the repair"
"$Q" fsck "$VAULT" > fsck2.out 2>&1 || fail "fsck after the repair: $(tail -n 12 fsck2.out)"
for i in $(seq 1 "$FILES"); do
    cmp -s "src/f$i" "$MNT/d/f$i" || fail "f$i differs after the repair"
done
unmount
# The reads' warnings were summarised, not dropped.
tail -n +"$((log_before + 1))" "$VAULT/qsfs.log" > all.log
grep -Eq "node-(1|3): [0-9]+ shards? missing in the last [0-9]+ s \([0-9]+ times?: reads went around them\); run \`qsfs scrub --repair\`" all.log ||
    fail "no summary of the repeated warnings: $(grep ' WARN ' all.log | head -n 10)"
warns=$(grep -c ' WARN ' all.log || true)
[ "$warns" -lt 20 ] || fail "$warns warnings in the log: $(grep ' WARN ' all.log | head -n 30)"
echo "rebuilt $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["shards"])' after.json) shards' worth of vault after losing two shard folders; $warns warnings logged"
