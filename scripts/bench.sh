#!/usr/bin/env bash
# End-to-end load with redis-benchmark: directly against Redis, through
# nearcache (near-cache on, and a second instance with it off) and, when
# installed (apt-get install nutcracker), through twemproxy. Targets run
# alternately in the same session so ratios compare like with like.
#
#   scripts/bench.sh            # full run (-n 200000)
#   N=50000 ROUNDS=1 scripts/bench.sh
#   ONLY='^(get|set) P=1$' ROUNDS=10 scripts/bench.sh   # forwarding without pipelining
#   PIN=1 ONLY='^hot' scripts/bench.sh   # servers on CPU 0, redis-benchmark on CPU 1
#   CLUSTER=1 scripts/bench.sh   # a Redis Cluster of 3 masters: `redis-benchmark
#                                # --cluster` straight to it against one proxy port
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
CLIENTS=${CLIENTS:-50}
SIZE=${SIZE:-64}
ROUNDS=${ROUNDS:-2}
# Only the scenarios whose label ("get P=1", "hot get P=16", …) matches.
ONLY=${ONLY:-.}
# PIN=1: every server (Redis, the proxies, twemproxy) runs on CPU 0 and
# redis-benchmark on CPU 1, so the load generator does not take CPU time
# from the server it measures (as if it ran on another machine).
PIN=${PIN:-0}
CLUSTER=${CLUSTER:-0}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap 'echo "bench.sh failed at line $LINENO" >&2' ERR
# What ratios are against: Redis, or the cluster straight.
BASE=redis
declare -A ARGS=()

if [ "$CLUSTER" = 1 ]; then
  start_cluster
  ARGS[cluster]=--cluster
  BASE=cluster
  proxy nearcache ""
  proxy nearcache-nocache $'[cache]\nenabled = false'
  proxy nocache-percore $'[server]\nworker_threads = 0\n[cache]\nenabled = false'
else
  proxy nearcache ""
proxy nearcache-nocache $'[cache]\nenabled = false'
proxy nocache-percore $'[server]\nworker_threads = 0\n[cache]\nenabled = false'
proxy nearcache-admit1 $'[cache]\nadmission = "first"'
fi
if [ "$CLUSTER" = 0 ] && command -v nutcracker >/dev/null 2>&1; then
  TWEM=$(port)
  cat >"$work/twemproxy.yml" <<YML
bench:
  listen: 127.0.0.1:$TWEM
  redis: true
  hash: fnv1a_64
  distribution: ketama
  preconnect: true
  servers:
    - 127.0.0.1:$REDIS:1
YML
  nutcracker -c "$work/twemproxy.yml" -s "$(port)" -o "$work/twemproxy.log" &
  pids+=($!)
  wait_port "$TWEM"
  PORT[twemproxy]=$TWEM
fi

if [ "$PIN" = 1 ]; then
  for pid in "${pids[@]}"; do taskset -a -pc 0 "$pid" >/dev/null; done
  load=(taskset -c 1)
else
  load=()
fi

# One redis-benchmark run of target $1: prints "rps p50 p99" (the first
# CSV row: `--cluster` prints the nodes it found before). A test "mget10"
# is one MGET of ten keys in ten different slots.
measure() { # target test pipeline keyspace
  local what=(-t "$2")
  if [ "$2" = mget10 ]; then what=(MGET "${MGET_KEYS[@]}"); fi
  # shellcheck disable=SC2086 # ARGS holds zero or one word
  "${load[@]}" redis-benchmark -p "${PORT[$1]}" ${ARGS[$1]:-} -P "$3" -c "$CLIENTS" -n "$N" -d "$SIZE" -r "$4" \
    --csv "${what[@]}" 2>"$work/benchmark.err" | tr -d '"' | awk -F, '$1 != "test" && NF >= 7 { print $2, $5, $7; exit }'
}

declare -A rps p50 p99 ratios
rows=()
# scenario: label test pipeline keyspace targets…
scenario() {
  local label=$1 test=$2 pipe=$3 keys=$4; shift 4
  [[ $label =~ $ONLY ]] || return 0
  for round in $(seq "$ROUNDS"); do
    local base=""
    for name in "$@"; do
      [ -n "${PORT[$name]:-}" ] || continue
      read -r r a b < <(measure "$name" "$test" "$pipe" "$keys") || true
      if [ -z "${r:-}" ]; then echo "no result for $name ($label): $(tail -2 "$work/benchmark.err")" >&2; continue; fi
      local key="$label|$name"
      # this round's ratio to Redis, measured just before
      if [ "$name" = "$BASE" ]; then base=$r; fi
      if [ -n "$base" ]; then ratios[$key]+="$(awk "BEGIN{printf \"%.3f\", $r / $base}") "; fi
      # keep the best round per target: noise only ever slows a run down
      if [ -z "${rps[$key]:-}" ] || awk "BEGIN{exit !($r > ${rps[$key]})}"; then
        rps[$key]=$r; p50[$key]=$a; p99[$key]=$b
      fi
      if [ "$round" = 1 ]; then rows+=("$key"); fi
    done
  done
}

if [ "$CLUSTER" = 1 ]; then
  for test in get set; do
    for pipe in 1 16; do
      scenario "$test P=$pipe" "$test" "$pipe" 100000 cluster nearcache-nocache nocache-percore nearcache
    done
  done
  # Ten keys in ten slots (on all three masters): one request through the
  # proxy, split by slot; a cluster client would send ten (or one per node).
  MGET_KEYS=()
  for i in $(seq 0 9); do
    MGET_KEYS+=("mget:$i")
    redis-cli -c -p "${PORT[cluster]}" set "mget:$i" "$(head -c "$SIZE" /dev/zero | tr '\0' x)" >/dev/null
  done
  scenario "mget10 P=1" mget10 1 1 nearcache-nocache nearcache
fi
# Pass-through: the proxy's own cost (near-cache off) against twemproxy.
[ "$CLUSTER" = 1 ] || for test in get set; do
  for pipe in 1 16; do
    scenario "$test P=$pipe" "$test" "$pipe" 100000 redis nearcache-nocache nocache-percore twemproxy
  done
done
# Hot keys: 1,000 keys preloaded, read over and over.
[ "$CLUSTER" = 1 ] || redis-benchmark -p "$REDIS" -t set -r 1000 -n 20000 -d "$SIZE" -q >/dev/null
[ "$CLUSTER" = 1 ] || for pipe in 1 16; do
  scenario "hot get P=$pipe" get "$pipe" 1000 redis nearcache nearcache-admit1 nearcache-nocache
done
# Miss-heavy: almost every read is a different key.
[ "$CLUSTER" = 1 ] || for pipe in 1 16; do
  scenario "cold get P=$pipe" get "$pipe" 10000000 redis nearcache nearcache-admit1 nearcache-nocache
done

printf '\nredis-benchmark -c %s -n %s -d %s, %s alternating rounds (PIN=%s): the best round per target, and the\n' "$CLIENTS" "$N" "$SIZE" "$ROUNDS" "$PIN"
printf 'median over rounds of its requests/s to %s'"'"'s in the same round (steadier than a ratio of bests)\n' "$BASE"
if [ "$CLUSTER" = 1 ]; then
  printf 'mget10: keys read per second (10 per MGET) against the cluster'"'"'s GETs (1 per request)\n'
fi
printf '%-16s %-18s %12s %8s %8s %9s %9s\n' scenario target 'requests/s' 'p50 ms' 'p99 ms' "vs $BASE" 'median'
for key in "${rows[@]}"; do
  label=${key%%|*}; name=${key##*|}
  base_label=$label; scale=1
  if [ "$label" = "mget10 P=1" ]; then base_label="get P=1"; scale=10; fi
  best=${rps["$base_label|$BASE"]:-}
  ratio=-
  if [ -n "$best" ]; then ratio=$(awk "BEGIN{printf \"%.2fx\", ${rps[$key]} * $scale / $best}"); fi
  median=-
  if [ -n "${ratios[$key]:-}" ]; then median="$(echo "${ratios[$key]}" | median)x"; fi
  printf '%-16s %-18s %12s %8s %8s %9s %9s\n' "$label" "$name" "${rps[$key]}" "${p50[$key]}" "${p99[$key]}" "$ratio" "$median"
done
