#!/usr/bin/env bash
# Flood: 50,000 junk and unknown-app tokens over 32 connections while a valid
# caller keeps calling; prints the valid caller's p99 quiet and during the
# flood, and asserts that the junk cost no RSA verification.
#   scripts/flood.sh [TOKENS] [RATE]   (default 50000 as fast as possible; the
#                                      suite sends 5000. RATE paces the junk, per second)
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD_TOKENS=${1:-50000} FLOOD_RATE=${2:-0} cargo test -q --release -p appauth-server --test server flood -- --ignored --nocapture 2>&1 \
  | grep -E '^flood|test result|panicked|assert'
