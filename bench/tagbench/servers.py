"""Every server the suite runs: nginx (static limit, origin, caching peer),
moto under waitress, tagd.  Each is started by this process, on loopback or
inside the WAN namespace, recorded in STATE/pids (so bench/run.sh's exit trap
can stop it by pid even if Python dies) and stopped by pid."""
import http.client
import os
import shutil
import signal
import subprocess
import time

from .util import free_port, log, wait_port

WAN_NS = os.environ.get("WAN_NS", "upstream")
WAN_ADDR = "169.254.200.2"

_running = []


class Server:
    def __init__(self, name, argv, host, port, state, env=None, netns=False, log_name=None):
        self.name = name
        self.host = host
        self.port = port
        self.state = state
        self.netns = netns
        self.url = f"http://{host}:{port}"
        if netns:
            argv = ["ip", "netns", "exec", WAN_NS] + argv
        self.log_path = os.path.join(state, "logs", (log_name or name) + ".log")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env,
                                     start_new_session=True)
        self.pid = self.proc.pid
        with open(os.path.join(state, "pids"), "a") as f:
            f.write(f"{self.pid}\n")
        _running.append(self)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        if self in _running:
            _running.remove(self)
        pidfile = os.path.join(self.state, "pids")
        try:
            with open(pidfile) as f:
                pids = [p for p in f.read().split() if p != str(self.pid)]
            with open(pidfile, "w") as f:
                f.write("".join(p + "\n" for p in pids))
        except OSError:
            pass

    def tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def stop_all():
    for s in list(reversed(_running)):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {s.name} (pid {s.pid}): {e}")


def http_get_status(host, port, path, timeout=2.0):
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return None


# ---------------------------------------------------------------- nginx

# The settings of the static nginx (the limit and the fast origins).  The
# defaults are the best found by bench/nginx_tune.py on this kind of machine
# (see bench/NGINX_TUNING.md); a key set to None leaves nginx's own default.
NGINX_STATIC_BEST = {
    "worker_processes": 2,
    "worker_connections": 8192,
    "multi_accept": "on",
    "accept_mutex": None,          # nginx default: off
    "sendfile": "on",
    "tcp_nopush": "on",            # head and body in full segments: >= off at every size, 1.2x at 1 MiB
    "tcp_nodelay": "on",
    "sendfile_max_chunk": None,    # nginx 1.22 default: 2m
    "output_buffers": None,
    "aio": None,                   # e.g. "threads"
    "directio": None,              # e.g. "4m"
    "open_file_cache": "max=20000 inactive=120s",
    "open_file_cache_valid": "120s",
    "keepalive_timeout": "300s",
    "keepalive_requests": 10000000,
    "reuseport": False,            # listen ... reuseport
    "backlog": 4096,
}


def nginx_conf(d, opts, http_block):
    """nginx.conf text for prefix d: the main/events/http settings of opts
    (a NGINX_STATIC_BEST-like dict) around http_block."""
    o = dict(NGINX_STATIC_BEST)
    o.update(opts or {})
    ev = [f"worker_connections {o['worker_connections']};"]
    for k in ("multi_accept", "accept_mutex"):
        if o.get(k) is not None:
            ev.append(f"{k} {o[k]};")
    http = []
    for k in ("sendfile", "tcp_nopush", "tcp_nodelay", "sendfile_max_chunk", "output_buffers", "aio",
              "directio", "keepalive_timeout", "keepalive_requests"):
        if o.get(k) is not None:
            http.append(f"    {k} {o[k]};")
    if o.get("open_file_cache"):
        http.append(f"    open_file_cache {o['open_file_cache']};")
        if o.get("open_file_cache_valid"):
            http.append(f"    open_file_cache_valid {o['open_file_cache_valid']};")
    else:
        http.append("    open_file_cache off;")
    return f"""
worker_processes {o['worker_processes']};
daemon off;
master_process on;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{ {' '.join(ev)} }}
http {{
    default_type application/octet-stream;
    types {{ }}
{chr(10).join(http)}
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format bytes '$msec $uri $status $body_bytes_sent "$http_range"';
{http_block}
}}
"""


def nginx_listen(host, port, opts=None):
    o = dict(NGINX_STATIC_BEST)
    o.update(opts or {})
    return f"listen {host}:{port} backlog={o['backlog']}{' reuseport' if o.get('reuseport') else ''};"


def nginx_static(state, www, role, host="127.0.0.1", port=None, workers=2,
                 access_log=False, netns=False, opts=None):
    """nginx serving www/<bucket>/<key> as static files with sendfile: the
    'limit' (role static) or a fast read-only S3 origin (role origin*): it
    answers ranges, sends ETag and Last-Modified, ignores auth.  opts
    overrides NGINX_STATIC_BEST (bench/nginx_tune.py tries variants)."""
    d = os.path.join(state, "nginx-" + role)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    port = port or free_port(host)
    o = {"worker_processes": workers}
    o.update(opts or {})
    alog = f"access_log {d}/access.log bytes;" if access_log else "access_log off;"
    http_block = f"""
    server {{
        {nginx_listen(host, port, o)}
        server_name _;
        root {www};
        {alog}
        location = /health {{ return 200 "ok\\n"; }}
        location / {{ }}
    }}"""
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(d, o, http_block))
    s = Server("nginx-" + role, ["nginx", "-c", conf, "-p", d], host, port, state, netns=netns)
    s.access_log = os.path.join(d, "access.log") if access_log else None
    s.conf = conf
    s.opts = dict(NGINX_STATIC_BEST, **o)
    if not wait_port(host, port, proc=s.proc):
        raise RuntimeError(f"nginx {role} did not start: {s.tail()}\n{_read(os.path.join(d, 'error.log'))}")
    return s


def nginx_peer(state, origin_url, role="peer", workers=2):
    """nginx as a caching S3 reverse proxy: proxy_cache + slice (1 MiB),
    proxy_cache_lock for coalescing, one upstream credential (none needed by
    the origins used here), clients unauthenticated.  The presigned query
    string is dropped on the way to the upstream and from the cache key."""
    d = os.path.join(state, "nginx-" + role)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "cache"))
    port = free_port()
    origin = origin_url.split("://", 1)[1]
    http_block = f"""
    proxy_cache_path {d}/cache levels=1:2 keys_zone=s3:64m max_size=32g inactive=7d use_temp_path=off;
    upstream origin {{ server {origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        server_name _;
        access_log off;
        location = /health {{ return 200 "ok\\n"; }}
        location / {{
            slice 1m;
            proxy_cache s3;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache_valid 200 206 7d;
            proxy_cache_lock on;
            proxy_cache_lock_age 60s;
            proxy_cache_lock_timeout 60s;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            proxy_buffering on;
            add_header X-Cache-Status $upstream_cache_status;
            proxy_pass http://origin$uri;
        }}
    }}"""
    conf = os.path.join(d, "nginx.conf")
    # tcp_nopush (TCP_CORK) off: with it on, 100 KiB cache hits of the slice
    # path stalled ~40 ms each (a delayed-ACK interplay), making the peer look
    # ~20x slower than it is; off is its best setting here at every size.
    with open(conf, "w") as f:
        f.write(nginx_conf(d, {"worker_processes": workers, "tcp_nopush": "off"}, http_block))
    s = Server("nginx-" + role, ["nginx", "-c", conf, "-p", d], "127.0.0.1", port, state)
    if not wait_port("127.0.0.1", port, proc=s.proc):
        raise RuntimeError(f"nginx peer did not start: {s.tail()}\n{_read(os.path.join(d, 'error.log'))}")
    return s


def _read(path):
    try:
        with open(path) as f:
            return f.read()[-3000:]
    except OSError:
        return ""


# ---------------------------------------------------------------- moto

def moto(state, tools_dir, host="127.0.0.1", port=None, threads=16, netns=False, role="moto"):
    pylib = os.path.join(state, "pylib")
    os.makedirs(pylib, exist_ok=True)
    link = os.path.join(pylib, "waitress")
    if not os.path.exists(link):
        os.symlink("/usr/lib/python3/dist-packages/waitress", link)
    port = port or free_port(host)
    import sys
    s = Server(role, [sys.executable, os.path.join(tools_dir, "moto_waitress.py"), host, str(port), str(threads)],
               host, port, state, env={"MOTO_WAITRESS_PYLIB": pylib}, netns=netns)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not s.alive():
            raise RuntimeError(f"moto did not start: {s.tail()}")
        if http_get_status(host, port, "/") == 200:
            return s
        time.sleep(0.2)
    raise RuntimeError(f"moto did not answer: {s.tail()}")


# ---------------------------------------------------------------- tagd

class TagdConfig:
    def __init__(self, binary, access_key, secret_key, region, threads, extra_args,
                 cache_size=None, cache_memory=None, cache_base="/var/tmp", run_id=None):
        self.binary = binary
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.threads = threads
        self.extra_args = extra_args
        self.cache_size = cache_size      # --cache-max-disk-usage override (BENCH_CACHE_SIZE); None: sized per start
        self.cache_memory = cache_memory  # --cache-memory-size; None: tagd's default (256MiB) unless a scenario sets it
        self.cache_base = cache_base      # cache folders are <base>/tagd-bench-cache-<run>-<n>
        self.run_id = run_id or str(os.getpid())


_tagd_seq = [0]
# Free space the suite leaves on the cache filesystem, and tagd's own
# --cache-min-free-disk: small, so the suite runs with a few GiB free.
CACHE_MIN_FREE = os.environ.get("BENCH_CACHE_MIN_FREE", "256MiB")
# tagd's defaults the sizing below assumes (TAGD_EXTRA_ARGS may change them:
# then set BENCH_CACHE_SIZE)
CACHE_REGION = 16 << 20
CACHE_BLOCK = 1 << 20
CACHE_ALIGN = 4096
DEFAULT_DRAM_TIER = 256 << 20


def parse_size(text):
    """'8GiB' / '512MiB' / '1048576' -> bytes."""
    t = str(text).strip()
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "K": 1 << 10, "M": 1 << 20,
             "G": 1 << 30, "T": 1 << 40, "B": 1}
    for u in sorted(units, key=len, reverse=True):
        if t.endswith(u):
            return int(float(t[:-len(u)]) * units[u])
    return int(t)


def size_text(n):
    """bytes -> the shortest exact 'NGiB' / 'NMiB' / 'N'."""
    for u, d in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % d == 0:
            return f"{n // d}{u}"
    return str(n)


def dram_tier_for(objects, default_mib=256):
    """A DRAM tier (--cache-memory-size) that holds every object of `objects` ([(size,
    count)]): each block counted at its fill buffer's size class (a quarter step of its
    power of two: at most 1.25x), never below tagd's default. Returns e.g. "384MiB"."""
    total = 0
    for size, count in objects:
        blocks = [CACHE_BLOCK] * (size // CACHE_BLOCK) + ([size % CACHE_BLOCK] if size % CACHE_BLOCK else [])
        total += count * sum(-(-b * 5 // 4) for b in blocks)
    return f"{max(default_mib, -(-total // (1 << 20)) + 16)}MiB"


def cache_size_for(objects, margin=1.25, spare_regions=4):
    """The block file a tagd needs to hold every object of `objects` (a list
    of (object size, count)) at tagd's default layout: objects cut into 1 MiB
    blocks, each stored with its header (128 B + 4 B per 64 KiB piece) rounded
    up to 4 KiB, blocks packed into 16 MiB regions (a block never straddles
    two), plus `margin` and `spare_regions` (the active region, re-fills),
    rounded up to whole regions.  Returns bytes."""
    def stored(n):
        raw = n + 128 + 4 * -(-n // 65536)
        return -(-raw // CACHE_ALIGN) * CACHE_ALIGN
    regions, off = 1, 0
    for size, count in objects:
        blocks = [CACHE_BLOCK] * (size // CACHE_BLOCK) + ([size % CACHE_BLOCK] if size % CACHE_BLOCK else [])
        per_obj = [stored(b) for b in blocks] or [stored(0)]
        for _ in range(count):
            for st in per_obj:
                if off + st > CACHE_REGION:
                    regions += 1
                    off = 0
                off += st
    return (int(regions * margin + 0.999) + spare_regions) * CACHE_REGION


def cache_dir_for(cfg):
    """A new, empty cache folder for one tagd start, recorded in STATE/cachedirs so
    bench/run.sh's exit trap deletes it even if Python dies."""
    _tagd_seq[0] += 1
    return os.path.join(cfg.cache_base, f"tagd-bench-cache-{cfg.run_id}-{_tagd_seq[0]}")


def remove_cache_dir(path, state=None):
    if path and os.path.basename(path).startswith("tagd-bench-cache-"):
        shutil.rmtree(path, ignore_errors=True)
    if state:
        listing = os.path.join(state, "cachedirs")
        try:
            with open(listing) as f:
                keep = [p for p in f.read().split() if p != path]
            with open(listing, "w") as f:
                f.write("".join(p + "\n" for p in keep))
        except OSError:
            pass


def snapshot_tagd(binary, state, name="tagd-snapshot"):
    """Copies tagd, and the tagd-uring beside it, into <state>/<name>/ and returns the
    copy of tagd: other engineers may rebuild build/ during a run, and tagd execs the
    tagd-uring next to its own path (io_uring sockets), so the two travel together."""
    folder = os.path.join(state, name)
    os.makedirs(folder, exist_ok=True)
    snap = os.path.join(folder, os.path.basename(binary))
    shutil.copy2(binary, snap)
    sibling = os.path.join(os.path.dirname(os.path.abspath(binary)), "tagd-uring")
    sibling_snap = os.path.join(folder, "tagd-uring")
    if os.path.exists(sibling_snap):
        os.unlink(sibling_snap)  # never another build's: it would be what runs
    if os.path.exists(sibling):
        shutil.copy2(sibling, sibling_snap)
    return snap


def tagd(state, cfg, upstream_url, port=None, log_level="warn", cache_dir=None, cache_size=None,
         cache_memory=None, binary=None, name="tagd", extra_args=()):
    """Starts tagd in front of upstream_url.  Every start gets its own fresh,
    empty cache folder (<cache_base>/tagd-bench-cache-<run>-<n>, never tagd's
    default /var/tmp/tagd-cache) unless cache_dir names a warm one to reuse.
    The block file is cache_size bytes (what the scenario needs, from
    cache_size_for) unless BENCH_CACHE_SIZE (cfg.cache_size) overrides it;
    cache_memory (else cfg.cache_memory, else tagd's default) is the DRAM tier;
    binary (else cfg.binary) is the tagd to run."""
    size = cfg.cache_size or (size_text(cache_size) if cache_size else "1GiB")
    memory = cache_memory or cfg.cache_memory
    fresh = cache_dir is None
    if fresh:
        cache_dir = cache_dir_for(cfg)
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
        with open(os.path.join(state, "cachedirs"), "a") as f:
            f.write(cache_dir + "\n")
        # the block file is preallocated: leave CACHE_MIN_FREE free on the filesystem
        st = os.statvfs(cache_dir)
        free = st.f_bavail * st.f_frsize
        if free - parse_size(size) < parse_size(CACHE_MIN_FREE):
            remove_cache_dir(cache_dir, state)
            raise RuntimeError(f"not enough disk for a {size} tagd cache in {cfg.cache_base}: "
                               f"{free / (1 << 30):.1f} GiB free, the suite keeps {CACHE_MIN_FREE} free "
                               "(BENCH_CACHE_MIN_FREE; or set BENCH_CACHE_BASE elsewhere)")
    port = port or free_port()
    argv = [binary or cfg.binary, "--port", str(port), "--listen-address", "127.0.0.1",
            "--upstream-endpoint", upstream_url, "--upstream-region", cfg.region,
            "--upstream-access-key-id", cfg.access_key,
            "--upstream-secret-access-key", cfg.secret_key,
            "--log-level", log_level, "--threads", str(cfg.threads),
            "--cache-disk-path", cache_dir, "--cache-max-disk-usage", size,
            "--cache-min-free-disk", CACHE_MIN_FREE]
    if memory:
        argv += ["--cache-memory-size", memory]
    argv += cfg.extra_args
    argv += list(extra_args)
    env = {"AWS_ACCESS_KEY_ID": cfg.access_key, "AWS_SECRET_ACCESS_KEY": cfg.secret_key,
           "TAG_ACCESS_LOG": os.environ.get("TAG_ACCESS_LOG", "false")}
    s = Server(name, argv, "127.0.0.1", port, state, env=env, log_name=f"{name}-{_tagd_seq[0]}")
    s.cache_dir = cache_dir
    s.upstream = upstream_url
    s.cache_size = size
    s.cache_size_bytes = parse_size(size)
    s.cache_memory = memory or f"{size_text(DEFAULT_DRAM_TIER)} (tagd default)"
    s.cache_memory_bytes = parse_size(memory) if memory else DEFAULT_DRAM_TIER
    s.argv = argv
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not s.alive():
            if fresh:
                remove_cache_dir(cache_dir, state)
            raise RuntimeError(f"tagd exited at start-up: {s.tail()}")
        if http_get_status("127.0.0.1", port, "/health") == 200:
            return s
        time.sleep(0.1)
    s.stop()
    if fresh:
        remove_cache_dir(cache_dir, state)
    raise RuntimeError(f"tagd /health did not answer 200 within 60 s: {s.tail()}")


def stop_tagd(s, keep_cache=False):
    """Stops tagd; deletes its cache folder unless keep_cache (a later start reuses it)."""
    if s is None:
        return
    s.stop()
    if not keep_cache:
        remove_cache_dir(getattr(s, "cache_dir", ""), s.state)


def tagd_metrics(port, host="127.0.0.1"):
    """tagd's /metrics as {name or name{labels}: value}; {} when unreachable."""
    out = {}
    try:
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        c.close()
    except OSError:
        return out
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, val = line.rpartition(" ")
        try:
            out[name] = float(val)
        except ValueError:
            pass
    return out


MODE_GAUGES = (("sockets", "tagd_io_uring_sockets", "io_uring", "epoll"),
               ("disk_reads", "tagd_disk_io_uring", "io_uring", "pread pool"),
               ("disk_io", "tagd_disk_direct_io", "O_DIRECT", "buffered"))


def tagd_mode(metrics):
    """What tagd ran on, from its /metrics gauges: {"sockets": io_uring|epoll,
    "disk_reads": io_uring|pread pool, "disk_io": O_DIRECT|buffered}; "unknown"
    where this binary exports no such gauge."""
    out = {}
    for key, gauge, one, zero in MODE_GAUGES:
        v = metrics.get(gauge)
        out[key] = "unknown" if v is None else (one if v >= 0.5 else zero)
    return out


def mode_text(mode):
    if not mode:
        return "unknown (tagd not running)"
    return f"sockets {mode['sockets']}, disk reads {mode['disk_reads']}, block file {mode['disk_io']}"


CACHE_RESULTS = ("hit", "miss", "revalidated", "bypass", "disabled")


def cache_delta(m0, m1):
    """What happened between two /metrics snapshots: requests per X-Cache result,
    hit ratio over object GETs, upstream requests, fill and hit bytes."""
    def d(k):
        return m1.get(k, 0) - m0.get(k, 0)
    res = {r: int(d(f'tagd_cache_requests_total{{result="{r}"}}')) for r in CACHE_RESULTS}
    total = sum(res.values())
    return {
        "x_cache": res,
        "hit_ratio": res["hit"] / total if total else None,
        "upstream_requests": int(d("tagd_upstream_requests_total")),
        "fill_bytes": int(d("tagd_cache_fill_bytes_total")),
        "hit_bytes": int(d("tagd_cache_hit_bytes_total")),
        "joined_fills": int(d("tagd_cache_joined_fills_total")),
        "fills_rejected": int(d("tagd_cache_fills_rejected_total")),
        "fills_failed": int(d("tagd_cache_fills_failed_total")),
        "checksum_failures": int(d("tagd_cache_checksum_failures_total")),
        "responses_5xx": int(d('tagd_responses_total{class="5xx"}')),
    }


# ---------------------------------------------------------------- WAN

class Wan:
    """wan.sh from the shared tools: a namespace `upstream` behind a delay line."""

    def __init__(self, tools_dir, state, delay_ms, rate_mbit):
        self.script = os.path.join(tools_dir, "wan.sh")
        self.state = state
        self.delay_ms = delay_ms
        self.rate_mbit = rate_mbit
        self.owned = False
        self.mode = None

    def up(self):
        st = subprocess.run(["bash", self.script, "status"], capture_output=True, text=True)
        if "namespace" in st.stdout and ": up" in st.stdout:
            raise RuntimeError("the WAN namespace already exists (someone else's run, or a stale one): "
                               f"run `{self.script} down` when it is not in use")
        env = dict(os.environ)
        env.setdefault("BENCH_STATE", os.path.join(self.state, "wan"))
        r = subprocess.run(["bash", self.script, "up", str(self.delay_ms), str(self.rate_mbit)],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"wan.sh up failed: {r.stderr.strip()}")
        self.owned = True
        with open(os.path.join(self.state, "wan.owned"), "w") as f:
            f.write("1\n")
        line = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        self.mode = line.split(" up: ", 1)[1] if " up: " in line else line
        self.mode = f"wan.sh {self.mode}"
        log(f"WAN up: {self.mode}")
        return r.stdout.strip()

    def down(self):
        if not self.owned:
            return
        env = dict(os.environ)
        env.setdefault("BENCH_STATE", os.path.join(self.state, "wan"))
        subprocess.run(["bash", self.script, "down"], capture_output=True, text=True, env=env)
        self.owned = False
        try:
            os.unlink(os.path.join(self.state, "wan.owned"))
        except OSError:
            pass
        log("WAN down")
