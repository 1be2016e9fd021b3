#!/usr/bin/env bash
# Debian packages the end-to-end tests need: Chromium (headless checks of the consent
# page), Pebble (a real ACME server for the certificate tests), PostgreSQL (throwaway
# servers for the shared-state tests of `relay serve --database-url`, started by
# tests/src/postgres.rs), and the tools that check deploy/ (nginx, Caddy and HAProxy run its
# proxy configurations, sqlite3 its backup procedure, python3-yaml reads the compose files), and
# for the Windows bridge mingw-w64 (its linker) and Wine (which runs it: optional, the Wine tests
# skip with a line saying so where it cannot be installed). Installed with apt when missing (the
# test machine runs as root); a no-op when present.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pebble >/dev/null 2>&1 || [[ -x /usr/bin/pebble ]] || need+=(pebble)
[[ -x /usr/sbin/nginx ]] || need+=(nginx)
[[ -x /usr/bin/caddy ]] || need+=(caddy)
[[ -x /usr/bin/sqlite3 ]] || need+=(sqlite3)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || need+=(python3-yaml)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64-win32)
want_wine=0
[[ -x /usr/lib/wine/wine64 ]] || want_wine=1
if [[ ${#need[@]} -eq 0 && $want_wine == 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  if ((${#need[@]})); then
    echo "tests/deps/system.sh: missing ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "tests/deps/system.sh: no Wine (sudo apt-get install wine64): the Windows bridge's tests will be skipped" >&2
  exit 0
fi
echo "installing ${need[*]}$([[ $want_wine == 1 ]] && echo " wine64") from Debian"
export DEBIAN_FRONTEND=noninteractive
# nginx, caddy, postgresql and haproxy are only run by the tests: keep their packages from
# starting them as services (nginx and caddy would take port 80, PostgreSQL port 5432).
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
if ((${#need[@]})); then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [[ $want_wine == 1 ]]; then
  apt-get install -y -qq --no-install-recommends wine64 >/dev/null \
    || echo "tests/deps/system.sh: Wine (wine64) could not be installed: the Windows bridge's tests will be skipped" >&2
fi
for svc in nginx caddy postgresql haproxy; do
  if [[ " ${need[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
