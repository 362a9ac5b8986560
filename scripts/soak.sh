#!/usr/bin/env bash
# Soak test (tests/soak.rs, ignored by default): 2,000 concurrent client
# connections with mixed, pipelined traffic through the release proxy binary:
# a warm-up until memory is in its steady state (at most 5 minutes), then
# SOAK_SECS seconds measured (default 60). Prints the proxy's RSS at the start
# and end, requests done and errors; fails on any error or on memory growth.
#   scripts/soak.sh                          # 2,000 clients, 60 s
#   SOAK_SECS=600 scripts/soak.sh            # longer
#   SOAK_CLIENTS=500 SOAK_SECS=10 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
# Both ends of 2,000 connections need a descriptor each (~4,500 with
# Redis, pipes and the runtime): raise the soft limit, up to the hard one.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
need=$(( ${SOAK_CLIENTS:-2000} * 2 + 500 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  echo "scripts/soak.sh: open-file limit $(ulimit -n) < $need (hard limit $(ulimit -Hn)); raise it (limits.conf, --ulimit nofile=65536)" >&2
  exit 1
fi
echo "soak: open-file limit $(ulimit -n), ${SOAK_CLIENTS:-2000} clients, ${SOAK_SECS:-60} s"
exec cargo test --release --test soak -- --ignored --nocapture "$@"
