# A node folder disappears while the vault is mounted (a disk pulled, a
# folder deleted). Every file still reads back; the mount log calls the
# node offline (not "shards missing", whose advice, `qsfs scrub
# --repair`, cannot help: scrub never writes into a missing folder) and
# says to restore the folder or, after `qsfs umount`, adopt a replacement
# with `qsfs node adopt`. The live status and fsck (through the mount)
# agree that the node was not checked and why; `qsfs node adopt` is
# refused while the mount is live, naming the mount; fsck does not count
# the mount's journal and stock folders as staged files. After the
# unmount the replacement folder is adopted and `scrub --repair` rebuilds
# its shards.
source "$(dirname "$0")/lib-mount.sh"

FILES=20
mkdir src
for i in $(seq 1 "$FILES"); do
    head -c $(( (i * 7919) % 40000 + 1 )) /dev/urandom > "src/f$i"
done
mount_fresh
cp src/* "$MNT/"
# Every seal committed; the new mount reads from the nodes, not caches.
remount

# The mount keeps its journal and stock folders in the staging folder;
# neither is a staged file.
[ -d "$VAULT/staging/journal" ] || fail "no staging journal folder while mounted"
"$Q" fsck "$VAULT" --json > fsck0.json 2> fsck0.err || fail "fsck of the healthy mount: $(cat fsck0.err)"
python3 - fsck0.json <<'PY' || fail "fsck counted non-data in the staging folder: $(cat fsck0.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["staging"]["files"] == [], r["staging"]
assert r["nodes_not_checked"] == 0, r
PY
"$Q" fsck "$VAULT" > fsck0.txt 2>&1 || fail "fsck text of the healthy mount: $(cat fsck0.txt)"
grep -q "0 files in the staging folder" fsck0.txt || fail "fsck text counts staging files: $(cat fsck0.txt)"

NODE="$VAULT/nodes/node-2"
[ -f "$NODE/qsfs-node" ] || fail "node-2 has no marker"
log_before=$(wc -l < "$VAULT/qsfs.log")
rm -rf "$NODE"

for i in $(seq 1 "$FILES"); do
    cmp -s "src/f$i" "$MNT/f$i" || fail "f$i differs with node-2's folder gone"
done

# The live status and fsck agree: node-2 was not checked, because its
# folder is missing; its shards are either recorded missing by the reads
# above or unchecked, never "placed but missing".
"$Q" status "$VAULT" --json > live.json || fail "status of the live mount: $(cat live.json)"
python3 - live.json "$FILES" <<'PY' || fail "live status: $(cat live.json)"
import json, sys
s = json.load(open(sys.argv[1])); files = int(sys.argv[2])
assert s["mount"] is not None, "the status did not come from the mount"
n = {x["name"]: x for x in s["nodes"]}["node-2"]
assert n["not_checked"]["reason"] == "folder-missing", n
assert n["health"]["state"] == "offline", n
assert n["placed_missing"] == 0 and s["placed_missing"] == 0, n
assert n["placed_unchecked"] + n["shards_unplaced"] == files, n
assert s["placed_unchecked"] == n["placed_unchecked"], s
assert "qsfs node adopt" in n["next_step"], n
PY
"$Q" status "$VAULT" > live.txt
grep -q "^unchecked .*node-2: its folder .* is missing" live.txt || fail "live status text: $(cat live.txt)"
rc=0
"$Q" fsck "$VAULT" --json > fsck1.json 2> fsck1.err || rc=$?
[ "$rc" -eq 1 ] || fail "fsck with a node folder missing exited $rc (want 1): $(cat fsck1.err)"
grep -q "1 node not checked (node-2)" fsck1.err || fail "fsck's error line: $(cat fsck1.err)"
python3 - fsck1.json <<'PY' || fail "fsck through the mount: $(cat fsck1.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["nodes_not_checked"] == 1 and not r["clean"], r
n = {x["node"]: x for x in r["nodes"]}["node-2"]
assert n["not_checked"]["reason"] == "folder-missing", n
assert "qsfs node adopt" in n["next_step"] and "qsfs umount" in n["next_step"], n
PY

# Adopting needs the vault unmounted: refused now, naming the mount.
rc=0
"$Q" node adopt "$VAULT" node-2 > adopt.out 2> adopt.err || rc=$?
[ "$rc" -eq 1 ] || fail "node adopt on a mounted vault exited $rc: $(cat adopt.out adopt.err)"
grep -q "mounted at $MNT" adopt.err || fail "node adopt's refusal does not name the mount: $(cat adopt.err)"
grep -q "qsfs umount $MNT" adopt.err || fail "node adopt's refusal does not say to unmount: $(cat adopt.err)"
[ ! -e "$NODE" ] || fail "the refused adopt made $NODE"

unmount
tail -n +"$((log_before + 1))" "$VAULT/qsfs.log" > offline.log
grep -q "on node-2 is bad (missing); read around it; restore node-2's folder" offline.log ||
    fail "no offline warning with its advice: $(grep ' WARN ' offline.log | head -n 5)"
grep -q "node-2: [0-9]* shards\? unreadable (node offline) in the last [0-9]* s .*restore node-2's folder .*after \`qsfs umount MOUNTPOINT\` (when mounted) run \`qsfs node adopt VAULT node-2\`" offline.log ||
    fail "no summary of the offline node's reads with its advice: $(grep ' WARN ' offline.log | head -n 10)"
if grep -Eq "node-2: [0-9]+ shards? missing in the last" offline.log; then
    fail "the offline node's shards were summarised as missing (scrub advice): $(grep -E 'node-2: [0-9]+ shards? missing' offline.log | head -n 2)"
fi

# After the unmount: a replacement folder is adopted and rebuilt.
mkdir "$NODE"
"$Q" node adopt "$VAULT" node-2 > adopt2.out 2>&1 || fail "node adopt after umount: $(cat adopt2.out)"
"$Q" scrub "$VAULT" --repair > repair.out 2>&1 || fail "scrub --repair after adopting: $(tail -n 20 repair.out)"
"$Q" fsck "$VAULT" > fsck2.out 2>&1 || fail "fsck after the repair: $(tail -n 15 fsck2.out)"
"$Q" status "$VAULT" --json > after.json
python3 - after.json "$FILES" <<'PY' || fail "status after the repair: $(cat after.json)"
import json, sys
s = json.load(open(sys.argv[1])); files = int(sys.argv[2])
for k in ("placed_missing", "shards_unplaced", "placed_unchecked"):
    assert s[k] == 0, (k, s[k])
n = {x["name"]: x for x in s["nodes"]}["node-2"]
assert n["shards_found"] == files and n["not_checked"] is None, n
PY
mount_vault
for i in $(seq 1 "$FILES"); do
    cmp -s "src/f$i" "$MNT/f$i" || fail "f$i differs after the repair"
done
unmount
echo "node-2's folder lost and replaced under a mount; $FILES files intact"
