# What the shell drivers (conformance.sh, inspector.sh) share: their argument count, and the
# pinned helpers' paths from tests/deps/env.sh, a caller's own values winning. Sourced, never
# run; the caller sets HERE to its directory first.

# need_args SCRIPT N USAGE "$@": exits 2 with the usage unless at least N arguments follow.
need_args() {
  local script="$1" n="$2" usage="$3"
  shift 3
  if [[ $# -lt $n ]]; then
    echo "usage: $script $usage" >&2
    exit 2
  fi
}

# deps_env VAR...: sources tests/deps/env.sh, keeping each VAR the caller already set.
deps_env() {
  local -A kept=()
  local v
  for v in "$@"; do kept[$v]="${!v:-}"; done
  # shellcheck source=../deps/env.sh
  source "$HERE/../deps/env.sh" 2>/dev/null || true
  for v in "$@"; do
    if [[ -n "${kept[$v]}" ]]; then printf -v "$v" '%s' "${kept[$v]}"; fi
  done
}
