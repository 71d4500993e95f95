# Recovery is as fresh as the last change, not the last snapshot. With
# backups started, a tree is written through the mount, then renamed,
# removed, chmodded, given xattrs and new files; the mount is killed with
# kill -9 (so no unmount snapshot is written) and the vault folder is
# deleted. `qsfs recover` from the node folders replays the journal
# entries written after the snapshot: every file, name, mode, time and
# xattr the mount showed before the kill reads back identical, including a
# file fsynced just before it (an fsync waits for its journal entry).
source "$(dirname "$0")/lib-mount.sh"

mkdir nodes
printf 'journal me\n' > pass
export QSFS_PASSPHRASE_FILE="$PWD/pass"
"$Q" init "$VAULT" --nodes "$(printf "$PWD/nodes/n%s," 0 1 2 3 4 | sed 's/,$//')" > /dev/null
mount_vault
"$Q" backup "$VAULT" > backup.txt || fail "qsfs backup: $(cat backup.txt)"
grep -q '^metadata snapshot 1 ' backup.txt || fail "backup said: $(cat backup.txt)"

journal_lines() { grep -c -E 'metadata (journal entry|snapshot) written' "$VAULT/qsfs.log" || true; }
# Waits until the mount backed up what changed before this call.
backed_up() {
    local before=$1
    wait_until 30 "a metadata journal entry after the last change" \
        eval '[ "$(journal_lines)" -gt "'"$before"'" ]'
    # Changes committed while that entry was written go into the next.
    sleep 2.5
}

make_tree src
truncate -s 16M src/sparse.img
printf 'middle' | dd of=src/sparse.img bs=1 seek=$((8 << 20)) conv=notrunc status=none
n=$(journal_lines)
rsync -aHAX --numeric-ids src/ "$MNT/tree/" || fail "rsync -aHAX into the mount"
backed_up "$n"

# More changes: only the journal has these (and the tree above).
n=$(journal_lines)
mv "$MNT/tree/a/b/c/1M.bin" "$MNT/tree/renamed 1M.bin"
rm "$MNT/tree/hello.txt"
rm -r "$MNT/tree/a/b/c/deep folder"
chmod 0711 "$MNT/tree/a/script.sh"
setfattr -n user.after -v "set after the snapshot" "$MNT/tree/with space"
head -c 300000 /dev/urandom > "$MNT/tree/written late.bin"
echo "appended" >> "$MNT/tree/a/secret"
ln "$MNT/tree/a/secret" "$MNT/tree/secret hard link"
mkdir "$MNT/tree/new folder"
touch -d @1600000000.123456789 "$MNT/tree/new folder"
backed_up "$n"
entries=$(grep -c 'metadata journal entry written' "$VAULT/qsfs.log" || true)
[ "$entries" -ge 1 ] || fail "no journal entry was written after the snapshot"

# An fsync acknowledges the journal too: killed right after it returns,
# the file is recovered however the backup thread's second falls.
fsync_lines() { grep -c -E 'metadata journal entry written for an fsync|metadata journal: nothing to write for an fsync' "$VAULT/qsfs.log" || true; }
n=$(fsync_lines)
printf 'synced just before the kill\n' > "$MNT/tree/synced.txt"
sync "$MNT/tree/synced.txt"
# (The backup thread may have written it a moment before: then the fsync
# finds nothing left to write, and says so.)
[ "$(fsync_lines)" -gt "$n" ] || fail "fsync returned without bringing the journal up to date"

tree_meta "$MNT" > before.meta
(cd "$MNT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) > before.md5

# The machine dies: no unmount, no last snapshot.
kill -9 "$MOUNTED_PID"
wait_exited "$MOUNTED_PID"
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || fail "cannot clean up the dead mount"
rm -rf "$VAULT" "$XDG_CONFIG_HOME"

"$Q" recover v2 --node nodes/n0 --node nodes/n1 --node nodes/n2 --node nodes/n3 --node nodes/n4 > out.txt 2>&1 ||
    fail "recover: $(cat out.txt)"
replayed=$(sed -n 's/.* and \([0-9]*\) journal entr.*/\1/p' out.txt)
[ -n "$replayed" ] && [ "$replayed" -ge 1 ] || fail "recover replayed no journal entry: $(cat out.txt)"
VAULT="$PWD/v2"
"$Q" fsck "$VAULT" > fsck.txt 2>&1 || fail "fsck of the recovered vault: $(cat fsck.txt)"
mount_vault
tree_meta "$MNT" > after.meta
(cd "$MNT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) > after.md5
diff -u before.meta after.meta || fail "names, modes, times or xattrs differ after recovery (- before the kill, + recovered)"
diff -u before.md5 after.md5 || fail "file contents differ after recovery"
grep -q 'renamed 1M.bin' after.meta || fail "the rename after the snapshot is missing"
[ "$(cat "$MNT/tree/synced.txt")" = "synced just before the kill" ] || fail "the file fsynced just before the kill is missing"
! grep -q 'deep folder' after.meta || fail "the folder removed after the snapshot came back"
[ "$(wc -l < after.meta)" -gt 40 ] || fail "tree_meta is too short: $(cat after.meta)"
unmount
echo "ok: recovered through $replayed journal entries"
