# No plaintext outlives its seal on the client's disk. The vault lives on
# an ext4 disk image (loop-mounted); files are written through the mount
# with their staging bytes forced onto that disk (sync -f), then sealed,
# truncated, punched, unlinked while open, left staged by a kill -9 and
# sealed by the next mount, and spooled from stdin by `qsfs put -`. The
# attacker then reads the raw image, free blocks included: the random
# marker the files are made of must appear nowhere. A control scan while
# the first file is still staged must find it, so the scan can fail.
source "$(dirname "$0")/lib-mount.sh"
[ "$(id -u)" -eq 0 ] || { echo "skipped: a loop-mounted disk needs root"; exit 0; }
command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 is missing (Debian package e2fsprogs)"
command -v fallocate >/dev/null || fail "fallocate is missing (Debian package util-linux)"

IMG="$PWD/client.img"
DISK="$PWD/disk"
_wipe_cleanup() {
    local rc=$?
    set +e
    ( (exit "$rc"); _mount_cleanup )
    if mountpoint -q "$DISK"; then
        umount "$DISK" 2>/dev/null || umount -l "$DISK" ||
            echo "could not unmount the disk image at $DISK" >&2
    fi
    exit "$rc"
}
trap _wipe_cleanup EXIT

truncate -s 512M "$IMG"
mkfs.ext4 -q -F "$IMG" || fail "mkfs.ext4 $IMG failed"
mkdir "$DISK"
mount -o loop "$IMG" "$DISK" || fail "cannot loop-mount $IMG at $DISK"
VAULT="$DISK/v"

MARK="qsfs-plain-$(head -c 15 /dev/urandom | base64 | tr '+/' 'xy')"
yes "$MARK" | head -c 2000000 > plain || true
[ "$(stat -c %s plain)" -eq 2000000 ] || fail "could not make the plaintext"
marks_on_disk() { grep -a -c -F "$MARK" "$IMG" || true; }

mount_fresh

# Sealed at close, after its staging reached the disk.
exec 3>"$MNT/sealed"
cat plain >&3
sync -f "$DISK"
n=$(marks_on_disk)
[ "$n" -gt 0 ] || fail "control: the staged plaintext is not on the disk image after sync (found $n), so the scan below proves nothing"
exec 3>&-

# Cut while open: the cut bytes are zeroed before the file shrinks.
exec 3>"$MNT/cut"
cat plain >&3
sync -f "$DISK"
truncate -s 1000 "$MNT/cut"
exec 3>&-

# A hole punched while open.
exec 3<>"$MNT/punched"
cat plain >&3
sync -f "$DISK"
fallocate --punch-hole --offset 0 --length 1000000 "$MNT/punched" || fail "punch hole through the mount failed"
exec 3>&-

# Unlinked while open, then closed: never sealed, staging dropped.
exec 3>"$MNT/unlinked"
cat plain >&3
sync -f "$DISK"
rm "$MNT/unlinked"
exec 3>&-

# kill -9 with the file open: the next mount seals what was staged.
exec 3>"$MNT/killed"
cat plain >&3
sync -f "$DISK"
kill -9 "$MOUNTED_PID"
wait_exited "$MOUNTED_PID"
exec 3>&- || true
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || fail "cannot clean up the dead mount"
mount_vault
cmp plain "$MNT/killed" || fail "the file staged at kill -9 did not read back after the remount"
cmp plain "$MNT/sealed" || fail "the sealed file does not read back"
assert_eq 1000 "$(stat -c %s "$MNT/cut")" "size of the cut file"
cmp <(head -c 1000 plain) "$MNT/cut" || fail "the cut file does not read back"
cmp <(head -c 1000000 /dev/zero; tail -c +1000001 plain) "$MNT/punched" ||
    fail "the punched file does not read back as zeros then the rest"
[ ! -e "$MNT/unlinked" ] || fail "the unlinked file came back"
unmount

# stdin spooled by `qsfs put -`, forced onto the disk while it is read.
{ cat plain; sleep 0.5; sync -f "$DISK"; sleep 0.5; } | "$Q" put "$VAULT" - /spooled >/dev/null ||
    fail "qsfs put - failed"
"$Q" get "$VAULT" /spooled spooled.back >/dev/null || fail "qsfs get of the spooled file failed"
cmp plain spooled.back || fail "the spooled file does not read back"

ls -A "$VAULT/staging/wipe" 2>/dev/null | grep -q . && fail "files left to overwrite after a clean unmount: $(ls -A "$VAULT/staging/wipe")"
umount "$DISK" || fail "cannot unmount the disk image"
n=$(marks_on_disk)
assert_eq 0 "$n" "lines of plaintext found on the raw disk image after sealing"
echo "ok: no plaintext on the client's disk"
