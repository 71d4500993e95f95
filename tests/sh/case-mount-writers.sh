# Concurrent writers and a reader: two background dd's of ~30 MB each
# into different files of the mount while a third, already sealed file is
# read over and over; every checksum matches, during and after, and after
# a remount. Then two writers appending to one file through O_APPEND keep
# every record whole.
source "$(dirname "$0")/lib-mount.sh"

mount_fresh

head -c 31457283 /dev/urandom > w1.src
head -c 29360131 /dev/urandom > w2.src
head -c 8388608 /dev/urandom > r.src
cp r.src "$MNT/reader"
sum_r=$(sha256sum < r.src)

dd if=w1.src of="$MNT/w1" bs=128k status=none &
pid1=$!
dd if=w2.src of="$MNT/w2" bs=1M status=none &
pid2=$!
# The reader: the third file, whole, until both writers finish.
reads=0
while :; do
    running=0
    if kill -0 "$pid1" 2>/dev/null || kill -0 "$pid2" 2>/dev/null; then running=1; fi
    got=$(sha256sum < "$MNT/reader")
    [ "$got" = "$sum_r" ] || fail "read $((reads + 1)) of the third file while writers run: checksum differs"
    reads=$((reads + running))
    [ "$running" -eq 1 ] || break
done
wait "$pid1" || fail "writer 1 (dd of 30 MB) failed"
wait "$pid2" || fail "writer 2 (dd of 28 MB) failed"
[ "$reads" -ge 1 ] || fail "the reader did not get to read while the writers ran"
echo "reads of the third file during the writes: $reads"

check_all() {
    assert_eq "$(sha256sum < w1.src)" "$(sha256sum < "$MNT/w1")" "checksum of w1 ($1)"
    assert_eq "$(sha256sum < w2.src)" "$(sha256sum < "$MNT/w2")" "checksum of w2 ($1)"
    assert_eq "$sum_r" "$(sha256sum < "$MNT/reader")" "checksum of the third file ($1)"
}
check_all "after the writers"

# Two writers on two files again, each with fsync, plus a reader of a file
# being rewritten: each seal is complete when the writer's fsync returns.
dd if=w2.src of="$MNT/w1" bs=1M conv=fsync status=none &
pid1=$!
dd if=w1.src of="$MNT/w2" bs=256k conv=fsync status=none &
pid2=$!
wait "$pid1" || fail "rewriter 1 failed"
wait "$pid2" || fail "rewriter 2 failed"
assert_eq "$(sha256sum < w2.src)" "$(sha256sum < "$MNT/w1")" "checksum of w1 after the swap"
assert_eq "$(sha256sum < w1.src)" "$(sha256sum < "$MNT/w2")" "checksum of w2 after the swap"
for f in w1 w2; do
    ino=$(stat -c %i "$MNT/$f")
    grep -q "sealed ino=$ino bytes=" "$VAULT/qsfs.log" || fail "no seal line for $f (ino $ino) after its fsync"
done

# O_APPEND from two processes at once: 2 x 200 records of 100 bytes.
python3 - "$MNT/log" <<'PY'
import os, sys
path = sys.argv[1]
pids = []
for w in (b"A", b"B"):
    pid = os.fork()
    if pid == 0:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for i in range(200):
            rec = (w + b"%03d" % i).ljust(99, w) + b"\n"
            assert os.write(fd, rec) == 100
        os.close(fd)
        os._exit(0)
    pids.append(pid)
for pid in pids:
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
data = open(path, "rb").read()
assert len(data) == 40000, len(data)
recs = [data[i:i + 100] for i in range(0, len(data), 100)]
for w in (b"A", b"B"):
    mine = [r for r in recs if r[:1] == w]
    assert mine == [(w + b"%03d" % i).ljust(99, w) + b"\n" for i in range(200)], "records of %r out of order or torn" % w
PY

remount
check_all_swapped() {
    assert_eq "$(sha256sum < w2.src)" "$(sha256sum < "$MNT/w1")" "checksum of w1 ($1)"
    assert_eq "$(sha256sum < w1.src)" "$(sha256sum < "$MNT/w2")" "checksum of w2 ($1)"
    assert_eq "$sum_r" "$(sha256sum < "$MNT/reader")" "checksum of the third file ($1)"
}
check_all_swapped "after remount"
assert_eq 40000 "$(stat -c %s "$MNT/log")" "size of the appended log after remount"
unmount
