#!/usr/bin/env bash
# The global rate limit and revocations through Redis, in every mode
# appauth takes: one node (redis://), Sentinel (redis+sentinel://: a
# primary, a replica, three sentinels) and Cluster (redis+cluster://: three
# primaries with a replica each). For each mode:
#
#   accuracy  3 replicas (one worker each), one app at 100/s, driven at full
#             speed for BENCH_ACCURACY_SECONDS (default 10) through all three
#             at once (one wrk per replica); accepted (from the replicas' own
#             counters) against what one limiter with the same quota admits
#             (burst + rate x seconds). Three limiters of their own (no
#             Redis) are measured once, for reference.
#   cost      one replica (one worker), a limit far above what it can serve,
#             so the limiter runs on every request and never refuses: Redis
#             commands per request (INFO commandstats on every node, before
#             and after) and requests/s against the local limiter measured
#             in the same round; server CPU per request (/proc/<pid>/stat).
#   revoke    with 0, 10,000 and 100,000 rules stored (revoke --file), the
#             time from the start of one `appauth-server revoke` command to
#             the moment a replica refuses the token (median of 5).
#
#   scripts/bench-redis.sh [single|sentinel|cluster ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench/lib.sh
SECS=${BENCH_SECONDS:-5}
ACC_SECS=${BENCH_ACCURACY_SECONDS:-10}
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(single sentinel cluster)

need wrk wrk
need redis-server redis-server
build_release
"$TOOLS/appauth-keygen" new limited fast --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
"$TOOLS/examples/mint-tokens" limited "$work/private/limited_private.pem" 1 > "$work/limited.txt"
"$TOOLS/examples/mint-tokens" fast "$work/private/fast_private.pem" 1 > "$work/fast.txt"
# Probes for the revoke timings, one per measurement.
"$TOOLS/examples/mint-tokens" limited "$work/private/limited_private.pem" 20 > "$work/probes.txt"
printf '[default]\nallow = ["GET /ping"]\n\n[apps.limited]\nrate = "100/s"\n\n[apps.fast]\nrate = "10000000/s"\n' \
  > "$work/policy.toml"

PORTS=()  # every Redis data node of the mode under test, for commandstats
redis_node() { # redis_node PORT ARGS...: a data node in its own directory
  mkdir -p "$work/redis-$1"
  redis-server --port "$1" --bind 127.0.0.1 --dir "$work/redis-$1" --save "" --appendonly no \
    --protected-mode no "${@:2}" >"$work/redis-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server on $1 did not start"; exit 1
}

setup_single() {
  local p
  p=$(free_port)
  redis_node "$p"
  PORTS=("$p")
  REDIS=redis://127.0.0.1:$p
}

setup_sentinel() {
  local p r s hosts=()
  p=$(free_port); redis_node "$p"
  r=$(free_port); redis_node "$r" --replicaof 127.0.0.1 "$p"
  for _ in 1 2 3; do
    s=$(free_port)
    printf 'port %s\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\n' \
      "$s" "$work" "$p" > "$work/sentinel-$s.conf"
    redis-server "$work/sentinel-$s.conf" --sentinel >"$work/sentinel-$s.log" 2>&1 &
    pids+=($!)
    hosts+=("127.0.0.1:$s")
  done
  for _ in $(seq 1 100); do redis-cli -p "$s" ping >/dev/null 2>&1 && break; sleep 0.05; done
  PORTS=("$p" "$r")
  REDIS="redis+sentinel://$(IFS=,; echo "${hosts[*]}")/mymaster"
}

setup_cluster() {
  local p addrs=()
  PORTS=()
  for _ in 1 2 3 4 5 6; do
    p=$(free_port)
    redis_node "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000
    PORTS+=("$p")
    addrs+=("127.0.0.1:$p")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  for _ in $(seq 1 200); do
    local ok=1
    for p in "${PORTS[@]}"; do redis-cli -p "$p" cluster info | grep -q cluster_state:ok || ok=0; done
    [ "$ok" = 1 ] && break
    sleep 0.05
  done
  REDIS="redis+cluster://${addrs[0]},${addrs[1]}"
}

teardown() { # stops every process but the first $1 started
  for p in "${pids[@]:$1}"; do kill "$p" 2>/dev/null || true; done
  pids=("${pids[@]:0:$1}")
  sleep 0.3
}

accepted() { # accepted URL -> the replica's accepted-request counter
  curl -s "$1/metrics" | awk '/^appauth_requests_total\{outcome="accepted",reason="none"\}/ {print $2}'
}

wait_global() { # wait_global URL: until the replica holds limits in Redis
  for _ in $(seq 1 200); do
    curl -s "$1/metrics" | grep -q '^appauth_shared_state_mode{mode="global"} 1' && return
    sleep 0.05
  done
  echo "a replica never reached global mode"; exit 1
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

calls() { # Redis commands run on every data node so far
  local p n=0
  for p in "${PORTS[@]}"; do
    n=$((n + $(redis-cli -p "$p" info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_/ {n += $2} END {print n + 0}')))
  done
  echo "$n"
}

cost() { # cost PID URL -> "rps requests cpu_us_per_request"
  local t0 t1 out
  t0=$(ticks "$1")
  out=$(wrk -t1 -c32 -d"${SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$2" -- /ping "$work/fast.txt" \
    | awk '/^RESULT/ {print $2, $5}')
  t1=$(ticks "$1")
  python3 -c "rps, n = map(float, '$out'.split()); print(f'{rps:.0f} {n:.0f} {($t1 - $t0) / $HZ / n * 1e6:.2f}')"
}

revoke_ms() { # revoke_ms URL N FIRST: median ms from a revoke command to a refusal, with N rules stored, probing with lines FIRST..FIRST+4 of probes.txt
  local url=$1 n=$2 first=$3 i times=()
  if [ "$n" -gt 0 ]; then
    python3 -c "import sys; [print(f'jti bulk-{i}') for i in range($n)]" > "$work/bulk.txt"
    "$TOOLS/appauth-server" revoke --redis-url "$REDIS" --file "$work/bulk.txt" >/dev/null
    sleep 1
  fi
  for i in $(seq "$first" $((first + 4))); do
    times+=("$(python3 - "$url" "$TOOLS/appauth-server" "$REDIS" "$(sed -n "${i}p" "$work/probes.txt")" <<'PY'
import base64, json, subprocess, sys, time, urllib.request, urllib.error
url, server, redis, token = sys.argv[1:]
body = token.split(".")[1]
jti = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["jti"]
def status():
    req = urllib.request.Request(url + "/ping", headers={"x-token": token})
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
t0 = time.monotonic()
subprocess.run([server, "revoke", "--redis-url", redis, f"jti {jti}"], check=True, capture_output=True)
while status() != 401:
    if time.monotonic() - t0 > 10:
        print("timeout"); sys.exit()
print(f"{(time.monotonic() - t0) * 1000:.0f}")
PY
)")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}

declare -A R
base=${#pids[@]}
for mode in "${MODES[@]}"; do
  echo "== $mode" >&2
  "setup_$mode"
  infra=${#pids[@]}
  urls=()
  for i in 1 2 3; do
    start_server "$mode-$i" --policy "$work/policy.toml" --redis-url "$REDIS" --workers 1
    urls+=("$URL")
  done
  for u in "${urls[@]}"; do wait_global "$u"; done
  R[$mode.acc]=$(drive_three "${urls[@]}")
  teardown "$infra"
  for round in 1 2; do
    start_server "cost-local-$round" --policy "$work/policy.toml" --workers 1
    R[$mode.local$round]=$(cost "$PID" "$URL")
    teardown "$infra"
    start_server "cost-redis-$round" --policy "$work/policy.toml" --workers 1 --redis-url "$REDIS"
    wait_global "$URL"
    before=$(calls)
    R[$mode.redis$round]=$(cost "$PID" "$URL")
    after=$(calls)
    R[$mode.cmds$round]=$((after - before))
    teardown "$infra"
  done
  start_server "revoke" --policy "$work/policy.toml" --workers 1 --redis-url "$REDIS"
  wait_global "$URL"
  R[$mode.rev0]=$(revoke_ms "$URL" 0 1)
  R[$mode.rev10k]=$(revoke_ms "$URL" 10000 6)
  R[$mode.rev100k]=$(revoke_ms "$URL" 90000 11)
  teardown "$base"
done

# Three limiters of their own, for reference.
urls=()
for i in 1 2 3; do
  start_server "local-$i" --policy "$work/policy.toml" --workers 1
  urls+=("$URL")
done
LOCAL=$(drive_three "${urls[@]}")
teardown "$base"

args=("$LOCAL")
for mode in "${MODES[@]}"; do
  args+=("$mode" "${R[$mode.acc]}" "${R[$mode.local1]}" "${R[$mode.redis1]}" "${R[$mode.cmds1]}"
    "${R[$mode.local2]}" "${R[$mode.redis2]}" "${R[$mode.cmds2]}"
    "${R[$mode.rev0]}" "${R[$mode.rev10k]}" "${R[$mode.rev100k]}")
done
python3 - "${args[@]}" <<'PY'
import sys
a = sys.argv[1:]
l_acc, l_secs = a[0].split(); l_acc, l_secs = int(l_acc), float(l_secs)
rows = [a[i:i + 11] for i in range(1, len(a), 11)]
print("## Redis in every mode: the global rate limit and revocations")
print()
print("Accuracy: 3 replicas (one worker each), one app at 100/s, driven at full speed")
print("through all three at once (one wrk, 8 connections, per replica); one limiter admits")
print("100 + 100/s x seconds.")
print()
print("| mode | accepted | one limiter | ratio |")
print("|---|---:|---:|---:|")
met_acc = True
for r in rows:
    acc, secs = r[1].split(); acc, secs = int(acc), float(secs)
    one = 100 + 100 * secs
    met_acc &= abs(acc / one - 1) <= 0.10
    print(f"| {r[0]} | {acc} | {one:.0f} | {acc / one:.3f} |")
one_l = 100 + 100 * l_secs
print(f"| no Redis (three limiters of their own) | {l_acc} | {one_l:.0f} | {l_acc / one_l:.3f} |")
print()
print("Cost: one replica (one worker), a limit never reached, warm token, 32 connections;")
print("the local limiter measured in the same round:")
print()
print("| mode | run | local req/s | Redis req/s | Redis/local | commands/request | CPU us/req local | CPU us/req Redis |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
worst_ratio, worst_cmds = 9.0, 0.0
for r in rows:
    for k in (0, 1):
        lo, re, cmds = r[2 + 3 * k].split(), r[3 + 3 * k].split(), int(r[4 + 3 * k])
        ratio, per = float(re[0]) / float(lo[0]), cmds / float(re[1])
        worst_ratio, worst_cmds = min(worst_ratio, ratio), max(worst_cmds, per)
        print(f"| {r[0]} | {k + 1} | {float(lo[0]):,.0f} | {float(re[0]):,.0f} | {ratio:.2f} | {per:.5f} | {lo[2]} | {re[2]} |")
print()
print("Revoke: from the start of `appauth-server revoke` (a process, its connection, the")
print("script) to a replica answering 401, median of 5, with rules already stored:")
print()
print("| mode | 0 rules | 10,000 rules | 100,000 rules |")
print("|---|---:|---:|---:|")
for r in rows:
    print(f"| {r[0]} | {r[8]} ms | {r[9]} ms | {r[10]} ms |")
print()
print(f"targets: accuracy within 10% of one limiter: {'met' if met_acc else 'NOT met'}; "
      f"<= 0.1 Redis commands per request: {'met' if worst_cmds <= 0.1 else 'NOT met'} "
      f"(worst {worst_cmds:.5f}); >= 0.8x the local limiter's req/s: "
      f"{'met' if worst_ratio >= 0.8 else 'NOT met'} (worst {worst_ratio:.2f})")
PY
