#!/usr/bin/env bash
# Runs every tests/sh/case-*.sh against $QSFS_BIN, each in a fresh temp
# folder; prints one line per case and fails if any case fails.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${QSFS_BIN:?set QSFS_BIN to the qsfs binary}"
export QSFS_BIN
failed=0
for case in "$here"/case-*.sh; do
    name=$(basename "$case" .sh)
    work=$(mktemp -d "${TMPDIR:-/tmp}/qsfs-sh.XXXXXX")
    start=$(date +%s)
    if (cd "$work" && bash -euo pipefail "$case") >"$work.log" 2>&1; then
        echo "ok   $name ($(( $(date +%s) - start )) s)"
        rm -rf "$work" "$work.log"
    else
        echo "FAIL $name; log follows:"
        sed 's/^/    /' "$work.log"
        failed=$((failed + 1))
        rm -rf "$work"
    fi
done
[ "$failed" -eq 0 ] || { echo "$failed shell case(s) failed"; exit 1; }
