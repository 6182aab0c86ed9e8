#!/usr/bin/env bash
# appauth-agent's proxy hop against nginx's `proxy_pass` doing the same hop,
# in one run, both on one worker over keep-alive to the same upstream (a
# second nginx answering 200 "ok").
#
#   scripts/bench-agent.sh
#
# For the CPU runs the two cores are split so that runs compare: the proxy
# measured (nginx or the agent) on core 1, wrk and the upstream on core 0.
#
# 1. CPU per proxied request: the proxy's utime+stime from /proc before and
#    after a bounded wrk run, divided by the requests it served; rounds
#    interleaved, medians reported. Target: the agent at most 1.5x nginx.
# 2. Latency added by the hop at 1,000 requests/s (open loop, from the time
#    each request was due): p99 through the proxy minus p99 straight to the
#    upstream. Target: at most 1 ms for the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench/lib.sh
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
RATE=${BENCH_RATE:-1000}
PACED_SECS=${BENCH_PACED_SECONDS:-5}
LAT_ROUNDS=${BENCH_LATENCY_ROUNDS:-5}

need wrk wrk
need nginx nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q -p appauth-keygen -p appauth-agent --bins
cargo build --release -q -p appauth-agent --example paced-load
"$TOOLS/appauth-keygen" new bench --bits 2048 --public-dir "$work/keys" --private-dir "$work/private" >/dev/null

nginx_conf() { # nginx_conf NAME BODY: a one-worker nginx of its own under $work/NAME
  mkdir -p "$work/$1"
  cat >"$work/$1/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1/body;
  proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fastcgi;
  uwsgi_temp_path $work/$1/uwsgi;
  scgi_temp_path $work/$1/scgi;
  keepalive_requests 1000000;
  $2
}
CONF
}

start_nginx() { # start_nginx NAME CORE: sets PID (the master) and WORKER
  taskset -c "$2" "$NGINX" -c "$work/$1/nginx.conf" -p "$work/$1" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 1 100); do
    WORKER=$(pgrep -P "$PID" | head -1 || true)
    [ -n "$WORKER" ] && return
    sleep 0.05
  done
  cat "$work/$1/error.log"; exit 1
}

UP=$(free_port)
nginx_conf upstream "server { listen 127.0.0.1:$UP; location / { return 200 \"ok\n\"; } }"
start_nginx upstream 0

NX=$(free_port)
nginx_conf proxy "upstream backend { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$NX; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
start_nginx proxy 1
NGINX_WORKER=$WORKER

AG=$(free_port)
taskset -c 1 "$TOOLS/appauth-agent" proxy --app-id bench --key "$work/private/bench_private.pem" \
  --listen "127.0.0.1:$AG" --upstream "http://127.0.0.1:$UP" --threads 1 >"$work/agent.log" 2>&1 &
AGENT=$!
pids+=("$AGENT")
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$AG/" >/dev/null 2>&1 && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$AG/" >/dev/null || { cat "$work/agent.log"; exit 1; }

measure() { # measure PID URL -> "us_per_request requests"
  local before after out
  before=$(ticks "$1")
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$2" -- / "" \
    | awk '/^RESULT/ {print $2, $5}')
  after=$(ticks "$1")
  python3 -c "import sys; rps, n = map(float, '$out'.split()); print(f'{($after - $before) / $HZ / n * 1e6:.2f} {n:.0f}')"
}

N=() A=()
for _ in $(seq 1 "$ROUNDS"); do
  N+=("$(measure "$NGINX_WORKER" "http://127.0.0.1:$NX/")")
  A+=("$(measure "$AGENT" "http://127.0.0.1:$AG/")")
done
# Latency: each round loads the upstream straight and through one proxy at
# once, the two interleaved on one schedule, so a hiccup of the machine
# falls on both; the hop's cost is the difference within the round.
# Unpinned: a load thread waiting on the upstream's core would delay it.
taskset -a -pc 0,1 "$AGENT" >/dev/null
for p in $(pgrep -P "$PID"); do taskset -pc 0,1 "$p" >/dev/null; done
paced() { taskset -c 0,1 "$TOOLS/examples/paced-load" "$RATE" "$PACED_SECS" "http://127.0.0.1:$UP/" "$1" \
  | awk '/^RESULT/ {print $3, $4, $5, $6, $7, $8}' | paste -sd' '; }
PN=() PA=()
for _ in $(seq 1 "$LAT_ROUNDS"); do
  PA+=("$(paced "http://127.0.0.1:$AG/")")
  PN+=("$(paced "http://127.0.0.1:$NX/")")
done

join() { local IFS=';'; echo "$*"; }
python3 - "$(join "${N[@]}")" "$(join "${A[@]}")" "$(join "${PN[@]}")" "$(join "${PA[@]}")" "$RATE" "$PACED_SECS" <<'PY'
import statistics, sys
n_runs, a_runs, via_nginx, via_agent, rate, secs = sys.argv[1:]
def median(runs):
    rows = [r.split() for r in runs.split(";")]
    return statistics.median(float(r[0]) for r in rows), sum(int(r[1]) for r in rows)
nginx_us, nginx_n = median(n_runs)
agent_us, agent_n = median(a_runs)
print(f"each CPU row the median of {len(n_runs.split(';'))} interleaved wrk runs; one worker each, keep-alive to the same upstream")
print("| proxy hop | CPU us/request | requests |")
print("|---|---:|---:|")
print(f"| nginx proxy_pass (1 worker) | {nginx_us:.2f} | {nginx_n:,} |")
print(f"| appauth-agent proxy (--threads 1) | {agent_us:.2f} | {agent_n:,} |")
print(f"agent / nginx CPU per request: {agent_us / nginx_us:.2f}x (target <= 1.5x)")
print()
print(f"open loop at {rate} requests/s a path, {secs} s a round, 2 keep-alive connections a path, latency from when each")
print("request was due; each round loads the upstream straight and through one proxy, interleaved on one schedule:")
print("| round | proxy | straight p50 / p99 us | through the proxy p50 / p99 us | p50 added us | p99 added us | errors |")
print("|---:|---|---:|---:|---:|---:|---:|")
added = {"agent": [], "nginx": []}
for name, runs in [("agent", via_agent), ("nginx", via_nginx)]:
    for i, r in enumerate(runs.split(";"), 1):
        v = list(map(int, r.split()))
        d, p = v[:6], v[6:]
        # sent errors p50 p90 p99 max
        a50, a99 = p[2] - d[2], p[4] - d[4]
        added[name].append((a50, a99))
        print(f"| {i} | {name} | {d[2]} / {d[4]} | {p[2]} / {p[4]} | {a50} | {a99} | {d[1] + p[1]} |")
for name in ("agent", "nginx"):
    m50 = statistics.median(a for a, _ in added[name])
    m99 = statistics.median(b for _, b in added[name])
    target = " (target <= 1 ms)" if name == "agent" else ""
    print(f"{name}: median over the rounds of the p99 added by the hop: {m99 / 1000:.3f} ms{target}; of the p50 added: {m50} us")
PY
