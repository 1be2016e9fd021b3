#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs the pinned third-party test helpers
# (Node 22, the MCP conformance suite, the Python and TypeScript SDKs, the Inspector) into
# .test-deps/ and Debian's chromium and pebble with apt, checks formatting and lints,
# builds (and packs this platform's release and the Windows bridge with scripts/dist.sh
# --host --windows), runs every test (the Windows bridge under Wine), and runs the fuzz
# targets briefly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> installing pinned test helpers into .test-deps/"
tests/deps/install.sh
tests/deps/system.sh

echo "==> rustfmt"
cargo fmt --all -- --check

echo "==> clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/cross-check.sh  # the bridge for Windows and macOS (compile-checked only)

echo "==> build"
cargo build --workspace --bins --locked

echo "==> release build for this platform and the Windows bridge (scripts/dist.sh --host --windows, for the install and Wine tests)"
scripts/dist.sh --host --windows

echo "==> tests"
cargo test --workspace --locked "$@"

echo "==> short fuzz run (scripts/fuzz.sh 20; longer campaigns: see that script)"
scripts/fuzz.sh 20
