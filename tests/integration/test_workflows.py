"""The ML workflows end to end through tagd with the clients people use (boto3):

- checkpoints on Tigris snapshots and forks (against fake_tigris.py: moto has neither);
- PyTorch DCP's checkpoint write sequence and resume (s3torchconnector's pattern) against
  moto, with the upstream's requests counted by a proxy;
- model weights: many replicas reading one cold safetensors file the way loaders do.
Numbers these tests print are also what docs/workflows.md reports."""
import concurrent.futures
import hashlib
import json
import os
import random
import struct
import time
import unittest
import uuid

from botocore.exceptions import ClientError

from counting_proxy import CountingProxy
from fake_tigris import FakeTigris
from harness import (MiB, REGION, TagdTestCase, raw_request, s3_client, sign_headers, signed_request, unique)

FAKE_KEY = ("AKIDFAKETIGRIS000001", "fake-tigris-secret")


def x_cache(response) -> str:
    return response["ResponseMetadata"]["HTTPHeaders"].get("x-cache", "")


def with_headers(client, headers: dict):
    """Adds `headers` to every request of `client` before it is signed (how Tigris's docs
    have boto3 users send X-Tigris-* headers)."""
    def add(request, **_):
        for k, v in headers.items():
            request.headers[k] = v
    client.meta.events.register("before-sign.s3.*", add)
    return client


class SnapshotForkTest(TagdTestCase):
    """Snapshots and forks through tagd: headers passed signed and unchanged, snapshot reads
    cached under their own key and never revalidated, forks never mixed with their source."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = FakeTigris().start()
        cls.addClassCleanup(cls.fake.stop)
        # A 1 s TTL: a plain entry is stale by the time the test looks again; a snapshot
        # read must not be.
        cls.ttagd = cls.start_tagd(["--cache-ttl", "1s"], upstream=cls.fake.endpoint, name="tagd-tigris")
        cls.ttagd_args = None
        cls.s3 = cls.ttagd.client()

    @classmethod
    def start_tagd(cls, args=(), env=None, upstream=None, wait=True, **kw):
        if upstream is None:  # the moto-backed default tagd of TagdTestCase
            return super().start_tagd(args, env, upstream, wait, **kw)
        from harness import Tagd
        t = Tagd(cls.workdir, upstream, FAKE_KEY, extra_args=args, env=env, **kw)
        cls.addClassCleanup(t.stop)
        t.start(wait=wait)
        return t

    def tigris_request(self, method, path, headers):
        return signed_request(self.ttagd.port, method, path, headers=headers)

    def assert_passed_signed(self, method, path, name, value, contains=""):
        reqs = [r for r in self.fake.requests_for(method, path) if name in r["headers"] and contains in r["target"]]
        self.assertTrue(reqs, f"{name} never reached the upstream on {method} {path}")
        self.assertEqual(reqs[-1]["headers"][name], value)
        self.assertIn(name, FakeTigris.signed_headers(reqs[-1]), "tagd did not sign it upstream")

    def test_snapshot_and_fork_checkpoint_cycle(self):
        b = unique("ckpt")
        st, h, body = self.tigris_request("PUT", f"/{b}", {"X-Tigris-Enable-Snapshot": "true"})
        self.assertEqual(st, 200, body)
        self.assert_passed_signed("PUT", f"/{b}", "x-tigris-enable-snapshot", "true")

        v1 = b"step-100 weights " * 1000
        self.s3.put_object(Bucket=b, Key="model.pt", Body=v1)
        st, h, body = self.tigris_request("PUT", f"/{b}", {"X-Tigris-Snapshot": "true; name=step-100"})
        self.assertEqual(st, 200, body)
        version = h["x-tigris-snapshot-version"]
        self.assertTrue(version.isdigit(), h)
        self.assert_passed_signed("PUT", f"/{b}", "x-tigris-snapshot", "true; name=step-100")
        v2 = b"step-200 weights, longer " * 1000
        self.s3.put_object(Bucket=b, Key="model.pt", Body=v2)
        self.s3.put_object(Bucket=b, Key="later.pt", Body=b"after the snapshot")

        snap = with_headers(self.ttagd.client(), {"X-Tigris-Snapshot-Version": version})
        # Reads as of the snapshot: cached under their own key.
        r = snap.get_object(Bucket=b, Key="model.pt")
        self.assertEqual(r["Body"].read(), v1)
        self.assertEqual(x_cache(r), "MISS")
        self.assert_passed_signed("GET", f"/{b}/model.pt", "x-tigris-snapshot-version", version)
        r = snap.get_object(Bucket=b, Key="model.pt")
        self.assertEqual((r["Body"].read(), x_cache(r)), (v1, "HIT"))
        r = self.s3.get_object(Bucket=b, Key="model.pt")  # the live object is another entry
        self.assertEqual(r["Body"].read(), v2)
        self.assertEqual(x_cache(r), "MISS")
        head = snap.head_object(Bucket=b, Key="model.pt")
        self.assertEqual(head["ContentLength"], len(v1))

        # After the TTL: the live entry is revalidated, the snapshot read is not.
        time.sleep(1.3)
        before = len(self.fake.requests_for("GET", f"/{b}/model.pt")) + len(self.fake.requests_for("HEAD", f"/{b}/model.pt"))
        r = snap.get_object(Bucket=b, Key="model.pt")
        self.assertEqual((r["Body"].read(), x_cache(r)), (v1, "HIT"))
        after = len(self.fake.requests_for("GET", f"/{b}/model.pt")) + len(self.fake.requests_for("HEAD", f"/{b}/model.pt"))
        self.assertEqual(after, before, "a snapshot read went upstream after the TTL")
        r = self.s3.get_object(Bucket=b, Key="model.pt")
        self.assertEqual(r["Body"].read(), v2)
        self.assertEqual(x_cache(r), "REVALIDATED")

        # ListObjectsV2 and CopyObject as of the snapshot pass the header through.
        listed = snap.list_objects_v2(Bucket=b)
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["model.pt"])
        self.assert_passed_signed("GET", f"/{b}?", "x-tigris-snapshot-version", version, contains="list-type=2")
        self.assertEqual(sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=b)["Contents"]),
                         ["later.pt", "model.pt"])
        snap.copy_object(Bucket=b, Key="restored.pt", CopySource={"Bucket": b, "Key": "model.pt"})
        self.assert_passed_signed("PUT", f"/{b}/restored.pt", "x-tigris-snapshot-version", version)
        self.assertEqual(self.s3.get_object(Bucket=b, Key="restored.pt")["Body"].read(), v1)

        # A fork of the snapshot: its own bucket, its own cache entries.
        fork = unique("ckpt-fork")
        st, h, body = self.tigris_request("PUT", f"/{fork}", {"X-Tigris-Fork-Source-Bucket": b,
                                                               "X-Tigris-Fork-Source-Bucket-Snapshot": version})
        self.assertEqual(st, 200, body)
        self.assert_passed_signed("PUT", f"/{fork}", "x-tigris-fork-source-bucket", b)
        self.assert_passed_signed("PUT", f"/{fork}", "x-tigris-fork-source-bucket-snapshot", version)
        r = self.s3.get_object(Bucket=fork, Key="model.pt")
        self.assertEqual((r["Body"].read(), x_cache(r)), (v1, "MISS"))
        self.s3.put_object(Bucket=fork, Key="model.pt", Body=b"fork step-300")
        r = self.s3.get_object(Bucket=fork, Key="model.pt")
        self.assertEqual(r["Body"].read(), b"fork step-300")
        r = self.s3.get_object(Bucket=b, Key="model.pt")
        self.assertEqual(r["Body"].read(), v2)  # the source is untouched by the fork's write
        r = snap.get_object(Bucket=b, Key="model.pt")
        self.assertEqual((r["Body"].read(), x_cache(r)), (v1, "HIT"))

        # A write to the key through tagd invalidates its snapshot entries too
        # (conservative: they are refetched, and still read as of the snapshot).
        self.s3.put_object(Bucket=b, Key="model.pt", Body=b"step-400")
        r = snap.get_object(Bucket=b, Key="model.pt")
        self.assertEqual((r["Body"].read(), x_cache(r)), (v1, "MISS"))

        # ListBuckets of a bucket's snapshots.
        st, h, body = self.tigris_request("GET", "/", {"X-Tigris-Snapshot": b})
        self.assertEqual(st, 200, body)
        self.assertIn(b"step-100", body)
        self.assert_passed_signed("GET", "/", "x-tigris-snapshot", b)


class CheckpointTest(TagdTestCase):
    """PyTorch DCP on S3 (s3torchconnector's writer and reader): each rank PUTs its shard,
    `.metadata` goes up as a temporary object, CopyObject + DeleteObject rename it,
    HeadObject checks existence; resume GETs `.metadata` whole, then many ranged GETs
    into every shard. The upstream's requests are counted by a proxy."""

    RANKS = 4
    SHARD = 3 * MiB + 12345

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.proxy = CountingProxy(cls.moto.port)
        cls.addClassCleanup(cls.proxy.stop)
        cls.ctagd = cls.start_tagd([], upstream=cls.proxy.endpoint, name="tagd-dcp")
        cls.s3 = cls.ctagd.client()
        # Resume runs on another node: a tagd with a cold cache of its own.
        cls.rtagd = cls.start_tagd([], upstream=cls.proxy.endpoint, name="tagd-dcp-resume")
        cls.bucket = unique("dcp")
        cls.s3.create_bucket(Bucket=cls.bucket)

    def assert_absent(self, key):
        with self.assertRaises(ClientError) as ctx:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)
        with self.assertRaises(self.s3.exceptions.NoSuchKey):
            self.s3.get_object(Bucket=self.bucket, Key=key)

    def assert_reads(self, key, data):
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"], len(data))
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(), data)

    def write_checkpoint(self, prefix, step, warm):
        """One DCP save. With `warm`, every name is read first (so tagd has it cached, or
        has it cached as absent-then-present) and must still read the new bytes after."""
        rng = random.Random(step)
        shards = {}
        for rank in range(self.RANKS):
            key = f"{prefix}/__{rank}_0.distcp"
            data = rng.randbytes(self.SHARD)
            if warm:
                self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            self.assert_reads(key, data)  # read-after-write, at once
            shards[key] = data
        # The planner's metadata: where every tensor of every rank lives.
        tensors = []
        for key, data in shards.items():
            at = 0
            while at < len(data):
                n = min(rng.choice([48 * 1024, 96 * 1024, 200 * 1024, 700 * 1024]), len(data) - at)
                tensors.append({"file": key, "offset": at, "length": n, "sha": hashlib.sha256(data[at:at + n]).hexdigest()})
                at += n + rng.choice([0, 0, 4096])  # sometimes a gap (padding the reader skips)
        metadata = json.dumps({"step": step, "tensors": tensors}).encode()
        tmp = f"{prefix}/.metadata.{uuid.uuid4().hex}.tmp"
        final = f"{prefix}/.metadata"
        if warm:
            self.assert_reads(final, self.s3.get_object(Bucket=self.bucket, Key=final)["Body"].read())
        self.s3.put_object(Bucket=self.bucket, Key=tmp, Body=metadata)
        self.assert_reads(tmp, metadata)
        self.s3.copy_object(Bucket=self.bucket, Key=final, CopySource={"Bucket": self.bucket, "Key": tmp})
        self.assert_reads(final, metadata)  # the rename is visible at once, warm cache or not
        self.s3.delete_object(Bucket=self.bucket, Key=tmp)
        self.assert_absent(tmp)  # read-after-delete
        self.s3.head_object(Bucket=self.bucket, Key=final)  # DCP's existence check
        return metadata

    def resume(self, prefix):
        """The reader (on the resume node): .metadata whole, then every tensor by range.
        Returns the X-Cache values."""
        s3 = self.rtagd.client()
        meta = s3.get_object(Bucket=self.bucket, Key=f"{prefix}/.metadata")
        outcomes = [x_cache(meta)]
        tensors = json.loads(meta["Body"].read())["tensors"]
        for t in tensors:
            r = s3.get_object(Bucket=self.bucket, Key=t["file"],
                                   Range=f"bytes={t['offset']}-{t['offset'] + t['length'] - 1}")
            self.assertEqual(hashlib.sha256(r["Body"].read()).hexdigest(), t["sha"])
            outcomes.append(x_cache(r))
        return outcomes, len(tensors)

    def test_write_then_resume_twice(self):
        self.write_checkpoint("run1/step-1", 1, warm=False)  # cold: no name was ever read
        self.write_checkpoint("run1/latest", 2, warm=False)
        self.write_checkpoint("run1/latest", 3, warm=True)   # overwrite while cached
        self.proxy.reset()
        first, n = self.resume("run1/latest")
        reqs, bytes_down = self.proxy.snapshot()
        gets = [r for r in reqs if r["method"] == "GET"]
        print(f"\n[dcp] resume 1: {n} ranged GETs + .metadata from the client; upstream {len(gets)} GETs, "
              f"{len(reqs) - len(gets)} other, {bytes_down / MiB:.1f} MiB down "
              f"(shards {self.RANKS * self.SHARD / MiB:.1f} MiB); X-Cache {sorted(set(first))}")
        for r in gets:
            print(f"[dcp]   upstream GET {r['target'].split('?')[0]} {r['range']}")
        # Close ranges are served from the blocks the first fetch brought in: far fewer
        # upstream fetches than client ranges, and about the shards' bytes once.
        self.assertLess(len(gets), n)
        self.assertLess(bytes_down, self.RANKS * self.SHARD * 1.2 + 1 * MiB)
        self.proxy.reset()
        second, _ = self.resume("run1/latest")
        reqs, bytes_down = self.proxy.snapshot()
        print(f"[dcp] resume 2: upstream {len(reqs)} requests, {bytes_down} bytes; X-Cache {sorted(set(second))}")
        self.assertEqual(set(second), {"HIT"})
        self.assertEqual(reqs, [])


class ModelWeightsTest(TagdTestCase):
    """Inference replicas at cold start: N clients read the same cold safetensors file the
    way loaders do (the 8-byte header length, the JSON header, then each tensor by range)."""

    CLIENTS = 16
    TENSORS = 40

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.proxy = CountingProxy(cls.moto.port)
        cls.addClassCleanup(cls.proxy.stop)
        cls.wtagd = cls.start_tagd([], upstream=cls.proxy.endpoint, name="tagd-weights")
        cls.s3 = cls.wtagd.client(max_pool_connections=cls.CLIENTS)

    @staticmethod
    def safetensors(tensors: int, seed: int) -> bytes:
        rng = random.Random(seed)
        header, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
        for i in range(tensors):
            n = rng.choice([256 * 1024, 512 * 1024, 1 * MiB, 1536 * 1024])
            header[f"layer.{i}.weight"] = {"dtype": "F16", "shape": [n // 2], "data_offsets": [at, at + n]}
            blobs.append(rng.randbytes(n))
            at += n
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + b"".join(blobs)

    def load(self, bucket, key, order_seed):
        """One replica's loader: header length, header, then every tensor (in its own order)."""
        s3 = self.s3
        n = struct.unpack("<Q", s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-7")["Body"].read())[0]
        header = json.loads(s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=8-{8 + n - 1}")["Body"].read())
        base = 8 + n
        names = [k for k in header if k != "__metadata__"]
        random.Random(order_seed).shuffle(names)
        out = {}
        for name in names:
            a, b = header[name]["data_offsets"]
            out[name] = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={base + a}-{base + b - 1}")["Body"].read()
        return header, base, out

    def test_cold_start_of_many_replicas_costs_the_upstream_one_copy(self):
        bucket = unique("weights")
        self.s3.create_bucket(Bucket=bucket)
        blob = self.safetensors(self.TENSORS, 7)
        self.moto.client().put_object(Bucket=bucket, Key="model.safetensors", Body=blob)  # written straight upstream: cold
        self.proxy.reset()
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.CLIENTS) as pool:
            results = list(pool.map(lambda i: self.load(bucket, "model.safetensors", i), range(self.CLIENTS)))
        elapsed = time.monotonic() - t0
        reqs, bytes_down = self.proxy.snapshot()
        for header, base, tensors in results:
            for name, data in tensors.items():
                a, b = header[name]["data_offsets"]
                self.assertEqual(data, blob[base + a:base + b], name)
        print(f"\n[weights] {self.CLIENTS} replicas x {len(blob) / MiB:.1f} MiB ({self.TENSORS} tensors): "
              f"{elapsed:.2f} s; upstream {len(reqs)} requests, {bytes_down / MiB:.2f} MiB down "
              f"({bytes_down / len(blob):.3f}x the file)")
        self.assertGreaterEqual(bytes_down, len(blob))
        self.assertLess(bytes_down, len(blob) * 1.05 + 256 * 1024)

        # Revalidation by ETag is answered by the cache: 304, nothing upstream.
        etag = self.s3.head_object(Bucket=bucket, Key="model.safetensors")["ETag"]
        self.proxy.reset()
        st, h, body = signed_request(self.wtagd.port, "GET", f"/{bucket}/model.safetensors",
                                     headers={"If-None-Match": etag})
        self.assertEqual(st, 304, body)
        self.assertEqual(h.get("x-cache"), "HIT")
        head = self.s3.head_object(Bucket=bucket, Key="model.safetensors")
        self.assertEqual(x_cache(head), "HIT")
        self.assertEqual(head["ContentLength"], len(blob))
        self.assertEqual(self.proxy.snapshot()[0], [])


if __name__ == "__main__":
    unittest.main()
