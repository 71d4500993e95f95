# Maintenance while mounted: a sixth node is added, then node-2 is drained
# while files are being written through the mount (the drain runs inside
# the mount process through VAULT/control.sock). Afterwards every file
# reads back identical, node-2's folder holds no shard, scrub, audit and
# fsck (also through the socket) find nothing wrong, and after the unmount
# the CLI reads everything back and node-2 can be removed.
source "$(dirname "$0")/lib-mount.sh"

mkdir src
for i in $(seq 1 12); do head -c $((i * 150001)) /dev/urandom > "src/old$i"; done
for i in $(seq 1 40); do head -c $(( (i % 7) * 90001 + 1 )) /dev/urandom > "src/new$i"; done

mount_fresh
mkdir "$MNT/d"
cp src/old* "$MNT/d/"
unmount

# A sixth node, so node-2 has somewhere to go (n = 5 needs five others).
"$Q" node add "$VAULT" node-5 --dir "$VAULT/nodes/node-5" > add.out || fail "node add: $(cat add.out)"
mount_vault

# Writers: 40 files, one after the other, while the drain runs.
(
    for i in $(seq 1 40); do
        cp "src/new$i" "$MNT/d/new$i" || exit 1
        sleep 0.05
    done
) &
writer=$!
# The drain starts once the writer is under way (its first file is done).
first_done() {
    [ -e "$MNT/d/new2" ] && return 0
    kill -0 "$writer" 2>/dev/null || fail "the writer stopped before its second file"
    return 1
}
wait_until 60 "the writer's first file" first_done
"$Q" node drain "$VAULT" node-2 --json > drain.json 2> drain.err ||
    fail "node drain while mounted failed: $(cat drain.err)"
wait "$writer" || fail "a writer failed during the drain"
python3 - drain.json <<'PY' || fail "drain report: $(cat drain.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["shards_moved"] >= 1, r
assert not r.get("failures"), r
PY

for f in src/*; do
    cmp "$f" "$MNT/d/${f#src/}" || fail "${f#src/} differs after the drain (mounted)"
done
left=$(find "$VAULT/nodes/node-2/shards" -type f 2>/dev/null | wc -l)
assert_eq 0 "$left" "shard files left on the drained node-2"

"$Q" scrub "$VAULT" --json > scrub.json 2> scrub.err || fail "scrub while mounted: $(cat scrub.err) $(cat scrub.json)"
"$Q" audit "$VAULT" > audit.out 2> audit.err || fail "audit while mounted: $(cat audit.err) $(cat audit.out)"
"$Q" fsck "$VAULT" > fsck.out 2> fsck.err || fail "fsck while mounted: $(cat fsck.err) $(cat fsck.out)"
unmount

for f in src/*; do
    "$Q" get "$VAULT" "/d/${f#src/}" - | cmp - "$f" || fail "qsfs get /d/${f#src/} after the unmount"
done
"$Q" node remove "$VAULT" node-2 > remove.out 2>&1 || fail "node remove after the drain: $(cat remove.out)"
grep -q '"node-2"' "$VAULT/qsfs.toml" && fail "qsfs.toml still lists node-2"
"$Q" scrub "$VAULT" > /dev/null || fail "scrub after node-2 was removed"
echo "drained node-2 while 40 files were written; $(grep -c . drain.json) report lines"
