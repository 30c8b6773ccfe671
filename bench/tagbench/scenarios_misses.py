"""The miss path of issue 10 (part 7), over the emulated 25 ms WAN (needs root, like scenario 3):

    cold1g     one 1 GiB cold object read whole by one client: through a fresh tagd vs
               straight from the origin (goal: tagd >= 3x faster)
    seqrange   one reader sending sequential 1 MiB ranged GETs over a 256 MiB cold object:
               through a fresh tagd vs straight from the origin (goal >= 3x faster), and
               prefetch waste = (prefetched - used) / prefetched from tagd's /metrics
               (goal <= 10 %)
    download   boto3 download_file of a 200 MiB object (s3transfer: HEAD, then 8 MiB
               ranged GETs with If-Match on 10 threads): first run through a fresh tagd
               vs straight from the origin (goal <= 1.0x the time), then a second run
               through the same tagd (goal: every answer a HIT, misses 0)
    herdbytes  32 readers of one cold 256 MiB object at once through a fresh tagd:
               upstream bytes / object (goal <= 1.02), from the origin's access log and
               tagd_cache_fill_bytes_total
    coldepoch  a cold epoch (10,000 x 100 KiB, 8 readers, shuffled): through a fresh tagd
               vs straight from the origin (goal <= 1.0x the time)

Run on their own with bench/run_misses.py (same profiles and environment as bench/run.sh),
or through bench/run.sh once registered in bench/bench.py (see SCENARIOS at the end).

The origin is nginx serving the suite's files inside the WAN namespace (ctx.origin_wan):
it serves ranges concurrently (moto under waitress spends 2-4 ms of Python CPU per
request and holds a large GET's body in Python, so it would measure moto, not the WAN),
it ignores authentication (tagd's re-signed upstream requests need no credentials here),
and its access log gives the bytes and requests tagd sent upstream per key.
BENCH_MISSES_EPOCH_ORIGIN=moto runs coldepoch against moto in the namespace instead (the
origin scenario 3 uses for 100 KiB objects); BENCH_MISSES_EPOCH_COUNT sets its object count
(default 10,000: ~100 s per epoch here). Every cold run reads a key no cache has seen
(a hard link with a new name) through a tagd started with an empty cache folder.

Where the time goes, per run: tagd's CPU (utime+stime from /proc, as a share of one
core), the time its threads were runnable but had no CPU (/proc/PID/task/*/schedstat: on
this shared 2-core machine the usual cause of a slow run), whether a thread sat in disk
wait (D state, sampled), the WAN delay line's CPU (wanwire is a user-space process on the same 2 cores),
the machine's busy share, and the origin's responses in flight (sampled every 20 ms from
the namespace's TCP table: connections on the origin's port with unsent or unacknowledged
bytes), which shows whether a cold object's parts really were fetched in parallel.

Every load is bounded in count (each URL once, or a fixed number of ranges) and in time
(s3get's -d/-t, socket timeouts, a killed subprocess); every server is on 127.0.0.1 or in
the WAN namespace."""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

from . import data as D
from . import loads
from . import servers as S
from .scenarios import GiB, KiB, MiB, _order, goal_met
from .util import busy_fraction, cpu_seconds, cpu_times, fmt, log, median, ratio

# Per-profile sizes and repetitions; --reps overrides every *_reps.
PROFILE = {
    # quick: ~7 minutes here, most of it the one pair of 10,000-object epochs (~100 s each)
    "quick": {"cold1g_size": GiB, "cold1g_reps": 3,
              "seqrange_size": 256 * MiB, "seqrange_chunk": MiB, "seqrange_reps": 3,
              "download_size": 200 * MiB, "download_reps": 3,
              "herd_size": 256 * MiB, "herd_clients": 32, "herd_reps": 1,
              "epoch_size": 100 * KiB, "epoch_count": 10000, "epoch_workers": 8, "epoch_reps": 1},
    "full": {"cold1g_size": GiB, "cold1g_reps": 3,
             "seqrange_size": 256 * MiB, "seqrange_chunk": MiB, "seqrange_reps": 3,
             "download_size": 200 * MiB, "download_reps": 3,
             "herd_size": 256 * MiB, "herd_clients": 32, "herd_reps": 2,
             "epoch_size": 100 * KiB, "epoch_count": 10000, "epoch_workers": 8, "epoch_reps": 3},
}
CAP_S = 300  # no single timed load may run longer than this
PREFETCH_WASTE_GOAL = 0.10


def _prof(ctx):
    p = dict(PROFILE.get(getattr(ctx.args, "profile", "quick"), PROFILE["quick"]))
    reps = getattr(ctx.args, "reps", None)
    if reps:
        for k in p:
            if k.endswith("_reps"):
                p[k] = reps
    if os.environ.get("BENCH_MISSES_EPOCH_COUNT"):
        p["epoch_count"] = int(os.environ["BENCH_MISSES_EPOCH_COUNT"])
    return p


# ------------------------------------------------------------------ measuring helpers

def _wire_pid(ctx):
    """pid of the WAN delay line (wan.sh keeps it in <state>/wan/wanwire.pid), or None."""
    try:
        with open(os.path.join(ctx.state, "wan", "wanwire.pid")) as f:
            pid = int(f.read().strip())
        return pid if os.path.isdir(f"/proc/{pid}") else None
    except (OSError, ValueError):
        return None


class InflightSampler:
    """Samples, every `period` s, how many of the origin's connections on its port have
    bytes queued or unacknowledged (tx_queue > 0 in the origin namespace's TCP table,
    read through /proc/<origin pid>/net/tcp): responses the origin is sending right now.
    Over a 50 ms RTT a response in progress always has unacknowledged bytes, so this
    counts upstream transfers in flight without touching tagd."""

    def __init__(self, origin, period=0.02):
        self.path = f"/proc/{origin.pid}/net/tcp"
        self.port_hex = f"{origin.port:04X}"
        self.period = period
        self.samples = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _count(self):
        n = 0
        try:
            with open(self.path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state, queues = parts[1], parts[3], parts[4]
                    if state == "01" and local.endswith(":" + self.port_hex) and int(queues.split(":")[0], 16) > 0:
                        n += 1
        except (OSError, StopIteration, IndexError, ValueError):
            return None
        return n

    def _run(self):
        while not self._stop.is_set():
            v = self._count()
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.period)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join(5)

    def summary(self):
        s = self.samples
        if not s:
            return {"max": None, "mean": None, "busy_mean": None, "samples": 0}
        busy = [v for v in s if v > 0]
        return {"max": max(s), "mean": sum(s) / len(s), "busy_mean": sum(busy) / len(busy) if busy else 0,
                "samples": len(s)}


def _sched(pid):
    """(ns on a CPU, ns runnable but waiting for one) summed over pid's threads, from
    /proc/PID/task/*/schedstat; None when unreadable."""
    run = wait = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    a, b = f.read().split()[:2]
                run += int(a)
                wait += int(b)
            except (OSError, ValueError):
                pass
    except OSError:
        return None
    return run, wait


class ThreadStates:
    """Samples the state of every thread of pid every `period` s: the share of samples in
    which some thread was in uninterruptible sleep (D: waiting for the disk, e.g. a
    synchronous block write on an event loop)."""

    def __init__(self, pid, period=0.02):
        self.pid, self.period = pid, period
        self.samples = self.with_d = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                states = []
                for tid in os.listdir(f"/proc/{self.pid}/task"):
                    try:
                        with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                            d = f.read()
                        states.append(d[d.rindex(")") + 2])
                    except (OSError, ValueError):
                        pass
                self.samples += 1
                self.with_d += "D" in states
            except OSError:
                return
            self._stop.wait(self.period)

    def start(self):
        self._th.start()
        return self

    def stop(self):
        self._stop.set()
        self._th.join(5)

    def d_share(self):
        return self.with_d / self.samples if self.samples else None


class Probe:
    """CPU of tagd, of the WAN line and of the whole machine, tagd's /metrics and the
    origin's access log, around one timed load."""

    def __init__(self, ctx, origin, td=None):
        self.ctx, self.origin, self.td = ctx, origin, td
        self.wire = _wire_pid(ctx)

    def __enter__(self):
        self.t_cpu = cpu_seconds(self.td.pid) if self.td else None
        self.w_cpu = cpu_seconds(self.wire) if self.wire else None
        self.m_cpu = cpu_times()
        self.met = self.ctx.metrics() if self.td else {}
        self.mark = _log_lines(self.origin)
        self.t0 = time.monotonic()
        self.sched = _sched(self.td.pid) if self.td else None
        self.states = ThreadStates(self.td.pid).start() if self.td else None
        self.sampler = InflightSampler(self.origin).__enter__()
        return self

    def __exit__(self, *exc):
        self.sampler.__exit__()
        if self.states:
            self.states.stop()

    def result(self, key_prefix=None):
        wall = time.monotonic() - self.t0
        out = {"probe_wall_s": wall, "machine_busy": busy_fraction(self.m_cpu, cpu_times()),
               "upstream_in_flight": self.sampler.summary()}
        if self.td:
            c = cpu_seconds(self.td.pid) - self.t_cpu
            out["tagd_cpu_s"] = c
            out["tagd_cpu_share"] = c / wall if wall else None
            s1 = _sched(self.td.pid)
            if self.sched and s1 and wall:
                out["tagd_runqueue_wait_share"] = (s1[1] - self.sched[1]) / 1e9 / wall
            out["tagd_disk_wait_share"] = self.states.d_share() if self.states else None
        if self.wire:
            c = cpu_seconds(self.wire) - self.w_cpu
            out["wan_cpu_share"] = c / wall if wall else None
        if self.td:
            out["cache"] = miss_delta(self.met, self.ctx.metrics())
        if key_prefix is not None and getattr(self.origin, "access_log", None):
            b, n, _ = _upstream_bytes(self.origin, key_prefix, self.mark)
            out["origin_bytes"], out["origin_requests"] = b, n
        return out


SHARES = ("tagd_cpu_share", "tagd_runqueue_wait_share", "wan_cpu_share")


def _merge(r, res, **extra):
    """Adds a probe's result to a load's result. The probe's window also holds tagd's
    settling and a child's start-up: CPU and wait shares are restated per second of the
    load's own wall time (the client's transfer)."""
    r.update(res, **extra)
    w, pw = r.get("wall_s"), res.get("probe_wall_s")
    if w and pw:
        for k in SHARES:
            if r.get(k) is not None:
                r[k] = r[k] * pw / w


def _upstream_bytes(srv, key, since_line=0):
    """($body_bytes_sent summed, requests) for /bench/<key>* in the origin's access log
    from line since_line on (the suite's log format: '$msec $uri $status $bytes "$range"')."""
    total = reqs = n = 0
    want = f"/{D.BUCKET}/{key}"
    try:
        with open(srv.access_log) as f:
            for n, line in enumerate(f, 1):
                if n <= since_line:
                    continue
                parts = line.split(" ")
                if len(parts) >= 4 and parts[1].startswith(want):
                    total += int(parts[3])
                    reqs += 1
    except (OSError, ValueError, TypeError):
        pass
    return total, reqs, n


def _log_lines(srv):
    if not getattr(srv, "access_log", None):
        return 0
    try:
        with open(srv.access_log) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


CAUSES = ("miss", "range", "suffix", "conditional", "head", "block", "parallel", "readahead", "warm")


def miss_delta(m0, m1):
    """S.cache_delta plus part 7's counters: fills by cause and the prefetch ledger."""
    def d(k):
        return m1.get(k, 0) - m0.get(k, 0)
    out = S.cache_delta(m0, m1)
    out["fills_by_cause"] = {c: int(d(f'tagd_cache_fills_by_cause_total{{cause="{c}"}}')) for c in CAUSES}
    out["prefetch_bytes"] = int(d("tagd_cache_prefetch_bytes_total"))
    out["prefetch_used_bytes"] = int(d("tagd_cache_prefetch_used_bytes_total"))
    out["prefetch_unused_bytes"] = int(d("tagd_cache_prefetch_unused_bytes_total"))
    out["prefetch_unread_bytes"] = int(m1.get("tagd_cache_prefetch_unread_bytes", 0))
    out["prefetch_budget_spent"] = int(d("tagd_cache_prefetch_budget_spent_total"))
    out["fills_started"] = int(d("tagd_cache_fills_started_total"))
    return out


def _waste(cache):
    """(prefetched - used) / prefetched, or None when nothing was prefetched."""
    pf = cache["prefetch_bytes"]
    return (pf - cache["prefetch_used_bytes"]) / pf if pf else None


def _settle(ctx, seconds=5.0):
    """Waits (bounded) until tagd's fills have finished: fills started == completed +
    failed and nothing prefetched is in flight, so the counters read after it are final."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = ctx.metrics()
        if not m:
            return
        open_fills = (m.get("tagd_cache_fills_started_total", 0) - m.get("tagd_cache_fills_completed_total", 0)
                      - m.get("tagd_cache_fills_failed_total", 0))
        if open_fills <= 0:
            return
        time.sleep(0.1)


def _share(x):
    return None if x is None else 100 * x


def _where_time(runs):
    """One line: tagd CPU, WAN line CPU, machine busy, upstream transfers in flight (medians)."""
    def med(k):
        return median([r.get(k) for r in runs if r])
    inf_max = median([r["upstream_in_flight"]["max"] for r in runs if r and r.get("upstream_in_flight")])
    inf_mean = median([r["upstream_in_flight"]["busy_mean"] for r in runs if r and r.get("upstream_in_flight")])
    return (f"tagd CPU {fmt(_share(med('tagd_cpu_share')))} % of a core, tagd threads runnable but waiting for a "
            f"CPU {fmt(_share(med('tagd_runqueue_wait_share')))} % of the time (summed over threads), a tagd thread "
            f"in disk wait (D) in {fmt(_share(med('tagd_disk_wait_share')))} % of samples, WAN line CPU "
            f"{fmt(_share(med('wan_cpu_share')))} % of a core, machine busy {fmt(_share(med('machine_busy')))} %, "
            f"origin responses in flight max {fmt(inf_max)} / mean {fmt(inf_mean)} (while any)")


def _no_tagd(id_, title, ctx):
    return {"id": id_, "title": title, "origin": "-", "tagd": ctx.tagd_label(), "columns": ["-"], "rows": [],
            "headline": f"tagd not measured: {ctx.tagd_label()}", "notes": [], "data": {}}


def _origin(ctx):
    return ctx.origin_wan()


def _urls(ctx, base, keys, name):
    return ctx.urls(base, keys, name.replace("/", "_"))[0]


# ================================================================== cold1g

def cold1g(ctx):
    """One cold 1 GiB object read whole by one client (s3get, one connection): a fresh
    tagd vs straight from the origin, alternating, time ratio direct / tagd."""
    mp = _prof(ctx)
    size = mp["cold1g_size"]
    title = f"M1. Cold {D.human(size)} object, one client reading it whole, tagd vs direct over the WAN"
    if not ctx.tagd_available():
        return _no_tagd("cold1g", title, ctx)
    up = _origin(ctx)
    # the warm1g scenario's file: the same bytes, and a new hard-linked key per run keeps it cold
    base = D.big_object(ctx.www, size, "warm")
    runs = {"direct": [], "tagd": []}
    for rep in range(mp["cold1g_reps"]):
        for what in _order(["direct", "tagd"], rep):
            key = D.cold_alias(ctx.www, base, f"c1-{what[0]}{os.getpid()}-{ctx.next_seed()}")
            try:
                if what == "direct":
                    uf = _urls(ctx, up.url, [key], key)
                    with Probe(ctx, up) as pr:
                        r = _run(loads.s3get, ctx.state, uf, conns=1, duration=CAP_S)
                    res = pr.result(key)
                else:
                    td = ctx.tagd(up, fresh=True, need=[(size, 1)])
                    uf = _urls(ctx, ctx.tagd_url(), [key], key)
                    with Probe(ctx, up, td) as pr:
                        r = _run(loads.s3get, ctx.state, uf, conns=1, duration=CAP_S)
                        _settle(ctx)
                    res = pr.result(key)
                    ctx.stop_tagd()
            finally:
                D.drop_alias(ctx.www, key)
            if r:
                _merge(r, res)
                r["complete"] = r["ok"] == 1 and r["bytes"] >= size
            runs[what].append(r)
            log(f"  cold1g {what}: {fmt(r['wall_s']) if r else 'fail'} s"
                + (f", {fmt(r['mib_s'])} MiB/s; {_where_time([r])}" if r else "")
                + (f"; X-Cache {r['cache']['x_cache']}, fills by cause "
                   f"{ {k: v for k, v in r['cache']['fills_by_cause'].items() if v} }, upstream "
                   f"{r.get('origin_requests')} requests {fmt((r.get('origin_bytes') or 0) / size)}x object"
                   if r and what == "tagd" else ""))
    speed = _paired(runs["direct"], runs["tagd"], "wall_s")
    met = goal_met(speed, ">=", 3.0)
    rows = []
    for what, name in (("direct", "direct, one GET over the WAN"), ("tagd", "through tagd, cold")):
        rr = [r for r in runs[what] if r]
        rows.append([D.human(size), name, _m(rr, "wall_s"), _m(rr, "mib_s"),
                     median([r["ttfb_ms"]["p50"] for r in rr]),
                     median([r.get("origin_requests") for r in rr]),
                     median([(r.get("origin_bytes") or 0) / size for r in rr if r.get("origin_bytes") is not None]),
                     median([r["upstream_in_flight"]["max"] for r in rr]),
                     _share(_m(rr, "tagd_cpu_share")), _share(_m(rr, "tagd_runqueue_wait_share")),
                     _share(_m(rr, "wan_cpu_share")), _share(_m(rr, "machine_busy")),
                     speed if what == "tagd" else None])
    return {
        "id": "cold1g", "title": title,
        "origin": f"nginx static inside the WAN namespace ({up.url}), access log for upstream requests and bytes",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["object", "path", "time s", "MiB/s", "TTFB ms", "origin requests", "origin bytes / object",
                    "origin responses in flight, max", "tagd CPU % of a core", "tagd runnable, no CPU %",
                    "WAN line CPU % of a core", "machine busy %", "direct / tagd time"],
        "rows": rows,
        "headline": f"cold {D.human(size)}, one client: tagd is {fmt(speed)}x faster than direct (goal ≥ 3: {met})",
        "goals": {"cold1g": {"metric": "direct time / tagd time", "ratio": speed, "goal": ">= 3", "met": met}},
        "notes": [f"{mp['cold1g_reps']} alternating pair(s); every run reads a new key (a hard link to the same "
                  "file) and tagd starts with an empty cache folder each time; the ratio is the median of the "
                  "per-pair ratios direct time / tagd time (above 1: tagd faster).",
                  "Origin responses in flight: the origin's connections with bytes not yet acknowledged, sampled "
                  "every 20 ms; more than one means tagd's parts of the object really were fetched in parallel.",
                  "tagd runnable, no CPU: time tagd's threads spent ready to run but waiting for a CPU "
                  "(/proc/PID/task/*/schedstat, summed over threads) per second of the read; with other jobs on "
                  "the 2 cores this is where a CPU-starved tagd loses time.",
                  "Where the time goes (medians): tagd: " + _where_time(runs["tagd"]) + "; direct: "
                  + _where_time(runs["direct"]) + "."],
        "data": {"runs": runs, "speedup": speed},
    }


def _run(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"  run failed: {e}")
        return None


def _m(runs, key):
    return median([r.get(key) for r in runs if r is not None])


def _paired(a_runs, b_runs, key):
    """Median over pairs of a[i][key] / b[i][key]."""
    return median([ratio(a.get(key), b.get(key)) for a, b in zip(a_runs, b_runs) if a and b])


# ================================================================== seqrange

def _range_reader(url, size, chunk, cap_s=CAP_S):
    """Reads url in order with ranged GETs of `chunk` bytes on one keep-alive connection
    (a presigned URL: the Range header is not part of its signature). Returns wall time,
    bytes, per-request time to last byte, X-Cache values seen; raises on a wrong answer."""
    u = urllib.parse.urlsplit(url)
    target = u.path + "?" + u.query
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    t0 = time.monotonic()
    lat, seen, got = [], {}, 0
    try:
        for off in range(0, size, chunk):
            if time.monotonic() - t0 > cap_s:
                raise RuntimeError(f"range reader stopped at {cap_s} s, {got} of {size} bytes read")
            end = min(off + chunk, size) - 1
            s = time.monotonic()
            c.request("GET", target, headers={"Range": f"bytes={off}-{end}"})
            r = c.getresponse()
            body = r.read()
            lat.append(time.monotonic() - s)
            if r.status != 206 or len(body) != end - off + 1:
                raise RuntimeError(f"range {off}-{end}: HTTP {r.status}, {len(body)} bytes")
            xc = r.getheader("X-Cache") or "-"
            seen[xc] = seen.get(xc, 0) + 1
            got += len(body)
    finally:
        c.close()
    wall = time.monotonic() - t0
    lat.sort()
    return {"wall_s": wall, "bytes": got, "requests": len(lat), "mib_s": got / MiB / wall if wall else None,
            "p50_ms": 1000 * lat[len(lat) // 2], "max_ms": 1000 * lat[-1], "x_cache_seen": seen}


def seqrange(ctx):
    mp = _prof(ctx)
    size, chunk = mp["seqrange_size"], mp["seqrange_chunk"]
    title = (f"M2. Sequential {D.human(chunk)} ranged GETs over a cold {D.human(size)} object, one reader, "
             "tagd vs direct over the WAN")
    if not ctx.tagd_available():
        return _no_tagd("seqrange", title, ctx)
    up = _origin(ctx)
    base = D.big_object(ctx.www, size, "large")
    runs = {"direct": [], "tagd": []}
    for rep in range(mp["seqrange_reps"]):
        for what in _order(["direct", "tagd"], rep):
            key = D.cold_alias(ctx.www, base, f"sr-{what[0]}{os.getpid()}-{ctx.next_seed()}")
            try:
                if what == "direct":
                    url = D.presign(up.url, ctx.creds, [key])[0]
                    with Probe(ctx, up) as pr:
                        r = _run(_range_reader, url, size, chunk)
                    res = pr.result(key)
                else:
                    td = ctx.tagd(up, fresh=True, need=[(size, 1)])
                    url = D.presign(ctx.tagd_url(), ctx.creds, [key])[0]
                    with Probe(ctx, up, td) as pr:
                        r = _run(_range_reader, url, size, chunk)
                        _settle(ctx)
                    res = pr.result(key)
                    ctx.stop_tagd()
            finally:
                D.drop_alias(ctx.www, key)
            if r:
                _merge(r, res)
                if what == "tagd":
                    r["waste"] = _waste(r["cache"])
            runs[what].append(r)
            log(f"  seqrange {what}: {fmt(r['wall_s']) if r else 'fail'} s"
                + (f"; {_where_time([r])}" if r else "")
                + (f"; X-Cache {r['x_cache_seen']}, prefetched {fmt(r['cache']['prefetch_bytes'] / MiB)} MiB, used "
                   f"{fmt(r['cache']['prefetch_used_bytes'] / MiB)} MiB, waste {fmt(_share(r['waste']))} %, fills by "
                   f"cause { {k: v for k, v in r['cache']['fills_by_cause'].items() if v} }, upstream "
                   f"{r.get('origin_requests')} requests {fmt((r.get('origin_bytes') or 0) / size)}x object"
                   if r and what == "tagd" else ""))
    speed = _paired(runs["direct"], runs["tagd"], "wall_s")
    tagd_runs = [r for r in runs["tagd"] if r]
    waste = median([r["waste"] for r in tagd_runs])
    met = goal_met(speed, ">=", 3.0)
    wmet = goal_met(waste, "<=", PREFETCH_WASTE_GOAL)
    rows = []
    for what, name in (("direct", "direct"), ("tagd", "through tagd, cold")):
        rr = [r for r in runs[what] if r]
        t = what == "tagd"
        rows.append([D.human(size), name, _m(rr, "wall_s"), _m(rr, "mib_s"), _m(rr, "p50_ms"),
                     median([r.get("origin_requests") for r in rr]),
                     median([(r.get("origin_bytes") or 0) / size for r in rr if r.get("origin_bytes") is not None]),
                     median([r["upstream_in_flight"]["max"] for r in rr]),
                     median([r["cache"]["prefetch_bytes"] / MiB for r in rr]) if t else None,
                     median([r["cache"]["prefetch_used_bytes"] / MiB for r in rr]) if t else None,
                     _share(waste) if t else None,
                     _share(_m(rr, "tagd_cpu_share")), _share(_m(rr, "wan_cpu_share")),
                     speed if t else None])
    return {
        "id": "seqrange", "title": title,
        "origin": f"nginx static inside the WAN namespace ({up.url})",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["object", "path", "time s", "MiB/s", "per-range p50 ms", "origin requests",
                    "origin bytes / object", "origin responses in flight, max", "prefetched MiB", "prefetch used MiB",
                    "prefetch waste %", "tagd CPU % of a core", "WAN line CPU % of a core", "direct / tagd time"],
        "rows": rows,
        "headline": f"sequential {D.human(chunk)} ranges over a cold {D.human(size)} object: tagd {fmt(speed)}x "
                    f"faster than direct (goal ≥ 3: {met}); prefetch waste {fmt(_share(waste))} % "
                    f"(goal ≤ {PREFETCH_WASTE_GOAL * 100:g} %: {wmet})",
        "goals": {"seqrange": {"metric": "direct time / tagd time", "ratio": speed, "goal": ">= 3", "met": met},
                  "prefetch_waste": {"metric": "(prefetched-used)/prefetched", "ratio": waste,
                                     "goal": f"<= {PREFETCH_WASTE_GOAL:g}", "met": wmet}},
        "notes": [f"One reader (Python http.client, one keep-alive connection) sends {size // chunk} ranged GETs of "
                  f"{D.human(chunk)} in order and waits for each; {mp['seqrange_reps']} alternating pair(s), a new "
                  "key and an empty tagd cache every run; ratio = median of the per-pair direct time / tagd time.",
                  "Prefetch waste = (tagd_cache_prefetch_bytes_total - tagd_cache_prefetch_used_bytes_total) / "
                  "prefetched, deltas over the tagd run, read after its fills finished.",
                  "Where the time goes (medians): tagd: " + _where_time(runs["tagd"]) + "; direct: "
                  + _where_time(runs["direct"]) + "."],
        "data": {"runs": runs, "speedup": speed, "waste": waste},
    }


# ================================================================== download

_DOWNLOAD = r"""
import json, sys, time
import boto3
from botocore.config import Config
endpoint, ak, sk, region, bucket, key, dest = sys.argv[1:8]
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk, region_name=region,
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                               retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60))
t0 = time.monotonic()
c.download_file(bucket, key, dest)  # s3transfer's defaults: 8 MiB parts, 10 threads
print(json.dumps({"wall_s": time.monotonic() - t0}))
"""


def _download(endpoint, creds, key, dest, cap_s=CAP_S):
    """boto3 download_file in a child process (killed at cap_s: the load stays bounded);
    returns its wall time (without the interpreter's start-up)."""
    try:
        r = subprocess.run([sys.executable, "-c", _DOWNLOAD, endpoint, *creds, D.BUCKET, key, dest],
                           capture_output=True, text=True, timeout=cap_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"download_file did not finish within {cap_s} s")
    if r.returncode != 0:
        raise RuntimeError(f"download_file failed: {r.stderr.strip()[-600:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _same_file(a, b):
    import filecmp
    return os.path.getsize(a) == os.path.getsize(b) and filecmp.cmp(a, b, shallow=False)


def download(ctx):
    mp = _prof(ctx)
    size = mp["download_size"]
    title = f"M3. boto3 download_file of a {D.human(size)} object: tagd (first run, second run) vs direct"
    if not ctx.tagd_available():
        return _no_tagd("download", title, ctx)
    up = _origin(ctx)
    base = D.big_object(ctx.www, size, "download")
    src = os.path.join(ctx.www, D.BUCKET, base)
    dest = os.path.join(os.environ.get("BENCH_CACHE_BASE", "/var/tmp"), f"tagd-bench-download-{os.getpid()}")
    runs = {"direct": [], "tagd1": [], "tagd2": []}
    try:
        for rep in range(mp["download_reps"]):
            for what in _order(["direct", "tagd"], rep):
                key = D.cold_alias(ctx.www, base, f"dl-{what[0]}{os.getpid()}-{ctx.next_seed()}")
                try:
                    if what == "direct":
                        with Probe(ctx, up) as pr:
                            r = _run(_download, up.url, ctx.creds, key, dest)
                        res = pr.result(key)
                        if r:
                            _merge(r, res, correct=_same_file(src, dest))
                        runs["direct"].append(r)
                        continue
                    td = ctx.tagd(up, fresh=True, need=[(size, 1)])
                    for phase in ("tagd1", "tagd2"):  # the second run on the same tagd and cache
                        with Probe(ctx, up, td) as pr:
                            r = _run(_download, ctx.tagd_url(), ctx.creds, key, dest)
                            _settle(ctx)
                        res = pr.result(key)
                        if r:
                            _merge(r, res, correct=_same_file(src, dest))
                        runs[phase].append(r)
                    ctx.stop_tagd()
                finally:
                    D.drop_alias(ctx.www, key)
                    if os.path.exists(dest):
                        os.unlink(dest)
            for what in ("direct", "tagd1", "tagd2"):
                r = runs[what][-1] if runs[what] else None
                log(f"  download {what}: {fmt(r['wall_s']) if r else 'fail'} s"
                    + (f", bytes correct {r['correct']}; {_where_time([r])}" if r else "")
                    + (f"; X-Cache {r['cache']['x_cache']}, fills by cause "
                       f"{ {k: v for k, v in r['cache']['fills_by_cause'].items() if v} }, upstream "
                       f"{r.get('origin_requests')} requests {fmt((r.get('origin_bytes') or 0) / size)}x object"
                       if r and what != "direct" else ""))
    finally:
        if os.path.exists(dest):
            os.unlink(dest)
    first = _paired(runs["tagd1"], runs["direct"], "wall_s")
    second = [r for r in runs["tagd2"] if r]
    all_hit = bool(second) and all(r["cache"]["x_cache"]["miss"] == 0 and r["cache"]["x_cache"]["hit"] > 0
                                   and r["cache"]["x_cache"]["hit"] == sum(r["cache"]["x_cache"].values())
                                   and r.get("origin_requests", 0) == 0 and r["correct"] for r in second)
    met1 = goal_met(first, "<=", 1.0)
    met2 = "yes" if all_hit else ("-" if not second else "NO")
    rows = []
    for what, name in (("direct", "direct"), ("tagd1", "through tagd, first run (cold)"),
                       ("tagd2", "through tagd, second run")):
        rr = [r for r in runs[what] if r]
        xc = rr[-1]["cache"]["x_cache"] if rr and what != "direct" else None
        rows.append([D.human(size), name, _m(rr, "wall_s"), (size / MiB / _m(rr, "wall_s")) if rr else None,
                     all(r["correct"] for r in rr) if rr else None,
                     median([r.get("origin_requests") for r in rr]),
                     median([(r.get("origin_bytes") or 0) / size for r in rr if r.get("origin_bytes") is not None]),
                     median([r["upstream_in_flight"]["max"] for r in rr]),
                     f"{xc['hit']} HIT / {xc['miss']} MISS / {sum(xc.values()) - xc['hit'] - xc['miss']} other"
                     if xc else None,
                     _share(_m(rr, "tagd_cpu_share")), _share(_m(rr, "tagd_runqueue_wait_share")),
                     first if what == "tagd1" else None])
    return {
        "id": "download", "title": title,
        "origin": f"nginx static inside the WAN namespace ({up.url}; answers HEAD, ranges and If-Match as S3 does "
                  "for an unsigned read)",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["object", "path", "time s", "MiB/s", "bytes correct", "origin requests", "origin bytes / object",
                    "origin responses in flight, max", "tagd X-Cache (last run)", "tagd CPU % of a core",
                    "tagd runnable, no CPU %", "tagd first / direct time"],
        "rows": rows,
        "headline": f"download_file {D.human(size)}: tagd first run / direct = {fmt(first)} (goal ≤ 1.0: {met1}); "
                    f"second run all HIT, misses 0: {met2}",
        "goals": {"download_first": {"metric": "tagd first / direct time", "ratio": first, "goal": "<= 1.0",
                                     "met": met1},
                  "download_second": {"metric": "second run all HIT", "ratio": None, "goal": "misses 0",
                                      "met": met2}},
        "notes": [f"boto3 {_boto_version()} download_file with s3transfer's defaults (HeadObject, then 8 MiB ranged "
                  "GETs with If-Match on 10 threads), in a child process killed at "
                  f"{CAP_S} s; {mp['download_reps']} alternating pair(s) (direct, then tagd's first and second "
                  "runs back to back, or the reverse), a new key and an empty tagd cache every pair; ratio = "
                  "median of per-pair tagd first / direct time. The downloaded file is compared byte for byte.",
                  "Second run: X-Cache counts are deltas of tagd_cache_requests_total (HEAD and GETs); 'all HIT' "
                  "needs 0 misses, every answer a HIT and no request in the origin's access log.",
                  "Where the time goes (medians): tagd first run: " + _where_time(runs["tagd1"]) + "; direct: "
                  + _where_time(runs["direct"]) + "."],
        "data": {"runs": runs, "first_over_direct": first, "second_all_hit": all_hit},
    }


def _boto_version():
    try:
        import boto3
        return boto3.__version__
    except ImportError:
        return "?"


# ================================================================== herdbytes

def herdbytes(ctx):
    mp = _prof(ctx)
    size, n = mp["herd_size"], mp["herd_clients"]
    title = f"M4. {n} readers of one cold {D.human(size)} object at once through tagd: upstream bytes"
    if not ctx.tagd_available():
        return _no_tagd("herdbytes", title, ctx)
    up = _origin(ctx)
    base = D.big_object(ctx.www, size, "large")
    runs = []
    for rep in range(mp["herd_reps"]):
        key = D.cold_alias(ctx.www, base, f"hb{os.getpid()}-{ctx.next_seed()}")
        try:
            td = ctx.tagd(up, fresh=True, need=[(size, 1)])
            uf = _urls(ctx, ctx.tagd_url(), [key] * n, key + "-herd")
            with Probe(ctx, up, td) as pr:
                r = _run(loads.s3get, ctx.state, uf, conns=n, duration=CAP_S)
                _settle(ctx)
            res = pr.result()
            ctx.stop_tagd()  # ends any upstream transfer still running, so the access log is complete
            time.sleep(0.3)
            b, nreq, _ = _upstream_bytes(up, key, pr.mark)
        finally:
            D.drop_alias(ctx.www, key)
        if r:
            _merge(r, res, origin_bytes=b, origin_requests=nreq,
                     complete=r["ok"] == n and r["bytes"] >= n * size)
        runs.append(r)
        log(f"  herdbytes: {r['ok'] if r else 0}/{n} complete, last byte "
            f"{fmt(r['ttlb_ms']['max'] / 1000) if r else '-'} s, origin bytes {b / size:.3f}x object in {nreq} "
            f"requests, tagd fill bytes {fmt(r['cache']['fill_bytes'] / size if r else None)}x; "
            + (_where_time([r]) if r else ""))
    ok = [r for r in runs if r and r["complete"]]
    amp = median([r["origin_bytes"] / size for r in ok])
    amp_fill = median([r["cache"]["fill_bytes"] / size for r in ok])
    worst = max([a for a in (amp, amp_fill) if a is not None], default=None)
    met = goal_met(worst, "<=", 1.02) if len(ok) == len(runs) else "NO (a run did not complete)"
    rows = [[D.human(size), n, f"{len(ok)}/{len(runs)}", amp, amp_fill, median([r["origin_requests"] for r in ok]),
             median([r["ttlb_ms"]["p50"] / 1000 for r in ok]), median([r["ttlb_ms"]["max"] / 1000 for r in ok]),
             median([r["ttfb_ms"]["p50"] for r in ok]), median([r["upstream_in_flight"]["max"] for r in ok]),
             _share(_m(ok, "tagd_cpu_share")), median([r["cache"]["joined_fills"] for r in ok])]]
    return {
        "id": "herdbytes", "title": title,
        "origin": f"nginx static inside the WAN namespace ({up.url}); bytes from its access log ($body_bytes_sent)",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["object", "readers", "complete runs", "origin bytes / object (log)",
                    "tagd fill bytes / object", "origin requests", "TTLB p50 s", "last byte s", "TTFB p50 ms",
                    "origin responses in flight, max", "tagd CPU % of a core", "joined fills"],
        "rows": rows,
        "headline": f"{n} readers of a cold {D.human(size)} object: upstream bytes / object = {fmt(amp, 3)} (log), "
                    f"{fmt(amp_fill, 3)} (tagd fill bytes) (goal ≤ 1.02: {met})",
        "goals": {"herd_bytes": {"metric": "upstream bytes / object", "ratio": worst, "goal": "<= 1.02",
                                 "met": met}},
        "notes": [f"{n} s3get connections GET the same new key at once through a tagd with an empty cache "
                  f"({mp['herd_reps']} run(s)); the goal is checked on the larger of the two byte counts: the "
                  "origin's access log for the key, and tagd_cache_fill_bytes_total's delta.",
                  "Where the time goes (medians): " + _where_time(ok) + "."],
        "data": {"runs": runs, "amplification_log": amp, "amplification_fill": amp_fill},
    }


# ================================================================== coldepoch

def coldepoch(ctx):
    mp = _prof(ctx)
    size, count, workers = mp["epoch_size"], mp["epoch_count"], mp["epoch_workers"]
    label = f"{count:,} x {D.human(size)}"
    title = f"M5. Cold epoch, {label}, {workers} readers, shuffled: tagd (empty cache) vs direct over the WAN"
    if not ctx.tagd_available():
        return _no_tagd("coldepoch", title, ctx)
    ds = D.Dataset(ctx.www, f"epoch-{size // KiB}kib", size, count).ensure()
    if os.environ.get("BENCH_MISSES_EPOCH_ORIGIN", "nginx") == "moto":
        up = ctx.moto_wan()
        ctx.upload(up, [ds])
        origin_text = f"moto under waitress inside the WAN namespace ({up.url})"
    else:
        up = _origin(ctx)
        origin_text = f"nginx static inside the WAN namespace ({up.url})"
    files = {"direct": ctx.urls(up.url, ds.keys, ds.prefix)[0], "tagd": ctx.urls(ctx.tagd_url(), ds.keys, ds.prefix)[0]}
    runs = {"direct": [], "tagd": []}
    for rep in range(mp["epoch_reps"]):
        seed = ctx.next_seed()  # the same shuffled order for both in a pair
        for what in _order(["direct", "tagd"], rep):
            td = ctx.tagd(up, fresh=True, need=[(size, count)]) if what == "tagd" else None
            with Probe(ctx, up, td) as pr:
                r = _run(loads.s3get, ctx.state, files[what], conns=workers, seed=seed, duration=CAP_S)
                if td:
                    _settle(ctx)
            res = pr.result(ds.prefix)
            if td:
                ctx.stop_tagd()
            if r:
                _merge(r, res, complete=r["ok"] == count)
            runs[what].append(r)
            log(f"  coldepoch {what}: {fmt(r['wall_s']) if r else 'fail'} s"
                + (f", {r['ok']}/{count} ok; {_where_time([r])}" if r else "")
                + (f"; X-Cache {r['cache']['x_cache']}, {r['cache']['upstream_requests']} upstream requests, "
                   f"fills by cause { {k: v for k, v in r['cache']['fills_by_cause'].items() if v} }"
                   if r and td else ""))
    rt = _paired(runs["tagd"], runs["direct"], "wall_s")
    met = goal_met(rt, "<=", 1.0)
    rows = []
    for what, name in (("direct", "direct"), ("tagd", "through tagd, cold")):
        rr = [r for r in runs[what] if r]
        rows.append([label, name, _m(rr, "wall_s"), _m(rr, "mib_s"), median([r["ttfb_ms"]["p50"] for r in rr]),
                     median([r["ttlb_ms"]["p99"] for r in rr]), median([r["errors"] + r["non2xx"] for r in rr]),
                     median([r.get("origin_requests") for r in rr]),
                     median([1e6 * r["tagd_cpu_s"] / r["ok"] for r in rr if r.get("tagd_cpu_s") is not None
                             and r["ok"]]) if what == "tagd" else None,
                     _share(_m(rr, "tagd_cpu_share")), _share(_m(rr, "tagd_runqueue_wait_share")),
                     _share(_m(rr, "wan_cpu_share")), _share(_m(rr, "machine_busy")), rt if what == "tagd" else None])
    notes = [f"{workers} s3get readers (keep-alive) read every object once in a shuffled order, the same order for "
             f"both runs of a pair; {mp['epoch_reps']} alternating pair(s); tagd starts with an empty cache folder "
             "before each of its runs, so every read is a miss that fills; ratio = median of per-pair tagd / direct "
             "time.",
             "Where the time goes (medians): tagd: " + _where_time(runs["tagd"]) + "; direct: "
             + _where_time(runs["direct"]) + "."]
    if count < 10000:
        notes.insert(0, f"{count:,} objects, not the issue's 10,000 (BENCH_MISSES_EPOCH_COUNT or the profile): "
                        "the ratio is per epoch, the count only bounds the run time.")
    return {
        "id": "coldepoch", "title": title, "origin": origin_text,
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["dataset", "path", "epoch s", "MiB/s", "TTFB p50 ms", "p99 ms", "errors", "origin requests (log)",
                    "tagd CPU µs/object", "tagd CPU % of a core", "tagd runnable, no CPU %",
                    "WAN line CPU % of a core", "machine busy %",
                    "tagd / direct time"],
        "rows": rows,
        "headline": f"cold epoch {label}: tagd / direct time = {fmt(rt)} (goal ≤ 1.0: {met})",
        "goals": {"coldepoch": {"metric": "tagd / direct epoch time", "ratio": rt, "goal": "<= 1.0", "met": met}},
        "notes": notes,
        "data": {"runs": runs, "ratio_time": rt, "count": count},
    }


# The lead registers these in bench/bench.py (SC.SCENARIOS / SC.ORDER / SC.ALIASES).
SCENARIOS = {"cold1g": cold1g, "seqrange": seqrange, "download": download, "herdbytes": herdbytes,
             "coldepoch": coldepoch}
ORDER = ["cold1g", "seqrange", "download", "herdbytes", "coldepoch"]
ALIASES = {"m1": "cold1g", "m2": "seqrange", "m3": "download", "m4": "herdbytes", "m5": "coldepoch",
           "herd-bytes": "herdbytes"}
