#!/usr/bin/env python3
"""Tunes the suite's static nginx (the limit tagd is compared with) and checks
whether the load generator is what limits it.

  bench/nginx_tune.py [--reps N] [--duration S] [--conns 64] [--sizes 1KiB,100KiB,1MiB]
                      [--only NAME,...] [--list]

Every variant is a separate nginx (each with its own config, all serving the
same files, started at once and stopped by pid at the end); the client
variants run other wrk settings against the baseline nginx.  For every object
size and repetition every variant runs one time-bounded wrk load (64
connections by default), in an order that rotates and reverses from one
repetition to the next; a variant's figure is the median over repetitions of
its ops/s divided by the baseline's ops/s *in the same repetition*.  The
baseline is the suite's current static config (tagbench.servers.NGINX_STATIC_BEST):
a ratio above 1 means the variant beat it.

Writes bench/results/<time>-nginx-tune.json and prints a Markdown table (the
one kept in bench/NGINX_TUNING.md)."""
import argparse
import datetime as dt
import json
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tagbench import data as D  # noqa: E402
from tagbench import loads  # noqa: E402
from tagbench import servers as S  # noqa: E402
from tagbench.util import busy_fraction, cpu_seconds, cpu_times, fmt, log, median  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20

# (name, what it changes, nginx opts over NGINX_STATIC_BEST, client opts)
# client opts: threads (wrk -t), mode "replay" (the suite's), "static" (no
# request() in Lua: wrk's fast path, one URL), "replay1" (replay.lua with a
# one-line list: the Lua call per request without the URL spread), "noquery"
# (replay of the same paths without the presigned query string).
VARIANTS = [
    ("base", "the suite's static config (NGINX_STATIC_BEST)", {}, {}),
    ("base-again", "a second nginx with the baseline's config: the noise floor", {}, {}),
    ("old-suite", "the suite's config before this tuning (tcp_nopush on; as base since)", {"tcp_nopush": "on"}, {}),
    ("issue", "the issue's: 2 workers, sendfile on, tcp_nopush off, no access log, all else nginx defaults",
     {"multi_accept": None, "tcp_nodelay": None, "open_file_cache": None, "keepalive_timeout": None,
      "keepalive_requests": None, "worker_connections": 1024, "backlog": 511}, {}),
    ("workers-1", "worker_processes 1", {"worker_processes": 1}, {}),
    ("workers-auto", "worker_processes auto (2 on 2 cores)", {"worker_processes": "auto"}, {}),
    ("workers-4", "worker_processes 4", {"worker_processes": 4}, {}),
    ("sendfile-off", "sendfile off (read + writev, output_buffers default 2 32k)", {"sendfile": "off"}, {}),
    ("sendfile-off-ob", "sendfile off + output_buffers 2 1m", {"sendfile": "off", "output_buffers": "2 1m"}, {}),
    ("nopush-on", "tcp_nopush on (with sendfile)", {"tcp_nopush": "on"}, {}),
    ("nopush-off", "tcp_nopush off", {"tcp_nopush": "off"}, {}),
    ("reuseport+chunk0", "reuseport + sendfile_max_chunk 0", {"reuseport": True, "sendfile_max_chunk": "0"}, {}),
    ("nodelay-off", "tcp_nodelay off", {"tcp_nodelay": "off"}, {}),
    ("ofc-off", "open_file_cache off", {"open_file_cache": None}, {}),
    ("ofc-small", "open_file_cache max=1000 inactive=20s, valid 60s",
     {"open_file_cache": "max=1000 inactive=20s", "open_file_cache_valid": "60s"}, {}),
    ("ka-req-1000", "keepalive_requests 1000 (nginx default)", {"keepalive_requests": 1000}, {}),
    ("ka-timeout-75", "keepalive_timeout 75s (nginx default)", {"keepalive_timeout": "75s"}, {}),
    ("chunk-512k", "sendfile_max_chunk 512k", {"sendfile_max_chunk": "512k"}, {}),
    ("chunk-0", "sendfile_max_chunk 0 (unlimited)", {"sendfile_max_chunk": "0"}, {}),
    ("aio-threads", "aio threads", {"aio": "threads"}, {}),
    ("directio-512k", "directio 512k + aio threads", {"directio": "512k", "aio": "threads"}, {}),
    ("multi-accept-off", "multi_accept off", {"multi_accept": "off"}, {}),
    ("accept-mutex-on", "accept_mutex on", {"accept_mutex": "on"}, {}),
    ("reuseport", "listen ... reuseport", {"reuseport": True}, {}),
    # combinations of the single settings that looked faster in a first pass
    ("nopush+reuseport", "tcp_nopush on + reuseport", {"tcp_nopush": "on", "reuseport": True}, {}),
    ("nopush+reuseport+chunk0", "tcp_nopush on + reuseport + sendfile_max_chunk 0",
     {"tcp_nopush": "on", "reuseport": True, "sendfile_max_chunk": "0"}, {}),
    ("nopush+mutex", "tcp_nopush on + accept_mutex on", {"tcp_nopush": "on", "accept_mutex": "on"}, {}),
    ("nopush+aio", "tcp_nopush on + aio threads", {"tcp_nopush": "on", "aio": "threads"}, {}),
    ("sf-off-ob+reuseport", "sendfile off + output_buffers 2 1m + reuseport",
     {"sendfile": "off", "output_buffers": "2 1m", "reuseport": True}, {}),
    # the load generator, against the baseline nginx
    ("wrk-t1", "client: wrk -t1 (1 thread) instead of -t2", None, {"threads": 1}),
    ("wrk-t4", "client: wrk -t4", None, {"threads": 4}),
    ("wrk-static", "client: wrk's static path, one URL, no Lua per request", None, {"mode": "static"}),
    ("wrk-replay1", "client: replay.lua over a one-line list", None, {"mode": "replay1"}),
    ("wrk-noquery", "client: replay of the same paths without the presigned query", None, {"mode": "noquery"}),
]


def parse_sizes(text):
    return [S.parse_size(x) for x in text.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--sizes", default="1KiB,100KiB,1MiB")
    ap.add_argument("--only", help="comma-separated variant names (base is always included)")
    ap.add_argument("--base", help="JSON object of nginx opts over NGINX_STATIC_BEST for the baseline "
                                   "(and under every other variant)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--state", default=os.environ.get("BENCH_STATE_DIR", "/tmp/tagd-bench-tune"))
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA_DIR", "/var/tmp/tagd-bench-data"))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    if args.list:
        for name, what, _, _ in VARIANTS:
            print(f"{name:18s} {what}")
        return 0
    variants = VARIANTS
    if args.only:
        want = set(args.only.split(",")) | {"base"}
        variants = [v for v in VARIANTS if v[0] in want]
    base_opts = json.loads(args.base) if args.base else {}
    sizes = parse_sizes(args.sizes)
    counts = {KiB: 1000, 100 * KiB: 500, MiB: 128, 4 * MiB: 32}
    os.makedirs(args.state, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    open(os.path.join(args.state, "pids"), "a").close()
    www = os.path.join(args.data, "www")
    creds = ("AKIATAGDBENCH0000001", "tagd-bench-secret-key-not-a-real-secret-0001", "us-east-1")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    dsets = {sz: D.Dataset(www, f"hit-{D.human(sz).replace(' ', '').lower()}", sz, counts.get(sz, 100)).ensure()
             for sz in sizes}
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    started = dt.datetime.now(dt.timezone.utc)
    servers = {}
    runs = {}  # (variant, size) -> [run per rep]
    try:
        for name, _, opts, _ in variants:
            if opts is None:
                continue
            o = dict(base_opts)
            o.update(opts)
            servers[name] = S.nginx_static(args.state, www, f"tune-{name}", workers=o.get("worker_processes", 2),
                                           opts=o)
        files = {}
        for name, _, opts, copts in variants:
            srv = servers["base"] if opts is None else servers[name]
            for sz, ds in dsets.items():
                mode = copts.get("mode", "replay")
                base = os.path.join(args.state, f"tune-{name}-{ds.prefix}")
                if mode == "static":
                    files[(name, sz)] = (None, f"/{D.BUCKET}/{ds.keys[0]}")
                    continue
                urls = D.presign(srv.url, creds, ds.keys[:1] if mode == "replay1" else ds.keys)
                if mode == "noquery":
                    urls = [u.split("?", 1)[0] for u in urls]
                files[(name, sz)] = (D.write_url_files(base, urls)[1], None)
        # warm the page cache and every nginx's open_file_cache once
        for name, srv in servers.items():
            for sz in sizes:
                loads.wrk(srv.url, files[("base", sz)][0], 8, 1, seed=1)
        seed = 0
        for sz in sizes:
            for rep in range(args.reps):
                # alternating for two contenders, else rotating (reversed every other round)
                if len(variants) <= 2:
                    seq = variants if rep % 2 == 0 else list(reversed(variants))
                else:
                    k = rep % len(variants)
                    seq = variants[k:] + variants[:k]
                    if (rep // len(variants)) % 2 or rep % 2:
                        seq = list(reversed(seq))
                for name, _, opts, copts in seq:
                    srv = servers["base"] if opts is None else servers[name]
                    seed += 1
                    targets, path = files[(name, sz)]
                    c0, m0 = cpu_seconds(srv.pid, with_children=True), cpu_times()
                    try:
                        r = loads.wrk(srv.url, targets, args.conns, args.duration,
                                      threads=copts.get("threads", 2), seed=seed, path=path)
                    except RuntimeError as e:
                        log(f"  {name}: {e}")
                        r = None
                    if r:
                        r["server_cpu_s"] = cpu_seconds(srv.pid, with_children=True) - c0
                        r["server_cores"] = r["server_cpu_s"] / r["duration_s"]
                        r["client_cores"] = r["client_cpu_s"] / r["duration_s"]
                        r["machine_busy"] = busy_fraction(m0, cpu_times())
                    runs.setdefault((name, sz), []).append(r)
                line = ", ".join(f"{n} {fmt(runs[(n, sz)][-1]['ops_s']) if runs[(n, sz)][-1] else 'fail'}"
                                 for n, *_ in variants)
                log(f"{D.human(sz)} rep {rep + 1}: ops/s {line}")
    except KeyboardInterrupt as e:
        log(f"interrupted: {e}")
    finally:
        for srv in servers.values():
            srv.stop()
    with open("/proc/loadavg") as f:
        load1 = f.read().split()[:3]

    def ratio_med(name, sz, key="ops_s"):
        rs = []
        for a, b in zip(runs.get((name, sz), []), runs.get(("base", sz), [])):
            if a and b and b.get(key):
                rs.append(a[key] / b[key])
        return median(rs), (min(rs) if rs else None), (max(rs) if rs else None)

    summary = {}
    hdr = "| variant | what | " + " | ".join(f"{D.human(sz)} ratio (min–max)" for sz in sizes) + \
          " | " + " | ".join(f"{D.human(sz)} ops/s" for sz in sizes) + " | nginx / wrk cores, machine busy (" + \
          D.human(sizes[0]) + ") |"
    lines = [hdr, "|" + "---|" * (2 + 2 * len(sizes) + 1)]
    for name, what, _, _ in variants:
        cells, abs_cells = [], []
        summary[name] = {}
        for sz in sizes:
            m, lo, hi = ratio_med(name, sz)
            ops = median([r["ops_s"] for r in runs.get((name, sz), []) if r])
            summary[name][D.human(sz)] = {"ratio_ops": m, "min": lo, "max": hi, "ops_s": ops,
                                          "p99_ms": median([r["p99_ms"] for r in runs.get((name, sz), []) if r]),
                                          "server_cores": median([r["server_cores"] for r in runs.get((name, sz), [])
                                                                  if r]),
                                          "client_cores": median([r["client_cores"] for r in runs.get((name, sz), [])
                                                                  if r]),
                                          "machine_busy": median([r["machine_busy"] for r in runs.get((name, sz), [])
                                                                  if r])}
            cells.append(f"{fmt(m, 2)} ({fmt(lo, 2)}–{fmt(hi, 2)})" if name != "base" else "1")
            abs_cells.append(fmt(ops))
        s0 = summary[name][D.human(sizes[0])]
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + " | " + " | ".join(abs_cells) +
                     f" | {fmt(s0['server_cores'], 2)} / {fmt(s0['client_cores'], 2)}, "
                     f"{fmt(100 * s0['machine_busy'] if s0['machine_busy'] is not None else None, 0)} % |")
    table_md = "\n".join(lines)
    print(table_md)
    print(f"\nload average {' '.join(load0)} -> {' '.join(load1)}; {args.reps} reps x {args.duration} s, "
          f"{args.conns} connections")
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.results, f"{stamp}-nginx-tune.json")
    with open(path, "w") as f:
        json.dump({"suite": "tagd bench nginx_tune", "started": started.isoformat(),
                   "command": "bench/nginx_tune.py " + " ".join(sys.argv[1:]),
                   "loadavg_start": load0, "loadavg_end": load1, "reps": args.reps, "duration_s": args.duration,
                   "conns": args.conns, "base_opts": dict(S.NGINX_STATIC_BEST, **base_opts),
                   "variants": [{"name": n, "what": w, "nginx_opts": o, "client_opts": c} for n, w, o, c in variants],
                   "summary": summary, "table_md": table_md,
                   "runs": {f"{n}/{D.human(sz)}": rr for (n, sz), rr in runs.items()}}, f, indent=1, default=str)
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
