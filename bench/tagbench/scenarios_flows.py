"""The ML workflows of issue 12, over the emulated WAN (needs root, like scenario 3):

    ckpt      PyTorch DCP checkpoint: 4 ranks PUT their shards, .metadata as a temporary
              object renamed by CopyObject + DeleteObject, HeadObject; then a resume on
              a fresh node (GET .metadata, ranged GETs into every shard), and a second
              resume on the same node. Direct vs through tagd.
    weights   Model weights at cold start: 8 replicas load one safetensors file the way
              loaders do (8-byte header length, JSON header, then every tensor by range)
              at the same time. Direct (8 copies over the WAN) vs a cold tagd.
    hydrate   `aws s3 sync` of a dataset prefix to local disk: direct, through a cold
              tagd, then again into another directory through the same (warm) tagd.

Register in bench/tagbench/scenarios.py (SCENARIOS, ORDER) or run on their own:

    cd bench && sudo python3 -m tagbench.scenarios_flows [--full] [ckpt] [weights] [hydrate]

BENCH_FLOWS_ORIGIN=lo puts moto on loopback instead (no WAN, no root needed).

Every load is bounded in count (fixed objects, fixed ranges) and in time (thread joins
and subprocesses have timeouts); the origin is moto inside the WAN namespace; tagd and
clients are on 127.0.0.1. "Upstream bytes" of a read phase through tagd are tagd's own
counter of what its fills fetched (tagd_cache_fill_bytes_total); direct reads count what
the clients asked for."""
import concurrent.futures as cf
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time

from . import servers as S
from .scenarios import MiB
from .util import fmt, log, median

BUCKET = "flows"
CAP_S = 600  # no single phase may run longer than this


def _origin(ctx):
    """moto inside the WAN namespace (default), or on loopback with BENCH_FLOWS_ORIGIN=lo
    (for machines where the WAN cannot be set up; the ratios then show tagd's own cost
    and the upstream-bytes saving, not the WAN's latency)."""
    if os.environ.get("BENCH_FLOWS_ORIGIN", "wan") == "lo":
        return ctx.moto_lo()
    return ctx.moto_wan()


def _where(ctx):
    return " over the emulated WAN" if ctx.wan else " (origin on loopback)"


def _client(endpoint, creds, conns=32):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
                        region_name=creds[2],
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=conns,
                                      read_timeout=120))


def _bucket(c):
    try:
        c.create_bucket(Bucket=BUCKET)
    except (c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists):
        pass


def _pool_map(fn, items, workers):
    """Runs fn over items on `workers` threads; bounded by CAP_S."""
    with cf.ThreadPoolExecutor(workers) as ex:
        futs = [ex.submit(fn, i) for i in items]
        done, pending = cf.wait(futs, timeout=CAP_S)
        if pending:
            raise RuntimeError(f"{len(pending)} tasks still running after {CAP_S} s")
        return [f.result() for f in futs]


def _fill_bytes(ctx):
    m = ctx.metrics()
    return m.get("tagd_cache_fill_bytes_total", 0.0), m.get("tagd_upstream_requests_total", 0.0)


def _timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


# ================================================================== checkpoint

def _dcp_save(c, prefix, ranks, shard, seed):
    rng = random.Random(seed)
    blobs = {f"{prefix}/__{r}_0.distcp": rng.randbytes(shard) for r in range(ranks)}
    _pool_map(lambda kv: c.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), list(blobs.items()), ranks)
    tensors = []
    for key, data in blobs.items():
        at = 0
        while at < len(data):
            n = min(rng.choice([256 << 10, 1 << 20, 2 << 20, 4 << 20]), len(data) - at)
            tensors.append({"file": key, "offset": at, "length": n,
                            "sha": hashlib.sha256(data[at:at + n]).hexdigest()})
            at += n
    meta = json.dumps({"tensors": tensors}).encode()
    tmp = f"{prefix}/.metadata.tmp"
    c.put_object(Bucket=BUCKET, Key=tmp, Body=meta)
    c.copy_object(Bucket=BUCKET, Key=f"{prefix}/.metadata", CopySource={"Bucket": BUCKET, "Key": tmp})
    c.delete_object(Bucket=BUCKET, Key=tmp)
    c.head_object(Bucket=BUCKET, Key=f"{prefix}/.metadata")
    return len(tensors)


def _dcp_resume(c, prefix, ranks):
    tensors = json.loads(c.get_object(Bucket=BUCKET, Key=f"{prefix}/.metadata")["Body"].read())["tensors"]
    by_rank = [tensors[r::ranks] for r in range(ranks)]  # every rank reads into every shard

    def load(mine):
        for t in mine:
            body = c.get_object(Bucket=BUCKET, Key=t["file"],
                                Range=f"bytes={t['offset']}-{t['offset'] + t['length'] - 1}")["Body"].read()
            if hashlib.sha256(body).hexdigest() != t["sha"]:
                raise RuntimeError(f"corrupt range of {t['file']}")
    _pool_map(load, by_rank, ranks)
    return len(tensors)


def checkpoint(ctx):
    p = ctx.p
    ranks = 4
    shard = (64 if ctx.args.profile == "full" else 16) * MiB
    up = _origin(ctx)
    direct_c = _client(up.url, ctx.creds)
    _bucket(direct_c)
    rows, data = [], {"direct": [], "tagd": []}
    for rep in range(p["reps_slow"]):
        order = ["direct", "tagd"] if rep % 2 == 0 else ["tagd", "direct"]
        for what in order:
            prefix = f"ckpt/{what}-{os.getpid()}-{ctx.next_seed()}"
            if what == "direct":
                w, n = _timed(lambda: _dcp_save(direct_c, prefix, ranks, shard, rep))
                r1, _ = _timed(lambda: _dcp_resume(direct_c, prefix, ranks))
                r2, _ = _timed(lambda: _dcp_resume(direct_c, prefix, ranks))
                data["direct"].append({"write_s": w, "resume_s": r1, "resume2_s": r2, "ranges": n})
            elif ctx.tagd_available():
                need = [(shard, ranks)]
                ctx.tagd(up, fresh=True, need=need)
                c = _client(ctx.tagd_url(), ctx.creds)
                w, n = _timed(lambda: _dcp_save(c, prefix, ranks, shard, rep))
                # Resume on a fresh node: a new, empty tagd.
                ctx.tagd(up, fresh=True, need=need)
                c = _client(ctx.tagd_url(), ctx.creds)
                b0, q0 = _fill_bytes(ctx)
                r1, _ = _timed(lambda: _dcp_resume(c, prefix, ranks))
                b1, q1 = _fill_bytes(ctx)
                r2, _ = _timed(lambda: _dcp_resume(c, prefix, ranks))
                b2, q2 = _fill_bytes(ctx)
                data["tagd"].append({"write_s": w, "resume_s": r1, "resume2_s": r2, "ranges": n,
                                     "resume_upstream_bytes": b1 - b0, "resume_upstream_requests": q1 - q0,
                                     "resume2_upstream_bytes": b2 - b1, "resume2_upstream_requests": q2 - q1})
                ctx.stop_tagd()
            log(f"  ckpt {what}: {data[what][-1] if data[what] else '-'}")
    total = ranks * shard
    for what in ("direct", "tagd"):
        rr = data[what]
        if not rr:
            continue
        rows.append([what, f"{ranks} x {shard // MiB} MiB", median([r["write_s"] for r in rr]),
                     median([r["resume_s"] for r in rr]), median([r["resume2_s"] for r in rr]),
                     median([r["ranges"] for r in rr]),
                     fmt(median([r["resume_upstream_bytes"] for r in rr]) / total, 2) if what == "tagd" else "1.00",
                     median([r.get("resume_upstream_requests") for r in rr]) if what == "tagd" else "-",
                     median([r.get("resume2_upstream_bytes") for r in rr]) if what == "tagd" else "-"])
    return {"id": "ckpt", "title": "Checkpoint write and resume (PyTorch DCP pattern)" + _where(ctx),
            "origin": f"moto ({up.url}{', inside the WAN namespace' if ctx.wan else ', loopback'})", "tagd": ctx.tagd_label(),
            "wan": ctx.wan.mode if ctx.wan else None,
            "columns": ["path", "shards", "write s", "resume (cold) s", "resume again s", "ranged GETs",
                        "resume upstream bytes / shards", "resume upstream requests", "2nd resume upstream bytes"],
            "rows": rows, "headline": "", "notes": [
                "Write: 4 ranks PUT in parallel, then .metadata tmp + CopyObject + DeleteObject + HeadObject.",
                "Resume: a fresh tagd (another node), 4 readers, each reading every 4th tensor range of all shards."],
            "data": data}


# ================================================================== model weights

def _safetensors(path, size, seed):
    """A safetensors-shaped file of about `size` bytes (kept between runs)."""
    if os.path.exists(path) and os.path.getsize(path) >= size:
        return path
    rng = random.Random(seed)
    header, at, sizes = {"__metadata__": {"format": "pt"}}, 0, []
    while at < size:
        n = rng.choice([4, 8, 16, 32]) * MiB
        header[f"model.layers.{len(sizes)}.weight"] = {"dtype": "BF16", "shape": [n // 2], "data_offsets": [at, at + n]}
        sizes.append(n)
        at += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for n in sizes:
            f.write(os.urandom(n))
    os.replace(path + ".tmp", path)
    return path


def _load_weights(c, key):
    n = struct.unpack("<Q", c.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-7")["Body"].read())[0]
    header = json.loads(c.get_object(Bucket=BUCKET, Key=key, Range=f"bytes=8-{7 + n}")["Body"].read())
    got = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        got += len(c.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={8 + n + a}-{8 + n + b - 1}")["Body"].read())
    return got


def weights(ctx):
    p = ctx.p
    replicas = 8
    size = (1024 if ctx.args.profile == "full" else 256) * MiB
    path = _safetensors(os.path.join(ctx.www, f"weights-{size // MiB}mib.safetensors"), size, 12)
    size = os.path.getsize(path)
    up = _origin(ctx)
    direct_c = _client(up.url, ctx.creds, conns=replicas * 2)
    _bucket(direct_c)
    key = f"weights/model-{os.getpid()}.safetensors"
    log(f"  weights: uploading {size / MiB:.0f} MiB")
    direct_c.upload_file(path, BUCKET, key)
    data = {"direct": [], "tagd": []}
    for rep in range(p["reps_slow"]):
        for what in (["direct", "tagd"] if rep % 2 == 0 else ["tagd", "direct"]):
            if what == "direct":
                t, _ = _timed(lambda: _pool_map(lambda i: _load_weights(direct_c, key), range(replicas), replicas))
                data["direct"].append({"s": t, "upstream_bytes": replicas * size})
            elif ctx.tagd_available():
                ctx.tagd(up, fresh=True, need=[(size, 1)])
                c = _client(ctx.tagd_url(), ctx.creds, conns=replicas * 2)
                b0, q0 = _fill_bytes(ctx)
                t, _ = _timed(lambda: _pool_map(lambda i: _load_weights(c, key), range(replicas), replicas))
                b1, q1 = _fill_bytes(ctx)
                data["tagd"].append({"s": t, "upstream_bytes": b1 - b0, "upstream_requests": q1 - q0})
                ctx.stop_tagd()
            log(f"  weights {what}: {data[what][-1] if data[what] else '-'}")
    rows = []
    for what in ("direct", "tagd"):
        rr = data[what]
        if rr:
            t = median([r["s"] for r in rr])
            rows.append([what, f"{replicas} x {size / MiB:.0f} MiB", t, replicas * size / MiB / t,
                         fmt(median([r["upstream_bytes"] for r in rr]) / size, 2)])
    ratio = (median([r["s"] for r in data["tagd"]]) / median([r["s"] for r in data["direct"]])
             if data["tagd"] and data["direct"] else None)
    return {"id": "weights", "title": f"Model weights: {replicas} replicas' cold start" + _where(ctx),
            "origin": f"moto ({up.url}{', inside the WAN namespace' if ctx.wan else ', loopback'})", "tagd": ctx.tagd_label(),
            "wan": ctx.wan.mode if ctx.wan else None,
            "columns": ["path", "load", "time s", "MiB/s delivered", "upstream bytes / file"],
            "rows": rows, "headline": f"tagd / direct cold-start time = {fmt(ratio)}" if ratio else "",
            "notes": ["Each replica: the 8-byte header length, the JSON header, then every tensor (4-32 MiB) "
                      "by range, in file order; the 8 replicas start together."], "data": data}


# ================================================================== hydrate

def _sync(endpoint, creds, dest, prefix):
    with tempfile.TemporaryDirectory() as cfgdir:
        cfg = os.path.join(cfgdir, "config")
        with open(cfg, "w") as f:
            f.write("[default]\ns3 =\n    addressing_style = path\n    max_concurrent_requests = 10\n")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=creds[0], AWS_SECRET_ACCESS_KEY=creds[1],
                   AWS_DEFAULT_REGION=creds[2], AWS_CONFIG_FILE=cfg)
        t0 = time.monotonic()
        subprocess.run(["aws", "s3", "sync", f"s3://{BUCKET}/{prefix}", dest, "--endpoint-url", endpoint, "--only-show-errors"],
                       check=True, env=env, timeout=CAP_S)
        return time.monotonic() - t0


def hydrate(ctx):
    p = ctx.p
    count, size = (2000, 256 << 10) if ctx.args.profile == "full" else (400, 256 << 10)
    up = _origin(ctx)
    c = _client(up.url, ctx.creds)
    _bucket(c)
    prefix = f"dataset-{os.getpid()}/"
    log(f"  hydrate: uploading {count} x {size >> 10} KiB")
    blob = os.urandom(size)
    _pool_map(lambda i: c.put_object(Bucket=BUCKET, Key=f"{prefix}shard-{i:05d}.tar", Body=blob), range(count), 32)
    data = {"direct": [], "tagd_cold": [], "tagd_warm": []}
    base = tempfile.mkdtemp(prefix="tagd-hydrate-", dir="/var/tmp")
    try:
        for rep in range(p["reps_slow"]):
            for what in (["direct", "tagd"] if rep % 2 == 0 else ["tagd", "direct"]):
                if what == "direct":
                    d = os.path.join(base, f"direct-{rep}")
                    data["direct"].append({"s": _sync(up.url, ctx.creds, d, prefix)})
                elif ctx.tagd_available():
                    ctx.tagd(up, fresh=True, need=[(size, count)])
                    b0, _ = _fill_bytes(ctx)
                    t1 = _sync(ctx.tagd_url(), ctx.creds, os.path.join(base, f"tagd-a-{rep}"), prefix)
                    b1, _ = _fill_bytes(ctx)
                    t2 = _sync(ctx.tagd_url(), ctx.creds, os.path.join(base, f"tagd-b-{rep}"), prefix)
                    b2, _ = _fill_bytes(ctx)
                    data["tagd_cold"].append({"s": t1, "upstream_bytes": b1 - b0})
                    data["tagd_warm"].append({"s": t2, "upstream_bytes": b2 - b1})
                    ctx.stop_tagd()
                log(f"  hydrate {what}: {[v[-1] for v in data.values() if v]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    total = count * size
    rows = []
    for what, label in (("direct", "direct"), ("tagd_cold", "through tagd, cold"),
                        ("tagd_warm", "through tagd, second directory (warm)")):
        rr = data[what]
        if rr:
            t = median([r["s"] for r in rr])
            ub = median([r.get("upstream_bytes", total) for r in rr])
            rows.append([label, f"{count} x {size >> 10} KiB", t, total / MiB / t, fmt(ub / total, 2)])
    return {"id": "hydrate", "title": "Hydrating a dataset with aws s3 sync" + _where(ctx),
            "origin": f"moto ({up.url}{', inside the WAN namespace' if ctx.wan else ', loopback'})", "tagd": ctx.tagd_label(),
            "wan": ctx.wan.mode if ctx.wan else None,
            "columns": ["path", "dataset", "time s", "MiB/s", "upstream bytes / dataset"], "rows": rows,
            "headline": "", "notes": ["aws s3 sync with 10 concurrent requests (the CLI default)."], "data": data}


SCENARIOS = {"ckpt": checkpoint, "weights": weights, "hydrate": hydrate}
ORDER = ["ckpt", "weights", "hydrate"]


def _main():
    """Runs these scenarios without the suite's driver (same Ctx, quick or full profile)."""
    import argparse
    import importlib.util
    import sys
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("bench_driver", os.path.join(here, "bench.py"))
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    from . import scenarios as SC
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--tagd-bin", default=os.environ.get("TAGD_BIN", os.path.join(os.path.dirname(here), "build", "tagd")))
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    a.profile = "full" if a.full else "quick"
    prof = dict(driver.PROFILES[a.profile])
    state = os.environ.get("BENCH_STATE_DIR", "/tmp/tagd-bench-flows")
    data_dir = os.environ.get("BENCH_DATA_DIR", "/var/tmp/tagd-bench-data")
    www = os.path.join(data_dir, "www")
    os.makedirs(state, exist_ok=True)
    os.makedirs(www, exist_ok=True)
    creds = ("AKIATAGDBENCH0000001", "tagd-bench-secret-key-not-a-real-secret-0001", "us-east-1")
    snap = S.snapshot_tagd(a.tagd_bin, state)
    cfg = S.TagdConfig(snap, creds[0], creds[1], creds[2], os.cpu_count() or 2, [],
                       cache_base=os.environ.get("BENCH_CACHE_BASE", "/var/tmp"))
    tools = os.environ.get("BENCH_TOOLS", os.path.join(os.path.dirname(os.path.dirname(here)), "shared", "tools"))
    ctx = SC.Ctx(a, prof, state, www, tools, creds, cfg, None)
    ctx.tagd_xcache = "HIT"
    out = {}
    try:
        for name in a.names or ORDER:
            log(f"--- scenario {name}")
            out[name] = SCENARIOS[name](ctx)
            print(json.dumps({k: out[name][k] for k in ("title", "columns", "rows", "headline", "wan")}, default=str))
    finally:
        ctx.stop()
    with open(os.path.join(state, "flows-results.json"), "w") as f:
        json.dump(out, f, default=str, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
