#!/usr/bin/env bash
# Key generation speed: appauth-keygen against `openssl genpkey`, same machine,
# same run. Prints the median time per key, the ratio, and the parallel speedup
# of one `appauth-keygen new --generate-id N` run across all cores against the
# same run pinned to one thread.
#   scripts/bench-keygen.sh [N]     (default N=8)
#   BENCH_RSA_CRATE=1 scripts/bench-keygen.sh   also times the pure-Rust rsa crate
set -euo pipefail
N=${1:-8}
cd "$(dirname "$0")/.."
cargo build --release -q -p appauth-keygen
KEYGEN=$PWD/target/release/appauth-keygen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-6s %16s %16s %8s\n' bits "appauth ms/key" "openssl ms/key" ratio
for bits in 3072 4096; do
  ours=() theirs=()
  for i in $(seq 1 "$N"); do
    # Interleaved, so drift in machine load hits both sides alike.
    t0=$(now); "$KEYGEN" new "bench-$bits-$i" --bits "$bits" --out-dir "$work/a" >/dev/null; t1=$(now)
    openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$bits" -out "$work/o-$bits-$i.pem" 2>/dev/null; t2=$(now)
    ours+=($(( (t1 - t0) / 1000 ))) theirs+=($(( (t2 - t1) / 1000 )))
  done
  a=$(printf '%s\n' "${ours[@]}" | median); o=$(printf '%s\n' "${theirs[@]}" | median)
  awk -v b="$bits" -v a="$a" -v o="$o" 'BEGIN { printf "%-6s %16.1f %16.1f %8.2f\n", b, a/1000, o/1000, a/o }'
done

if [ "${BENCH_RSA_CRATE:-0}" = 1 ]; then
  echo
  echo "pure-Rust rsa crate, median of 3 (the design's first candidate):"
  for bits in 3072 4096; do
    ms=$(cargo run --release -q -p appauth-keygen --example rsa_crate_keygen -- "$bits" 3)
    echo "  $bits bits: $ms ms/key"
  done
fi

echo
echo "parallel: $N apps of 4096 bits in one run"
t0=$(now); RAYON_NUM_THREADS=1 "$KEYGEN" new --generate-id "$N" --bits 4096 --out-dir "$work/p1" >/dev/null; t1=$(now)
"$KEYGEN" new --generate-id "$N" --bits 4096 --out-dir "$work/p2" >/dev/null; t2=$(now)
awk -v s="$(( (t1 - t0) / 1000000 ))" -v p="$(( (t2 - t1) / 1000000 ))" -v c="$(nproc)" \
  'BEGIN { printf "1 thread: %d ms   %d cores: %d ms   parallel/single: %.2f\n", s, c, p, p/s }'
