#!/usr/bin/env bash
# The run command (README): builds tagd and runs it.
# - With an upstream configured (TAG_UPSTREAM_ENDPOINT, TAG_CONFIG_FILE, --upstream-endpoint
#   or --config), runs tagd against it with the given flags.
# - Without one, starts a local S3 server (moto, loopback, signature checking on) as the
#   embedded upstream, puts tagd in front of it on 127.0.0.1:8080, shows a short boto3
#   session through it, and keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target tagd >/dev/null

if [[ -n "${TAG_UPSTREAM_ENDPOINT:-}" || -n "${TAG_CONFIG_FILE:-}" || " $* " == *" --upstream-endpoint"* ||
      " $* " == *" --config"* ]]; then
  exec build/tagd "$@"
fi
exec python3 scripts/demo.py --tagd build/tagd "$@"
