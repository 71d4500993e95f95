# Default ACLs and the umask on new files, folders, FIFOs, devices and
# symlinks, compared with ext4: the same script runs in a folder on ext4
# (under the case's temp folder) and in the mount, under umask 022, 077 and
# 000, and must print the same modes and the same `getfacl` output, which
# must also show what ext4 is known to do (the golden lines below): under a
# folder with a default ACL the umask is ignored, the new inode's access
# ACL and mode come from the default ACL cut down by the create mode, and a
# new folder inherits the default ACL; without one the umask applies. The
# ACLs must survive a remount.
source "$(dirname "$0")/lib-mount.sh"

command -v setfacl >/dev/null || fail "setfacl is missing: run scripts/deps.sh (Debian package acl)"

cat > acl-script.sh <<'SH'
set -euo pipefail
cd "$1"
mkdir acl plain base sgid cleared
# Named user, mask and other::- (the issue's example).
setfacl -d -m u:nobody:rwx,g::r-x,o::- acl
# Only the three base entries: works like a umask of 002, no access ACL.
setfacl -d -m u::rwx,g::rwx,o::r-x base
# A set-group-id folder of another group, with a named group entry.
chgrp 1 sgid
chmod 2775 sgid
setfacl -d -m g:daemon:r-x,g::rwx,o::- sgid
# A default ACL set and removed again: the umask applies as without.
setfacl -d -m u::rwx,g::rwx,o::rwx cleared
setfacl -k cleared
for um in 022 077 000; do
    (
        umask "$um"
        for d in acl plain base sgid cleared; do
            touch "$d/touch-$um"
            echo x > "$d/redirect-$um"
            python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o640))' "$d/open0640-$um"
            mkdir "$d/dir-$um"
            mkdir -m 0750 "$d/dir0750-$um"
            mkfifo "$d/fifo-$um"
            mknod "$d/null-$um" c 1 3
            ln -s "touch-$um" "$d/link-$um"
            # One level further down: the folder's inherited default ACL.
            touch "$d/dir-$um/nested"
        done
    )
done
find . -mindepth 1 -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
    stat -c '%n %A %u:%g' -- "$p"
    if [ ! -L "$p" ]; then
        getfacl -n -p -- "$p" | grep -v '^# file:' | grep -v '^$' | sed 's/^/    /'
    fi
done
SH

mkdir ext4
[ "$(stat -f -c %T ext4)" = "ext2/ext3" ] || fail "reference folder is not on ext4: $(stat -f -c %T ext4)"
bash acl-script.sh "$CASE_DIR/ext4" > report.ext4 2> report.ext4.err ||
    fail "reference run on ext4 failed: $(cat report.ext4.err)"

# What ext4 does (so that the comparison below means something).
golden() { # REPORT
    local r="$1" line
    for line in \
        "./acl/touch-022 -rw-rw---- 0:0" \
        "./acl/touch-077 -rw-rw---- 0:0" \
        "./acl/open0640-000 -rw-r----- 0:0" \
        "./acl/dir-077 drwxrwx--- 0:0" \
        "./acl/dir0750-022 drwxr-x--- 0:0" \
        "./acl/fifo-077 prw-rw---- 0:0" \
        "./acl/null-022 crw-rw---- 0:0" \
        "./acl/dir-022/nested -rw-rw---- 0:0" \
        "./plain/touch-022 -rw-r--r-- 0:0" \
        "./plain/touch-077 -rw------- 0:0" \
        "./plain/dir-000 drwxrwxrwx 0:0" \
        "./base/touch-077 -rw-rw-r-- 0:0" \
        "./base/dir-022 drwxrwxr-x 0:0" \
        "./sgid/dir-022 drwxrws--- 0:1" \
        "./sgid/touch-022 -rw-rw---- 0:1" \
        "./cleared/touch-077 -rw------- 0:0" \
        "./cleared/dir-022 drwxr-xr-x 0:0"; do
        grep -qxF -- "$line" "$r" || fail "$r lacks the line [$line]"
    done
    # The inherited access ACL of a file: the named user's entry stays, the
    # mask is cut down to the create mode's group bits.
    grep -A6 -xF -- "./acl/touch-022 -rw-rw---- 0:0" "$r" | grep -qxF -- $'    user:65534:rwx\t#effective:rw-' ||
        fail "$r: no inherited named-user entry on acl/touch-022"
    grep -A6 -xF -- "./acl/touch-022 -rw-rw---- 0:0" "$r" | grep -qxF -- "    mask::rw-" ||
        fail "$r: inherited mask of acl/touch-022 is not rw-"
    # A new folder inherits the default ACL; a base-only one gives no
    # access ACL; a cleared one nothing.
    grep -A12 -xF -- "./acl/dir-022 drwxrwx--- 0:0" "$r" | grep -qxF -- "    default:user:65534:rwx" ||
        fail "$r: acl/dir-022 did not inherit the default ACL"
    grep -A4 -xF -- "./base/touch-022 -rw-rw-r-- 0:0" "$r" | grep -q "mask" &&
        fail "$r: base/touch-022 got an access ACL"
    grep -A10 -xF -- "./cleared/dir-022 drwxr-xr-x 0:0" "$r" | grep -q "default:" &&
        fail "$r: cleared/dir-022 has a default ACL"
    return 0
}
golden report.ext4

mount_fresh
bash acl-script.sh "$MNT" > report.qsfs 2> report.qsfs.err ||
    fail "run in the mount failed: $(cat report.qsfs.err)"
diff -u report.ext4 report.qsfs || fail "modes or ACLs in the mount differ from ext4 (- ext4, + qsfs)"
golden report.qsfs
[ "$(wc -l < report.qsfs)" -gt 300 ] || fail "report too short: $(cat report.qsfs)"

# The ACLs are stored, not only cached by the kernel.
remount
(
    cd "$MNT"
    find . -mindepth 1 -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
        stat -c '%n %A %u:%g' -- "$p"
        if [ ! -L "$p" ]; then
            getfacl -n -p -- "$p" | grep -v '^# file:' | grep -v '^$' | sed 's/^/    /'
        fi
    done
) > report.remount
diff -u report.ext4 report.remount || fail "modes or ACLs differ from ext4 after a remount (- ext4, + qsfs)"
echo "ACL case passed"
