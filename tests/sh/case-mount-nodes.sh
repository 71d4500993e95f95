# Two of five node folders gone: files written through the mount still
# read back identical through the mount (3 of 5 shards); a new file cannot
# reach the write quorum (4), so its close fails with an I/O error and the
# data stays staged (readable, in VAULT/staging); with the node folders
# restored, the next mount seals it, and after a clean unmount the CLI
# reads it back.
source "$(dirname "$0")/lib-mount.sh"

mkdir src
for s in 0 1 100 4096 65537 1048576 3000001; do head -c "$s" /dev/urandom > "src/f$s"; done
head -c 10485760 /dev/urandom > "src/ten MB"
head -c 700000 /dev/urandom > new.src

mount_fresh
cp -r src "$MNT/data"
unmount
cp -a "$VAULT/nodes" nodes.bak
rm -rf "$VAULT/nodes/node-1" "$VAULT/nodes/node-3"

mount_vault
for f in src/*; do
    cmp "$f" "$MNT/data/${f#src/}" || fail "${f#src/} differs with node-1 and node-3 gone"
done
ls -l "$MNT/data" > /dev/null

# A new file: 3 of 5 shards written < write quorum 4.
if cp new.src "$MNT/new" 2> cp.err; then
    fail "cp of a new file succeeded with only 3 of 5 nodes (write quorum 4)"
fi
grep -q "Input/output error" cp.err || fail "cp did not report an I/O error: $(cat cp.err)"
grep -q "only 3 of 5 shards written (write quorum 4)" "$VAULT/qsfs.log" || fail "no quorum error in qsfs.log: $(tail -n 5 "$VAULT/qsfs.log")"
[ -f "$MNT/new" ] || fail "the new file is not there after its failed close"
ino=$(stat -c %i "$MNT/new")
[ -f "$VAULT/staging/$ino" ] || fail "no staging file $VAULT/staging/$ino for the unsealed file"
cmp <(head -c 700000 "$VAULT/staging/$ino") new.src || fail "the staging file does not hold the data"
assert_eq 700000 "$(stat -c %s "$MNT/new")" "size of the unsealed file"
cmp "$MNT/new" new.src || fail "the unsealed file does not read back its staged data"
# fsync reports the failure too.
if python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.fsync(fd)' "$MNT/new" 2> fsync.err; then
    fail "fsync of the unsealed file succeeded with only 3 nodes"
fi
grep -q "Input/output error" fsync.err || fail "fsync did not say I/O error: $(cat fsync.err)"
# Old files are still readable and the vault still takes metadata changes.
mkdir "$MNT/still-works"
cmp "src/ten MB" "$MNT/data/ten MB" || fail "reading after the failed write"
unmount_staged 1
[ -f "$VAULT/staging/$ino" ] || fail "the staged data is gone after the unmount"
grep -q "/new (ino $ino): not sealed at unmount" "$VAULT/qsfs.log" || fail "unmount did not name the unsealed file: $(tail -n 5 "$VAULT/qsfs.log")"

# The node folders come back: the next mount seals the staged data.
cp -a nodes.bak/node-1 nodes.bak/node-3 "$VAULT/nodes/"
mount_vault
cmp "$MNT/new" new.src || fail "the staged file after the nodes came back"
unmount
grep -q "sealing data the previous mount left staged ino=$ino bytes=700000" "$VAULT/qsfs.log" ||
    fail "no recovery line for ino $ino: $(tail -n 8 "$VAULT/qsfs.log")"
grep -q "sealed ino=$ino bytes=700000 size=700000 .*shards=\"5/5\"" "$VAULT/qsfs.log" ||
    fail "no 5/5 seal line for ino $ino: $(tail -n 8 "$VAULT/qsfs.log")"
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty after the seal: $(ls -A "$VAULT/staging")"
"$Q" get "$VAULT" /new - | cmp - new.src || fail "qsfs get /new after the nodes came back"
for f in src/*; do
    "$Q" get "$VAULT" "/data/${f#src/}" - | cmp - "$f" || fail "qsfs get /data/${f#src/}"
done
# Reads during the outage recorded the missing shards as repair debt; the
# shards are back, so scrub --repair clears the debt without rebuilding.
"$Q" status --json "$VAULT" > before.json
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["degraded_objects"] > 0, s["degraded_objects"]' before.json ||
    fail "no repair debt recorded during the outage"
"$Q" scrub "$VAULT" --repair > scrub.txt || fail "scrub --repair after the restore: $(cat scrub.txt)"
"$Q" status "$VAULT" > status.txt
cat status.txt
assert_eq 5 "$(grep -cE '^  node-[0-4] +ok ' status.txt)" "nodes ok after the restore"
"$Q" status --json "$VAULT" > after.json
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["degraded_objects"] == 0 and s["missing_shards"] == 0, s' after.json ||
    fail "repair debt left after scrub --repair: $(cat after.json)"
"$Q" scrub "$VAULT" > /dev/null || fail "a second scrub is not clean"
