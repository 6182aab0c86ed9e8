#!/usr/bin/env bash
# Start-up at scale: N key files (default 10,000; a few real keypairs reused
# under different appIds), then the time from launching appauth-server to
# /readyz answering 200, the server's resident memory once ready, and again
# once the verified-token cache is full (BENCH_FILL tokens, default 40,000,
# sent once each through wrk; skipped when wrk is missing).
#   scripts/bench-startup.sh [N]
set -euo pipefail
N=${1:-10000}
cd "$(dirname "$0")/.."
cargo build --release -q -p appauth-keygen -p appauth-server --bins
cargo build --release -q -p appauth-client --example mint-tokens
BIN=$PWD/target/release
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/keys" "$work/seed"

"$BIN/appauth-keygen" new seed-1 seed-2 seed-3 seed-4 seed-5 --out-dir "$work/seed" >/dev/null
for i in $(seq 1 "$N"); do
  cp "$work/seed/seed-$(( i % 5 + 1 ))_public.pem" "$work/keys/app-${i}_public.pem"
done
files=$(ls "$work/keys" | wc -l)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(date +%s%N)
"$BIN/appauth-server" --keys-dir "$work/keys" --bind "127.0.0.1:$port" >"$work/log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.01
done
ready=$(date +%s%N)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
apps=$(curl -s "http://127.0.0.1:$port/readyz")
printf 'key files: %d   cores: %d\n' "$files" "$(nproc)"
awk -v ns="$(( ready - start ))" 'BEGIN { printf "time to /readyz: %.2f s   (target: under 3 s)\n", ns / 1e9 }'
awk -v kb="$rss_kb" 'BEGIN { printf "resident memory when ready: %.1f MB   (target: under 100 MB)\n", kb / 1024 }' 
printf '/readyz: %s\n' "$apps"

FILL=${BENCH_FILL:-40000}
if command -v wrk >/dev/null && [ "$FILL" -gt 0 ]; then
  # app-1's key is seed-2's (see the copy loop above).
  "$BIN/examples/mint-tokens" app-1 "$work/seed/seed-2_private.pem" "$FILL" > "$work/fill.txt"
  wrk -t1 -c16 -d60s -s "$PWD/scripts/bench/tokens.lua" "http://127.0.0.1:$port" -- /ping "$work/fill.txt" \
    >/dev/null 2>&1 &
  wpid=$!
  # Stop once every token has been sent about once.
  while kill -0 "$wpid" 2>/dev/null; do
    sent=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^appauth_token_cache_misses_total/ {print $2}')
    [ "${sent:-0}" -ge "$FILL" ] && { kill "$wpid" 2>/dev/null; break; }
    sleep 0.5
  done
  wait "$wpid" 2>/dev/null || true
  m=$(curl -s "http://127.0.0.1:$port/metrics")
  entries=$(echo "$m" | awk '/^appauth_token_cache_entries/ {print $2}')
  rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  awk -v kb="$rss_kb" -v e="$entries" -v n="$FILL" 'BEGIN {
    printf "resident memory with the token cache full (%d of %d tokens held, 32 MiB budget): %.1f MB   (target: under 100 MB)\n", e, n, kb / 1024 }'
fi
