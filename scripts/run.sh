#!/usr/bin/env bash
# Runs qsfs on its embedded default: installs what is missing, builds,
# creates the default vault (3-of-5 over five directory nodes inside it)
# unless it exists, and mounts it.
#
#   scripts/run.sh [VAULT [MOUNTPOINT]]
#     VAULT       default: $QSFS_VAULT or ${XDG_DATA_HOME:-~/.local/share}/qsfs/vault
#     MOUNTPOINT  default: $QSFS_MOUNT or ~/qsfs (created if missing)
#
# If the vault is already mounted there, says so and exits 0.
set -euo pipefail

abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
vault=$(abs "${1:-${QSFS_VAULT:-${XDG_DATA_HOME:-$HOME/.local/share}/qsfs/vault}}")
mnt=$(abs "${2:-${QSFS_MOUNT:-$HOME/qsfs}}")

cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
scripts/deps.sh
cargo build --release --locked --workspace --bins >&2
qsfs="$PWD/target/release/qsfs"

if [ ! -f "$vault/qsfs.toml" ]; then
    mkdir -p "$(dirname "$vault")"
    "$qsfs" init "$vault"
fi
vault=$(realpath "$vault")

done_msg() {
    cat <<MSG

qsfs is running.
  vault:       $vault
  mounted at:  $mnt   (use it like any folder)
  log:         $vault/qsfs.log
  unmount:     $qsfs umount $mnt
               (returns once every pending seal is finished)
While the vault is mounted, the commands on it (\`status\`, \`ls\`, \`get\`,
\`put\`, \`rm\`, \`mkdir\`, \`keys verify|repair\`, \`scrub\`, \`fsck\`, \`audit\`,
\`node list|drain\`, \`rebalance\`) run inside the mount process and agree
with it; only changes to the node set (\`node add|remove|adopt\`) and
\`keys repair --rebuild-r2\` need it unmounted. Add $PWD/target/release
to PATH to type just \`qsfs\`; scripts/install.sh installs qsfs and its
mount(8) helper (mount -t fuse.qsfs, /etc/fstab).
MSG
}

# Something mounted there already?
if src=$(findmnt -n -o SOURCE --mountpoint "$mnt" 2>/dev/null); then
    fstype=$(findmnt -n -o FSTYPE --mountpoint "$mnt")
    if [ "$src" != "$vault" ]; then
        echo "qsfs: error: $mnt is busy: $src ($fstype) is mounted there; pick another mount point: scripts/run.sh VAULT MOUNTPOINT" >&2
        exit 1
    fi
    if ! ls "$mnt" >/dev/null 2>&1; then
        echo "qsfs: error: $vault is still mounted at $mnt, but its qsfs process is gone; clear it with \`$qsfs umount $mnt\` (or \`fusermount3 -u $mnt\`) and run this again" >&2
        exit 1
    fi
    echo "qsfs: $vault is already mounted at $mnt"
    done_msg
    exit 0
fi

mkdir -p "$mnt"
"$qsfs" mount "$vault" "$mnt"
done_msg
