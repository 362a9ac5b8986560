#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine:
# redis-server and redis-tools (redis-cli, redis-benchmark), and the client
# libraries tests/clients.rs runs: each redis-py version of
# tests/clients/python/versions.txt in a virtual environment of its own
# (target/clients/redis-py-<version>), and the Node packages of
# tests/clients/node/package-lock.json (npm ci, into
# tests/clients/node/node_modules). Idempotent: each part is skipped when it
# is already installed (a stamp records what was), so a second run takes
# well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test-deps.sh: $1 is missing and installing it needs root (apt-get install $2)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${apt_updated:-}" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  # shellcheck disable=SC2086
  apt-get install -y -qq $2 >/dev/null
}

# redis-server, redis-cli, redis-benchmark.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  as_root redis-server "redis-server redis-tools"
  # The package may start a system instance on 6379; the tests never use it.
  (service redis-server stop || true) >/dev/null 2>&1
  command -v redis-server >/dev/null
fi

# redis-py, one virtual environment per version.
command -v python3 >/dev/null 2>&1 || as_root python3 "python3 python3-venv"
while read -r version; do
  case "$version" in '' | '#'*) continue ;; esac
  venv=target/clients/redis-py-$version
  if [ "$(cat "$venv/.installed" 2>/dev/null)" = "redis==$version" ] && [ -x "$venv/bin/python" ]; then
    continue
  fi
  rm -rf "$venv"
  mkdir -p target/clients
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    as_root "python3 -m venv" python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "redis==$version"
  echo "redis==$version" >"$venv/.installed"
done <tests/clients/python/versions.txt

# ioredis and node-redis, as package-lock.json pins them.
command -v npm >/dev/null 2>&1 || as_root npm "nodejs npm"
node_dir=tests/clients/node
if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.installed-lock.json"; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  cp "$node_dir/package-lock.json" "$node_dir/node_modules/.installed-lock.json"
fi
