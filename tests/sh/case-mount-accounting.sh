# What the vault reports about its size. `df` on the mount: Used is what
# the vault stores (its objects' stored bytes scaled by k/n, so about the
# bytes written), not the host disk's used space, and Size = Used + Avail.
# `qsfs status`: logical bytes are the files' sizes, also after a rewrite
# in place (which a mount stores as a new object over part of the old one)
# and with holes (counted as ext4's `du --apparent-size` counts them),
# stored bytes are what the nodes hold, and the overhead is their ratio.
source "$(dirname "$0")/lib-mount.sh"

MiB=1048576
# df's numbers for the mount, in bytes: size used avail.
df_bytes() {
    df -B1 --output=size,used,avail "$MNT" | tail -n 1
}

mount_fresh
read -r size0 used0 avail0 < <(df_bytes)
[ "$used0" -lt $((MiB / 2)) ] || fail "df Used of an empty vault is $used0 bytes"
assert_eq "$((used0 + avail0))" "$size0" "df Size of the empty vault = Used + Avail"

# 20 MiB in: Used grows by about that (k/n of the shards: the data plus
# headers, tags and the last stripe's padding), whatever the host disk
# holds besides.
head -c $((20 * MiB)) /dev/urandom > "$MNT/twenty"
sync "$MNT/twenty"
read -r size1 used1 avail1 < <(df_bytes)
grew=$((used1 - used0))
[ "$grew" -ge $((20 * MiB)) ] && [ "$grew" -le $((21 * MiB)) ] ||
    fail "df Used grew by $grew bytes for 20 MiB written (want 20-21 MiB)"
assert_eq "$((used1 + avail1))" "$size1" "df Size = Used + Avail"
host_used=$(df -B1 --output=used "$VAULT" | tail -n 1)
[ "$host_used" -gt $((used1 + 100 * MiB)) ] &&
    echo "(host disk: $host_used bytes used; the mount shows $used1)"
df -h "$MNT"

# Removing it gives the space back in df (once its object is destroyed).
rm "$MNT/twenty"
used_back() { read -r _ u _ < <(df_bytes); [ "$u" -lt $((MiB / 2)) ]; }
wait_until 60 "df Used to drop after rm of the 20 MiB file" used_back

# status: a 4 MiB file rewritten in the middle (dd conv=notrunc), and a
# sparse file of 8 MiB with 1 MiB of data.
head -c $((4 * MiB)) /dev/urandom > "$MNT/rewritten"
head -c $((1 * MiB)) /dev/urandom | dd of="$MNT/rewritten" bs=64k seek=24 conv=notrunc status=none
truncate -s $((8 * MiB)) "$MNT/sparse"
head -c $((1 * MiB)) /dev/urandom | dd of="$MNT/sparse" bs=64k seek=32 conv=notrunc status=none
apparent=$(du -b --apparent-size -c "$MNT/rewritten" "$MNT/sparse" | tail -n 1 | cut -f1)
assert_eq $((12 * MiB)) "$apparent" "du --apparent-size in the mount"
cp "$MNT/rewritten" rewritten.copy
unmount

"$Q" status "$VAULT" --json > status.json
"$Q" ls "$VAULT" /rewritten --json > rewritten.json
python3 - status.json "$MiB" rewritten.json <<'PY' || fail "status --json: $(cat status.json)"
import json, sys
s = json.load(open(sys.argv[1]))
mib = int(sys.argv[2])
# Objects of the rewritten file: two (the file and its rewrite), or one
# once compaction (fs/compact.rs) has folded the rewrite into the file.
objs = {e["object"] for e in json.load(open(sys.argv[3]))[0]["inode"]["extents"]}
assert len(objs) in (1, 2), objs
logical, stored, overhead = s["logical_bytes"], s["stored_bytes"], s["overhead"]
# The files' sizes: 4 MiB + 8 MiB, not the objects' plaintext.
assert logical == 12 * mib, f"logical_bytes {logical}, want {12 * mib}"
assert s["files"] == 2, s["files"]
# What the nodes hold: 4 MiB + the 1 MiB rewrite + 1 MiB of sparse data,
# each 5/3 times (3 of 5) plus headers; or, once compaction has folded the
# rewrite into the file (a fifth of its objects' bytes were dead), 4 MiB +
# 1 MiB. Which one depends on whether it ran before the unmount.
shard_bytes = sum(n["bytes"] for n in s["nodes"])
assert stored == shard_bytes, f"stored_bytes {stored}, shard files on the nodes {shard_bytes}"
p = 4 + len(objs)
assert p * mib * 5 // 3 <= stored <= p * mib * 5 // 3 + 512 * 1024, f"stored_bytes {stored} with {len(objs)} object(s) in /rewritten"
assert abs(overhead - stored / logical) < 1e-9, f"overhead {overhead}, stored/logical {stored / logical}"
print(f"logical {logical}, stored {stored}, overhead {overhead:.3f}")
PY
# A rewrite in place alone: 4 MiB logical, however the objects overlap.
"$Q" rm "$VAULT" /sparse
logical=$("$Q" status "$VAULT" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["logical_bytes"])')
assert_eq 4194304 "$logical" "logical bytes of a 4 MiB file rewritten in the middle"
grep -q "^bytes     4.0 MiB logical (file sizes), " <<<"$("$Q" status "$VAULT")" ||
    fail "status text: $("$Q" status "$VAULT")"
"$Q" get "$VAULT" /rewritten - | cmp - rewritten.copy || fail "the rewritten file reads back wrong"
echo "accounting case passed"
