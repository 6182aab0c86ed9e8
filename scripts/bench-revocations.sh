#!/usr/bin/env bash
# A replica against a large revocation set: store RULES rules with one
# `revoke --file`, then start a replica and measure the time until /readyz
# says ready (its first complete read, in 1,000-rule pages), its resident
# memory, the time a revoke then takes to be refused, and the time all rules
# are back after Redis restarts empty.
#   scripts/bench-revocations.sh [RULES]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench/lib.sh
N=${1:-1000000}
need redis-server redis-server
build_release
"$TOOLS/appauth-keygen" new svc --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
"$TOOLS/examples/mint-tokens" svc "$work/private/svc_private.pem" 1 > "$work/probe.txt"
RPORT=$(free_port)
start_redis() {
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no >>"$work/redis.log" 2>&1 &
  RPID=$!
  pids+=("$RPID")
  for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return; sleep 0.05; done
}
start_redis
REDIS=redis://127.0.0.1:$RPORT
python3 -c "[print(f'jti big-{i}') for i in range($N)]" > "$work/rules.txt"
t0=$(date +%s.%N)
"$TOOLS/appauth-server" revoke --redis-url "$REDIS" --file "$work/rules.txt"
t1=$(date +%s.%N)
echo "stored $N rules in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; Redis uses $(redis-cli -p "$RPORT" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"
port=$(free_port)
t0=$(date +%s.%N)
"$BIN/appauth-server" --keys-dir "$work/keys" --bind "127.0.0.1:$port" --redis-url "$REDIS" --workers 1 >"$work/server.log" 2>&1 &
PID=$!
pids+=("$PID")
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.02; done
t1=$(date +%s.%N)
echo "a replica ready after $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, resident memory $(awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$PID/status")"
token=$(cat "$work/probe.txt")
t0=$(date +%s.%N)
"$TOOLS/appauth-server" revoke --redis-url "$REDIS" 'jti bench-0' >/dev/null
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "x-token: $token" "http://127.0.0.1:$port/ping")" = 401 ]; do sleep 0.005; done
t1=$(date +%s.%N)
echo "one more revoke refused after $(python3 -c "print(f'{($t1 - $t0) * 1000:.0f}')") ms"
kill "$RPID"; wait "$RPID" 2>/dev/null || true
rm -f "$work/dump.rdb"
t0=$(date +%s.%N)
start_redis
want=$((N + 1))
until [ "$(redis-cli -p "$RPORT" scard appauth:revocations)" = "$want" ]; do sleep 0.05; done
t1=$(date +%s.%N)
echo "Redis restarted empty: all $want rules back after $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; $(wc -l < "$work/server.log") log lines in all"
echo "resident memory after the write-back: $(awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$PID/status")"
