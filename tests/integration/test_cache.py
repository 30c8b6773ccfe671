"""The block cache, end to end: moto as the upstream (signature checking on), tagd with
its cache in the test's own directory, real clients. Upstream traffic is counted at the
upstream (moto's access log), never from tagd's own metrics."""
import concurrent.futures
import hashlib
import os
import re
import signal
import time
import unittest

from botocore.exceptions import ClientError

import harness
from harness import MiB, TagdTestCase, signed_request, unique


def cache_args(path, size="256MiB", extra=()):
    return ["--cache-disk-path", path, "--cache-max-disk-usage", size, "--cache-region-size", "4MiB",
            "--cache-block-size", "1MiB", "--cache-max-fetch", "4MiB", *extra]


class CacheTestCase(TagdTestCase):
    cache_size = "256MiB"

    @classmethod
    def setUpClass(cls):
        cls.tagd_args = cache_args(os.path.join("/tmp", unique("tagd-cache-cls")), cls.cache_size)
        super().setUpClass()
        cls.addClassCleanup(harness.shutil.rmtree, cls.tagd_args[1], True)
        cls.bucket = unique("cache")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def upstream_gets(self, key):
        """GET requests moto received for this key (its access log, one line each)."""
        with open(self.moto.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return len(re.findall(r'"GET /%s/%s(\?[^ ]*)? HTTP' % (re.escape(self.bucket), re.escape(key)), text))

    def put(self, key, data):
        self.moto.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key, tagd=None, **kw):
        r = (tagd or self.tagd).client().get_object(Bucket=self.bucket, Key=key, **kw)
        return r["Body"].read(), r["ResponseMetadata"]["HTTPHeaders"]


class HitMissTest(CacheTestCase):
    def test_second_read_is_a_hit_and_the_upstream_sees_nothing(self):
        data = os.urandom(3 * MiB + 12345)
        self.put("obj", data)
        body, h = self.get("obj")
        self.assertEqual(body, data)
        self.assertEqual(h["x-cache"], "MISS")
        before = self.upstream_gets("obj")
        for _ in range(3):
            body, h = self.get("obj")
            self.assertEqual(body, data)
            self.assertEqual(h["x-cache"], "HIT")
        self.assertEqual(self.upstream_gets("obj"), before)
        head = self.tagd.client().head_object(Bucket=self.bucket, Key="obj")
        self.assertEqual(head["ContentLength"], len(data))
        self.assertEqual(head["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT")
        m = self.tagd.metrics()
        self.assertGreaterEqual(m['tagd_cache_requests_total{result="hit"}'], 4)

    def test_ranges_and_conditionals_on_hits(self):
        data = os.urandom(2 * MiB + 777)
        self.put("ranged", data)
        self.get("ranged")  # fill
        s3 = self.tagd.client()
        cases = {"bytes=0-9": data[0:10], f"bytes={MiB - 5}-{MiB + 5}": data[MiB - 5:MiB + 6],
                 "bytes=2097000-": data[2097000:], "bytes=-100": data[-100:], "bytes=0-": data}
        for rng, want in cases.items():
            r = s3.get_object(Bucket=self.bucket, Key="ranged", Range=rng)
            self.assertEqual(r["Body"].read(), want, rng)
            self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 206, rng)
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT", rng)
            self.assertEqual(r["ContentRange"].split("/")[1], str(len(data)))
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="ranged", Range=f"bytes={len(data)}-")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 416)
        etag = s3.head_object(Bucket=self.bucket, Key="ranged")["ETag"]
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="ranged", IfNoneMatch=etag)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 304)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPHeaders"]["etag"], etag)
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="ranged", IfMatch='"0000"')
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        self.assertEqual(s3.get_object(Bucket=self.bucket, Key="ranged", IfMatch=etag)["Body"].read(), data)
        import datetime
        future = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)
        past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="ranged", IfModifiedSince=future)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 304)
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="ranged", IfUnmodifiedSince=past)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        # If-Match true beats If-Unmodified-Since false (S3's precedence).
        r = s3.get_object(Bucket=self.bucket, Key="ranged", IfMatch=etag, IfUnmodifiedSince=past)
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 200)

    def test_a_small_range_miss_fetches_only_the_block_that_covers_it(self):
        data = os.urandom(20 * MiB)
        self.moto.client().upload_fileobj(__import__("io").BytesIO(data), self.bucket, "footer")
        before = self.tagd.metrics()["tagd_cache_fill_bytes_total"]
        r = self.tagd.client().get_object(Bucket=self.bucket, Key="footer", Range=f"bytes={10 * MiB + 5}-{10 * MiB + 104}")
        self.assertEqual(r["Body"].read(), data[10 * MiB + 5:10 * MiB + 105])
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "MISS")
        fetched = self.tagd.metrics()["tagd_cache_fill_bytes_total"] - before
        self.assertLessEqual(fetched, 1 * MiB)  # one 1 MiB block, not a run and not the object
        r = self.tagd.client().get_object(Bucket=self.bucket, Key="footer", Range=f"bytes={10 * MiB}-{10 * MiB + 9}")
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT")
        self.assertEqual(r["Body"].read(), data[10 * MiB:10 * MiB + 10])

    def test_overwrite_and_delete_through_tagd_are_seen_at_once(self):
        s3 = self.tagd.client()
        s3.put_object(Bucket=self.bucket, Key="mutable", Body=b"one" * 1000)
        self.assertEqual(self.get("mutable")[0], b"one" * 1000)
        self.assertEqual(self.get("mutable")[1]["x-cache"], "HIT")
        s3.put_object(Bucket=self.bucket, Key="mutable", Body=b"two" * 2000)
        body, h = self.get("mutable")
        self.assertEqual(body, b"two" * 2000)
        self.assertEqual(h["x-cache"], "MISS")
        s3.delete_object(Bucket=self.bucket, Key="mutable")
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="mutable")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "NoSuchKey")

    def test_any_object_write_through_tagd_invalidates(self):
        s3 = self.tagd.client()
        s3.put_object(Bucket=self.bucket, Key="tagged", Body=b"t" * 100, Tagging="a=1")
        self.get("tagged")
        self.assertEqual(self.get("tagged")[1]["x-cache"], "HIT")
        s3.put_object_tagging(Bucket=self.bucket, Key="tagged",
                              Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]})
        body, h = self.get("tagged")
        self.assertEqual(h["x-cache"], "MISS")
        self.assertEqual(h.get("x-amz-tagging-count"), "2")

    def test_bypass_and_client_revalidation(self):
        data = os.urandom(50_000)
        self.put("bypass", data)
        self.get("bypass")
        r = self.tagd.client().get_object(Bucket=self.bucket, Key="bypass", PartNumber=1)
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "BYPASS")
        st, h, body = signed_request(self.tagd.port, "GET", f"/{self.bucket}/bypass",
                                     headers={"Cache-Control": "no-store"})
        self.assertEqual((st, h["x-cache"], body), (200, "BYPASS", data))
        st, h, body = signed_request(self.tagd.port, "GET", f"/{self.bucket}/bypass",
                                     headers={"Cache-Control": "no-cache"})
        self.assertEqual((st, h["x-cache"], body), (200, "REVALIDATED", data))

    def test_hits_are_authorized_per_caller(self):
        data = os.urandom(10_000)
        self.put("private-obj", data)
        self.get("private-obj")  # cached by the admin
        reader = self.tagd.client(harness.READER_KEY)
        with self.assertRaises(ClientError) as ctx:
            reader.get_object(Bucket=self.bucket, Key="private-obj")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "AccessDenied")

    def test_hits_survive_the_upstream_going_away(self):
        data = os.urandom(2 * MiB)
        self.put("survivor", data)
        self.get("survivor")
        moto2 = harness.Moto(self.workdir).start()  # a fresh upstream we can stop
        self.addCleanup(moto2.stop)
        c2 = moto2.client()
        c2.create_bucket(Bucket=self.bucket)
        c2.put_object(Bucket=self.bucket, Key="k", Body=data)
        path = os.path.join(self.workdir, unique("cache-down"))
        t = self.start_test_tagd(cache_args(path), upstream=moto2.endpoint,
                                 upstream_key=(moto2.access_key, moto2.secret_key))
        self.assertEqual(t.client().get_object(Bucket=self.bucket, Key="k")["Body"].read(), data)
        moto2.stop()
        r = t.client().get_object(Bucket=self.bucket, Key="k")
        self.assertEqual(r["Body"].read(), data)
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT")


class ConcurrencyTest(CacheTestCase):
    # The herd's object (256 MiB) must fit with room to spare: in a cache of its own size,
    # FIFO eviction of its first regions while slow readers (a loaded machine) are still
    # behind refetches them, and the single-flight count below measures eviction instead.
    cache_size = "768MiB"

    def test_concurrent_cold_readers_cause_one_upstream_fetch(self):
        size = 256 * MiB
        data = os.urandom(size)
        self.moto.client().upload_fileobj(__import__("io").BytesIO(data), self.bucket, "herd")
        digest = hashlib.sha256(data).hexdigest()
        readers = 32

        def read(_):
            r = self.tagd.client().get_object(Bucket=self.bucket, Key="herd")
            h = hashlib.sha256()
            for chunk in r["Body"].iter_chunks(1 << 20):
                h.update(chunk)
            return h.hexdigest()

        with concurrent.futures.ThreadPoolExecutor(readers) as pool:
            digests = list(pool.map(read, range(readers)))
        self.assertEqual(digests, [digest] * readers)
        # Whole-object reads: the object is fetched in parts (cache.max_fetch, 4 MiB here),
        # several at once ahead of the readers, and each part once for the whole herd
        # (object-level single flight, then every reader joins the same fills).
        self.assertEqual(self.upstream_gets("herd"), size // (4 * MiB))


    def test_a_paused_first_reader_does_not_hold_back_the_others(self):
        size = 32 * MiB
        data = os.urandom(size)
        self.moto.client().upload_fileobj(__import__("io").BytesIO(data), self.bucket, "paused")
        first = harness.open_signed_get(self.tagd.port, f"/{self.bucket}/paused", rcvbuf=64 * 1024)
        try:
            got = first.recv(65536)
            self.assertIn(b"X-Cache: MISS", got)
            # The first client now stops reading. A second client must still get the whole
            # object (from the fill, at the upstream's pace), not wait for the first.
            r = self.tagd.client(read_timeout=60).get_object(Bucket=self.bucket, Key="paused")
            self.assertEqual(hashlib.sha256(r["Body"].read()).hexdigest(), hashlib.sha256(data).hexdigest())
        finally:
            first.close()
        self.assertEqual(self.upstream_gets("paused"), size // (4 * MiB))  # each 4 MiB part once


class DurabilityTest(CacheTestCase):
    def test_restart_keeps_the_cache(self):
        path = os.path.join(self.workdir, unique("cache-restart"))
        data = os.urandom(5 * MiB)
        self.put("durable", data)
        t = self.start_test_tagd(cache_args(path))
        self.assertEqual(self.get("durable", t)[0], data)
        t.stop()
        before = self.upstream_gets("durable")
        t2 = self.start_test_tagd(cache_args(path))
        body, h = self.get("durable", t2)
        self.assertEqual(body, data)
        self.assertEqual(h["x-cache"], "HIT")
        self.assertEqual(self.upstream_gets("durable"), before)

    def test_kill_9_during_fills_never_serves_partial_objects(self):
        path = os.path.join(self.workdir, unique("cache-kill"))
        data = os.urandom(48 * MiB)
        self.put("killed", data)
        t = self.start_test_tagd(cache_args(path))
        r = t.client().get_object(Bucket=self.bucket, Key="killed")
        r["Body"].read(6 * MiB)  # mid-fill
        os.kill(t.proc.pid, signal.SIGKILL)
        t.proc.wait()
        t2 = self.start_test_tagd(cache_args(path))
        for _ in range(2):
            self.assertEqual(hashlib.sha256(self.get("killed", t2)[0]).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_flipped_bytes_in_the_cache_file_are_detected_and_refetched(self):
        path = os.path.join(self.workdir, unique("cache-flip"))
        data = os.urandom(6 * MiB)
        self.put("flipped", data)
        t = self.start_test_tagd(cache_args(path, extra=["--cache-memory-size", "0"]))
        self.assertEqual(self.get("flipped", t)[0], data)
        blocks = os.path.join(path, "blocks.v2")

        # A late fill write would overwrite the flips (which cover the first 12 MiB).
        harness.wait_fill_stored(t, blocks, data[-4096:], read_limit=16 * MiB)
        with open(blocks, "r+b") as f:
            for offset in range(0, 12 * MiB, 256 * 1024):  # flip a byte every 256 KiB
                f.seek(offset + 1000)
                b = f.read(1)
                f.seek(offset + 1000)
                f.write(bytes([b[0] ^ 0xFF]) if b else b"\x00")
        body, _ = self.get("flipped", t)
        self.assertEqual(body, data)
        self.assertGreater(t.metrics()["tagd_cache_checksum_failures_total"], 0)
        self.assertIn("corrupt block", t.log())

    def test_a_cache_of_the_old_format_is_dropped_at_start_not_misread(self):
        path = os.path.join(self.workdir, unique("cache-v1"))
        os.makedirs(os.path.join(path, "index.v1"))
        with open(os.path.join(path, "blocks.v1"), "wb") as f:
            f.write(b"TAGB\x01\x00" + os.urandom(8186))  # a version 1 block file
        with open(os.path.join(path, "index.v1", "CURRENT"), "w") as f:
            f.write("MANIFEST-000001\n")
        data = os.urandom(100_000)
        self.put("after-upgrade", data)
        t = self.start_test_tagd(cache_args(path))
        line = t.wait_for_log(r"older cache format")
        self.assertRegex(line, r"\bwarn(ing)?\b")
        self.assertFalse(os.path.exists(os.path.join(path, "blocks.v1")))
        self.assertFalse(os.path.exists(os.path.join(path, "index.v1")))
        for expected in ("MISS", "HIT"):
            body, h = self.get("after-upgrade", t)
            self.assertEqual(body, data)
            self.assertEqual(h["x-cache"], expected)

    def test_capacity_cap_holds_while_twice_its_size_streams_through(self):
        path = os.path.join(self.workdir, unique("cache-cap"))
        cap = 32 * MiB
        t = self.start_test_tagd(cache_args(path, size="32MiB", extra=["--cache-memory-size", "4MiB"]))
        objects = {f"ds/{i}": os.urandom(4 * MiB) for i in range(16)}  # 64 MiB: twice the cap
        for k, v in objects.items():
            self.put(k, v)
        for _ in range(2):
            for k, v in objects.items():
                self.assertEqual(self.get(k, t)[0], v)
        self.assertEqual(os.path.getsize(os.path.join(path, "blocks.v2")), cap)
        self.assertLess(t.peak_rss(), 200 * MiB)


class BudgetTest(CacheTestCase):
    def test_spent_fill_budget_serves_without_caching(self):
        path = os.path.join(self.workdir, unique("cache-budget"))
        t = self.start_test_tagd(cache_args(path, extra=["--cache-max-fills", "1", "--cache-fill-budget", "1MiB",
                                                         "--cache-max-fetch", "4MiB"]))
        data = os.urandom(100_000)
        self.put("unbudgeted", data)
        for _ in range(2):
            body, h = self.get("unbudgeted", t)
            self.assertEqual(body, data)
            self.assertEqual(h["x-cache"], "MISS")  # a 4 MiB run never fits a 1 MiB budget
        self.assertGreaterEqual(t.metrics()["tagd_cache_fills_rejected_total"], 2)
        t.wait_for_log(r"warn.*fill budget spent")


class DisabledTest(CacheTestCase):
    def test_disabled_cache_forwards_and_says_so(self):
        t = self.start_test_tagd(["--cache-disabled"])
        self.put("plain", b"x" * 100)
        for _ in range(2):
            body, h = self.get("plain", t)
            self.assertEqual(body, b"x" * 100)
            self.assertEqual(h["x-cache"], "DISABLED")
        self.assertGreaterEqual(t.metrics()['tagd_cache_requests_total{result="disabled"}'], 2)


if __name__ == "__main__":
    unittest.main()
