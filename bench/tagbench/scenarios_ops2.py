"""Admission under load (issue 11, part 8): tagd offered 4x its admission limit keeps
serving the requests it admits with bounded latency and memory.

Self-contained: a loopback upstream that answers every GET after a fixed service time
(so the work per admitted request is known and the upstream never saturates), tagd in
front of it with the cache off (every request holds a slot for the service time) and
limits.max_inflight_requests = L, and closed-loop client threads:

  unloaded   L/2 clients: every request admitted; its latency is the baseline
  overload   4L clients: about L admitted at a time, the rest shed with 503 SlowDown;
             a shed client waits Retry-After's tenth (100 ms) and tries again

Reported: p50/p99 of admitted requests in both phases and their ratio, sheds, goodput,
/health latency sampled during the overload, and tagd's peak RSS (VmHWM, reset before
each phase). Every loop is bounded in time and in count, 127.0.0.1 only.

Register in tagbench/scenarios.py (the lead's file):
    from . import scenarios_ops2
    SCENARIOS["admission"] = scenarios_ops2.admission   # and "admission" in ORDER / ALIASES ("11")
"""
import copy
import http.client
import http.server
import os
import socketserver
import threading
import time

from . import servers as S
from .util import fmt, log, median, proc_status_kib, ratio, reset_hwm

KiB = 1 << 10
SHED_REQUESTS = 'tagd_admission_shed_total{reason="requests"}'


class _SlowUpstream:
    """GET answers `body_bytes` bytes after `service_s`; HEAD likewise without a body."""

    def __init__(self, service_s, body_bytes):
        body = os.urandom(body_bytes)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                time.sleep(service_s)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"admission"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _phase(port, clients, duration_s, max_requests, health_samples=None):
    """Closed-loop clients for duration_s (and at most max_requests in all). Returns
    latencies (s) of admitted requests, shed count, error count, wall time."""
    lat, shed, errors = [], [0], [0]
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + duration_s
    stop = threading.Event()

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                if issued[0] >= max_requests:
                    return
                issued[0] += 1
            t0 = time.monotonic()
            try:
                conn.request("GET", f"/bench/admission-{i}")
                r = conn.getresponse()
                r.read()
                dt = time.monotonic() - t0
                if r.status == 200:
                    with lock:
                        lat.append(dt)
                elif r.status == 503:
                    with lock:
                        shed[0] += 1
                    conn.close()  # a shed request's body was left unread: tagd closes
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    time.sleep(0.1)
                else:
                    with lock:
                        errors[0] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                time.sleep(0.05)
        conn.close()

    def prober():
        while not stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
            except (OSError, http.client.HTTPException):
                ok = False
            health_samples.append((time.monotonic() - t0) if ok else None)
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    if health_samples is not None:
        threads.append(threading.Thread(target=prober, daemon=True))
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + 35)
    stop.set()
    return {"latencies": lat, "shed": shed[0], "errors": errors[0], "wall_s": time.monotonic() - start}


def admission(ctx):
    p = ctx.p
    limit = int(p.get("admission_limit", 8))
    service_s = float(p.get("admission_service_ms", 20)) / 1000
    body = int(p.get("admission_body", 64 * KiB))
    duration = float(p.get("admission_s", 8))
    max_requests = int(p.get("admission_max_requests", 20000))
    result = {"id": "admission", "title": f"11. Admission: tagd offered 4x its request limit ({limit})",
              "origin": f"a loopback upstream answering each GET after {service_s * 1000:.0f} ms "
                        f"({body // KiB} KiB bodies)",
              "tagd": "cache off (--cache-disabled), anonymous clients (--allow-anonymous), "
                      f"--max-inflight-requests {limit}",
              "columns": ["phase", "clients", "admitted", "shed", "errors", "admitted/s", "p50 ms", "p99 ms",
                          "p99 / unloaded p99", "/health max ms", "peak RSS MiB"],
              "rows": [], "headline": "", "notes": [], "data": {}}
    if not ctx.tagd_available():
        result["headline"] = "tagd unavailable"
        return result
    up = _SlowUpstream(service_s, body)
    cfg = copy.copy(ctx.tagd_cfg)
    cfg.extra_args = list(cfg.extra_args) + ["--cache-disabled", "--allow-anonymous", "--max-inflight-requests",
                                             str(limit), "--access-log", "false"]
    t = None
    try:
        t = S.tagd(ctx.state, cfg, up.url, name="tagd-admission")
        phases = {}
        for name, clients in (("unloaded", max(1, limit // 2)), ("overload", 4 * limit)):
            reset_hwm(t.pid)
            health = [] if name == "overload" else None
            r = _phase(t.port, clients, duration, max_requests, health)
            r["clients"] = clients
            r["peak_rss_kib"] = proc_status_kib(t.pid, "VmHWM")
            r["health"] = health
            phases[name] = r
            lat = r["latencies"]
            log(f"  admission {name}: {clients} clients, {len(lat)} admitted, {r['shed']} shed, "
                f"p99 {fmt((_pct(lat, 0.99) or 0) * 1000)} ms, RSS {fmt(r['peak_rss_kib'] / 1024)} MiB")
        met = S.tagd_metrics(t.port)
    finally:
        if t is not None:
            S.stop_tagd(t)
        up.stop()
    base_p99 = _pct(phases["unloaded"]["latencies"], 0.99)
    for name, r in phases.items():
        lat = r["latencies"]
        health = r["health"] or []
        health_ok = [h for h in health if h is not None]
        result["rows"].append([
            name, r["clients"], len(lat), r["shed"], r["errors"], len(lat) / r["wall_s"] if r["wall_s"] else None,
            (_pct(lat, 0.5) or 0) * 1000, (_pct(lat, 0.99) or 0) * 1000, ratio(_pct(lat, 0.99), base_p99),
            (max(health_ok) * 1000 if health_ok else None) if r["health"] is not None else None,
            r["peak_rss_kib"] / 1024 if r["peak_rss_kib"] else None])
    over = phases["overload"]
    p99_ratio = ratio(_pct(over["latencies"], 0.99), base_p99)
    rss_ratio = ratio(over["peak_rss_kib"], phases["unloaded"]["peak_rss_kib"])
    failed_probes = sum(1 for h in over["health"] if h is None)
    result["headline"] = (f"under 4x load, admitted p99 = {fmt(p99_ratio, 2)}x unloaded p99; peak RSS "
                          f"{fmt(rss_ratio, 2)}x; {over['shed']} requests shed with 503 SlowDown; "
                          f"/health failed {failed_probes} of {len(over['health'])} probes")
    result["notes"] = [
        f"The service time ({service_s * 1000:.0f} ms) bounds what an admitted request can take; an admitted p99 "
        "near the unloaded one means the queue in front of the upstream stays at the limit instead of growing "
        "with the offered load.",
        "Python client threads share the machine's cores with tagd and the upstream: absolute latencies include "
        "their scheduling; the ratio is the figure to read.",
        "tagd's own counters at the end: tagd_admission_shed_total{reason=\"requests\"} = "
        f"{met.get(SHED_REQUESTS)}, tagd_slow_down_total = {met.get('tagd_slow_down_total')}.",
    ]
    result["data"] = {k: {kk: vv for kk, vv in v.items() if kk != "latencies"} | {
        "p50_s": _pct(v["latencies"], 0.5), "p99_s": _pct(v["latencies"], 0.99), "admitted": len(v["latencies"])}
        for k, v in phases.items()}
    result["data"]["median_admitted_s"] = {k: median(v["latencies"]) for k, v in phases.items()}
    return result
