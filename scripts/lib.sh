# Shared by scripts/bench.sh, scripts/cpu.sh and scripts/callgrind.sh:
# dependencies, a release build, a scratch folder, child processes cleaned
# up on exit, a redis-server on a free loopback port ($REDIS), a Redis
# Cluster of three masters (start_cluster), proxies started as named
# targets, and a median.
bash scripts/test-deps.sh
cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 30 s (valgrind starts slowly) for a Redis-protocol server.
wait_port() {
  for _ in $(seq 300); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "port $1 not ready" >&2
  exit 1
}
REDIS=$(port)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
pids+=($!)
wait_port "$REDIS"
declare -A PORT=([redis]=$REDIS) PID=([redis]=${pids[0]})
# Three masters on free ports, the slots shared out in equal ranges; the
# proxies are started with all three as seeds.
start_cluster() {
  local nodes=() buses=() p bus
  for i in 0 1 2; do
    p=$(port)
    bus=$(port)
    mkdir -p "$work/node$i"
    # (The bus port named: port + 10,000, the default, may not exist.)
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/node$i" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$bus" >/dev/null &
    pids+=($!)
    wait_port "$p"
    redis-cli -p "$p" cluster addslotsrange $((i * 5461)) $((i == 2 ? 16383 : i * 5461 + 5460)) >/dev/null
    nodes+=("$p")
    buses+=("$bus")
  done
  for i in 1 2; do redis-cli -p "${nodes[0]}" cluster meet 127.0.0.1 "${nodes[$i]}" "${buses[$i]}" >/dev/null; done
  for _ in $(seq 200); do
    local ok=0
    for p in "${nodes[@]}"; do redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && break
    sleep 0.1
  done
  PORT[cluster]=${nodes[0]}
  UPSTREAM="redis+cluster://127.0.0.1:${nodes[0]},127.0.0.1:${nodes[1]},127.0.0.1:${nodes[2]}"
}
# Starts a nearcache as target $1 with the config text $2, in this shell so
# cleanup stops it; its port and pid go to PORT[$1] and PID[$1]. Its
# upstream is $UPSTREAM, by default $SCHEME (redis, or rediss for
# TLS)://127.0.0.1:$REDIS.
proxy() { # target config-text
  local p; p=$(port)
  printf '%s\n' "$2" >"$work/$1.toml"
  RUST_LOG=warn ./target/release/nearcache --config "$work/$1.toml" --listen "127.0.0.1:$p" \
    --admin-listen 127.0.0.1:0 --upstream "${UPSTREAM:-${SCHEME:-redis}://127.0.0.1:$REDIS}" >"$work/$1.log" 2>&1 &
  pids+=($!)
  PID[$1]=$!
  wait_port "$p"
  PORT[$1]=$p
}
# The median of the space-separated numbers on standard input.
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
