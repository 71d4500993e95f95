#!/usr/bin/env bash
# Builds qsfs (release) and installs it system-wide, so that
# `mount -t fuse.qsfs VAULT DIR` and /etc/fstab lines such as
#     /srv/vault  /mnt/vault  fuse.qsfs  defaults,allow_other  0 0
# work:
#     $PREFIX/bin/qsfs          the command line (PREFIX: /usr/local)
#     $PREFIX/bin/mount.qsfs    the mount(8) helper (mount-helper/)
#     /sbin/mount.fuse.qsfs  -> $PREFIX/bin/mount.qsfs   (type fuse.qsfs)
#     /sbin/mount.qsfs       -> $PREFIX/bin/mount.qsfs   (type qsfs)
# mount(8) looks for helpers in /sbin only. Safe to run again: it says what
# it changed and what was already in place.
#
#   scripts/install.sh               build, then install (as root)
#   scripts/install.sh --no-build    install what target/release holds
#                                    (e.g. built as a user, installed with sudo)
#   scripts/install.sh --uninstall   remove what this script installs
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${PREFIX:-/usr/local}"
SBIN="${SBIN:-/sbin}"
bindir="$PREFIX/bin"
helper="$bindir/mount.qsfs"
links=("$SBIN/mount.fuse.qsfs" "$SBIN/mount.qsfs")

build=1
uninstall=0
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --uninstall) uninstall=1 ;;
        *) echo "usage: scripts/install.sh [--no-build | --uninstall]" >&2; exit 2 ;;
    esac
done

need_root() { # ARGS for the sudo hint
    if [ "$(id -u)" -ne 0 ]; then
        echo "qsfs: installing into $bindir and $SBIN needs root: sudo $0 $*" >&2
        exit 1
    fi
}

if [ "$uninstall" -eq 1 ]; then
    need_root --uninstall
    for l in "${links[@]}"; do
        if [ -L "$l" ] && [ "$(readlink "$l")" = "$helper" ]; then
            rm -f "$l"; echo "removed      $l"
        elif [ -e "$l" ] || [ -L "$l" ]; then
            echo "left alone   $l (not installed by this script)"
        fi
    done
    for f in "$helper" "$bindir/qsfs"; do
        if [ -e "$f" ]; then rm -f "$f"; echo "removed      $f"; fi
    done
    exit 0
fi

if [ "$build" -eq 1 ]; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    scripts/deps.sh
    echo "building (cargo build --release) ..."
    cargo build --release --locked --workspace --bins >&2
fi
for b in target/release/qsfs target/release/mount-qsfs; do
    [ -x "$b" ] || { echo "qsfs: $b is missing; build first: cargo build --release --workspace --bins" >&2; exit 1; }
done
need_root --no-build
command -v fusermount3 >/dev/null || echo "note: fusermount3 (Debian package fuse3) is missing: users other than root cannot mount without it" >&2

# Copies to a temporary name and renames over the old file, so a running
# qsfs keeps its binary.
put() { # SOURCE DEST
    if [ -f "$2" ] && [ ! -L "$2" ] && cmp -s "$1" "$2"; then
        echo "up to date   $2"
        return
    fi
    local new
    new=$(dirname "$2")/.$(basename "$2").new.$$
    install -D -m 0755 "$1" "$new"
    mv -f "$new" "$2"
    echo "installed    $2"
}

link() { # LINK -> $helper
    local l="$1"
    if [ -L "$l" ] && [ "$(readlink "$l")" = "$helper" ]; then
        echo "up to date   $l -> $helper"
        return
    fi
    if [ -e "$l" ] && [ ! -L "$l" ]; then
        # A copy of some helper: replaced only if it is ours.
        if ! grep -q "mount.qsfs: error" "$l" 2>/dev/null; then
            echo "qsfs: $l exists and is not a qsfs helper; not replacing it (remove it and run this again)" >&2
            exit 1
        fi
    fi
    local was=""
    [ -L "$l" ] && was=" (was -> $(readlink "$l"))"
    ln -sfn "$helper" "$l"
    echo "linked       $l -> $helper$was"
}

mkdir -p "$bindir"
put target/release/qsfs "$bindir/qsfs"
put target/release/mount-qsfs "$helper"
for l in "${links[@]}"; do link "$l"; done
cat <<MSG
qsfs is installed. Mount a vault with
    mount -t fuse.qsfs VAULT DIR [-o allow_other,ro,...]
or an /etc/fstab line
    VAULT  DIR  fuse.qsfs  defaults,allow_other  0 0
and unmount with \`qsfs umount DIR\` (or umount DIR).
MSG
