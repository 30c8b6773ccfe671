#!/usr/bin/env python3
"""Runs the miss-path scenarios of issue 10 (bench/tagbench/scenarios_misses.py) on their
own, with the suite's profiles, servers, WAN and tables, until they are registered in
bench/bench.py (then `bench/run.sh --quick cold1g seqrange ...` does the same).

  sudo python3 bench/run_misses.py [--quick|--full] [--reps N] [--wait-wan S] [scenario ...]

Scenarios: cold1g seqrange download herdbytes coldepoch (default: all). Needs root (the
WAN namespace). Environment as bench/run.sh: TAGD_BIN (default build/tagd, run from a
snapshot copy), TAGD_THREADS, TAGD_EXTRA_ARGS, BENCH_STATE_DIR (default
/tmp/tagd-bench-misses, apart from the suite's), BENCH_DATA_DIR, BENCH_TOOLS,
BENCH_WAN_DELAY_MS, BENCH_CACHE_BASE, BENCH_CACHE_MEMORY; and this module's
BENCH_MISSES_EPOCH_COUNT, BENCH_MISSES_EPOCH_ORIGIN (nginx|moto).

Every server it starts is stopped by pid, every cache folder deleted and the WAN taken
down on exit (also on SIGINT/SIGTERM). The JSON result goes to
bench/results/<time>-misses-<profile>.json."""
import argparse
import datetime as dt
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tagbench import scenarios as SC  # noqa: E402
from tagbench import scenarios_misses  # noqa: E402
from tagbench import servers as S  # noqa: E402
from tagbench import table  # noqa: E402
from tagbench.util import log  # noqa: E402


def _driver():
    """bench.py as a module (its PROFILES, machine and tagd descriptions), without running it."""
    spec = importlib.util.spec_from_file_location("bench_driver", os.path.join(HERE, "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _wan_busy(tools):
    r = subprocess.run(["bash", os.path.join(tools, "wan.sh"), "status"], capture_output=True, text=True)
    return "namespace" in r.stdout and ": up" in r.stdout


def _cleanup_leftovers(state):
    """Stops servers and deletes cache folders a killed earlier run of this runner left
    (listed in its own state folder), by pid and by the suite's folder prefix only."""
    pids = os.path.join(state, "pids")
    if os.path.exists(pids):
        with open(pids) as f:
            for p in f.read().split():
                try:
                    os.kill(int(p), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        open(pids, "w").close()
    dirs = os.path.join(state, "cachedirs")
    if os.path.exists(dirs):
        with open(dirs) as f:
            for d in f.read().split():
                if os.path.basename(d).startswith("tagd-bench-cache-"):
                    shutil.rmtree(d, ignore_errors=True)
        open(dirs, "w").close()


def _wan_up(ctx, attempts=3):
    """ctx.wan_up(), retried: on a loaded machine wan.sh can find its freshly started
    wanwire still named setsid (it checks the process name right after `setsid ... &`),
    report "wanwire exited" and leave the namespace half up. Each retry first takes
    down what that attempt (this runner's own wan state folder) left."""
    for i in range(attempts):
        try:
            return ctx.wan_up()
        except RuntimeError as e:
            ctx.wan = None
            if "wanwire exited" not in str(e) or i == attempts - 1:
                raise
            log(f"WAN start failed ({e}); taking down this attempt and retrying")
            subprocess.run(["bash", os.path.join(ctx.tools, "wan.sh"), "down"], capture_output=True,
                           env=dict(os.environ, BENCH_STATE=os.path.join(ctx.state, "wan")))
            time.sleep(1)


def main(M=scenarios_misses, tag="misses", suite="tagd bench (misses, issue 10)", doc=__doc__):
    """Runs the scenarios of module M (SCENARIOS, ALIASES, ORDER, _prof); run_wanflows.py
    runs its own module through this too. `tag` names the state folder and results file."""
    drv = _driver()
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="profile", const="quick")
    g.add_argument("--full", action="store_const", dest="profile", const="full")
    ap.add_argument("--reps", type=int, help="repetitions of every alternating comparison")
    ap.add_argument("--wait-wan", type=float, default=0,
                    help="seconds to wait for someone else's WAN namespace to go away (default: fail at once)")
    ap.add_argument("--tagd-bin", default=os.environ.get("TAGD_BIN", os.path.join(os.path.dirname(HERE), "build",
                                                                                  "tagd")))
    ap.add_argument("--tagd-threads", type=int, default=int(os.environ.get("TAGD_THREADS", os.cpu_count() or 2)))
    ap.add_argument("--state", default=os.environ.get("BENCH_STATE_DIR", f"/tmp/tagd-bench-{tag}"))
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA_DIR", "/var/tmp/tagd-bench-data"))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--tools", default=os.environ.get("BENCH_TOOLS", os.path.join(os.path.dirname(os.path.dirname(
        HERE)), "shared", "tools")))
    ap.add_argument("scenarios", nargs="*")
    args = ap.parse_args()
    args.profile = args.profile or "quick"
    selected = []
    for s in args.scenarios or M.ORDER:
        name = M.ALIASES.get(s, s)
        if name not in M.SCENARIOS:
            ap.error(f"unknown scenario {s}; known: {', '.join(M.ORDER)}")
        if name not in selected:
            selected.append(name)
    args.selected = selected
    prof = dict(drv.PROFILES[args.profile])
    if os.environ.get("BENCH_WAN_DELAY_MS"):
        prof["wan_delay_ms"] = float(os.environ["BENCH_WAN_DELAY_MS"])

    os.makedirs(args.state, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    www = os.path.join(args.data, "www")
    os.makedirs(www, exist_ok=True)
    os.environ["BENCH_STATE_DIR"] = args.state
    _cleanup_leftovers(args.state)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    deadline = time.monotonic() + args.wait_wan
    while _wan_busy(args.tools):
        if time.monotonic() >= deadline:
            log("the WAN namespace is up (someone else's run?): not touching it; try --wait-wan 600")
            return 2
        time.sleep(5)

    creds = ("AKIATAGDBENCH0000001", "tagd-bench-secret-key-not-a-real-secret-0001", "us-east-1")
    tagd_cfg, why = None, None
    if not os.path.exists(args.tagd_bin):
        why = f"{args.tagd_bin} not built"
    else:
        snap = S.snapshot_tagd(args.tagd_bin, args.state)  # others may rebuild build/tagd during the run
        tagd_cfg = S.TagdConfig(snap, creds[0], creds[1], creds[2], args.tagd_threads,
                                os.environ.get("TAGD_EXTRA_ARGS", "").split(),
                                cache_size=os.environ.get("BENCH_CACHE_SIZE") or None,
                                cache_memory=os.environ.get("BENCH_CACHE_MEMORY") or None,
                                cache_base=os.environ.get("BENCH_CACHE_BASE", "/var/tmp"),
                                run_id=f"{tag}{os.getpid()}")
    ctx = SC.Ctx(args, prof, args.state, www, args.tools, creds, tagd_cfg, why)
    ctx.tagd_xcache = "HIT"  # the label; each scenario checks X-Cache itself

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    started = dt.datetime.now(dt.timezone.utc)
    result = {"suite": suite, "profile": args.profile,
              "command": f"bench/run_{tag}.py " + " ".join(sys.argv[1:]), "started": started.isoformat(),
              "machine": drv.machine_info(), "versions": drv.versions(),
              "tagd": drv.tagd_info(args.tagd_bin, tagd_cfg.binary) if tagd_cfg else {"unavailable": why},
              "params": M._prof(ctx), "scenarios": {}, "errors": {}}
    log(f"profile {args.profile}; scenarios: {' '.join(selected)}; tagd: {args.tagd_bin if tagd_cfg else why}")
    rc = 0
    try:
        try:
            _wan_up(ctx)
        except RuntimeError as e:
            log(f"the WAN did not come up: {e}")
            result["errors"]["wan"] = str(e)
            selected = []
            rc = 1
        for name in selected:
            t0 = time.monotonic()
            log(f"--- scenario {name}")
            load0 = drv.loadavg()
            ctx.mode, ctx.started_tagds = None, []
            try:
                res = M.SCENARIOS[name](ctx)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"scenario {name} failed: {e}")
                result["errors"][name] = str(e)[-3000:]
                rc = 1
                ctx.stop_tagd()
                continue
            ctx.stop_tagd()
            res["seconds"] = round(time.monotonic() - t0, 1)
            res["loadavg"] = {"start": load0, "end": drv.loadavg()}
            res.setdefault("tagd_mode_gauges", ctx.mode)
            res.setdefault("mode_text", S.mode_text(ctx.mode) if ctx.mode else "unknown (no tagd /metrics read)")
            res.setdefault("tagd_starts", ctx.started_tagds)
            result["scenarios"][name] = res
            print("\n" + table.text(res) + f"\n   ({res['seconds']} s)\n", flush=True)
    except KeyboardInterrupt as e:
        log(f"interrupted: {e}")
        result["errors"]["interrupted"] = str(e)
        rc = 130
    finally:
        ctx.stop()
        result["finished"] = dt.datetime.now(dt.timezone.utc).isoformat()
        result["seconds"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)
        result["machine"]["loadavg_end"] = drv.loadavg()
        path = os.path.join(args.results, f"{started.strftime('%Y%m%dT%H%M%SZ')}-{tag}-{args.profile}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1, default=str)
        log(f"results: {path}; {result['seconds']} s in all; load average "
            f"{' '.join(result['machine'].get('loadavg_start') or [])} at start, "
            f"{' '.join(result['machine']['loadavg_end'] or [])} at end")
        print("\nHeadlines:")
        for name, res in result["scenarios"].items():
            print(f"  {name:10s} {res['headline']}")
        for name, err in result["errors"].items():
            print(f"  {name:10s} FAILED: {err.splitlines()[-1] if err else ''}")
        goals = [(n, k, g) for n, res in result["scenarios"].items() for k, g in (res.get("goals") or {}).items()]
        if goals:
            print("\nGoals (ratios against a baseline in the same run):")
            for n, k, g in goals:
                r = g.get("ratio")
                print(f"  {n:9s} {k:16s} {g['metric']:30s} {'-' if r is None else f'{r:.3f}':>7s}  goal {g['goal']:9s} "
                      f"met: {g['met']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
