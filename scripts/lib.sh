# Shared by scripts/bench.sh and scripts/callgrind.sh: dependencies, a
# release build, a scratch folder, child processes cleaned up on exit, and a
# redis-server on a free loopback port ($REDIS).
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
