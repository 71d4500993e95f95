#!/usr/bin/env bash
# The whole test suite: unit, property, conformance and integration tests
# (real processes, real node folders), then the shell harness (real tools
# against the qsfs binary). Installs what it needs on a fresh Debian.
#
#   scripts/test.sh            default suite (well under 20 minutes)
#   scripts/test.sh --stress   also the long kill -9 and fault stress runs
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

stress=0
for arg in "$@"; do
    case "$arg" in
        --stress) stress=1 ;;
        *) echo "usage: scripts/test.sh [--stress]" >&2; exit 2 ;;
    esac
done

scripts/deps.sh
export QSFS_STRESS=$stress
start=$(date +%s)

for tool in clippy fmt; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        comp=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
        rustup component add "$comp" >&2 || {
            echo "qsfs: cargo $tool is needed by the suite; install it with: rustup component add $comp" >&2
            exit 1
        }
    fi
done

echo "== cargo fmt --check, cargo clippy -D warnings (lints: Cargo.toml) =="
cargo fmt --all --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings

echo "== cargo test (release build: the fault tests move real data) =="
cargo test --release --locked --workspace

echo "== shell harness =="
cargo build --release --locked --workspace --bins
QSFS_BIN="$PWD/target/release/qsfs" tests/sh/run.sh

echo "== all tests passed in $(( $(date +%s) - start )) s =="
