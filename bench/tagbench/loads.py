"""The two load generators: wrk (time-bounded throughput, replaying presigned
URLs through bench/replay.lua) and bench/s3get (count-bounded: epochs, herds,
single large reads, TTFB probes, slow readers)."""
import json
import os
import subprocess
import tempfile
import threading

from .util import log

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(BENCH_DIR, "replay.lua")


def wrk(base_url, targets_file, conns, duration, threads=2, seed=1, timeout_s=30, path=None):
    """Returns a dict: ops_s, mib_s, p50/p99/p999 ms (time to last byte),
    errors, requests, bytes, and wrk's own CPU (client_cpu_s, from wait4).

    targets_file: replay that list of presigned targets (replay.lua defines
    request(): one Lua call per request).  targets_file=None: wrk's static
    fast path, every request for the one path (base_url + path); used only to
    measure what replaying costs the client."""
    threads = min(threads, conns)
    env = dict(os.environ, WRK_SEED=str(seed))
    env.pop("WRK_URLS", None)
    if targets_file:
        env["WRK_URLS"] = targets_file
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, int(round(duration)))}s", f"--timeout={timeout_s}s",
            "-s", LUA, base_url + (path or "")]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, text=True)
        killer = threading.Timer(duration + timeout_s + 60, p.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed (rc {p.returncode}): {stdout[-500:]} {stderr[-500:]}")
    d = json.loads(line[len("WRKJSON "):])
    secs = d["duration_us"] / 1e6
    lat = d["latency_us"]
    errs = sum(d["errors"].values())
    out = {
        "tool": "wrk",
        "conns": conns,
        "threads": threads,
        "replay": bool(targets_file),
        "duration_s": secs,
        "requests": d["requests"],
        "bytes": d["bytes"],
        "ops_s": d["requests"] / secs if secs else 0,
        "mib_s": d["bytes"] / secs / (1 << 20) if secs else 0,
        "p50_ms": lat["p50"] / 1000 if d["requests"] else None,
        "p90_ms": lat["p90"] / 1000 if d["requests"] else None,
        "p99_ms": lat["p99"] / 1000 if d["requests"] else None,
        "p999_ms": lat["p999"] / 1000 if d["requests"] else None,
        "max_ms": lat["max"] / 1000 if d["requests"] else None,
        "errors": d["errors"],
        "error_count": errs,
        "client_cpu_s": ru.ru_utime + ru.ru_stime,
        "client_cpu_us_per_req": 1e6 * (ru.ru_utime + ru.ru_stime) / d["requests"] if d["requests"] else None,
    }
    if errs:
        log(f"  wrk {base_url}: {errs} errors {d['errors']}")
    return out


def s3get_binary(state):
    src = os.path.join(BENCH_DIR, "s3get.c")
    out = os.path.join(state, "s3get")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", out, src], check=True)
    return out


def s3get(state, urls_file, conns=8, count=None, duration=None, seed=0, rate=0, rcvbuf=0,
          timeout_s=300, lat_file=None, background=False):
    argv = [s3get_binary(state), "-c", str(conns), "-t", str(timeout_s)]
    if count is not None:
        argv += ["-n", str(count)]
    if duration:
        argv += ["-d", str(duration)]
    if seed:
        argv += ["-s", str(seed)]
    if rate:
        argv += ["-r", str(rate)]
    if rcvbuf:
        argv += ["-b", str(rcvbuf)]
    if lat_file:
        argv += ["-l", lat_file]
    argv.append(urls_file)
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r = subprocess.run(argv, capture_output=True, text=True)
    return _parse_s3get(r.returncode, r.stdout, r.stderr)


def s3get_wait(p):
    out, err = p.communicate()
    return _parse_s3get(p.returncode, out, err)


def _parse_s3get(rc, out, err):
    if rc != 0 or not out.strip():
        raise RuntimeError(f"s3get failed (rc {rc}): {err.strip()[-500:]}")
    d = json.loads(out)
    if d["errors"] or d["non2xx"]:
        log(f"  s3get: {d['errors']} transport errors, {d['non2xx']} non-2xx ({d['status']})")
    return d
