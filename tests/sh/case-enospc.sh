# Full node disks reach the application as ENOSPC, not EIO: three of the
# five node folders are 2 MiB tmpfs mounts, so a 12 MB file's shards
# (4 MB each) fit only two nodes, below the write quorum of 4. close(2)
# and fsync(2) of that file fail with ENOSPC (errno 28), the file written
# before the disks filled still reads back, through the mount and after a
# remount, and once the failed files are removed nothing is left staged.
# Run as is, the nodes are folders; with QSFS_TEST_CLUSTER=1 (run.sh runs
# it both ways) they are node servers serving those folders, so the kind
# of the failure must cross the node protocol.
source "$(dirname "$0")/lib-mount.sh"
[ "$(id -u)" -eq 0 ] || { echo "skipped: tmpfs mounts need root"; exit 0; }
: "${QSFS_CLUSTER_SCRIPT:=$(cd "$(dirname "$0")/../.." && pwd)/scripts/local-cluster.sh}"

TMPFS=()
_enospc_cleanup() {
    local rc=$? t
    set +e
    # The mount and node servers first (they hold files on the tmpfs);
    # lib-mount's cleanup ends with `exit`, so it runs in a subshell.
    ( (exit "$rc"); _mount_cleanup )
    for t in ${TMPFS[@]+"${TMPFS[@]}"}; do
        umount "$t" 2>/dev/null || umount -l "$t" 2>/dev/null ||
            echo "could not unmount the tmpfs at $t" >&2
    done
    exit "$rc"
}
trap _enospc_cleanup EXIT

if [ -n "${QSFS_TEST_CLUSTER:-}" ]; then
    out=$("$Q" init --direct "$VAULT" 2>&1) || fail "qsfs init failed: $out"
    # Started once so the servers take their folders into use, then
    # stopped while three folders move onto small disks.
    out=$("$QSFS_CLUSTER_SCRIPT" start "$VAULT" 2>&1) || fail "local-cluster start failed: $out"
    "$QSFS_CLUSTER_SCRIPT" stop "$VAULT" || fail "local-cluster stop failed"
    NODES="$VAULT.cluster"
else
    out=$("$Q" init "$VAULT" 2>&1) || fail "qsfs init failed: $out"
    NODES="$VAULT/nodes"
fi
for i in 0 2 4; do
    d="$NODES/node-$i"
    [ -d "$d" ] || fail "no node folder $d"
    mv "$d" "$d.orig"
    mkdir "$d"
    mount -t tmpfs -o size=2m qsfs-test-enospc "$d" || fail "cannot mount a tmpfs at $d"
    TMPFS+=("$d")
    cp -a "$d.orig/." "$d/"
    rm -rf "$d.orig"
done
if [ -n "${QSFS_TEST_CLUSTER:-}" ]; then
    out=$("$QSFS_CLUSTER_SCRIPT" start "$VAULT" 2>&1) || fail "local-cluster restart failed: $out"
    grep -q 'kind = "remote"' "$VAULT/qsfs.toml" || fail "the vault does not use node servers: $(cat "$VAULT/qsfs.toml")"
fi
mount_vault

head -c 200000 /dev/urandom > before
cp before "$MNT/before" || fail "cp of a small file with room on every node failed"
head -c 12000000 /dev/urandom > big

# errno of close(2), and of fsync(2) then close(2), after writing FILE.
python3 - big "$MNT/big-close" "$MNT/big-fsync" > errnos <<'PY'
import os, sys
data = open(sys.argv[1], "rb").read()
def write(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd
def errno_of(f, *a):
    try:
        f(*a)
        return 0
    except OSError as e:
        return e.errno
fd = write(sys.argv[2])
print("close", errno_of(os.close, fd))
fd = write(sys.argv[3])
print("fsync", errno_of(os.fsync, fd))
print("close-after-fsync", errno_of(os.close, fd))
PY
grep -q "^close 28$" errnos || fail "close(2) of a file the full nodes cannot hold: $(cat errnos) (want errno 28, ENOSPC)"
grep -q "^fsync 28$" errnos || fail "fsync(2) of a file the full nodes cannot hold: $(cat errnos) (want errno 28, ENOSPC)"
# The log names the cause with its node, never only "I/O error".
grep -q "No space left on device" "$VAULT/qsfs.log" || fail "the mount log does not say the nodes are full"

# Nothing written before is lost.
cmp before "$MNT/before" || fail "the file written before the disks filled does not read back"
rm "$MNT/big-close" "$MNT/big-fsync"
remount
cmp before "$MNT/before" || fail "the file written before the disks filled does not read back after a remount"
unmount
