# A file open when qsfs dies keeps what its writer wrote: a writer appends
# a line every few milliseconds and never closes the file; the qsfs
# process is killed (-9) mid-stream; after the dead mount is cleaned up
# and the vault mounted again, every line whose write(2) returned before
# the kill is there, in order, and nothing else but possibly the lines
# written after the writer's last record. A second writer holds a file
# it truncated and rewrote, and a third punched a hole: the cut bytes
# must not come back.
source "$(dirname "$0")/lib-mount.sh"

mount_fresh
# A sealed file that the second writer will cut and rewrite while open.
head -c 65536 /dev/zero | tr '\0' A > "$MNT/cut"
head -c 65536 /dev/zero | tr '\0' P > "$MNT/punched"
sync "$MNT/cut" "$MNT/punched"

pid=$(mount_pid)
: > recorded
python3 - "$MNT" recorded <<'PY' &
import os, sys, time
mnt, rec = sys.argv[1], sys.argv[2]
log = os.open(os.path.join(mnt, "live.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
cut = os.open(os.path.join(mnt, "cut"), os.O_RDWR)
os.ftruncate(cut, 4096)
os.ftruncate(cut, 65536)
os.pwrite(cut, b"Z" * 10, 60000)
pun = os.open(os.path.join(mnt, "punched"), os.O_RDWR)
os.posix_fallocate  # present
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
if libc.fallocate(pun, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, ctypes.c_long(8192), ctypes.c_long(16384)) != 0:
    sys.exit("fallocate punch hole failed: errno %d" % ctypes.get_errno())
with open(rec, "w") as r:
    r.write("cut-done\n"); r.flush()
    i = 0
    while True:
        try:
            os.write(log, b"line %06d\n" % i)
        except OSError:
            break
        r.write("%d\n" % i); r.flush()
        i += 1
        time.sleep(0.003)
PY
wpid=$!
enough() {
    [ "$(wc -l < recorded)" -ge 200 ] && return 0
    kill -0 "$wpid" 2>/dev/null || fail "the writer stopped before the kill"
    return 1
}
wait_until 120 "the writer to record 200 lines" enough
ours_alive "$pid" || fail "mount process $pid is not running"
kill -9 "$pid"
wait_exited "$pid"
wait "$wpid" || true
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || fail "cannot clean up the dead mount"
last=$(tail -n 1 recorded)
[[ "$last" =~ ^[0-9]+$ ]] || fail "no line recorded: $(tail -n 3 recorded)"
echo "the writer recorded lines 0..$last before the kill"

mount_vault
python3 - "$MNT/live.log" "$last" <<'PY' || fail "live.log after the kill"
import sys
data = open(sys.argv[1], "rb").read()
last = int(sys.argv[2])
lines = data.split(b"\n")
if lines and lines[-1] == b"":
    lines.pop()
want = [b"line %06d" % i for i in range(len(lines))]
if lines != want:
    bad = next(i for i, (a, b) in enumerate(zip(lines, want)) if a != b) if any(a != b for a, b in zip(lines, want)) else len(want)
    sys.exit(f"line {bad} is {lines[bad] if bad < len(lines) else None!r}, expected {want[bad] if bad < len(want) else None!r}")
if len(lines) < last + 1:
    sys.exit(f"{len(lines)} lines survived, {last + 1} were written before the kill")
if len(lines) > last + 2:
    sys.exit(f"{len(lines)} lines, but only {last + 1} (+1 in flight) were written")
print(f"{len(lines)} lines survived ({last + 1} recorded)")
PY
python3 - "$MNT/cut" "$MNT/punched" <<'PY' || fail "cut or punched bytes came back after the kill"
import sys
c = open(sys.argv[1], "rb").read()
want = b"A" * 4096 + bytes(60000 - 4096) + b"Z" * 10 + bytes(65536 - 60010)
if c != want:
    sys.exit(f"cut: {len(c)} bytes, {c.count(b'A')} A (want 4096), {c.count(b'Z')} Z (want 10)")
p = open(sys.argv[2], "rb").read()
want = b"P" * 8192 + bytes(16384) + b"P" * (65536 - 24576)
if p != want:
    sys.exit(f"punched: {len(p)} bytes, {p.count(b'P')} P (want {65536 - 16384}), zeros {p.count(0)}")
PY
grep -q 'sealing data the previous mount left staged.*from="journal"' "$VAULT/qsfs.log" ||
    fail "no journal recovery line in qsfs.log"
unmount
"$Q" fsck "$VAULT" > fsck.txt || fail "fsck after the kill: $(cat fsck.txt)"
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty after a clean unmount: $(ls -A "$VAULT/staging")"

# A removal answered before a kill -9 stays done (found by a tryout: the
# removed file came back when the kill came within a second). The files
# are sealed and durable first, so only the removal is in question.
mount_vault
for i in 1 2 3; do echo "gone $i" > "$MNT/rm$i"; done
mkdir "$MNT/rmdir"
echo replaced > "$MNT/new"
mv_src="$MNT/rm3"
sync -f "$MNT"
sleep 3
pid=$(mount_pid)
rm "$MNT/rm1"
rmdir "$MNT/rmdir"
mv "$MNT/new" "$mv_src"
kill -9 "$pid"
wait_exited "$pid"
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || fail "cannot clean up the dead mount"
mount_vault
[ ! -e "$MNT/rm1" ] || fail "a file removed before the kill -9 came back"
[ ! -e "$MNT/rmdir" ] || fail "a folder removed before the kill -9 came back"
assert_eq replaced "$(cat "$mv_src")" "a file renamed over another before the kill -9"
assert_eq "gone 2" "$(cat "$MNT/rm2")" "a file left alone"
unmount
"$Q" fsck "$VAULT" > fsck2.txt || fail "fsck after the second kill: $(cat fsck2.txt)"
