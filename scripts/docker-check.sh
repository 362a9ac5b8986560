#!/usr/bin/env bash
# Replays the Dockerfile where no Docker engine runs (this machine has only
# the client), reading its instructions rather than restating them:
#
# - build stage: builds from a folder holding only what its COPY lines copy,
#   with its cargo command line (so a file the build needs but the image
#   lacks fails here);
# - runtime stage: a debootstrapped Debian bookworm (what debian:bookworm-slim
#   is cut from) gets its RUN lines, the binary and proxy.toml at its paths,
#   and the ENTRYPOINT runs as its USER with its ENV, listen addresses moved
#   to free loopback ports, and a mounted configuration that turns on the
#   durable journal in /var/lib/nearcache.
#
# Then: it starts with no Redis, takes a write into the journal (written as
# the unprivileged user), picks up a Redis that appears and replays the
# write into it. What this does not check: the rust:1-slim-bookworm image
# itself (the build uses this machine's toolchain), and image size.
#
#   bash scripts/docker-check.sh     # root; needs debootstrap and Debian's mirror
set -euo pipefail
cd "$(dirname "$0")/.."
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
bash scripts/test-deps.sh
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
trap 'echo "docker-check.sh failed at line $LINENO" >&2' ERR
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The Dockerfile's two stages, as lines.
build_stage=$(awk '/^FROM /{n++} n==1' Dockerfile)
run_stage=$(awk '/^FROM /{n++} n==2' Dockerfile)

echo "== build stage: only what it copies"
ctx=$work/src
mkdir -p "$ctx"
while read -r _ args; do
  read -ra parts <<<"$args"
  cp -r "${parts[@]:0:${#parts[@]}-1}" "$ctx/"
done < <(grep '^COPY ' <<<"$build_stage")
build=$(grep '^RUN cargo' <<<"$build_stage" | sed 's/^RUN //')
(cd "$ctx" && eval "$build --quiet")

echo "== runtime stage: Debian bookworm, minimal"
root=$work/rootfs
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1
while read -r cmd; do
  chroot "$root" sh -c "$cmd"
done < <(grep '^RUN ' <<<"$run_stage" | sed 's/^RUN //')
while read -r _ from src dest; do
  [ "$from" = --from=build ] || { dest=$src; src=$from; }
  case $src in /src/*) src=$ctx/${src#/src/} ;; esac
  mkdir -p "$root$(dirname "$dest")"
  cp "$src" "$root$dest"
done < <(grep '^COPY ' <<<"$run_stage")
user=$(grep '^USER ' <<<"$run_stage" | awk '{print $2}')
uid=$(chroot "$root" id -u "$user")
[ "$uid" != 0 ] || { echo "the image runs as root" >&2; exit 1; }
mapfile -t entrypoint < <(grep '^ENTRYPOINT ' <<<"$run_stage" | sed 's/^ENTRYPOINT //' | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')
read -ra env <<<"$(grep '^ENV ' <<<"$run_stage" | sed 's/^ENV //')"

# A mounted configuration: the example file with the durable journal on.
config=$(grep -o '/etc/nearcache/proxy.toml' <<<"${entrypoint[*]}")
sed 's|^# journal_path = |journal_path = |' proxy.toml >"$root$config"
grep -q '^journal_path = "/var/lib/nearcache/' "$root$config"

echo "== ENTRYPOINT as $user (uid $uid), no Redis yet"
listen=$(port) admin=$(port) redis=$(port)
chroot --userspec="$uid:$uid" "$root" env "${env[@]}" NEARCACHE_LISTEN="127.0.0.1:$listen" \
  NEARCACHE_ADMIN_LISTEN="127.0.0.1:$admin" NEARCACHE_UPSTREAM="redis://127.0.0.1:$redis" \
  "${entrypoint[@]}" >"$work/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$listen" ping >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(redis-cli -p "$listen" set image-check journaled)" = OK ] || { cat "$work/proxy.log"; exit 1; }
journal=$(sed -n 's/^journal_path = "\(.*\)"/\1/p' "$root$config")
owner=$(stat -c %u "$root$journal")
[ "$owner" = "$uid" ] || { echo "journal owned by $owner, not $uid" >&2; exit 1; }
echo "journal written by uid $owner: $journal ($(stat -c %s "$root$journal") bytes)"

echo "== Redis appears on :$redis"
redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
pids+=($!)
for _ in $(seq 150); do
  [ "$(redis-cli -p "$redis" get image-check 2>/dev/null)" = journaled ] && break
  sleep 0.1
done
[ "$(redis-cli -p "$redis" get image-check)" = journaled ] || { cat "$work/proxy.log"; exit 1; }
echo "replayed into Redis: image-check = journaled"
echo "docker-check: OK"
