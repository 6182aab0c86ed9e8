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
# verification each. (d)-(f): the same three against the axum example
# (crates/tower/examples/axum-api.rs, the tower adapter) on one tokio worker.
# (g), (h): (b) and (c) with traces on, a span per decision exported over
# OTLP/HTTP to a sink on loopback (scripts/bench/otlp-sink.py); (b) and (c)
# are the same binary with traces off. The batch exporter's thread is the
# server's too, so its CPU is counted. (i), (j): (a) and (d) carrying the
# warm token in x-token, which the exempt route never reads: the floor of a
# request as long as (b)'s, so that (b)-(i) and (e)-(j) are the gate's own
# work, without the bigger head's parsing and copying. The targets are
# printed twice: from the rows' medians, and paired round by round (each
# round's difference or ratio, then their median), which cancels the drift
# of a shared machine between rounds.
#
#   BENCH_CPUS=one scripts/bench-cpu.sh     # everything on CPU 0
#
# By default the server and wrk run where the kernel puts them, on the two
# CPUs. A response to a wrk that sleeps then wakes it on the other CPU with
# a function-call interrupt, and wrk sleeps between responses when the
# server is the slow side: a cold row's case (a third of its requests), not
# /healthz's. The script prints those interrupts per request, since the
# server's kernel time pays for them. BENCH_CPUS=one puts the server, wrk
# and openssl on CPU 0, where a wakeup needs none, as openssl's loop needs
# none: the other reading of the same targets (docs/performance.md has
# both).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench/lib.sh
SECS=${BENCH_SECONDS:-5}
# Rounds of every row, interleaved, reporting each row's median: on two
# shared cores one run of a row can land 30 % off.
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
NTOKENS=${BENCH_TOKENS:-10000}

need wrk wrk
case ${BENCH_CPUS:-two} in
  two) ;;
  one) PIN=(taskset -c 0) ;;
  *) echo "BENCH_CPUS is two or one" >&2; exit 2 ;;
esac
build_release
"$TOOLS/appauth-keygen" new bench --bits 2048 --public-dir "$work/keys" --private-dir "$work/private" >/dev/null
"$TOOLS/examples/mint-tokens" bench "$work/private/bench_private.pem" "$NTOKENS" > "$work/cold.txt"
head -1 "$work/cold.txt" > "$work/warm.txt"

# Function-call interrupts (the kernel's cross-CPU wakeups), all CPUs.
ipis() { awk '$1 == "CAL:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }' /proc/interrupts; }
measure() { # measure PID URL PATH [TOKENS] -> "us_per_request requests rps user_us_per_request ipis_per_request"
  local before after ubefore uafter ibefore iafter out
  before=$(ticks "$1") ubefore=$(user_ticks "$1") ibefore=$(ipis)
  out=$("${PIN[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s -s "$ROOT/scripts/bench/tokens.lua" "$2" -- "$3" "${4:-}" \
    | awk '/^RESULT/ {print $2, $5}')
  after=$(ticks "$1") uafter=$(user_ticks "$1") iafter=$(ipis)
  python3 -c "import sys; rps, n = map(float, '$out'.split()); print(f'{($after - $before) / $HZ / n * 1e6:.2f} {n:.0f} {rps:.0f} {($uafter - $ubefore) / $HZ / n * 1e6:.2f} {($iafter - $ibefore) / n:.3f}')"
}

start_server warm --workers 1
WARM_PID=$PID WARM_URL=$URL
start_server cold --workers 1 --token-cache-mb 0
COLD_PID=$PID COLD_URL=$URL
start_axum axum-warm
AXUM_PID=$PID AXUM_URL=$URL
start_axum axum-cold --token-cache-mb 0
AXUM_COLD_PID=$PID AXUM_COLD_URL=$URL
SINK_PORT=$(free_port)
"${PIN[@]}" python3 scripts/bench/otlp-sink.py "$SINK_PORT" "$work/spans" &
pids+=("$!")
start_server traced-warm --workers 1 --otlp-endpoint "http://127.0.0.1:$SINK_PORT"
TRACED_PID=$PID TRACED_URL=$URL
start_server traced-cold --workers 1 --token-cache-mb 0 --otlp-endpoint "http://127.0.0.1:$SINK_PORT"
TRACED_COLD_PID=$PID TRACED_COLD_URL=$URL
A=() B=() C=() D=() E=() F=() G=() H=() I=() J=() OSSL=() OSSL2=()
# Within a round, the rows a target compares run back to back (a floor,
# then what is measured against it), so that the paired figures below,
# worked out round by round, see the machine in the same state.
ossl() { "${PIN[@]}" openssl speed -seconds 2 rsa2048 2>/dev/null | awk '/^rsa +2048 bits/ {print $7}'; }
for _ in $(seq 1 "$ROUNDS"); do
  A+=("$(measure "$WARM_PID" "$WARM_URL" /healthz)")
  B+=("$(measure "$WARM_PID" "$WARM_URL" /ping "$work/warm.txt")")
  I+=("$(measure "$WARM_PID" "$WARM_URL" /healthz "$work/warm.txt")")
  C+=("$(measure "$COLD_PID" "$COLD_URL" /ping "$work/cold.txt")")
  OSSL+=("$(ossl)")
  D+=("$(measure "$AXUM_PID" "$AXUM_URL" /healthz)")
  E+=("$(measure "$AXUM_PID" "$AXUM_URL" /ping "$work/warm.txt")")
  J+=("$(measure "$AXUM_PID" "$AXUM_URL" /healthz "$work/warm.txt")")
  F+=("$(measure "$AXUM_COLD_PID" "$AXUM_COLD_URL" /ping "$work/cold.txt")")
  OSSL2+=("$(ossl)")
  G+=("$(measure "$TRACED_PID" "$TRACED_URL" /ping "$work/warm.txt")")
  H+=("$(measure "$TRACED_COLD_PID" "$TRACED_COLD_URL" /ping "$work/cold.txt")")
done
join() { local IFS=';'; echo "$*"; }
sleep 1 # the last batch (the exporter sends every 5 s, or each 512 spans)

python3 - "$BIN" "$(join "${OSSL[@]}")" "$(join "${OSSL2[@]}")" "$(join "${A[@]}")" "$(join "${B[@]}")" "$(join "${C[@]}")" \
  "$(join "${D[@]}")" "$(join "${E[@]}")" "$(join "${F[@]}")" "$(join "${G[@]}")" "$(join "${H[@]}")" \
  "$(join "${I[@]}")" "$(join "${J[@]}")" \
  "$(cat "$work/spans" 2>/dev/null || echo 0)" <<'PY'
import os, statistics, sys
binary, ossl, ossl2, *runs = sys.argv[1:]
exported = int(runs.pop())
# openssl runs twice a round, beside the actix and the tower cold rows.
ossl_us = [1e6 / float(v) for v in ossl.split(";")]
ossl2_us = [1e6 / float(v) for v in ossl2.split(";")]
verify_us = statistics.median(ossl_us + ossl2_us)
def median_row(run):
    rows = [r.split() for r in run.split(";")]
    us = statistics.median(float(r[0]) for r in rows)
    user = statistics.median(float(r[3]) for r in rows)
    ipis = statistics.median(float(r[4]) for r in rows)
    return f"{us} {sum(int(r[1]) for r in rows)} {statistics.median(int(r[2]) for r in rows)} {user} {ipis}"
rows = [median_row(r) for r in runs]
names = ["(a) GET /healthz, no token", "(b) warm GET /ping, one token", "(c) cold GET /ping, 2048-bit, cache off",
         "(d) axum-api GET /healthz, no token", "(e) axum-api warm GET /ping", "(f) axum-api cold GET /ping, cache off",
         "(g) (b) with traces on", "(h) (c) with traces on",
         "(i) (a) carrying (b)'s token", "(j) (d) carrying (e)'s token"]
cpus = "one CPU for all (BENCH_CPUS=one)" if os.environ.get("BENCH_CPUS") == "one" else "two CPUs"
print(f"binary: {binary}; {cpus}; each row the median of {len(runs[0].split(';'))} interleaved runs")
print("| run | server CPU us/request | of which user | requests | req/s | wakeup IPIs/request |")
print("|---|---:|---:|---:|---:|---:|")
vals, users = [], []
for name, row in zip(names, rows):
    us, n, rps, user, ipis = row.split()
    vals.append(float(us))
    users.append(float(user))
    print(f"| {name} | {float(us):.2f} | {float(user):.2f} | {int(n):,} | {int(float(rps)):,} | {float(ipis):.2f} |")
a, b, c, d, e, f, g, h, i, j = vals
ua, ub, uc, ud, ue, uf, ug, uh, ui, uj = users
traced = sum(int(r.split()[1]) for r in rows[6:8])
print()
print(f"openssl verify, one 2048-bit operation: {verify_us:.2f} us (median, same run)")
print(f"actix: warm gate cost (b)-(a): {b - a:.2f} us; cold (c) vs floor (a)+openssl verify: "
      f"{c:.2f} / {a + verify_us:.2f} = {c / (a + verify_us):.2f}x")
print(f"tower: warm gate cost (e)-(d): {e - d:.2f} us (target <= 1 us); cold (f) vs floor (d)+openssl verify: "
      f"{f:.2f} / {d + verify_us:.2f} = {f / (d + verify_us):.2f}x (target <= 1.3x)")
# openssl speed's figure is a compute loop's, user time in effect; the
# server's kernel time per request grows as its requests get slower (fewer
# ready sockets a wakeup), which no verification does.
print(f"user time only: actix warm (b)-(a) {ub - ua:.2f} us, (b)-(i) {ub - ui:.2f} us, "
      f"cold (c)/((a)+openssl) {uc / (ua + verify_us):.2f}x; "
      f"tower warm (e)-(d) {ue - ud:.2f} us, (e)-(j) {ue - uj:.2f} us, "
      f"cold (f)/((d)+openssl) {uf / (ud + verify_us):.2f}x")
print(f"with the token on the floor too: actix warm (b)-(i) {b - i:.2f} us, cold (c)/((i)+openssl) "
      f"{c / (i + verify_us):.2f}x; tower warm (e)-(j) {e - j:.2f} us, cold (f)/((j)+openssl) {f / (j + verify_us):.2f}x")
print(f"traces: on costs {g - b:.2f} us warm ((g)-(b)) and {h - c:.2f} us cold ((h)-(c)); "
      f"{exported:,} spans reached the sink for {traced:,} traced requests")

# The same targets paired round by round: each round's difference or ratio
# of rows run back to back, then the median of those. The machine drifts
# by microseconds between rounds, which a difference of two medians taken
# from different rounds keeps and a per-round difference cancels.
def per_round(run, col):
    return [float(r.split()[col]) for r in run.split(";")]
ra, rb, rc, rd, re_, rf, rg, rh, ri, rj = (per_round(r, 0) for r in runs)
ua_, ub_, uc_, ud_, ue_, uf_, ug_, uh_, ui_, uj_ = (per_round(r, 3) for r in runs)
def paired(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f} to {max(xs):.2f})"
print()
print(f"paired by round, median (range) of {len(ra)} rounds:")
print(f"  tower warm (e)-(d): {paired([x - y for x, y in zip(re_, rd)])} us, user "
      f"{paired([x - y for x, y in zip(ue_, ud_)])} us (target <= 1 us); (e)-(j): "
      f"{paired([x - y for x, y in zip(re_, rj)])} us, user {paired([x - y for x, y in zip(ue_, uj_)])} us")
print(f"  tower cold (f)/((d)+openssl): {paired([x / (y + o) for x, y, o in zip(rf, rd, ossl2_us)])}x, user "
      f"{paired([x / (y + o) for x, y, o in zip(uf_, ud_, ossl2_us)])}x (target <= 1.3x)")
print(f"  actix warm (b)-(a): {paired([x - y for x, y in zip(rb, ra)])} us, user "
      f"{paired([x - y for x, y in zip(ub_, ua_)])} us; (b)-(i): {paired([x - y for x, y in zip(rb, ri)])} us")
print(f"  actix cold (c)/((a)+openssl): {paired([x / (y + o) for x, y, o in zip(rc, ra, ossl_us)])}x, user "
      f"{paired([x / (y + o) for x, y, o in zip(uc_, ua_, ossl_us)])}x")
PY
