"""Bodies stream through tagd both ways: a 1 GiB object goes up in one PutObject and
comes back down while tagd's peak memory stays far below the object size, and a client
that reads slowly does not make tagd buffer the object."""
import hashlib
import os
import time
import unittest

import harness
from harness import MiB, TagdTestCase, unique

GiB = 1024 * MiB
# tagd keeps one 64 KiB piece per direction per request; everything else is code, the
# allocator and per-connection buffers. 256 MiB is a generous ceiling that is still a
# quarter of the object.
RSS_BOUND = 256 * MiB


class StreamingTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("stream")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def assertPeakBelowBound(self, what):
        peak = self.tagd.peak_rss()
        self.assertLess(peak, RSS_BOUND, f"tagd's peak RSS reached {peak / MiB:.1f} MiB {what}")
        return peak

    def test_1gib_put_and_get_stream(self):
        key = unique("one-gib")
        s3 = self.tagd.client(read_timeout=300)
        before = self.tagd.metrics()
        path = os.path.join(self.workdir, "one-gib.bin")
        try:
            t0 = time.monotonic()
            digest = harness.write_random_file(path, GiB)
            with open(path, "rb") as f:
                put = s3.put_object(Bucket=self.bucket, Key=key, Body=f)
            t_put = time.monotonic()
            self.assertEqual(put["ResponseMetadata"]["HTTPStatusCode"], 200)
        finally:
            os.unlink(path)
        self.assertEqual(self.moto.client().head_object(Bucket=self.bucket, Key=key)["ContentLength"], GiB)
        self.assertPeakBelowBound("after a 1 GiB upload")

        h = hashlib.sha256()
        got = 0
        body = s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(chunk_size=MiB):
            h.update(chunk)
            got += len(chunk)
        t_get = time.monotonic()
        self.assertEqual(got, GiB)
        self.assertEqual(h.hexdigest(), digest)
        peak = self.assertPeakBelowBound("after a 1 GiB upload and download")

        # A piece is counted after its write completes, which the client may have read already.
        harness.wait_until(lambda: self.tagd.metrics()["tagd_response_body_bytes_total"]
                           - before["tagd_response_body_bytes_total"] >= GiB, 10, what="the body's bytes counted")
        after = self.tagd.metrics()
        self.assertGreaterEqual(after["tagd_request_body_bytes_total"] - before["tagd_request_body_bytes_total"], GiB)
        print(f"\n1 GiB: write+put {t_put - t0:.1f}s, get {t_get - t_put:.1f}s, tagd peak RSS {peak / MiB:.1f} MiB",
              flush=True)
        self.moto.client().delete_object(Bucket=self.bucket, Key=key)  # moto holds it in memory/tmp

    def test_slow_reader_does_not_grow_memory(self):
        key = unique("slow")
        size = 64 * MiB
        self.tagd.client().put_object(Bucket=self.bucket, Key=key, Body=os.urandom(size))
        rss_before = self.tagd.rss()
        aborts_before = self.tagd.metrics()["tagd_client_aborts_total"]

        # A small receive buffer, so the kernel cannot absorb the object on our behalf.
        sock = harness.open_signed_get(self.tagd.port, f"/{self.bucket}/{key}", rcvbuf=64 * 1024)
        try:
            received = 0
            peak_rss = 0
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                data = sock.recv(64 * 1024)
                if not data:
                    break
                received += len(data)
                peak_rss = max(peak_rss, self.tagd.rss())
                time.sleep(0.01)
            self.assertTrue(self.tagd.alive())
        finally:
            sock.close()
        # A few seconds at ~6 MiB/s: the client has most of the object still to read.
        self.assertGreater(received, 1 * MiB)
        self.assertLess(received, size // 2, "the reader was not slow enough to test anything")
        growth = peak_rss - rss_before
        # The cache fill runs at the upstream's pace, not the client's: the blocks it
        # finishes go to disk and to the DRAM tier (32 MiB in the harness), so that tier is
        # the most RSS may grow by, plus a constant; never the object's size.
        self.assertLess(growth, 32 * MiB + 16 * MiB, f"tagd's RSS grew {growth / MiB:.1f} MiB while a slow client read "
                                          f"{received / MiB:.1f} MiB of a {size // MiB} MiB object")
        self.assertPeakBelowBound("with a slow reader")
        print(f"\nslow reader: {received / MiB:.1f} MiB in 3 s, tagd RSS growth {growth / MiB:.1f} MiB", flush=True)
        # Closing mid-body is noticed as a client abort (tagd stopped the transfer).
        harness.wait_until(lambda: self.tagd.metrics()["tagd_client_aborts_total"] > aborts_before, 10,
                           what="tagd to count the aborted download")
        # tagd is fine afterwards (the aborted response did not wedge anything).
        self.assertEqual(self.tagd.client().head_object(Bucket=self.bucket, Key=key)["ContentLength"], size)


if __name__ == "__main__":
    unittest.main()
