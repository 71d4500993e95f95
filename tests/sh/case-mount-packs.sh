# Packs (the default; `qsfs init --packs` asks for them by name): small files' shards go into NODE/packs, many
# to a file; a big file's shards keep files of their own. A tree copied in
# reads back after a remount and holds no small shard file. A pack record
# damaged on one node, and a pack file deleted from another, are found by
# scrub and rebuilt by `scrub --repair`. Deleting most files leaves dead
# bytes that repacks reclaim online (the pack bytes shrink while the rest
# reads back), and fsck is clean at the end.
source "$(dirname "$0")/lib-mount.sh"

mkdir src
for i in $(seq 1 300); do head -c $(((i * 997) % 60000 + 1)) /dev/urandom > "src/small-$i"; done
head -c 5000000 /dev/urandom > src/big-1
head -c 5000001 /dev/urandom > src/big-2

mount_fresh --packs
cp -a src "$MNT/"
remount
diff -r src "$MNT/src" || fail "the tree differs after a remount"

# 2 big files x 5 shards are files; the 300 small files' 1,500 shards are not.
files=$(find "$VAULT/nodes" -path '*/shards/*' -type f ! -name '.*' | wc -l)
assert_eq 10 "$files" "shard files (only the big files' shards)"
for i in 0 1 2 3 4; do
    ls "$VAULT/nodes/node-$i/packs/"*.pack > /dev/null 2>&1 || fail "node-$i has no pack"
done
unmount

# Damage inside node-2's pack (past its header, in shard payloads), and
# node-3's packs gone.
p=$(ls "$VAULT/nodes/node-2/packs/"*.pack | head -n 1)
size=$(stat -c %s "$p")
printf '\xde\xad\xbe\xef\xde\xad\xbe\xef' | dd of="$p" bs=1 seek=$((size / 2)) conv=notrunc status=none
rm -f "$VAULT/nodes/node-3/packs/"*.pack
if "$Q" scrub "$VAULT" > scrub1.out 2>&1; then
    fail "scrub found nothing wrong: $(cat scrub1.out)"
fi
grep -Eq "^node-3 +[0-9]+ +300 " scrub1.out ||
    fail "scrub did not find node-3's 300 packed shards missing: $(cat scrub1.out)"
# Bytes in a payload make a corrupt shard; in a record header they end the
# pack there, and the shards after it are missing.
awk '$1 == "node-2" && $3 + $4 > 0 { found = 1 } END { exit !found }' scrub1.out ||
    fail "scrub did not find node-2's damaged pack: $(cat scrub1.out)"
"$Q" scrub --repair "$VAULT" > scrub2.out 2>&1 || fail "scrub --repair: $(cat scrub2.out)"
"$Q" scrub "$VAULT" > scrub3.out 2>&1 || fail "scrub after the repair: $(cat scrub3.out)"
grep -q "healthy: every shard verified" scrub3.out || fail "scrub after the repair: $(cat scrub3.out)"

mount_vault
diff -r src "$MNT/src" || fail "the tree differs after the repair"
pack_bytes() { du -cb "$VAULT/nodes/node-"*/packs/*.pack | tail -n 1 | cut -f1; }
before=$(pack_bytes)
for i in $(seq 1 280); do rm "$MNT/src/small-$i"; done
# Deletions are collected beside the mount; status shows what they left.
wait_until 30 "the deleted files' shards to go" sh -c \
    "[ \$(\"$Q\" status \"$VAULT\" --json | python3 -c 'import json,sys; print(sum(n[\"shards_found\"] for n in json.load(sys.stdin)[\"nodes\"]))') -le 110 ]"
after=$(pack_bytes)
[ "$after" -lt $((before / 2)) ] || fail "packs hold $after bytes after deleting 280 of 300 small files (before: $before); no repack ran"
for i in $(seq 281 300); do cmp "src/small-$i" "$MNT/src/small-$i" || fail "small-$i after the repack"; done
cmp src/big-1 "$MNT/src/big-1" || fail "big-1 after the repack"
unmount
"$Q" fsck "$VAULT" > fsck.out 2>&1 || fail "fsck: $(cat fsck.out)"
grep -q '^packs = true' "$VAULT/qsfs.toml" || fail "qsfs.toml does not say the vault packs: $(cat "$VAULT/qsfs.toml")"
# A folder added later packs too.
"$Q" node add "$VAULT" node-5 --dir "$PWD/node-5" > add.out 2>&1 || fail "node add: $(cat add.out)"
[ -d node-5/packs ] || fail "the added node folder does not pack: $(ls -la node-5)"
mount_vault
for i in $(seq 281 300); do cmp "src/small-$i" "$MNT/src/small-$i" || fail "small-$i after a remount"; done
echo "packs: $before bytes before deleting 280 files, $after after the repack"
