#!/usr/bin/env python3
"""tagd benchmark suite driver (called by bench/run.sh, which installs the
dependencies, builds tagd and the client, and cleans up on exit).

  bench.py [--quick|--full] [--reps N] [--no-tagd] [scenario ...]

Scenarios (names or numbers): ceiling(0) hit(1) peer(2) epoch(3) herd(4)
large(5) memory(6) miss(7) warm1g(8) warmepoch(9) sockets(10); default: all
(sockets runs TAGD_BIN twice: io_uring=auto against io_uring=disk, epoll sockets)."""
import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tagbench import data as D  # noqa: E402
from tagbench import scenarios as SC  # noqa: E402
from tagbench import servers as S  # noqa: E402
from tagbench import table  # noqa: E402
from tagbench.util import log  # noqa: E402
from tagbench import scenarios_misses as SCM  # noqa: E402
from tagbench import scenarios_wanflows as SCW  # noqa: E402

# issue 10's miss-path scenarios (tagbench/scenarios_misses.py)
SC.SCENARIOS.update(SCM.SCENARIOS)
SC.ALIASES.update(SCM.ALIASES)
SC.ORDER.extend(n for n in SCM.ORDER if n not in SC.ORDER)

# warm jobs and the weights/hydration workflows over the WAN (issues 10 and 12; tagbench/scenarios_wanflows.py)
SC.SCENARIOS.update(SCW.SCENARIOS)
SC.ALIASES.update(SCW.ALIASES)
SC.ORDER.extend(n for n in SCW.ORDER if n not in SC.ORDER)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

PROFILES = {
    "quick": {
        "reps": 3, "reps_slow": 1, "duration": 2,  # 3: an odd count, so the median is one pair's ratio
        "ceiling_conns": [64],
        "hit_sizes": [KiB, 100 * KiB, MiB, 4 * MiB],
        "hit_counts": {KiB: 1000, 100 * KiB: 500, MiB: 128, 4 * MiB: 32},
        "hit_conns": [16, 64],
        "ttfb_samples": 50,
        "miss_sizes": [KiB, 100 * KiB], "miss_count": 300, "miss_conns": 16,
        "epoch_workers": 8,
        "epoch_variants": [{"size": 100 * KiB, "count": 1000, "origin": "moto", "reps": 1},
                           {"size": 4 * MiB, "count": 64, "origin": "nginx", "reps": 1}],
        "herd_size": 32 * MiB, "herd_clients": 32, "herd_reps": 1, "herd_cap_s": 60,
        "large_size": 256 * MiB,
        "mem_sizes": [64 * MiB, 256 * MiB], "mem_fast": 600, "mem_slow": 400,
        "mem_slow_rate": 64 * KiB, "mem_duration": 6,
        "wan_delay_ms": 25, "wan_rate_mbit": 0,
        "warm_large_size": GiB, "warm_large_reps": 3,
        "wepoch_size": 100 * KiB, "wepoch_count": 10000, "wepoch_reps": 3,
        "sockets_sizes": [KiB, 100 * KiB],
    },
    "full": {
        "reps": 3, "reps_slow": 2, "duration": 4,
        "ceiling_conns": [16, 64],
        "hit_sizes": [KiB, 100 * KiB, MiB, 4 * MiB],
        "hit_counts": {KiB: 2000, 100 * KiB: 1000, MiB: 256, 4 * MiB: 64},
        "hit_conns": [16, 64],
        "ttfb_samples": 200,
        "miss_sizes": [KiB, 100 * KiB], "miss_count": 1000, "miss_conns": 16,
        "epoch_workers": 8,
        "epoch_variants": [{"size": 100 * KiB, "count": 10000, "origin": "moto", "reps": 1},
                           {"size": 4 * MiB, "count": 1000, "origin": "nginx", "reps": 1}],
        "herd_size": 256 * MiB, "herd_clients": 32, "herd_reps": 1, "herd_cap_s": 150,
        "large_size": GiB,
        "mem_sizes": [64 * MiB, GiB], "mem_fast": 600, "mem_slow": 400,
        "mem_slow_rate": 64 * KiB, "mem_duration": 15,
        "wan_delay_ms": 25, "wan_rate_mbit": 0,
        "warm_large_size": GiB, "warm_large_reps": 5,
        "wepoch_size": 100 * KiB, "wepoch_count": 10000, "wepoch_reps": 3,
        "sockets_sizes": [KiB, 100 * KiB],
    },
}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


def machine_info():
    info = {"kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / (1 << 20), 1)
        with open("/proc/loadavg") as f:
            info["loadavg_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def versions():
    v = {}

    def out(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    ng = out(["nginx", "-v"]) or ""
    v["nginx"] = ng.split("nginx/")[-1] if "nginx/" in ng else ng
    wk = out(["wrk", "-v"]) or ""
    v["wrk"] = wk.split()[1] if len(wk.split()) > 1 else wk
    try:
        import boto3
        import moto
        v["boto3"] = boto3.__version__
        v["moto"] = moto.__version__
    except ImportError:
        pass
    return v


def tagd_info(binary, snapshot=None):
    if not binary or not os.path.exists(binary):
        return {}
    st = os.stat(snapshot or binary)  # copy2 keeps the mtime
    info = {"binary": os.path.relpath(binary, os.path.dirname(HERE)), "mtime": dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc).isoformat()}
    import hashlib
    h = hashlib.sha256()
    with open(snapshot or binary, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    info["sha256"] = h.hexdigest()[:16]  # the snapshot that ran: the source tree may have moved on
    src = os.path.dirname(HERE)
    r = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    info["git"] = r.stdout.strip() or "no commit yet"
    r = subprocess.run(["git", "-C", src, "status", "--porcelain", "--", "src", "include"],
                       capture_output=True, text=True)
    info["dirty"] = bool(r.stdout.strip())
    cache = os.path.join(os.path.dirname(binary), "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    info["build_type"] = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="profile", const="quick")
    g.add_argument("--full", action="store_const", dest="profile", const="full")
    ap.add_argument("--reps", type=int, help="repetitions of every alternating comparison")
    ap.add_argument("--duration", type=float, help="seconds per time-bounded load run")
    ap.add_argument("--no-tagd", action="store_true", help="baselines only")
    ap.add_argument("--tagd-bin", default=os.environ.get("TAGD_BIN", os.path.join(os.path.dirname(HERE), "build", "tagd")))
    ap.add_argument("--tagd-threads", type=int, default=int(os.environ.get("TAGD_THREADS", os.cpu_count() or 2)))
    ap.add_argument("--state", default=os.environ.get("BENCH_STATE_DIR", "/tmp/tagd-bench"))
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA_DIR", "/var/tmp/tagd-bench-data"))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--tools", default=os.environ.get("BENCH_TOOLS",
                                                      os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "tools")))
    ap.add_argument("scenarios", nargs="*")
    args = ap.parse_args()
    args.profile = args.profile or "quick"
    prof = dict(PROFILES[args.profile])
    if args.reps:
        prof["reps"] = args.reps
        prof["reps_slow"] = args.reps
        prof["herd_reps"] = args.reps
        prof["warm_large_reps"] = args.reps
        prof["wepoch_reps"] = args.reps
        prof["epoch_variants"] = [dict(v, reps=args.reps) for v in prof["epoch_variants"]]
    if args.duration:
        prof["duration"] = args.duration
    if os.environ.get("BENCH_WAN_DELAY_MS"):
        prof["wan_delay_ms"] = float(os.environ["BENCH_WAN_DELAY_MS"])
    if os.environ.get("BENCH_EPOCH_ORIGIN"):  # moto | nginx, for every epoch variant
        prof["epoch_variants"] = [dict(v, origin=os.environ["BENCH_EPOCH_ORIGIN"]) for v in prof["epoch_variants"]]

    selected = []
    for s in args.scenarios or SC.ORDER:
        name = SC.ALIASES.get(s, s)
        if name not in SC.SCENARIOS:
            ap.error(f"unknown scenario {s}; known: {', '.join(SC.ORDER)} (or 0-10)")
        if name not in selected:
            selected.append(name)
    selected = [s for s in SC.ORDER if s in selected]
    args.selected = selected

    os.makedirs(args.state, exist_ok=True)
    os.makedirs(args.data, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    www = os.path.join(args.data, "www")
    os.makedirs(www, exist_ok=True)

    creds = ("AKIATAGDBENCH0000001", "tagd-bench-secret-key-not-a-real-secret-0001", "us-east-1")
    tagd_cfg, why = None, None
    if args.no_tagd:
        why = "--no-tagd"
    elif not os.path.exists(args.tagd_bin):
        why = f"{args.tagd_bin} not built"
    else:
        extra = os.environ.get("TAGD_EXTRA_ARGS", "").split()
        # run a snapshot: other engineers may rebuild build/tagd during the run
        snap = S.snapshot_tagd(args.tagd_bin, args.state)
        tagd_cfg = S.TagdConfig(snap, creds[0], creds[1], creds[2], args.tagd_threads, extra,
                                cache_size=os.environ.get("BENCH_CACHE_SIZE") or None,
                                cache_memory=os.environ.get("BENCH_CACHE_MEMORY") or None,
                                cache_base=os.environ.get("BENCH_CACHE_BASE", "/var/tmp"),
                                run_id=os.environ.get("BENCH_RUN_ID") or str(os.getpid()))

    ctx = SC.Ctx(args, prof, args.state, www, args.tools, creds, tagd_cfg, why)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    result = {
        "suite": "tagd bench", "version": 1, "profile": args.profile,
        "command": os.environ.get("BENCH_COMMAND", "bench/run.sh " + " ".join(sys.argv[1:])),
        "started": started.isoformat(), "machine": machine_info(), "versions": versions(),
        "tagd": tagd_info(args.tagd_bin, tagd_cfg.binary) if tagd_cfg else {"unavailable": why},
        "params": dict({k: v for k, v in prof.items() if k != "hit_counts"},
                       tagd_cache={"max_disk_usage": tagd_cfg.cache_size or "sized per scenario (see each scenario's "
                                                                         "tagd_starts)",
                                   "memory_size": tagd_cfg.cache_memory or "256MiB (tagd default) unless the "
                                                                           "scenario sets it",
                                   "folders": os.path.join(tagd_cfg.cache_base,
                                                           f"tagd-bench-cache-{tagd_cfg.run_id}-N"),
                                   "min_free_disk": S.CACHE_MIN_FREE,
                                   "extra_args": tagd_cfg.extra_args}
                       if tagd_cfg else None),
        "scenarios": {}, "errors": {},
    }
    log(f"profile {args.profile}; scenarios: {' '.join(selected)}; tagd: {args.tagd_bin if tagd_cfg else why}")
    rc = 0
    try:
        if tagd_cfg:
            # fail early and clearly when tagd cannot serve at all
            try:
                # ... and learn whether it caches: a fresh tagd in front of nginx, one object GET twice
                probe = D.Dataset(ctx.www, "hit-1kib", KiB, prof["hit_counts"][KiB]).ensure()
                seen = ctx.probe_cache(ctx.nginx(), probe.keys[0])
                log(f"tagd X-Cache on a repeated GET: {seen} -> {ctx.tagd_label()}")
            except RuntimeError as e:
                log(f"tagd does not start: {e}")
                result["tagd"]["start_error"] = str(e)[-2000:]
                ctx.tagd_cfg = None
                ctx.tagd_why = "does not start (see the result file)"
        for name in selected:
            t0 = time.monotonic()
            log(f"--- scenario {name}")
            load0 = loadavg()
            ctx.mode, ctx.started_tagds = None, []
            try:
                res = SC.SCENARIOS[name](ctx)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"scenario {name} failed: {e}")
                result["errors"][name] = str(e)[-3000:]
                rc = 1
                ctx.stop_tagd()
                continue
            ctx.stop_tagd()  # (hit and peer share their runs: the hit matrix runs both at once)
            res["seconds"] = round(time.monotonic() - t0, 1)
            res["loadavg"] = {"start": load0, "end": loadavg()}
            res.setdefault("tagd_mode_gauges", ctx.mode)
            if "mode_text" not in res:
                res["mode_text"] = S.mode_text(ctx.mode) if ctx.mode else (
                    "tagd not involved" if name == "ceiling" else "unknown (no tagd /metrics read)")
            res.setdefault("tagd_starts", ctx.started_tagds)
            result["scenarios"][name] = res
            print("\n" + table.text(res) + f"\n   ({res['seconds']} s)\n", flush=True)
    except KeyboardInterrupt as e:
        log(f"interrupted: {e}")
        result["errors"]["interrupted"] = str(e)
        rc = 130
    finally:
        ctx.stop()
        result["tagd_mode"] = ctx.tagd_label()
        result["finished"] = dt.datetime.now(dt.timezone.utc).isoformat()
        result["seconds"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)
        try:
            with open("/proc/loadavg") as f:
                result["machine"]["loadavg_end"] = f.read().split()[:3]
        except OSError:
            pass
        path = os.path.join(args.results, f"{stamp}-{args.profile}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1, default=str)
        note = ""
        if selected == SC.ORDER and not args.no_tagd and "interrupted" not in result["errors"]:
            # only a whole-suite run becomes latest.json (the copy kept in git)
            shutil.copyfile(path, os.path.join(args.results, "latest.json"))
            note = " (copied to latest.json)"
        log(f"results: {path}{note}; {result['seconds']} s in all")
        print("\nHeadlines (" + result["tagd_mode"] + "):")
        for name, res in result["scenarios"].items():
            print(f"  {name:8s} {res['headline']}")
        for name, err in result["errors"].items():
            print(f"  {name:8s} FAILED: {err.splitlines()[-1] if err else ''}")
        goals = [(name, k, g) for name, res in result["scenarios"].items() for k, g in (res.get("goals") or {}).items()]
        if goals:
            print("\nIssue 9's goals (tagd / baseline in the same run):")
            for name, k, g in goals:
                r = g.get("ratio")
                print(f"  {name:9s} {k:18s} {g['metric']:28s} {'-' if r is None else f'{r:.2f}':>6s}  goal {g['goal']:8s} "
                      f"met: {g['met']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
