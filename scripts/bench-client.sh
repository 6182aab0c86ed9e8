#!/usr/bin/env bash
# The client's costs, side by side with openssl in one run: a token() cache
# hit, and a fresh RS512 signature per key size with appauth's held aws-lc key,
# jsonwebtoken's encode (re-parses the key per call), and `openssl speed`.
#   scripts/bench-client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p appauth-client --bench signer -- --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1 \
  || { echo "cargo bench failed; run it by hand to see why" >&2; exit 1; }
speed=$(openssl speed -seconds 3 rsa2048 rsa3072 rsa4096 2>/dev/null)
python3 - "$speed" <<'PY'
import json, sys, re
def ns(name):
    with open(f"target/criterion/{name}/new/estimates.json") as f:
        return json.load(f)["mean"]["point_estimate"]
openssl = {int(m[0]): float(m[1]) * 1e9 for m in re.findall(r"rsa\s+(\d+) bits\s+([\d.]+)s", sys.argv[1])}
print(f"token() cache hit: {ns('token_cache_hit'):.0f} ns")
print()
print(f"{'bits':<6}{'appauth us':>12}{'jsonwebtoken us':>17}{'openssl us':>12}{'appauth/openssl':>17}")
for bits in (2048, 3072, 4096):
    a, j, o = ns(f"sign/appauth_{bits}"), ns(f"sign/jsonwebtoken_{bits}"), openssl[bits]
    print(f"{bits:<6}{a/1e3:>12.0f}{j/1e3:>17.0f}{o/1e3:>12.0f}{a/o:>17.2f}")
PY
