#!/usr/bin/env bash
# Installs the system packages the test suite and demo need (Debian): redis-server, and
# redis-tools for redis-cli (the Redis Cluster tests create their cluster with it).
# `system-deps.sh bench` also installs what the load benchmark drives: wrk and nginx.
# Idempotent; a no-op when everything is present.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${1:-}" = "bench" ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "system-deps: need ${need[*]} but not root and no sudo; install them with your package manager" >&2
    exit 1
  fi
else SUDO=""; fi
echo "system-deps: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package starts a system-wide server; the tests start their own on a free port.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now redis-server nginx >/dev/null 2>&1 || true; fi
pkill -x nginx >/dev/null 2>&1 || true
