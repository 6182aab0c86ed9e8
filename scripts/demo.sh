#!/usr/bin/env bash
# The appauth walk-through: what a build pipeline does with appauth-keygen.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building appauth (release)"
cargo build --release -q -p appauth-keygen
KEYGEN=$PWD/target/release/appauth-keygen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "A build pipeline gives two apps their keypairs (private and public keys in separate folders)"
"$KEYGEN" new orders-service billing-service --private-dir "$work/private" --public-dir "$work/public"
ls -l "$work/private" "$work/public"

say "Re-running the pipeline is safe: without a flag it refuses to overwrite..."
"$KEYGEN" new orders-service --private-dir "$work/private" --public-dir "$work/public" || true
say "...and with --if-missing it skips apps that already have keys"
"$KEYGEN" new orders-service --private-dir "$work/private" --public-dir "$work/public" --if-missing

say "Rotating orders-service: the new public key joins the bundle, the old private key is kept aside"
"$KEYGEN" rotate orders-service --private-dir "$work/private" --public-dir "$work/public"
"$KEYGEN" inspect "$work/public/orders-service_public.pem"

old=$("$KEYGEN" inspect "$work/public/orders-service_public.pem" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["keys"][0]["kid"])')
say "Once every replica runs the new key, the old public key is retired"
"$KEYGEN" retire orders-service --kid "$old" --private-dir "$work/private" --public-dir "$work/public"
"$KEYGEN" inspect "$work/public/orders-service_public.pem"

say "Bad input is refused with a clear message and nothing written"
"$KEYGEN" new ../etc/passwd --out-dir "$work/x" || true
say "Done."
