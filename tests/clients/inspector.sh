#!/usr/bin/env bash
# Run the MCP Inspector CLI (pinned in tests/deps, 2.x, under Node 22) against one URL, one method.
#
# usage: tests/clients/inspector.sh URL METHOD [extra inspector args...]
#   e.g. inspector.sh http://127.0.0.1:3901/mcp tools/list
#        inspector.sh http://127.0.0.1:3901/mcp tools/call --tool-name echo --tool-args-json '{"message":"hi"}'
#        inspector.sh http://127.0.0.1:3902/sse resources/read --uri test://static-text
#        inspector.sh http://127.0.0.1:3901/x  tools/list --transport http
# Transport is auto-detected from the URL path (/mcp -> Streamable HTTP, /sse -> legacy SSE);
# pass --transport http|sse otherwise.
#
# env: MCP_BEARER   sent as "Authorization: Bearer <t>"
#      MCP_AUTO_OPEN_ENABLED=true  allow the Inspector's own interactive OAuth (otherwise the
#                   run uses --stored-auth-only: a server that wants OAuth fails fast with
#                   exit 3 "auth_required" instead of waiting for a human)
#      NODE22, INSPECTOR_BIN  override the pinned binaries (defaults: tests/deps/env.sh)
#      INSPECTOR_TIMEOUT      seconds before the run is killed (default 120)
#
# stdout: the last line is one JSON object. On success it is the Inspector's own --format json
# output ({"result": ...}). On failure it is {"ok": false, "exit_code": N, "error": <the
# Inspector's JSON error envelope from stderr, or its text>} and the script exits with the
# Inspector's code (3 auth_required, 4 unreachable, 5 tool error / tool_not_found, 124 timeout).
# The Inspector's stderr is passed through to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -lt 2 ]]; then
  echo "usage: $0 URL METHOD [extra inspector args...]" >&2
  exit 2
fi
URL="$1"; METHOD="$2"; shift 2

# shellcheck source=../deps/env.sh
_keep_node22="${NODE22:-}"; _keep_insp="${INSPECTOR_BIN:-}"
source "$HERE/../deps/env.sh" 2>/dev/null || true
NODE22="${_keep_node22:-$NODE22}"; INSPECTOR_BIN="${_keep_insp:-$INSPECTOR_BIN}"
[[ -x "$NODE22" ]] || { echo "inspector.sh: Node 22 not found at $NODE22 (run tests/deps/install.sh)" >&2; exit 2; }
[[ -e "$INSPECTOR_BIN" ]] || { echo "inspector.sh: Inspector not found at $INSPECTOR_BIN (run tests/deps/install.sh)" >&2; exit 2; }

TMPH="$(mktemp -d "${TMPDIR:-/tmp}/inspector-home.XXXXXX")"
ERRF="$TMPH/stderr"
OUTF="$TMPH/stdout"
trap 'rm -rf "$TMPH"' EXIT

args=(--cli "$URL" --method "$METHOD")
have_format=0
for a in "$@"; do [[ "$a" == --format || "$a" == --format=* ]] && have_format=1; done
[[ $have_format == 1 ]] || args+=(--format json)
if [[ -n "${MCP_BEARER:-}" ]]; then
  args+=(--header "Authorization: Bearer $MCP_BEARER")
fi
if [[ "${MCP_AUTO_OPEN_ENABLED:-}" != true ]]; then
  args+=(--stored-auth-only)
fi
args+=("$@")

set +e
# The Inspector writes ~/.mcp-inspector (catalog, storage): keep it in a throw-away HOME.
HOME="$TMPH" XDG_CONFIG_HOME="$TMPH/.config" MCP_INSPECTOR_SECRET_STORE=memory \
  PATH="$(dirname "$NODE22"):$PATH" \
  timeout -k 5 "${INSPECTOR_TIMEOUT:-120}" "$NODE22" "$INSPECTOR_BIN" "${args[@]}" >"$OUTF" 2>"$ERRF" </dev/null
rc=$?
set -e
cat "$ERRF" >&2

# Print the last JSON object line of stdout (compact), or a failure object.
"$NODE22" - "$OUTF" "$ERRF" "$rc" <<'JS'
const fs = require('fs');
const [outF, errF, rcS] = process.argv.slice(2);
const rc = Number(rcS);
const parseLastJson = (text) => {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  for (let i = lines.length - 1; i >= 0; i--) {
    try { const v = JSON.parse(lines[i]); if (v && typeof v === 'object') return v; } catch {}
  }
  try { const v = JSON.parse(text); if (v && typeof v === 'object') return v; } catch {}
  return undefined;
};
const out = fs.readFileSync(outF, 'utf8');
const err = fs.readFileSync(errF, 'utf8');
if (rc === 0) {
  const v = parseLastJson(out);
  if (v === undefined) {
    process.stdout.write(out);
    console.error('inspector.sh: the Inspector exited 0 but printed no JSON object');
    process.exit(70);
  }
  console.log(JSON.stringify(v));
} else {
  const e = parseLastJson(err);
  if (out.trim()) process.stdout.write(out.endsWith('\n') ? out : out + '\n');
  console.log(JSON.stringify({ ok: false, exit_code: rc,
    error: e !== undefined ? (e.error ?? e) : (rc === 124 ? 'timeout' : err.trim().slice(-2000)) }));
  console.error(`inspector.sh: the Inspector exited with ${rc}`);
}
JS
exit "$rc"
