#!/usr/bin/env bash
# Where a cold request's server CPU goes, in instructions (callgrind counts
# them the same on every run, whatever else the machine does). The server
# runs under callgrind on one worker with the token cache off; a keep-alive
# client sends N requests: first GET /healthz (no token), then, against a
# second server, GET /ping with N distinct 2048-bit tokens (one RSA
# verification each). Prints instructions per request by source file, the
# difference between the two runs (what the gate adds to a request) and of
# it what lies outside aws-lc's C (#19's moonshot, two ways counted), the
# gate's decision alone, and the top functions.
#
#   scripts/profile-cold.sh            # N = 2000
#   # and by source file (crate), inlined code included, from a build with
#   # line tables in its own target directory:
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/profile scripts/profile-cold.sh
#   # another build's server, for an A/B (keygen and tokens stay this tree's):
#   APPAUTH_BIN=/other/target/release scripts/profile-cold.sh
#   # the tower adapter instead (crates/tower/examples/axum-api.rs, one tokio
#   # worker), and the warm path (one token, cache on) instead of the cold:
#   PROFILE_SERVER=axum PROFILE_PATH=warm scripts/profile-cold.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${PROFILE_REQUESTS:-2000}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --release -q -p appauth-server -p appauth-keygen --bins
cargo build --release -q -p appauth-client --example mint-tokens
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
case ${PROFILE_SERVER:-actix} in
  actix) SERVER=${APPAUTH_BIN:-$BIN}/appauth-server SERVER_ARGS=(--workers 1) ;;
  axum)
    cargo build --release -q -p appauth-tower --features axum --example axum-api
    SERVER=${APPAUTH_BIN:-$BIN}/examples/axum-api SERVER_ARGS=()
    export TOKIO_WORKER_THREADS=1 ;;
  *) echo "PROFILE_SERVER is actix or axum" >&2; exit 2 ;;
esac
case ${PROFILE_PATH:-cold} in
  cold) CACHE_MB=0 ;;
  warm) CACHE_MB=32 ;;
  *) echo "PROFILE_PATH is cold or warm" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/keys" "$work/private"
"$BIN/appauth-keygen" new bench --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
"$BIN/examples/mint-tokens" bench "$work/private/bench_private.pem" "$N" > "$work/cold.txt"
# The warm path: the first token, N times.
if [ "${PROFILE_PATH:-cold}" = warm ]; then
  awk -v n="$N" 'NR == 1 { for (i = 0; i < n; i++) print; exit }' "$work/cold.txt" > "$work/warm.txt"
  mv "$work/warm.txt" "$work/cold.txt"
fi

profile() { # profile NAME PATH [TOKENS] -> callgrind.out.NAME
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$1" --dump-instr=no \
    "$SERVER" --keys-dir "$work/keys" --bind "127.0.0.1:$port" "${SERVER_ARGS[@]}" \
    --token-cache-mb "$CACHE_MB" >"$work/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  # Callgrind counts from here: the start-up above is subtracted out by
  # zeroing the counters first.
  callgrind_control --zero "$pid" >/dev/null
  python3 - "$port" "$2" "$N" "${3:-}" <<'PY'
import http.client, sys
port, path, n, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
toks = open(tokens).read().split() if tokens else []
c = http.client.HTTPConnection("127.0.0.1", int(port))
for i in range(n):
    c.request("GET", path, headers={"x-token": toks[i]} if toks else {})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  callgrind_control --dump="$1" "$pid" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

profile healthz /healthz
profile cold /ping "$work/cold.txt"
python3 "$ROOT/scripts/bench/callgrind-by-file.py" "$work/callgrind.healthz.1" "$work/callgrind.cold.1" "$N"
echo
# PROFILE_OUT=dir keeps the callgrind files (for callgrind_annotate or kcachegrind).
if [ -n "${PROFILE_OUT:-}" ]; then mkdir -p "$PROFILE_OUT" && cp "$work"/callgrind.* "$PROFILE_OUT"/; fi

python3 - "$N" "$work"/callgrind.healthz* "$work"/callgrind.cold* <<'PY'
import functools, re, subprocess, sys
n = int(sys.argv[1])
files = sys.argv[2:]
def self_costs(prefix):
    costs = {}
    for f in [f for f in files if f"callgrind.{prefix}" in f]:
        out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", f],
                             capture_output=True, text=True).stdout
        total = None
        for line in out.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
            if m and "PROGRAM TOTALS" in m.group(2):
                total = int(m.group(1).replace(",", ""))
            # A line-tables build leaves the thread's outer frames (clone,
            # the runtime's block_on) with the whole run as their "self"
            # cost, inlined code and all: they are not a function's own.
            elif m and total and int(m.group(1).replace(",", "")) * 10 > total * 9:
                continue
            elif m and ":" in m.group(2) and "=>" not in line:
                fn = m.group(2).split(":", 1)[1].split(" [")[0].strip()
                costs[fn] = costs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return costs
import os
print(f"instructions per request (callgrind, {n} requests each, one worker, "
      f"{os.environ.get('PROFILE_SERVER', 'actix')}, {os.environ.get('PROFILE_PATH', 'cold')} path)")
print()
# The gate's decision alone, inclusive of everything it calls, and aws-lc's
# verification call inclusive of the mallocs and memsets it makes itself:
# their difference is the gate's own work on a cold request, with neither
# the HTTP stack nor the handler in it. Names as a line-tables build keeps
# them; a function inlined away is reported as not found.
@functools.cache
def annotated(run):
    f = [f for f in files if f"callgrind.{run}" in f][-1]
    return subprocess.run(["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=100", f],
                          capture_output=True, text=True).stdout
def inclusive(pattern, run="cold"):
    for line in annotated(run).splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
        if m and re.search(pattern, m.group(2)):
            return int(m.group(1).replace(",", ""))
    return None
decision = inclusive(r"appauth_gate::gate::Gate::(decide_untraced|decide|authenticate) ")
# The verification call, and the hash of the signing input taken before it
# (on the warm path, the first request's one verification).
rsa = inclusive(r"aws_lc_rs::signature::ParsedVerificationAlgorithm")
if rsa:
    rsa += inclusive(r"aws_lc_rs::digest::sha::sha\d+_digest ") or 0
if decision and rsa:
    print(f"the gate's decision: {decision / n:,.0f} a request, of which aws-lc's verification call "
          f"{rsa / n:,.0f}; the gate's own: {(decision - rsa) / n:,.0f}")
    cold_total, healthz_total = inclusive("PROGRAM TOTALS"), inclusive("PROGRAM TOTALS", "healthz")
    if cold_total and healthz_total:
        # The other count: the verification call inclusive, so that the C
        # library's malloc, free and memset that aws-lc calls are aws-lc's.
        print(f"outside aws-lc's calls (its own malloc, free and wipes counted as aws-lc's): "
              f"{(cold_total - healthz_total - rsa) / n:,.0f} a request")
else:
    print("the gate's decision: not found by name (inlined); build with line tables to see it")
print()
top = sorted(self_costs("cold").items(), key=lambda kv: -kv[1])[:25]
print("top functions of the cold run (self instructions per request):")
for fn, cost in top:
    print(f"  {cost / n:>10,.0f}  {fn[:110]}")
PY
