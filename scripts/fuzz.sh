#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and the verification path with
# cargo-fuzz (libFuzzer), each target for a bounded time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, every target)
# Seeds come from fuzz/seeds (made from tests/fixtures); the grown corpus
# stays in fuzz/corpus, crashes land in fuzz/artifacts/<target>/. Every crash
# found becomes a regression test beside the property tests.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# (the only one these machines have) accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(verify_token pem_bundle policy revocation)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build --fuzz-dir fuzz -O >/dev/null 2>&1 || cargo fuzz build --fuzz-dir fuzz -O
status=0
printf '%-14s %10s %12s %10s  %s\n' target seconds "execs" "execs/s" result
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  if cargo fuzz run --fuzz-dir fuzz -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$SECS" -max_len=16384 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    result="no crash"
  else
    result="CRASH: see fuzz/artifacts/$t/ and $log"
    status=1
  fi
  line=$(grep -E '^#[0-9]+.*exec/s' "$log" | tail -1)
  execs=$(echo "$line" | sed -E 's/^#([0-9]+).*/\1/')
  rate=$(echo "$line" | sed -E 's/.*exec\/s: ([0-9]+).*/\1/')
  printf '%-14s %10s %12s %10s  %s\n' "$t" "$SECS" "${execs:-?}" "${rate:-?}" "$result"
  [ $status -eq 0 ] && rm -f "$log"
done
exit $status
