"""Warm jobs (issue 10) and the weights and hydration workflows (issue 12), over the emulated
25 ms WAN (needs root, like scenario 3):

    warmfed    a cold epoch (10,000 x 100 KiB, 8 readers, shuffled) through a fresh tagd
               with `tagd warm --keys FILE --concurrency 32` fed the epoch's order and
               started together with the readers, vs the same readers straight to the
               origin (goal: tagd >= 3x faster); the readers' X-Cache mix and the upstream
               requests (origin: nginx, access log)
    prefixwarm `tagd warm s3://bench/<prefix>/` of a 10,000-object prefix (listed upstream:
               the origin is moto), then an epoch through the same tagd (goal: every read a
               HIT, 0 upstream requests during the epoch); the warm's duration and the
               origin's CPU during it
    wweights   model weights at cold start: 8 replicas load one safetensors file (1 GiB by
               default) the way loaders do (the 8-byte header length, the JSON header, then
               every tensor by range, in file order), all starting together: direct (8
               copies over the WAN) vs a cold tagd (origin: nginx, access log); time and
               upstream bytes
    whydrate   `aws s3 sync s3://bench/<prefix>/ DIR` (origin: moto, sync lists): direct, then
               through a cold tagd, then again into another directory through the same tagd
               (from the cache); and on another fresh tagd `tagd warm` of the prefix followed
               by `aws s3 sync`; time of each, upstream bytes

Run on their own with bench/run_wanflows.py (same profiles and environment as bench/run.sh),
or through bench/run.sh once registered in bench/bench.py (see SCENARIOS at the end).

Upstream traffic is counted three ways where the origin allows: the origin's access log
(nginx: requests and $body_bytes_sent per key), tagd's own counters
(tagd_upstream_requests_total, tagd_cache_fill_bytes_total), and the bytes the upstream
namespace's end of the delay line transmitted (its tx_bytes in /proc/<origin>/net/dev: every
byte the origin sent towards us, TCP/IP headers included, whatever the client). The origin's
CPU (nginx master and workers, or moto's Python process) is read from /proc around every
timed phase: moto spends 2-4 ms of CPU per request, so a moto-bound phase says so.

Every load is bounded in count (each key once, a fixed set of ranges, one sync) and in time
(s3get's -d, socket timeouts, subprocess timeouts); tagd and the clients are on 127.0.0.1, the
origin inside the WAN namespace."""
import filecmp
import http.client
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zlib

from . import data as D
from . import loads
from . import scenarios_misses as M
from .scenarios import GiB, KiB, MiB, _order, goal_met
from .util import cpu_seconds, fmt, log, median, ratio

PROFILE = {
    # quick: ~15 minutes here (one pair of 10,000-object epochs is ~2.5 min, the moto upload ~1 min)
    "quick": {"fed_size": 100 * KiB, "fed_count": 10000, "fed_workers": 8, "fed_concurrency": 32, "fed_reps": 1,
              "prefix_size": 100 * KiB, "prefix_count": 10000, "prefix_workers": 8, "prefix_concurrency": 32,
              "prefix_reps": 1,
              "weights_size": GiB, "weights_replicas": 8, "weights_reps": 1,
              "hydrate_size": 256 * KiB, "hydrate_count": 400, "hydrate_concurrency": 32, "hydrate_reps": 1},
    "full": {"fed_size": 100 * KiB, "fed_count": 10000, "fed_workers": 8, "fed_concurrency": 32, "fed_reps": 3,
             "prefix_size": 100 * KiB, "prefix_count": 10000, "prefix_workers": 8, "prefix_concurrency": 32,
             "prefix_reps": 2,
             "weights_size": GiB, "weights_replicas": 8, "weights_reps": 3,
             "hydrate_size": 256 * KiB, "hydrate_count": 2000, "hydrate_concurrency": 32, "hydrate_reps": 3},
}
CAP_S = 300  # no single timed load may run longer than this
FED_GOAL = 3.0


def _prof(ctx):
    p = dict(PROFILE.get(getattr(ctx.args, "profile", "quick"), PROFILE["quick"]))
    reps = getattr(ctx.args, "reps", None)
    if reps:
        for k in p:
            if k.endswith("_reps"):
                p[k] = reps
    for env, key in (("BENCH_WANFLOWS_EPOCH_COUNT", "fed_count"), ("BENCH_WANFLOWS_EPOCH_COUNT", "prefix_count"),
                     ("BENCH_WANFLOWS_WEIGHTS_MIB", "weights_size"), ("BENCH_WANFLOWS_HYDRATE_COUNT", "hydrate_count"),
                     ("BENCH_WANFLOWS_WARM_CONCURRENCY", "fed_concurrency")):
        if os.environ.get(env):
            p[key] = int(os.environ[env]) * (MiB if key == "weights_size" else 1)
    return p


# ------------------------------------------------------------------ measuring helpers

def _wire_tx(srv):
    """Bytes the origin's network namespace has transmitted on its non-loopback devices (the
    upstream end of the delay line): everything the origin sent towards tagd or a client."""
    total = 0
    try:
        with open(f"/proc/{srv.pid}/net/dev") as f:
            for line in list(f)[2:]:
                name, rest = line.split(":", 1)
                if name.strip() != "lo":
                    total += int(rest.split()[8])
    except (OSError, ValueError, IndexError):
        return None
    return total


class Origin:
    """The origin's CPU (process and children: nginx's workers) and its namespace's transmitted
    bytes around one phase."""

    def __init__(self, srv):
        self.srv = srv

    def __enter__(self):
        self.cpu0 = cpu_seconds(self.srv.pid, with_children=True)
        self.tx0 = _wire_tx(self.srv)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.t0
        self.cpu = cpu_seconds(self.srv.pid, with_children=True) - self.cpu0
        tx1 = _wire_tx(self.srv)
        self.tx = tx1 - self.tx0 if tx1 is not None and self.tx0 is not None else None

    def result(self):
        return {"origin_cpu_s": self.cpu, "origin_cpu_share": self.cpu / self.wall if self.wall else None,
                "wire_bytes": self.tx}


def _warm_env(ctx):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ctx.creds[0], AWS_SECRET_ACCESS_KEY=ctx.creds[1],
               AWS_REGION=ctx.creds[2])
    env.pop("AWS_ENDPOINT_URL", None)
    return env


def _warm_start(ctx, url, concurrency, keys_file=None):
    """`tagd warm URL --json` (the same binary as the daemon) in the background."""
    argv = [ctx.tagd_cfg.binary, "warm", url, "--json", "--concurrency", str(concurrency),
            "--endpoint", f"127.0.0.1:{ctx.tagd_port}"]
    if keys_file:
        argv += ["--keys", keys_file]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_warm_env(ctx)), \
        time.monotonic()


def _warm_wait(p, t0, cap_s=CAP_S):
    """Waits for the warm CLI (killed at cap_s); returns its exit code, its wall time and the
    job's last status line (elapsed_seconds is the job's own duration)."""
    try:
        out, err = p.communicate(timeout=max(1.0, cap_s - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        err += f"\n(killed after {cap_s} s)"
    wall = time.monotonic() - t0
    lines = []
    for ln in out.splitlines():
        try:
            lines.append(json.loads(ln))
        except ValueError:
            pass
    last = lines[-1] if lines else {}
    if p.returncode != 0:
        log(f"  tagd warm exited {p.returncode}: {err.strip()[-400:]} {out.strip()[-300:]}")
    return {"rc": p.returncode, "cli_wall_s": wall, "job_s": last.get("elapsed_seconds"), "state": last.get("state"),
            "objects_total": last.get("objects_total"), "objects_done": last.get("objects_done"),
            "objects_cached": last.get("objects_cached"), "objects_failed": last.get("objects_failed"),
            "bytes_done": last.get("bytes_done"), "failures": (last.get("failures") or [])[:5],
            "progress": [(x.get("elapsed_seconds"), x.get("objects_done")) for x in lines]}


def _run(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        log(f"  run failed: {e}")
        return None


def _m(runs, key):
    return median([r.get(key) for r in runs if r is not None])


def _paired(a_runs, b_runs, key):
    return median([ratio(a.get(key), b.get(key)) for a, b in zip(a_runs, b_runs) if a and b])


def _share(x):
    return None if x is None else 100 * x


def _no_tagd(id_, title, ctx):
    return {"id": id_, "title": title, "origin": "-", "tagd": ctx.tagd_label(), "columns": ["-"], "rows": [],
            "headline": f"tagd not measured: {ctx.tagd_label()}", "notes": [], "data": {}}


def _xc(cache):
    x = cache["x_cache"]
    return f"{x['hit']} HIT / {x['miss']} MISS / {sum(x.values()) - x['hit'] - x['miss']} other"


def _shuffled_urls(ctx, base_url, keys, name):
    """A presigned URL file in exactly the order of keys (s3get without a seed reads it in file
    order, so the readers follow the order a warm job is fed)."""
    return D.write_url_files(os.path.join(ctx.state, "urls", f"{name}@{base_url.split('://', 1)[1].replace(':', '_')}"),
                             D.presign(base_url, ctx.creds, keys))[0]


def _stop_moto(ctx):
    """Stops the run's moto (its objects live in its memory: 1 GiB for 10,000 x 100 KiB)."""
    s = ctx._srv.pop("moto-wan", None)
    if s is not None:
        s.stop()


# ================================================================== warmfed

def warmfed(ctx):
    mp = _prof(ctx)
    size, count, workers, conc = mp["fed_size"], mp["fed_count"], mp["fed_workers"], mp["fed_concurrency"]
    label = f"{count:,} x {D.human(size)}"
    title = (f"W1. Cold epoch, {label}, {workers} readers, shuffled, with `tagd warm --keys` (concurrency {conc}) fed "
             "the epoch's order and started with the readers, vs direct over the WAN")
    if not ctx.tagd_available():
        return _no_tagd("warmfed", title, ctx)
    ds = D.Dataset(ctx.www, f"epoch-{size // KiB}kib", size, count).ensure()
    up = ctx.origin_wan()
    runs = {"direct": [], "tagd": []}
    for rep in range(mp["fed_reps"]):
        seed = ctx.next_seed()
        order = list(ds.keys)
        random.Random(seed).shuffle(order)
        keys_file = os.path.join(ctx.state, f"warmfed-keys-{seed}.txt")
        with open(keys_file, "w") as f:
            f.write("\n".join(order) + "\n")
        files = {"direct": _shuffled_urls(ctx, up.url, order, f"warmfed-{seed}"),
                 "tagd": _shuffled_urls(ctx, ctx.tagd_url(), order, f"warmfed-{seed}")}
        for what in _order(["direct", "tagd"], rep):
            td = ctx.tagd(up, fresh=True, need=[(size, count)]) if what == "tagd" else None
            warm = None
            with M.Probe(ctx, up, td) as pr, Origin(up) as og:
                if td:
                    wp, wt0 = _warm_start(ctx, f"s3://{D.BUCKET}/{ds.prefix}/", conc, keys_file)
                    sp = loads.s3get(ctx.state, files[what], conns=workers, duration=CAP_S, background=True)
                    r = _run(loads.s3get_wait, sp)
                    warm = _warm_wait(wp, wt0)
                    M._settle(ctx)
                else:
                    r = _run(loads.s3get, ctx.state, files[what], conns=workers, duration=CAP_S)
            res = pr.result(ds.prefix)
            if td:
                ctx.stop_tagd()
            if r:
                M._merge(r, res, complete=r["ok"] == count, warm=warm, **og.result())
                r["origin_cpu_share_of_load"] = r["origin_cpu_s"] / r["wall_s"] if r["wall_s"] else None
            runs[what].append(r)
            log(f"  warmfed {what}: {fmt(r['wall_s']) if r else 'fail'} s"
                + (f", {r['ok']}/{count} ok, TTFB p50 {fmt(r['ttfb_ms']['p50'])} ms, origin {r.get('origin_requests')} "
                   f"requests, origin CPU {fmt(r['origin_cpu_s'])} s; {M._where_time([r])}" if r else "")
                + (f"; X-Cache {r['cache']['x_cache']}, joined fills {r['cache']['joined_fills']}, tagd upstream "
                   f"requests {r['cache']['upstream_requests']}; warm job {fmt(warm['job_s'])} s, state "
                   f"{warm['state']}, {warm['objects_done']} done / {warm['objects_cached']} cached / "
                   f"{warm['objects_failed']} failed" if r and td else ""))
    speed = _paired(runs["direct"], runs["tagd"], "wall_s")
    met = goal_met(speed, ">=", FED_GOAL)
    tr = [r for r in runs["tagd"] if r]
    hit_frac = median([r["cache"]["hit_ratio"] for r in tr])
    rows = []
    for what, name in (("direct", "direct"), ("tagd", f"through a cold tagd + warm --keys, {conc} in flight")):
        rr = [r for r in runs[what] if r]
        t = what == "tagd"
        rows.append([label, name, _m(rr, "wall_s"), _m(rr, "mib_s"), median([r["ttfb_ms"]["p50"] for r in rr]),
                     median([r["ttlb_ms"]["p99"] for r in rr]), median([r["errors"] + r["non2xx"] for r in rr]),
                     _xc(rr[-1]["cache"]) if t and rr else None, _share(hit_frac) if t else None,
                     median([r["cache"]["joined_fills"] for r in rr]) if t else None,
                     median([r.get("origin_requests") for r in rr]),
                     median([r["warm"]["job_s"] for r in rr if r.get("warm")]) if t else None,
                     median([r.get("origin_cpu_s") for r in rr]),
                     _share(_m(rr, "tagd_cpu_share")) if t else None,
                     _share(_m(rr, "tagd_runqueue_wait_share")) if t else None,
                     _share(_m(rr, "machine_busy")), speed if t else None])
    notes = [f"{workers} s3get readers (keep-alive) read every object once in a shuffled order (the same for both "
             "runs of a pair; the URL file is written in that order). Through tagd, `tagd warm "
             f"s3://{D.BUCKET}/{ds.prefix}/ --keys FILE --concurrency {conc} --json` is started the moment before the "
             "readers with FILE in the same order; tagd starts with an empty cache folder every run. "
             f"{mp['fed_reps']} alternating pair(s); ratio = median of per-pair direct time / tagd time (above 1: tagd "
             "faster).",
             "X-Cache: the readers' answers only (tagd_cache_requests_total counts client responses, not the warm "
             "job's reads); a reader that arrives while the warm job's fill of its object is in flight joins that "
             "fill (joined fills) instead of asking the origin again. Origin requests: the origin's access log for "
             "the prefix (warm job and readers together).",
             "Where the time goes (medians): tagd: " + M._where_time(runs["tagd"]) + "; direct: "
             + M._where_time(runs["direct"]) + "."]
    if count < 10000:
        notes.insert(0, f"{count:,} objects, not the issue's 10,000 (BENCH_WANFLOWS_EPOCH_COUNT).")
    return {
        "id": "warmfed", "title": title,
        "origin": f"nginx static inside the WAN namespace ({up.url}), access log for upstream requests",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["dataset", "path", "epoch s", "MiB/s", "TTFB p50 ms", "TTLB p99 ms", "errors",
                    "readers' X-Cache (last run)", "HIT %", "joined fills", "origin requests (log)", "warm job s",
                    "origin CPU s", "tagd CPU % of a core", "tagd runnable, no CPU %", "machine busy %",
                    "direct / tagd time"],
        "rows": rows,
        "headline": f"cold epoch {label} with a warm job fed its order: tagd {fmt(speed)}x faster than direct "
                    f"(goal ≥ {FED_GOAL:g}: {met}); readers' HIT {fmt(_share(hit_frac))} %",
        "goals": {"warmfed": {"metric": "direct time / tagd time", "ratio": speed, "goal": f">= {FED_GOAL:g}",
                              "met": met}},
        "notes": notes,
        "data": {"runs": runs, "speedup": speed, "hit_fraction": hit_frac, "count": count},
    }


# ================================================================== prefixwarm

def prefixwarm(ctx):
    mp = _prof(ctx)
    size, count, workers, conc = (mp["prefix_size"], mp["prefix_count"], mp["prefix_workers"],
                                  mp["prefix_concurrency"])
    label = f"{count:,} x {D.human(size)}"
    title = f"W2. `tagd warm` of a {label} prefix (listed upstream), then an epoch ({workers} readers, shuffled)"
    if not ctx.tagd_available():
        return _no_tagd("prefixwarm", title, ctx)
    ds = D.Dataset(ctx.www, f"epoch-{size // KiB}kib", size, count).ensure()
    up = ctx.moto_wan()
    t0 = time.monotonic()
    ctx.upload(up, [ds])
    log(f"  prefixwarm: {count} objects uploaded to moto in {time.monotonic() - t0:.0f} s")
    runs = []
    try:
        for rep in range(mp["prefix_reps"]):
            seed = ctx.next_seed()
            order = list(ds.keys)
            random.Random(seed).shuffle(order)
            uf = _shuffled_urls(ctx, ctx.tagd_url(), order, f"prefixwarm-{seed}")
            td = ctx.tagd(up, fresh=True, need=[(size, count)])
            m0 = ctx.metrics()
            with Origin(up) as og:
                wp, wt0 = _warm_start(ctx, f"s3://{D.BUCKET}/{ds.prefix}/", conc)
                warm = _warm_wait(wp, wt0)
                M._settle(ctx)
            m1 = ctx.metrics()
            w = dict(warm, **og.result(), upstream_requests=int(m1.get("tagd_upstream_requests_total", 0)
                                                                  - m0.get("tagd_upstream_requests_total", 0)),
                     fill_bytes=int(m1.get("tagd_cache_fill_bytes_total", 0) - m0.get("tagd_cache_fill_bytes_total", 0)))
            w["origin_cpu_share"] = w["origin_cpu_s"] / w["job_s"] if w.get("job_s") else None
            with M.Probe(ctx, up, td) as pr, Origin(up) as og2:
                r = _run(loads.s3get, ctx.state, uf, conns=workers, duration=CAP_S)
            res = pr.result()
            ctx.stop_tagd()
            if r:
                M._merge(r, res, **og2.result())
                x = r["cache"]["x_cache"]
                r["all_hit"] = (r["ok"] == count and x["hit"] == count and x["miss"] == 0
                                and sum(x.values()) == count and r["cache"]["upstream_requests"] == 0)
            runs.append({"warm": w, "epoch": r})
            log(f"  prefixwarm: warm {fmt(w['job_s'])} s ({w['state']}, {w['objects_done']}/{w['objects_total']} "
                f"objects, {w['objects_failed']} failed, {w['upstream_requests']} upstream requests, origin CPU "
                f"{fmt(w['origin_cpu_s'])} s = {fmt(_share(w['origin_cpu_share']))} % of a core); epoch "
                + (f"{fmt(r['wall_s'])} s, X-Cache {r['cache']['x_cache']}, upstream requests "
                   f"{r['cache']['upstream_requests']}, WAN bytes {r['wire_bytes']}, all HIT {r['all_hit']}"
                   if r else "failed"))
    finally:
        _stop_moto(ctx)
    ok = [x for x in runs if x["epoch"]]
    all_hit = bool(ok) and len(ok) == len(runs) and all(x["epoch"]["all_hit"] for x in ok)
    met = "yes" if all_hit else ("-" if not runs else "NO")
    ws = [x["warm"] for x in runs]
    rows = []
    for x in runs:
        w, r = x["warm"], x["epoch"]
        rows.append([label, w["job_s"], (w["bytes_done"] or 0) / MiB / w["job_s"] if w.get("job_s") else None,
                     f"{w['objects_done']}/{w['objects_total']} ({w['objects_failed']} failed)", w["upstream_requests"],
                     w["origin_cpu_s"], _share(w["origin_cpu_share"]),
                     r["wall_s"] if r else None, r["mib_s"] if r else None, _xc(r["cache"]) if r else None,
                     r["cache"]["upstream_requests"] if r else None, r["wire_bytes"] if r else None,
                     "yes" if r and r["all_hit"] else "NO"])
    return {
        "id": "prefixwarm", "title": title,
        "origin": f"moto under waitress inside the WAN namespace ({up.url}): the warm job lists the prefix "
                  "(ListObjectsV2), which a static origin cannot answer",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["prefix", "warm s", "warm MiB/s", "objects warmed", "warm upstream requests", "origin CPU s (warm)",
                    "origin CPU % of a core (warm)", "epoch s", "epoch MiB/s", "epoch X-Cache",
                    "epoch upstream requests", "epoch WAN bytes from origin", "every read a HIT"],
        "rows": rows,
        "headline": f"warm a {label} prefix in {fmt(median([w['job_s'] for w in ws]))} s, then an epoch: every read "
                    f"a HIT and 0 upstream requests: {met}",
        "goals": {"prefixwarm": {"metric": "epoch after warm: all HIT, 0 upstream", "ratio": None, "goal": "all HIT",
                                 "met": met}},
        "notes": [f"A fresh tagd per run; `tagd warm s3://{D.BUCKET}/{ds.prefix}/ --concurrency {conc} --json` runs to "
                  f"completion (warm s: the job's own elapsed_seconds), then {workers} s3get readers read every object "
                  "once in a shuffled order. X-Cache and upstream requests are deltas of tagd's counters over the "
                  "epoch; WAN bytes are what the origin's namespace transmitted during the epoch (TCP keep-alives "
                  "and the like: a few hundred bytes is nothing fetched).",
                  "Origin CPU: moto's process (utime+stime) during the warm; with 2-4 ms of Python per request it "
                  "bounds the warm's rate on this machine."],
        "data": {"runs": runs, "all_hit": all_hit},
    }


# ================================================================== wweights

def _safetensors(path, size, seed=12):
    """A safetensors-shaped file of about `size` bytes: 8-byte header length, JSON header,
    tensors of 4-32 MiB (kept between runs)."""
    if os.path.exists(path) and os.path.getsize(path) >= size:
        return path
    rng = random.Random(seed)
    header, at, sizes = {"__metadata__": {"format": "pt"}}, 0, []
    while at < size:
        n = min(rng.choice([4, 8, 16, 32]) * MiB, max(size - at, MiB))
        header[f"model.layers.{len(sizes)}.weight"] = {"dtype": "BF16", "shape": [n // 2], "data_offsets": [at, at + n]}
        sizes.append(n)
        at += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    log(f"writing {at / MiB:.0f} MiB safetensors file {path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for n in sizes:
            f.write(os.urandom(n))
    os.replace(path + ".tmp", path)
    return path


def _file_crc(path, start):
    c = 0
    with open(path, "rb") as f:
        f.seek(start)
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            c = zlib.crc32(chunk, c)
    return c


def _load_weights(url, buf, crc=False, cap_s=CAP_S):
    """One replica: the 8-byte header length, the JSON header, then every tensor by range in
    file order, on one keep-alive connection (a presigned URL: the Range is not signed).
    Returns time, bytes, requests, time to the parsed header, and the CRC of the tensors when asked."""
    u = urllib.parse.urlsplit(url)
    target = u.path + "?" + u.query
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    t0 = time.monotonic()
    xc = {}

    def get(a, b):
        if time.monotonic() - t0 > cap_s:
            raise RuntimeError(f"replica stopped at {cap_s} s")
        c.request("GET", target, headers={"Range": f"bytes={a}-{b}"})
        r = c.getresponse()
        n = b - a + 1
        if r.status != 206:
            raise RuntimeError(f"range {a}-{b}: HTTP {r.status} {r.read()[:200]!r}")
        xc[r.getheader("X-Cache") or "-"] = xc.get(r.getheader("X-Cache") or "-", 0) + 1
        mv = memoryview(buf)[:n]
        got = 0
        while got < n:
            k = r.readinto(mv[got:])
            if not k:
                raise RuntimeError(f"range {a}-{b}: short body ({got} of {n} bytes)")
            got += k
        r.read()
        return mv

    try:
        hlen = struct.unpack("<Q", bytes(get(0, 7)))[0]
        header = json.loads(bytes(get(8, 7 + hlen)))
        t_header = time.monotonic() - t0
        got, nreq, crcv = 0, 2, 0
        for name, t in header.items():  # JSON keeps the file's order
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            mv = get(8 + hlen + a, 8 + hlen + b - 1)
            if crc:
                crcv = zlib.crc32(mv, crcv)
            got += b - a
            nreq += 1
    finally:
        c.close()
    return {"s": time.monotonic() - t0, "bytes": got, "requests": nreq, "header_s": t_header,
            "crc": crcv if crc else None, "data_start": 8 + hlen, "x_cache": xc}


def _replicas(url, n, crc_of_first=True):
    """n replicas at once (threads; the copies run with the GIL released); returns the
    wall time until the last one finished and every replica's result."""
    out, errs = [None] * n, []
    start = threading.Barrier(n + 1)

    def one(i):
        buf = bytearray(33 * MiB)
        try:
            start.wait(30)
            out[i] = _load_weights(url, buf, crc=crc_of_first and i == 0)
        except (RuntimeError, OSError, ValueError, threading.BrokenBarrierError) as e:
            errs.append(f"replica {i}: {e}")
    th = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in th:
        t.start()
    start.wait(30)
    t0 = time.monotonic()
    for t in th:
        t.join(CAP_S + 30)
    wall = time.monotonic() - t0
    if errs or any(o is None for o in out):
        raise RuntimeError("; ".join(errs) or "a replica did not finish")
    return wall, out


def wweights(ctx):
    mp = _prof(ctx)
    size, n = mp["weights_size"], mp["weights_replicas"]
    title = f"W3. Model weights cold start: {n} replicas load one {D.human(size)} safetensors file, tagd vs direct"
    if not ctx.tagd_available():
        return _no_tagd("wweights", title, ctx)
    key = f"weights/wanflows-{size // MiB}mib.safetensors"
    path = _safetensors(os.path.join(ctx.www, D.BUCKET, key), size)
    fsize = os.path.getsize(path)
    up = ctx.origin_wan()
    runs = {"direct": [], "tagd": []}
    crc_ref = None
    for rep in range(mp["weights_reps"]):
        for what in _order(["direct", "tagd"], rep):
            td = ctx.tagd(up, fresh=True, need=[(fsize, 1)]) if what == "tagd" else None
            url = D.presign(ctx.tagd_url() if td else up.url, ctx.creds, [key])[0]
            with M.Probe(ctx, up, td) as pr, Origin(up) as og:
                rr = _run(_replicas, url, n)
                if td:
                    M._settle(ctx)
            res = pr.result(key)
            if td:
                ctx.stop_tagd()
            r = None
            if rr:
                wall, reps = rr
                if crc_ref is None:
                    crc_ref = _file_crc(path, reps[0]["data_start"])
                tensors = sum(x["bytes"] for x in reps) // n
                r = {"wall_s": wall, "replica_s": [x["s"] for x in reps], "header_s": median([x["header_s"] for x in reps]),
                     "requests": sum(x["requests"] for x in reps), "tensor_bytes": tensors,
                     "correct": reps[0]["crc"] == crc_ref and all(x["bytes"] == tensors for x in reps),
                     "x_cache": reps[0]["x_cache"]}
                M._merge(r, res, **og.result())
            runs[what].append(r)
            log(f"  wweights {what}: {fmt(r['wall_s']) if r else 'fail'} s"
                + (f", correct {r['correct']}, header in {fmt(r['header_s'])} s, origin {r.get('origin_requests')} "
                   f"requests {fmt((r.get('origin_bytes') or 0) / fsize, 3)}x file, WAN bytes "
                   f"{fmt((r.get('wire_bytes') or 0) / fsize, 3)}x file, origin CPU {fmt(r['origin_cpu_s'])} s; "
                   f"{M._where_time([r])}" if r else "")
                + (f"; X-Cache of replica 0 {r['x_cache']}, tagd fills by cause "
                   f"{ {k: v for k, v in r['cache']['fills_by_cause'].items() if v} }, fill bytes "
                   f"{fmt(r['cache']['fill_bytes'] / fsize, 3)}x" if r and td else ""))
    ratio_t = _paired(runs["tagd"], runs["direct"], "wall_s")
    rows = []
    for what, name in (("direct", f"direct ({n} copies over the WAN)"), ("tagd", "through a cold tagd")):
        rr = [r for r in runs[what] if r]
        t = what == "tagd"
        rows.append([f"{n} x {fsize / MiB:.0f} MiB", name, _m(rr, "wall_s"),
                     median([n * fsize / MiB / r["wall_s"] for r in rr]), _m(rr, "header_s"),
                     all(r["correct"] for r in rr) if rr else None, median([r.get("origin_requests") for r in rr]),
                     median([(r.get("origin_bytes") or 0) / fsize for r in rr]),
                     median([(r.get("wire_bytes") or 0) / fsize for r in rr]),
                     median([r["upstream_in_flight"]["max"] for r in rr]), _m(rr, "origin_cpu_s"),
                     _share(_m(rr, "tagd_cpu_share")) if t else None,
                     _share(_m(rr, "tagd_runqueue_wait_share")) if t else None, _share(_m(rr, "wan_cpu_share")),
                     _share(_m(rr, "machine_busy")), ratio_t if t else None])
    return {
        "id": "wweights", "title": title,
        "origin": f"nginx static inside the WAN namespace ({up.url}), access log for upstream requests and bytes",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["load", "path", "cold start s (last replica)", "MiB/s delivered", "header s p50", "bytes correct",
                    "origin requests", "origin bytes / file (log)", "WAN bytes / file", "origin responses in flight, max",
                    "origin CPU s", "tagd CPU % of a core", "tagd runnable, no CPU %", "WAN line CPU % of a core",
                    "machine busy %", "tagd / direct time"],
        "rows": rows,
        "headline": f"{n} replicas' cold start of a {D.human(size)} safetensors file: tagd / direct time = {fmt(ratio_t)}"
                    f", upstream bytes {fmt(median([(r.get('origin_bytes') or 0) / fsize for r in runs['tagd'] if r]), 3)}"
                    f"x the file through tagd vs {fmt(median([(r.get('origin_bytes') or 0) / fsize for r in runs['direct'] if r]), 2)}x direct",
        "notes": [f"Each replica (a thread, Python http.client, one keep-alive connection, presigned URL) GETs bytes "
                  "0-7, the JSON header, then every tensor (4-32 MiB) by range in file order; the "
                  f"{n} replicas start together (a barrier); time = until the last replica has every tensor. Replica "
                  "0's tensors are checked against the file (CRC32). "
                  f"{mp['weights_reps']} alternating pair(s), an empty tagd cache every tagd run; ratio = median of "
                  "per-pair tagd / direct time (below 1: tagd faster).",
                  "Origin bytes: $body_bytes_sent in nginx's access log for the key; WAN bytes: what the origin's "
                  "namespace transmitted (headers and TCP/IP included).",
                  "Where the time goes (medians): tagd: " + M._where_time(runs["tagd"]) + "; direct: "
                  + M._where_time(runs["direct"]) + "."],
        "data": {"runs": runs, "ratio_time": ratio_t, "file_bytes": fsize},
    }


# ================================================================== whydrate

def _sync(endpoint, creds, src, dest, cap_s=CAP_S):
    """`aws s3 sync` (CLI defaults: 10 concurrent requests), path-style, bounded by cap_s."""
    with tempfile.TemporaryDirectory(prefix="wanflows-aws-") as cfgdir:
        cfg = os.path.join(cfgdir, "config")
        with open(cfg, "w") as f:
            f.write("[default]\ns3 =\n    addressing_style = path\n    max_concurrent_requests = 10\n")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=creds[0], AWS_SECRET_ACCESS_KEY=creds[1],
                   AWS_DEFAULT_REGION=creds[2], AWS_CONFIG_FILE=cfg,
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(cfgdir, "none"))
        env.pop("AWS_ENDPOINT_URL", None)
        t0 = time.monotonic()
        r = subprocess.run(["aws", "s3", "sync", src, dest, "--endpoint-url", endpoint, "--only-show-errors"],
                           env=env, timeout=cap_s, capture_output=True, text=True)
        wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"aws s3 sync failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return wall


def _same_tree(ds, dest):
    """Every object of ds is in dest with the same bytes, and nothing else."""
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(dest) for f in fs]
    if len(files) != ds.count:
        return False
    return all(filecmp.cmp(ds.path(k), os.path.join(dest, k.split("/", 1)[1]), shallow=False) for k in ds.keys)


def whydrate(ctx):
    mp = _prof(ctx)
    size, count, conc = mp["hydrate_size"], mp["hydrate_count"], mp["hydrate_concurrency"]
    label = f"{count:,} x {D.human(size)}"
    total = size * count
    title = f"W4. Hydrating a {label} prefix to local disk (aws s3 sync, tagd warm) over the WAN"
    if not ctx.tagd_available():
        return _no_tagd("whydrate", title, ctx)
    ds = D.Dataset(ctx.www, f"hydrate-{size // KiB}kib", size, count).ensure()
    up = ctx.moto_wan()
    ctx.upload(up, [ds])
    src = f"s3://{D.BUCKET}/{ds.prefix}/"
    base = tempfile.mkdtemp(prefix="tagd-bench-hydrate-", dir=os.environ.get("BENCH_CACHE_BASE", "/var/tmp"))
    phases = ("direct", "tagd_cold", "tagd_again", "warm", "warm_sync")
    runs = {p: [] for p in phases}

    def timed(name, fn, td):
        """One phase: fn() -> (seconds, dest or None); with tagd's counters and the origin's CPU and
        transmitted bytes around it."""
        m0 = ctx.metrics() if td else {}
        with Origin(up) as og:
            out = _run(fn)
        r = None
        if out:
            s, dest = out
            r = dict(s=s, **og.result())
            r["origin_cpu_share"] = r["origin_cpu_s"] / s if s else None
            if dest:
                r["correct"] = _same_tree(ds, dest)
                shutil.rmtree(dest, ignore_errors=True)
            if td:
                r["cache"] = M.miss_delta(m0, ctx.metrics())
        runs[name].append(r)
        log(f"  whydrate {name}: {fmt(r['s']) if r else 'fail'} s"
            + (f", WAN bytes {fmt((r['wire_bytes'] or 0) / total, 3)}x dataset, origin CPU {fmt(r['origin_cpu_s'])} s"
               + (f", correct {r['correct']}" if 'correct' in r else "")
               + (f", X-Cache {r['cache']['x_cache']}, upstream requests {r['cache']['upstream_requests']}, fill "
                  f"bytes {fmt(r['cache']['fill_bytes'] / total, 3)}x" if td else "") if r else ""))

    def sync_to(endpoint, name):
        d = os.path.join(base, name)
        return lambda: (_sync(endpoint, ctx.creds, src, d), d)

    def warm():
        p, t0 = _warm_start(ctx, src, conc)
        w = _warm_wait(p, t0)
        M._settle(ctx)
        if w["rc"] != 0 or w["state"] != "done":
            raise RuntimeError(f"warm job: {w}")
        runs.setdefault("warm_status", []).append(w)
        return w["job_s"], None

    try:
        for rep in range(mp["hydrate_reps"]):
            for what in _order(["direct", "tagd", "warm"], rep):
                if what == "direct":
                    timed("direct", sync_to(up.url, f"direct-{rep}"), None)
                elif what == "tagd":
                    td = ctx.tagd(up, fresh=True, need=[(size, count)])
                    timed("tagd_cold", sync_to(ctx.tagd_url(), f"tagd-a-{rep}"), td)
                    timed("tagd_again", sync_to(ctx.tagd_url(), f"tagd-b-{rep}"), td)
                    ctx.stop_tagd()
                else:
                    td = ctx.tagd(up, fresh=True, need=[(size, count)])
                    timed("warm", warm, td)
                    timed("warm_sync", sync_to(ctx.tagd_url(), f"tagd-c-{rep}"), td)
                    ctx.stop_tagd()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        _stop_moto(ctx)
    d_s = median([r["s"] for r in runs["direct"] if r])

    def per(name):
        rr = [r for r in runs[name] if r]
        return rr, median([r["s"] for r in rr])
    rows = []
    for name, text in (("direct", "direct: aws s3 sync"), ("tagd_cold", "through a cold tagd: aws s3 sync"),
                       ("tagd_again", "same tagd, another directory: aws s3 sync"),
                       ("warm", f"fresh tagd: tagd warm (concurrency {conc})"),
                       ("warm_sync", "then aws s3 sync")):
        rr, s = per(name)
        t = name != "direct"
        rows.append([label, text, s, total / MiB / s if s else None,
                     (all(r.get("correct", True) for r in rr) if name != "warm" else "-") if rr else None,
                     median([(r["wire_bytes"] or 0) / total for r in rr]),
                     median([r["cache"]["fill_bytes"] / total for r in rr]) if t else None,
                     median([r["cache"]["upstream_requests"] for r in rr]) if t else None,
                     _xc(rr[-1]["cache"]) if t and rr and name != "warm" else None,
                     _m(rr, "origin_cpu_s"), ratio(s, d_s)])
    ws, _ = per("warm")
    ss, _ = per("warm_sync")
    warm_total = median([a["s"] + b["s"] for a, b in zip(ws, ss)])
    rows.append([label, "tagd warm + aws s3 sync, together", warm_total, total / MiB / warm_total if warm_total else None,
                 None, None, None, None, None, None, ratio(warm_total, d_s)])
    cold = per("tagd_cold")[1]
    again = per("tagd_again")[1]
    return {
        "id": "whydrate", "title": title,
        "origin": f"moto under waitress inside the WAN namespace ({up.url}): sync and warm list the prefix",
        "tagd": ctx.tagd_label(), "wan": ctx.wan.mode if ctx.wan else None,
        "columns": ["dataset", "phase", "time s", "MiB/s", "files correct", "WAN bytes from origin / dataset",
                    "tagd fill bytes / dataset", "tagd upstream requests", "X-Cache", "origin CPU s",
                    "time / direct"],
        "rows": rows,
        "headline": f"hydrate {label}: cold through tagd {fmt(ratio(cold, d_s))}x the direct time, a second directory "
                    f"{fmt(ratio(again, d_s))}x, tagd warm + sync {fmt(ratio(warm_total, d_s))}x",
        "notes": [f"aws CLI {_aws_version()} `aws s3 sync {src} DIR` with its default 10 concurrent requests, "
                  "path-style; each directory is new and compared file by file with the source, then deleted. "
                  f"{mp['hydrate_reps']} repetition(s), the order of direct / tagd (cold, then again) / warm+sync "
                  "rotating; every tagd group starts on an empty cache.",
                  "WAN bytes: what the origin's namespace transmitted during the phase (listing pages, headers and "
                  "TCP/IP included); tagd fill bytes and upstream requests (listings included) are tagd's counters. "
                  "X-Cache counts the CLI's GETs (ListObjectsV2 is forwarded and counted as a bypass or not at all).",
                  "Origin CPU: moto's process during the phase."],
        "data": {"runs": runs},
    }


def _aws_version():
    try:
        return subprocess.run(["aws", "--version"], capture_output=True, text=True, timeout=30).stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


# The lead registers these in bench/bench.py (SC.SCENARIOS / SC.ORDER / SC.ALIASES).
SCENARIOS = {"warmfed": warmfed, "prefixwarm": prefixwarm, "wweights": wweights, "whydrate": whydrate}
ORDER = ["warmfed", "prefixwarm", "wweights", "whydrate"]
ALIASES = {"w1": "warmfed", "w2": "prefixwarm", "w3": "wweights", "w4": "whydrate"}
