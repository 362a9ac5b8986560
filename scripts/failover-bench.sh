#!/usr/bin/env bash
# Failover throughput, end to end: the proxy starts with no upstream and
# serves redis-benchmark's INCR/LPUSH/SET load from local memory (every
# write journaled); then a redis-server appears on the upstream port and the
# journal is replayed into it. Prints the failover request rates, the
# replay rate the proxy logged, and checks the counter arrived intact.
#   N=200000 bash scripts/failover-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${N:-200000}
LATE=$(port)
PROXY=$(port)
ADMIN=$(port)
./target/release/nearcache --listen "127.0.0.1:$PROXY" --admin-listen "127.0.0.1:$ADMIN" \
  --upstream "redis://127.0.0.1:$LATE" >"$work/proxy.log" 2>&1 &
pids+=($!)
wait_port "$PROXY"
until curl -s "127.0.0.1:$ADMIN/ready" | grep -q '"mode":"failover"'; do sleep 0.1; done
echo "== failover (no upstream), $N requests each, 50 clients, -P 16"
redis-benchmark -p "$PROXY" -t set,incr,lpush -n "$N" -c 50 -P 16 -q | tr '\r' '\n' | grep 'requests per second'
curl -s "127.0.0.1:$ADMIN/ready"
echo "== upstream appears: replay"
redis-server --port "$LATE" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
pids+=($!)
until curl -s "127.0.0.1:$ADMIN/ready" | grep -q '"mode":"normal","journal_entries":0'; do sleep 0.1; done
grep -o 'journal replayed upstream.*' "$work/proxy.log" | sed 's/\x1b\[[0-9;]*m//g'
counter=$(redis-cli -p "$LATE" get counter:__rand_int__)
echo "counter upstream after replay: $counter (expected $N)"
[ "$counter" = "$N" ]
