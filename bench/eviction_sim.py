#!/usr/bin/env python3
"""Region-granular cache simulator: which eviction/admission policy keeps a stable part
of a dataset that is read once per epoch in a new random order (issue 10, "scan
resistance"), without losing what FIFO does well on other traces.

The model follows tagd's block store: objects are cut into blocks (cache.block_size),
each block stored with a 4 KiB-rounded header, appended to the one active region in fill
order; a full region is sealed and the next one is a free region or the policy's victim;
evicting a region drops every block in it. A request is a hit when every block of the
object is present (that is what tagd_cache_requests_total{result="hit"} counts); a miss
refills the missing blocks if admission lets it.

    python3 bench/eviction_sim.py              # the table in the report
    python3 bench/eviction_sim.py --quick      # smaller traces
    python3 bench/eviction_sim.py --region 16 --object-kib 100 --trace epochs

Pure standard library, deterministic (seeded).
"""
import argparse
import collections
import math
import random
import sys

KIB = 1024
MIB = 1024 * KIB


def stored_size(payload, block=MIB):
    """Device bytes of one block: header (128 B + 4 B per 64 KiB piece) + payload, 4 KiB-aligned."""
    pieces = max(1, (payload + 65535) // 65536)
    raw = 128 + 4 * pieces + payload
    return (raw + 4095) // 4096 * 4096


# ---------------------------------------------------------------------------------------
# Policies. Eviction: on_sealed(r), on_hit(r), pick_victim(), on_reused(r) (the region
# came back as the active one). Admission: admit(key) -> bool, asked once per miss.
# ---------------------------------------------------------------------------------------


class Fifo:
    name = "fifo"

    def __init__(self, nregions):
        self.q = collections.deque()

    def on_sealed(self, r):
        self.q.append(r)

    def on_hit(self, r):
        pass

    def pick_victim(self):
        return self.q.popleft()

    def admit(self, key, store):
        return True


class LruRegions(Fifo):
    name = "lru"

    def __init__(self, nregions):
        self.q = collections.OrderedDict()

    def on_sealed(self, r):
        self.q[r] = True

    def on_hit(self, r):
        if r in self.q:
            self.q.move_to_end(r)

    def pick_victim(self):
        r, _ = self.q.popitem(last=False)
        return r


class Freeze(Fifo):
    """CoorDL's MinIO: once the cache is full, nothing new is admitted (no rotation)."""

    name = "freeze"

    def admit(self, key, store):
        return not store.full_soon()


class GhostDoorkeeper(Fifo):
    """FIFO regions; when full, a miss is admitted only if its key was seen within the
    last `cache objects` distinct misses (a ghost of keys), as a doorkeeper does."""

    name = "fifo+ghost"

    def __init__(self, nregions):
        super().__init__(nregions)
        self.ghost = collections.OrderedDict()

    def admit(self, key, store):
        cap = max(64, store.objects_cached())
        seen = key in self.ghost
        if seen:
            self.ghost.move_to_end(key)
        else:
            self.ghost[key] = True
            while len(self.ghost) > cap:
                self.ghost.popitem(last=False)
        return seen or not store.full_soon()


class S3FifoRegions(Fifo):
    """S3-FIFO with two write heads: misses whose key is in the ghost go to the main
    queue, others to the small (probationary) queue of ~10 % of the regions; a small
    region's evicted objects that were hit are copied into main (write amplification is
    counted), the others go to the ghost. Needs a second active region in the store."""

    name = "s3fifo"
    two_heads = True

    def __init__(self, nregions):
        self.small = collections.deque()
        self.main = collections.deque()
        self.small_cap = max(1, nregions // 10)
        self.ghost = collections.OrderedDict()
        self.head_of = {}

    def on_sealed(self, r):
        (self.small if self.head_of.get(r) == "small" else self.main).append(r)

    def on_hit(self, r):
        pass

    def pick_victim(self):
        if len(self.small) > self.small_cap or not self.main:
            return self.small.popleft()
        return self.main.popleft()

    def admit(self, key, store):
        return True

    def head_for(self, key, store):
        if key in self.ghost:
            del self.ghost[key]
            return "main"
        return "small"

    def on_evicted_objects(self, r, objs, store):
        # objs: {key: hits since written}
        if self.head_of.get(r) != "small":
            return []
        promote = [k for k, h in objs.items() if h > 0]
        cap = max(64, store.objects_cached())
        for k, h in objs.items():
            if h == 0:
                self.ghost[k] = True
                while len(self.ghost) > cap:
                    self.ghost.popitem(last=False)
        return promote


class HitGated:
    """The candidate implemented in src/cache/hit_gated_eviction.cpp (the parameters
    mirror it). Time is counted in ticks (a block hit or a miss). Each region keeps a
    count of block hits, all counts halved every `decay_per_region` x regions ticks, so
    they measure recent use, and the tick of its last hit (or of its seal).
    - Dead: a region not hit for `dead_factor` x (blocks cached) ticks: longer than any
      loop over up to that multiple of the cache takes to come back to it.
    - Victim: the oldest dead region; else the region with the fewest hits among those
      not sealed in the last `protect` seals, ties to the most recently sealed (regions
      nobody reads churn among themselves while the older ones stay, MRU-style).
    - Gate: a miss is admitted while a region is free, dead, or cold (its count at most
      mean/`cold`); when every region is being read, caching another object could only
      displace one that will be read again, so the fill is refused."""

    name = "hit-gated"

    def __init__(self, nregions, protect_frac=0.125, cold=4, decay_per_region=32, dead_factor=2.0,
                 read_dead_factor=2.0, tie_newest=True, gate=True, trickle=0):
        self.n = nregions
        self.hits = [0] * nregions
        self.seq = [0] * nregions  # seal sequence; 0 = not sealed
        self.last = [0] * nregions  # tick of the last hit, or of the seal
        self.blocks = [0] * nregions
        self.next_seq = 1
        self.protect = max(1, int(nregions * protect_frac))
        self.cold = cold
        self.decay = decay_per_region * nregions
        self.dead_factor = dead_factor
        self.read_dead_factor = read_dead_factor
        self.read = [False] * nregions  # hit since its seal
        self.tie_newest = tie_newest
        self.gate = gate
        self.trickle = trickle  # while closed, still admit one miss in `trickle` (0: none)
        self.declined_run = 0
        self.now = 0
        self.since_decay = 0
        self.sealed = set()

    def _tick(self):
        self.now += 1
        self.since_decay += 1
        if self.since_decay >= self.decay:
            self.since_decay = 0
            for r in range(self.n):
                self.hits[r] //= 2

    def on_written(self, r):
        self.blocks[r] += 1

    def on_sealed(self, r):
        self.seq[r] = self.next_seq
        self.next_seq += 1
        self.last[r] = self.now
        self.read[r] = False
        self.sealed.add(r)

    def on_hit(self, r):
        self.hits[r] += 1
        self.last[r] = self.now
        self.read[r] = True
        self._tick()

    def _dead(self):
        blocks = sum(self.blocks[r] for r in self.sealed)
        dead = [r for r in self.sealed
                if self.now - self.last[r] > (self.read_dead_factor if self.read[r] else self.dead_factor) * blocks]
        return min(dead, key=lambda r: self.last[r]) if dead else None

    def _coldest(self):
        cutoff = self.next_seq - self.protect
        c = [r for r in self.sealed if self.seq[r] < cutoff] or list(self.sealed)
        tie = (lambda r: -self.seq[r]) if self.tie_newest else (lambda r: self.seq[r])
        return min(c, key=lambda r: (self.hits[r], tie(r)))

    def pick_victim(self):
        r = self._dead()
        if r is None:
            r = self._coldest()
        self.sealed.discard(r)
        self.seq[r] = 0
        self.hits[r] = 0
        self.blocks[r] = 0
        return r

    def admit(self, key, store):
        self._tick()
        if not self.gate or not store.full_soon() or not self.sealed:
            return True
        if self._dead() is not None:
            return True
        mean = sum(self.hits[r] for r in self.sealed) / len(self.sealed)
        if self.hits[self._coldest()] * self.cold <= mean:
            return True
        self.declined_run += 1
        if self.trickle and self.declined_run >= self.trickle:
            self.declined_run = 0
            return True
        return False


class HitGatedCold8(HitGated):
    name = "hit-gated/cold8"

    def __init__(self, n):
        super().__init__(n, cold=8)


class HitGatedRead8(HitGated):
    """Variant: regions read since their seal are dead only after 8x (helps epochs over
    3x the cache with few objects per region; a finished job's data lingers far longer)."""

    name = "hit-gated/read-dead-8"

    def __init__(self, n):
        super().__init__(n, read_dead_factor=8)


class HitGatedTrickle16(HitGated):
    """Variant: while closed, one miss in 16 is admitted anyway (rotation)."""

    name = "hit-gated/trickle16"

    def __init__(self, n):
        super().__init__(n, trickle=16)


class HitGatedOldestTie(HitGated):
    name = "hit-gated/oldest-tie"

    def __init__(self, n):
        super().__init__(n, tie_newest=False)


class HitGatedNoDead(HitGated):
    name = "hit-gated/no-dead"

    def __init__(self, n):
        super().__init__(n, dead_factor=1e18)


class RegionLfuNoGate(HitGated):
    name = "region-lfu (no gate)"

    def __init__(self, n):
        super().__init__(n, gate=False)


# ---------------------------------------------------------------------------------------
# The store.
# ---------------------------------------------------------------------------------------


class Store:
    def __init__(self, nregions, region_bytes, policy, block=MIB):
        self.n = nregions
        self.region_bytes = region_bytes
        self.block = block
        self.policy = policy
        self.two_heads = getattr(policy, "two_heads", False)
        self.contents = [dict() for _ in range(nregions)]  # region -> {(key, b): hits}
        self.where = {}  # (key, b) -> region
        self.free = list(range(nregions - 1, -1, -1))
        self.heads = {}
        self.fill = {}
        self.written = 0
        self.rewritten = 0
        self.evicted = 0
        self.refused = 0
        self._open_head("main")
        if self.two_heads:
            self._open_head("small")

    def objects_cached(self):
        return len(self.where)

    def full_soon(self):
        """True when a further fill will have to evict: no free region left."""
        return not self.free

    def _open_head(self, head):
        if self.free:
            r = self.free.pop()
        else:
            r = self.policy.pick_victim()
            self._evict(r)
        self.heads[head] = r
        self.fill[r] = 0
        if self.two_heads:
            self.policy.head_of[r] = head

    def _evict(self, r):
        self.evicted += 1
        objs = collections.defaultdict(int)
        for (k, b), h in self.contents[r].items():
            if self.where.get((k, b)) == r:
                del self.where[(k, b)]
                objs[k] += h
        self.contents[r] = {}
        if self.two_heads:
            promote = self.policy.on_evicted_objects(r, dict(objs), self)
            self._pending_promote = promote

    def _put(self, head, key, b, nbytes):
        st = stored_size(nbytes, self.block)
        r = self.heads[head]
        if self.fill[r] + st > self.region_bytes:
            self.policy.on_sealed(r)
            self._pending_promote = []
            self._open_head(head)
            r = self.heads[head]
            for pk in getattr(self, "_pending_promote", []):
                # the copy of a hit object out of a probationary region into main
                self.rewritten += 1
                self._put_raw("main", pk, 0, nbytes)
            r = self.heads[head]
        self._put_raw(head, key, b, nbytes, r)

    def _put_raw(self, head, key, b, nbytes, r=None):
        st = stored_size(nbytes, self.block)
        r = self.heads[head] if r is None else r
        if self.fill[r] + st > self.region_bytes:
            self.policy.on_sealed(r)
            self._open_head(head)
            r = self.heads[head]
        self.contents[r][(key, b)] = 0
        self.where[(key, b)] = r
        if hasattr(self.policy, "on_written"):
            self.policy.on_written(r)
        self.fill[r] += st
        self.written += st

    def access(self, key, size):
        nblocks = max(1, (size + self.block - 1) // self.block)
        missing = []
        for b in range(nblocks):
            if (key, b) not in self.where:
                missing.append(b)
        if not missing:
            for b in range(nblocks):
                r = self.where[(key, b)]
                self.contents[r][(key, b)] += 1
                self.policy.on_hit(r)
            return True
        if not self.policy.admit(key, self):
            self.refused += 1
            return False
        head = self.policy.head_for(key, self) if self.two_heads else "main"
        for b in missing:
            nb = min(self.block, size - b * self.block)
            self._put(head, key, b, nb)
        return False


# ---------------------------------------------------------------------------------------
# Traces: each yields (phase, key, size); the table reports the hit ratio per phase.
# ---------------------------------------------------------------------------------------


def epochs_trace(n_objects, size, epochs, seed):
    rng = random.Random(seed)
    keys = list(range(n_objects))
    for e in range(epochs):
        rng.shuffle(keys)
        phase = "epoch 1" if e == 0 else "epochs 2+"
        for k in keys:
            yield phase, k, size


def sequential_trace(n_objects, size, passes):
    for p in range(passes):
        for k in range(n_objects):
            yield ("pass 1" if p == 0 else "passes 2+"), k, size


def zipf_sampler(n, alpha, rng):
    weights = [1.0 / math.pow(i + 1, alpha) for i in range(n)]
    total = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)
    import bisect

    perm = list(range(n))
    rng.shuffle(perm)  # popularity rank is not key order

    def draw():
        return perm[min(n - 1, bisect.bisect_left(cum, rng.random()))]

    return draw


def zipf_trace(n_objects, size, requests, alpha, seed, warm_frac=0.3):
    rng = random.Random(seed)
    draw = zipf_sampler(n_objects, alpha, rng)
    warm = int(requests * warm_frac)
    for i in range(requests):
        yield ("warm-up" if i < warm else "steady"), draw(), size


def zipf_scan_trace(n_objects, size, requests, alpha, scan_objects, seed):
    """Zipf, then a one-time scan of `scan_objects` new keys, then the same Zipf again."""
    rng = random.Random(seed)
    draw = zipf_sampler(n_objects, alpha, rng)
    for _ in range(requests):
        yield "before", draw(), size
    for k in range(scan_objects):
        yield "scan", 10_000_000 + k, size
    for _ in range(requests):
        yield "after scan", draw(), size


def zipf_shift_trace(n_objects, size, requests, alpha, seed):
    """Zipf over one key set, then over a disjoint one (a new job): the cache must adapt."""
    rng = random.Random(seed)
    draw = zipf_sampler(n_objects, alpha, rng)
    for _ in range(requests):
        yield "job A", draw(), size
    warm = requests // 3
    for i in range(requests):
        yield ("job B start" if i < warm else "job B"), 20_000_000 + draw(), size


def epochs_after_job_trace(n_objects, size, epochs, seed):
    """A cache full of a finished job's data, then a new job's shuffled epochs of a dataset
    that fits (0.8x the cache): it must be admitted although the old data is in the way."""
    rng = random.Random(seed)
    old = list(range(50_000_000, 50_000_000 + n_objects * 2))
    for k in old:
        yield "old job", k, size
    keys = list(range(n_objects))
    for e in range(epochs):
        rng.shuffle(keys)
        for k in keys:
            yield f"new epoch {e + 1}", k, size


def epochs_shift_trace(n_cache, size, seed):
    """Two shuffled epochs over dataset A (1.5x the cache), then epochs over dataset B that
    fits (0.8x): the cache must let go of A, which nobody reads any more."""
    rng = random.Random(seed)
    a = list(range(60_000_000, 60_000_000 + int(n_cache * 1.5)))
    for _ in range(2):
        rng.shuffle(a)
        for k in a:
            yield "A epochs 1-2", k, size
    b = list(range(int(n_cache * 0.8)))
    for e in range(5):
        rng.shuffle(b)
        for k in b:
            yield f"B epoch {e + 1}", k, size


def run(policy_cls, nregions, region_bytes, trace, block=MIB):
    store = Store(nregions, region_bytes, policy_cls(nregions), block)
    stats = collections.OrderedDict()
    for phase, key, size in trace:
        h, n = stats.get(phase, (0, 0))
        stats[phase] = (h + (1 if store.access(key, size) else 0), n + 1)
    return {p: h / n for p, (h, n) in stats.items()}, store


POLICIES = [Fifo, LruRegions, S3FifoRegions, GhostDoorkeeper, Freeze, RegionLfuNoGate, HitGatedOldestTie,
            HitGatedNoDead, HitGatedCold8, HitGatedRead8, HitGatedTrickle16, HitGated]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--region", type=int, nargs="*", default=[4, 16, 64], help="region sizes in MiB")
    ap.add_argument("--object-kib", type=int, default=100)
    ap.add_argument("--cache-objects", type=int, default=0, help="cache size in objects (default per region size)")
    ap.add_argument("--trace", nargs="*", default=["epochs", "epochs-big", "sequential", "zipf", "zipf-scan",
                                                   "zipf-shift", "after-job", "epochs-shift"])
    ap.add_argument("--policy", nargs="*", default=[p.name for p in POLICIES])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    size = args.object_kib * KIB
    chosen = [p for p in POLICIES if p.name in args.policy]
    for region_mib in args.region:
        region_bytes = region_mib * MIB
        per_region = region_bytes // stored_size(min(size, MIB))
        if size > MIB:
            per_region = max(1, region_bytes // (stored_size(MIB) * ((size + MIB - 1) // MIB)))
        want = args.cache_objects or (2000 if args.quick else 6000)
        nregions = max(4, round(want / per_region))
        cache_objects = nregions * per_region
        print(f"\n## regions {region_mib} MiB, objects {args.object_kib} KiB: {nregions} regions, "
              f"~{cache_objects} objects cached\n")
        traces = {
            "epochs": ("4 epochs, dataset 1.5x, shuffled",
                       lambda: epochs_trace(int(cache_objects * 1.5), size, 4, args.seed)),
            "epochs-big": ("4 epochs, dataset 3x, shuffled",
                           lambda: epochs_trace(int(cache_objects * 3), size, 4, args.seed)),
            "sequential": ("4 passes in key order, dataset 1.2x",
                           lambda: sequential_trace(int(cache_objects * 1.2), size, 4)),
            "zipf": ("Zipf 0.9 over 10x the cache",
                     lambda: zipf_trace(cache_objects * 10, size, cache_objects * 20, 0.9, args.seed)),
            "zipf-scan": ("Zipf 0.9, a one-time scan of 2x the cache, Zipf again",
                          lambda: zipf_scan_trace(cache_objects * 10, size, cache_objects * 10, 0.9,
                                                  cache_objects * 2, args.seed)),
            "zipf-shift": ("Zipf 0.9 over job A's keys, then over job B's",
                           lambda: zipf_shift_trace(cache_objects * 10, size, cache_objects * 10, 0.9, args.seed)),
            "epochs-shift": ("2 epochs over A (1.5x), then epochs over B (0.8x)",
                             lambda: epochs_shift_trace(cache_objects, size, args.seed)),
            "after-job": ("a full cache of an old job, then 4 epochs of 0.8x the cache",
                          lambda: epochs_after_job_trace(int(cache_objects * 0.8), size, 4, args.seed)),
        }
        for t in args.trace:
            title, make = traces[t]
            print(f"### {t}: {title}")
            rows = []
            for p in chosen:
                ratios, store = run(p, nregions, region_bytes, make())
                rows.append((p.name, ratios, store))
            phases = list(rows[0][1].keys())
            print("| policy | " + " | ".join(phases) + " | regions evicted | refused fills |")
            print("| --- | " + " | ".join("---" for _ in phases) + " | --- | --- |")
            for name, ratios, store in rows:
                cells = " | ".join(f"{ratios[ph]:.3f}" for ph in phases)
                print(f"| {name} | {cells} | {store.evicted} | {store.refused} |")
            if t.startswith("epochs"):
                ds = 1.5 if t == "epochs" else 3.0
                print(f"(goal for epochs 2+: >= 0.9 x cache/dataset = {0.9 / ds:.3f})")
            print()
            sys.stdout.flush()


if __name__ == "__main__":
    main()
