#!/usr/bin/env bash
# What a build pipeline runs to give every application its keypair.
#
#   scripts/gen-keys.sh APP_LIST OUT_DIR        (APP_LIST: one appId a line, # comments; - for stdin)
#
# Writes, with appauth-keygen --if-missing (re-running changes nothing):
#   OUT_DIR/public/<appId>_public.pem                  the API server's keys directory
#   OUT_DIR/private/<appId>/<appId>_private.pem        one directory per app: each app's
#                                                      deployment mounts only its own
# and prints a summary. APPAUTH_KEYGEN names the binary (default: appauth-keygen
# on PATH, else this checkout's release build). APPAUTH_KEY_BITS: 2048 (default),
# 3072 or 4096.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 APP_LIST OUT_DIR" >&2
  exit 2
fi
list=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${APPAUTH_KEYGEN:-}" ]; then KEYGEN=$APPAUTH_KEYGEN
elif command -v appauth-keygen >/dev/null; then KEYGEN=appauth-keygen
else
  (cd "$here" && cargo build --release -q -p appauth-keygen)
  KEYGEN=$here/target/release/appauth-keygen
fi

if [ "$list" = - ]; then text=$(cat); else text=$(cat "$list"); fi
mapfile -t apps < <(printf '%s\n' "$text" | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
if [ ${#apps[@]} -eq 0 ]; then
  echo "gen-keys: no appIds in $list" >&2
  exit 1
fi

json=$("$KEYGEN" new "${apps[@]}" --if-missing --json --bits "${APPAUTH_KEY_BITS:-2048}" \
  --public-dir "$out/public" --private-dir "$out/private" --private-subdirs)
printf '%s' "$json" | python3 -c '
import json, sys
results = json.load(sys.stdin)["results"]
created = [r for r in results if r["status"] == "created"]
skipped = [r for r in results if r["status"] == "skipped"]
for r in results:
    print("%-8s %-40s kid=%s" % (r["status"], r["app_id"], r["kid"]))
print(f"{len(created)} created, {len(skipped)} already had keys")
'
echo "public keys (mount as the server's keys directory): $out/public"
echo "private keys (mount each app's directory into that app only): $out/private/<appId>/"
