#!/usr/bin/env bash
# Installs the Debian packages qsfs's scripts and tests use, but only when a
# tool is missing (apt-get update runs only then). Safe to run repeatedly.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have fusermount3 || need+=(fuse3)
have rsync || need+=(rsync)
have chattr || need+=(e2fsprogs)
have setfattr || need+=(attr)
have setfacl || need+=(acl)
[ -x /usr/bin/time ] || need+=(time)
have git || need+=(git)
have sqlite3 || need+=(sqlite3)
have python3 || need+=(python3)
# The network fault case (tests/sh/case-netfaults.sh): namespaces, veths,
# tc filters (iproute2) and packet drops (nftables).
{ have ip && have tc; } || need+=(iproute2)
have nft || need+=(nftables)
for extra in "$@"; do
    case "$extra" in
        gocryptfs) have gocryptfs || need+=(gocryptfs) ;;
        securefs) have securefs || need+=(securefs) ;;
        *) need+=("$extra") ;;
    esac
done

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "qsfs: missing tools (${need[*]}); install them with: sudo apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "qsfs: installing ${need[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        echo "qsfs: cargo is in ~/.cargo/bin; run: . \"\$HOME/.cargo/env\"" >&2
    else
        echo "qsfs: cargo (Rust 1.95 or newer) is needed; install it with rustup (https://rustup.rs)" >&2
    fi
    exit 1
fi
