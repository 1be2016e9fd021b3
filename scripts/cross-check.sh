#!/usr/bin/env bash
# Compile-checks the bridge for Windows and macOS from this machine: `cargo clippy` with
# warnings denied for each target (default: x86_64-pc-windows-gnu, x86_64-apple-darwin,
# aarch64-apple-darwin; or the targets given as arguments). This only compiles: nothing
# for these systems is linked or run here.
#
# C code in dependencies (ring, the bundled SQLite) would need a cross compiler to build,
# but a check never links, so CC_<target> and AR_<target> are pointed at /bin/true: their
# build scripts succeed without compiling anything.
#
# The Rust standard library of each target is installed with `rustup target add`. If it
# cannot be downloaded (no rustup, no network), the checks are skipped and the script
# exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if (($#)); then
  targets=("$@")
else
  targets=(x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin)
fi

skip() {
  echo "cross-target checks skipped: the Rust targets cannot be downloaded here ($1)"
  exit 0
}

command -v rustup >/dev/null 2>&1 || skip "rustup is not installed"
installed="$(rustup target list --installed 2>/dev/null)" || skip "rustup target list failed"
missing=()
for t in "${targets[@]}"; do
  grep -qxF "$t" <<<"$installed" || missing+=("$t")
done
if ((${#missing[@]})); then
  echo "==> rustup target add ${missing[*]}"
  rustup target add "${missing[@]}" || skip "rustup target add ${missing[*]} failed"
fi

for t in "${targets[@]}"; do
  var="${t//-/_}"
  echo "==> clippy -p bridge --target $t"
  start=$SECONDS
  env "CC_${var}=/bin/true" "AR_${var}=/bin/true" \
    cargo clippy -p bridge --locked --target "$t" -- -D warnings
  echo "    $t: clean ($((SECONDS - start)) s)"
done
