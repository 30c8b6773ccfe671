#!/usr/bin/env bash
# The test command (README): installs dependencies, builds, runs every test.
#   scripts/test.sh            unit + integration tests, the sanitize tier, a Release build (CI runs this)
#   scripts/test.sh unit       the fast tier only (GoogleTest, seconds)
#   scripts/test.sh integration
#   scripts/test.sh sanitize   ASan+UBSan build of the library and unit tests in build-asan/,
#                              then every libFuzzer target for TAGD_FUZZ_SECONDS (default 15)
#                              seconds (scripts/fuzz.sh; docs/security.md, "Fuzzing and
#                              sanitizers")
set -euo pipefail
cd "$(dirname "$0")/.."
tier="${1:-all}"
case "$tier" in
  all | unit | integration | sanitize) ;;
  *) echo "usage: $0 [all|unit|integration|sanitize]" >&2; exit 2 ;;
esac

./scripts/install-deps.sh

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$PWD"
fi

build() {
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)"
}

# The library, tagd and the unit tests rebuilt with -fsanitize=address,undefined (UBSan
# without recovery), Debug so assert()s are on too. One socket variant (the epoll one the
# unit tests link): tagd-uring is not built there. Boost, RocksDB and OpenSSL are Debian's
# uninstrumented builds; libstdc++ adds no container-overflow annotations, so no
# ASAN_OPTIONS are needed to silence false positives (see docs/security.md).
sanitize() {
  local start=$SECONDS
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTAGD_SANITIZE=address,undefined \
    -DTAGD_URING_SIBLING=OFF "${launcher[@]}" >/dev/null
  cmake --build build-asan -j "$(nproc)"
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -L unit --output-on-failure -j "$(nproc)"
  local built=$SECONDS
  echo "sanitize: ASan+UBSan build and unit tests: $((built - start)) s"
  # A fresh scratch corpus and a fixed seed: the same run as on any other machine, not a
  # lottery over what earlier local runs left behind. Long, exploring runs: scripts/fuzz.sh.
  local scratch
  scratch=$(mktemp -d)
  TAGD_FUZZ_WORK="$scratch" TAGD_FUZZ_SEED="${TAGD_FUZZ_SEED:-1}" ./scripts/fuzz.sh "${TAGD_FUZZ_SECONDS:-15}"
  rm -rf "$scratch"
  echo "sanitize: fuzz run: $((SECONDS - built)) s"
}

case "$tier" in
  unit)
    build
    ctest --test-dir build -L unit --output-on-failure -j "$(nproc)"
    ;;
  integration)
    build
    ctest --test-dir build -L integration --output-on-failure
    ;;
  sanitize) sanitize ;;
  all)
    build
    ctest --test-dir build -L unit --output-on-failure -j "$(nproc)"
    # Integration tests start their own moto/nginx/tagd on free ports; run them one at a
    # time so they do not compete for the 2 cores and skew timeouts.
    ctest --test-dir build -L integration --output-on-failure
    sanitize
    # Every build type must compile (Debug is the sanitize tier's): the Release binaries
    # (the tagd target builds tagd-uring too, as docker/Dockerfile does), warnings fatal as
    # everywhere.
    cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTAGD_BUILD_TESTS=OFF "${launcher[@]}" >/dev/null
    cmake --build build-release -j "$(nproc)" --target tagd
    ;;
esac
