#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance 0.1.16, pinned in
# tests/deps, under Node 22; or the pinned 0.2.0-alpha.12 prerelease for `--requirements`)
# against a Streamable HTTP URL and summarise the result.
#
# usage: tests/clients/conformance.sh URL OUTDIR [extra `conformance server` args...]
#   e.g. conformance.sh http://127.0.0.1:3901/mcp /tmp/conf                 (active suite, 30 scenarios)
#        conformance.sh http://127.0.0.1:3901/mcp /tmp/conf --scenario ping
#        conformance.sh http://127.0.0.1:3901/mcp /tmp/conf --suite all      (+2 pending scenarios)
#        conformance.sh http://127.0.0.1:3901/mcp /tmp/conf --requirements 2026-07-28
#             (the alpha: exactly the server scenarios that revision requires, frozen at its
#             release, plus extension/pending ones it runs and reports but never scores)
# Runs `conformance server --url URL -o OUTDIR [extra]`; every scenario writes
# OUTDIR/server-<scenario>-<timestamp>/checks.json. The suite's own console output goes to
# OUTDIR/conformance-output.txt (its tail is copied to stderr when the run looks broken).
#
# env: MCP_BEARER  the suite has no header option, so the run goes through
#                  tests/clients/bearer_proxy.mjs (inject mode, an ephemeral 127.0.0.1 port) that
#                  adds "Authorization: Bearer <t>" and passes the Host header through unchanged
#      CONFORMANCE_EXPECTED_FAILURES  comma/space separated scenario names allowed to fail
#                  (they are still listed under "failed"; they only do not cause exit 1)
#      CONFORMANCE_TIMEOUT  seconds before the suite is killed (default 600)
#      NODE22, CONFORMANCE_JS  override the pinned binaries (defaults: tests/deps/env.sh; with
#                  --requirements and no CONFORMANCE_JS given, $CONFORMANCE_ALPHA_JS, since
#                  0.1.16 has no requirement sets)
#
# stdout: the last line is one JSON object
#   {"scenarios": N, "scored": S, "passed": P, "failed": [names], "no_results": [names],
#    "unexpected_failed": [names], "warnings": [names with WARNING checks],
#    "warning_checks": {scenario: ["<check id>: <message>", ...]},
#    "checks": {"SUCCESS": n, "FAILURE": n, "WARNING": n, ...},
#    "failures": {scenario: [failed check ids]},
#    "requirements": revision-or-null, "not_scored": [names], "not_scored_passed": [names],
#    "not_scored_failed": [names], "not_scored_reasons": {name: "extension"|"pending"|...},
#    "not_scored_checks": {...}, "not_scored_failures": {scenario: [failed check ids]},
#    "not_scored_warning_checks": {scenario: ["<check id>: <message>"]},
#    "suite_size": N-announced-by-the-suite-or-null,
#    "conformance_exit": rc, "url": tested-url, "via_bearer_proxy": bool, "output": log path}
# N is the number of scenarios the suite set out to run (its "Running <suite> suite (N
# scenarios)" or "Running requirements <rev> (N scenarios)" banner, or the --scenario given);
# a scenario passes only if its checks.json exists, holds at least one check, and no check has
# status FAILURE. Scored scenarios are all of them, except, with --requirements, those the
# revision does not score (extension, pending, added-after-release: from `conformance list
# --requirements <rev>`, else from the run's "Not scored for <rev>" section). passed, failed,
# no_results, unexpected_failed, warnings, checks and failures describe the S scored scenarios
# only; the not_scored_* fields the others, which never affect the exit code. Without
# --requirements, S = N and not_scored is empty. Scenarios without results are failed (and
# listed in no_results); scenarios the suite never reached (crash, timeout) are named from
# `conformance list` when possible, else counted as "<missing #k>".
# Exit: 0 all scored passed (or only expected failures), 1 unexpected failures, 2 harness error
# (bad usage, deps missing, suite did not start, no summary possible).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=script_env.sh
source "$HERE/script_env.sh"
need_args "$0" 2 "URL OUTDIR [extra conformance server args...]" "$@"
URL="$1"; OUTDIR="$2"; shift 2

_keep_conf="${CONFORMANCE_JS:-}"
deps_env NODE22 CONFORMANCE_JS
if [[ -z "$_keep_conf" ]]; then
  for a in "$@"; do
    if [[ "$a" == --requirements || "$a" == --requirements=* ]]; then
      CONFORMANCE_JS="${CONFORMANCE_ALPHA_JS:-}"
      break
    fi
  done
fi
[[ -x "$NODE22" ]] || { echo "conformance.sh: Node 22 not found at $NODE22 (run tests/deps/install.sh)" >&2; exit 2; }
[[ -f "$CONFORMANCE_JS" ]] || { echo "conformance.sh: conformance not found at $CONFORMANCE_JS (run tests/deps/install.sh)" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || { echo "conformance.sh: python3 is needed for the summary" >&2; exit 2; }

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
LOG="$OUTDIR/conformance-output.txt"
BEFORE="$(mktemp "${TMPDIR:-/tmp}/conformance-before.XXXXXX")"
ls -1 "$OUTDIR" > "$BEFORE"

PROXY_PID=""
cleanup() {
  if [[ -n "$PROXY_PID" ]]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
  rm -f "$BEFORE" "${PROXY_OUT:-}"
}
trap cleanup EXIT

TARGET="$URL"
VIA_PROXY=false
if [[ -n "${MCP_BEARER:-}" ]]; then
  rest="${URL#*://}"
  hostport="${rest%%/*}"
  if [[ "$rest" == */* ]]; then path="/${rest#*/}"; else path="/"; fi
  [[ "$URL" == http://* ]] || { echo "conformance.sh: MCP_BEARER needs an http:// URL (proxy speaks plain HTTP)" >&2; exit 2; }
  PROXY_OUT="$(mktemp "${TMPDIR:-/tmp}/bearer-proxy.XXXXXX")"
  "$NODE22" "$HERE/bearer_proxy.mjs" inject "http://$hostport" >"$PROXY_OUT" 2>>"$OUTDIR/bearer-proxy.log" &
  PROXY_PID=$!
  port=""
  for _ in $(seq 1 100); do
    port="$(sed -n 's/^{"port":\([0-9]*\)}$/\1/p' "$PROXY_OUT" | head -1)"
    [[ -n "$port" ]] && break
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n "$port" ]] || { echo "conformance.sh: bearer proxy did not start (see $OUTDIR/bearer-proxy.log)" >&2; exit 2; }
  TARGET="http://127.0.0.1:$port$path"
  VIA_PROXY=true
fi

set +e
timeout -k 10 "${CONFORMANCE_TIMEOUT:-600}" \
  "$NODE22" "$CONFORMANCE_JS" server --url "$TARGET" -o "$OUTDIR" "$@" >"$LOG" 2>&1 </dev/null
rc=$?
set -e

set +e
NODE22="$NODE22" CONFORMANCE_JS="$CONFORMANCE_JS" python3 - "$OUTDIR" "$BEFORE" "$LOG" "$rc" "$URL" "$TARGET" "$VIA_PROXY" "${CONFORMANCE_EXPECTED_FAILURES:-}" "$@" <<'PY'
import json, os, re, subprocess, sys

outdir, before_f, log_f, rc_s, url, target, via_proxy, expected_s, *extra = sys.argv[1:]
rc = int(rc_s)
before = set(open(before_f).read().split())
log = open(log_f, errors="replace").read()


def arg_value(flag):
    for i, a in enumerate(extra):
        if a == flag and i + 1 < len(extra):
            return extra[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def conformance_list(*args):
    """stdout of `conformance list ARGS` ("" when it cannot run)."""
    try:
        return subprocess.run([os.environ["NODE22"], os.environ["CONFORMANCE_JS"], "list", *args],
                              capture_output=True, text=True, timeout=60).stdout
    except Exception:  # noqa: BLE001 - the caller falls back
        return ""


# What the suite set out to run.
m = re.search(r"^Running (?:(\S+) suite|requirements (\S+)) \((\d+) scenarios\)", log, re.M)
suite_size = int(m.group(3)) if m else None
requirements = arg_value("--requirements")
announced = re.findall(r"^=== Running scenario: (.+?) ===$", log, re.M)
started = re.findall(r"^Running client scenario '([^']+)' against server", log, re.M)
single = arg_value("--scenario")
names = []
for n in ([single] if single else []) + announced + started:
    if n not in names:
        names.append(n)
total = max(len(names), suite_size or 0, 1 if single else 0)
if total == 0:
    sys.stderr.write("conformance.sh: the suite did not announce any scenario (did it start?)\n")
    sys.stderr.write(log[-4000:] + "\n")
    print(json.dumps({"scenarios": 0, "scored": 0, "passed": 0, "failed": [],
                      "error": "suite did not start", "requirements": requirements,
                      "conformance_exit": rc, "url": url, "output": log_f}))
    sys.exit(2)

# With --requirements: which server scenarios the revision scores, and which it runs without
# scoring (and why). `conformance list --requirements REV` is the frozen truth; the run's own
# "Not scored for REV" section is the fallback.
req_scored, not_scored_reasons = [], {}
if requirements:
    lst = conformance_list("--requirements", requirements)
    section, reason = None, "not scored"
    for line in lst.splitlines():
        if re.match(r"^Server scenarios", line):
            section = "server"
        elif re.match(r"^\S", line):
            section = "never" if line.startswith("Run and reported, but never scored") else None
        elif section == "server" and (mm := re.match(r"^\s+- (\S+)\s*$", line)):
            req_scored.append(mm.group(1))
        elif section == "never" and (mm := re.match(r"^\s+(\S+) \(\d+\):\s*$", line)):
            reason = mm.group(1)
        elif section == "never" and (mm := re.match(r"^\s+- (\S+) \[server\]\s*$", line)):
            not_scored_reasons[mm.group(1)] = reason
    mm = re.search(r"^Not scored for \S+: \d+ scenario\(s\) run.*\n((?:[ \t]+\S+ \S+ \([^)\n]*\)\n?)*)",
                   log, re.M)
    if mm:
        for line in mm.group(1).splitlines():
            nm = re.match(r"^\s+\S+ (\S+) \(([^)]*)\)\s*$", line)
            if nm:
                not_scored_reasons.setdefault(nm.group(1), nm.group(2))

# Results written by this run (folders that were not there before).
ts = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
results = {}   # scenario -> list of checks (None = folder without readable checks.json)
for d in sorted(os.listdir(outdir)):
    mm = ts.match(d)
    if d in before or not mm or not os.path.isdir(os.path.join(outdir, d)):
        continue
    scen = mm.group(1)
    if scen not in names:
        names.append(scen)
    try:
        with open(os.path.join(outdir, d, "checks.json")) as f:
            checks = json.load(f)
        if not isinstance(checks, list):
            checks = None
    except (OSError, ValueError):
        checks = None
    if checks is None:
        results.setdefault(scen, None)
    else:
        results[scen] = (results.get(scen) or []) + checks
total = max(total, len(names))

# Name the scenarios the suite never reached (it crashed or timed out): from the requirement
# set, or from `conformance list --server` (all scenarios, in run order) minus the pending ones
# when the suite was "active".
missing_unnamed = []
if total > len(names):
    cands = None
    if requirements and req_scored:
        cands = req_scored + [x for x in not_scored_reasons if x not in req_scored]
    else:
        suite = (m.group(1) or "").lower() if m else None
        if suite in ("active", "core", "all", "pending") and not any(a.startswith("--spec-version") for a in extra):
            every = re.findall(r"^\s+- (\S+)", conformance_list("--server"), re.M)
            if every:
                pending = ["json-schema-2020-12", "server-sse-polling"]  # 0.1.16's pending suite
                cands = {"all": every, "pending": [x for x in every if x in pending]}.get(
                    suite, [x for x in every if x not in pending])
    if cands is not None and len(cands) == suite_size:
        names += [x for x in cands if x not in names]
    total = max(total, len(names))
    missing_unnamed = [f"<missing #{k}>" for k in range(1, total - len(names) + 1)]


def summarise(group):
    """passed, failed, no_results, warnings, warning_checks, failures, check counts of `group`."""
    passed, failed, no_results, warnings = [], [], [], []
    warning_checks, failures, counts = {}, {}, {}
    for n in group:
        checks = results.get(n)
        if not checks:
            no_results.append(n); failed.append(n); continue
        for c in checks:
            counts[c.get("status")] = counts.get(c.get("status"), 0) + 1
        bad = [c.get("id") for c in checks if c.get("status") == "FAILURE"]
        warned = [f"{c.get('id')}: {str(c.get('errorMessage') or '')[:300]}"
                  for c in checks if c.get("status") == "WARNING"]
        if warned:
            warnings.append(n); warning_checks[n] = warned
        if bad:
            failed.append(n); failures[n] = bad
        else:
            passed.append(n)
    return passed, failed, no_results, warnings, warning_checks, failures, counts


scored = [n for n in names if n not in not_scored_reasons]
unscored = [n for n in names if n in not_scored_reasons]
passed, failed, no_results, warnings, warning_checks, failures, counts = summarise(scored)
ns_passed, ns_failed, _, _, ns_warning_checks, ns_failures, ns_counts = summarise(unscored)
failed += missing_unnamed
no_results += missing_unnamed

expected = {x for x in re.split(r"[,\s]+", expected_s) if x}
unexpected = [n for n in failed if n not in expected]
summary = {
    "scenarios": total, "scored": len(scored) + len(missing_unnamed), "passed": len(passed),
    "failed": failed, "no_results": no_results, "unexpected_failed": unexpected,
    "warnings": warnings, "warning_checks": warning_checks, "checks": counts, "failures": failures,
    "requirements": requirements, "not_scored": unscored, "not_scored_passed": ns_passed,
    "not_scored_failed": ns_failed, "not_scored_reasons": {n: not_scored_reasons[n] for n in unscored},
    "not_scored_checks": ns_counts, "not_scored_failures": ns_failures,
    "not_scored_warning_checks": ns_warning_checks,
    "suite_size": suite_size, "conformance_exit": rc, "url": url, "via_bearer_proxy": via_proxy == "true",
    "output": log_f,
}
if via_proxy == "true":
    summary["proxied_url"] = target
if rc not in (0, 1):
    sys.stderr.write(f"conformance.sh: the suite exited with {rc} (124 = timeout); output tail:\n{log[-3000:]}\n")
elif (rc == 0) != (not failed):
    sys.stderr.write(f"conformance.sh: note: suite exit {rc} but {len(failed)} failed scenario(s) computed\n")
if failed:
    sys.stderr.write("conformance.sh: failed scenarios: " + ", ".join(failed) + "\n")
if ns_failed:
    sys.stderr.write("conformance.sh: failed but not scored: " + ", ".join(ns_failed) + "\n")
print(json.dumps(summary))
sys.exit(1 if unexpected else 0)
PY
status=$?
set -e
exit "$status"
