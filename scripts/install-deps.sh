#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of tagd from Debian's apt.
# Idempotent: packages already present are skipped without touching apt.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-all-dev liburing-dev libssl-dev librocksdb-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libgtest-dev libgmock-dev libsystemd-dev
  nginx-light openssl curl
  python3-waitress python3-pytest python3-munch python3-isodate python3-tz
  # scripts/test.sh sanitize / scripts/fuzz.sh: libFuzzer and the sanitizer runtimes for
  # clang 14 (gcc's ASan/UBSan runtimes come with build-essential); ccache for rebuilds.
  clang-14 libclang-rt-14-dev ccache
)
if [[ "${TAGD_BENCH_DEPS:-0}" == "1" ]]; then
  PACKAGES+=(wrk gnuplot-nox iproute2)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
