"""Scan resistance (issue 10): shuffled epochs over a dataset 1.5x the cache.

    bench/run.sh evict          (once registered; see SCENARIOS below)

One scenario, `evict`: for each eviction policy (FIFO, tagd's default, and hit-gated) a
fresh tagd with a block file of two thirds of the dataset (as tagd stores it: 1 MiB
blocks with a 4 KiB-rounded header, in 16 MiB regions) and no DRAM tier (so every hit is
the block file's doing), then 4 epochs, each in a new shuffled order (the same orders for
both policies), 8 readers. The hit ratio of epochs 2-4 comes from tagd's own counters
(tagd_cache_requests_total, the same source as X-Cache), and is printed against the
goal 0.9 x cache/dataset. Both policies run in the same suite run, one after the other,
on the same origin and the same URLs.

Environment: BENCH_EVICT_ORIGIN = wan (default: nginx static inside the emulated WAN
namespace, needs root like scenario 3) | lo (nginx static on loopback: the hit ratios do
not depend on the WAN, and it is faster); BENCH_EVICT_COUNT overrides the object count.
Every load is bounded: s3get reads each URL once per epoch, with its own time cap.
"""
import copy
import os

from . import data as D
from . import loads
from . import servers as S
from .scenarios import KiB, MiB, _pct, goal_met
from .util import fmt, log

POLICIES = ("fifo", "hit-gated")
EPOCHS = 4
DATASET_OVER_CACHE = 1.5


def _stored_bytes(size, count):
    """Bytes the objects take in tagd's block file, region slack excluded."""
    def stored(n):
        raw = n + 128 + 4 * -(-n // 65536)
        return -(-raw // S.CACHE_ALIGN) * S.CACHE_ALIGN
    blocks = [S.CACHE_BLOCK] * (size // S.CACHE_BLOCK) + ([size % S.CACHE_BLOCK] if size % S.CACHE_BLOCK else [])
    return count * sum(stored(b) for b in blocks)


def _start(ctx, upstream, policy, cache_bytes):
    cfg = copy.copy(ctx.tagd_cfg)
    cfg.extra_args = list(cfg.extra_args) + ["--cache-eviction-policy", policy]
    cfg.cache_size = None  # this scenario's size is the point: BENCH_CACHE_SIZE does not apply
    ctx.tagd_url()  # allocates the run's tagd port: the presigned URLs name it
    return S.tagd(ctx.state, cfg, upstream.url, port=ctx.tagd_port, cache_size=cache_bytes, cache_memory="0",
                  name=f"tagd-{policy}")


def scan_resistance(ctx):
    p = ctx.p
    size = 100 * KiB
    count = int(os.environ.get("BENCH_EVICT_COUNT") or (4500 if ctx.args.profile == "quick" else 10000))
    ds = D.Dataset(ctx.www, f"epoch-{size // KiB}kib", size, count).ensure()
    stored = _stored_bytes(size, count)
    region = S.CACHE_REGION
    cache_bytes = max(2, round(stored / DATASET_OVER_CACHE / region)) * region
    cache_over_dataset = cache_bytes / stored
    goal = 0.9 * cache_over_dataset
    label = f"{count:,} x {D.human(size)}"
    title = f"Scan resistance: {EPOCHS} shuffled epochs of {label} through a block file of 1/1.5 of it"
    origin_kind = os.environ.get("BENCH_EVICT_ORIGIN", "wan")
    up = ctx.origin_wan() if origin_kind == "wan" else ctx.origin_lo()
    base = {"id": "evict", "title": title, "origin": f"nginx static ({up.url}, {origin_kind})",
            "tagd": f"{ctx.tagd_label()}; here: block file {S.size_text(cache_bytes)}, no DRAM tier, "
                    f"cache.eviction_policy {' and '.join(POLICIES)}"}
    if not ctx.tagd_available():
        return dict(base, columns=["x"], rows=[], headline=f"tagd not measured: {ctx.tagd_label()}", notes=[],
                    data={})
    urls = ctx.urls(ctx.tagd_url(), ds.keys, ds.prefix)[0]
    workers = p["epoch_workers"]
    seeds = [ctx.next_seed() for _ in range(EPOCHS)]  # the same orders for every policy
    runs = {}
    for policy in POLICIES:
        td = _start(ctx, up, policy, cache_bytes)
        epochs = []
        try:
            for e, seed in enumerate(seeds):
                m0 = S.tagd_metrics(td.port)
                r = loads.s3get(ctx.state, urls, conns=workers, seed=seed, timeout_s=600)
                m1 = ctx.note_mode(S.tagd_metrics(td.port))
                c = S.cache_delta(m0, m1)
                c["declined"] = int(m1.get("tagd_cache_fills_declined_total", 0)
                                    - m0.get("tagd_cache_fills_declined_total", 0))
                c["regions_evicted_dead"] = int(m1.get("tagd_cache_regions_evicted_dead_total", 0)
                                                - m0.get("tagd_cache_regions_evicted_dead_total", 0))
                epochs.append({"wall_s": r["wall_s"], "ok": r["ok"], "errors": r["errors"] + r["non2xx"],
                               "cache": c})
                log(f"  evict {policy} epoch {e + 1}: {fmt(r['wall_s'])} s, X-Cache {c['x_cache']}, "
                    f"declined {c['declined']}")
        finally:
            ctx.started_tagds.append({"cache_size": td.cache_size, "dram_tier": "0", "policy": policy})
            S.stop_tagd(td)
        later = [ep["cache"]["x_cache"] for ep in epochs[1:]]
        hits = sum(x["hit"] for x in later)
        total = sum(sum(x.values()) for x in later)
        runs[policy] = {"epochs": epochs, "hit_ratio_2_4": hits / total if total else None}
    rows, goals = [], {}
    for policy in POLICIES:
        r = runs[policy]
        hr = r["hit_ratio_2_4"]
        per_epoch = [ep["cache"]["hit_ratio"] for ep in r["epochs"]]
        met = goal_met(hr, ">=", goal)
        rows.append([label, policy, *[_pct(h) for h in per_epoch], _pct(hr),
                     hr / cache_over_dataset if hr is not None else None,
                     sum(ep["cache"]["declined"] for ep in r["epochs"]),
                     sum(ep["cache"]["regions_evicted_dead"] for ep in r["epochs"]),
                     sum(ep["errors"] for ep in r["epochs"]), met])
        goals[f"evict-{policy}"] = {"metric": "hit ratio of epochs 2-4", "ratio": hr,
                                    "goal": f">= {goal:.3f} (0.9 x cache/dataset)", "met": met}
    best = runs["hit-gated"]["hit_ratio_2_4"]
    fifo = runs["fifo"]["hit_ratio_2_4"]
    return dict(
        base,
        columns=["dataset", "cache.eviction_policy", *[f"epoch {i + 1} hit %" for i in range(EPOCHS)],
                 "epochs 2-4 hit %", "hit ratio / (cache/dataset)", "fills declined", "dead regions reused",
                 "errors", f"≥ 0.9 x cache/dataset ({goal:.3f})"],
        rows=rows,
        headline=f"{label}, block file {S.size_text(cache_bytes)} = {fmt(cache_over_dataset, 3)} of the stored "
                 f"dataset: epochs 2-4 hit ratio hit-gated {fmt(best, 3)}, fifo {fmt(fifo, 3)} "
                 f"(goal ≥ {goal:.3f}: hit-gated {goal_met(best, '>=', goal)})",
        goals={"evict": goals["evict-hit-gated"], "evict-fifo": goals["evict-fifo"]},
        notes=[f"{workers} readers (s3get, keep-alive) read every object once per epoch, in a new shuffled order "
               "per epoch, the same orders for both policies; a fresh tagd (empty cache folder) per policy, "
               f"block file {S.size_text(cache_bytes)} ({S.CACHE_REGION // MiB} MiB regions), no DRAM tier "
               "(--cache-memory-size 0), so a hit is the block file's.",
               f"cache/dataset = block file / the dataset as stored ({D.human(stored)}: 1 MiB blocks, each with "
               f"its header rounded up to 4 KiB) = {fmt(cache_over_dataset, 3)}; keeping a fixed subset would hit "
               "about that share (less the active region's slack); the goal is 0.9 x it.",
               "Hit ratios from tagd's /metrics (tagd_cache_requests_total by result); fills declined "
               "(tagd_cache_fills_declined_total) and dead regions reused (tagd_cache_regions_evicted_dead_total) "
               "are hit-gated's decisions.",
               "Simulation of the same policies over more traces: python3 bench/eviction_sim.py."],
        data={"runs": runs, "cache_bytes": cache_bytes, "stored_dataset_bytes": stored,
              "cache_over_dataset": cache_over_dataset, "goal": goal, "seeds": seeds},
    )


SCENARIOS = {"evict": scan_resistance}
