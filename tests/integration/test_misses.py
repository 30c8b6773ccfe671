"""Misses at the network's limit (issue 10): every cacheable miss fills, as real clients
send them. boto3's download_file and `aws s3 cp` (s3transfer: a HEAD, then ranged GETs
with If-Match) fill on their first run and are all HIT on the second; conditional, suffix
and HEAD misses are answered as S3 would and fill; read-ahead follows a sequential reader
to the object's end and no further, wasting nothing; an object overwritten upstream while
its parts are being fetched is never served mixed. Runs with io_uring on and off."""
import hashlib
import os
import socket
import subprocess
import sys
import time
import unittest

import boto3.s3.transfer

import harness
from harness import ADMIN_KEY, MiB, TagdTestCase, signed_request, unique


def cache_args(path):
    return ["--cache-disk-path", path, "--cache-max-disk-usage", "512MiB", "--cache-region-size", "8MiB",
            "--cache-block-size", "1MiB", "--cache-max-fetch", "4MiB", "--cache-fetch-parallelism", "4"]


class MissesTestCase(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cache_dir = os.path.join("/tmp", unique("tagd-misses"))
        cls.tagd_args = cache_args(cls.cache_dir)
        super().setUpClass()
        cls.addClassCleanup(harness.shutil.rmtree, cls.cache_dir, True)
        cls.bucket = unique("misses")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def put(self, key, data):
        return self.moto.client().put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"]

    def metric(self, name):
        return self.tagd.metrics().get(name, 0.0)

    def cache_results(self):
        m = self.tagd.metrics()
        return {r: m.get(f'tagd_cache_requests_total{{result="{r}"}}', 0.0) for r in ("hit", "miss", "bypass")}

    def upstream_gets(self, key):
        with open(self.moto.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return text.count(f'"GET /{self.bucket}/{key} ') + text.count(f'"GET /{self.bucket}/{key}?')

    def test_download_file_fills_on_its_first_run_and_is_all_hit_on_the_second(self):
        data = os.urandom(40 * MiB)
        self.put("checkpoint.pt", data)
        config = boto3.s3.transfer.TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                                                  max_concurrency=4)
        target = os.path.join(self.workdir, unique("download"))
        before = self.cache_results()
        self.tagd.client().download_file(self.bucket, "checkpoint.pt", target, Config=config)
        self.assertEqual(harness.file_sha256(target), hashlib.sha256(data).hexdigest())
        first = {k: v - before[k] for k, v in self.cache_results().items()}
        self.assertGreater(first["miss"], 0, first)
        self.assertEqual(first["bypass"], 0, "s3transfer's If-Match GETs are cacheable")
        gets_after_first = self.upstream_gets("checkpoint.pt")

        os.unlink(target)
        before = self.cache_results()
        self.tagd.client().download_file(self.bucket, "checkpoint.pt", target, Config=config)
        self.assertEqual(harness.file_sha256(target), hashlib.sha256(data).hexdigest())
        second = {k: v - before[k] for k, v in self.cache_results().items()}
        self.assertEqual(second["miss"], 0, second)
        self.assertEqual(second["bypass"], 0, second)
        self.assertGreaterEqual(second["hit"], 5, "a HEAD and five ranged GETs")
        self.assertEqual(self.upstream_gets("checkpoint.pt"), gets_after_first, "the second run never went upstream")

    def test_a_client_reading_in_parallel_gets_no_read_ahead_on_top(self):
        # s3transfer keeps 4 ranged GETs of the object in flight itself: tagd fetches its
        # parts as asked, one upstream request per 4 MiB part, and nothing ahead of them.
        data = os.urandom(32 * MiB)
        self.put("parallel.bin", data)
        config = boto3.s3.transfer.TransferConfig(multipart_threshold=4 * MiB, multipart_chunksize=4 * MiB,
                                                  max_concurrency=4)
        readahead0 = self.metric('tagd_cache_fills_by_cause_total{cause="readahead"}')
        parallel0 = self.metric("tagd_cache_readahead_parallel_reads_total")
        target = os.path.join(self.workdir, unique("parallel"))
        self.tagd.client().download_file(self.bucket, "parallel.bin", target, Config=config)
        self.assertEqual(harness.file_sha256(target), hashlib.sha256(data).hexdigest())
        self.assertGreater(self.metric("tagd_cache_readahead_parallel_reads_total"), parallel0)
        self.assertEqual(self.metric('tagd_cache_fills_by_cause_total{cause="readahead"}'), readahead0,
                         "no read-ahead stacked on a client's own parallel parts")
        self.assertEqual(self.upstream_gets("parallel.bin"), 8, "one upstream GET per 4 MiB part")

    def test_aws_cli_cp_twice_goes_upstream_once(self):
        data = os.urandom(12 * MiB)
        self.put("weights.bin", data)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ADMIN_KEY[0], AWS_SECRET_ACCESS_KEY=ADMIN_KEY[1],
                   AWS_DEFAULT_REGION=harness.REGION, AWS_EC2_METADATA_DISABLED="true")
        env.pop("AWS_PROFILE", None)
        url = f"http://127.0.0.1:{self.tagd.port}"
        for run in range(2):
            target = os.path.join(self.workdir, unique("cli"))
            before = self.cache_results()
            subprocess.run([sys.executable, "-m", "awscli", "s3", "cp", f"s3://{self.bucket}/weights.bin", target,
                            "--endpoint-url", url, "--only-show-errors"], env=env, check=True, timeout=120)
            self.assertEqual(harness.file_sha256(target), hashlib.sha256(data).hexdigest())
            delta = {k: v - self.cache_results()[k] for k, v in before.items()}
            if run == 1:
                self.assertEqual(delta["miss"], 0, "all HIT on the second copy")
        self.assertLessEqual(self.upstream_gets("weights.bin"), 3, "12 MiB in 4 MiB parts, each once")

    def test_conditional_suffix_and_head_misses_answer_as_s3_does_and_fill(self):
        data = os.urandom(3 * MiB + 123)
        etag = self.put("cond", data)
        p = self.tagd.port
        path = f"/{self.bucket}/cond"
        # If-None-Match with the current ETag on a cold key: 304, from the metadata alone.
        st, h, body = signed_request(p, "GET", path, headers={"If-None-Match": etag})
        self.assertEqual((st, h["x-cache"], body), (304, "MISS", b""))
        # If-Match that fails: 412 with an S3 error.
        self.assertS3Error(signed_request(p, "GET", path, headers={"If-Match": '"0000"'}), 412, "PreconditionFailed")
        # If-Match that holds, ranged: filled, then served from the cache.
        st, h, body = signed_request(p, "GET", path, headers={"If-Match": etag, "Range": "bytes=10-19"})
        self.assertEqual((st, body), (206, data[10:20]))
        st, h, body = signed_request(p, "GET", path, headers={"If-Match": etag, "Range": "bytes=20-29"})
        self.assertEqual((st, h["x-cache"], body), (206, "HIT", data[20:30]))

        # A suffix on a cold key: the last bytes, in one upstream request; then a HIT.
        self.put("footer", data)
        st, h, body = signed_request(p, "GET", f"/{self.bucket}/footer", headers={"Range": "bytes=-100"})
        self.assertEqual((st, h["x-cache"], body), (206, "MISS", data[-100:]))
        self.assertEqual(h["content-range"], f"bytes {len(data) - 100}-{len(data) - 1}/{len(data)}")
        self.assertEqual(self.upstream_gets("footer"), 1)
        st, h, body = signed_request(p, "GET", f"/{self.bucket}/footer", headers={"Range": "bytes=-8"})
        self.assertEqual((st, h["x-cache"], body), (206, "HIT", data[-8:]))
        st, h, body = signed_request(p, "GET", f"/{self.bucket}/footer",
                                     headers={"Range": f"bytes={len(data)}-"})
        self.assertEqual((st, h["x-cache"]), (416, "HIT"))

        # HEAD on a cold key: the metadata only, then a HIT with the same headers.
        self.moto.client().put_object(Bucket=self.bucket, Key="headed", Body=data, ContentType="application/x-npy",
                                      Metadata={"epoch": "3"})
        st, h1, _ = signed_request(p, "HEAD", f"/{self.bucket}/headed")
        self.assertEqual((st, h1["x-cache"], h1["content-length"]), (200, "MISS", str(len(data))))
        self.assertEqual(self.upstream_gets("headed"), 0, "a HEAD miss downloads nothing")
        st, h2, _ = signed_request(p, "HEAD", f"/{self.bucket}/headed")
        self.assertEqual((st, h2["x-cache"]), (200, "HIT"))
        for name in ("content-type", "x-amz-meta-epoch", "etag", "last-modified", "content-length"):
            self.assertEqual(h1.get(name), h2.get(name), name)
        # A HEAD of a missing key: the upstream's 404, relayed.
        st, h, _ = signed_request(p, "HEAD", f"/{self.bucket}/no-such-key")
        self.assertEqual(st, 404)

    def test_read_ahead_follows_a_sequential_reader_to_the_end_and_wastes_nothing(self):
        size = 24 * MiB
        data = os.urandom(size)
        self.put("stream", data)
        fill0, ahead0 = self.metric("tagd_cache_fill_bytes_total"), self.metric("tagd_cache_prefetch_bytes_total")
        used0 = self.metric("tagd_cache_prefetch_used_bytes_total")
        readahead0 = self.metric('tagd_cache_fills_by_cause_total{cause="readahead"}')
        s3 = self.tagd.client()
        misses = 0
        for first in range(0, size, MiB):
            r = s3.get_object(Bucket=self.bucket, Key="stream", Range=f"bytes={first}-{first + MiB - 1}")
            self.assertEqual(r["Body"].read(), data[first:first + MiB])
            misses += r["ResponseMetadata"]["HTTPHeaders"]["x-cache"] == "MISS"
        self.assertLess(misses, 6, "read-ahead runs in front of the reader after the first reads")
        # Whole, aligned parts of cache.max_fetch (4 MiB): blocks 0 and 1 by the reader, the
        # rest of the first part by read-ahead, then one request per part (not 1, 2, 4 MiB).
        self.assertLessEqual(self.upstream_gets("stream"), 3 + size // (4 * MiB) - 1)
        self.assertGreater(self.metric('tagd_cache_fills_by_cause_total{cause="readahead"}'), readahead0)
        # Fills finish in the background: wait for the counters to settle.
        harness.wait_until(lambda: self.metric("tagd_cache_fill_bytes_total") - fill0 >= size, 10,
                           what="the fills to finish")
        time.sleep(0.3)
        self.assertEqual(self.metric("tagd_cache_fill_bytes_total") - fill0, size,
                         "every byte fetched once, nothing past the object's end")
        ahead = self.metric("tagd_cache_prefetch_bytes_total") - ahead0
        self.assertGreater(ahead, 0)
        self.assertEqual(self.metric("tagd_cache_prefetch_used_bytes_total") - used0, ahead,
                         "a sequential reader reads everything fetched ahead of it")

    def test_an_object_overwritten_during_a_parallel_fill_is_never_served_mixed(self):
        size = 48 * MiB
        v1, v2 = os.urandom(size), os.urandom(size)
        self.put("moving", v1)
        sock = harness.open_signed_get(self.tagd.port, f"/{self.bucket}/moving", rcvbuf=64 * 1024)
        got = bytearray()
        try:
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536)
            head, _, rest = bytes(got).partition(b"\r\n\r\n")
            self.assertIn(b"X-Cache: MISS", head)
            body = bytearray(rest)
            self.put("moving", v2)  # while the parts ahead of this slow reader are in flight
            sock.settimeout(30)
            try:
                while True:
                    piece = sock.recv(1 << 20)
                    if not piece:
                        break
                    body += piece
            except (ConnectionResetError, socket.timeout):
                pass
        finally:
            sock.close()
        # Whatever arrived is a prefix of the first version: cut, never spliced with v2.
        self.assertEqual(bytes(body), v1[:len(body)], f"{len(body)} bytes received")
        r = self.tagd.client().get_object(Bucket=self.bucket, Key="moving")
        self.assertEqual(hashlib.sha256(r["Body"].read()).digest(), hashlib.sha256(v2).digest())


if __name__ == "__main__":
    unittest.main()
