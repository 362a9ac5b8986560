#!/usr/bin/env bash
# Runs one fuzz target from its seeds for a bounded time.
#
#   fuzz/run.sh TARGET [SECONDS] [more libFuzzer options...]
#
# The growing corpus goes to a scratch directory (default
# /tmp/nearcache-fuzz/corpus/TARGET, override with FUZZ_CORPUS), so the
# committed seeds in fuzz/seeds/TARGET stay small; crashes are written to
# fuzz/artifacts/TARGET/ (ignored by git). Needs cargo-fuzz and a nightly
# toolchain: see docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer options]}
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
case $target in
  request_parser | reply_scanner) dict=dict/resp.dict ;;
  key_extraction | tenant_rewrite) dict=dict/commands.dict ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
# Resolve dependencies as the main package does.
[ -f Cargo.lock ] || cp ../Cargo.lock Cargo.lock
corpus=${FUZZ_CORPUS:-/tmp/nearcache-fuzz/corpus/$target}
mkdir -p "$corpus"
exec cargo +nightly fuzz run "$target" "$corpus" "seeds/$target" -- \
  -max_total_time="$secs" -dict="$dict" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
