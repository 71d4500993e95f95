# rsync -aHAX of a varied tree (hard links, symlinks, xattrs, odd modes
# and owners, nanosecond mtimes, FIFO) into the mount; a second
# `rsync -aHAXc --dry-run --itemize-changes` (checksums, every attribute)
# must find nothing to do, right away and after unmount + remount; rsync
# back out compares equal too.
source "$(dirname "$0")/lib-mount.sh"

RSYNC=(rsync -aHAX --numeric-ids)

make_tree src
mount_fresh

"${RSYNC[@]}" src/ "$MNT/tree/" || fail "rsync -aHAX into the mount"

check_nothing_to_do() {
    local out
    out=$("${RSYNC[@]}" -c --dry-run --itemize-changes src/ "$MNT/tree/" 2>&1) || fail "rsync --dry-run failed: $out"
    [ -z "$out" ] || fail "rsync -aHAXc --dry-run --itemize-changes ($1) wants to change:
$out"
}
check_nothing_to_do "right after the copy"
compare_trees src "$MNT/tree"

remount
check_nothing_to_do "after remount"
compare_trees src "$MNT/tree"

# A change is seen (the check is not blind): one byte, same size and mtime.
printf 'Y' | dd of="$MNT/tree/a/b/4k.bin" bs=1 seek=100 conv=notrunc status=none
touch -r src/a/b/4k.bin "$MNT/tree/a/b/4k.bin"
out=$("${RSYNC[@]}" -c --dry-run --itemize-changes src/ "$MNT/tree/")
[[ "$out" =~ ^'>fc'\.+' a/b/4k.bin'$ ]] || fail "rsync -c after a 1-byte change said: [$out]"
"${RSYNC[@]}" -c src/ "$MNT/tree/"
out=$("${RSYNC[@]}" -c --dry-run --itemize-changes src/ "$MNT/tree/")
[ -z "$out" ] || fail "rsync after repairing the change still wants: [$out]"
check_nothing_to_do "after an update"

# Back out.
"${RSYNC[@]}" "$MNT/tree/" out/ || fail "rsync -aHAX out of the mount"
out=$("${RSYNC[@]}" -c --dry-run --itemize-changes src/ out/)
[ -z "$out" ] || fail "rsync of the tree out of the mount differs: [$out]"
compare_trees src out

# rsync's own pattern, many times: write a temporary file, set its mtime,
# rename it into place. A seal committing between the inode's and the open
# file's update once put the write time back (1 file in about 300).
want=$(date -d 2020-01-02 +%s)
mkdir "$MNT/times"
for i in $(seq 1000); do
    printf 'x%.0s' $(seq 200) > "$MNT/times/.t$i"
    touch -d 2020-01-02 "$MNT/times/.t$i"
    mv "$MNT/times/.t$i" "$MNT/times/f$i"
done
check_times() {
    local lost
    lost=$(for i in $(seq 1000); do
        t=$(stat -c %Y "$MNT/times/f$i")
        [ "$t" = "$want" ] || echo "f$i: $(date -d "@$t")"
    done)
    [ -z "$lost" ] || fail "touch -d then mv lost the mtime ($1) of:
$lost"
}
check_times "right away"
remount
check_times "after remount"
unmount
