#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang + ASan + UBSan) in build-fuzz/ and runs
# each over its seed corpus for DURATION seconds.
#   scripts/fuzz.sh [DURATION] [TARGET...]     e.g. scripts/fuzz.sh 600
#                                                   scripts/fuzz.sh 60 aws_chunked sigv2
# DURATION defaults to 60 (seconds per target); TARGET names are the file names in
# tests/fuzz/ without _fuzz.cpp (default: all). The seed corpora in tests/fuzz/corpus/ are
# only read: inputs the fuzzer finds interesting go to a scratch directory
# ($TAGD_FUZZ_WORK, default ${TMPDIR:-/tmp}/tagd-fuzz/<target>/corpus) and are reused by
# the next run; crash inputs go to .../<target>/artifacts/. Exits 1 if any target crashed.
# Reproduce a crash: build-fuzz/fuzz/<target>_fuzz <artifact file>
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-60}"
shift || true
if ! [[ "$duration" =~ ^[0-9]+$ ]] || ((duration < 1)); then
  echo "usage: $0 [DURATION-seconds] [TARGET...]" >&2
  exit 2
fi
work="${TAGD_FUZZ_WORK:-${TMPDIR:-/tmp}/tagd-fuzz}"

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$PWD"
fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DTAGD_FUZZ=ON -DTAGD_BUILD_TESTS=OFF "${launcher[@]}" >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target tagd_fuzzers

targets=("$@")
if ((${#targets[@]} == 0)); then
  for src in tests/fuzz/*_fuzz.cpp; do
    name="${src##*/}"
    targets+=("${name%_fuzz.cpp}")
  done
fi

# halt_on_error/abort: the first report ends the run with the input saved. Leak checking
# stays on (the targets free what they allocate; process-lifetime singletons are reachable).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# TAGD_FUZZ_SEED fixes libFuzzer's random seed: the test command's short run then explores
# the same inputs on every machine (only how far it gets depends on the machine's speed).
seed_flag=()
if [[ -n "${TAGD_FUZZ_SEED:-}" ]]; then seed_flag=(-seed="$TAGD_FUZZ_SEED"); fi

failed=()
summary=()
for name in "${targets[@]}"; do
  bin="build-fuzz/fuzz/${name}_fuzz"
  seeds="tests/fuzz/corpus/${name}"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz: no target $bin" >&2
    exit 2
  fi
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
  log="$work/$name/last-run.log"
  before=$(find "$work/$name/corpus" -type f | wc -l)
  echo "fuzz: $name for ${duration}s (log $log)"
  rc=0
  # The scratch corpus comes first: libFuzzer writes new inputs into the first directory.
  "$bin" -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${seed_flag[@]+"${seed_flag[@]}"} \
    -artifact_prefix="$work/$name/artifacts/" "$work/$name/corpus" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  after=$(find "$work/$name/corpus" -type f | wc -l)
  if ((rc != 0)); then
    failed+=("$name")
    summary+=("$(printf '%-18s CRASH (exit %d) after %s executions' "$name" "$rc" "${execs:-?}")")
    echo "fuzz: $name FAILED; report:" >&2
    { grep -E -A40 '^==[0-9]+==ERROR|runtime error|fuzz invariant failed|uncaught exception' "$log" ||
      tail -40 "$log"; } | head -60 >&2 || true
    ls -1 "$work/$name/artifacts/" | sed "s|^|  artifact: $work/$name/artifacts/|" >&2
  else
    summary+=("$(printf '%-18s %12s executions  cov %6s  corpus +%d (scratch now %d)' "$name" "${execs:-?}" \
      "${cov:-?}" $((after - before)) "$after")")
  fi
done

echo
echo "fuzz summary (${duration}s per target):"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
