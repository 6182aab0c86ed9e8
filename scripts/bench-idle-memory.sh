#!/usr/bin/env bash
# Memory after rounds of idle connections (issue: "about 200 MB stays
# allocated after rounds of 10,000 idle connections"). Each round opens N
# keep-alive connections that each make one request and then sit idle, holds
# them, and closes them all; the server's resident memory (VmRSS) is read
# with them open, right after they close, and after a quiet pause. Run with
# the release build and the allocator it ships with (glibc's malloc), and
# again with glibc's two tunables for returning memory.
#   scripts/bench-idle-memory.sh [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.." && . scripts/bench/lib.sh
N=${1:-10000}
ROUNDS=${2:-3}
build_release
[ "$(ulimit -n)" -ge $((N + 100)) ] || ulimit -n $((N + 100))

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

hold() { # hold PORT N: N connections, one request each, held idle until stdin closes
  python3 - "$1" "$2" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    conns.append(s)
for s in conns:
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
print("open", flush=True)
sys.stdin.read()
for s in conns:
    s.close()
PY
}

run() { # run LABEL ENV...: rounds against a fresh server
  local label=$1
  shift
  local port
  port=$(free_port)
  env "$@" "$BIN/appauth-server" --keys-dir "$work/keys" --bind "127.0.0.1:$port" \
    --workers 2 --keep-alive-ms 60000 >"$work/$label.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$label: idle server $(rss_mb "$pid") MB"
  for round in $(seq 1 "$ROUNDS"); do
    exec {fd}> >(hold "$port" "$N" >"$work/hold.out")
    until grep -q open "$work/hold.out" 2>/dev/null; do sleep 0.1; done
    local open
    open=$(rss_mb "$pid")
    exec {fd}>&-
    sleep 1
    local closed
    closed=$(rss_mb "$pid")
    sleep 5
    echo "$label: round $round: $N open ${open} MB, closed ${closed} MB, 5 s later $(rss_mb "$pid") MB ($(ls "/proc/$pid/fd" | wc -l) fds)"
    rm -f "$work/hold.out"
  done
  kill "$pid"
}

run "glibc malloc (default)"
run "glibc malloc, MALLOC_ARENA_MAX=1" MALLOC_ARENA_MAX=1
run "glibc malloc, MALLOC_TRIM_THRESHOLD_=65536" MALLOC_TRIM_THRESHOLD_=65536
