#!/usr/bin/env bash
# Builds what a release ships into dist/: `bridge` and `relay` for six platforms, their
# archives and SHA256SUMS, the npm packages (dist/npm/), the wheels (dist/pypi/) and the
# install scripts. See docs/guide/install.md.
#
#   scripts/dist.sh           every platform (cross-built with cargo-zigbuild and zig)
#   scripts/dist.sh --host    this machine's platform only (what the test suite uses)
#   scripts/dist.sh --out D   into D instead of dist/
#
# Binaries use the `dist` profile (LTO, one codegen unit, stripped). Linux binaries are
# static (musl). CARGO_TARGET_DIR is honoured. The cross toolchains come from the
# registries, pinned, into .dist-deps/: zig (the `ziglang` package on PyPI) and
# cargo-zigbuild (crates.io), with Debian's mingw-w64 binutils for Windows; for --host on
# Linux, Debian's musl-tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ZIGLANG_VERSION=0.13.0
CARGO_ZIGBUILD_VERSION=0.19.8
ALL_TARGETS=(
  x86_64-unknown-linux-musl
  aarch64-unknown-linux-musl
  x86_64-apple-darwin
  aarch64-apple-darwin
  x86_64-pc-windows-gnu
  aarch64-pc-windows-gnullvm
)

host_only=0
out=dist
while (($#)); do
  case "$1" in
    --host) host_only=1; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dist.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
MCP_TUNNEL_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
export MCP_TUNNEL_COMMIT
target_dir="${CARGO_TARGET_DIR:-target}"
echo "==> mcp-tunnel $version (commit $MCP_TUNNEL_COMMIT) into $out/"

host_target() {
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) echo x86_64-unknown-linux-musl ;;
    Linux-aarch64) echo aarch64-unknown-linux-musl ;;
    Darwin-x86_64) echo x86_64-apple-darwin ;;
    Darwin-arm64) echo aarch64-apple-darwin ;;
    *) echo "dist.sh: no release target for $(uname -s) $(uname -m)" >&2; exit 2 ;;
  esac
}

add_targets() {
  local missing=()
  local installed
  installed="$(rustup target list --installed)"
  for t in "$@"; do
    grep -qxF "$t" <<<"$installed" || missing+=("$t")
  done
  if ((${#missing[@]})); then
    echo "==> rustup target add ${missing[*]}"
    rustup target add "${missing[@]}"
  fi
}

# Builds bridge and relay for target $1 with the command in the rest. One package at a
# time: built together, cargo would unify features and link the relay's PostgreSQL
# client into the bridge.
build() {
  local t="$1"; shift
  echo "==> $t"
  local start=$SECONDS
  "$@" build --locked --profile dist --target "$t" -p bridge
  "$@" build --locked --profile dist --target "$t" -p relay
  echo "    $t: built in $((SECONDS - start)) s"
  built+=("$t=$target_dir/$t/dist")
}

built=()
if ((host_only)); then
  t="$(host_target)"
  add_targets "$t"
  if [[ "$t" == *-linux-musl ]] && ! command -v musl-gcc >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "==> apt-get install musl-tools"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null; }
    else
      echo "dist.sh: needs musl-gcc (Debian: apt-get install musl-tools)" >&2
      exit 1
    fi
  fi
  build "$t" cargo
else
  deps="$PWD/.dist-deps"
  mkdir -p "$deps"
  # cargo-zigbuild runs zig as `python3 -m ziglang` when no `zig` is on PATH: the venv's
  # python3 comes first on PATH below.
  if ! "$deps/venv/bin/python3" -c 'import ziglang' 2>/dev/null; then
    echo "==> ziglang $ZIGLANG_VERSION into .dist-deps/"
    python3 -m venv "$deps/venv"
    "$deps/venv/bin/pip" install -q "ziglang==$ZIGLANG_VERSION"
  fi
  if [[ ! -x "$deps/bin/cargo-zigbuild" ]]; then
    echo "==> cargo-zigbuild $CARGO_ZIGBUILD_VERSION into .dist-deps/"
    cargo install -q --locked --root "$deps" "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION"
  fi
  # windows-sys links import libraries made with the target's dlltool (Debian's mingw-w64).
  if ! command -v x86_64-w64-mingw32-dlltool >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "==> apt-get install binutils-mingw-w64-x86-64"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils-mingw-w64-x86-64 >/dev/null
    else
      echo "dist.sh: needs x86_64-w64-mingw32-dlltool (Debian: apt-get install binutils-mingw-w64-x86-64)" >&2
      exit 1
    fi
  fi
  export PATH="$deps/bin:$deps/venv/bin:$PATH"
  add_targets "${ALL_TARGETS[@]}"
  for t in "${ALL_TARGETS[@]}"; do
    build "$t" cargo zigbuild
  done
fi

echo "==> packing"
rm -rf "$out"
python3 scripts/dist/pack.py --version "$version" --out "$out" --npm --pypi "${built[@]}"
for b in "${built[@]}"; do
  dir="${b#*=}"
  for exe in bridge relay; do
    [[ -f "$dir/$exe" ]] && printf '    %-8s %s: %s bytes\n' "$exe" "${b%%=*}" "$(stat -c %s "$dir/$exe")"
  done
done
echo "==> $out/ ready"
