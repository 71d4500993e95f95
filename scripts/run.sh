#!/usr/bin/env bash
# Runs qsfs on its embedded default: installs what is missing, builds,
# creates the default vault (3-of-5 over five directory nodes inside it)
# unless it exists, and shows its status.
#
#   scripts/run.sh [VAULT]      default VAULT: $QSFS_VAULT or
#                               ${XDG_DATA_HOME:-~/.local/share}/qsfs/vault
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
scripts/deps.sh
cargo build --release --locked --bin qsfs >&2
qsfs="$PWD/target/release/qsfs"

vault="${1:-${QSFS_VAULT:-${XDG_DATA_HOME:-$HOME/.local/share}/qsfs/vault}}"
if [ ! -f "$vault/qsfs.toml" ]; then
    "$qsfs" init "$vault"
fi
"$qsfs" status "$vault"
cat <<MSG

qsfs is ready. The vault is at $vault. Try:
  $qsfs put $vault /etc/hostname /hostname
  $qsfs ls -l $vault
  $qsfs get $vault /hostname -
(add $PWD/target/release to PATH to type just \`qsfs\`)
MSG
