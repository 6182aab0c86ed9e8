#!/usr/bin/env bash
# The test suite: unit, integration and end-to-end tests of every crate, and
# the doc examples. End-to-end tests start the real binaries on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { echo "the tests need openssl (an independent reader of our keys)"; exit 1; }
command -v redis-server >/dev/null || { echo "the tests need redis-server (apt-get install redis-server): the replica tests start their own"; exit 1; }
command -v redis-cli >/dev/null || { echo "the tests need redis-cli (apt-get install redis-tools): the Cluster tests create their cluster with it"; exit 1; }
# PyJWT is the third-party verifier that reads our JWKS URL (interop test).
python3 -c "import jwt, cryptography" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check pyjwt cryptography \
  || { echo "the tests need PyJWT and cryptography from PyPI (pip install pyjwt cryptography)"; exit 1; }
# Callers in other languages: Node 20+ (built-in fetch) and its
# jsonwebtoken for the README's signing snippet, and a JDK for Java's
# HttpClient through the agent.
command -v promtool >/dev/null || { echo "the tests need promtool (apt-get install prometheus): the alert rules are tested with it"; exit 1; }
command -v node >/dev/null || { echo "the tests need node 20 or later (the agent's Node caller and the README's Node snippet)"; exit 1; }
command -v java >/dev/null || { echo "the tests need a JDK (apt-get install default-jdk-headless): Java's HttpClient calls through the agent"; exit 1; }
[ -d tests/interop/node/node_modules/jsonwebtoken ] \
  || npm ci --prefix tests/interop/node --silent --no-audit --no-fund \
  || { echo "the tests need jsonwebtoken from the npm registry (npm ci --prefix tests/interop/node)"; exit 1; }
cargo test --workspace --locked "$@"
# The soak and flood tests load the whole machine, so they run on their own,
# one after the other, rather than beside tests that time hot reloads.
cargo test -p appauth-server --test server --locked "$@" -- --ignored --test-threads=1
