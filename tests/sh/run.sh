#!/usr/bin/env bash
# Runs every tests/sh/case-*.sh against $QSFS_BIN, each in a fresh temp
# folder; prints one line per case and fails if any case fails.
#   run.sh [NAME...]   only the cases whose file name (without .sh) is given,
#                      e.g. run.sh case-enospc case-mount-retry
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${QSFS_BIN:?set QSFS_BIN to the qsfs binary}"
export QSFS_BIN
# QSFS_TEST_CLUSTER=1 makes a case's vaults use five loopback node servers
# behind QKD-keyed links (scripts/local-cluster.sh) instead of its default.
export QSFS_CLUSTER_SCRIPT="$here/../../scripts/local-cluster.sh"
failed=0
only=" $* "
run_case() { # CASE-FILE LABEL
    local case=$1 name=$2 work start
    [ "$only" = "  " ] || [[ "$only" == *" $(basename "$case" .sh) "* ]] || return 0
    work=$(mktemp -d "${TMPDIR:-/tmp}/qsfs-sh.XXXXXX")
    start=$(date +%s)
    # Key files `qsfs init` makes go with the case's folder, not ~/.config.
    if (cd "$work" && XDG_CONFIG_HOME="$work/.config" bash -euo pipefail "$case") >"$work.log" 2>&1; then
        echo "ok   $name ($(( $(date +%s) - start )) s)"
        [ -n "${QSFS_TEST_SHOW:-}" ] && sed "s/^/    /" "$work.log"
        rm -rf "$work" "$work.log"
    else
        echo "FAIL $name; log follows:"
        sed 's/^/    /' "$work.log"
        failed=$((failed + 1))
        # QSFS_TEST_KEEP=1 keeps a failed case's folder (vault, log) to look at.
        if [ -n "${QSFS_TEST_KEEP:-}" ]; then echo "    kept: $work"; else rm -rf "$work"; fi
    fi
}
for case in "$here"/case-*.sh; do
    run_case "$case" "$(basename "$case" .sh)"
done
# The core suite, rsync through the mount, lost node folders and full
# node disks again, over node servers.
for name in case-core-cli case-mount-rsync case-mount-lostfolder case-enospc; do
    QSFS_TEST_CLUSTER=1 run_case "$here/$name.sh" "$name over 5 loopback node servers"
done
# Crash safety, tar and rsync again with a file per shard in the node
# folders (`init --no-packs`, the layout of vaults made before packs were
# the default), the last also over node servers.
for name in case-mount-kill9 case-mount-tar case-mount-rsync; do
    QSFS_TEST_NO_PACKS=1 run_case "$here/$name.sh" "$name with a file per shard"
done
QSFS_TEST_NO_PACKS=1 QSFS_TEST_CLUSTER=1 run_case "$here/case-mount-rsync.sh" "case-mount-rsync with a file per shard over 5 loopback node servers"
[ "$failed" -eq 0 ] || { echo "$failed shell case(s) failed"; exit 1; }
