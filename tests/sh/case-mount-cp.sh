# cp -a of a varied tree into the mount (hard links, symlinks, FIFO,
# xattrs, odd modes and owners, nanosecond mtimes): diff -r and every
# entry's metadata match the source; again after `qsfs umount` and a
# remount; cp -a back out and compare once more.
source "$(dirname "$0")/lib-mount.sh"

make_tree src
mount_fresh

cp -a src "$MNT/tree" || fail "cp -a src $MNT/tree"
compare_trees src "$MNT/tree"

# The hard links are one inode in the mount too.
assert_eq "$(stat -c %i "$MNT/tree/hello.txt")" "$(stat -c %i "$MNT/tree/with space/hello link 2")" "inode of hello link 2"
assert_eq "$(stat -c %i "$MNT/tree/hello.txt")" "$(stat -c %i "$MNT/tree/ünïcødé/hello link 3")" "inode of hello link 3"
assert_eq 3 "$(stat -c %h "$MNT/tree/hello.txt")" "nlink of hello.txt"

# Everything closed was sealed: one log line per non-empty file (a hard
# link's content is sealed once).
nonempty=$(find src -type f -size +0c -links 1 | wc -l)
nonempty=$((nonempty + 2)) # 3k.bin (2 links) and hello.txt (3 links)
unmount
sealed=$(grep -c 'sealed ino=' "$VAULT/qsfs.log" || true)
[ "$sealed" -ge "$nonempty" ] || fail "expected at least $nonempty seal lines in qsfs.log, found $sealed"
[ -z "$(ls -A "$VAULT/staging")" ] || fail "staging not empty after unmount: $(ls -A "$VAULT/staging")"

# The CLI reads the same content after unmount.
"$Q" get "$VAULT" "/tree/with space/ten MB random.bin" - | cmp - "src/with space/ten MB random.bin" ||
    fail "qsfs get of the 10 MB file differs"

mount_vault
compare_trees src "$MNT/tree"

# And back out.
cp -a "$MNT/tree" out || fail "cp -a $MNT/tree out"
compare_trees src out
unmount
