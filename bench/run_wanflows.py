#!/usr/bin/env python3
"""Runs the warm-job and workflow scenarios over the WAN (issues 10 and 12,
bench/tagbench/scenarios_wanflows.py) on their own, with the suite's profiles, servers, WAN
and tables, until they are registered in bench/bench.py (then `bench/run.sh --quick warmfed
prefixwarm wweights whydrate` does the same).

  sudo python3 bench/run_wanflows.py [--quick|--full] [--reps N] [--wait-wan S] [scenario ...]

Scenarios: warmfed prefixwarm wweights whydrate (default: all). Needs root (the WAN
namespace). Environment as bench/run.sh: TAGD_BIN (default build/tagd, run from a snapshot
copy), TAGD_THREADS, TAGD_EXTRA_ARGS, BENCH_STATE_DIR (default /tmp/tagd-bench-wanflows,
apart from the suite's), BENCH_DATA_DIR, BENCH_TOOLS, BENCH_WAN_DELAY_MS, BENCH_CACHE_BASE,
BENCH_CACHE_MEMORY; and this module's BENCH_WANFLOWS_EPOCH_COUNT (objects of the warmfed and
prefixwarm epochs, default 10,000), BENCH_WANFLOWS_WEIGHTS_MIB (default 1024),
BENCH_WANFLOWS_HYDRATE_COUNT, BENCH_WANFLOWS_WARM_CONCURRENCY (warmfed's warm job, default 32).

Every server it starts is stopped by pid, every cache folder deleted and the WAN taken
down on exit (also on SIGINT/SIGTERM). The JSON result goes to
bench/results/<time>-wanflows-<profile>.json."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_misses  # noqa: E402
from tagbench import scenarios_wanflows  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_misses.main(scenarios_wanflows, "wanflows",
                             "tagd bench (warm jobs and workflows over the WAN, issues 10 and 12)", __doc__))
