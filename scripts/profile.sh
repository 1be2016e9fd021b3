#!/usr/bin/env bash
# Profiles the hot path with perf: the relay and the bridge as the benchmark runs them
# (release build, the echo server behind the bridge), under the benchmark's c=32 load
# (`bench --url`), then prints each process's top functions by self time and the shares of
# the project's own code, the kernel and the C library. See BENCHMARKS.md.
#
#   scripts/profile.sh [separate|embedded] [SECONDS]
#
# separate: `relay serve` and `bridge run --relay` (default); embedded: `bridge run` with
# its relay inside. SECONDS (default 8) is the recording window, inside a c=32 run of
# SECONDS + 8 s. The recordings stay in target/profile/<mode>-<process>.data for
# `perf report -i`. Needs Debian's linux-perf (installed with apt when missing, as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-separate}"
secs="${2:-8}"
case "$mode" in separate|embedded) ;; *) echo "profile.sh: separate or embedded, not $mode" >&2; exit 2 ;; esac

if ! command -v perf >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
  else
    echo "profile.sh: needs perf (Debian: apt-get install linux-perf)" >&2
    exit 1
  fi
fi

cargo build --release --locked -q -p bench -p relay -p bridge
bin="${CARGO_TARGET_DIR:-target}/release"
out="${CARGO_TARGET_DIR:-target}/profile"
mkdir -p "$out"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for a line starting with $2 in file $1; prints the rest of the line.
wait_line() {
  for _ in $(seq 200); do
    if grep -q "^$2" "$1" 2>/dev/null; then
      sed -n "s/^$2 *//p" "$1" | head -1
      return 0
    fi
    sleep 0.05
  done
  echo "profile.sh: no \"$2\" in $1:" >&2
  cat "$1" >&2
  exit 1
}

export HOME="$work"  # the bridge remembers names and tokens under HOME
unset RUST_LOG BRIDGE_CLIENT_TOKEN BRIDGE_RELAY
if [[ "$mode" == separate ]]; then
  token="profile-bridge-token-$$-0123456789"
  RELAY_BRIDGE_TOKENS="$token" "$bin/relay" serve --listen 127.0.0.1:0 \
    --max-connections-per-address 1000000 >"$work/relay.out" 2>"$work/relay.err" &
  pids+=($!)
  relay_pid=$!
  wait_line "$work/relay.out" "Relay listening on" >/dev/null
  relay_url="$(sed -n 's/.*public URL \(.*\)$/\1/p' "$work/relay.out" | head -1)"
  BRIDGE_TOKEN="$token" "$bin/bridge" run --relay "$relay_url" --name profile \
    -- "$bin/echo-server" >"$work/bridge.out" 2>"$work/bridge.err" &
else
  "$bin/bridge" run --listen 127.0.0.1:0 --name profile \
    -- "$bin/echo-server" >"$work/bridge.out" 2>"$work/bridge.err" &
fi
pids+=($!)
bridge_pid=$!
url="$(wait_line "$work/bridge.out" "MCP endpoint:")"
bearer="$(wait_line "$work/bridge.out" "Bearer token:")"

echo "==> $mode: c=32 load on $url, recording ${secs} s"
BENCH_BEARER="$bearer" "$bin/bench" --url "$url" --runs 1 --secs "$((secs + 8))" >"$work/bench.out" 2>&1 &
bench_pid=$!
pids+=("$bench_pid")
sleep 4  # past the c=1 phase, into the c=32 window
records=()
procs=(bridge)
[[ "$mode" == separate ]] && procs=(relay bridge)
for p in "${procs[@]}"; do
  pid_var="${p}_pid"
  perf record -q -F 999 -g -p "${!pid_var}" -o "$out/$mode-$p.data" -- sleep "$secs" 2>/dev/null &
  records+=($!)
done
wait "${records[@]}"
wait "$bench_pid" || true
echo "    load: $(tail -1 "$work/bench.out")"

for p in "${procs[@]}"; do
  data="$out/$mode-$p.data"
  echo
  echo "==> $p ($mode): self time by function (top 25), from $data"
  perf report -i "$data" --no-children --sort symbol --stdio -g none --percent-limit 0.5 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -25 | sed -E 's/ +$//' | cut -c1-140
  echo "==> $p ($mode): self time by binary"
  perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -6 | sed -E 's/ +$//'
done
