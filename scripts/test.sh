#!/usr/bin/env bash
# Runs every check and test: installs test dependencies, then formatting,
# clippy, unit and integration tests (against real redis-server processes:
# Debian's Redis 7.0, then Redis 7.2 and Valkey 8 built from shared/vendor).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
# The integration tests again against newer servers (NEARCACHE_TEST_SERVER
# picks the binary; TLS tests keep Debian's, the vendored builds have none).
vendor=../shared/vendor/build-server.sh
if [ -f "$vendor" ]; then
  for name in redis-7.2.6 valkey-8.0.1; do
    server=$(bash "$vendor" "$name")
    echo "== integration tests against $name ($server)"
    NEARCACHE_TEST_SERVER=$server cargo test --tests --locked
  done
else
  echo "scripts/test.sh: $vendor not found: tested against $(redis-server --version | cut -d' ' -f3) only" >&2
fi
