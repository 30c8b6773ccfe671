"""Every cached answer is the right one (issue 7, section 4, and checksum mode).

Per class of wrong answer, a test that the cache no longer gives it:
  variants  - a version deleted or overwritten through tagd is not served from the cache;
  snapshot  - a read as of a Tigris snapshot (X-Tigris-Snapshot-Version) neither gets the
              live cached object nor poisons it (a scripted upstream answers per snapshot:
              moto ignores the header);
  headers   - request headers tagd does not know (or that change the answer) bypass;
  changed   - an object changed upstream behind tagd's back after part of it was cached
              gives the new object, or a reset connection, never a short or mixed body;
  checksum  - GetObject in checksum mode returns the object's x-amz-checksum-* on a miss
              and on a hit, and never where S3 would not.
"""
import base64
import hashlib
import http.client
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import unittest
import urllib.request
import zlib

import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.exceptions import ClientError

import harness
from harness import MiB, FakeUpstream, Tagd, TagdTestCase, signed_request, unique

UPSTREAM_KEY = ("AKIDUPSTREAMFAKE0002", "upstream-fake-secret-0123456789abcdefgh")


def cache_args(path, extra=()):
    return ["--cache-disk-path", path, "--cache-max-disk-usage", "128MiB", "--cache-region-size", "4MiB",
            "--cache-block-size", "1MiB", "--cache-max-fetch", "4MiB", *extra]


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def get_raw(port: int, path: str, headers: dict | None = None, timeout: float = 30.0):
    """A signed GET that reports how the response ended instead of raising:
    (status, headers, body, error) where error is None, "reset" (the connection was
    reset: the client knows the body is incomplete) or "short" (the connection was
    closed before Content-Length bytes: a truncated body)."""
    host = f"127.0.0.1:{port}"
    h = {"Host": host}
    h.update(headers or {})
    signed = harness.sign_headers("GET", f"http://{host}{path}", h, harness.EMPTY_SHA256)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for k, v in signed.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        rh = {k.lower(): v for k, v in r.getheaders()}
        body = b""
        try:
            while True:
                piece = r.read(65536)
                if not piece:
                    break
                body += piece
        except ConnectionResetError:
            return r.status, rh, body, "reset"
        except http.client.IncompleteRead as e:
            return r.status, rh, body + e.partial, "short"
        if "content-length" in rh and len(body) != int(rh["content-length"]):
            return r.status, rh, body, "short"
        return r.status, rh, body, None
    finally:
        conn.close()


class CacheTrustCase(TagdTestCase):
    """moto + a tagd with a cache of 1 MiB blocks in a directory of its own, and a bucket."""
    cache_dir_name = "tagd-trust"
    bucket_name = "trust"

    @classmethod
    def setUpClass(cls):
        cls.tagd_args = cache_args(os.path.join("/tmp", unique(cls.cache_dir_name)))
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.tagd_args[1], True)
        cls.bucket = unique(cls.bucket_name)
        cls.tagd.client().create_bucket(Bucket=cls.bucket)


class ScriptedStore:
    """A minimal object store behind FakeUpstream: GET/HEAD with Range, If-Match and
    If-None-Match, DELETE, and objects per X-Tigris-Snapshot-Version ("" = live).
    `answer_hook(request, snapshot)` may return the (body, etag) to answer with instead,
    to script an object that changes between two requests."""

    def __init__(self):
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.answer_hook = None

    def put(self, path: str, body: bytes, snapshot: str = "") -> str:
        etag = '"%s"' % hashlib.md5(body).hexdigest()
        with self.lock:
            self.objects[(path, snapshot)] = (body, etag)
        return etag

    def requests_for(self, upstream: FakeUpstream, path: str, method: str = "GET"):
        return [r for r in upstream.requests if r["method"] == method and r["target"].split("?")[0] == path]

    def respond(self, req):
        path = req["target"].split("?")[0]
        snapshot = req["headers"].get("x-tigris-snapshot-version", "")
        method = req["method"]
        if method == "DELETE":
            with self.lock:
                self.objects.pop((path, ""), None)
            return FakeUpstream.response(204)
        if method == "PUT":
            etag = self.put(path, req["body"])
            return FakeUpstream.response(200, b"", {"ETag": etag})
        with self.lock:
            found = self.objects.get((path, snapshot))
        if self.answer_hook is not None:
            found = self.answer_hook(req, snapshot) or found
        if found is None:
            xml = b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>"
            return FakeUpstream.response(404, b"" if method == "HEAD" else xml, {"Content-Type": "application/xml"},
                                         content_length=len(xml))
        body, etag = found
        base = {"ETag": etag, "Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT", "Content-Type": "application/x-test",
                "x-amz-meta-snapshot": snapshot or "live"}
        if req["headers"].get("x-amz-checksum-mode") == "ENABLED":
            base["x-amz-checksum-crc32"] = crc32_b64(body)
        if "if-match" in req["headers"] and req["headers"]["if-match"] != etag:
            return FakeUpstream.response(412, b"", {"Content-Type": "application/xml"})
        if "if-none-match" in req["headers"] and req["headers"]["if-none-match"] == etag:
            return FakeUpstream.response(304, b"", {"ETag": etag}, content_length=0)
        rng = req["headers"].get("range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            first = int(m.group(1))
            last = min(int(m.group(2)) if m.group(2) else len(body) - 1, len(body) - 1)
            part = body[first:last + 1]
            h = dict(base)
            if not (first == 0 and last == len(body) - 1):
                h.pop("x-amz-checksum-crc32", None)
            h["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
            if method == "HEAD":
                return FakeUpstream.response(206, b"", h, content_length=len(part))
            return FakeUpstream.response(206, part, h)
        if method == "HEAD":
            return FakeUpstream.response(200, b"", base, content_length=len(body))
        return FakeUpstream.response(200, body, base)


class ScriptedTestCase(TagdTestCase):
    """tagd in front of a ScriptedStore (no moto)."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-trust-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)

    def start_store(self, args=()):
        store = ScriptedStore()
        upstream = FakeUpstream(store.respond)
        self.addCleanup(upstream.stop)
        path = os.path.join(self.workdir, unique("cache"))
        t = Tagd(self.workdir, upstream.endpoint, UPSTREAM_KEY, extra_args=cache_args(path, args))
        self.__dict__.setdefault("_test_tagds", []).append(t)
        self.addCleanup(t.stop)
        t.start()
        return store, upstream, t


# ----------------------------------------------------------------------------- variants

class VariantsTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tagd_args = cache_args(os.path.join("/tmp", unique("tagd-trust-variants")))
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.tagd_args[1], True)

    def test_variants_versioned_delete_through_tagd_invalidates(self):
        s3 = self.tagd.client()
        bucket = unique("versioned")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        v1 = s3.put_object(Bucket=bucket, Key="obj", Body=b"one" * 1000)["VersionId"]
        s3.put_object(Bucket=bucket, Key="obj", Body=b"two" * 1000)
        for expect in ("MISS", "HIT"):
            r = s3.get_object(Bucket=bucket, Key="obj", VersionId=v1)
            self.assertEqual(r["Body"].read(), b"one" * 1000)
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], expect)
        self.assertEqual(s3.get_object(Bucket=bucket, Key="obj")["Body"].read(), b"two" * 1000)
        s3.delete_object(Bucket=bucket, Key="obj", VersionId=v1)
        with self.assertRaises(ClientError) as ctx:
            r = s3.get_object(Bucket=bucket, Key="obj", VersionId=v1)
            self.fail(f"deleted version still served ({r['ResponseMetadata']['HTTPHeaders'].get('x-cache')})")
        self.assertIn(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], (400, 404))
        self.assertEqual(s3.get_object(Bucket=bucket, Key="obj")["Body"].read(), b"two" * 1000)

    def test_variants_overwrite_of_the_null_version_through_tagd_invalidates(self):
        s3 = self.tagd.client()
        bucket = unique("unversioned")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="obj", Body=b"first" * 100)
        for expect in ("MISS", "HIT"):
            r = s3.get_object(Bucket=bucket, Key="obj", VersionId="null")
            self.assertEqual(r["Body"].read(), b"first" * 100)
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], expect)
        s3.put_object(Bucket=bucket, Key="obj", Body=b"second" * 100)  # replaces the "null" version
        r = s3.get_object(Bucket=bucket, Key="obj", VersionId="null")
        self.assertEqual(r["Body"].read(), b"second" * 100)
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "MISS")
        s3.delete_object(Bucket=bucket, Key="obj")
        with self.assertRaises(ClientError):
            s3.get_object(Bucket=bucket, Key="obj", VersionId="null")


# ----------------------------------------------------------------------------- snapshot

class SnapshotTest(ScriptedTestCase):
    LIVE = b"live bytes " * 500
    OLD = b"old snapshot bytes " * 300

    def setUp(self):
        self.store, self.upstream, self.t = self.start_store()
        self.store.put("/bucket/ckpt", self.LIVE)
        self.store.put("/bucket/ckpt", self.OLD, snapshot="1733000000")

    def get(self, snapshot=None):
        headers = {"X-Tigris-Snapshot-Version": snapshot} if snapshot else {}
        status, h, body = signed_request(self.t.port, "GET", "/bucket/ckpt", headers=headers)
        self.assertEqual(status, 200, body[:300])
        return body, h

    def test_snapshot_read_does_not_get_the_live_cached_object(self):
        for expect in ("MISS", "HIT"):
            body, h = self.get()
            self.assertEqual((body, h["x-cache"]), (self.LIVE, expect))
        body, h = self.get("1733000000")
        self.assertEqual(body, self.OLD, "a snapshot read was answered with the live cached object")
        self.assertEqual(h["x-cache"], "MISS")
        self.assertEqual(h.get("x-amz-meta-snapshot"), "1733000000")
        # The fill asked the upstream for the same snapshot.
        fills = [r for r in self.store.requests_for(self.upstream, "/bucket/ckpt")
                 if r["headers"].get("x-tigris-snapshot-version") == "1733000000"]
        self.assertTrue(fills, [r["headers"] for r in self.upstream.requests])
        body, h = self.get("1733000000")
        self.assertEqual((body, h["x-cache"]), (self.OLD, "HIT"))
        body, h = self.get()
        self.assertEqual((body, h["x-cache"]), (self.LIVE, "HIT"))

    def test_snapshot_miss_does_not_poison_the_live_entry(self):
        body, h = self.get("1733000000")
        self.assertEqual(body, self.OLD)
        body, h = self.get()
        self.assertEqual(body, self.LIVE, "the snapshot miss filled the live entry with old bytes")
        # A ranged snapshot read (fetched in blocks) carries the header on every fill too.
        status, h, part = signed_request(self.t.port, "GET", "/bucket/ckpt",
                                         headers={"X-Tigris-Snapshot-Version": "1733000000", "Range": "bytes=5-24"})
        self.assertEqual((status, part), (206, self.OLD[5:25]))

    def test_snapshot_entry_is_invalidated_by_a_delete_through_tagd(self):
        self.assertEqual(self.get("1733000000")[0], self.OLD)
        self.assertEqual(self.get("1733000000")[1]["x-cache"], "HIT")
        # Decision (src/cache/README.md): a write or delete of the key through tagd drops every
        # variant, snapshot reads included; they are refetched (and still the old bytes).
        status, _, _ = signed_request(self.t.port, "DELETE", "/bucket/ckpt")
        self.assertEqual(status, 204)
        body, h = self.get("1733000000")
        self.assertEqual((body, h["x-cache"]), (self.OLD, "MISS"))


# ----------------------------------------------------------------------------- headers

class HeadersTest(CacheTrustCase):
    cache_dir_name, bucket_name = "tagd-trust-headers", "hdr"

    def test_headers_unknown_or_answer_changing_request_headers_bypass(self):
        data = os.urandom(20_000)
        self.moto.client().put_object(Bucket=self.bucket, Key="obj", Body=data)
        s3 = self.tagd.client()
        s3.get_object(Bucket=self.bucket, Key="obj")["Body"].read()  # fill
        # What real clients send stays cacheable: boto3, a raw SigV4 request, a presigned URL.
        r = s3.get_object(Bucket=self.bucket, Key="obj")
        self.assertEqual((r["Body"].read(), r["ResponseMetadata"]["HTTPHeaders"]["x-cache"]), (data, "HIT"))
        st, h, body = signed_request(self.tagd.port, "GET", f"/{self.bucket}/obj",
                                     headers={"User-Agent": "curl/8.5.0", "Accept": "*/*",
                                              "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        self.assertEqual((st, h["x-cache"], body), (200, "HIT", data))
        url = s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "obj"}, ExpiresIn=300)
        with urllib.request.urlopen(url, timeout=30) as resp:
            self.assertEqual((resp.read(), resp.headers["X-Cache"]), (data, "HIT"))
        for name, value in [("X-Unknown-Vendor-Header", "1"), ("Origin", "https://example.com"),
                            ("x-amz-expected-bucket-owner", "123456789012"), ("x-amz-request-payer", "requester"),
                            ("If-Range", '"abc"'), ("x-amz-checksum-mode", "DISABLED")]:
            with self.subTest(header=name):
                st, h, body = signed_request(self.tagd.port, "GET", f"/{self.bucket}/obj", headers={name: value})
                self.assertEqual(h.get("x-cache"), "BYPASS", f"{name} was answered from the cache (status {st})")
        m = self.tagd.metrics()
        self.assertGreaterEqual(m['tagd_cache_requests_total{result="bypass"}'], 6)


# ----------------------------------------------------------------------------- changed upstream

class ChangedUpstreamTest(CacheTrustCase):
    cache_dir_name, bucket_name = "tagd-trust-changed", "chg"

    def test_changed_upstream_after_partial_cache_gives_the_new_object(self):
        old = os.urandom(3 * MiB + 100)
        new = os.urandom(3 * MiB + 100)  # same size: only the ETag tells them apart
        direct = self.moto.client()
        direct.put_object(Bucket=self.bucket, Key="obj", Body=old)
        path = f"/{self.bucket}/obj"
        st, h, body, err = get_raw(self.tagd.port, path, {"Range": "bytes=0-99"})
        self.assertEqual((st, body, err), (206, old[:100], None))  # block 0 cached
        direct.put_object(Bucket=self.bucket, Key="obj", Body=new)  # behind tagd's back
        st, h, body, err = get_raw(self.tagd.port, path)
        self.assertIsNone(err, f"status {st}, {len(body)} of {h.get('content-length')} bytes, then {err}")
        self.assertEqual(st, 200)
        self.assertEqual(len(body), len(new))
        self.assertTrue(body == new, "a mixed body: cached blocks of the old object with the new one")
        self.assertEqual(h["etag"], direct.head_object(Bucket=self.bucket, Key="obj")["ETag"])
        # And from now on the new object is what the cache holds.
        st, h, body, err = get_raw(self.tagd.port, path)
        self.assertEqual((st, err, h["x-cache"]), (200, None, "HIT"))
        self.assertTrue(body == new)
        r = self.tagd.client().get_object(Bucket=self.bucket, Key="obj", Range="bytes=100-199")
        self.assertEqual(r["Body"].read(), new[100:200])

    def test_changed_upstream_for_a_ranged_hit_gives_the_new_bytes(self):
        old = os.urandom(3 * MiB)
        new = os.urandom(3 * MiB)
        direct = self.moto.client()
        direct.put_object(Bucket=self.bucket, Key="ranged", Body=old)
        s3 = self.tagd.client()
        self.assertEqual(s3.get_object(Bucket=self.bucket, Key="ranged", Range="bytes=10-20")["Body"].read(),
                         old[10:21])
        direct.put_object(Bucket=self.bucket, Key="ranged", Body=new)
        # Block 2 was never cached: the hit's fill finds the change before answering.
        r = s3.get_object(Bucket=self.bucket, Key="ranged", Range=f"bytes={2 * MiB}-{2 * MiB + 99}")
        self.assertEqual(r["Body"].read(), new[2 * MiB:2 * MiB + 100])


class ChangedMidResponseTest(ScriptedTestCase):
    def test_changed_upstream_mid_response_resets_the_connection(self):
        # One block per run, so a whole-object read fetches block after block.
        store, upstream, t = self.start_store(["--cache-max-fetch", "1MiB"])
        old = os.urandom(6 * MiB)
        new = os.urandom(6 * MiB)
        old_etag = store.put("/bucket/obj", old)
        st, h, body, err = get_raw(t.port, "/bucket/obj", {"Range": "bytes=0-0"})
        self.assertEqual((st, body, err), (206, old[:1], None))
        store.put("/bucket/obj", new)

        # The object changes between two fills: the block right after the cached one still
        # comes from the old object (the head is sent after it was checked), later ones
        # no longer match the ETag.
        def lagging(req, snapshot):
            rng = req["headers"].get("range", "")
            if req["headers"].get("if-match") == old_etag and rng.startswith(f"bytes={MiB}-"):
                return old, old_etag
            return None
        store.answer_hook = lagging
        st, h, body, err = get_raw(t.port, "/bucket/obj")
        self.assertEqual(st, 200)
        self.assertEqual(err, "reset", f"{len(body)} of {h.get('content-length')} bytes, then {err}")
        self.assertTrue(old.startswith(body), "bytes of another object in the response")
        self.assertEqual(t.metrics()["tagd_cache_changed_resets_total"], 1)
        t.wait_for_log(r"warn.*changed upstream while its cached copy was being served")
        # The entry was invalidated: the next read is a clean miss of the new object.
        store.answer_hook = None
        st, h, body, err = get_raw(t.port, "/bucket/obj")
        self.assertEqual((st, err, h["x-cache"]), (200, None, "MISS"))
        self.assertTrue(body == new)


# ----------------------------------------------------------------------------- checksum

class ChecksumTest(CacheTrustCase):
    cache_dir_name, bucket_name = "tagd-trust-checksum", "sum"

    def put(self, key, data):
        self.moto.client().put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32")

    def test_checksum_mode_returns_crc32_on_miss_and_on_hit(self):
        data = os.urandom(MiB + 12345)
        self.put("obj", data)
        s3 = self.tagd.client()
        for expect in ("MISS", "HIT"):
            r = s3.get_object(Bucket=self.bucket, Key="obj", ChecksumMode="ENABLED")
            self.assertEqual(r["Body"].read(), data)  # botocore validates the body against it
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], expect)
            self.assertEqual(r.get("ChecksumCRC32"), crc32_b64(data), expect)
        head = s3.head_object(Bucket=self.bucket, Key="obj", ChecksumMode="ENABLED")
        self.assertEqual(head.get("ChecksumCRC32"), crc32_b64(data))

    def test_checksum_never_on_ranges_or_without_checksum_mode(self):
        data = os.urandom(200_000)
        self.put("partial", data)
        s3 = self.tagd.client()
        for expect in ("MISS", "HIT"):  # whole object in checksum mode: returned
            r = s3.get_object(Bucket=self.bucket, Key="partial", ChecksumMode="ENABLED")
            self.assertEqual((r["Body"].read(), r.get("ChecksumCRC32")), (data, crc32_b64(data)), expect)
        r = s3.get_object(Bucket=self.bucket, Key="partial", ChecksumMode="ENABLED", Range="bytes=10-99")
        self.assertEqual(r["Body"].read(), data[10:100])
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT")
        self.assertNotIn("x-amz-checksum-crc32", r["ResponseMetadata"]["HTTPHeaders"])
        st, h, body = signed_request(self.tagd.port, "GET", f"/{self.bucket}/partial")
        self.assertEqual((st, h["x-cache"], body), (200, "HIT", data))
        self.assertFalse([k for k in h if k.startswith("x-amz-checksum-")], h)

    def test_checksum_mode_hit_after_a_ranged_fill(self):
        data = os.urandom(3 * MiB)
        self.put("big", data)
        s3 = self.tagd.client()
        r = s3.get_object(Bucket=self.bucket, Key="big", Range="bytes=0-9", ChecksumMode="ENABLED")
        self.assertEqual(r["Body"].read(), data[:10])
        r = s3.get_object(Bucket=self.bucket, Key="big", ChecksumMode="ENABLED")
        self.assertEqual(r["Body"].read(), data)
        self.assertEqual(r.get("ChecksumCRC32"), crc32_b64(data))
        # The rest of the blocks came from upstream on that read; the next is all cache.
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "MISS")
        r = s3.get_object(Bucket=self.bucket, Key="big", ChecksumMode="ENABLED")
        self.assertEqual(r["Body"].read(), data)
        self.assertEqual(r.get("ChecksumCRC32"), crc32_b64(data))
        self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT")

    def test_checksum_mode_in_a_presigned_query(self):
        data = os.urandom(50_000)
        self.put("presigned", data)
        host = f"127.0.0.1:{self.tagd.port}"
        # As the AWS SDK for JavaScript v3 presigns it: the header hoisted into the query.
        url = f"http://{host}/{self.bucket}/presigned?x-amz-checksum-mode=ENABLED&x-id=GetObject"
        request = botocore.awsrequest.AWSRequest(method="GET", url=url, headers={"Host": host})
        signer = botocore.auth.S3SigV4QueryAuth(botocore.credentials.Credentials(*harness.ADMIN_KEY), "s3",
                                                harness.REGION, expires=300)
        signer.add_auth(request)
        for expect in ("MISS", "HIT"):
            with urllib.request.urlopen(request.url, timeout=30) as resp:
                self.assertEqual(resp.read(), data)
                self.assertEqual(resp.headers["X-Cache"], expect)
                self.assertEqual(resp.headers["x-amz-checksum-crc32"], crc32_b64(data), expect)


if __name__ == "__main__":
    unittest.main()
