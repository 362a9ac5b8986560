#!/usr/bin/env bash
# Counts CPU instructions the proxy spends per request, which unlike
# requests/s does not drift with machine noise: the proxy runs under
# callgrind with one worker thread, counters are zeroed after a warm-up,
# then a fixed redis-benchmark load runs and the total is divided by it.
#
#   scripts/callgrind.sh                    # GET, no pipelining, near-cache off
#   TEST=set PIPE=16 scripts/callgrind.sh
#   CACHE=on KEYS=1000 scripts/callgrind.sh # hot keys served from the near-cache
#   CACHE=on KEYS=10000000 scripts/callgrind.sh  # miss-heavy
#   CACHE=on ADMISSION=first KEYS=10000000 scripts/callgrind.sh  # … filling on every first miss
#   TENANT=1 scripts/callgrind.sh           # clients authenticated as a tenant: keys prefixed
#   CLUSTER=1 scripts/callgrind.sh          # upstream a Redis Cluster of three masters
#   FLOOR=1 CLIENTS=1 scripts/callgrind.sh   # examples/floor.rs instead: a bare tokio byte relay
#   FLOOR=mio CLIENTS=1 scripts/callgrind.sh # examples/floor_mio.rs: the same on a bare mio loop
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
BIN=${BIN:-./target/release/nearcache}
TEST=${TEST:-get}
PIPE=${PIPE:-1}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-100000}
CACHE=${CACHE:-off}
ADMISSION=${ADMISSION:-second}
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
PROXY=$(port)
upstream="redis://127.0.0.1:$REDIS"
fill=(-p "$REDIS")
if [ "${CLUSTER:-0}" != 0 ]; then
  start_cluster
  upstream=$UPSTREAM
  fill=(--cluster -p "${PORT[cluster]}")
fi
if [ "$CACHE" = on ]; then printf '[cache]\nadmission = "%s"\n' "$ADMISSION" >"$work/proxy.toml"; else printf '[cache]\nenabled = false\n' >"$work/proxy.toml"; fi
auth=()
if [ "${TENANT:-0}" != 0 ]; then
  secret=callgrind-bench-secret
  printf '[[tenant]]\nname = "bench"\npassword_sha256 = "%s"\n' \
    "$(printf %s "$secret" | sha256sum | cut -d' ' -f1)" >>"$work/proxy.toml"
  auth=(--user bench -a "$secret")
fi
if [ "${FLOOR:-0}" != 0 ]; then
  example=floor
  if [ "$FLOOR" = mio ]; then example=floor_mio; fi
  cargo build --release --quiet --example "$example"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "./target/release/examples/$example" "127.0.0.1:$PROXY" "127.0.0.1:$REDIS" >"$work/proxy.log" 2>&1 &
else
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$BIN" --config "$work/proxy.toml" --worker-threads 1 --listen "127.0.0.1:$PROXY" --admin-listen 127.0.0.1:0 \
    --upstream "$upstream" >"$work/proxy.log" 2>&1 &
fi
vg=$!
pids+=($vg)
wait_port "$PROXY"
if [ ${#auth[@]} -gt 0 ]; then
  # The tenant's keys carry its prefix: written through the proxy.
  redis-benchmark -p "$PROXY" "${auth[@]}" -t set -r "$KEYS" -n 20000 -d 64 -q >/dev/null
else
  redis-benchmark "${fill[@]}" -t set -r "$KEYS" -n 20000 -d 64 -q >/dev/null
fi
redis-benchmark -p "$PROXY" "${auth[@]}" -t "$TEST" -P "$PIPE" -c "$CLIENTS" -n 20000 -d 64 -r "$KEYS" -q >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
redis-benchmark -p "$PROXY" "${auth[@]}" -t "$TEST" -P "$PIPE" -c "$CLIENTS" -n "$N" -d 64 -r "$KEYS" -q >/dev/null
callgrind_control -d "$vg" >/dev/null 2>&1
total=$(for f in "$work"/cg.out*; do grep -h '^summary:' "$f"; done | awk '{s+=$2} END {print s}')
what=nearcache
if [ "${FLOOR:-0}" != 0 ]; then what="examples/$example.rs"; fi
if [ ${#auth[@]} -gt 0 ]; then what="$what (tenant)"; fi
if [ "${CLUSTER:-0}" != 0 ]; then what="$what (cluster)"; fi
printf '%s, cache %s (admission %s), %s P=%s: %s instructions / %s requests = %.0f   per request\n' "$what" "$CACHE" "$ADMISSION" "$TEST" "$PIPE" "$total" "$N" "$(awk "BEGIN{print $total/$N}")"
if [ -n "${KEEP:-}" ]; then cp "$work"/cg.out* "$KEEP"/ && echo "profiles copied to $KEEP"; fi
