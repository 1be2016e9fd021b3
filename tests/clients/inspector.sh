#!/usr/bin/env bash
# Run the MCP Inspector CLI (pinned in tests/deps, 2.x, under Node 22) against one URL, one method.
#
# usage: tests/clients/inspector.sh URL METHOD [extra inspector args...]
#   e.g. inspector.sh http://127.0.0.1:3901/mcp tools/list
#        inspector.sh http://127.0.0.1:3901/mcp tools/call --tool-name echo --tool-args-json '{"message":"hi"}'
#        inspector.sh http://127.0.0.1:3902/sse resources/read --uri test://static-text
#        inspector.sh http://127.0.0.1:3901/x  tools/list --transport http
#        inspector.sh http://127.0.0.1:3901/mcp tools/list --protocol-era auto --report-era
# Transport is auto-detected from the URL path (/mcp -> Streamable HTTP, /sse -> HTTP+SSE);
# pass --transport http|sse otherwise.
#
# Protocol era: the Inspector's own `--protocol-era legacy|auto|modern` (passed through like any
# inspector arg; ad-hoc URLs default to legacy). The Inspector never prints which era it ended
# up in, so this script's own flag --report-era (not passed to the Inspector; http:// URLs
# only) puts tests/clients/tap_proxy.mjs in front of URL and adds what went over the wire to
# the output: "wire": {"era": "modern"|"legacy"|null, "protocol", "initialize": n,
# "discover": {"status", "result"|"error"}|null, "methods": ["POST server/discover 200", ...],
# "exchanges", "session_ids"} (see tap_proxy.mjs --summarize).
#
# env: MCP_BEARER   sent as "Authorization: Bearer <t>"
#      MCP_AUTO_OPEN_ENABLED=true  allow the Inspector's own interactive OAuth (otherwise the
#                   run uses --stored-auth-only: a server that wants OAuth fails fast with
#                   exit 3 "auth_required" instead of waiting for a human)
#      NODE22, INSPECTOR_BIN  override the pinned binaries (defaults: tests/deps/env.sh)
#      INSPECTOR_TIMEOUT      seconds before the run is killed (default 120)
#
# stdout: the last line is one JSON object. On success it is the Inspector's own --format json
# output ({"result": ...}, plus "wire" with --report-era). On failure it is {"ok": false,
# "exit_code": N, "wire" (with --report-era), "error": <the
# Inspector's JSON error envelope from stderr, or its text>} and the script exits with the
# Inspector's code (3 auth_required, 4 unreachable, 5 tool error / tool_not_found, 124 timeout).
# The Inspector's stderr is passed through to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=script_env.sh
source "$HERE/script_env.sh"
need_args "$0" 2 "URL METHOD [extra inspector args...]" "$@"
URL="$1"; METHOD="$2"; shift 2

deps_env NODE22 INSPECTOR_BIN
[[ -x "$NODE22" ]] || { echo "inspector.sh: Node 22 not found at $NODE22 (run tests/deps/install.sh)" >&2; exit 2; }
[[ -e "$INSPECTOR_BIN" ]] || { echo "inspector.sh: Inspector not found at $INSPECTOR_BIN (run tests/deps/install.sh)" >&2; exit 2; }

TMPH="$(mktemp -d "${TMPDIR:-/tmp}/inspector-home.XXXXXX")"
ERRF="$TMPH/stderr"
OUTF="$TMPH/stdout"
WIREF="$TMPH/wire.json"
TAP_PID=""
cleanup() {
  if [[ -n "$TAP_PID" ]]; then kill "$TAP_PID" 2>/dev/null || true; wait "$TAP_PID" 2>/dev/null || true; fi
  rm -rf "$TMPH"
}
trap cleanup EXIT

# --report-era is this script's own flag: take it out of the Inspector's arguments.
REPORT_ERA=0
rest_args=()
for a in "$@"; do
  if [[ "$a" == --report-era ]]; then REPORT_ERA=1; else rest_args+=("$a"); fi
done
set -- ${rest_args[@]+"${rest_args[@]}"}

if [[ $REPORT_ERA == 1 ]]; then
  [[ "$URL" == http://* ]] || { echo "inspector.sh: --report-era needs an http:// URL" >&2; exit 2; }
  hostport="${URL#http://}"; hostport="${hostport%%/*}"
  tail_path="${URL#http://$hostport}"
  # The files exist before the proxy starts: reading them must not race its redirections
  # (under `set -e -o pipefail`, a failed read would end this script).
  : >"$TMPH/tap.port"; : >"$TMPH/tap.err"
  "$NODE22" "$HERE/tap_proxy.mjs" "http://$hostport" --log "$TMPH/tap.jsonl" >>"$TMPH/tap.port" 2>>"$TMPH/tap.err" &
  TAP_PID=$!
  port=""
  for _ in $(seq 1 100); do
    port="$(sed -n 's/^{"port":\([0-9]*\)}$/\1/p' "$TMPH/tap.port" | head -1)"
    [[ -n "$port" ]] && break
    kill -0 "$TAP_PID" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n "$port" ]] || { echo "inspector.sh: tap_proxy.mjs did not start: $(cat "$TMPH/tap.err")" >&2; exit 2; }
  URL="http://127.0.0.1:$port$tail_path"
fi

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
if [[ $REPORT_ERA == 1 ]]; then
  "$NODE22" "$HERE/tap_proxy.mjs" --summarize "$TMPH/tap.jsonl" --wait 3 >"$WIREF" || true
fi

# Print the last JSON object line of stdout (compact), or a failure object.
"$NODE22" - "$OUTF" "$ERRF" "$rc" "$REPORT_ERA" "$WIREF" <<'JS'
const fs = require('fs');
const [outF, errF, rcS, reportEra, wireF] = process.argv.slice(2);
const rc = Number(rcS);
let wire;
if (reportEra === '1') {
  try { wire = JSON.parse(fs.readFileSync(wireF, 'utf8')); } catch { wire = null; }
}
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
  console.log(JSON.stringify(wire === undefined ? v : { ...v, wire }));
} else {
  const e = parseLastJson(err);
  if (out.trim()) process.stdout.write(out.endsWith('\n') ? out : out + '\n');
  console.log(JSON.stringify({ ok: false, exit_code: rc, ...(wire === undefined ? {} : { wire }),
    error: e !== undefined ? (e.error ?? e) : (rc === 124 ? 'timeout' : err.trim().slice(-2000)) }));
  console.error(`inspector.sh: the Inspector exited with ${rc}`);
}
JS
exit "$rc"
