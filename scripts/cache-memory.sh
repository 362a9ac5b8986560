#!/usr/bin/env bash
# Process memory of the near-cache against cache.max_bytes, for small,
# medium and large values: one process per size (resident memory is not
# given back), each filling a 16 MiB cache twice over. See
# examples/cache_memory.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example cache_memory
for size in 16 1024 65536; do
  ./target/release/examples/cache_memory "$size" "${MAX_BYTES:-16777216}"
done
