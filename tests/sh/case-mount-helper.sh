# The mount(8) helper (mount-helper/, installed as /sbin/mount.fuse.qsfs)
# through the real mount command: `mount -t fuse.qsfs VAULT DIR -o noatime`
# (and `mount -t qsfs` through /sbin/mount.qsfs when that path is free),
# an fstab line (`mount -T FILE DIR`), -v and -s passed through, qsfs's own
# errors passed through, and the helper's usage errors. Needs root; the
# helper is installed as /sbin/mount.fuse.qsfs only if that path is free,
# and removed again on exit. Runs in a fresh temp folder under
# `bash -euo pipefail` with $QSFS_BIN set (see tests/sh/run.sh); the helper
# is the `mount-qsfs` binary next to it (cargo build --release --workspace
# --bins) or $QSFS_MOUNT_HELPER.
Q="$QSFS_BIN"
H="${QSFS_MOUNT_HELPER:-$(dirname "$Q")/mount-qsfs}"
SBIN=/sbin/mount.fuse.qsfs
SBIN2=/sbin/mount.qsfs

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skipped: $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "needs root (mount(8) runs helpers from /sbin)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
command -v mount >/dev/null && command -v findmnt >/dev/null || skip "no mount/findmnt"
[ -x "$H" ] || fail "no helper at $H (build it: cargo build --release --workspace --bins)"
H="$(realpath "$H")"

V="$PWD/v"
M="$PWD/mnt"
mkdir "$M"
installed=0
installed2=0
cleanup() {
    if findmnt -n --mountpoint "$M" >/dev/null 2>&1; then umount -l "$M" 2>/dev/null || true; fi
    if [ "$installed" -eq 1 ] && [ "$(readlink "$SBIN" 2>/dev/null)" = "$H" ]; then rm -f "$SBIN"; fi
    if [ "$installed2" -eq 1 ] && [ "$(readlink "$SBIN2" 2>/dev/null)" = "$H" ]; then rm -f "$SBIN2"; fi
}
trap cleanup EXIT

# Only where no helper is installed (a real installation must not be
# replaced); `ln -s` fails rather than overwrite, so two runs cannot race.
if [ -e "$SBIN" ] || [ -L "$SBIN" ]; then skip "$SBIN already exists ($(ls -l "$SBIN")); not replacing it"; fi
ln -s "$H" "$SBIN" 2>/dev/null || skip "cannot install $SBIN"
installed=1

"$Q" init v >/dev/null
head -c 3000000 /dev/urandom > big.src

# The pid serving the vault (from its lock), then umount(8) and wait for that
# process to finish its pending seals and exit.
unmount_and_wait() {
    local pid
    pid=$(sed -n 's/^pid \([0-9]*\).*/\1/p' "$V/.lock")
    [ -n "$pid" ] || fail "no pid in $V/.lock: $(cat "$V/.lock")"
    umount "$M" || fail "umount $M failed"
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        fail "qsfs (pid $pid) still runs 60 s after umount"
    fi
    if findmnt -n --mountpoint "$M" >/dev/null; then fail "$M still mounted"; fi
}

check_mounted() { # OPTION that must show in the mount's options
    local line
    line=$(findmnt -n -o FSTYPE,SOURCE,OPTIONS --mountpoint "$M") || fail "nothing mounted at $M"
    # fuse.qsfs, or plain fuse where fuser mounts without fusermount3 (root).
    case "$(awk '{print $1}' <<<"$line")" in fuse.qsfs | fuse) ;; *) fail "wrong type: $line" ;; esac
    [ "$(awk '{print $2}' <<<"$line")" = "$(realpath "$V")" ] || fail "wrong source: $line"
    [ -z "${1:-}" ] || grep -q "[ ,]$1\(,\|$\)" <<<"$line" || fail "option $1 missing: $line"
}

# 1. mount -t fuse.qsfs. Without QSFS_BIN the helper finds qsfs next to its
# own (symlinked) executable, if that is the qsfs under test.
if [ "$(dirname "$H")/qsfs" -ef "$Q" ]; then
    env -u QSFS_BIN mount -t fuse.qsfs "$V" "$M" -o noatime || fail "mount -t fuse.qsfs failed"
else
    mount -t fuse.qsfs "$V" "$M" -o noatime || fail "mount -t fuse.qsfs failed"
fi
check_mounted noatime
printf 'hello\n' > "$M/hello.txt"
mkdir "$M/dir"
cp big.src "$M/dir/big"
[ "$(cat "$M/hello.txt")" = hello ] || fail "hello.txt reads back wrong"
cmp big.src "$M/dir/big" || fail "big file differs through the mount"
unmount_and_wait
# Every seal finished before qsfs exited: the CLI reads both back.
[ "$("$Q" get v /hello.txt -)" = hello ] || fail "hello.txt not stored"
"$Q" get v /dir/big - | cmp - big.src || fail "big file not stored"

# 1b. Type qsfs through /sbin/mount.qsfs, if that path is free too.
if ln -s "$H" "$SBIN2" 2>/dev/null; then
    installed2=1
    mount -t qsfs "$V" "$M" || fail "mount -t qsfs failed"
    check_mounted
    [ "$(cat "$M/hello.txt")" = hello ] || fail "hello.txt through mount -t qsfs"
    unmount_and_wait
    rm -f "$SBIN2"
    installed2=0
else
    echo "not testing mount -t qsfs: $SBIN2 exists"
fi

# 2. An fstab line, through mount -T (an alternative fstab) and -v, which
# mount(8) passes to the helper; mount -a on the same fstab.
printf '# qsfs test\n%s %s fuse.qsfs defaults,noatime 0 0\n' "$V" "$M" > fstab
out=$(mount -v -T "$PWD/fstab" "$M" 2>&1) || fail "mount -T fstab failed: $out"
grep -q "mount.qsfs: running: .*qsfs mount -o .*noatime.* -- $V $M" <<<"$out" || fail "mount -v did not show the qsfs command: $out"
check_mounted noatime
[ "$(cat "$M/hello.txt")" = hello ] || fail "hello.txt through the fstab mount"
cmp big.src "$M/dir/big" || fail "big file through the fstab mount"
# mount -a sees the vault is mounted already (same source and target).
mount -a -T "$PWD/fstab" || fail "mount -a -T fstab failed"
[ "$(findmnt -n -o TARGET --mountpoint "$M" | wc -l)" -eq 1 ] || fail "mount -a mounted the vault twice"
printf 'second\n' > "$M/second.txt"
unmount_and_wait
[ "$("$Q" get v /second.txt -)" = second ] || fail "second.txt not stored"

# 3. Unknown options: an error naming the option, unless sloppy (-s).
if out=$(mount -t fuse.qsfs "$V" "$M" -o noatime,bogus 2>&1); then fail "mount with -o bogus succeeded"; fi
grep -q 'mount.qsfs: error: unknown mount option "bogus"' <<<"$out" || fail "no clear message for -o bogus: $out"
if findmnt -n --mountpoint "$M" >/dev/null; then fail "mounted despite -o bogus"; fi
mount -s -t fuse.qsfs "$V" "$M" -o bogus,ro || fail "mount -s with -o bogus failed"
check_mounted ro
if touch "$M/nope" 2>/dev/null; then fail "ro mount is writable"; fi
unmount_and_wait

# 4. qsfs's own errors pass through, with a non-zero status.
mkdir notavault
if out=$(mount -t fuse.qsfs "$PWD/notavault" "$M" 2>&1); then fail "mounting a non-vault succeeded"; fi
grep -q "qsfs: error: $PWD/notavault is not a qsfs vault" <<<"$out" || fail "qsfs's error not shown: $out"

# 5. The helper itself with bad arguments: status 1 and a clear message.
set +e
out=$("$H" "$V" 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "missing DIR: status $rc"
grep -q "^mount.qsfs: error: missing DIR" <<<"$out" || fail "missing DIR: $out"
set +e
out=$("$H" "$V" "$M" -o bogus 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "unknown option: status $rc"
grep -q '^mount.qsfs: error: unknown mount option "bogus"' <<<"$out" || fail "unknown option: $out"
set +e
out=$("$H" "$V" "$M" -t fuse.sshfs 2>&1); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "wrong type: status $rc"
grep -q '^mount.qsfs: error: .*not type "fuse.sshfs"' <<<"$out" || fail "wrong type: $out"
# -f (fake) does everything but the mount.
out=$("$H" -fv "$V" "$M" -o defaults,allow_other)
grep -q "mount.qsfs: would run: .*qsfs mount -o allow_other -- $V $M" <<<"$out" || fail "fake mount: $out"
if findmnt -n --mountpoint "$M" >/dev/null; then fail "fake mount mounted"; fi
echo "mount helper case passed"
