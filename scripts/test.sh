#!/usr/bin/env bash
# The test command (README): installs dependencies, builds, runs every test.
#   scripts/test.sh            unit + integration tests (CI runs this)
#   scripts/test.sh unit       the fast tier only (GoogleTest, seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
tier="${1:-all}"

./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"

case "$tier" in
  unit) ctest --test-dir build -L unit --output-on-failure -j "$(nproc)" ;;
  integration) ctest --test-dir build -L integration --output-on-failure ;;
  all)
    ctest --test-dir build -L unit --output-on-failure -j "$(nproc)"
    # Integration tests start their own moto/nginx/tagd on free ports; run them one at a
    # time so they do not compete for the 2 cores and skew timeouts.
    ctest --test-dir build -L integration --output-on-failure
    ;;
  *) echo "usage: $0 [all|unit|integration]" >&2; exit 2 ;;
esac
