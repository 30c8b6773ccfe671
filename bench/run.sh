#!/usr/bin/env bash
# tagd benchmark suite: one command, on any machine of this kind.
#
#   bench/run.sh [--quick|--full] [--reps N] [--no-tagd] [--update-docs] [scenario ...]
#
# scenarios: ceiling(0) hit(1) peer(2) epoch(3) herd(4) large(5) memory(6) miss(7)
# warm1g(8) warmepoch(9) sockets(10); default all.
# warmfed prefixwarm wweights whydrate (warm jobs, weights, hydration over the WAN;
# bench/run_wanflows.py runs them on their own).
# --quick (default) takes a few minutes; --full under 30 minutes.
#
# It installs its own apt dependencies (idempotently), builds tagd if
# build/tagd is missing (or --rebuild), starts every server itself on loopback
# or in the emulated-WAN namespace, runs bounded loads, stops everything by pid
# on exit, prints a table per scenario and writes bench/results/<time>.json
# (and latest.json).  --update-docs redraws docs/img/*.png and the results
# section of docs/benchmarks.md from that file.
#
# Environment: TAGD_BIN (default build/tagd), TAGD_THREADS,
# TAGD_EXTRA_ARGS, BENCH_STATE_DIR (/tmp/tagd-bench), BENCH_DATA_DIR
# (/var/tmp/tagd-bench-data), BENCH_TOOLS (../shared/tools), BENCH_WAN_DELAY_MS
# (25), BENCH_EPOCH_ORIGIN (moto|nginx), WAN_MODE / WAN_CC (passed to wan.sh),
# BENCH_CACHE_SIZE (tagd's preallocated block file; default: sized per
# scenario to its data plus a margin), BENCH_CACHE_MIN_FREE (256MiB: tagd's
# --cache-min-free-disk, and what the suite leaves free), BENCH_CACHE_MEMORY
# (tagd's DRAM tier; default tagd's own, 256MiB; warmepoch sets its own),
# BENCH_CACHE_BASE (/var/tmp: cache folders tagd-bench-cache-<run>-<n>,
# deleted when each tagd stops and again on exit).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
STATE="${BENCH_STATE_DIR:-/tmp/tagd-bench}"
TOOLS="${BENCH_TOOLS:-$(dirname "$ROOT")/shared/tools}"
# every tagd start gets its own cache folder $BENCH_CACHE_BASE/tagd-bench-cache-<run id>-<n>
# (listed in $STATE/cachedirs; the exit trap deletes them)
export BENCH_STATE_DIR="$STATE" BENCH_TOOLS="$TOOLS" BENCH_RUN_ID="${BENCH_RUN_ID:-$$}"
mkdir -p "$STATE"

args=()
update_docs=0
rebuild=0
for a in "$@"; do
  case $a in
    --update-docs) update_docs=1 ;;
    --rebuild) rebuild=1 ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
export BENCH_COMMAND="bench/run.sh $*"

log() { echo "[run.sh] $*" >&2; }

# ---------------------------------------------------------------- dependencies
need_pkgs=(wrk nginx-light gnuplot-nox python3-waitress iproute2 curl gcc libc6-dev)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# any installed nginx with the slice module will do instead of nginx-light
if command -v nginx >/dev/null && nginx -V 2>&1 | grep -q http_slice_module; then
  kept=()
  for p in ${missing[@]+"${missing[@]}"}; do [[ $p == nginx-light ]] || kept+=("$p"); done
  missing=(${kept[@]+"${kept[@]}"})
fi
if ((${#missing[@]})); then
  log "installing ${missing[*]} from apt"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import boto3, moto' 2>/dev/null; then
  log "python3 lacks boto3/moto; trying Debian's python3-boto3 python3-moto"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get install -y -qq --no-install-recommends python3-boto3 python3-moto >/dev/null ||
    { log "need boto3 and moto for python3"; exit 1; }
fi

# ---------------------------------------------------------------- tagd
TAGD_BIN="${TAGD_BIN:-$ROOT/build/tagd}"
export TAGD_BIN
if [[ " ${args[*]-} " != *" --no-tagd "* ]]; then
  if [[ ! -x "$TAGD_BIN" || $rebuild == 1 ]] && [[ "$TAGD_BIN" == "$ROOT/build/tagd" ]]; then
    log "building tagd (Release)"
    if [[ -x "$ROOT/scripts/install-deps.sh" || -f "$ROOT/scripts/install-deps.sh" ]]; then
      bash "$ROOT/scripts/install-deps.sh" >&2 || log "install-deps.sh failed; trying the build anyway"
    fi
    if ! { cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >&2 &&
           cmake --build "$ROOT/build" -j2 --target tagd >&2; }; then
      log "tagd did not build: the suite runs the baselines only and says so"
    fi
  fi
fi

# ---------------------------------------------------------------- cleanup
cleanup() {
  local rc=$?
  if [[ -f "$STATE/pids" ]]; then
    while read -r pid; do
      [[ -n $pid && -d /proc/$pid ]] || continue
      kill -TERM "$pid" 2>/dev/null || true
    done <"$STATE/pids"
    sleep 0.5
    while read -r pid; do
      [[ -n $pid && -d /proc/$pid ]] || continue
      kill -KILL "$pid" 2>/dev/null || true
    done <"$STATE/pids"
    : >"$STATE/pids"
  fi
  if [[ -f "$STATE/cachedirs" ]]; then
    while read -r d; do
      [[ $(basename -- "$d") == tagd-bench-cache-"$BENCH_RUN_ID"-* ]] && rm -rf -- "$d"
    done <"$STATE/cachedirs"
    : >"$STATE/cachedirs"
  fi
  if [[ -f "$STATE/wan.owned" ]]; then
    BENCH_STATE="$STATE/wan" bash "$TOOLS/wan.sh" down || true
    rm -f "$STATE/wan.owned"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
: >"$STATE/pids"
: >"$STATE/cachedirs"

rc=0
python3 "$BENCH/bench.py" ${args[@]+"${args[@]}"} || rc=$?
if [[ $update_docs == 1 && -f "$BENCH/results/latest.json" ]]; then
  python3 "$BENCH/report.py" "$BENCH/results/latest.json" --docs "$ROOT/docs/benchmarks.md" --img "$ROOT/docs/img" || rc=1
fi
exit $rc
