#!/usr/bin/env bash
# In-process costs of the gate (criterion), beside `openssl speed` from the
# same run: a cold verification per key size (docs/spec.md §3 steps 1-7) and
# the bare RSA verification inside it, a token-cache hit, a key-store lookup.
#   scripts/bench-verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p appauth-gate --bench verify -- --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1 \
  || { echo "cargo bench failed; run it by hand to see why" >&2; exit 1; }
speed=$(openssl speed -seconds 3 rsa2048 rsa3072 rsa4096 2>/dev/null)
python3 - "$speed" <<'PY'
import json, sys, re
def ns(name):
    with open(f"target/criterion/{name}/new/estimates.json") as f:
        return json.load(f)["mean"]["point_estimate"]
verify = {int(m[0]): float(m[1]) * 1e9 for m in re.findall(r"rsa\s+(\d+) bits\s+[\d.]+s\s+([\d.]+)s", sys.argv[1])}
print(f"{'bits':<6}{'appauth cold us':>17}{'RSA alone us':>14}{'openssl us':>12}{'cold/openssl':>14}")
for bits in (2048, 3072, 4096):
    c, r, o = ns(f"verify/cold_{bits}"), ns(f"verify/rsa_only_{bits}"), verify[bits]
    print(f"{bits:<6}{c/1e3:>17.1f}{r/1e3:>14.1f}{o/1e3:>12.1f}{c/o:>14.2f}")
print()
print(f"token cache hit: {ns('verify_cache_hit'):.0f} ns   (target: under 2 us)")
print(f"key store lookup among 10,000 apps: {ns('verify_keystore_lookup_10k'):.0f} ns")
PY
