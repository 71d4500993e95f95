# Mount and unmount errors: each prints one clear `qsfs: error:` line
# naming the path or option, exits with status 1, and leaves nothing
# mounted and no qsfs process behind; a busy mount refuses `qsfs umount`
# and stays usable. The file commands work on a mounted vault; those that
# need it unmounted say where it is mounted. A dead mount (its process
# killed with -9) is named as such by `qsfs mount` and the other commands
# given its path or its vault, and `qsfs umount` clears it.
source "$(dirname "$0")/lib-mount.sh"

mkdir mnt2 notvault
touch afile
"$Q" init v2 > /dev/null

# Runs qsfs with the given arguments; it must fail with status 1 and
# print exactly the expected message on stderr (and nothing on stdout).
expect_error() {
    local want="$1" rc=0
    shift
    "$Q" "$@" > err.out 2> err.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "qsfs $* exited with $rc (want 1); stderr: $(cat err.txt)"
    [ ! -s err.out ] || fail "qsfs $* printed on stdout: $(cat err.out)"
    assert_eq "$want" "$(cat err.txt)" "message of qsfs $*"
}

# No qsfs process serving vault $1 and nothing mounted at $2.
nothing_left() {
    ! is_mounted "$2" || fail "$2 is mounted after a failed mount"
    if pgrep -f "qsfs mount --daemon $1 " > procs.txt; then
        fail "a qsfs mount process of $1 is left: $(cat procs.txt)"
    fi
}

expect_error "qsfs: error: mount point nonexistent: does not exist; create the folder first" mount v2 nonexistent
nothing_left v2 nonexistent
expect_error "qsfs: error: mount point afile: is not a folder" mount v2 afile
nothing_left v2 afile
expect_error "qsfs: error: no vault at novault: create one with \`qsfs init novault\`" mount novault mnt2
nothing_left novault mnt2
expect_error "qsfs: error: notvault is not a qsfs vault (it has no qsfs.toml)" mount notvault mnt2
nothing_left notvault mnt2
known="allow_other, allow_root, default_permissions, ro, rw, dev, nodev, suid, nosuid, exec, noexec, atime, noatime, sync, async, dirsync, auto_unmount"
expect_error "qsfs: error: unknown mount option \"bogus\" (known: $known)" mount v2 mnt2 -o bogus
nothing_left v2 mnt2
expect_error "qsfs: error: unknown mount option \"colour=blue\" (known: $known)" mount v2 mnt2 -o ro,noatime -o colour=blue
nothing_left v2 mnt2
# The same in the foreground.
expect_error "qsfs: error: unknown mount option \"bogus\" (known: $known)" mount -f v2 mnt2 -o bogus
expect_error "qsfs: error: mount point afile: is not a folder" mount -f v2 afile
nothing_left v2 mnt2

# A live mount: the mount point is busy, and its vault is in use.
mount_fresh
echo "still here" > "$MNT/file"
# (The file system type shows as "fuse" today; "fuse.qsfs" is fine too.)
fstype=$(findmnt -n -o FSTYPE "$MNT")
[[ "$fstype" == fuse || "$fstype" == fuse.qsfs ]] || fail "file system type of the mount: $fstype"
expect_error "qsfs: error: mount point mnt: is busy: $VAULT ($fstype) is already mounted there" mount v2 mnt
nothing_left v2 mnt2
expect_error "qsfs: error: mount point mnt: is busy: $VAULT ($fstype) is already mounted there" mount -f v2 mnt
expect_error "qsfs: error: vault $VAULT is in use by another qsfs process (pid $MOUNTED_PID (qsfs mount), mounted at $MNT: use the files there, or \`qsfs umount $MNT\` first); wait for it or stop it" mount v mnt2
! is_mounted mnt2 || fail "mnt2 is mounted after a failed mount of a vault in use"
# The file commands work on the mounted vault, through the mount process
# (tests/sh/case-mount-live.sh has the rest).
grep -qx file <<<"$(timeout 60 "$Q" ls v /)" || fail "qsfs ls of a mounted vault: $("$Q" ls v / 2>&1)"
# Commands that still need the vault unmounted fail fast, saying so.
rc=0
timeout 60 "$Q" node adopt v node-0 > /dev/null 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "qsfs node adopt of a mounted vault exited with $rc: $(cat err.txt)"
grep -qF "mounted at $MNT" err.txt || fail "qsfs node adopt of a mounted vault: $(cat err.txt)"
assert_eq "still here" "$(cat "$MNT/file")" "the mount after the failed attempts"

# umount of what is not a qsfs mount.
expect_error "qsfs: error: cannot unmount mnt2: nothing is mounted there" umount mnt2
expect_error "qsfs: error: cannot unmount nonexistent: cannot be resolved: No such file or directory (os error 2)" umount nonexistent
mkdir tm
mount -t tmpfs qsfs-test-tmpfs tm
EXTRA_MOUNTS+=("$PWD/tm")
expect_error "qsfs: error: cannot unmount tm: it is a tmpfs mount of qsfs-test-tmpfs, not a qsfs vault" umount tm
is_mounted tm || fail "qsfs umount unmounted the tmpfs"
umount tm

# umount of a busy mount: a shell cd'd inside, then a file held open.
busy="qsfs: error: cannot unmount mnt: it is busy: a process has a file or folder open there (close it, or \`umount -l\`)"
(cd "$MNT" && exec sleep 600) &
holder=$!
# Busy only once the holder's cd is done.
mnt_real=$(realpath "$MNT")
holder_inside() { [ "$(readlink "/proc/$holder/cwd" 2>/dev/null)" = "$mnt_real" ]; }
wait_until 10 "the shell (pid $holder) to cd into $MNT" holder_inside
expect_error "$busy" umount mnt
is_mounted "$MNT" || fail "the busy mount went away"
kill "$holder"
wait "$holder" 2> /dev/null || true
exec 3< "$MNT/file"
expect_error "$busy" umount mnt
is_mounted "$MNT" || fail "the busy mount went away"
# Still usable, and the open file still reads.
echo "written after" > "$MNT/after"
assert_eq "written after" "$(cat "$MNT/after")" "a file written after the failed umount"
assert_eq "still here" "$(cat <&3)" "the held file"
exec 3<&-
unmount
"$Q" get v /after - > after.txt
assert_eq "written after" "$(cat after.txt)" "qsfs get of the file written after the failed umount"

# A read-only mount refuses writes with EROFS and unmounts cleanly.
MOUNT_OPTS=(-o ro)
mount_vault
if echo x 2> err.txt > "$MNT/new"; then fail "a write to a read-only mount succeeded"; fi
grep -q "Read-only file system" err.txt || fail "write to a read-only mount: $(cat err.txt)"
assert_eq "still here" "$(cat "$MNT/file")" "reading a read-only mount"
unmount

# A dead mount: the mount process killed with -9. `qsfs mount` on its
# mount point, and other commands given that path or the vault, say what
# it is and name `qsfs umount`, which clears it; the vault then mounts
# again and what was closed before the kill is there.
MOUNT_OPTS=()
mount_vault
echo "closed before the kill" > "$MNT/killed"
mnt_real=$(realpath "$MNT")
vault_real=$(realpath "$VAULT")
pid=$MOUNTED_PID
kill -9 "$pid"
wait_exited "$pid"
if ls "$MNT" > /dev/null 2> ls.err; then fail "ls of the dead mount succeeded"; fi
grep -qF "Transport endpoint is not connected" ls.err || fail "ls of the dead mount: $(cat ls.err)"
is_mounted "$MNT" || fail "the dead mount is not listed in mountinfo"
how="the qsfs process serving it has ended (killed or crashed), so every access fails with \"Transport endpoint is not connected\"; clear it with \`qsfs umount $mnt_real\`, then mount again with \`qsfs mount $vault_real $mnt_real\`"
dead="qsfs: error: mnt is a dead FUSE mount of vault $vault_real: $how"
expect_error "$dead" mount v mnt
expect_error "$dead" mount -f v mnt
expect_error "$dead" status mnt
expect_error "$dead" scrub mnt
expect_error "qsfs: error: mnt/sub is inside the dead FUSE mount $mnt_real of vault $vault_real: $how" ls mnt/sub
# Commands given the vault refuse too (the lock went with the process,
# but what it had staged is sealed only by the next mount), naming both
# ways to clear the dead mount.
died="qsfs: error: vault $vault_real is still mounted at $mnt_real, but the qsfs process serving that mount has ended (killed or crashed); clear the dead mount with \`qsfs umount $mnt_real\` (or \`fusermount3 -u $mnt_real\`), then mount again with \`qsfs mount $vault_real $mnt_real\`, which also seals what the dead process had staged"
expect_error "$died" ls v /
expect_error "$died" status v
expect_error "$died" mount v mnt2
nothing_left v mnt2
out=$("$Q" umount mnt 2>&1) || fail "qsfs umount of the dead mount failed: $out"
assert_eq "cleared the dead mount at mnt (its qsfs process had ended); what it had not sealed yet is sealed at the next mount" "$out" "qsfs umount of the dead mount"
! is_mounted "$MNT" || fail "the dead mount is still there after qsfs umount"
mount_vault
assert_eq "closed before the kill" "$(cat "$MNT/killed")" "a file closed before the kill"
unmount
