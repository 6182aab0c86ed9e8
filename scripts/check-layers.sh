#!/usr/bin/env bash
# The layers, as the dependency trees show them: the engine has no web
# framework, no HTTP types and no command line; the tower adapter has no
# actix. Normal dependencies only, with every feature on.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
forbid() { # crate, regex of crate names it must not depend on
  local found
  found=$(cargo tree --locked -e normal -p "$1" --all-features --prefix none \
    | awk '{print $1}' | sort -u | grep -E "^($2)\$" || true)
  if [ -n "$found" ]; then
    echo "$1 must not depend on: $(echo "$found" | tr '\n' ' ')"
    fail=1
  fi
}
forbid appauth-gate 'actix.*|awc|axum.*|hyper.*|tower.*|tonic.*|http|http-body.*|clap.*|tracing-subscriber'
forbid appauth-tower 'actix.*|awc|clap.*'
forbid appauth-actix 'axum.*|tower|tower-http|tonic.*|hyper|clap.*'
# The agent is a caller: it signs, it never verifies or serves a gate.
forbid appauth-agent 'appauth-gate|actix.*|awc|axum.*|tonic.*|redis'
[ $fail -eq 0 ] && echo "layers: appauth-gate has no framework, appauth-tower no actix, appauth-actix no tower, appauth-agent no gate"
exit $fail
