#!/usr/bin/env bash
# The whole of appauth in two minutes: a build pipeline makes keys, the API
# server starts on loopback, two apps call it through the client crate, forged,
# unknown and expired tokens are refused, a key is rotated with no restart,
# replicas share Redis, the gate runs inside axum, and a Python caller with no
# JWT code goes through appauth-agent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

step "Building appauth (release; the first build takes a few minutes)"
cargo build --release -q -p appauth-keygen -p appauth-server -p appauth-client -p appauth-agent --bins
cargo build --release -q -p appauth-client --example call-api
cargo build --release -q -p appauth-tower --example axum-api
BIN=$ROOT/target/release
KEYGEN=$BIN/appauth-keygen TOKEN=$BIN/appauth-token CALL=$BIN/examples/call-api

work=$(mktemp -d)
server_pid=
extra_pids=()
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  for p in "${extra_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/keys" "$work/private"

step "1. The build pipeline gives two apps their keypairs"
note "public keys go to the server's keys directory, private keys to each app only"
"$KEYGEN" new orders-service billing-service --public-dir "$work/keys" --private-dir "$work/private"

step "2. The API server starts, watching the keys directory"
"$BIN/appauth-server" --keys-dir "$work/keys" --bind 127.0.0.1:0 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" | head -1 | cut -d' ' -f3) || true
  [ -n "${url:-}" ] && curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "${url:-}" ] || { cat "$work/server.log"; echo "server did not start"; exit 1; }
note "listening on $url (pid $server_pid); /readyz says: $(curl -s "$url/readyz")"

step "3. Both apps call the API through the client crate (tokens signed and cached for them)"
"$CALL" --app-id orders-service --key "$work/private/orders-service_private.pem" --url "$url" --path /whoami --path /users/2
"$CALL" --app-id billing-service --key "$work/private/billing-service_private.pem" --url "$url" --path /users

show() { # show LABEL TOKEN: one call to /users, status and the start of the body
  code=$(curl -s -o "$work/body" -w '%{http_code}' -H "x-token: $2" "$url/users")
  body=$(head -c 90 "$work/body")
  note "$1"
  note "   -> HTTP $code $body$( [ "$(wc -c <"$work/body")" -gt 90 ] && echo ...)"
}
step "4. Calls that must be refused"
"$KEYGEN" new intruder --out-dir "$work/attacker" >/dev/null
show "a forged token: signed by an attacker's key but claiming to be orders-service" \
  "$("$TOKEN" --app-id orders-service --key "$work/attacker/intruder_private.pem")"
show "an app the server has no key for" \
  "$("$TOKEN" --app-id intruder --key "$work/attacker/intruder_private.pem")"
cp tests/fixtures/node/node-app_public.pem "$work/keys/"
sleep 1
show "a token made by Node's jsonwebtoken in 2023 (its key is known, the token expired)" \
  "$(python3 -c 'import json; print(json.load(open("tests/fixtures/node/tokens.json"))["recipe_rs512"])')"
show "no token at all" ""
show "junk" "not.a.token"

step "5. Rotating orders-service's key, with the server running"
old_token=$("$TOKEN" --app-id orders-service --key "$work/private/orders-service_private.pem")
old_kid=$("$KEYGEN" inspect "$work/private/orders-service_private.pem" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["keys"][0]["kid"])')
"$KEYGEN" rotate orders-service --public-dir "$work/keys" --private-dir "$work/private"
sleep 1
note "the app, now signing with its new key:"
"$CALL" --app-id orders-service --key "$work/private/orders-service_private.pem" --url "$url" --path /whoami
show "a token signed with the old key, still in the bundle" "$old_token"
"$KEYGEN" retire orders-service --kid "$old_kid" --public-dir "$work/keys" --private-dir "$work/private"
sleep 1
show "the same old-key token after the old key is retired" "$old_token"

step "6. What the server counted (/metrics)"
curl -s "$url/metrics" | grep -E '^appauth_(requests_total\{.*\} [1-9]|apps_loaded|keys_loaded|rsa_verifications_total)' | sed 's/^/   /'

step "7. Three replicas, one Redis: one rate limit and one revocation for all"
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  note "installing redis-server from Debian's packages..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >/dev/null 2>&1 || true
fi
if command -v redis-server >/dev/null; then
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  extra_pids+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  printf '[default]\nallow = ["GET /users", "GET /whoami"]\n\n[apps.billing-service]\nrate = "10/s"\n' > "$work/policy.toml"
  replicas=()
  for i in 1 2 3; do
    port=$(free_port)
    "$BIN/appauth-server" --keys-dir "$work/keys" --policy "$work/policy.toml" --bind "127.0.0.1:$port" \
      --redis-url "redis://127.0.0.1:$rport" >"$work/replica-$i.log" 2>&1 &
    extra_pids+=($!)
    replicas+=("http://127.0.0.1:$port")
  done
  for r in "${replicas[@]}"; do
    for _ in $(seq 1 100); do
      curl -s "$r/metrics" 2>/dev/null | grep -q '^appauth_shared_state_mode{mode="global"} 1' && break
      sleep 0.1
    done
  done
  note "billing-service may make 10 calls a second (burst 10) across all replicas together;"
  note "40 calls in turn to the three replicas, as fast as curl goes:"
  token=$("$TOKEN" --app-id billing-service --key "$work/private/billing-service_private.pem")
  declare -A seen=()
  for i in $(seq 0 39); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-token: $token" "${replicas[$((i % 3))]}/users")
    seen[$code]=$(( ${seen[$code]:-0} + 1 ))
  done
  for code in "${!seen[@]}"; do note "   HTTP $code: ${seen[$code]}"; done
  note "(three replicas on their own would have let about 30 through)"
  jti_token=$("$TOKEN" --app-id orders-service --key "$work/private/orders-service_private.pem")
  jti=$(python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["jti"])' "$jti_token")
  note "revoking one orders-service token through one command:"
  "$BIN/appauth-server" revoke --redis-url "redis://127.0.0.1:$rport" "jti $jti" 2>&1 | sed 's/^/   /'
  each_replica() {
    sleep 0.3
    for r in "${replicas[@]}"; do
      code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-token: $jti_token" "$r/whoami")
      note "   $r -> HTTP $code"
    done
  }
  each_replica
  note "a mistake? lifting it again, no restart (revoke --remove):"
  "$BIN/appauth-server" revoke --redis-url "redis://127.0.0.1:$rport" --remove "jti $jti" 2>&1 | sed 's/^/   /'
  each_replica
else
  note "skipped: redis-server is not installed (apt-get install redis-server)"
fi

step "8. The same gate inside someone else's axum service (appauth-tower)"
aport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/examples/axum-api" --keys-dir "$work/keys" --bind "127.0.0.1:$aport" >"$work/axum.log" 2>&1 &
extra_pids+=($!)
axum="http://127.0.0.1:$aport"
for _ in $(seq 1 100); do curl -sf "$axum/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
note "crates/tower/examples/axum-api.rs on $axum, over the same keys directory:"
"$CALL" --app-id billing-service --key "$work/private/billing-service_private.pem" --url "$axum" --path /whoami
forged=$("$TOKEN" --app-id orders-service --key "$work/attacker/intruder_private.pem")
for target in "$url" "$axum"; do
  code=$(curl -s -o "$work/body" -w '%{http_code}' -H "x-token: $forged" "$target/ping")
  note "the forged token at $target -> HTTP $code $(cat "$work/body")"
done
note "(one engine, appauth-gate: the refusal is byte for byte the same)"

step "9. A caller with no JWT code: Python through appauth-agent"
gport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/appauth-agent" proxy --app-id billing-service --key "$work/private/billing-service_private.pem" \
  --listen "127.0.0.1:$gport" --upstream "$url" >"$work/agent.log" 2>&1 &
extra_pids+=($!)
agent="http://127.0.0.1:$gport"
for _ in $(seq 1 100); do grep -q "proxy listening" "$work/agent.log" 2>/dev/null && break; sleep 0.1; done
note "the agent on $agent signs for billing-service; Python's standard library calls it:"
python3 - "$agent" <<'PY' | sed 's/^/   /'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/whoami", timeout=10) as resp:
    who = json.load(resp)
    print(f"HTTP {resp.status}: appId={who['appId']} kid={who['kid'][:12]}...")
PY
note "an x-token of the caller's own is replaced, not forwarded: $(curl -s -H 'x-token: forged' "$agent/whoami" | head -c 40)..."

step "10. Stopping the server (SIGTERM: in-flight requests drain)"
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=
note "done. Server log: $(wc -l <"$work/server.log") lines; rejections were logged with their reasons, never the tokens."
