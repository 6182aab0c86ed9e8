#!/usr/bin/env bash
# The global rate limit through Redis: how accurate, and what it costs.
#
#   accuracy  3 replicas, one Redis, one app at 100/s, driven at full speed
#             for BENCH_ACCURACY_SECONDS (default 10) through all three at
#             once (one wrk per replica); accepted (from the replicas' own
#             counters) against what one limiter with the same quota admits
#             (burst + rate x seconds), and against three limiters of their
#             own (the same replicas without Redis).
#   cost      one replica (one worker), a limit far above what it can serve,
#             so the limiter runs on every request and never refuses: Redis
#             commands per request (INFO commandstats before and after) and
#             requests/s against the same run with the local limiter;
#             server CPU per request (/proc/<pid>/stat) for both.
#
#   scripts/bench-redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench/lib.sh
SECS=${BENCH_SECONDS:-5}
ACC_SECS=${BENCH_ACCURACY_SECONDS:-10}

need wrk wrk
need redis-server redis-server
build_release
"$TOOLS/appauth-keygen" new limited fast --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
"$TOOLS/examples/mint-tokens" limited "$work/private/limited_private.pem" 1 > "$work/limited.txt"
"$TOOLS/examples/mint-tokens" fast "$work/private/fast_private.pem" 1 > "$work/fast.txt"
printf '[default]\nallow = ["GET /ping"]\n\n[apps.limited]\nrate = "100/s"\n\n[apps.fast]\nrate = "10000000/s"\n' \
  > "$work/policy.toml"

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
REDIS=redis://127.0.0.1:$RPORT

accepted() { # accepted URL -> the replica's accepted-request counter
  curl -s "$1/metrics" | awk '/^appauth_requests_total\{outcome="accepted",reason="none"\}/ {print $2}'
}

global_mode() { # global_mode URL -> 1 once the replica holds limits in Redis
  curl -s "$1/metrics" | awk '/^appauth_shared_state_mode\{mode="global"\}/ {print $2}'
}

drive_three() { # drive_three URL... -> accepted over the run, and its seconds
  local before=0 after=0 u t0 t1 loaders=()
  for u in "$@"; do before=$((before + $(accepted "$u"))); done
  t0=$(date +%s.%N)
  for u in "$@"; do
    wrk -t1 -c8 -d"${ACC_SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$u" -- /ping "$work/limited.txt" >/dev/null &
    loaders+=($!)
  done
  wait "${loaders[@]}"
  t1=$(date +%s.%N)
  for u in "$@"; do after=$((after + $(accepted "$u"))); done
  echo "$((after - before)) $(python3 -c "print($t1 - $t0)")"
}

# Accuracy, global: three replicas sharing Redis.
urls=()
for i in 1 2 3; do
  start_server "global-$i" --policy "$work/policy.toml" --redis-url "$REDIS" --workers 1
  urls+=("$URL")
done
for u in "${urls[@]}"; do
  for _ in $(seq 1 100); do [ "$(global_mode "$u")" = 1 ] && break; sleep 0.05; done
done
read -r G_ACC G_SECS <<<"$(drive_three "${urls[@]}")"
G_CMDS=$(redis-cli -p "$RPORT" info commandstats | tr -d '\r')
for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
pids=("${pids[0]}")

# Accuracy, local: the same three replicas, each with its own limiter.
urls=()
for i in 1 2 3; do
  start_server "local-$i" --policy "$work/policy.toml" --workers 1
  urls+=("$URL")
done
read -r L_ACC L_SECS <<<"$(drive_three "${urls[@]}")"
for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
pids=("${pids[0]}")

# Cost: one replica, one worker, a limit never reached.
calls() { redis-cli -p "$RPORT" info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_/ {n += $2} END {print n + 0}'; }
cost() { # cost PID URL -> "rps requests cpu_us_per_request"
  local t0 t1 out
  t0=$(ticks "$1")
  out=$(wrk -t1 -c32 -d"${SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$2" -- /ping "$work/fast.txt" \
    | awk '/^RESULT/ {print $2, $5}')
  t1=$(ticks "$1")
  python3 -c "rps, n = map(float, '$out'.split()); print(f'{rps:.0f} {n:.0f} {($t1 - $t0) / $HZ / n * 1e6:.2f}')"
}
declare -A C
for round in 1 2; do
  start_server "cost-local-$round" --policy "$work/policy.toml" --workers 1
  C[local$round]=$(cost "$PID" "$URL")
  kill "$PID"
  start_server "cost-redis-$round" --policy "$work/policy.toml" --workers 1 --redis-url "$REDIS"
  for _ in $(seq 1 100); do [ "$(global_mode "$URL")" = 1 ] && break; sleep 0.05; done
  before=$(calls)
  C[redis$round]=$(cost "$PID" "$URL")
  after=$(calls)
  C[cmds$round]=$((after - before))
  kill "$PID"
done

python3 - "$G_ACC" "$G_SECS" "$L_ACC" "$L_SECS" "${C[local1]}" "${C[redis1]}" "${C[cmds1]}" \
  "${C[local2]}" "${C[redis2]}" "${C[cmds2]}" <<'PY'
import sys
g_acc, g_secs, l_acc, l_secs = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
one = 100 + 100 * g_secs
print("## Global rate limit through Redis")
print()
print(f"Accuracy: 3 replicas (one worker each), one app at 100/s, driven at full speed for {g_secs:.1f} s")
print("through all three at once (one wrk, 8 connections, per replica).")
print()
print("| limiter | accepted | one limiter (100 + 100/s x s) | ratio |")
print("|---|---:|---:|---:|")
print(f"| global (Redis) | {g_acc} | {one:.0f} | {g_acc / one:.3f} |")
one_l = 100 + 100 * l_secs
print(f"| local, per replica (no Redis) | {l_acc} | {one_l:.0f} | {l_acc / one_l:.3f} |")
print()
print(f"target: global within 10% of one limiter: {'met' if abs(g_acc / one - 1) <= 0.10 else 'NOT met'}")
print()
print("Cost: one replica (one worker), a limit never reached, warm token, 32 connections:")
print()
print("| run | local req/s | Redis req/s | Redis/local | Redis commands | per request | CPU us/req local | CPU us/req Redis |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
worst_ratio, worst_cmds = 9.0, 0.0
for r in (0, 1):
    lo = sys.argv[5 + 3 * r].split()
    re = sys.argv[6 + 3 * r].split()
    cmds = int(sys.argv[7 + 3 * r])
    ratio = float(re[0]) / float(lo[0])
    per = cmds / float(re[1])
    worst_ratio, worst_cmds = min(worst_ratio, ratio), max(worst_cmds, per)
    print(f"| {r + 1} | {float(lo[0]):,.0f} | {float(re[0]):,.0f} | {ratio:.2f} | {cmds} | {per:.5f} | {lo[2]} | {re[2]} |")
print()
print(f"targets: <= 0.1 Redis commands per request: {'met' if worst_cmds <= 0.1 else 'NOT met'} "
      f"(worst {worst_cmds:.5f}); >= 0.8x the local limiter's req/s: "
      f"{'met' if worst_ratio >= 0.8 else 'NOT met'} (worst {worst_ratio:.2f})")
PY
