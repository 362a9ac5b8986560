#!/usr/bin/env bash
# Runs every check and test: installs test dependencies, then formatting,
# clippy, unit and integration tests (against real redis-server processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
