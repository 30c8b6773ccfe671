"""Who may do what: every refusal carries the right S3 error code, HTTP status and an
x-amz-request-id, and leaves nothing written upstream (checked straight against moto
with tagd's upstream key). Bodies whose digest is only known at their end are large
enough that tagd has streamed part of them upstream before it finds the problem."""
import base64
import datetime
import hashlib
import os
import time
import unittest
import urllib.error
import urllib.request

from botocore.exceptions import ClientError

import harness
from harness import (ADMIN_KEY, READER_BUCKET, READER_KEY, READER_PREFIX, STREAMING_SIGNED,
                     STREAMING_UNSIGNED_TRAILER, TagdTestCase, crc32_b64, s3_client, sha256_hex, signed_request,
                     streaming_put, unique)

WRITER_KEY, WRITER_PREFIX = harness.WRITER_KEY, harness.WRITER_PREFIX
# Large enough to span many 64 KiB transfer pieces: tagd forwards the early ones before
# it can know the digest of the whole.
STREAMED_SIZE = 1024 * 1024 + 12345


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class AuthTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("auth")
        admin = cls.tagd.client()
        admin.create_bucket(Bucket=cls.bucket)
        admin.create_bucket(Bucket=READER_BUCKET)
        cls.public_data = os.urandom(4000)
        admin.put_object(Bucket=READER_BUCKET, Key=READER_PREFIX + "a.txt", Body=cls.public_data)
        admin.put_object(Bucket=READER_BUCKET, Key="private-b.txt", Body=b"private")
        admin.put_object(Bucket=READER_BUCKET, Key=WRITER_PREFIX + "1", Body=b"scratch one")

    @classmethod
    def start_tagd(cls, args=(), env=None, **kw):
        return super().start_tagd(args, env, credentials=harness.writer_credentials_doc(), **kw)

    def setUp(self):
        self.key = unique("obj")
        self.path = f"/{self.bucket}/{self.key}"

    # ------------------------------------------------------------------ helpers
    def assertNothingWritten(self, key=None, bucket=None):
        bucket = bucket or self.bucket
        key = key or self.key
        self.assertNotIn(key, self.moto.keys(bucket), f"{bucket}/{key} was written upstream")

    def assertUpstreamHas(self, key, data, bucket=None):
        self.assertEqual(self.moto.object_bytes(bucket or self.bucket, key), data)

    def assertAbortedMidStream(self, response):
        """tagd logs this only when it had already forwarded part of the body upstream."""
        request_id = response[1]["x-amz-request-id"]
        self.tagd.wait_for_log(rf"request {request_id}: upload aborted upstream", timeout=5)

    # ------------------------------------------------------------------ signatures
    def test_wrong_secret(self):
        failures_before = self.tagd.metrics()["tagd_auth_failures_total"]
        bad = s3_client(self.tagd.endpoint, (ADMIN_KEY[0], "not-the-secret"))
        with self.assertRaises(ClientError) as ctx:
            bad.put_object(Bucket=self.bucket, Key=self.key, Body=os.urandom(300_000))
        self.assertBotoError(ctx, 403, "SignatureDoesNotMatch")
        with self.assertRaises(ClientError) as ctx:
            bad.get_object(Bucket=READER_BUCKET, Key=READER_PREFIX + "a.txt")
        self.assertBotoError(ctx, 403, "SignatureDoesNotMatch")
        self.assertS3Error(signed_request(self.tagd.port, "PUT", self.path, b"x" * 1000,
                                          key=(ADMIN_KEY[0], "wrong")), 403, "SignatureDoesNotMatch")
        self.assertNothingWritten()
        self.assertGreaterEqual(self.tagd.metrics()["tagd_auth_failures_total"], failures_before + 3)

    def test_unknown_access_key(self):
        stranger = s3_client(self.tagd.endpoint, ("AKIDNOBODY0000000000", "whatever"))
        with self.assertRaises(ClientError) as ctx:
            stranger.put_object(Bucket=self.bucket, Key=self.key, Body=b"hello")
        self.assertBotoError(ctx, 403, "InvalidAccessKeyId")
        # tagd's upstream key is not a client key either.
        upstream_key = s3_client(self.tagd.endpoint, (self.moto.access_key, self.moto.secret_key))
        with self.assertRaises(ClientError) as ctx:
            upstream_key.put_object(Bucket=self.bucket, Key=self.key, Body=b"hello")
        self.assertBotoError(ctx, 403, "InvalidAccessKeyId")
        self.assertNothingWritten()

    def test_unsigned_request(self):
        host = {"Host": f"127.0.0.1:{self.tagd.port}"}
        self.assertS3Error(harness.raw_request(self.tagd.port, "PUT", self.path, {**host, "Content-Length": "5"},
                                               b"hello"), 403, "AccessDenied")
        self.assertS3Error(harness.raw_request(self.tagd.port, "GET", f"/{READER_BUCKET}/{READER_PREFIX}a.txt",
                                               host), 403, "AccessDenied")
        self.assertS3Error(harness.raw_request(self.tagd.port, "GET", f"/{self.bucket}", host), 403, "AccessDenied")
        self.assertNothingWritten()

    def test_expired_presigned_urls(self):
        admin = self.tagd.client()
        get_url = admin.generate_presigned_url(
            "get_object", Params={"Bucket": READER_BUCKET, "Key": READER_PREFIX + "a.txt"}, ExpiresIn=1)
        put_url = admin.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": self.key},
                                               ExpiresIn=1)
        fresh_url = admin.generate_presigned_url(
            "get_object", Params={"Bucket": READER_BUCKET, "Key": READER_PREFIX + "a.txt"}, ExpiresIn=600)
        time.sleep(2)
        with urllib.request.urlopen(fresh_url, timeout=30) as r:  # the control: still valid
            self.assertEqual(r.read(), self.public_data)
        for req in (urllib.request.Request(get_url),
                    urllib.request.Request(put_url, data=b"late", method="PUT",
                                           headers={"Content-Type": "application/octet-stream"})):
            with self.assertRaises(urllib.error.HTTPError) as ctx:
                urllib.request.urlopen(req, timeout=30)
            e = ctx.exception
            self.assertEqual(e.code, 403)
            self.assertTrue(e.headers.get("x-amz-request-id"))
            code, message = harness.s3_error(e.read())
            self.assertEqual(code, "AccessDenied")
            self.assertIn("expired", message.lower())
        self.assertNothingWritten()

    def test_clock_skew(self):
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for delta in (datetime.timedelta(minutes=-20), datetime.timedelta(minutes=20)):
            self.assertS3Error(signed_request(self.tagd.port, "PUT", self.path, b"skewed", when=now + delta),
                               403, "RequestTimeTooSkewed")
        self.assertNothingWritten()
        # Within the 15-minute window the same request is fine.
        ok = signed_request(self.tagd.port, "PUT", self.path, b"in time", when=now - datetime.timedelta(minutes=10))
        self.assertEqual(ok[0], 200, ok)
        self.assertUpstreamHas(self.key, b"in time")

    def test_expect_100_continue(self):
        """A refused request is answered before its body is sent; an accepted one gets
        100 Continue first."""
        import socket
        data = os.urandom(100_000)
        host = f"127.0.0.1:{self.tagd.port}"
        for secret, expect_status in (("wrong", b"403"), (ADMIN_KEY[1], b"100")):
            headers = harness.sign_headers("PUT", f"http://{host}{self.path}",
                                           {"Host": host, "Content-Length": str(len(data)), "Expect": "100-continue"},
                                           sha256_hex(data), key=(ADMIN_KEY[0], secret))
            with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=10) as sock:
                head = f"PUT {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                sock.sendall((head + "\r\n").encode())
                first = sock.recv(65536)  # without having sent a byte of the body
                self.assertTrue(first.startswith(b"HTTP/1.1 " + expect_status), first[:200])
                if expect_status == b"403":
                    self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", first + sock.recv(65536))
                    continue
                sock.sendall(data)
                rest = b""
                while b"\r\n\r\n" not in rest:
                    rest += sock.recv(65536)
                self.assertTrue(rest.startswith(b"HTTP/1.1 200"), rest[:200])
        self.assertUpstreamHas(self.key, data)

    def test_head_error_has_no_body(self):
        status, headers, body = harness.raw_request(self.tagd.port, "HEAD", f"/{READER_BUCKET}/private-b.txt",
                                                    {"Host": f"127.0.0.1:{self.tagd.port}"})
        self.assertEqual(status, 403)
        self.assertEqual(body, b"")
        self.assertTrue(headers.get("x-amz-request-id"))

    # ------------------------------------------------------------------ payload digests
    def test_tampered_body_small(self):
        a, b = b"A" * 1000, b"B" * 1000
        self.assertS3Error(signed_request(self.tagd.port, "PUT", self.path, a, send_body=b), 400,
                           "XAmzContentSHA256Mismatch")
        self.assertNothingWritten()

    def test_tampered_body_streamed(self):
        a = os.urandom(STREAMED_SIZE)
        b = a[:-1] + bytes([a[-1] ^ 1])  # same length, last byte differs
        resp = signed_request(self.tagd.port, "PUT", self.path, a, send_body=b)
        self.assertS3Error(resp, 400, "XAmzContentSHA256Mismatch")
        self.assertAbortedMidStream(resp)
        self.assertNothingWritten()

    def test_tampered_body_does_not_replace_existing_object(self):
        original = os.urandom(5000)
        self.tagd.client().put_object(Bucket=self.bucket, Key=self.key, Body=original)
        a = os.urandom(STREAMED_SIZE)
        b = bytes([a[0] ^ 1]) + a[1:]  # first byte differs: detected only at the very end
        self.assertS3Error(signed_request(self.tagd.port, "PUT", self.path, a, send_body=b), 400,
                           "XAmzContentSHA256Mismatch")
        self.assertUpstreamHas(self.key, original)

    def test_wrong_content_md5(self):
        for size in (2000, STREAMED_SIZE):
            with self.subTest(size=size):
                data = os.urandom(size)
                resp = signed_request(self.tagd.port, "PUT", self.path, data,
                                      headers={"Content-MD5": md5_b64(data + b"x")})
                self.assertS3Error(resp, 400, "BadDigest")
                if size == STREAMED_SIZE:
                    self.assertAbortedMidStream(resp)
                self.assertNothingWritten()
        # The right one goes through.
        data = os.urandom(3000)
        resp = signed_request(self.tagd.port, "PUT", self.path, data, headers={"Content-MD5": md5_b64(data)})
        self.assertEqual(resp[0], 200, resp)
        self.assertUpstreamHas(self.key, data)

    def test_wrong_checksum_crc32(self):
        for size in (2000, STREAMED_SIZE):
            with self.subTest(size=size):
                data = os.urandom(size)
                resp = signed_request(self.tagd.port, "PUT", self.path, data,
                                      headers={"x-amz-checksum-crc32": crc32_b64(data[1:])})
                self.assertS3Error(resp, 400, "BadDigest")
                if size == STREAMED_SIZE:
                    self.assertAbortedMidStream(resp)
                self.assertNothingWritten()
        # boto3 with a wrong checksum of its own choosing is refused the same way.
        with self.assertRaises(ClientError) as ctx:
            self.tagd.client().put_object(Bucket=self.bucket, Key=self.key, Body=b"abc",
                                          ChecksumCRC32=crc32_b64(b"abd"))
        self.assertBotoError(ctx, 400, "BadDigest")
        self.assertNothingWritten()

    # ------------------------------------------------------------------ policies
    def test_policy_denied_key(self):
        reader = self.tagd.client(READER_KEY)
        # Allowed: reads and listings under its prefix.
        got = reader.get_object(Bucket=READER_BUCKET, Key=READER_PREFIX + "a.txt")
        self.assertEqual(got["Body"].read(), self.public_data)
        self.assertEqual(reader.head_object(Bucket=READER_BUCKET, Key=READER_PREFIX + "a.txt")["ContentLength"],
                         len(self.public_data))
        listed = reader.list_objects_v2(Bucket=READER_BUCKET, Prefix=READER_PREFIX)
        self.assertEqual([o["Key"] for o in listed["Contents"]], [READER_PREFIX + "a.txt"])

        def denied(fn, **kw):
            with self.assertRaises(ClientError) as ctx:
                fn(**kw)
            self.assertBotoError(ctx, 403, "AccessDenied")

        denied(reader.get_object, Bucket=READER_BUCKET, Key="private-b.txt")
        denied(reader.put_object, Bucket=READER_BUCKET, Key=READER_PREFIX + "new.txt", Body=b"no")
        denied(reader.put_object, Bucket=READER_BUCKET, Key="elsewhere.txt", Body=b"no")
        denied(reader.delete_object, Bucket=READER_BUCKET, Key=READER_PREFIX + "a.txt")
        denied(reader.list_objects_v2, Bucket=READER_BUCKET)
        denied(reader.list_objects_v2, Bucket=READER_BUCKET, Prefix="private")
        denied(reader.get_object, Bucket=self.bucket, Key="anything")
        denied(reader.create_bucket, Bucket=unique("reader-bucket"))
        denied(reader.copy_object, Bucket=READER_BUCKET, Key=READER_PREFIX + "copy.txt",
               CopySource={"Bucket": READER_BUCKET, "Key": READER_PREFIX + "a.txt"})
        keys = self.moto.keys(READER_BUCKET)
        self.assertIn(READER_PREFIX + "a.txt", keys)
        for k in (READER_PREFIX + "new.txt", "elsewhere.txt", READER_PREFIX + "copy.txt"):
            self.assertNotIn(k, keys)

    def test_copy_source_must_be_readable(self):
        writer = self.tagd.client(WRITER_KEY)
        with self.assertRaises(ClientError) as ctx:
            writer.copy_object(Bucket=READER_BUCKET, Key=WRITER_PREFIX + "stolen",
                               CopySource={"Bucket": READER_BUCKET, "Key": "private-b.txt"})
        self.assertBotoError(ctx, 403, "AccessDenied")
        self.assertNotIn(WRITER_PREFIX + "stolen", self.moto.keys(READER_BUCKET))
        writer.copy_object(Bucket=READER_BUCKET, Key=WRITER_PREFIX + "copy-ok",
                           CopySource={"Bucket": READER_BUCKET, "Key": WRITER_PREFIX + "1"})
        self.assertEqual(self.moto.object_bytes(READER_BUCKET, WRITER_PREFIX + "copy-ok"), b"scratch one")

    def test_delete_objects_outside_policy(self):
        writer = self.tagd.client(WRITER_KEY)
        victim = WRITER_PREFIX + unique("victim")
        writer.put_object(Bucket=READER_BUCKET, Key=victim, Body=b"v")
        with self.assertRaises(ClientError) as ctx:
            writer.delete_objects(Bucket=READER_BUCKET,
                                  Delete={"Objects": [{"Key": victim}, {"Key": "private-b.txt"}]})
        self.assertBotoError(ctx, 403, "AccessDenied")
        keys = self.moto.keys(READER_BUCKET)
        self.assertIn(victim, keys)  # nothing deleted, not even the allowed key
        self.assertIn("private-b.txt", keys)
        # A key with no delete right at all is refused before its body is read.
        with self.assertRaises(ClientError) as ctx:
            self.tagd.client(READER_KEY).delete_objects(
                Bucket=READER_BUCKET, Delete={"Objects": [{"Key": READER_PREFIX + "a.txt"}]})
        self.assertBotoError(ctx, 403, "AccessDenied")
        self.assertIn(READER_PREFIX + "a.txt", self.moto.keys(READER_BUCKET))
        # Within the policy it works.
        r = writer.delete_objects(Bucket=READER_BUCKET, Delete={"Objects": [{"Key": victim}]})
        self.assertEqual([d["Key"] for d in r["Deleted"]], [victim])
        self.assertNotIn(victim, self.moto.keys(READER_BUCKET))

    def check_delete_objects_smuggling(self, variants):
        """Each body names one key outside the writer's policy in a form a naive <Key>
        scan may miss; the key must survive and the request must be refused."""
        admin = self.tagd.client()
        for template in variants:
            victim = unique("private")
            admin.put_object(Bucket=READER_BUCKET, Key=victim, Body=b"keep me")
            data = template.format(key=victim, tail=victim[len("private-"):]).encode()
            with self.subTest(body=data):
                resp = signed_request(self.tagd.port, "POST", f"/{READER_BUCKET}?delete=", data, key=WRITER_KEY,
                                      headers={"Content-MD5": md5_b64(data), "Content-Type": "application/xml"})
                self.assertIn(victim, self.moto.keys(READER_BUCKET),
                              f"a DeleteObjects body removed a key outside the policy (tagd answered {resp[0]})")
                self.assertIn(resp[0], (400, 403), resp)

    def test_delete_objects_key_smuggling_cdata_and_entities(self):
        self.check_delete_objects_smuggling([
            '<Delete><Object><Key><![CDATA[{key}]]></Key></Object></Delete>',
            '<Delete><Object><Key>private&#45;{tail}</Key></Object></Delete>',
            '<Delete><Object><Key>private&#x2D;{tail}</Key></Object></Delete>',
        ])

    def test_delete_objects_key_smuggling_tag_forms(self):
        self.check_delete_objects_smuggling([
            '<Delete><Object><Key >{key}</Key ></Object></Delete>',
            '<Delete><Object><Key\n>{key}</Key></Object></Delete>',
            '<Delete><Object><Key>scratch-1</Key></Object><Object><Key\t>{key}</Key></Object></Delete>',
            '<Delete><Object><Key xml:space="preserve">{key}</Key></Object></Delete>',
        ])

    # ------------------------------------------------------------------ aws-chunked
    def test_aws_chunked_signed_good(self):
        data = os.urandom(300 * 1024 + 7)
        status, headers, body = streaming_put(self.tagd.port, self.path, data, mode=STREAMING_SIGNED,
                                              chunk_size=100_000)
        self.assertEqual(status, 200, body[:500])
        self.assertUpstreamHas(self.key, data)

    def test_aws_chunked_unsigned_trailer_good(self):
        data = os.urandom(300 * 1024 + 7)
        status, headers, body = streaming_put(self.tagd.port, self.path, data, mode=STREAMING_UNSIGNED_TRAILER)
        self.assertEqual(status, 200, body[:500])
        self.assertUpstreamHas(self.key, data)

    def test_aws_chunked_trailer_algorithms(self):
        for algorithm in ("crc32c", "sha1", "sha256"):
            with self.subTest(algorithm=algorithm):
                data = os.urandom(150_000 if algorithm == "crc32c" else 300_000)
                key = unique("trailer-" + algorithm)
                path = f"/{self.bucket}/{key}"
                ok = streaming_put(self.tagd.port, path, data, mode=STREAMING_UNSIGNED_TRAILER,
                                   trailer_algorithm=algorithm)
                self.assertEqual(ok[0], 200, ok[2][:300])
                self.assertUpstreamHas(key, data)
                bad = streaming_put(self.tagd.port, path + "-bad", data, mode=STREAMING_UNSIGNED_TRAILER,
                                    trailer_algorithm=algorithm,
                                    trailer_value=harness.checksum_b64(algorithm, data[:-1]))
                self.assertS3Error(bad, 400, "BadDigest")
                self.assertNothingWritten(key + "-bad")

    def test_aws_chunked_tampered_chunk(self):
        data = os.urandom(STREAMED_SIZE)
        # 64 KiB chunks: chunk 12 of 17 is altered after signing.
        resp = streaming_put(self.tagd.port, self.path, data, mode=STREAMING_SIGNED, tamper_chunk=12, pace=0.002)
        self.assertS3Error(resp, 403, "SignatureDoesNotMatch")
        self.assertAbortedMidStream(resp)
        self.assertNothingWritten()

    def test_aws_chunked_bad_trailer_checksum(self):
        data = os.urandom(STREAMED_SIZE)
        resp = streaming_put(self.tagd.port, self.path, data, mode=STREAMING_UNSIGNED_TRAILER,
                             trailer_value=crc32_b64(data + b"!"), pace=0.002)
        self.assertS3Error(resp, 400, "BadDigest")
        self.assertAbortedMidStream(resp)
        self.assertNothingWritten()

    def test_aws_chunked_signature_chain_from_wrong_seed(self):
        # Chunks signed correctly but chained off a different seed signature.
        data = os.urandom(200 * 1024)
        host = f"127.0.0.1:{self.tagd.port}"
        dummy = harness.encode_signed_chunks(data, 64 * 1024, "0" * 64, "20000101T000000Z", ADMIN_KEY[1])
        headers = {"Host": host, "Content-Encoding": "aws-chunked", "Content-Length": str(len(dummy)),
                   "x-amz-decoded-content-length": str(len(data))}
        signed = harness.sign_headers("PUT", f"http://{host}{self.path}", headers, STREAMING_SIGNED)
        body = harness.encode_signed_chunks(data, 64 * 1024, "f" * 64, signed["X-Amz-Date"], ADMIN_KEY[1])
        self.assertS3Error(harness.raw_request(self.tagd.port, "PUT", self.path, signed, body), 403,
                           "SignatureDoesNotMatch")
        self.assertNothingWritten()

    def test_boto3_default_upload_is_accepted(self):
        # Whatever boto3 1.43 sends by default (100-continue, checksums) must pass.
        data = os.urandom(200_000)
        self.tagd.client().put_object(Bucket=self.bucket, Key=self.key, Body=data)
        self.assertUpstreamHas(self.key, data)


if __name__ == "__main__":
    unittest.main()
