#!/usr/bin/env bash
# Fault injection under load (issue 15's measured goal): a persistent
# redis-server and nearcache on free loopback ports, then
# target/release/examples/faults (examples/faults.rs explains what it
# measures) drives 8 clients through the proxy while it kills connections,
# pauses, stops and restarts Redis. Prints one line per fault and, at the
# end, lost/duplicated writes read back from Redis; the last line is
# "faults: wrong=N wrong_in_outage=N lost=N duplicated=N" (wrong: while Redis
# is reachable, target 0). Exits 0 whatever was measured.
#
#   bash scripts/faults.sh
#   FAULTS=ef bash scripts/faults.sh        # only some faults (letters a-g)
#   STALL_AFTER= bash scripts/faults.sh     # without breaker.stall_after
#   KEEP=1 bash scripts/faults.sh           # keep the scratch folder (logs)
set -euo pipefail
cd "$(dirname "$0")/.."
STALL_AFTER=${STALL_AFTER-300ms}
FAULTS=${FAULTS:-abcdefg}
CLIENTS=${CLIENTS:-8}
KEEP=${KEEP:-0}

bash scripts/test-deps.sh
cargo build --release --bin nearcache --example faults

work=$(mktemp -d)
proxy_pid=""
cleanup() {
  if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; fi
  # The Redis running now (the example may have restarted it): SIGKILL
  # also ends a stopped one.
  if [ -s "$work/redis.pid" ]; then kill -KILL "$(cat "$work/redis.pid")" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then echo "scratch folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A loopback port nothing listens on, below the kernel's ephemeral range
# (32768 and up by default, busy with outgoing connections), never 6379.
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % 22000))
    [ "$p" != 6379 ] || continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
answers() { redis-cli -p "$1" ping >/dev/null 2>&1; }

# Every write is in the append-only file before Redis answers, so a SIGKILL
# and a restart with the same file keep everything acknowledged. Daemonized
# with a pid file, so the restart the example runs ($start_redis) returns at
# once and cleanup finds whichever Redis runs last.
start_redis="redis-server $work/redis.conf"
try_redis() { # true once a Redis answers on a fresh $REDIS
  REDIS=$(free_port)
  rm -f "$work/redis.log"
  cat >"$work/redis.conf" <<CONF
port $REDIS
bind 127.0.0.1
save ""
appendonly yes
appendfsync always
dir $work
daemonize yes
pidfile $work/redis.pid
logfile $work/redis.log
CONF
  $start_redis
  for _ in $(seq 100); do
    answers "$REDIS" && return 0
    grep -q "Failed listening" "$work/redis.log" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}
# Runs $3 (a try_* function, on fresh ports each time) until it succeeds,
# five times at most; then says why $1 did not start (the end of log $2).
start_or_die() {
  for _ in 1 2 3 4 5; do
    "$3" && return 0
  done
  echo "$1 did not start; the end of its log:" >&2
  tail -n 20 "$2" >&2 || true
  exit 1
}
start_or_die redis-server "$work/redis.log" try_redis

stall_line=""
if [ -n "$STALL_AFTER" ]; then stall_line="stall_after = \"$STALL_AFTER\""; fi
write_proxy_config() {
  cat >"$work/proxy.toml" <<TOML
[upstream]
request_timeout = "2s"

[breaker]
$stall_line

[cache]
default_ttl = "off"

[[cache.policy]]
pattern = "hot:*"
ttl = "10m"
TOML
}
write_proxy_config
if ! check=$(./target/release/nearcache --check-config "$work/proxy.toml" 2>&1); then
  if [ -n "$stall_line" ] && grep -q stall_after <<<"$check"; then
    echo "NOTE: this nearcache refuses breaker.stall_after ($check); running without it"
    stall_line=""
    write_proxy_config
  else
    echo "$check" >&2
    exit 1
  fi
fi

try_proxy() { # true once the proxy answers on a fresh $PROXY
  PROXY=$(free_port)
  ADMIN=$(free_port)
  ./target/release/nearcache --config "$work/proxy.toml" --listen "127.0.0.1:$PROXY" \
    --admin-listen "127.0.0.1:$ADMIN" --upstream "redis://127.0.0.1:$REDIS" >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 100); do
    answers "$PROXY" && return 0
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
  proxy_pid=""
  return 1
}
start_or_die nearcache "$work/proxy.log" try_proxy

echo "redis 127.0.0.1:$REDIS (pid $(cat "$work/redis.pid")), nearcache 127.0.0.1:$PROXY (admin $ADMIN), config:"
grep -v '^$' "$work/proxy.toml" | sed 's/^/  /'
./target/release/examples/faults --proxy "127.0.0.1:$PROXY" --redis "127.0.0.1:$REDIS" \
  --admin "127.0.0.1:$ADMIN" --restart-cmd "$start_redis" --faults "$FAULTS" --clients "$CLIENTS" ||
  echo "the faults example failed (exit $?); proxy log: $work/proxy.log"
echo "proxy log: $(grep -c WARN "$work/proxy.log" || true) warnings, $(grep -c ERROR "$work/proxy.log" || true) errors"
