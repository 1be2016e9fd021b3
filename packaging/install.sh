#!/bin/sh
# Installs `bridge` (and, with --relay, `relay`) from a release of mcp-tunnel:
#
#   curl -fsSL https://github.com/mcp-tunnel/mcp-tunnel/releases/latest/download/install.sh | sh
#   curl -fsSL …/install.sh | sh -s -- --prefix /usr/local --relay
#
# It picks the archive for this machine's platform, checks it against the release's
# SHA256SUMS (refusing a mismatch), and puts the binaries in PREFIX/bin (default
# ~/.local/bin, also when run as root). MCP_TUNNEL_DOWNLOAD_URL overrides the folder
# holding the archives and SHA256SUMS (a mirror, or a local `dist/`); MCP_TUNNEL_VERSION
# picks a version (default: the one this script was released with).
set -eu

VERSION="${MCP_TUNNEL_VERSION:-@VERSION@}"
BASE="${MCP_TUNNEL_DOWNLOAD_URL:-https://github.com/mcp-tunnel/mcp-tunnel/releases/download/v$VERSION}"
PREFIX="${HOME:-/root}/.local"
BINARIES="bridge"

say() { printf '%s\n' "install.sh: $*" >&2; }
die() { say "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#--prefix=}"; shift ;;
        --relay) BINARIES="bridge relay"; shift ;;
        -h|--help)
            cat <<USAGE
install.sh [--prefix DIR] [--relay]: installs bridge (and relay) $VERSION into DIR/bin
(default ~/.local/bin), checked against the release's SHA256SUMS.
Environment: MCP_TUNNEL_DOWNLOAD_URL (the folder of archives and SHA256SUMS),
MCP_TUNNEL_VERSION (the version to install).
USAGE
            exit 0 ;;
        *) die "unknown option: $1 (try --help)" ;;
    esac
done

case "$(uname -s)" in
    Linux) os=unknown-linux-musl ;;
    Darwin) os=apple-darwin ;;
    *) die "no release for $(uname -s); on Windows use install.ps1, elsewhere build from source" ;;
esac
case "$(uname -m)" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) die "no release for the $(uname -m) processor; build from source" ;;
esac
target="$arch-$os"

if command -v curl >/dev/null 2>&1; then
    fetch() { curl --proto '=https,http' -fsSL "$1" -o "$2"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q "$1" -O "$2"; }
else
    die "needs curl or wget"
fi
if command -v sha256sum >/dev/null 2>&1; then
    digest() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    digest() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "needs sha256sum or shasum to check the download"
fi

tmp="$(mktemp -d 2>/dev/null || mktemp -d -t mcp-tunnel)"
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch "$BASE/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $BASE/SHA256SUMS"
mkdir -p "$PREFIX/bin"
for bin in $BINARIES; do
    archive="$bin-$VERSION-$target.tar.gz"
    say "downloading $archive"
    fetch "$BASE/$archive" "$tmp/$archive" || die "cannot download $BASE/$archive"
    want="$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")"
    [ -n "$want" ] || die "SHA256SUMS has no line for $archive"
    got="$(digest "$tmp/$archive")"
    [ "$got" = "$want" ] || die "checksum mismatch for $archive (expected $want, got $got): not installed"
    mkdir "$tmp/$bin.d"
    tar -xzf "$tmp/$archive" -C "$tmp/$bin.d"
    [ -f "$tmp/$bin.d/$bin" ] || die "$archive holds no $bin"
    chmod 755 "$tmp/$bin.d/$bin"
    mv -f "$tmp/$bin.d/$bin" "$PREFIX/bin/$bin"
    say "installed $PREFIX/bin/$bin ($("$PREFIX/bin/$bin" --version 2>/dev/null || echo "$VERSION"))"
done

case ":${PATH:-}:" in
    *":$PREFIX/bin:"*) ;;
    *) say "add $PREFIX/bin to your PATH, e.g. echo 'export PATH=\"$PREFIX/bin:\$PATH\"' >> ~/.profile" ;;
esac
