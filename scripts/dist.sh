#!/usr/bin/env bash
# Builds what a release ships into dist/: `bridge` and `relay` for six platforms, their
# archives and SHA256SUMS, the npm packages (dist/npm/), the wheels (dist/pypi/) and the
# install scripts. See docs/guide/install.md.
#
#   scripts/dist.sh           every platform (cross-built with cargo-zigbuild and zig)
#   scripts/dist.sh --host    this machine's platform only
#   scripts/dist.sh --host --windows
#                             and the Windows x86_64 bridge (what the test suite builds)
#   scripts/dist.sh --out D   into D instead of dist/
#
# Binaries use the `dist` profile (LTO, one codegen unit, stripped). Linux binaries are
# static (musl). CARGO_TARGET_DIR is honoured. The cross toolchains come from the
# registries, pinned, into .dist-deps/: zig (the `ziglang` package on PyPI) and
# cargo-zigbuild (crates.io) for Linux aarch64, macOS and Windows aarch64; Debian's
# mingw-w64 for Windows x86_64 and musl-tools for --host on Linux (installed with apt).
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
windows=0
out=dist
while (($#)); do
  case "$1" in
    --host) host_only=1; shift ;;
    --windows) windows=1; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  local installed t
  installed="$(rustup target list --installed)"
  for t in "$@"; do
    grep -qxF "$t" <<<"$installed" || missing+=("$t")
  done
  if ((${#missing[@]})); then
    echo "==> rustup target add ${missing[*]}"
    rustup target add "${missing[@]}"
  fi
}

# Installs Debian package $2 unless command $1 exists (as root with apt), or stops.
apt_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> apt-get install $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
  else
    echo "dist.sh: needs $1 (Debian: apt-get install $2)" >&2
    exit 1
  fi
}

# Builds the binaries for target $1 with the build command in the rest: the bridge, and
# the relay where it makes sense (a relay runs on a server: Linux or macOS). One package
# at a time: built together, cargo would unify features and link the relay's PostgreSQL
# client into the bridge.
build() {
  local t="$1"; shift
  echo "==> $t"
  local start=$SECONDS
  "$@" --locked --profile dist --target "$t" -p bridge
  [[ "$t" == *windows* ]] || "$@" --locked --profile dist --target "$t" -p relay
  echo "    $t: built in $((SECONDS - start)) s"
  built+=("$t=$target_dir/$t/dist")
}

# The Windows x86_64 bridge is linked by Debian's mingw-w64, the toolchain Rust's
# `x86_64-pc-windows-gnu` is made for (its default linker).
build_windows_x64() {
  apt_need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64-win32
  build x86_64-pc-windows-gnu cargo build
}

built=()
if ((host_only)); then
  t="$(host_target)"
  targets=("$t")
  ((windows)) && targets+=(x86_64-pc-windows-gnu)
  add_targets "${targets[@]}"
  [[ "$t" == *-linux-musl ]] && apt_need musl-gcc musl-tools
  build "$t" cargo build
  ((windows)) && build_windows_x64
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
  # Running the foreign Linux binary once: Debian's qemu-user (optional).
  command -v qemu-aarch64 >/dev/null 2>&1 || apt_need qemu-aarch64 qemu-user || true
  export PATH="$deps/bin:$deps/venv/bin:$PATH"
  # zig carries libSystem but no Apple frameworks: the macOS targets link against stubs
  # written from the Rust bindings' declarations (scripts/dist/macos_stubs.py).
  python3 scripts/dist/macos_stubs.py write "$deps/macos-frameworks"
  export CARGO_TARGET_X86_64_APPLE_DARWIN_RUSTFLAGS="-C link-arg=-F$deps/macos-frameworks"
  export CARGO_TARGET_AARCH64_APPLE_DARWIN_RUSTFLAGS="-C link-arg=-F$deps/macos-frameworks"
  rustup component add llvm-tools >/dev/null 2>&1
  add_targets "${ALL_TARGETS[@]}"
  for t in "${ALL_TARGETS[@]}"; do
    if [[ "$t" == x86_64-pc-windows-gnu ]]; then
      build_windows_x64
    else
      build "$t" cargo zigbuild
    fi
  done

  echo "==> checking the foreign binaries"
  for b in "${built[@]}"; do
    t="${b%%=*}" dir="${b#*=}"
    case "$t" in
      *-apple-darwin)
        # Not runnable here: each framework symbol must come from its framework.
        python3 scripts/dist/macos_stubs.py check "$dir/bridge" "$dir/relay" ;;
      aarch64-unknown-linux-musl)
        if command -v qemu-aarch64 >/dev/null 2>&1; then
          echo "    $t: $(qemu-aarch64 "$dir/bridge" --version), $(qemu-aarch64 "$dir/relay" --version) (qemu-aarch64)"
        else
          echo "    $t: not run (no qemu-aarch64)"
        fi ;;
      x86_64-unknown-linux-musl)
        echo "    $t: $("$dir/bridge" --version), $("$dir/relay" --version)" ;;
      x86_64-pc-windows-gnu) echo "    $t: not run here (the test suite runs this bridge under Wine)" ;;
      *) echo "    $t: not run here" ;;
    esac
  done
fi

echo "==> packing"
rm -rf "$out"
python3 scripts/dist/pack.py --version "$version" --out "$out" --npm --pypi "${built[@]}"
for b in "${built[@]}"; do
  dir="${b#*=}"
  for exe in bridge relay bridge.exe; do
    [[ -f "$dir/$exe" ]] && printf '    %-10s %s: %s bytes\n' "$exe" "${b%%=*}" "$(stat -c %s "$dir/$exe")"
  done
done
echo "==> $out/ ready"
