#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests.
# Works on a fresh machine with a Rust toolchain; it installs what else it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# rustfmt and clippy come with the toolchain but may be missing from a minimal install.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked "$@"
