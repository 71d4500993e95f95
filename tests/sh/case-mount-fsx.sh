# Size changes racing a seal, and a random-operation exerciser.
#
# 1. Every size-changing operation (truncate, ftruncate, O_TRUNC,
#    fallocate, writes past the end) right after a close, while that
#    close's seal is still committing: the bytes cut away never come back
#    (the issue's reproductions, each 20 times, read back cold and after a
#    remount).
# 2. cp of a sparse file over a file written a moment before: identical.
# 3. fallocate -k / -p / -z on the mount against the same on the disk
#    under this folder (ext4 or whatever it is).
# 4. qsfs-fsx (tools/fsx): several seeds of 20,000 random operations
#    (writes, reads, truncates, fallocate modes, mmap writes with msync,
#    close/reopen, fsync, remounts), every read checked against a model.
source "$(dirname "$0")/lib-mount.sh"

FSX="$(dirname "$Q")/qsfs-fsx"
[ -x "$FSX" ] || fail "no exerciser at $FSX (cargo build --release --workspace --bins)"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

mount_fresh
mkdir ref
# A 64 KiB file of 'A', closed, then changed at once (its seal commits meanwhile).
fresh() { head -c 65536 /dev/zero | tr '\0' A > "$1"; }
check() { # FILE EXPECTED-FILE WHAT
    cmp "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1) ($(stat -c %s "$1") bytes)"
}
races() { # DIR: every reproduction once, in DIR
    local d=$1
    fresh "$d/t1"; python3 -c 'import os,sys;fd=os.open(sys.argv[1],os.O_RDWR);os.ftruncate(fd,4096);os.ftruncate(fd,65536)' "$d/t1"
    fresh "$d/t2"; python3 -c 'import os,sys;fd=os.open(sys.argv[1],os.O_RDWR);os.ftruncate(fd,4096);os.pwrite(fd,b"Z",65535)' "$d/t2"
    fresh "$d/t3"; python3 -c 'import os,sys;fd=os.open(sys.argv[1],os.O_RDWR|os.O_TRUNC);os.pwrite(fd,b"Z",65535)' "$d/t3"
    fresh "$d/t4"; python3 -c 'import os,sys;fd=os.open(sys.argv[1],os.O_RDWR);os.ftruncate(fd,4096);os.posix_fallocate(fd,0,65536)' "$d/t4"
    fresh "$d/t5"; truncate -s 4096 "$d/t5"; truncate -s 65536 "$d/t5"
    fresh "$d/t6"; python3 -c 'import os,sys;fd=os.open(sys.argv[1],os.O_RDWR);os.ftruncate(fd,100);os.write(fd,b"");os.lseek(fd,0,2);os.write(fd,b"tail")' "$d/t6"
}
races ref
for i in $(seq 20); do
    mkdir "$MNT/r$i"
    races "$MNT/r$i"
done
drop
for i in $(seq 20); do
    for t in t1 t2 t3 t4 t5 t6; do check "$MNT/r$i/$t" "ref/$t" "round $i $t (cold)"; done
done
remount
for i in $(seq 20); do
    for t in t1 t2 t3 t4 t5 t6; do check "$MNT/r$i/$t" "ref/$t" "round $i $t (after a remount)"; done
done

# 2. cp of a sparse file over one written a moment before.
python3 - sparse.src <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, 1048576)
os.pwrite(fd, b"head", 0)
os.pwrite(fd, b"middle", 500000)
os.pwrite(fd, b"end", 1048573)
os.close(fd)
PY
for i in $(seq 10); do
    head -c 1048576 /dev/urandom > "$MNT/over$i"
    cp --sparse=always sparse.src "$MNT/over$i"
done
drop
for i in $(seq 10); do check "$MNT/over$i" sparse.src "cp of a sparse file over over$i (cold)"; done
remount
for i in $(seq 10); do check "$MNT/over$i" sparse.src "cp of a sparse file over over$i (after a remount)"; done

# 3. fallocate modes, against the local disk.
modes() { # DIR
    local d=$1
    head -c 200000 /dev/zero | tr '\0' Q > "$d/fa"
    fallocate -k -o 150000 -l 100000 "$d/fa"       # keep size
    fallocate -p -o 10000 -l 5000 "$d/fa"          # punch hole
    fallocate -z -o 50000 -l 1000 "$d/fa"          # zero range
    fallocate -z -o 190000 -l 30000 "$d/fa"        # zero range past the end: grows
    fallocate -o 0 -l 300000 "$d/fa"               # allocate: grows
    stat -c %s "$d/fa"
}
mkdir disk
want=$(modes disk)
got=$(modes "$MNT")
assert_eq "$want" "$got" "size after the fallocate modes"
check "$MNT/fa" disk/fa "fallocate modes"
drop
check "$MNT/fa" disk/fa "fallocate modes (cold)"
if fallocate --collapse-range -o 0 -l 4096 "$MNT/fa" 2> collapse.err; then
    fail "collapse-range succeeded; it is not supported"
fi
grep -qi "not supported" collapse.err || fail "collapse-range: $(cat collapse.err)"

# 4. The exerciser, with close/reopen and remounts.
remount_cmd="'$Q' umount '$MNT' >/dev/null && '$Q' mount '$VAULT' '$MNT' >/dev/null"
for seed in 1 2 3; do
    "$FSX" "$MNT/fsx$seed" --seed "$seed" --ops 20000 --close-every 20 \
        --remount "$remount_cmd" --remount-every 4000 || fail "qsfs-fsx seed $seed (history in $MNT/fsx$seed.fsxlog)"
    # The remounts started new mount processes: the EXIT trap stops them by pid.
    pid=$(mount_pid) && STARTED_PIDS+=("$pid")
done
unmount
"$Q" fsck "$VAULT" > fsck.txt || fail "fsck after the exerciser: $(cat fsck.txt)"
