# Homebrew formula of the bridge, filled in by scripts/dist/pack.py (dist/homebrew/) with
# the release's version and checksums. Put the filled file in a tap
# (github.com/<owner>/homebrew-tap, Formula/mcp-tunnel.rb); then
#   brew install <owner>/tap/mcp-tunnel
class McpTunnel < Formula
  desc "Serve desktop MCP servers to ChatGPT, Claude and other hosted AI clients"
  homepage "https://github.com/mcp-tunnel/mcp-tunnel"
  version "@VERSION@"
  license any_of: ["MIT", "Apache-2.0"]

  on_macos do
    on_arm do
      url "@BASE@/bridge-@VERSION@-aarch64-apple-darwin.tar.gz"
      sha256 "@SHA256:aarch64-apple-darwin@"
    end
    on_intel do
      url "@BASE@/bridge-@VERSION@-x86_64-apple-darwin.tar.gz"
      sha256 "@SHA256:x86_64-apple-darwin@"
    end
  end

  on_linux do
    on_arm do
      url "@BASE@/bridge-@VERSION@-aarch64-unknown-linux-musl.tar.gz"
      sha256 "@SHA256:aarch64-unknown-linux-musl@"
    end
    on_intel do
      url "@BASE@/bridge-@VERSION@-x86_64-unknown-linux-musl.tar.gz"
      sha256 "@SHA256:x86_64-unknown-linux-musl@"
    end
  end

  def install
    bin.install "bridge"
  end

  test do
    assert_match "bridge #{version}", shell_output("#{bin}/bridge --version")
  end
end
