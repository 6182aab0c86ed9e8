#!/usr/bin/env bash
# Load benchmark of appauth-server on loopback, one table from one run.
#
#   (a) an unauthenticated route of the same server (GET /healthz)
#   (b) warm: one token reused, as the client crate does (GET /ping)
#   (c) cold: 10,000 distinct tokens in turn with the token cache off, so
#       every request pays one RSA verification (GET /ping)
# /ping is /healthz's twin behind the gate (same handler, same body), so the
# ratios measure the gate, not a handler. GET /users/1 (a data route) is
# shown warm for reference.
# for 2048- and 4096-bit keys; then (b) again with a 50-app policy and rate
# limits on, against (b) with no policy; and `openssl speed` verify/s on one
# core from the same run. wrk: 1 thread, 64 connections, sharing the cores
# with the server. Every wrk run is bounded (BENCH_SECONDS, default 5).
# Then two more tables from their own scripts: server CPU per request on one
# worker for (a), (b), (c) beside openssl's per-verification time
# (scripts/bench-cpu.sh: the measure that holds still on shared cores), and
# the global rate limit through Redis, its accuracy and its cost
# (scripts/bench-redis.sh).
#   scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench/lib.sh
SECS=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNECTIONS:-64}
NTOKENS=${BENCH_TOKENS:-10000}

need wrk wrk
build_release

echo "minting tokens..." >&2
for bits in 2048 4096; do
  "$TOOLS/appauth-keygen" new "bench-$bits" --bits "$bits" --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
  "$TOOLS/examples/mint-tokens" "bench-$bits" "$work/private/bench-${bits}_private.pem" "$NTOKENS" > "$work/cold-$bits.txt"
  head -1 "$work/cold-$bits.txt" > "$work/warm-$bits.txt"
done

# A 50-app policy; the bench apps are two of them, with a rate far above
# what the machine can serve, so the limiter runs on every request but never refuses.
{
  printf '[default]\nallow = ["GET /users", "GET /users/*"]\nrate = "1000000/s"\n\n'
  for i in $(seq 1 48); do printf '[apps."app-%d"]\nallow = ["GET /users/*", "POST /orders"]\nrate = "100/s"\n\n' "$i"; done
  printf '[apps."bench-2048"]\nallow = ["GET /users/*", "GET /whoami"]\nrate = "1000000/s"\n\n'
  printf '[apps."bench-4096"]\nallow = ["GET /users/*", "GET /whoami"]\nrate = "1000000/s"\n'
} > "$work/policy.toml"

run() { # run URL PATH [TOKENS_FILE] -> "rps p50ms p99ms requests errors"
  wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$1" -- "$2" "${3:-}" \
    | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}

start_server warm;   WARM=$URL
start_server cold --token-cache-mb 0; COLD=$URL
start_server policy --policy "$work/policy.toml"; POLICY=$URL

declare -A R
R[a]=$(run "$WARM" /healthz)
for bits in 2048 4096; do
  R[b$bits]=$(run "$WARM" /ping "$work/warm-$bits.txt")
  R[c$bits]=$(run "$COLD" /ping "$work/cold-$bits.txt")
done
R[users]=$(run "$WARM" /users/1 "$work/warm-2048.txt")
R[nopolicy]=$(run "$WARM" /users/1 "$work/warm-2048.txt")
R[policy]=$(run "$POLICY" /users/1 "$work/warm-2048.txt")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/${pids[0]}/status")
speed=$(openssl speed -seconds 2 rsa2048 rsa4096 2>/dev/null | awk '/^rsa +[0-9]+ bits/ {print $2, $7}')
ossl2048=$(echo "$speed" | awk '$1==2048 {print $2}')
ossl4096=$(echo "$speed" | awk '$1==4096 {print $2}')

python3 - "$(nproc)" "$(uname -m)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  "$SECS" "$CONNS" "$ossl2048" "$ossl4096" \
  "$rss_kb" "${R[a]}" "${R[b2048]}" "${R[c2048]}" "${R[b4096]}" "${R[c4096]}" "${R[users]}" "${R[nopolicy]}" "${R[policy]}" <<'PY'
import sys
cores, arch, cpu, secs, conns, o2048, o4096, rss_kb = sys.argv[1:9]
rows = dict(zip(["a", "b2048", "c2048", "b4096", "c4096", "users", "nopolicy", "policy"],
                [list(map(float, r.split())) for r in sys.argv[9:17]]))
o2048, o4096 = float(o2048), float(o4096)
print(f"machine: {cores} cores, {arch}, {cpu}; wrk -t1 -c{conns} -d{secs}s on loopback, sharing the cores")
print()
print(f"| run | req/s | p50 ms | p99 ms | non-2xx/errors |")
print(f"|---|---:|---:|---:|---:|")
names = {"a": "(a) unauthenticated GET /healthz",
         "b2048": "(b) warm GET /ping, one token, 2048-bit", "c2048": "(c) cold GET /ping, 10,000 tokens, 2048-bit",
         "b4096": "(b) warm GET /ping, one token, 4096-bit", "c4096": "(c) cold GET /ping, 10,000 tokens, 4096-bit",
         "users": "warm GET /users/1 (a data route), 2048-bit",
         "nopolicy": "warm GET /users/1, no policy file", "policy": "warm GET /users/1, 50-app policy + rate limits"}
for k, label in names.items():
    rps, p50, p99, n, bad = rows[k]
    print(f"| {label} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {bad:.0f} |")
a = rows["a"][0]
print()
print(f"openssl speed, one core: {o2048:,.0f} verify/s (2048), {o4096:,.0f} verify/s (4096)")
print()
print(f"| ratio | value | target |")
print(f"|---|---:|---:|")
print(f"| warm 2048 (b)/(a) | {rows['b2048'][0]/a:.2f} | >= 0.95 |")
print(f"| warm 4096 (b)/(a) | {rows['b4096'][0]/a:.2f} | >= 0.95 |")
print(f"| cold 2048 (c)/(a) | {rows['c2048'][0]/a:.2f} | >= 0.60 |")
print(f"| cold 4096 (c)/(a) | {rows['c4096'][0]/a:.2f} | |")
print(f"| cold 2048 (c) / openssl 1-core verify/s | {rows['c2048'][0]/o2048:.2f} | |")
print(f"| cold 4096 (c) / openssl 1-core verify/s | {rows['c4096'][0]/o4096:.2f} | >= 0.80 |")
print(f"| policy + rate limits / no policy | {rows['policy'][0]/rows['nopolicy'][0]:.2f} | >= 0.95 |")
print(f"| warm p99 at {conns} connections | {rows['b2048'][2]:.2f} ms | < 5 ms |")
print()
print(f"warm server resident memory after all warm runs: {int(rss_kb)/1024:.1f} MB")
PY

echo
echo "## Server CPU per request (one worker)"
echo
"$ROOT/scripts/bench-cpu.sh"
echo
"$ROOT/scripts/bench-redis.sh"
