# Staged data is retried in the background: two of five node folders go
# away while the mount runs, so new files cannot reach the write quorum
# (their close fails with EIO and the data stays staged); `qsfs status`
# on the live mount shows the staged files and bytes; the folders come
# back and, with no remount and no fsync, the staged data is sealed onto
# all five nodes within seconds. The log says so once per file, not once
# per retry. A write with one node gone shows as degraded in the live
# status.
source "$(dirname "$0")/lib-mount.sh"

mount_fresh
mkdir src
for i in 1 2 3; do head -c $((i * 300000)) /dev/urandom > "src/f$i"; done
cp src/f1 "$MNT/before"

# One node gone: a write still reaches the quorum (4 of 5) and the live
# status counts the object as below full redundancy.
mv "$VAULT/nodes/node-1" "$VAULT/nodes/node-1.away"
cp src/f1 "$MNT/degraded" || fail "cp with 4 of 5 nodes failed"
# close(2) returns once the shards are written; the manifest commits a
# moment later (the staging journal covers a kill in between).
degraded() {
    "$Q" status "$VAULT" --json > degraded.json 2>/dev/null || return 1
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["degraded_objects"] >= 1 else 1)' degraded.json
}
wait_until 10 "the 4-of-5 write to count as degraded in the live status" degraded
# Captured first: `status | grep -q` fails under pipefail when grep stops
# reading before status has written its last line (SIGPIPE).
text=$("$Q" status "$VAULT")
grep -q "below full redundancy" <<<"$text" || fail "status text does not show the degraded write: $text"
mv "$VAULT/nodes/node-3" "$VAULT/nodes/node-3.away"
for i in 1 2 3; do
    if cp "src/f$i" "$MNT/staged$i" 2> cp.err; then
        fail "cp of staged$i succeeded with 3 of 5 nodes (write quorum 4)"
    fi
    grep -q "Input/output error" cp.err || fail "cp did not report an I/O error: $(cat cp.err)"
done
for i in 1 2 3; do cmp "src/f$i" "$MNT/staged$i" || fail "staged$i does not read back its staged data"; done

"$Q" status "$VAULT" --json > live.json || fail "qsfs status on the live mount: $(cat live.json)"
python3 - live.json <<'PY' || fail "status while mounted: $(cat live.json)"
import json, sys
s = json.load(open(sys.argv[1]))
m = s["mount"]
assert m is not None, "no mount section"
assert m["staged_files"] >= 3, m
assert m["staged_bytes"] >= 300000 + 600000 + 900000, m
assert m["failing_files"] >= 3, m
PY
"$Q" status "$VAULT" > live.txt
grep -q "staged " live.txt || fail "status shows no staged line: $(cat live.txt)"

mv "$VAULT/nodes/node-1.away" "$VAULT/nodes/node-1"
mv "$VAULT/nodes/node-3.away" "$VAULT/nodes/node-3"
settled() {
    "$Q" status "$VAULT" --json > now.json 2>/dev/null || return 1
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["mount"]; sys.exit(0 if m["staged_files"] == 0 and m["failing_files"] == 0 else 1)' now.json
}
wait_until 60 "the staged files to be sealed in the background" settled
for i in 1 2 3; do
    ino=$(stat -c %i "$MNT/staged$i")
    grep -qE "sealed ino=$ino bytes=$((i * 300000)) .*shards=\"5/5\"" "$VAULT/qsfs.log" ||
        fail "no 5/5 seal of staged$i (ino $ino): $(grep "ino=$ino" "$VAULT/qsfs.log" | tail -n 3)"
done
retries=$(grep -c "retrying a failed seal" "$VAULT/qsfs.log" || true)
echo "$retries retry lines"
quorum=$(grep -c "shards written (write quorum" "$VAULT/qsfs.log" || true)
[ "$quorum" -le 6 ] || fail "$quorum quorum errors logged for 3 files (one per file expected, retries quiet)"
unmount
for i in 1 2 3; do "$Q" get "$VAULT" "/staged$i" - | cmp - "src/f$i" || fail "qsfs get /staged$i"; done
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty: $(ls -A "$VAULT/staging")"

# An unmount while nodes are still down: it does not hang and does not
# pretend every seal finished; it exits 3 naming the staged file count,
# and the next mount (nodes back) seals the data.
mount_vault
mv "$VAULT/nodes/node-1" "$VAULT/nodes/node-1.away"
mv "$VAULT/nodes/node-3" "$VAULT/nodes/node-3.away"
head -c 123457 /dev/urandom > src/late
cp src/late "$MNT/late" 2>/dev/null && fail "cp of late succeeded with 3 of 5 nodes"
# Times survive the reseal at the next mount: one set after the write (as
# `cp -p` and `touch -d` do), one left at the time of the write.
python3 -c 'import os, sys; os.utime(sys.argv[1], (1620191105, 1620191105))' "$MNT/late" \
    || fail "utime of the staged file"
head -c 2000 /dev/urandom > src/late2
cp src/late2 "$MNT/late2" 2>/dev/null && fail "cp of late2 succeeded with 3 of 5 nodes"
written=$(date +%s)
sleep 1.1
"$Q" status "$VAULT" > reach2.txt || fail "status with 2 nodes away: $(cat reach2.txt)"
grep -q "^reach     only 3 of 5 nodes take writes, fewer than the write quorum 4" reach2.txt \
    || fail "status does not say writes stay staged: $(cat reach2.txt)"
unmount_staged 2
mv "$VAULT/nodes/node-4" "$VAULT/nodes/node-4.away"
"$Q" status "$VAULT" > reach3.txt || fail "status with 3 nodes away: $(cat reach3.txt)"
grep -q "^reach     ONLY 2 of 5 nodes answer, fewer than the k=3 a file needs" reach3.txt \
    || fail "status does not say files cannot be read: $(cat reach3.txt)"
mv "$VAULT/nodes/node-4.away" "$VAULT/nodes/node-4"
grep -q "stay staged in .*the next mount seals them" "$VAULT/qsfs.log" || fail "the log's last line claims every seal finished: $(tail -n 2 "$VAULT/qsfs.log")"
! grep -q "every seal is finished" <(tail -n 1 "$VAULT/qsfs.log") || fail "log says every seal is finished"
mv "$VAULT/nodes/node-1.away" "$VAULT/nodes/node-1"
mv "$VAULT/nodes/node-3.away" "$VAULT/nodes/node-3"
# A log past 64 MiB is rotated to qsfs.log.1 when a mount starts.
truncate -s 65M "$VAULT/qsfs.log"
mount_vault
[ "$(stat -c %s "$VAULT/qsfs.log.1")" -eq $((65 << 20)) ] || fail "the 65 MiB log was not rotated to qsfs.log.1"
[ "$(stat -c %s "$VAULT/qsfs.log")" -lt 1048576 ] || fail "qsfs.log still large after rotation"
cmp src/late "$MNT/late" || fail "late does not read back after the remount"
cmp src/late2 "$MNT/late2" || fail "late2 does not read back after the remount"
[ "$(stat -c %Y "$MNT/late")" -eq 1620191105 ] || fail "late lost the mtime set after its write: $(stat -c %y "$MNT/late")"
[ "$(stat -c %Y "$MNT/late2")" -le "$written" ] || fail "late2's mtime is the remount time, not its write time: $(stat -c %y "$MNT/late2") (written by $written)"
unmount
"$Q" get "$VAULT" /late - | cmp - src/late || fail "qsfs get /late after the remount"
