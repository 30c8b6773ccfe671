"""Scan resistance (issue 10): shuffled epochs over a dataset 1.5x the cache; and the
DRAM tier's (issue 9): shuffled epochs over 4x the tier, all of it in the block file, and
the tier refilled from the block file after a restart.

The same 4 epochs (the same shuffled orders) through two tagds that differ only in
cache.eviction_policy: FIFO keeps evicting what the next epoch reads, hit-gated declines
fills once every region is being read and keeps a stable part of the dataset. The
upstream is a FakeUpstream serving generated objects (fast, and it counts GETs); the
DRAM tier is off so every hit is the block file's.

Geometry: 64 KiB blocks, 60 KiB objects (one block of 64 KiB stored each), 1 MiB
regions (16 objects), a 16 MiB block file (16 regions, 256 objects), 384 objects.
"""
import random
import re
import shutil
import tempfile
import unittest

import harness
from harness import FakeUpstream, Tagd

UPSTREAM_KEY = ("AKIDUPSTREAMFAKE0001", "upstream-fake-secret-0123456789abcdefgh")
OBJECT = 60 * 1024
CACHE_OBJECTS = 256
DATASET = 384  # 1.5x the cache
EPOCHS = 4


def body_of(key: str) -> bytes:
    seed = key.encode() * (OBJECT // len(key) + 1)
    return seed[:OBJECT]


def respond(req):
    if req["method"] not in ("GET", "HEAD"):
        return FakeUpstream.response(405)
    key = req["target"].split("?", 1)[0].rsplit("/", 1)[-1]
    body = body_of(key)
    headers = {"ETag": f'"{key}"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
               "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", req["headers"].get("range", ""))
    status = 200
    if m:
        first = int(m.group(1))
        last = min(int(m.group(2)) if m.group(2) else len(body) - 1, len(body) - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
        body = body[first:last + 1]
        status = 206
    if req["method"] == "HEAD":
        return FakeUpstream.response(status, b"", headers, content_length=len(body))
    return FakeUpstream.response(status, body, headers)


class ScanResistanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-evict-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)

    def epochs(self, policy: str):
        upstream = FakeUpstream(respond)
        self.addCleanup(upstream.stop)
        t = Tagd(self.workdir, upstream.endpoint, UPSTREAM_KEY, name=f"tagd-{policy}", extra_args=[
            "--cache-disk-path", f"{self.workdir}/{policy}-cache", "--cache-max-disk-usage", "16MiB",
            "--cache-region-size", "1MiB", "--cache-block-size", "64KiB", "--cache-memory-size", "0",
            "--cache-eviction-policy", policy])
        self.addCleanup(t.stop)
        t.start()
        rng = random.Random(10)
        keys = [f"obj-{i:04d}" for i in range(DATASET)]
        per_epoch = []
        for _ in range(EPOCHS):
            rng.shuffle(keys)
            hits = 0
            for k in keys:
                status, headers, data = harness.signed_request(t.port, "GET", f"/bucket/{k}")
                self.assertEqual(status, 200, data[:200])
                self.assertEqual(data, body_of(k))  # a declined fill is still answered, whole
                hits += headers.get("x-cache") == "HIT"
            per_epoch.append(hits / DATASET)
        return per_epoch, t.metrics()

    def test_hit_gated_keeps_a_stable_part_of_the_dataset(self):
        fifo, fifo_m = self.epochs("fifo")
        gated, gated_m = self.epochs("hit-gated")
        fifo_later = sum(fifo[1:]) / (EPOCHS - 1)
        gated_later = sum(gated[1:]) / (EPOCHS - 1)
        print(f"\nepochs 2-{EPOCHS} hit ratio: fifo {fifo_later:.3f} {fifo}, hit-gated {gated_later:.3f} {gated}")
        # Keeping a fixed subset hits about cache/dataset = 2/3 (less the active region's
        # slack: 15 of 16 regions sealed); the goal is 0.9 x that.
        self.assertGreaterEqual(gated_later, 0.9 * CACHE_OBJECTS / DATASET)
        self.assertGreater(gated_later, fifo_later + 0.15)
        self.assertGreater(gated_m["tagd_cache_fills_declined_total"], 0)
        self.assertEqual(fifo_m["tagd_cache_fills_declined_total"], 0)
        # The X-Cache counts and the metric agree (one source).
        self.assertEqual(gated_m['tagd_cache_requests_total{result="hit"}'],
                         round(sum(gated) * DATASET))

    def test_fills_resume_when_the_dataset_changes(self):
        """After epochs of one dataset, a new dataset that fits: once nothing has read the
        old regions for twice the cache's blocks in reads they are dead and give way, and
        the new dataset is cached (every read a hit by its fifth epoch; FIFO: the second).
        The price of scan resistance: hit-gated cannot tell a finished job from a loop over
        up to twice the cache before then (bench/eviction_sim.py, epochs-shift)."""
        upstream = FakeUpstream(respond)
        self.addCleanup(upstream.stop)
        t = Tagd(self.workdir, upstream.endpoint, UPSTREAM_KEY, name="tagd-shift", extra_args=[
            "--cache-disk-path", f"{self.workdir}/shift-cache", "--cache-max-disk-usage", "16MiB",
            "--cache-region-size", "1MiB", "--cache-block-size", "64KiB", "--cache-memory-size", "0",
            "--cache-eviction-policy", "hit-gated"])
        self.addCleanup(t.stop)
        t.start()
        rng = random.Random(11)
        old = [f"old-{i:04d}" for i in range(DATASET)]
        for _ in range(2):
            rng.shuffle(old)
            for k in old:
                self.assertEqual(harness.signed_request(t.port, "GET", f"/bucket/{k}")[0], 200)
        new = [f"new-{i:04d}" for i in range(200)]  # fits in the cache
        last = 0.0
        for _ in range(5):
            rng.shuffle(new)
            hits = 0
            for k in new:
                status, headers, _ = harness.signed_request(t.port, "GET", f"/bucket/{k}")
                self.assertEqual(status, 200)
                hits += headers.get("x-cache") == "HIT"
            last = hits / len(new)
        self.assertEqual(last, 1.0)
        self.assertGreater(t.metrics()["tagd_cache_regions_evicted_dead_total"], 0)


class DramTierScanResistanceTest(unittest.TestCase):
    """Blocks read from disk enter a full DRAM tier only on a second read from disk within
    a short window: in shuffled epochs over 4x the tier it keeps a stable quarter that
    every epoch hits. Keeping every block read from disk (the old rule) evicted what the
    epoch had not read yet (6-12 % of reads came from memory here, 2 % in the bench)."""

    def test_shuffled_epochs_read_a_quarter_from_memory(self):
        workdir = tempfile.mkdtemp(prefix="tagd-dram-epochs-")
        self.addCleanup(shutil.rmtree, workdir, True)
        upstream = FakeUpstream(respond)
        self.addCleanup(upstream.stop)
        dataset = 120
        t = Tagd(workdir, upstream.endpoint, UPSTREAM_KEY, name="tagd-dram-epochs", extra_args=[
            "--cache-disk-path", f"{workdir}/cache", "--cache-max-disk-usage", "16MiB",
            "--cache-region-size", "1MiB", "--cache-block-size", "64KiB",
            "--cache-memory-size", f"{dataset // 4 * OBJECT}"])
        self.addCleanup(t.stop)
        t.start()
        rng = random.Random(12)
        keys = [f"obj-{i:04d}" for i in range(dataset)]
        for k in keys:  # epoch 0: every object filled (the block file holds them all)
            self.assertEqual(harness.signed_request(t.port, "GET", f"/bucket/{k}")[0], 200)
        from_disk = []
        for _ in range(3):
            rng.shuffle(keys)
            before = t.metrics()["tagd_cache_disk_read_bytes_total"]
            for k in keys:
                status, headers, data = harness.signed_request(t.port, "GET", f"/bucket/{k}")
                self.assertEqual(status, 200)
                self.assertEqual(headers.get("x-cache"), "HIT")
                self.assertEqual(data, body_of(k))
            from_disk.append((t.metrics()["tagd_cache_disk_read_bytes_total"] - before) / (dataset * OBJECT))
        print(f"\nshare of each epoch read from disk: {[round(f, 3) for f in from_disk]}")
        for f in from_disk:
            self.assertLessEqual(f, 0.80)  # 0.75 at best; the old rule: 0.88-0.94 here, 0.98 in the bench
        self.assertGreater(t.metrics()["tagd_cache_memory_promotions_declined_total"], 0)

    def test_after_a_restart_blocks_read_from_disk_fill_the_tier_at_their_size(self):
        """After a restart every hit comes from the block file, and a 60 KiB block is read
        into a 160 KiB buffer. The tier keeps the blocks it takes in buffers of their size:
        40 objects (2.3 MiB) fit in a 3 MiB tier, and the second epoch reads nothing from
        disk. Keeping the read buffers, the tier held 19 of them and read half from disk."""
        workdir = tempfile.mkdtemp(prefix="tagd-dram-restart-")
        self.addCleanup(shutil.rmtree, workdir, True)
        upstream = FakeUpstream(respond)
        self.addCleanup(upstream.stop)
        dataset = 40
        args = ["--cache-disk-path", f"{workdir}/cache", "--cache-max-disk-usage", "16MiB",
                "--cache-region-size", "1MiB", "--cache-block-size", "64KiB", "--cache-memory-size", "3MiB"]
        keys = [f"obj-{i:04d}" for i in range(dataset)]
        first = Tagd(workdir, upstream.endpoint, UPSTREAM_KEY, name="tagd-dram-restart-1", extra_args=args)
        self.addCleanup(first.stop)
        first.start()
        for k in keys:  # filled: the block file holds them all
            self.assertEqual(harness.signed_request(first.port, "GET", f"/bucket/{k}")[0], 200)
        harness.wait_until(lambda: first.metrics().get("tagd_cache_fill_write_queue_bytes", 0) == 0, 10,
                           what="the fills to be written")
        first.stop()
        t = Tagd(workdir, upstream.endpoint, UPSTREAM_KEY, name="tagd-dram-restart-2", extra_args=args)
        self.addCleanup(t.stop)
        t.start()
        upstream_gets = len(upstream.requests)
        from_disk = []
        for _ in range(2):
            before = t.metrics()["tagd_cache_disk_read_bytes_total"]
            for k in keys:
                status, headers, data = harness.signed_request(t.port, "GET", f"/bucket/{k}")
                self.assertEqual((status, headers.get("x-cache")), (200, "HIT"))
                self.assertEqual(data, body_of(k))
            from_disk.append((t.metrics()["tagd_cache_disk_read_bytes_total"] - before) / (dataset * OBJECT))
        print(f"\nshare of each epoch after the restart read from disk: {[round(f, 3) for f in from_disk]}")
        self.assertEqual(len(upstream.requests), upstream_gets)  # hits only
        self.assertGreaterEqual(from_disk[0], 0.99)  # an empty tier: every block from the block file
        self.assertLessEqual(from_disk[1], 0.05)
        self.assertLessEqual(t.metrics()["tagd_cache_memory_used_bytes"], dataset * 64 * 1024)


if __name__ == "__main__":
    unittest.main()
