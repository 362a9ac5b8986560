#!/usr/bin/env bash
# nearcache where it is meant to run: Redis across a network, the proxy next
# to the application. Without netem, the network is examples/relay.rs, a
# loopback TCP relay delaying each direction by RTT/2 (throughput unlimited,
# pipelining kept). Per RTT (env RTTS, in ms):
#
#   redis-benchmark -> relay -> Redis             "direct": the client across
#                                                 the network from Redis
#   redis-benchmark -> nearcache -> relay -> Redis  the client next to its
#                                                 proxy, the proxy paying the RTT
#
# Both relays have the same RTT, and make a new connection's first bytes
# wait one more RTT (its TCP handshake across the network). nearcache runs
# with [cache] admission = "first" (a key is cached on its first miss);
# nearcache-nocache (cache off, in the cold GET rows only) is plain
# forwarding. Scenarios, each with 1 and 50 clients, direct first, then
# through nearcache:
#
#   hot GET     1,000 keys (-d 64) preloaded and read once through the proxy,
#               so cached, then read at random
#   cold GET    -r 100000000: keys never repeated (mostly missing)
#   SET         -r 100000, -d 64
#   MULTI       MULTI; INCR counter; EXEC, sent in one write (as client
#               libraries pipeline a transaction) by a small Python client:
#               redis-benchmark cannot send a transaction as one request
#   BLPOP       BLPOP blist 0 on a list filled beforehand (never blocks)
#   SUBSCRIBE   SUBSCRIBE to a channel of the client's own, then PUBLISH on it
#               from a second connection of the same target: the time to the
#               first message (about two round trips straight to Redis), then
#               UNSUBSCRIBE (not timed); a small Python client too
#
# Every scenario runs again over TLS (labels "TLS …"): a second Redis
# speaking only TLS (a CA and a certificate for 127.0.0.1 made here with
# openssl), redis-benchmark and the Python client connecting to it with TLS
# through the relay, nearcache with a rediss:// upstream (its clients, next
# to it, on plain TCP). MODES="tcp" skips it.
#
# Printed per row: requests/s, p50 and p99 latency in ms, and the ratio of
# nearcache's requests/s to direct's (>1: the proxy is faster). Above the
# table, the RTT each relay actually adds (PING p50, 1 client, against the
# loopback PING to Redis). One round, no pinning: on a small noisy machine,
# read ratios far from 1, not the second digit.
#
#   bash scripts/bench-remote.sh
#   RTTS="0.5 2 5" N50=50000 bash scripts/bench-remote.sh
#   ONLY='^hot' bash scripts/bench-remote.sh   # scenarios whose label matches
#   MODES=tls ONLY='MULTI|BLPOP' bash scripts/bench-remote.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RTTS=${RTTS:-0.5 2}
# Requests per 1-client run: ~2.5 s at that RTT (5000 at 0.5 ms, 1250 at 2 ms).
N1_MS=${N1_MS:-2500}
# Requests per 50-client run.
N50=${N50:-25000}
ONLY=${ONLY:-.}
MODES=${MODES:-tcp tls}
SIZE=64
HOT_KEYS=1000

bash scripts/test-deps.sh
cargo build --release --bin nearcache --example relay
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap 'echo "bench-remote.sh failed at line $LINENO" >&2' ERR

# Starts a relay as target $1 with RTT $2 ms in front of Redis; its port and
# pid go to PORT[$1] and PID[$1], like lib.sh's proxy().
relay() { # target rtt
  local p; p=$(port)
  ./target/release/examples/relay --listen "127.0.0.1:$p" --to "127.0.0.1:$REDIS" --rtt-ms "$2" 2>"$work/$1.log" &
  pids+=($!)
  PID[$1]=$!
  # Listening (what is behind may speak TLS only).
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
  PORT[$1]=$p
}

# One redis-benchmark run: prints "rps p50 p99" (ms). With TLS=1, over TLS.
bench() { # port clients requests redis-benchmark-args…
  local tls=(); if [ "${TLS:-0}" = 1 ]; then tls=(--tls --cacert "$work/ca.crt"); fi
  timeout 120 redis-benchmark -p "$1" "${tls[@]}" -c "$2" -n "$3" --csv "${@:4}" 2>/dev/null |
    tr -d '"' | awk -F, 'NR==2 { print $2, $5, $7 }' || true
}

# The TLS Redis: a CA and a certificate for 127.0.0.1, a server on TLS only.
tls_redis() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$work/redis.key" -out "$work/redis.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$work/san.ext"
  openssl x509 -req -in "$work/redis.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/san.ext" -out "$work/redis.crt" 2>/dev/null
  TLS_REDIS=$(port)
  redis-server --port 0 --tls-port "$TLS_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --tls-cert-file "$work/redis.crt" --tls-key-file "$work/redis.key" --tls-ca-cert-file "$work/ca.crt" \
    --tls-auth-clients no >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli --tls --cacert "$work/ca.crt" -p "$TLS_REDIS" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the TLS redis-server did not start" >&2
  exit 1
}

# redis-cli to the Redis of the current mode.
rcli() {
  if [ "$mode" = tls ]; then redis-cli --tls --cacert "$work/ca.crt" -p "$UP" "$@"; else redis-cli -p "$UP" "$@"; fi
}

# The scenarios redis-benchmark cannot run, over raw RESP, as
# `clients.py KIND port clients total [ca.crt]`; prints "rps p50 p99" (ms):
#   multi      MULTI; INCR counter; EXEC in one write, until EXEC's reply
#   subscribe  SUBSCRIBE to a channel of the client's own, PUBLISH on it from
#              a second connection, until the message arrives; then
#              UNSUBSCRIBE (not timed)
cat >"$work/clients.py" <<'PY'
import os, socket, sys, threading, time
kind = sys.argv[1]
port, clients, total = (int(a) for a in sys.argv[2:5])
CA = sys.argv[5] if len(sys.argv) > 5 else None
latencies, start = [], threading.Barrier(clients + 1)

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if CA:
        import ssl
        s = ssl.create_default_context(cafile=CA).wrap_socket(s, server_hostname="127.0.0.1")
    return s

def read_lines(s, n):
    """Reads until n CRLFs arrived; returns what was read."""
    buf = b""
    while buf.count(b"\r\n") < n:
        data = s.recv(4096)
        if not data:
            raise ConnectionError("connection closed")
        buf += data
    return buf

def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

def expect(got, prefix):
    if not got.startswith(prefix):
        raise ValueError(f"unexpected reply {got!r}")

def multi(i, count):
    s = connect()
    request = command(b"MULTI") + command(b"INCR", b"counter") + command(b"EXEC")
    start.wait()
    for _ in range(count):
        t = time.perf_counter()
        s.sendall(request)
        reply = read_lines(s, 4)
        yield time.perf_counter() - t
        expect(reply, b"+OK\r\n+QUEUED\r\n*1\r\n:")

def subscribe(i, count):
    sub, pub = connect(), connect()
    channel = b"bench-%d" % i
    start.wait()
    for _ in range(count):
        t = time.perf_counter()
        sub.sendall(command(b"SUBSCRIBE", channel))
        confirmation = read_lines(sub, 6)
        pub.sendall(command(b"PUBLISH", channel, b"m"))
        message = read_lines(sub, 6)
        yield time.perf_counter() - t
        expect(confirmation, b"*3\r\n$9\r\nsubscribe")
        expect(message, b"*3\r\n$7\r\nmessage")
        expect(read_lines(pub, 1), b":1\r\n")
        sub.sendall(command(b"UNSUBSCRIBE", channel))
        read_lines(sub, 6)

def client(i, count):
    try:
        latencies.extend(list({"multi": multi, "subscribe": subscribe}[kind](i, count)))
    except BaseException as e:
        print(f"clients.py {kind}: {e!r}", file=sys.stderr, flush=True)
        os._exit(1)

threads = [threading.Thread(target=client, args=(i, total // clients)) for i in range(clients)]
for t in threads:
    t.start()
start.wait()
t0 = time.perf_counter()
for t in threads:
    t.join()
elapsed = time.perf_counter() - t0
latencies.sort()
if len(latencies) == total - total % clients:
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"{len(latencies) / elapsed:.2f} {pick(0.5):.3f} {pick(0.99):.3f}")
PY
pyclient() { # kind port clients requests
  local tls=(); if [ "${TLS:-0}" = 1 ]; then tls=("$work/ca.crt"); fi
  timeout 120 python3 "$work/clients.py" "$@" "${tls[@]}" || true
}

# Fills blist (directly in Redis) with enough elements for $1 BLPOPs.
fill_list() {
  rcli del blist >/dev/null
  TLS=$([ "$mode" = tls ] && echo 1 || echo 0) bench "$UP" 10 "$(($1 + 1000))" -P 100 LPUSH blist x >/dev/null
}

rows=()
declare -A result
# scenario label clients requests kind args…: runs every target of this RTT
# (direct first), kind "rb" (redis-benchmark args), "multi" or "subscribe".
scenario() {
  local label=$1 clients=$2 n=$3 kind=$4; shift 4
  if [ "$mode" = tls ]; then label="TLS $label"; fi
  [[ $label =~ $ONLY ]] || return 0
  local targets=(direct nearcache)
  if [[ $label == *cold* ]]; then targets+=(nearcache-nocache); fi
  for target in "${targets[@]}"; do
    local port=${PORT[$target-$rtt]}
    if [[ $label == *BLPOP* ]]; then fill_list "$n"; fi
    local r tls=0
    if [ "$mode" = tls ] && [ "$target" = direct ]; then tls=1; fi
    if [ "$kind" = multi ] || [ "$kind" = subscribe ]; then
      r=$(TLS=$tls pyclient "$kind" "$port" "$clients" "$n")
    else
      r=$(TLS=$tls bench "$port" "$clients" "$n" "$@")
    fi
    if [ -z "$r" ]; then echo "no result: $label c=$clients $target (RTT $rtt ms)" >&2; r="- - -"; fi
    local key="$rtt|$label|$clients|$target"
    result[$key]=$r
    rows+=("$key")
  done
}

rtt_notes=()
base_ping=$(bench "$REDIS" 1 2000 PING | awk '{ print $2 }')
if [[ " $MODES " == *" tls "* ]]; then tls_redis; fi
for mode in $MODES; do
  UP=$REDIS SCHEME=redis conf=""
  if [ "$mode" = tls ]; then
    UP=$TLS_REDIS SCHEME=rediss conf=$'[upstream]\ntls_ca_file = "'"$work/ca.crt"$'"'
  fi
  for rtt in $RTTS; do
    n1=$(awk -v r="$rtt" -v t="$N1_MS" 'BEGIN { printf "%d", t / r }')
    REDIS=$UP relay "direct-$rtt" "$rtt"
    REDIS=$UP relay "upstream-$rtt" "$rtt"
    # The proxies' upstream is the relay: lib.sh's proxy() forwards to $REDIS.
    REDIS=${PORT[upstream-$rtt]} SCHEME=$SCHEME proxy "nearcache-$rtt" "$conf"$'\n[cache]\nadmission = "first"'
    REDIS=${PORT[upstream-$rtt]} SCHEME=$SCHEME proxy "nearcache-nocache-$rtt" "$conf"$'\n[cache]\nenabled = false'
    ping=$(TLS=$([ "$mode" = tls ] && echo 1 || echo 0) bench "${PORT[direct-$rtt]}" 1 1000 PING | awk '{ print $2 }')
    rtt_notes+=("$mode, RTT $rtt ms: PING p50 through the relay ${ping:-?} ms, straight to Redis ${base_ping:-?} ms")
    echo "$mode, RTT $rtt ms: ${n1} requests per 1-client run, $N50 per 50-client run" >&2

    rcli flushall >/dev/null
    TLS=$([ "$mode" = tls ] && echo 1 || echo 0) bench "$UP" 50 $((HOT_KEYS * 20)) -t set -r "$HOT_KEYS" -d "$SIZE" >/dev/null
    # Every hot key read once through the proxy: cached from then on.
    redis-benchmark -p "${PORT[nearcache-$rtt]}" -t get -r "$HOT_KEYS" -n $((HOT_KEYS * 20)) -c 50 -P 16 -q >/dev/null
    for c in 1 50; do
      n=$n1; if [ "$c" = 50 ]; then n=$N50; fi
      scenario "hot GET" "$c" "$n" rb -t get -r "$HOT_KEYS"
      scenario "cold GET" "$c" "$n" rb -t get -r 100000000
      scenario "SET" "$c" "$n" rb -t set -r 100000 -d "$SIZE"
      # Python is slower than redis-benchmark: fewer transactions with 50.
      m=$n; if [ "$c" = 50 ]; then m=$((N50 / 3)); fi
      scenario "MULTI INCR EXEC" "$c" "$m" multi
      scenario "BLPOP" "$c" "$n" rb BLPOP blist 0
      scenario "SUBSCRIBE" "$c" "$((m / 2))" subscribe
    done
    for target in direct upstream nearcache nearcache-nocache; do
      kill "${PID[$target-$rtt]}" 2>/dev/null || true
    done
  done
done

printf '\n'
printf '%s\n' "${rtt_notes[@]}"
printf 'nearcache: [cache] admission = "first"; MULTI rows from a Python client (1 write per transaction), SUBSCRIBE rows from one (SUBSCRIBE sent -> first message, then UNSUBSCRIBE); TLS rows: Redis on TLS only, nearcache with rediss://\n'
printf '%-7s %-20s %7s %-18s %12s %8s %8s %10s\n' 'RTT ms' scenario clients target 'requests/s' 'p50 ms' 'p99 ms' 'vs direct'
for key in "${rows[@]}"; do
  IFS='|' read -r rtt label clients target <<<"$key"
  read -r r a b <<<"${result[$key]}"
  read -r base _ <<<"${result["$rtt|$label|$clients|direct"]}"
  ratio=-
  if [ "$target" != direct ] && [ "$r" != - ] && [ "$base" != - ]; then
    ratio=$(awk -v r="$r" -v d="$base" 'BEGIN { printf "%.2fx", r / d }')
  fi
  printf '%-7s %-20s %7s %-18s %12s %8s %8s %10s\n' "$rtt" "$label" "$clients" "$target" "$r" "$a" "$b" "$ratio"
done
echo "bench-remote.sh: ${SECONDS}s"
