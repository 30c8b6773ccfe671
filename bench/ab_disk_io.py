"""Buffered vs O_DIRECT cache reads on a warm epoch: 10,000 x 100 KiB (1 GB), DRAM tier
256 MiB (a quarter of the dataset), 8 readers, shuffled; nginx static as the baseline.
Pass "warm": page cache as the previous pass left it; pass "cold": drop_caches before
each timed read (all three targets alike). Needs root (drop_caches).

  BIN=build-release/tagd [REPS=3] python3 bench/ab_disk_io.py"""
import json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagbench import data as D, loads, servers as S
KiB = 1024
STATE = "/tmp/tagd-bench-hitcmp/epochab"
WWW = "/var/tmp/tagd-bench-data/www"
os.makedirs(STATE, exist_ok=True)
for f in ("pids", "cachedirs"): open(os.path.join(STATE, f), "a").close()
creds = ("AKIATAGDBENCH0000001", "tagd-bench-secret-key-not-a-real-secret-0001", "us-east-1")
BIN = os.environ["BIN"]
REPS = int(os.environ.get("REPS", "3"))
srv = {}
out = []
def drop():
    subprocess.run(["sync"]); open("/proc/sys/vm/drop_caches", "w").write("3\n")
try:
    ds = D.Dataset(WWW, "epoch-100kib", 100 * KiB, 10000).ensure()
    origin = S.nginx_static(STATE, WWW, "origin-lo", workers=1)
    srv["nginx"] = S.nginx_static(STATE, WWW, "static", workers=2)
    for mode in ("direct", "buffered"):
        cfg = S.TagdConfig(BIN, creds[0], creds[1], creds[2], 2, ["--cache-disk-io", mode], cache_size="1536MiB",
                           cache_memory="256MiB", run_id=f"ep{os.getpid()}{mode}")
        srv[mode] = S.tagd(STATE, cfg, origin.url)
    files = {}
    for t, s in srv.items():
        files[t] = D.write_url_files(os.path.join(STATE, t), D.presign(s.url, creds, ds.keys))[0]
    for t in ("direct", "buffered"):
        r = loads.s3get(STATE, files[t], conns=8)
        print("warm", t, r["ops_s"], flush=True)
    order = ["direct", "buffered", "nginx"]
    for passname in ("warm", "cold"):
        for rep in range(REPS):
            seq = order[rep % 3:] + order[:rep % 3]
            line = []
            for t in seq:
                if passname == "cold":
                    drop()
                t0 = time.monotonic()
                r = loads.s3get(STATE, files[t], conns=8, seed=100 + rep)
                dt = time.monotonic() - t0
                out.append({"pass": passname, "rep": rep, "target": t, "seconds": dt, "ops_s": r["ops_s"]})
                line.append(f"{t} {dt:.2f}s")
            print(passname, rep, ", ".join(line), open("/proc/loadavg").read().split()[0], flush=True)
finally:
    for s in srv.values():
        try:
            S.stop_tagd(s) if s.name == "tagd" else s.stop()
        except Exception as e:
            print("stop", e)
    try: origin.stop()
    except Exception: pass
    json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-ab-disk-io.json"), "w"), indent=1)
