#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine:
# redis-server and redis-tools (redis-cli, redis-benchmark). Idempotent.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test-deps.sh: redis-server is missing and installing it needs root (apt-get install redis-server redis-tools)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq redis-server redis-tools >/dev/null
# The package may start a system instance on 6379; the tests never use it.
(service redis-server stop || true) >/dev/null 2>&1
command -v redis-server >/dev/null
