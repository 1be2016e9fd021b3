#!/usr/bin/env bash
# Debian packages the end-to-end tests need: Chromium (headless checks of the consent
# page) and Pebble (a real ACME server for the certificate tests). Installed with apt when
# missing (the test machine runs as root); a no-op when present.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pebble >/dev/null 2>&1 || [[ -x /usr/bin/pebble ]] || need+=(pebble)
if [[ ${#need[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "tests/deps/system.sh: missing ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
