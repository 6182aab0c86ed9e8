#!/usr/bin/env bash
# Regenerates the known-answer fixtures under tests/fixtures.
#
# Keys and certificates are made only when missing (they are committed, and
# every vector depends on them). Tokens are RS256/RS512, which are
# deterministic, so re-running this script on a clean tree changes nothing:
#   scripts/gen-fixtures.sh && git diff --exit-code tests/fixtures
# Needs: openssl, node and npm (jsonwebtoken is installed into a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../tests/fixtures"
mkdir -p keys node

# The Node app's key: PKCS#1, as `openssl genrsa` makes it for many Node setups.
[ -f node/node-app_private.pem ] || openssl genrsa -traditional -out node/node-app_private.pem 2048
openssl rsa -in node/node-app_private.pem -pubout -out node/node-app_public.pem 2>/dev/null
openssl rsa -in node/node-app_private.pem -RSAPublicKey_out -out keys/node-app_pkcs1_public.pem 2>/dev/null
[ -f keys/node-app_cert.pem ] || openssl req -x509 -key node/node-app_private.pem -subj /CN=node-app \
  -days 36500 -out keys/node-app_cert.pem
# Keys that must be refused.
[ -f keys/rsa1024_private.pem ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out keys/rsa1024_private.pem 2>/dev/null
openssl pkey -in keys/rsa1024_private.pem -pubout -out keys/rsa1024_public.pem
[ -f keys/ec_private.pem ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out keys/ec_private.pem
openssl pkey -in keys/ec_private.pem -pubout -out keys/ec_public.pem
# A second RSA key, for "signed by another app's key" vectors; made before
# the encrypted copy below, which is made from it.
[ -f keys/other_private.pem ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out keys/other_private.pem 2>/dev/null
openssl pkey -in keys/other_private.pem -pubout -out keys/other_public.pem
[ -f keys/encrypted_private.pem ] || openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:fixture \
  -in keys/other_private.pem -out keys/encrypted_private.pem

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund jsonwebtoken@9.0.2 >/dev/null)
NODE_PATH="$work/node_modules" node node/make-tokens.js > node/tokens.json
echo "fixtures written to $(pwd)"
