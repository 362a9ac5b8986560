#!/usr/bin/env bash
# What keeping the near-cache coherent costs, for the two ways CLIENT
# TRACKING can do it (docs/near-cache.md, "Why BCAST"), on a write-heavy
# load: N SETs over KEYS keys (-P 16, 50 clients) straight to Redis while
# one connection tracks.
#
#   none            no tracking connection (the baseline)
#   bcast           CLIENT TRACKING on BCAST: what nearcache does
#   bcast flow:     … with PREFIX flow: (policies cache only flow:*; the
#                   writes go to key:*)
#   default HOT     default tracking after reading HOT keys, each
#                   invalidated key read again at once (a cache holding
#                   HOT hot keys)
#   proxy           a real nearcache (cache on, BCAST) in front of Redis,
#                   no clients: what it spends on the invalidations
#
# Per row: Redis' memory for tracking (used_memory after the tracker set up,
# minus before; INFO tracking_total_keys), invalidated keys delivered and
# bytes sent beyond the baseline's (total_net_output_bytes), Redis' CPU
# per write, the writes' requests/s, and the tracker's CPU per write.
#
#   scripts/tracking-cost.sh
#   KEYS=100000 HOTS="1000 100000" N=500000 scripts/tracking-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
KEYS=${KEYS:-1000000}
N=${N:-1000000}
HOTS=${HOTS:-10000 1000000}
tick_us=$((1000000 / $(getconf CLK_TCK)))

field() { redis-cli -p "$1" info "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k { print $2 }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
fresh_redis() {
  R=$(port)
  redis-server --port "$R" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
  RPID=$!
  pids+=("$RPID")
  wait_port "$R"
}

base_out=0
printf '%-16s %12s %12s %14s %14s %12s %12s %14s\n' scenario tracked_keys tracking_mem invalidated extra_out_MB redis_us/set sets/s tracker_us/set
row() { # label tracker-kind [hot]
  fresh_redis
  local mem0 tpid="" fifo="$work/stop" counts="- -" tracker_ticks=0 t0=0
  mem0=$(field "$R" memory used_memory)
  case $1 in
    none) ;;
    proxy)
      REDIS=$R proxy tracker '[cache]'
      tpid=${PID[tracker]}
      sleep 1 ;;
    *)
      rm -f "$fifo" && mkfifo "$fifo"
      python3 scripts/tracking_client.py "$R" "${@:2}" <"$fifo" >"$work/tracker.out" &
      tpid=$!
      exec 7>"$fifo"
      until grep -q ready "$work/tracker.out" 2>/dev/null; do sleep 0.2; done ;;
  esac
  local mem1 tracked out0 cpu0 rps
  mem1=$(field "$R" memory used_memory)
  tracked=$(field "$R" stats tracking_total_keys)
  out0=$(field "$R" stats total_net_output_bytes)
  cpu0=$(ticks "$RPID")
  [ -n "$tpid" ] && t0=$(ticks "$tpid")
  rps=$(redis-benchmark -p "$R" -t set -r "$KEYS" -n "$N" -P 16 -c 50 -d 64 -q | tr '\r' '\n' | awk '/SET:/ { print $2 }' | tail -1)
  local cpu1 out
  cpu1=$(ticks "$RPID")
  [ -n "$tpid" ] && tracker_ticks=$(($(ticks "$tpid") - t0))
  out=$(($(field "$R" stats total_net_output_bytes) - out0))
  [ "$1" = none ] && base_out=$out
  case $1 in
    none | proxy) ;;
    *)
      echo stop >&7
      exec 7>&-
      wait "$tpid"
      counts=$(tail -1 "$work/tracker.out") ;;
  esac
  [ "$1" = proxy ] && kill "$tpid"
  kill "$RPID"
  printf '%-16s %12s %12s %14s %14.1f %12.2f %12s %14s\n' "$1${3:+ $3}" "$tracked" \
    "$(((mem1 - mem0) / 1024)) KiB" "${counts#* }" "$(awk "BEGIN { print ($out - $base_out) / 1048576 }")" \
    "$(awk "BEGIN { print ($cpu1 - $cpu0) * $tick_us / $N }")" "$rps" \
    "$( [ -n "$tpid" ] && awk "BEGIN { printf \"%.2f\", $tracker_ticks * $tick_us / $N }" || echo -)"
}

echo "KEYS=$KEYS N=$N: SET -P 16 -c 50 -d 64 straight to Redis"
row none
row bcast bcast
row bcast bcast flow:
for hot in $HOTS; do row default default "$hot"; done
row proxy
