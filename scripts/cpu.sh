#!/usr/bin/env bash
# CPU time a process spends per request (user and kernel, from
# /proc/PID/stat), which drifts far less with machine noise than requests/s
# and, unlike instruction counts, includes the system calls. Redis, nearcache
# with its cache on and with it off (one worker each) serve the same
# redis-benchmark load in turn, ROUNDS times; the median of each is printed,
# with redis-benchmark's own CPU time per request and how busy the server
# was (its CPU time over the run's wall time): a server well under 100%
# while the load generator is near it means the generator set the pace.
#
#   scripts/cpu.sh                       # miss-heavy GETs (-r 10000000)
#   KEYS=1000 PIPE=16 scripts/cpu.sh     # hot keys, pipelined
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300000}
TEST=${TEST:-get}
PIPE=${PIPE:-1}
KEYS=${KEYS:-10000000}
ROUNDS=${ROUNDS:-5}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

proxy cache-on $'[server]\nworker_threads = 1'
proxy cache-off $'[server]\nworker_threads = 1\n[cache]\nenabled = false'
# utime and stime of a process, in clock ticks.
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

redis-benchmark -p "$REDIS" -t set -r "$KEYS" -n 100000 -d 64 -q >/dev/null
declare -A user sys total bench busy
TIMEFORMAT='%R %U %S'
targets=(redis cache-on cache-off)
for round in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    read -r u0 s0 < <(ticks "${PID[$t]}")
    { time redis-benchmark -p "${PORT[$t]}" -t "$TEST" -P "$PIPE" -c 50 -n "$N" -d 64 -r "$KEYS" -q >/dev/null; } 2>"$work/time"
    read -r u1 s1 < <(ticks "${PID[$t]}")
    read -r wall bu bs <"$work/time"
    bench[$t]+="$(awk "BEGIN { printf \"%.3f\", ($bu + $bs) * 1e6 / $N }") "
    busy[$t]+="$(awk "BEGIN { printf \"%.1f\", ($u1 + $s1 - $u0 - $s0) * 100 / $hz / $wall }") "
    user[$t]+="$(awk "BEGIN { printf \"%.3f\", ($u1 - $u0) * 1e6 / $hz / $N }") "
    sys[$t]+="$(awk "BEGIN { printf \"%.3f\", ($s1 - $s0) * 1e6 / $hz / $N }") "
    total[$t]+="$(awk "BEGIN { printf \"%.3f\", ($u1 + $s1 - $u0 - $s0) * 1e6 / $hz / $N }") "
  done
  echo "round $round done" >&2
done
printf '%s P=%s, %s requests, keyspace %s, median of %s rounds (µs per request)\n' "$TEST" "$PIPE" "$N" "$KEYS" "$ROUNDS"
printf '%-10s %8s %8s %8s %14s %12s\n' target user kernel total redis-benchmark 'server busy'
for t in "${targets[@]}"; do
  u=$(echo "${user[$t]}" | median)
  s=$(echo "${sys[$t]}" | median)
  printf '%-10s %8.2f %8.2f %8.2f %14.2f %11.0f%%\n' "$t" "$u" "$s" "$(echo "${total[$t]}" | median)" \
    "$(echo "${bench[$t]}" | median)" "$(echo "${busy[$t]}" | median)"
done
