"""The scenarios of issue 4.  Each returns a result dict:

  {"id", "title", "origin", "tagd", "columns", "rows", "headline", "notes", "data"}

`rows` are display rows (strings and numbers) for the tables; `data` keeps the
raw per-run measurements for the JSON file.  Every figure that compares tagd
with something else is a ratio against a baseline measured in the same run,
in alternating order, and is the median over the repetitions."""
import http.client
import os
import threading
import time
import urllib.parse

from . import data as D
from . import loads
from . import servers as S
from .util import (busy_fraction, children, cpu_seconds, cpu_times, fmt, io_bytes, log, median, proc_status_kib,
                   ratio, reset_hwm)

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10


class Ctx:
    """Run-wide state: profile, servers started lazily and kept for the run,
    presigned URL files, and what we learnt about tagd."""

    def __init__(self, args, profile, state, www, tools_dir, creds, tagd_cfg, tagd_why):
        self.args = args
        self.p = profile
        self.state = state
        self.www = www
        self.tools = tools_dir
        self.creds = creds  # (access key, secret key, region)
        self.tagd_cfg = tagd_cfg
        self.tagd_why = tagd_why  # why tagd is unavailable, or None
        self.tagd_port = None
        self._srv = {}
        self._tagd = None
        self._url_cache = {}
        self._uploaded = set()
        self.wan = None
        self.tagd_xcache = None  # X-Cache seen on a repeated GET through tagd
        self.seq = 0
        self.mode = None  # S.tagd_mode of the last /metrics read (bench.py resets it per scenario)
        self.started_tagds = []  # block file and DRAM tier of each tagd start (reset per scenario)
        os.makedirs(os.path.join(state, "urls"), exist_ok=True)

    # ------------------------------------------------------------ servers
    def _get(self, name, factory):
        s = self._srv.get(name)
        if s is None or not s.alive():
            log(f"starting {name}")
            s = self._srv[name] = factory()
        return s

    def nginx(self):
        """The limit: nginx serving the same bytes as static files with
        sendfile from local disk, on loopback, 2 workers."""
        return self._get("nginx-static", lambda: S.nginx_static(self.state, self.www, "static", workers=2))

    def origin_lo(self):
        """Fast read-only S3 origin on loopback (static nginx, 1 worker)."""
        return self._get("nginx-origin-lo", lambda: S.nginx_static(self.state, self.www, "origin-lo", workers=1))

    def peer(self):
        up = self.origin_lo()
        return self._get("nginx-peer", lambda: S.nginx_peer(self.state, up.url))

    def moto_lo(self):
        return self._get("moto-lo", lambda: S.moto(self.state, self.tools, role="moto-lo"))

    def wan_up(self):
        if self.wan is None:
            self.wan = S.Wan(self.tools, self.state, self.p["wan_delay_ms"], self.p["wan_rate_mbit"])
            self.wan.up()
        return self.wan

    def moto_wan(self):
        self.wan_up()
        return self._get("moto-wan", lambda: S.moto(self.state, self.tools, host=S.WAN_ADDR, port=9000,
                                                     threads=32, netns=True, role="moto-wan"))

    def origin_wan(self):
        self.wan_up()
        return self._get("nginx-origin-wan", lambda: S.nginx_static(
            self.state, self.www, "origin-wan", host=S.WAN_ADDR, port=9080, workers=1,
            access_log=True, netns=True))

    def stop(self):
        self.stop_tagd()
        S.stop_all()
        self._srv.clear()
        if self.wan is not None:
            self.wan.down()
            self.wan = None

    # ------------------------------------------------------------ tagd
    def tagd_available(self):
        return self.tagd_cfg is not None

    def tagd(self, upstream, fresh=False, need=None, memory=None):
        """A running tagd in front of upstream (a Server); restarted with an
        empty cache when fresh or when the upstream changes.  Always on the
        same port, so presigned URLs stay valid across restarts.  need: the
        objects the scenario will cache, [(size, count)], which sizes the
        block file (S.cache_size_for; BENCH_CACHE_SIZE overrides); memory:
        the DRAM tier (--cache-memory-size) for this start."""
        if not self.tagd_available():
            return None
        size = S.cache_size_for(need or [(KiB, 1)])
        t = self._tagd
        if (t is not None and t.alive() and t.upstream == upstream.url and not fresh
                and t.cache_size_bytes >= size and t.memory_arg == memory):
            return t
        self.stop_tagd()
        if self.tagd_port is None:
            from .util import free_port
            self.tagd_port = free_port()
        kw = dict(port=self.tagd_port, cache_size=size, cache_memory=memory)
        try:
            self._tagd = S.tagd(self.state, self.tagd_cfg, upstream.url, **kw)
        except RuntimeError as e:
            if "address" in str(e).lower() or "bind" in str(e).lower():
                time.sleep(1)
                self._tagd = S.tagd(self.state, self.tagd_cfg, upstream.url, **kw)
            else:
                raise
        self._tagd.memory_arg = memory
        self.started_tagds.append({"cache_size": self._tagd.cache_size, "dram_tier": self._tagd.cache_memory})
        log(f"  tagd: block file {self._tagd.cache_size}, DRAM tier {self._tagd.cache_memory}")
        return self._tagd

    def stop_tagd(self):
        if self._tagd is not None:
            if self._tagd.alive():
                self.metrics()  # the mode gauges as they were at the end
            S.stop_tagd(self._tagd)
            self._tagd = None

    def tagd_url(self):
        if self.tagd_port is None:
            from .util import free_port
            self.tagd_port = free_port()
        return f"http://127.0.0.1:{self.tagd_port}"

    def tagd_label(self):
        if not self.tagd_available():
            return f"unavailable ({self.tagd_why})"
        if self.tagd_xcache == "HIT":
            if self.tagd_cfg.cache_size:
                size = f"{self.tagd_cfg.cache_size} block file (BENCH_CACHE_SIZE)"
            else:
                size = "block file sized per scenario"
            mem = self.tagd_cfg.cache_memory or "256MiB (default)"
            return (f"cache (a repeated GET answered X-Cache: HIT); {size}, "
                    f"DRAM tier {mem} unless the scenario says otherwise, a fresh cache folder per start")
        seen = self.tagd_xcache or "no X-Cache header"
        return f"pass-through: no cache (a repeated GET answered {seen})"

    def note_mode(self, metrics):
        """Records the mode gauges of a /metrics snapshot (see S.tagd_mode)."""
        if metrics:
            self.mode = S.tagd_mode(metrics)
        return metrics

    def metrics(self):
        """/metrics of the running tagd ({} if none); notes its mode gauges."""
        if self._tagd is None or not self._tagd.alive():
            return {}
        return self.note_mode(S.tagd_metrics(self._tagd.port))

    def probe_cache(self, upstream, key):
        """Starts a fresh tagd in front of upstream, GETs key twice and records
        the X-Cache header of the second answer (the run's cache mode)."""
        self.tagd(upstream, fresh=True)
        url = D.presign(self.tagd_url(), self.creds, [key])[0]
        self.tagd_xcache = self.probe_xcache(url)
        self.stop_tagd()
        return self.tagd_xcache

    # ------------------------------------------------------------ URLs
    def urls(self, base_url, keys, name):
        """(urls_file, targets_file) of presigned GETs for keys at base_url."""
        k = (base_url, name, len(keys))
        if k not in self._url_cache:
            urls = D.presign(base_url, self.creds, keys)
            host = base_url.split("://", 1)[1].replace(":", "_").replace(".", "-")
            self._url_cache[k] = D.write_url_files(os.path.join(self.state, "urls", f"{name}@{host}"), urls)
        return self._url_cache[k]

    def upload(self, moto_srv, datasets):
        todo = [ds for ds in datasets if (moto_srv.name, moto_srv.pid, ds.prefix) not in self._uploaded]
        if todo and moto_srv.netns:
            # upload from inside the namespace: no 50 ms round trip per PUT
            import subprocess
            import sys
            for ds in todo:
                subprocess.run(["ip", "netns", "exec", S.WAN_NS, sys.executable, "-m", "tagbench.data", "upload",
                                moto_srv.url, *self.creds, self.www, ds.prefix, str(ds.size), str(ds.count)],
                               check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        elif todo:
            D.upload(moto_srv.url, self.creds, todo, threads=16)
            for ds in todo:
                self._uploaded.add((moto_srv.name, moto_srv.pid, ds.prefix))

    def probe_xcache(self, url, header="X-Cache"):
        """GETs url twice; returns the X-Cache header of the second answer."""
        u = urllib.parse.urlsplit(url)
        target = u.path + ("?" + u.query if u.query else "")
        val = None
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            for _ in range(2):
                c.request("GET", target)
                r = c.getresponse()
                r.read()
                val = r.getheader(header)
                status = r.status
            c.close()
            if status != 200:
                val = f"HTTP {status}"
        except OSError as e:
            val = f"error {e}"
        return val

    def next_seed(self):
        self.seq += 1
        return 1000 + self.seq


def _sha(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _run_or_none(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except RuntimeError as e:
        log(f"  run failed: {e}")
        return None


def _size_label(n):
    return D.human(n).replace(" ", "")


def _med(runs, key):
    return median([r.get(key) for r in runs if r is not None and r.get(key) is not None])


def _paired_ratio(a_runs, b_runs, key):
    """Median over repetitions of a[i][key] / b[i][key] (runs paired in time)."""
    rs = []
    for a, b in zip(a_runs, b_runs):
        if a is not None and b is not None:
            rs.append(ratio(a.get(key), b.get(key)))
    return median(rs)


# ================================================================== ceiling

def client_ceiling(ctx):
    """wrk (and s3get) against nginx static 1 KiB: the client's own limit."""
    p = ctx.p
    ds = D.Dataset(ctx.www, "hit-1kib", KiB, p["hit_counts"][KiB]).ensure()
    ng = ctx.nginx()
    ufile, tfile = ctx.urls(ng.url, ds.keys, ds.prefix)
    runs = {}
    for conns in p["ceiling_conns"]:
        runs[("wrk", conns)] = [_run_or_none(loads.wrk, ng.url, tfile, conns, p["duration"], seed=ctx.next_seed())
                                for _ in range(p["reps"])]
        runs[("s3get", conns)] = []
        for _ in range(p["reps"]):
            r = _run_or_none(loads.s3get, ctx.state, ufile, conns=conns, count=10 ** 9,
                             duration=p["duration"], seed=ctx.next_seed())
            if r:
                r["p50_ms"], r["p99_ms"], r["p999_ms"] = (r["ttlb_ms"]["p50"], r["ttlb_ms"]["p99"],
                                                          r["ttlb_ms"]["p999"])
            runs[("s3get", conns)].append(r)
    rows = []
    for (tool, conns), rr in runs.items():
        rows.append([tool, conns, _med(rr, "ops_s"), _med(rr, "mib_s"), _med(rr, "p50_ms"), _med(rr, "p99_ms")])
    best = max((r[2] or 0) for r in rows if r[0] == "wrk")
    return {
        "id": "ceiling", "title": "0. Client ceiling: the load generator against nginx static 1 KiB",
        "origin": "nginx static files on loopback (no upstream)",
        "tagd": "not involved",
        "columns": ["client", "conns", "ops/s", "MiB/s", "p50 ms", "p99 ms"],
        "rows": rows,
        "headline": f"wrk tops out at {fmt(best)} GETs/s (1 KiB, nginx static, loopback); "
                    f"figures near this are client-bound",
        "notes": ["wrk runs 2 threads and shares the 2 cores with the server it measures.",
                  "s3get (bench/s3get.c, one thread per connection) drives the count-bounded "
                  "scenarios; its ceiling is shown for reference."],
        "data": {f"{t}/{c}": rr for (t, c), rr in runs.items()},
        "ceiling_ops_s": best,
    }


# ================================================================== hit matrix (1 and 2)

# issue 9's goals for hits, as (metric, comparison, bound): tagd / nginx static
# measured in the same run, at 16 and 64 connections
def hit_goal(size):
    if size <= KiB:
        return ("ops_s", ">=", 0.8)
    if size <= 100 * KiB:
        return ("mib_s", ">=", 0.95)
    return ("mib_s", ">=", 1.0)


P99_GOAL_1K = 1.5  # 1 KiB p99 latency, tagd / nginx, at most


def goal_met(value, op, bound):
    if value is None:
        return "-"
    ok = value >= bound if op == ">=" else value <= bound
    return "yes" if ok else "NO"


def goal_text(op, bound, what=""):
    return f"{'≥' if op == '>=' else '≤'} {bound:g}{(' ' + what) if what else ''}"


def _hit_datasets(ctx, sizes=None):
    return [D.Dataset(ctx.www, f"hit-{_size_label(sz).lower()}", sz, ctx.p["hit_counts"][sz]).ensure()
            for sz in (sizes or ctx.p["hit_sizes"])]


def _io_read_with_children(pid):
    """Storage-layer bytes read by pid and its children (nginx's workers)."""
    total = 0
    for p in [pid] + children(pid):
        r = io_bytes(p)[0]
        if r is None:
            return None
        total += r
    return total


def _order(names, rep):
    """The order of the contenders in repetition rep: alternating for two,
    rotating (and reversed every other time) for more."""
    names = list(names)
    if len(names) <= 2:
        return names if rep % 2 == 0 else list(reversed(names))
    k = rep % len(names)
    seq = names[k:] + names[:k]
    return list(reversed(seq)) if (rep // len(names)) % 2 else seq


def _timed_wrk(ctx, srv, targets_file, conns, seed, tagd_metrics=None, origin=None, with_children=True):
    """One wrk run with the server's CPU from /proc (its own pid, or master and
    workers), and for a tagd (tagd_metrics: a callable returning /metrics) the
    X-Cache mix and the bytes it read from the block device."""
    p = ctx.p
    c0 = cpu_seconds(srv.pid, with_children=with_children)
    o0 = cpu_seconds(origin.pid, with_children=True) if origin else None
    if tagd_metrics:
        met0, io0 = tagd_metrics(), io_bytes(srv.pid)[0]
    r = _run_or_none(loads.wrk, srv.url, targets_file, conns, p["duration"], seed=seed)
    if not r:
        return None
    c1 = cpu_seconds(srv.pid, with_children=with_children)
    gib = r["bytes"] / GiB
    r["cpu_s"] = c1 - c0
    r["cpu_s_per_gib"] = (c1 - c0) / gib if gib else None
    r["cpu_us_per_req"] = 1e6 * (c1 - c0) / r["requests"] if r["requests"] else None
    if origin:
        o1 = cpu_seconds(origin.pid, with_children=True)
        r["origin_cpu_s_per_gib"] = (o1 - o0) / gib if gib else None
    if tagd_metrics:
        d = S.cache_delta(met0, tagd_metrics())
        io1 = io_bytes(srv.pid)[0]
        r["cache"] = d
        r["hit_ratio"] = d["hit_ratio"]
        r["disk_read_per_served"] = ((io1 - io0) / r["bytes"] if io0 is not None and io1 is not None and r["bytes"]
                                     else None)
    return r


def _warm_tagd(ctx, name, dsets, urls_files, tagd_metrics):
    """Reads every object once (misses fill the cache), then once more, and
    returns per size what the second read was (X-Cache mix from /metrics)."""
    checks = {}
    for ds in dsets:
        r = _run_or_none(loads.s3get, ctx.state, urls_files[ds.size], conns=8)
        if r and (r["errors"] or r["non2xx"]):
            log(f"  warm-up of {name} {ds.prefix}: {r['status']}")
    for ds in dsets:
        m0 = tagd_metrics()
        r = _run_or_none(loads.s3get, ctx.state, urls_files[ds.size], conns=8)
        d = S.cache_delta(m0, tagd_metrics())
        d["objects"] = ds.count
        d["ok"] = r["ok"] if r else 0
        checks[ds.size] = d
        log(f"  warm-up check {name} {ds.prefix}: second read of {ds.count} objects: X-Cache {d['x_cache']}, "
            f"{d['upstream_requests']} upstream requests")
    return checks


def _hit_matrix(ctx, want):
    """Runs the hit-path load for the targets in want (subset of nginx, tagd,
    peer), alternating their order on every repetition; caches results so
    scenarios 1 and 2 share runs."""
    cache = ctx.__dict__.setdefault("_hit", {})
    todo = [t for t in want if t not in cache.get("targets", [])]
    if not todo:
        return cache
    p = ctx.p
    dsets = _hit_datasets(ctx)
    origin = ctx.origin_lo()
    servers = {}
    for t in todo:
        if t == "nginx":
            servers[t] = ctx.nginx()
        elif t == "peer":
            servers[t] = ctx.peer()
        elif t == "tagd":
            # starts empty; warmed below; the block file holds every object of the matrix, and
            # so does the DRAM tier: nginx serves the matrix from the page cache, and hits from
            # disk are the warm1g and warmepoch scenarios' business (the matrix outgrew the
            # default 256 MiB tier, and 1 MiB objects were read from disk)
            need = [(ds.size, ds.count) for ds in dsets]
            servers[t] = ctx.tagd(origin, fresh=True, need=need, memory=S.dram_tier_for(need))
    servers = {t: s for t, s in servers.items() if s is not None}
    if "tagd" in todo and "tagd" not in servers:
        log(f"tagd unavailable: {ctx.tagd_why}")
    cache["targets"] = cache.get("targets", []) + todo
    cache.setdefault("runs", {})
    cache.setdefault("ttfb", {})
    if not servers:
        return cache
    files = {(t, ds.size): ctx.urls(servers[t].url, ds.keys, ds.prefix) for t in servers for ds in dsets}
    # warm: read every object once through the caches (tagd, peer), then read every
    # object a second time and check that tagd answered all of them from its cache
    cache.setdefault("warm_check", {})
    cache.setdefault("probes", {})
    if "tagd" in servers:
        cache["warm_check"] = _warm_tagd(ctx, "tagd", dsets, {ds.size: files[("tagd", ds.size)][0] for ds in dsets},
                                         ctx.metrics)
        cache["tagd_cache"] = {"block_file": servers["tagd"].cache_size, "dram_tier": servers["tagd"].cache_memory}
    if "peer" in servers:
        for _ in range(2):
            for ds in dsets:
                _run_or_none(loads.s3get, ctx.state, files[("peer", ds.size)][0], conns=8)
    if "tagd" in servers:
        seen = []
        for ds in dsets:
            first = open(files[("tagd", ds.size)][0]).readline().strip()
            v = ctx.probe_xcache(first)
            cache["probes"][ds.size] = v
            seen.append(v)
        ctx.tagd_xcache = next((v for v in seen if v != "HIT"), "HIT")
        log(f"tagd X-Cache on a repeated GET, one object per size: {seen}")
    if "peer" in servers:
        first = open(files[("peer", dsets[-1].size)][0]).readline().strip()
        cache["peer_status"] = ctx.probe_xcache(first, header="X-Cache-Status")
        log(f"peer X-Cache-Status on a repeated GET: {cache['peer_status']}")
    order = list(servers)
    for ds in dsets:
        for conns in p["hit_conns"]:
            for rep in range(p["reps"]):
                seq = _order(order, rep)
                seed = ctx.next_seed()
                for t in seq:
                    r = _timed_wrk(ctx, servers[t], files[(t, ds.size)][1], conns, seed,
                                   tagd_metrics=ctx.metrics if t == "tagd" else None, origin=origin,
                                   with_children=t != "tagd")
                    cache["runs"].setdefault((t, ds.size, conns), []).append(r)
                log(f"  {_size_label(ds.size)} c{conns} rep{rep + 1}: " + ", ".join(
                    f"{t} {fmt(cache['runs'][(t, ds.size, conns)][-1]['ops_s']) if cache['runs'][(t, ds.size, conns)][-1] else 'fail'} ops/s"
                    for t in seq))
        # time to first byte: one connection, sequential, idle server
        for t in order:
            r = _run_or_none(loads.s3get, ctx.state, files[(t, ds.size)][0], conns=1,
                             count=p["ttfb_samples"], seed=ctx.next_seed())
            cache["ttfb"][(t, ds.size)] = r
    return cache


def _ttfb(cache, t, size, q="p50"):
    r = cache["ttfb"].get((t, size))
    return r["ttfb_ms"][q] if r else None


def hit_vs_nginx(ctx):
    cache = _hit_matrix(ctx, ["nginx", "tagd", "peer"] if "peer" in ctx.args.selected else ["nginx", "tagd"])
    rows, data = [], {}
    head = []
    goals = {}
    for sz in ctx.p["hit_sizes"]:
        for conns in ctx.p["hit_conns"]:
            n = cache["runs"].get(("nginx", sz, conns), [])
            t = cache["runs"].get(("tagd", sz, conns), [])
            r_mib = _paired_ratio(t, n, "mib_s") if t else None
            r_ops = _paired_ratio(t, n, "ops_s") if t else None
            r_p99 = _paired_ratio(t, n, "p99_ms") if t else None
            metric, op, bound = hit_goal(sz)
            r_goal = r_ops if metric == "ops_s" else r_mib
            met = goal_met(r_goal, op, bound)
            p99_goal = goal_text("<=", P99_GOAL_1K) if sz <= KiB else "-"
            p99_met = goal_met(r_p99, "<=", P99_GOAL_1K) if sz <= KiB else "-"
            rows.append([_size_label(sz), conns,
                         _med(n, "ops_s"), _med(t, "ops_s"), r_ops,
                         _med(n, "mib_s"), _med(t, "mib_s"), r_mib,
                         goal_text(op, bound, "ops/s" if metric == "ops_s" else "MiB/s"), met,
                         _med(n, "p99_ms"), _med(t, "p99_ms"), r_p99, p99_goal, p99_met,
                         _med(t, "cpu_us_per_req"), _med(n, "cpu_us_per_req"),
                         _med(t, "cpu_s_per_gib"), _med(n, "cpu_s_per_gib"),
                         _pct(_med(t, "hit_ratio")), _med(t, "disk_read_per_served"),
                         f"{fmt(_ttfb(cache, 'nginx', sz))}/{fmt(_ttfb(cache, 'tagd', sz))}"])
            key = f"{_size_label(sz)}/c{conns}"
            data[key] = {"nginx": n, "tagd": t, "ratio_mib_s": r_mib, "ratio_ops_s": r_ops, "ratio_p99": r_p99,
                         "ttfb_nginx": cache["ttfb"].get(("nginx", sz)),
                         "ttfb_tagd": cache["ttfb"].get(("tagd", sz))}
            goals[key] = {"metric": metric, "ratio": r_goal, "goal": f"{op} {bound}", "met": met}
            if sz <= KiB:
                goals[key + "/p99"] = {"metric": "p99_ms", "ratio": r_p99, "goal": f"<= {P99_GOAL_1K}",
                                       "met": p99_met}
            if r_goal is not None:
                h = f"{key} {'ops' if metric == 'ops_s' else 'MiB/s'} {r_goal:.2f} ({goal_text(op, bound)})"
                if sz <= KiB and r_p99 is not None:
                    h += f", p99 {r_p99:.2f} ({goal_text('<=', P99_GOAL_1K)})"
                head.append(h)
    mode = ctx.tagd_label()
    passthrough = ctx.tagd_xcache != "HIT"
    hr = _all_hit_ratio(cache)
    tc = cache.get("tagd_cache") or {}
    notes = ["Ratios are tagd / nginx static, paired per repetition (the two run back to back, order "
             "alternating), median over repetitions; 'met' compares them with issue 9's goals. SigV4 is "
             "verified on every tagd hit (presigned URLs); nginx ignores the query.",
             "p99: wrk's time to last byte under load (ms). TTFB is measured separately on one idle keep-alive "
             "connection (s3get, p50 ms).",
             "CPU µs/req and s/GiB: utime+stime from /proc/PID/stat during the run (tagd: its own process; "
             "nginx: master and workers) per request and per GiB served.",
             "tagd hit %: share of tagd's object GETs during the timed runs that were X-Cache: HIT "
             "(from tagd_cache_requests_total in /metrics). disk read / served: bytes tagd read from the "
             "block device (/proc/PID/io read_bytes; O_DIRECT reads count, page-cache hits do not) per byte "
             "served; 0 means every hit came from the DRAM tier."]
    if tc:
        notes.append(f"tagd's cache: block file {tc['block_file']} (sized to the matrix), DRAM tier "
                     f"{tc['dram_tier']}.")
    wc = _warm_check_note(cache)
    if wc:
        notes.insert(0, wc)
    if passthrough and ctx.tagd_available():
        notes.insert(0, "tagd has no cache yet: its column is the pass-through path tagd -> nginx origin on "
                        "loopback (the origin's CPU is not in tagd's CPU s/GiB). These are NOT hit-path figures.")
    return {
        "id": "hit", "title": "1. Hit path vs the limit (nginx static, sendfile)",
        "origin": "tagd's upstream: nginx static origin on loopback (1 worker); the limit: nginx static, 2 workers "
                  "(bench/NGINX_TUNING.md)",
        "tagd": mode,
        "columns": ["size", "conns", "nginx ops/s", "tagd ops/s", "tagd/nginx ops/s", "nginx MiB/s", "tagd MiB/s",
                    "tagd/nginx MiB/s", "goal", "met", "nginx p99 ms", "tagd p99 ms", "tagd/nginx p99",
                    "p99 goal", "p99 met", "tagd CPU µs/req", "nginx CPU µs/req", "tagd CPU s/GiB",
                    "nginx CPU s/GiB", "tagd hit %", "tagd disk read / served", "TTFB ms nginx/tagd"],
        "rows": rows,
        "headline": ("tagd/nginx (" + ("pass-through" if passthrough else
                                      f"cache hits, hit ratio {fmt(_pct(hr))} %") + "): " + "; ".join(head))
        if head else f"tagd not measured: {mode}",
        "notes": notes,
        "goals": goals,
        "data": dict(data, warm_check={D.human(k): v for k, v in cache.get("warm_check", {}).items()},
                     x_cache_probes={D.human(k): v for k, v in cache.get("probes", {}).items()},
                     tagd_cache=tc),
    }


def _pct(x):
    return None if x is None else 100 * x


def _all_hit_ratio(cache):
    """Hit ratio over every timed tagd run of the hit matrix."""
    hits = total = 0
    for (t, _, _), rr in cache.get("runs", {}).items():
        if t != "tagd":
            continue
        for r in rr:
            if r and r.get("cache"):
                hits += r["cache"]["x_cache"]["hit"]
                total += sum(r["cache"]["x_cache"].values())
    return hits / total if total else None


def _warm_check_note(cache):
    wc = cache.get("warm_check") or {}
    if not wc:
        return None
    parts = []
    for size, d in sorted(wc.items()):
        parts.append(f"{D.human(size)}: {d['x_cache']['hit']}/{d['objects']} HIT, "
                     f"{d['upstream_requests']} upstream requests")
    probes = cache.get("probes") or {}
    return ("Warm-up: tagd started empty, every object was read once (misses fill the cache), then every "
            "object was read a second time and counted: " + "; ".join(parts) +
            ". X-Cache of a repeated GET, one object per size: " +
            ", ".join(f"{D.human(k)} {v}" for k, v in sorted(probes.items())) + ".")


def hit_vs_peer(ctx):
    want = ["nginx", "tagd", "peer"] if "hit" in ctx.args.selected else ["tagd", "peer"]
    cache = _hit_matrix(ctx, want)
    rows, data, head = [], {}, []
    for sz in ctx.p["hit_sizes"]:
        for conns in ctx.p["hit_conns"]:
            pe = cache["runs"].get(("peer", sz, conns), [])
            t = cache["runs"].get(("tagd", sz, conns), [])
            rr = _paired_ratio(t, pe, "mib_s") if t else None
            rows.append([_size_label(sz), conns, _med(pe, "ops_s"), _med(pe, "mib_s"),
                         _med(t, "ops_s"), _med(t, "mib_s"), rr,
                         f"{fmt(_med(pe, 'p50_ms'))}/{fmt(_med(pe, 'p99_ms'))}/{fmt(_med(pe, 'p999_ms'))}",
                         f"{fmt(_med(t, 'p50_ms'))}/{fmt(_med(t, 'p99_ms'))}/{fmt(_med(t, 'p999_ms'))}" if t else "-",
                         _med(pe, "cpu_s_per_gib"), _med(t, "cpu_s_per_gib"), _pct(_med(t, "hit_ratio")),
                         f"{fmt(_ttfb(cache, 'peer', sz))}/{fmt(_ttfb(cache, 'tagd', sz))}"])
            data[f"{_size_label(sz)}/c{conns}"] = {"peer": pe, "tagd": t, "ratio_mib_s": rr,
                                                   "ttfb_peer": cache["ttfb"].get(("peer", sz))}
            if rr is not None:
                head.append(f"{_size_label(sz)}/c{conns} {rr:.2f}")
    passthrough = ctx.tagd_xcache != "HIT"
    hr = _all_hit_ratio(cache)
    notes = ["The peer: nginx proxy_cache + slice 1m + proxy_cache_lock, cache key $uri$slice_range, "
             "warmed by two full reads; clients unauthenticated (nginx cannot check SigV4). "
             f"Its X-Cache-Status on a repeated GET: {cache.get('peer_status')}.",
             "tagd's runs are the same ones as in scenario 1 (one warm tagd, alternated with nginx and the peer)."]
    wc = _warm_check_note(cache)
    if wc:
        notes.append(wc)
    if passthrough and ctx.tagd_available():
        notes.insert(0, "tagd has no cache yet: its column is pass-through to the loopback origin, "
                        "against a warm peer cache.")
    return {
        "id": "peer", "title": "2. Hit path vs a peer cache (nginx proxy_cache + slice)",
        "origin": "both in front of the same nginx static origin on loopback; both warm",
        "tagd": ctx.tagd_label(),
        "columns": ["size", "conns", "peer ops/s", "peer MiB/s", "tagd ops/s", "tagd MiB/s", "tagd/peer MiB/s",
                    "peer lat ms p50/p99/p99.9", "tagd lat ms p50/p99/p99.9", "peer CPU s/GiB",
                    "tagd CPU s/GiB", "tagd hit %", "TTFB ms peer/tagd"],
        "rows": rows,
        "headline": ("tagd/peer MiB/s (" + ("pass-through" if passthrough else
                                           f"cache hits, hit ratio {fmt(_pct(hr))} %") + "): " + ", ".join(head))
        if head else f"tagd not measured: {ctx.tagd_label()}",
        "notes": notes,
        "data": data,
    }


# ================================================================== miss path on loopback

def miss_path(ctx):
    """Cold reads through tagd vs direct to the same moto (count-bounded: each
    object once, tagd restarted with an empty cache for every run)."""
    p = ctx.p
    m = ctx.moto_lo()
    dsets = [D.Dataset(ctx.www, f"miss-{_size_label(sz).lower()}", sz, p["miss_count"]).ensure()
             for sz in p["miss_sizes"]]
    ctx.upload(m, dsets)
    rows, data, head = [], {}, []
    for ds in dsets:
        df = ctx.urls(m.url, ds.keys, ds.prefix)[0]
        tf = ctx.urls(ctx.tagd_url(), ds.keys, ds.prefix)[0] if ctx.tagd_available() else None
        direct, via = [], []
        for rep in range(p["reps_slow"]):
            seed = ctx.next_seed()
            seq = ["direct", "tagd"] if rep % 2 == 0 else ["tagd", "direct"]
            for what in seq:
                if what == "direct":
                    direct.append(_run_or_none(loads.s3get, ctx.state, df, conns=p["miss_conns"], seed=seed))
                elif tf:
                    ctx.tagd(m, fresh=True, need=[(ds.size, ds.count)])  # empty cache: every read is a miss
                    m0 = ctx.metrics()
                    r = _run_or_none(loads.s3get, ctx.state, tf, conns=p["miss_conns"], seed=seed)
                    if r:
                        r["cache"] = S.cache_delta(m0, ctx.metrics())
                        r["miss_ratio"] = (r["cache"]["x_cache"]["miss"] / sum(r["cache"]["x_cache"].values())
                                           if sum(r["cache"]["x_cache"].values()) else None)
                    via.append(r)
        r_ops = _paired_ratio(via, direct, "ops_s") if via else None

        def ttfb(runs):
            return median([r["ttfb_ms"]["p50"] for r in runs if r])
        rows.append([_size_label(ds.size), ds.count, p["miss_conns"], _med(direct, "ops_s"), _med(via, "ops_s"),
                     r_ops, ttfb(direct), ttfb(via),
                     median([r["ttlb_ms"]["p99"] for r in direct if r]), median([r["ttlb_ms"]["p99"] for r in via if r]),
                     _pct(_med(via, "miss_ratio"))])
        data[_size_label(ds.size)] = {"direct": direct, "tagd": via, "ratio_ops": r_ops}
        if r_ops is not None:
            head.append(f"{_size_label(ds.size)} {r_ops:.2f}")
    return {
        "id": "miss", "title": "7. Miss path on loopback: tagd cold vs direct to the same moto",
        "origin": "moto under waitress on loopback (2-4 ms of Python CPU per request: it bounds both columns)",
        "tagd": ctx.tagd_label(),
        "columns": ["size", "objects", "conns", "direct ops/s", "tagd ops/s", "tagd/direct",
                    "TTFB p50 ms direct", "TTFB p50 ms tagd", "p99 ms direct", "p99 ms tagd", "tagd MISS %"],
        "rows": rows,
        "headline": ("tagd/direct ops/s, every read a miss: " + ", ".join(head)) if head
        else f"tagd not measured: {ctx.tagd_label()}",
        "notes": ["Each run reads every object once (s3get, shuffled); tagd restarts with an empty cache "
                  "(a new folder) before each of its runs, so every read is a miss that streams the object "
                  "to the client while writing it to the cache (tagd MISS %: X-Cache MISS share, from /metrics)."],
        "data": data,
    }


# ================================================================== 3. epochs

def _upstream_bytes(srv, key_prefix, since_line=0):
    """Sums $body_bytes_sent for URIs starting with /bench/<key_prefix> in the
    origin's access log, from line since_line on; returns (bytes, requests, lines)."""
    total = reqs = 0
    n = 0
    want = f"/{D.BUCKET}/{key_prefix}"
    try:
        with open(srv.access_log) as f:
            for n, line in enumerate(f, 1):
                if n <= since_line:
                    continue
                parts = line.split(" ")
                if len(parts) >= 4 and parts[1].startswith(want):
                    total += int(parts[3])
                    reqs += 1
    except OSError:
        pass
    return total, reqs, n


def _log_lines(srv):
    try:
        with open(srv.access_log) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def epochs(ctx):
    p = ctx.p
    rows, data, heads = [], {}, []
    notes, origins = [], []
    for variant in p["epoch_variants"]:
        size, count, origin_kind = variant["size"], variant["count"], variant["origin"]
        ds = D.Dataset(ctx.www, f"epoch-{_size_label(size).lower()}", size, count).ensure()
        if origin_kind == "moto":
            up = ctx.moto_wan()
            ctx.upload(up, [ds])
        else:
            up = ctx.origin_wan()
        ng = ctx.nginx()
        files = {"direct": ctx.urls(up.url, ds.keys, ds.prefix)[0],
                 "nginx": ctx.urls(ng.url, ds.keys, ds.prefix)[0]}
        if ctx.tagd_available():
            files["tagd"] = ctx.urls(ctx.tagd_url(), ds.keys, ds.prefix)[0]
        runs = {"direct": [], "cold": [], "warm": [], "nginx": []}
        upbytes = {"cold": [], "warm": []}
        # nginx's files into the page cache and its open_file_cache, as tagd's are warm in epoch 2
        _run_or_none(loads.s3get, ctx.state, files["nginx"], conns=p["epoch_workers"])
        for rep in range(variant["reps"]):
            seq = ["direct", "tagd", "nginx"] if rep % 2 == 0 else ["nginx", "tagd", "direct"]
            for what in seq:
                if what == "tagd":
                    if "tagd" not in files:
                        continue
                    td = ctx.tagd(up, fresh=True, need=[(size, count)])
                    for phase in ("cold", "warm"):
                        mark = _log_lines(up) if getattr(up, "access_log", None) else 0
                        c0, m0 = cpu_seconds(td.pid), cpu_times()
                        met0 = ctx.metrics()
                        r = _run_or_none(loads.s3get, ctx.state, files["tagd"], conns=p["epoch_workers"],
                                         seed=ctx.next_seed())
                        if r:
                            r["tagd_cpu_s"] = cpu_seconds(td.pid) - c0
                            r["machine_busy"] = busy_fraction(m0, cpu_times())
                        if getattr(up, "access_log", None):
                            time.sleep(0.5)
                            upbytes[phase].append(_upstream_bytes(up, ds.prefix, mark)[0])
                        if r:
                            r["cache"] = S.cache_delta(met0, ctx.metrics())
                            r["hit_ratio"] = r["cache"]["hit_ratio"]
                            r["upstream_requests"] = r["cache"]["upstream_requests"]
                        runs[phase].append(r)
                        log(f"  epoch {_size_label(size)} tagd {phase} (same tagd, same cache folder): "
                            f"{fmt(r['wall_s']) if r else 'fail'} s, "
                            f"X-Cache {r['cache']['x_cache'] if r else '-'}, "
                            f"{r['upstream_requests'] if r else '-'} upstream requests")
                    if ctx.tagd_xcache is None:
                        ctx.tagd_xcache = ctx.probe_xcache(open(files["tagd"]).readline().strip())
                    ctx.stop_tagd()  # and delete its cache folder
                else:
                    m0 = cpu_times()
                    r = _run_or_none(loads.s3get, ctx.state, files[what], conns=p["epoch_workers"],
                                     seed=ctx.next_seed())
                    if r:
                        r["machine_busy"] = busy_fraction(m0, cpu_times())
                    runs[what].append(r)
                    log(f"  epoch {_size_label(size)} {what}: {fmt(r['wall_s']) if r else 'fail'} s")
        t = {k: _med(v, "wall_s") for k, v in runs.items()}
        speedup = _paired_ratio(runs["direct"], runs["warm"], "wall_s") if runs["warm"] else None
        warm_vs_nginx = _paired_ratio(runs["warm"], runs["nginx"], "wall_s") if runs["warm"] else None
        cold_over = _paired_ratio(runs["cold"], runs["direct"], "wall_s") if runs["cold"] else None
        label = f"{count} x {D.human(size)}"
        for k, name in (("direct", "direct to upstream over the WAN"), ("cold", "tagd epoch 1 (cold)"),
                        ("warm", "tagd epoch 2 (warm)"), ("nginx", "nginx static, local disk (the limit)")):
            rr = runs[k]
            if not rr:
                continue
            rows.append([label, name, t[k], _med(rr, "mib_s"),
                         median([r["ttfb_ms"]["p50"] for r in rr if r]),
                         median([r["ttlb_ms"]["p99"] for r in rr if r]),
                         median([r["errors"] + r["non2xx"] for r in rr if r]),
                         median(upbytes[k]) / ds.total_bytes() if upbytes.get(k) else None,
                         _pct(_med(rr, "hit_ratio")), _med(rr, "upstream_requests"),
                         _med(rr, "tagd_cpu_s"),
                         (100 * _med(rr, "machine_busy")) if _med(rr, "machine_busy") is not None else None])
        data[label] = {"runs": runs, "upstream_bytes": upbytes, "origin": up.name,
                       "warm_speedup_over_direct": speedup, "warm_over_nginx": warm_vs_nginx,
                       "cold_over_direct": cold_over}
        heads.append(f"{label}: warm speedup over direct {fmt(speedup)}x (warm hit ratio "
                     f"{fmt(_pct(_med(runs['warm'], 'hit_ratio')))} %), warm/nginx {fmt(warm_vs_nginx)}x, "
                     f"cold/direct {fmt(cold_over)}x")
        origins.append(f"{label}: {'moto under waitress' if origin_kind == 'moto' else 'nginx static'} "
                       f"inside the WAN namespace ({up.url})")
    notes.append("8 workers (s3get threads, keep-alive) read every object once per epoch in a fresh shuffled "
                 "order. tagd starts with an empty cache folder before epoch 1 (cold); epoch 2 (warm) runs on the "
                 "same tagd process and cache. tagd hit %: X-Cache HIT share of the epoch's GETs and tagd "
                 "upstream requests, both from tagd's /metrics; upstream bytes from the origin's access log "
                 "(nginx origin only: moto keeps none).")
    notes.append("TAG's published warm speedup on its ViT benchmark: 5.7x.")
    if ctx.tagd_xcache != "HIT" and ctx.tagd_available():
        notes.insert(0, "tagd has no cache yet: epoch 2 is pass-through over the WAN like epoch 1, so the "
                        "'warm speedup' is ~1 by construction.")
    return {
        "id": "epoch", "title": "3. Training epochs over the emulated WAN",
        "origin": "; ".join(origins),
        "tagd": ctx.tagd_label(),
        "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["dataset", "configuration", "epoch s", "MiB/s", "TTFB p50 ms", "p99 ms",
                    "errors", "upstream bytes / dataset (origin log)", "tagd hit %", "tagd upstream requests",
                    "tagd CPU s", "machine CPU busy %"],
        "rows": rows,
        "headline": "; ".join(heads),
        "notes": notes,
        "data": data,
    }


# ================================================================== 4. herd

def herd(ctx):
    p = ctx.p
    size = p["herd_size"]
    n = p["herd_clients"]
    cap = p["herd_cap_s"]
    up = ctx.origin_wan()
    base = D.big_object(ctx.www, size, "herd")
    single, crowd, herd_runs, amp = [], [], [], []

    def last_s(r):
        """Time to last byte of the slowest client, or None if not all finished."""
        if not r or r["ok"] < r["requests"] or r["requests"] < n:
            return None
        return r["ttlb_ms"]["max"] / 1000

    for rep in range(p["herd_reps"]):
        tag = f"{os.getpid()}-{ctx.next_seed()}"
        k_direct = D.cold_alias(ctx.www, base, f"d{tag}")
        k_herd = D.cold_alias(ctx.www, base, f"h{tag}")
        seq = ["direct", "crowd", "herd"] if rep % 2 == 0 else ["herd", "crowd", "direct"]
        for what in seq:
            if what == "direct":
                uf = ctx.urls(up.url, [k_direct], k_direct.replace("/", "_"))[0]
                single.append(_run_or_none(loads.s3get, ctx.state, uf, conns=1))
                log(f"  herd: single direct read {fmt(single[-1]['wall_s']) if single[-1] else 'fail'} s")
            elif what == "crowd":
                # the same 32 clients straight to the origin: what the WAN line carries at most
                uf = ctx.urls(up.url, [k_direct] * n, k_direct.replace("/", "_") + "-crowd")[0]
                r = _run_or_none(loads.s3get, ctx.state, uf, conns=n, duration=cap)
                crowd.append(r)
                log(f"  herd: {n} clients direct: last byte {fmt(last_s(r))} s")
            elif ctx.tagd_available():
                ctx.tagd(up, fresh=True, need=[(size, 1)])
                uf = ctx.urls(ctx.tagd_url(), [k_herd] * n, k_herd.replace("/", "_") + "-herd")[0]
                mark = _log_lines(up)
                met0 = ctx.metrics()
                r = _run_or_none(loads.s3get, ctx.state, uf, conns=n, duration=cap)
                if r:
                    r["cache"] = S.cache_delta(met0, ctx.metrics())
                ctx.stop_tagd()  # ends any upstream transfer still running, so the log is complete
                time.sleep(0.5)
                b, nreq, _ = _upstream_bytes(up, k_herd, mark)
                if r:
                    r["upstream_bytes"] = b
                    r["upstream_requests"] = nreq
                herd_runs.append(r)
                # a run cut at the cap fetched only part: count what a complete run would have
                done_frac = (r["bytes"] / (size * n)) if r and r["bytes"] else 1.0
                amp.append(b / size if done_frac >= 0.999 else None)
                log(f"  herd: {n} clients via tagd: last byte {fmt(last_s(r))} s, "
                    f"{r['ok'] if r else 0}/{n} complete within {cap} s, upstream bytes {b / size:.2f}x object "
                    f"in {nreq} requests; tagd X-Cache {r['cache']['x_cache'] if r else '-'}")
        D.drop_alias(ctx.www, k_direct)
        D.drop_alias(ctx.www, k_herd)
    t_single = median([r["ttlb_ms"]["max"] / 1000 for r in single if r])
    t_crowd = median([last_s(r) for r in crowd])
    t_last = median([last_s(r) for r in herd_runs])
    done = median([r["ok"] for r in herd_runs if r])
    a = median(amp)
    b_cut = median([r["upstream_bytes"] / size for r in herd_runs if r])
    t_p50 = median([r["ttlb_ms"]["p50"] / 1000 for r in herd_runs if r and r["ok"]])
    ttfb = median([r["ttfb_ms"]["p50"] for r in herd_runs if r and r["ok"]])
    cut = t_last is None and herd_runs
    rows = [[D.human(size), n, f"{int(done)}/{n}" if herd_runs and done is not None else "-",
             a if a is not None else (f">= {fmt(b_cut)} (cut at {cap} s)" if herd_runs else None),
             t_single, t_crowd, t_p50, t_last if t_last is not None else (f"> {cap}" if cut else None),
             ratio(t_last, t_single), ttfb]]
    xc = [r["cache"] for r in herd_runs if r and r.get("cache")]
    ureq = median([r.get("upstream_requests") for r in herd_runs if r])
    head_amp = fmt(a) if a is not None else (f">= {fmt(b_cut)} (run cut at {cap} s)" if herd_runs else "-")
    head_t = fmt(ratio(t_last, t_single)) if t_last is not None else (f"> {fmt(cap / t_single) if t_single else '-'}"
                                                                       if cut else "-")
    return {
        "id": "herd", "title": f"4. Thundering herd: {n} clients read one cold object at once",
        "origin": f"nginx static inside the WAN namespace ({up.url}); bytes counted from its access log "
                  "($body_bytes_sent)",
        "tagd": ctx.tagd_label(),
        "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["object", "clients", "complete", "upstream bytes / object", "single direct read s",
                    f"{n} clients direct, last s", "herd via tagd TTLB p50 s", "herd via tagd last s",
                    "last / single direct", "herd TTFB p50 ms"],
        "rows": rows,
        "headline": f"upstream bytes / object size = {head_amp} (ideal 1.0); herd last byte / single direct read "
                    f"= {head_t}",
        "notes": ["Each repetition uses a new key (a hard link to the same file), so it is cold for tagd, "
                  "and tagd restarts with an empty cache.",
                  f"'{n} clients direct' is the same herd sent straight to the origin: what the emulated WAN line "
                  "carries for 32 streams on this machine (the WAN delay line is a user-space process sharing "
                  "the 2 cores)."] +
                 ([f"tagd's answers to the herd (last repetition): X-Cache {xc[-1]['x_cache']}, "
                   f"{xc[-1]['joined_fills']} block reads joined a fill in progress; the origin saw "
                   f"{fmt(ureq)} request(s) for the key (median)."] if xc else []) +
                 ([f"tagd has no cache yet: every client's GET is forwarded, so the upstream sends the object "
                   f"{n} times."] if ctx.tagd_xcache != "HIT" and ctx.tagd_available() else []),
        "data": {"single_direct": single, "crowd_direct": crowd, "herd": herd_runs, "amplification": amp},
    }


# ================================================================== 5. large cold object

def large_cold(ctx):
    p = ctx.p
    size = p["large_size"]
    up = ctx.origin_wan()
    base = D.big_object(ctx.www, size, "large")
    direct, via, warm, amp, amp_warm = [], [], [], [], []
    for rep in range(p["reps_slow"]):
        tag = f"{os.getpid()}-{ctx.next_seed()}"
        key = D.cold_alias(ctx.www, base, f"l{tag}")
        seq = ["direct", "tagd"] if rep % 2 == 0 else ["tagd", "direct"]
        for what in seq:
            if what == "direct":
                uf = ctx.urls(up.url, [key], key.replace("/", "_"))[0]
                m0 = cpu_times()
                direct.append(_run_or_none(loads.s3get, ctx.state, uf, conns=1))
                if direct[-1]:
                    direct[-1]["machine_busy"] = busy_fraction(m0, cpu_times())
                log(f"  large: direct {fmt(direct[-1]['wall_s']) if direct[-1] else 'fail'} s")
            elif ctx.tagd_available():
                td = ctx.tagd(up, fresh=True, need=[(size, 1)])
                uf = ctx.urls(ctx.tagd_url(), [key], key.replace("/", "_"))[0]
                # cold read (empty cache), then the same object again from the same tagd (warm)
                for phase, runs, amps in (("cold", via, amp), ("warm", warm, amp_warm)):
                    mark = _log_lines(up)
                    c0, m0, met0 = cpu_seconds(td.pid), cpu_times(), ctx.metrics()
                    r = _run_or_none(loads.s3get, ctx.state, uf, conns=1)
                    if r:
                        r["tagd_cpu_s"] = cpu_seconds(td.pid) - c0
                        r["machine_busy"] = busy_fraction(m0, cpu_times())
                    time.sleep(0.5)  # a cold fill may still be writing its last block
                    if r:
                        r["cache"] = S.cache_delta(met0, ctx.metrics())
                    b = _upstream_bytes(up, key, mark)[0]
                    runs.append(r)
                    amps.append(b / size)
                    log(f"  large: tagd {phase} {fmt(r['wall_s']) if r else 'fail'} s, upstream bytes "
                        f"{b / size:.2f}x, X-Cache {r['cache']['x_cache'] if r else '-'}")
                ctx.stop_tagd()
        D.drop_alias(ctx.www, key)
    rows = []
    for name, rr, aa in (("direct single-stream GET", direct, None), ("through tagd, cold", via, amp),
                         ("through tagd, warm (second read)", warm, amp_warm)):
        if rr:
            busy = _med(rr, "machine_busy")
            gib = size / GiB
            cpu = _med(rr, "tagd_cpu_s")
            rows.append([D.human(size), name, median([r["ttlb_ms"]["max"] / 1000 for r in rr if r]),
                         _med(rr, "mib_s"), median([r["ttfb_ms"]["p50"] for r in rr if r]),
                         median(aa) if aa is not None else None, cpu, cpu / gib if cpu is not None else None,
                         100 * busy if busy is not None else None])
    rt = _paired_ratio(via, direct, "wall_s") if via else None
    rw = _paired_ratio(warm, direct, "wall_s") if warm else None
    return {
        "id": "large", "title": "5. Large cold object over the WAN, one client",
        "origin": f"nginx static inside the WAN namespace ({up.url})",
        "tagd": ctx.tagd_label(),
        "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["object", "path", "time s", "MiB/s", "TTFB ms", "upstream bytes / object", "tagd CPU s",
                    "tagd CPU s/GiB", "machine CPU busy %"],
        "rows": rows,
        "headline": (f"tagd cold / direct time = {fmt(rt)} (below 1 means tagd is faster); "
                     f"warm (second read) / direct = {fmt(rw)}") if rt is not None
        else f"tagd not measured: {ctx.tagd_label()}",
        "notes": ["A single TCP stream over 50 ms RTT tops out near 42 MB/s; a cache that fetches with "
                  "parallel ranges can beat it. tagd streams a whole-object miss in one upstream GET.",
                  "The warm row reads the same object again from the same tagd right after the cold read "
                  "(upstream bytes from the origin's access log should be 0)."],
        "data": {"direct": direct, "tagd": via, "tagd_warm": warm, "upstream_amplification": amp,
                 "upstream_amplification_warm": amp_warm, "ratio_time": rt, "ratio_time_warm": rw},
    }


# ================================================================== 6. memory

def memory(ctx):
    """1,000 connections streaming one large object (fast readers and slow,
    rate-limited ones), tagd's RSS against issue 9's bound: 256 MiB + the DRAM tier."""
    p = ctx.p
    origin = ctx.origin_lo()
    rows, data = [], {}
    peaks, ratios = [], []
    if not ctx.tagd_available():
        return {"id": "memory", "title": "6. Memory under load", "origin": origin.url,
                "tagd": ctx.tagd_label(), "columns": ["object"], "rows": [],
                "headline": f"tagd not measured: {ctx.tagd_label()}", "notes": [], "data": {}}
    fast, slow, dur = p["mem_fast"], p["mem_slow"], p["mem_duration"]
    bound_mib = None
    for size in p["mem_sizes"]:
        key = D.big_object(ctx.www, size, "mem")
        t = ctx.tagd(origin, fresh=True, need=[(size, 1)])
        bound_mib = RSS_GOAL_BASE_MIB + t.cache_memory_bytes / MiB
        uf, tf = ctx.urls(ctx.tagd_url(), [key] * 4, key.replace("/", "_") + "-mem")
        idle = proc_status_kib(t.pid, "VmRSS")
        reset_hwm(t.pid)
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                v = proc_status_kib(t.pid, "VmRSS")
                if v:
                    samples.append(v)
                time.sleep(0.25)
        th = threading.Thread(target=sample, daemon=True)
        met0 = ctx.metrics()
        th.start()
        sp = loads.s3get(ctx.state, uf, conns=slow, count=10 ** 6, duration=dur, rate=p["mem_slow_rate"],
                         rcvbuf=16384, background=True)
        w = _run_or_none(loads.wrk, t.url, tf, fast, dur, timeout_s=dur + 5)
        rss_loaded = proc_status_kib(t.pid, "VmRSS")  # the slow readers are still connected
        sr = _run_or_none(loads.s3get_wait, sp)
        stop.set()
        th.join()
        hwm = proc_status_kib(t.pid, "VmHWM")
        alive = t.alive()
        cd = S.cache_delta(met0, ctx.metrics()) if alive else None
        peaks.append(hwm)
        r_hwm = (hwm or 0) / 1024 / bound_mib
        ratios.append(r_hwm)
        rows.append([D.human(size), fast + slow, slow, (idle or 0) / 1024, (rss_loaded or 0) / 1024,
                     (max(samples) if samples else 0) / 1024, (hwm or 0) / 1024, bound_mib, r_hwm,
                     goal_met(r_hwm, "<=", 1.0) if alive else "NO (died)",
                     w["mib_s"] if w else None, (sr["bytes"] / MiB) if sr else None,
                     _pct(cd["hit_ratio"]) if cd else None, "yes" if alive else "NO (died)"])
        data[D.human(size)] = {"wrk_fast": w, "s3get_slow": sr, "idle_rss_kib": idle, "vmhwm_kib": hwm,
                               "vmrss_loaded_kib": rss_loaded, "bound_mib": bound_mib, "ratio_hwm_bound": r_hwm,
                               "dram_tier": t.cache_memory, "block_file": t.cache_size,
                               "rss_samples_kib": samples[::4], "alive": alive, "cache": cd}
        ctx.stop_tagd()
        log(f"  memory {D.human(size)}: peak RSS {fmt((hwm or 0) / 1024)} MiB (bound {fmt(bound_mib)} MiB), "
            f"X-Cache {cd['x_cache'] if cd else '-'}")
    grow = ratio(peaks[-1], peaks[0]) if len(peaks) > 1 and peaks[0] else None
    worst = max(ratios) if ratios else None
    return {
        "id": "memory", "title": "6. Memory under load: 1,000 connections streaming large objects",
        "origin": f"nginx static origin on loopback ({origin.url})",
        "tagd": ctx.tagd_label(),
        "columns": ["object", "connections", "of which slow", "idle RSS MiB", "VmRSS under load MiB",
                    "max sampled RSS MiB", "peak RSS MiB (VmHWM)", "bound MiB (256 + DRAM tier)", "VmHWM / bound",
                    "met (≤ 1)", "fast readers MiB/s", "slow readers MiB total", "tagd hit %", "tagd alive"],
        "rows": rows,
        "headline": f"peak RSS (VmHWM) / (256 MiB + DRAM tier) = {fmt(worst)} (goal ≤ 1: {goal_met(worst, '<=', 1.0)}); "
                    f"peak {fmt((peaks[-1] or 0) / 1024)} MiB with {D.human(p['mem_sizes'][-1])} objects, "
                    f"growth vs {D.human(p['mem_sizes'][0])} objects {fmt(grow)}x",
        "goals": {"rss": {"metric": "VmHWM / (256 MiB + DRAM tier)", "ratio": worst, "goal": "<= 1.0",
                          "met": goal_met(worst, "<=", 1.0)}},
        "notes": [f"{fast} fast connections (wrk) and {slow} slow readers (s3get, {p['mem_slow_rate'] // 1024} KiB/s "
                  f"each, 16 KiB receive buffer) for {dur} s; VmHWM from /proc/PID/status, reset via "
                  "clear_refs before each object size; VmRSS under load read when the fast load ends (the slow "
                  "readers still connected); tagd restarted per size with an empty cache.",
                  "Every connection reads the same object, so the first GET is a miss that streams it from the "
                  "origin into the cache and the rest join that fill or hit. RSS includes the DRAM tier of hot "
                  "blocks, which fills up to the smaller of its size and the object's: issue 9's bound is "
                  "256 MiB + the DRAM tier."],
        "data": data,
    }


RSS_GOAL_BASE_MIB = 256


# ================================================================== 8. warm 1 GiB object, one client

def _contender_run(ctx, what, srv, drop_pages, reread, run):
    """One measured run of a warm scenario's contender: "nginx" (its files read again just
    before: the page cache), "nginx_disk" (their pages dropped first: from disk) or "tagd".
    Adds the server's CPU (nginx's workers included), the machine's busy fraction, the
    server's disk reads per byte served and, for tagd, the cache counters' deltas."""
    is_nginx = what != "tagd"
    if what == "nginx_disk":
        drop_pages()
    elif what == "nginx":
        reread()
    c0, m0 = cpu_seconds(srv.pid, with_children=is_nginx), cpu_times()
    met0 = None if is_nginx else ctx.metrics()
    io0 = _io_read_with_children(srv.pid)
    r = run()
    if r:
        io1 = _io_read_with_children(srv.pid)
        r["disk_read_per_served"] = (io1 - io0) / r["bytes"] if None not in (io0, io1) and r["bytes"] else None
        r["cpu_s"] = cpu_seconds(srv.pid, with_children=is_nginx) - c0
        r["cpu_us_per_req"] = 1e6 * r["cpu_s"] / r["ok"] if r["ok"] else None
        r["machine_busy"] = busy_fraction(m0, cpu_times())
        if not is_nginx:
            r["cache"] = S.cache_delta(met0, ctx.metrics())
            r["hit_ratio"] = r["cache"]["hit_ratio"]
    return r


def warm_large(ctx):
    """One large object read whole by one client: tagd warm (filled, then
    checked all-HIT) against nginx sendfile of the same file (in the page
    cache), alternating, MiB/s ratio."""
    p = ctx.p
    size = p["warm_large_size"]
    title = f"8. Warm {D.human(size)} object, one client, vs nginx sendfile"
    origin = ctx.origin_lo()
    ng = ctx.nginx()
    key = D.big_object(ctx.www, size, "warm")
    uf_n = ctx.urls(ng.url, [key], key.replace("/", "_"))[0]
    _run_or_none(loads.s3get, ctx.state, uf_n, conns=1)  # the file into the page cache
    if not ctx.tagd_available():
        return {"id": "warm1g", "title": title, "origin": origin.url, "tagd": ctx.tagd_label(), "columns": ["x"],
                "rows": [], "headline": f"tagd not measured: {ctx.tagd_label()}", "notes": [], "data": {}}
    td = ctx.tagd(origin, fresh=True, need=[(size, 1)])
    uf_t = ctx.urls(ctx.tagd_url(), [key], key.replace("/", "_"))[0]
    warm = []
    for i in range(3):  # fill, then read again until a read is one HIT and no upstream request
        m0 = ctx.metrics()
        r = _run_or_none(loads.s3get, ctx.state, uf_t, conns=1)
        d = S.cache_delta(m0, ctx.metrics())
        warm.append({"read": i + 1, "wall_s": r["wall_s"] if r else None, "cache": d})
        log(f"  warm {D.human(size)}: read {i + 1} through tagd {fmt(r['wall_s']) if r else 'fail'} s, "
            f"X-Cache {d['x_cache']}, {d['upstream_requests']} upstream requests")
        if i and d["x_cache"]["hit"] >= 1 and d["upstream_requests"] == 0:
            break
    path = os.path.join(ctx.www, D.BUCKET, key)
    runs = {"nginx": [], "nginx_disk": [], "tagd": []}
    for rep in range(p["warm_large_reps"]):
        for what in _order(["nginx", "nginx_disk", "tagd"], rep):
            uf = uf_t if what == "tagd" else uf_n
            runs[what].append(_contender_run(
                ctx, what, td if what == "tagd" else ng,
                drop_pages=lambda: D.drop_from_page_cache(path),
                reread=lambda: _run_or_none(loads.s3get, ctx.state, uf_n, conns=1),
                run=lambda: _run_or_none(loads.s3get, ctx.state, uf, conns=1)))
        last = {w: (fmt(rs[-1]["mib_s"]) if rs[-1] else "fail") for w, rs in runs.items()}
        log(f"  warm {D.human(size)} rep {rep + 1}: nginx {last['nginx']} MiB/s (page cache), "
            f"{last['nginx_disk']} MiB/s (from disk), tagd {last['tagd']} MiB/s")
    tc = {"block_file": td.cache_size, "dram_tier": td.cache_memory}
    ctx.stop_tagd()
    rr = _paired_ratio(runs["tagd"], runs["nginx"], "mib_s")
    rr_disk = _paired_ratio(runs["tagd"], runs["nginx_disk"], "mib_s")
    rows = []
    for what, label in (("nginx", "nginx static, sendfile (page cache)"),
                        ("nginx_disk", "nginx static, sendfile (pages dropped: from disk)"),
                        ("tagd", "tagd, warm (cache hits)")):
        rs = runs[what]
        rows.append([D.human(size), label, _med(rs, "mib_s"), _med(rs, "wall_s"),
                     median([r["ttfb_ms"]["p50"] for r in rs if r]), _med(rs, "cpu_s"),
                     (_med(rs, "cpu_s") / (size / GiB)) if _med(rs, "cpu_s") is not None else None,
                     _pct(median([r["cache"]["hit_ratio"] for r in rs if r and r.get("cache")])) if what == "tagd"
                     else None,
                     _med(rs, "disk_read_per_served"),
                     rr if what == "tagd" else None, rr_disk if what == "tagd" else None])
    met = goal_met(rr, ">=", 0.9)
    return {
        "id": "warm1g", "title": title,
        "origin": f"tagd's upstream: nginx static origin on loopback ({origin.url}); the baseline: nginx static "
                  f"({ng.url}) serving the same file",
        "tagd": ctx.tagd_label(),
        "columns": ["object", "server", "MiB/s", "time s", "TTFB ms", "server CPU s", "CPU s/GiB", "tagd hit %",
                    "disk read / served", "tagd/nginx MiB/s", "tagd/nginx-from-disk MiB/s"],
        "rows": rows,
        "headline": f"tagd/nginx MiB/s, one client, warm {D.human(size)} object = {fmt(rr)} (goal ≥ 0.9: {met}); "
                    f"{fmt(rr_disk)} against nginx reading the file from disk",
        "goals": {"warm1g": {"metric": "mib_s", "ratio": rr, "goal": ">= 0.9", "met": met},
                  "warm1g_from_disk": {"metric": "mib_s vs nginx from disk", "ratio": rr_disk, "goal": "reported",
                                       "met": "-"}},
        "notes": [f"tagd started empty (block file {tc['block_file']}, DRAM tier {tc['dram_tier']}), read the object "
                  "once (a miss that fills the cache) and again until a read was one X-Cache HIT with no upstream "
                  f"request: {[(w['read'], w['cache']['x_cache']['hit'], w['cache']['upstream_requests']) for w in warm]} "
                  "(read, hits, upstream requests).",
                  f"Then {p['warm_large_reps']} rounds of whole-object GETs (s3get, one connection), the order "
                  "rotated; each ratio is the median of the per-round ratios. nginx (the goal's baseline) reads the "
                  "file from the page cache (read once just before); nginx from disk has the file's pages dropped "
                  "first (posix_fadvise DONTNEED). disk read / served: how much of the object the server read from "
                  "its block device (/proc/PID/io) rather than memory."],
        "data": {"runs": runs, "warm_up": warm, "ratio_mib_s": rr, "ratio_mib_s_from_disk": rr_disk,
                 "tagd_cache": tc},
    }


# ================================================================== 9. warm epoch, DRAM tier a quarter of the data

def warm_epoch(ctx):
    """A training epoch on a warm tagd whose DRAM tier holds at most a quarter
    of the dataset (so most hits come from the block file), 8 readers,
    shuffled, every object once; against nginx serving the same files from
    local disk (their pages dropped from the page cache before each of its
    epochs: issue 9's goal) and against nginx with all of them in the page
    cache (4x tagd's memory), rotating, time ratios."""
    p = ctx.p
    size, count = p["wepoch_size"], p["wepoch_count"]
    ds = D.Dataset(ctx.www, f"epoch-{_size_label(size).lower()}", size, count).ensure()
    dram_mib = max(16, int(ds.total_bytes() / 4 // MiB))
    dram = f"{dram_mib}MiB"
    label = f"{count:,} x {D.human(size)}"
    title = f"9. Warm epoch, {label}, DRAM tier ≤ 1/4 of the data, vs nginx from local disk"
    origin = ctx.origin_lo()
    ng = ctx.nginx()
    uf_n = ctx.urls(ng.url, ds.keys, ds.prefix)[0]
    workers = p["epoch_workers"]
    _run_or_none(loads.s3get, ctx.state, uf_n, conns=workers)  # the files into the page cache
    if not ctx.tagd_available():
        return {"id": "warmepoch", "title": title, "origin": origin.url, "tagd": ctx.tagd_label(),
                "columns": ["x"], "rows": [], "headline": f"tagd not measured: {ctx.tagd_label()}", "notes": [],
                "data": {}}
    td = ctx.tagd(origin, fresh=True, need=[(size, count)], memory=dram)
    uf_t = ctx.urls(ctx.tagd_url(), ds.keys, ds.prefix)[0]
    m0 = ctx.metrics()
    fill = _run_or_none(loads.s3get, ctx.state, uf_t, conns=workers, seed=ctx.next_seed())
    fill_cache = S.cache_delta(m0, ctx.metrics())
    log(f"  warm epoch: fill (epoch 0, cold) {fmt(fill['wall_s']) if fill else 'fail'} s, "
        f"X-Cache {fill_cache['x_cache']}")
    runs = {"nginx_disk": [], "nginx": [], "tagd": []}
    for rep in range(p["wepoch_reps"]):
        seed = ctx.next_seed()  # the same shuffled order for all in a round
        for what in _order(["nginx_disk", "nginx", "tagd"], rep):
            uf = uf_t if what == "tagd" else uf_n
            runs[what].append(_contender_run(
                ctx, what, td if what == "tagd" else ng,
                drop_pages=ds.drop_from_page_cache,
                reread=lambda: _run_or_none(loads.s3get, ctx.state, uf_n, conns=workers),
                run=lambda: _run_or_none(loads.s3get, ctx.state, uf, conns=workers, seed=seed)))
        last = {w: (fmt(rs[-1]["wall_s"]) if rs[-1] else "fail") for w, rs in runs.items()}
        log(f"  warm epoch rep {rep + 1}: nginx from disk {last['nginx_disk']} s, nginx from the page cache "
            f"{last['nginx']} s, tagd {last['tagd']} s, X-Cache "
            f"{runs['tagd'][-1]['cache']['x_cache'] if runs['tagd'][-1] else '-'}")
    tc = {"block_file": td.cache_size, "dram_tier": td.cache_memory, "dataset_bytes": ds.total_bytes(),
          "dataset_over_dram": ds.total_bytes() / (dram_mib * MiB)}
    ctx.stop_tagd()
    rt = _paired_ratio(runs["tagd"], runs["nginx_disk"], "wall_s")
    rt_pc = _paired_ratio(runs["tagd"], runs["nginx"], "wall_s")
    met = goal_met(rt, "<=", 1.3)
    rows = []
    for what, name in (("nginx_disk", "nginx static, local disk (pages dropped)"),
                       ("nginx", "nginx static, page cache (all data in RAM)"),
                       ("tagd", f"tagd warm, DRAM tier {dram}")):
        rs = runs[what]
        busy = _med(rs, "machine_busy")
        rows.append([label, name, _med(rs, "wall_s"), _med(rs, "mib_s"),
                     median([r["ttfb_ms"]["p50"] for r in rs if r]), median([r["ttlb_ms"]["p99"] for r in rs if r]),
                     median([r["errors"] + r["non2xx"] for r in rs if r]),
                     _pct(_med(rs, "hit_ratio")) if what == "tagd" else None,
                     _med(rs, "disk_read_per_served"),
                     _med(rs, "cpu_us_per_req"), 100 * busy if busy is not None else None,
                     rt if what == "tagd" else None, rt_pc if what == "tagd" else None])
    return {
        "id": "warmepoch", "title": title,
        "origin": f"tagd's upstream: nginx static origin on loopback ({origin.url}); the baseline: nginx static "
                  f"({ng.url}) serving the same files",
        "tagd": ctx.tagd_label(),
        "columns": ["dataset", "configuration", "epoch s", "MiB/s", "TTFB p50 ms", "p99 ms", "errors", "tagd hit %",
                    "disk read / served", "server CPU µs/req", "machine CPU busy %", "tagd/nginx-disk time",
                    "tagd/nginx-page-cache time"],
        "rows": rows,
        "headline": f"{label}, dataset {fmt(tc['dataset_over_dram'])}x the DRAM tier: tagd/nginx epoch time = "
                    f"{fmt(rt)} against nginx from local disk (goal ≤ 1.3: {met}), {fmt(rt_pc)} against nginx "
                    "with the whole dataset in the page cache",
        "goals": {"warmepoch": {"metric": "epoch time vs nginx from disk", "ratio": rt, "goal": "<= 1.3", "met": met},
                  "warmepoch_page_cache": {"metric": "epoch time vs nginx from the page cache", "ratio": rt_pc,
                                           "goal": "reported", "met": "-"}},
        "notes": [f"tagd started empty with a DRAM tier of {dram} (--cache-memory-size; the dataset is "
                  f"{fmt(tc['dataset_over_dram'])}x that) and a {tc['block_file']} block file; epoch 0 filled it "
                  f"from the loopback origin ({fmt(fill['wall_s']) if fill else '-'} s, X-Cache "
                  f"{fill_cache['x_cache']}).",
                  f"Then {p['wepoch_reps']} rounds of epochs, the order rotated: {workers} readers (s3get, "
                  "keep-alive), every object once in a shuffled order that is new for every round and the same "
                  "within it; the ratio is "
                  "the median of the per-round time ratios. nginx from local disk: the files' pages are dropped "
                  "from the page cache (posix_fadvise DONTNEED) before each of its epochs, so it reads them from the "
                  "disk, as tagd reads the three quarters its DRAM tier does not hold (issue 9's goal). nginx from "
                  "the page cache: every file read once just before, so it serves 4x tagd's memory from RAM "
                  "(reported beside it).",
                  "disk read / served: bytes the server read from its block device (/proc/PID/io, nginx's "
                  "workers included) per byte served."],
        "data": {"runs": runs, "fill": fill, "fill_cache": fill_cache, "ratio_time": rt,
                 "ratio_time_page_cache": rt_pc, "tagd_cache": tc},
    }


# ================================================================== 10. sockets: io_uring vs epoll builds

def sockets(ctx):
    """The same hit load against two tagds at once: TAGD_BIN with io_uring=auto (it
    execs the tagd-uring beside it: sockets on io_uring) and TAGD_BIN with io_uring=disk
    (sockets on epoll, cache reads on io_uring), with nginx static as the common
    reference, rotating their order."""
    p = ctx.p
    title = "10. Sockets on io_uring vs epoll: the same hits, tagd-uring and tagd"
    skip = None
    if not ctx.tagd_available():
        skip = f"tagd not available: {ctx.tagd_label()}"
    elif not os.path.exists(os.path.join(os.path.dirname(ctx.tagd_cfg.binary), "tagd-uring")):
        skip = f"skipped: no tagd-uring beside {ctx.args.tagd_bin} (a build with TAGD_URING_SIBLING=OFF?)"
    if skip:
        log(f"  sockets: {skip}")
        return {"id": "sockets", "title": title, "origin": "-", "tagd": ctx.tagd_label(), "columns": ["-"],
                "rows": [], "headline": skip, "notes": [], "data": {"skipped": skip}}
    sizes = p["sockets_sizes"]
    dsets = _hit_datasets(ctx, sizes)
    need = [(ds.size, ds.count) for ds in dsets]
    origin = ctx.origin_lo()
    ng = ctx.nginx()
    ctx.stop_tagd()
    tagds = {}
    try:
        for name, io_uring in (("epoll", "disk"), ("io_uring", "auto")):
            tagds[name] = S.tagd(ctx.state, ctx.tagd_cfg, origin.url, cache_size=S.cache_size_for(need),
                                 name=f"tagd-{name.replace('_', '')}", extra_args=["--io-uring", io_uring])
        servers = {"nginx": ng, **tagds}
        mfn = {name: (lambda s=s: S.tagd_metrics(s.port)) for name, s in tagds.items()}
        files = {(t, ds.size): ctx.urls(servers[t].url, ds.keys, ds.prefix) for t in servers for ds in dsets}
        warm = {name: _warm_tagd(ctx, name, dsets, {ds.size: files[(name, ds.size)][0] for ds in dsets}, mfn[name])
                for name in tagds}
        modes = {name: S.tagd_mode(mfn[name]()) for name in tagds}
        runs = {}
        for ds in dsets:
            for conns in p["hit_conns"]:
                for rep in range(p["reps"]):
                    seq = _order(list(servers), rep)
                    seed = ctx.next_seed()
                    for t in seq:
                        r = _timed_wrk(ctx, servers[t], files[(t, ds.size)][1], conns, seed,
                                       tagd_metrics=mfn.get(t), with_children=t == "nginx")
                        runs.setdefault((t, ds.size, conns), []).append(r)
                    log(f"  sockets {_size_label(ds.size)} c{conns} rep{rep + 1}: " + ", ".join(
                        f"{t} {fmt(runs[(t, ds.size, conns)][-1]['ops_s']) if runs[(t, ds.size, conns)][-1] else 'fail'}"
                        for t in seq) + " ops/s")
        modes = {name: S.tagd_mode(mfn[name]()) for name in tagds}  # after the load: the disk ring is up
        tc = {name: {"block_file": s.cache_size, "dram_tier": s.cache_memory} for name, s in tagds.items()}
    finally:
        for s in tagds.values():
            S.stop_tagd(s)
    rows, data, head = [], {}, []
    for ds in dsets:
        sz = ds.size
        for conns in p["hit_conns"]:
            e = runs.get(("epoll", sz, conns), [])
            u = runs.get(("io_uring", sz, conns), [])
            n = runs.get(("nginx", sz, conns), [])
            r_ops = _paired_ratio(u, e, "ops_s")
            r_p99 = _paired_ratio(u, e, "p99_ms")
            r_cpu = _paired_ratio(u, e, "cpu_us_per_req")
            rows.append([_size_label(sz), conns, _med(n, "ops_s"), _med(e, "ops_s"), _med(u, "ops_s"), r_ops,
                         _med(e, "p99_ms"), _med(u, "p99_ms"), r_p99,
                         _med(e, "cpu_us_per_req"), _med(u, "cpu_us_per_req"), r_cpu,
                         _paired_ratio(e, n, "ops_s"), _paired_ratio(u, n, "ops_s"),
                         f"{fmt(_pct(_med(e, 'hit_ratio')))}/{fmt(_pct(_med(u, 'hit_ratio')))}"])
            key = f"{_size_label(sz)}/c{conns}"
            data[key] = {"nginx": n, "epoll": e, "io_uring": u, "ratio_ops_s": r_ops, "ratio_p99": r_p99,
                         "ratio_cpu_us_per_req": r_cpu}
            if r_ops is not None:
                head.append(f"{key} ops {r_ops:.2f} p99 {fmt(r_p99)} CPU/req {fmt(r_cpu)}")
    mode_text = "; ".join(f"{name} build: {S.mode_text(m)}" for name, m in modes.items())
    notes = [f"Both tagds run at the same time in front of the same loopback origin, each with its own empty cache "
             f"({tc['epoll']['block_file']} block file, DRAM tier {tc['epoll']['dram_tier']}), warmed (every object "
             "read once, then again and counted: " +
             "; ".join(f"{name}: " + ", ".join(f"{D.human(k)} {v['x_cache']['hit']}/{v['objects']} HIT"
                                               for k, v in w.items()) for name, w in warm.items()) + ").",
             "Every repetition runs nginx, the epoll build and the io_uring build back to back in a rotating order; "
             "ratios are io_uring / epoll per repetition, median over repetitions (above 1 for ops/s means io_uring "
             "is faster; below 1 for p99 and CPU µs/req means io_uring is better).",
             f"Binaries (run from a snapshot copy of {ctx.args.tagd_bin} and its tagd-uring): epoll = tagd "
             "--io-uring disk, io_uring = tagd --io-uring auto (execs tagd-uring)."]
    if modes.get("io_uring", {}).get("sockets") == "epoll":
        notes.insert(0, "WARNING: the io_uring=auto tagd reports tagd_io_uring_sockets 0: io_uring is refused here.")
    return {
        "id": "sockets", "title": title,
        "origin": f"nginx static origin on loopback ({origin.url}); reference: nginx static ({ng.url})",
        "tagd": ctx.tagd_label(),
        "mode_text": mode_text,
        "modes": modes,
        "columns": ["size", "conns", "nginx ops/s", "epoll ops/s", "io_uring ops/s", "io_uring/epoll ops/s",
                    "epoll p99 ms", "io_uring p99 ms", "io_uring/epoll p99", "epoll CPU µs/req",
                    "io_uring CPU µs/req", "io_uring/epoll CPU/req", "epoll/nginx ops/s", "io_uring/nginx ops/s",
                    "hit % epoll/io_uring"],
        "rows": rows,
        "headline": "io_uring/epoll: " + "; ".join(head) if head else "no runs",
        "notes": notes,
        "data": dict(data, warm_check={name: {D.human(k): v for k, v in w.items()} for name, w in warm.items()},
                     tagd_cache=tc, binaries={"epoll": f"{ctx.args.tagd_bin} --io-uring disk",
                                              "io_uring": f"{ctx.args.tagd_bin} --io-uring auto (tagd-uring)"}),
    }


SCENARIOS = {
    "ceiling": client_ceiling,
    "hit": hit_vs_nginx,
    "peer": hit_vs_peer,
    "miss": miss_path,
    "memory": memory,
    "epoch": epochs,
    "herd": herd,
    "large": large_cold,
    "warm1g": warm_large,
    "warmepoch": warm_epoch,
    "sockets": sockets,
}
ALIASES = {"0": "ceiling", "1": "hit", "2": "peer", "3": "epoch", "4": "herd", "5": "large", "6": "memory",
           "7": "miss", "8": "warm1g", "9": "warmepoch", "10": "sockets"}
ORDER = ["ceiling", "hit", "peer", "epoch", "herd", "large", "memory", "miss", "warm1g", "warmepoch", "sockets"]

# Scenarios of later issues, each in its own module (imported last: they use this one).
from . import scenarios_evict as _evict  # noqa: E402
from . import scenarios_flows as _flows  # noqa: E402
from . import scenarios_ops2 as _ops2  # noqa: E402

SCENARIOS.update(_evict.SCENARIOS)
SCENARIOS.update(_flows.SCENARIOS)
SCENARIOS["admission"] = _ops2.admission
ALIASES.update({"11": "evict", "12": "admission"})
ORDER += ["evict", "admission"] + _flows.ORDER
