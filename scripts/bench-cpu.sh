#!/usr/bin/env bash
# Server CPU per request, the measure that holds still on two shared cores
# (requests/s swings with the load generator; the server's own CPU time per
# request does not). The server runs on one worker; for each run its
# utime+stime is read from /proc/<pid>/stat before and after a bounded wrk
# run and divided by the requests served. openssl's per-verification time
# from the same run is printed beside it.
#
#   scripts/bench-cpu.sh                    # target/release (built here)
#   APPAUTH_BIN=/other/release scripts/bench-cpu.sh   # another build, for an A/B
#
# Rows: (a) GET /healthz, no token; (b) warm: one token reused (token cache
# hit); (c) cold: 10,000 distinct 2048-bit tokens, cache off, one RSA
# verification each.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNECTIONS:-32}
NTOKENS=${BENCH_TOKENS:-10000}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# Two builds: a target flag (--example) narrows a build to that target alone,
# which would leave the binaries stale.
cargo build --release -q -p appauth-server -p appauth-keygen --bins
cargo build --release -q -p appauth-client --example mint-tokens
TOOLS=$ROOT/target/release
BIN=${APPAUTH_BIN:-$TOOLS}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/keys" "$work/private"
"$TOOLS/appauth-keygen" new bench --bits 2048 --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
"$TOOLS/examples/mint-tokens" bench "$work/private/bench_private.pem" "$NTOKENS" > "$work/cold.txt"
head -1 "$work/cold.txt" > "$work/warm.txt"

start_server() { # start_server ARGS... ; sets URL and PID
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$BIN/appauth-server" --keys-dir "$work/keys" --bind "127.0.0.1:$port" --workers 1 "$@" >"$work/server.log" 2>&1 &
  PID=$!
  pids+=("$PID")
  URL="http://127.0.0.1:$port"
  for _ in $(seq 1 200); do curl -sf "$URL/readyz" >/dev/null 2>&1 && return; sleep 0.05; done
  cat "$work/server.log"; exit 1
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

measure() { # measure PID URL PATH [TOKENS] -> "us_per_request requests rps"
  local before after out
  before=$(ticks "$1")
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$2" -- "$3" "${4:-}" \
    | awk '/^RESULT/ {print $2, $5}')
  after=$(ticks "$1")
  python3 -c "import sys; rps, n = map(float, '$out'.split()); print(f'{($after - $before) / $HZ / n * 1e6:.2f} {n:.0f} {rps:.0f}')"
}

start_server
A=$(measure "$PID" "$URL" /healthz)
B=$(measure "$PID" "$URL" /ping "$work/warm.txt")
start_server --token-cache-mb 0
C=$(measure "$PID" "$URL" /ping "$work/cold.txt")
ossl=$(openssl speed -seconds 2 rsa2048 2>/dev/null | awk '/^rsa +2048 bits/ {print $7}')

python3 - "$BIN" "$ossl" "$A" "$B" "$C" <<'PY'
import sys
binary, ossl, *rows = sys.argv[1:]
verify_us = 1e6 / float(ossl)
names = ["(a) GET /healthz, no token", "(b) warm GET /ping, one token", "(c) cold GET /ping, 2048-bit, cache off"]
print(f"binary: {binary}")
print("| run | server CPU us/request | requests | req/s |")
print("|---|---:|---:|---:|")
vals = []
for name, row in zip(names, rows):
    us, n, rps = row.split()
    vals.append(float(us))
    print(f"| {name} | {float(us):.2f} | {int(n):,} | {int(rps):,} |")
a, b, c = vals
print()
print(f"openssl verify, one 2048-bit operation: {verify_us:.2f} us (same run)")
print(f"warm gate cost (b)-(a): {b - a:.2f} us; cold (c) vs floor (a)+openssl verify: "
      f"{c:.2f} / {a + verify_us:.2f} = {c / (a + verify_us):.2f}x")
PY
