"""A/B of two tagd binaries on cache hits (OLD_BIN, NEW_BIN; e.g. before and after a
change), both running at once both running at once in front of the
same nginx origin, alternating wrk runs (order rotated every rep) with nginx static
as the per-rep baseline.  Bounded: REPS x sizes x conns x 3 targets x DUR s.
Then per binary: syscalls/request (perf stat tracepoints) and a perf profile
(perf record -g, cpu-clock) during one bounded wrk run at 1 KiB c16 (PERF_SIZE=1M: another size).

  OLD_BIN=... NEW_BIN=... [OLD_ARGS=... NEW_ARGS=...] [REPS=3 DUR=3 NSIZES=2 PERF=1] python3 bench/ab_hits.py
  SIZES=1K,100K,1M,4M picks the object sizes instead of NSIZES (each dataset ~100 MiB at most,
  so it stays in the default DRAM tier); PERF needs PERF_SIZE (default 1K) among them.

OLD_ARGS / NEW_ARGS: extra tagd flags per binary (space-separated), e.g. NEW_ARGS="--io-uring off"
to compare a binary that would exec tagd-uring against an older epoll-only one."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagbench import data as D, loads, servers as S  # noqa: E402
from tagbench.util import cpu_seconds, log  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
STATE = "/tmp/tagd-bench-hitcmp/ab3"
WWW = "/var/tmp/tagd-bench-data/www"
REPS = int(os.environ.get("REPS", "6"))
DUR = int(os.environ.get("DUR", "3"))
SIZE_CHOICES = {"1K": (KiB, 1000), "100K": (100 * KiB, 500), "1M": (MiB, 100), "4M": (4 * MiB, 25)}
SIZE_NAMES = {KiB: "hit-1kib", 100 * KiB: "hit-100kib", MiB: "abhit-1mib", 4 * MiB: "abhit-4mib"}
if os.environ.get("SIZES"):
    SIZES = [SIZE_CHOICES[name] for name in os.environ["SIZES"].split(",")]
else:
    SIZES = [(KiB, 1000), (100 * KiB, 500)][: int(os.environ.get("NSIZES", "2"))]
CONNS = [16, 64]
PERF_SIZE = os.environ.get("PERF_SIZE", "1K")
if os.environ.get("PERF", "1") == "1" and SIZE_CHOICES.get(PERF_SIZE, (None,))[0] not in [s for s, _ in SIZES]:
    sys.exit(f"PERF_SIZE={PERF_SIZE} must be one of the sizes measured (SIZES), or set PERF=0")
creds = ("AKIATAGDBENCH0000001", "tagd-bench-secret-key-not-a-real-secret-0001", "us-east-1")
os.makedirs(STATE, exist_ok=True)
open(os.path.join(STATE, "pids"), "a").close()
open(os.path.join(STATE, "cachedirs"), "a").close()
out = {"runs": [], "perf": {}}
srv = {}
try:
    origin = S.nginx_static(STATE, WWW, "origin-lo", workers=1)
    srv["nginx"] = S.nginx_static(STATE, WWW, "static", workers=2)
    for name, binp in (("old", os.environ["OLD_BIN"]), ("new", os.environ["NEW_BIN"])):
        extra = os.environ.get(f"{name.upper()}_ARGS", "").split()
        cfg = S.TagdConfig(binp, creds[0], creds[1], creds[2], os.cpu_count(), extra, cache_size="2GiB",
                           run_id=f"hitab{os.getpid()}")
        srv[name] = S.tagd(STATE, cfg, origin.url)
    dsets = [D.Dataset(WWW, SIZE_NAMES[s], s, n).ensure() for s, n in SIZES]
    files = {}
    for t, s in srv.items():
        for ds in dsets:
            urls = D.presign(s.url, creds, ds.keys)
            files[(t, ds.size)] = D.write_url_files(os.path.join(STATE, f"{t}-{ds.size}"), urls)
    for t in ("old", "new"):  # warm twice
        for ds in dsets:
            for _ in range(2):
                loads.s3get(STATE, files[(t, ds.size)][0], conns=8)
    order = ["old", "new", "nginx"]
    seed = 1
    for ds in dsets:
        for conns in CONNS:
            for rep in range(REPS):
                seq = order[rep % 3:] + order[:rep % 3]
                seed += 1
                line = []
                for t in seq:
                    pid = srv[t].pid
                    c0 = cpu_seconds(pid, with_children=(t == "nginx"))
                    r = loads.wrk(srv[t].url, files[(t, ds.size)][1], conns, DUR, seed=seed)
                    c1 = cpu_seconds(pid, with_children=(t == "nginx"))
                    r.update(target=t, size=ds.size, rep=rep, cpu_us_req=1e6 * (c1 - c0) / max(1, r["requests"]))
                    out["runs"].append(r)
                    line.append(f"{t} {r['ops_s']:.0f} ops/s {r['cpu_us_req']:.1f}us/req")
                log(f"{ds.size} c{conns} rep{rep}: " + ", ".join(line))
    # syscalls per request and a profile, PERF_SIZE (1 KiB) c16, one bounded run each
    perf_size = SIZE_CHOICES[PERF_SIZE][0]
    ev = ",".join(f"syscalls:sys_enter_{s}" for s in ("writev", "write", "sendmsg", "sendto", "read", "recvfrom",
                                                     "recvmsg", "epoll_wait", "pread64", "preadv", "io_uring_enter",
                                                     "futex", "sendfile64")) + ",raw_syscalls:sys_enter"
    for t in (("old", "new", "old", "new") if os.environ.get("PERF", "1") == "1" else ()):
        pid = srv[t].pid
        for kind in ("stat", "record"):
            if kind == "stat":
                argv = ["perf", "stat", "-x,", "-e", ev, "-p", str(pid), "-o", f"{STATE}/stat-{t}.txt", "--",
                        "sleep", str(DUR + 1)]
            else:
                if f"record-{t}" in out["perf"]:
                    continue
                argv = ["perf", "record", "-q", "-g", "-F", "2000", "-p", str(pid), "-o", f"{STATE}/perf-{t}.data",
                        "--", "sleep", str(DUR + 1)]
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            r = loads.wrk(srv[t].url, files[(t, perf_size)][1], 16, DUR, seed=99)
            p.wait(timeout=DUR + 30)
            key = f"{kind}-{t}" if kind == "record" else f"{kind}-{t}-{len([k for k in out['perf'] if k.startswith('stat-' + t)])}"
            res = {"requests": r["requests"], "ops_s": r["ops_s"]}
            if kind == "stat":
                cnt = {}
                for ln in open(f"{STATE}/stat-{t}.txt"):
                    f = ln.strip().split(",")
                    if len(f) > 2 and f[0].replace(".", "").isdigit():
                        cnt[f[2]] = int(float(f[0]))
                res["per_req"] = {k.split(":")[1]: round(v / max(1, r["requests"]), 3) for k, v in cnt.items() if v}
            out["perf"][key] = res
            log(f"{key}: {res}")
finally:
    for s in srv.values():
        try:
            if s.name == "tagd":
                S.stop_tagd(s)
            else:
                s.stop()
        except Exception as e:  # noqa: BLE001
            log(f"stop {s.name}: {e}")
    try:
        origin.stop()
    except Exception:  # noqa: BLE001
        pass
    json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-ab-hits.json"), "w"), indent=1)
