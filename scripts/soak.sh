#!/usr/bin/env bash
# Soak: the real server under steady load from several apps while keys are
# rotated, retired, deleted and re-added, the policy rewritten (sometimes
# broken) and revocations appended every 100-200 ms. Prints the counts that
# must be zero, and memory, file descriptors and threads before and after.
#   scripts/soak.sh [SECONDS]     (default 60; the test suite runs 6)
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${1:-60} cargo test -q --release -p appauth-server --test server soak -- --ignored --nocapture 2>&1 \
  | grep -E '^soak|test result|panicked|assert'
