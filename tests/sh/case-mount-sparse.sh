# Sparse files and cheap size changes on the mount: dd with seek past EOF
# (holes read as zeros, few blocks), truncate down then up (zeros come
# back, not old bytes), cp --sparse=always, a 1 PiB truncate that is
# instant and stores nothing (node folders do not grow), one byte written
# near its end, and a 1-byte rewrite in the middle of a 20 MB file that
# seals only a small object (seal log line and node folder growth).
source "$(dirname "$0")/lib-mount.sh"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
nodes_bytes() { du -sb "$VAULT/nodes" | cut -f1; }

mount_fresh

# dd past EOF: a 4 KiB block at 4 MB; the first 4 MB read as zeros.
head -c 4096 /dev/urandom > block
dd if=block of="$MNT/holes" bs=4096 seek=1000 status=none
assert_eq $((1001 * 4096)) "$(stat -c %s "$MNT/holes")" "size after dd seek=1000"
cmp <(head -c $((1000 * 4096)) "$MNT/holes") <(head -c $((1000 * 4096)) /dev/zero) || fail "the hole does not read as zeros"
cmp <(tail -c 4096 "$MNT/holes") block || fail "the block after the hole differs"
blocks=$(stat -c %b "$MNT/holes")
[ "$blocks" -le 16 ] || fail "stat -c %b of a file with a 4 MB hole and 4 KiB of data: $blocks blocks"
[ "$(du -k "$MNT/holes" | cut -f1)" -le 8 ] || fail "du of the sparse file: $(du -k "$MNT/holes")"
# A second block inside the hole (conv=notrunc keeps the size).
head -c 4096 /dev/urandom > block2
dd if=block2 of="$MNT/holes" bs=4096 seek=10 conv=notrunc status=none
assert_eq $((1001 * 4096)) "$(stat -c %s "$MNT/holes")" "size after a write inside the hole"
{ head -c $((10 * 4096)) /dev/zero; cat block2; head -c $((989 * 4096)) /dev/zero; cat block; } > holes.want
cmp "$MNT/holes" holes.want || fail "sparse file with two blocks differs"
blocks=$(stat -c %b "$MNT/holes")
[ "$blocks" -le 24 ] || fail "stat -c %b with two 4 KiB blocks of data: $blocks blocks"

# truncate down then up: the cut bytes come back as zeros.
head -c 100000 /dev/urandom > tr.src
cp tr.src "$MNT/tr"
truncate -s 50000 "$MNT/tr"
assert_eq 50000 "$(stat -c %s "$MNT/tr")" "size after truncate down"
truncate -s 100000 "$MNT/tr"
assert_eq 100000 "$(stat -c %s "$MNT/tr")" "size after truncate up"
{ head -c 50000 tr.src; head -c 50000 /dev/zero; } > tr.want
cmp "$MNT/tr" tr.want || fail "truncate down then up does not read zeros in the regrown part"
# The same while a writer holds it open, with a write past the new end.
exec 4<> "$MNT/tr"
truncate -s 10 "$MNT/tr"
printf 'END' | dd of="$MNT/tr" bs=1 seek=20 conv=notrunc status=none
exec 4>&-
{ head -c 10 tr.src; head -c 10 /dev/zero; printf 'END'; } > tr.want2
cmp "$MNT/tr" tr.want2 || fail "truncate while open, then a write past the end"

# cp --sparse=always of a sparse file: holes stay holes.
truncate -s 50M sp.src
dd if=block of=sp.src bs=4096 seek=100 conv=notrunc status=none
dd if=block2 of=sp.src bs=4096 seek=12000 conv=notrunc status=none
cp --sparse=always sp.src "$MNT/sp"
cmp sp.src "$MNT/sp" || fail "cp --sparse=always content differs"
blocks=$(stat -c %b "$MNT/sp")
[ "$blocks" -le 64 ] || fail "cp --sparse=always of a 50 MB file with 8 KiB of data: $blocks blocks"

# truncate -s 1P: instant, stores nothing. (The time bounds below are
# loose for a loaded machine: doing it in O(size) would take far longer.)
before=$(nodes_bytes)
t0=$(now_ms)
truncate -s 1P "$MNT/huge"
t1=$(now_ms)
[ $((t1 - t0)) -lt 30000 ] || fail "truncate -s 1P took $((t1 - t0)) ms"
assert_eq 1125899906842624 "$(stat -c %s "$MNT/huge")" "size after truncate -s 1P"
assert_eq 0 "$(stat -c %b "$MNT/huge")" "blocks of the 1 PiB file"
assert_eq 0 "$(du -k "$MNT/huge" | cut -f1)" "du of the 1 PiB file"
# Its (empty) commit: fsync returns once the file's seal is committed.
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.close(fd)' "$MNT/huge"
grown=$(($(nodes_bytes) - before))
[ "$grown" -le 8192 ] || fail "node folders grew by $grown bytes for truncate -s 1P"
t0=$(now_ms)
ls -l "$MNT/huge" > /dev/null
cmp <(dd if="$MNT/huge" bs=4096 skip=$((1125899906842624 / 4096 - 3)) count=3 status=none) <(head -c 12288 /dev/zero) ||
    fail "the end of the 1 PiB file does not read as zeros"
t1=$(now_ms)
[ $((t1 - t0)) -lt 30000 ] || fail "stat and a read at the end of the 1 PiB file took $((t1 - t0)) ms"
# One byte near the end of the 1 PiB file: a tiny object.
P=1125899906842624
# (Offsets past 16 TiB: staged bytes are kept in 1 TiB pieces.)
off=$((P - 5))
printf 'Z' | dd of="$MNT/huge" bs=1 seek=$off conv=notrunc,fsync status=none || fail "1-byte write at offset $off"
assert_eq $P "$(stat -c %s "$MNT/huge")" "size after a write into the 1 PiB file"
tail8=$(dd if="$MNT/huge" bs=1 skip=$((off - 3)) count=8 status=none | od -An -tx1 | tr -s ' ' | sed 's/^ //; s/ $//')
assert_eq "00 00 00 5a 00 00 00 00" "$tail8" "8 bytes around the byte written at $off"
blocks=$(stat -c %b "$MNT/huge")
[ "$blocks" -le 8 ] || fail "blocks of the 1 PiB file with one byte: $blocks"
after=$(nodes_bytes)
[ $((after - before)) -lt 65536 ] || fail "node folders grew by $((after - before)) bytes for a 1 PiB truncate and 1 byte"
t0=$(now_ms)
rm "$MNT/huge"
t1=$(now_ms)
[ $((t1 - t0)) -lt 30000 ] || fail "rm of the 1 PiB file took $((t1 - t0)) ms"

# A 1-byte rewrite in the middle of a 20 MB file seals a small object.
head -c 20971520 /dev/urandom > big.src
dd if=big.src of="$MNT/big" bs=1M conv=fsync status=none
ino=$(stat -c %i "$MNT/big")
grep -q "sealed ino=$ino bytes=20971520 size=20971520 " "$VAULT/qsfs.log" || fail "no seal line for the 20 MB file (ino $ino)"
before=$(nodes_bytes)
lines_before=$(grep -c "sealed ino=$ino " "$VAULT/qsfs.log")
printf 'X' | dd of="$MNT/big" bs=1 seek=10000000 conv=notrunc,fsync status=none
printf 'X' | dd of=big.src bs=1 seek=10000000 conv=notrunc status=none
after=$(nodes_bytes)
seal=$(grep "sealed ino=$ino " "$VAULT/qsfs.log" | tail -n +$((lines_before + 1)))
[[ "$seal" =~ sealed\ ino=$ino\ bytes=1\ size=20971520\  ]] || fail "seal line of the 1-byte rewrite: [$seal]"
[ $((after - before)) -lt 1048576 ] || fail "node folders grew by $((after - before)) bytes for a 1-byte rewrite of a 20 MB file"
cmp big.src "$MNT/big" || fail "20 MB file after the 1-byte rewrite differs"

# Everything again after a remount, and through the CLI.
remount
cmp "$MNT/holes" holes.want || fail "sparse file after remount"
cmp "$MNT/tr" tr.want2 || fail "truncated file after remount"
cmp sp.src "$MNT/sp" || fail "cp --sparse=always file after remount"
cmp big.src "$MNT/big" || fail "20 MB file after remount"
[ "$(stat -c %b "$MNT/holes")" -le 24 ] || fail "blocks of the sparse file after remount: $(stat -c %b "$MNT/holes")"
[ ! -e "$MNT/huge" ] || fail "the removed 1 PiB file is back"
unmount
"$Q" get "$VAULT" /big - | cmp - big.src || fail "qsfs get of the 20 MB file"
"$Q" get "$VAULT" /holes - | cmp - holes.want || fail "qsfs get of the sparse file"
