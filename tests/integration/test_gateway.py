"""Real S3 clients (boto3, the aws CLI, urllib, raw SigV4) through tagd to a moto upstream
that checks tagd's re-signed requests. Every result is checked on both sides: what the
client got from tagd and what moto holds."""
import hashlib
import os
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

import harness
from harness import MiB, TagdTestCase, file_sha256, sha256_hex, signed_request, unique, write_random_file


class GatewayTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("gw")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def setUp(self):
        self.s3 = self.tagd.client()

    # ------------------------------------------------------------------ buckets
    def test_create_and_delete_bucket(self):
        name = unique("newbucket")
        self.s3.create_bucket(Bucket=name)
        self.assertIn(name, [b["Name"] for b in self.moto.client().list_buckets()["Buckets"]])
        self.assertIn(name, [b["Name"] for b in self.s3.list_buckets()["Buckets"]])
        self.s3.head_bucket(Bucket=name)
        self.s3.delete_bucket(Bucket=name)
        self.assertNotIn(name, [b["Name"] for b in self.moto.client().list_buckets()["Buckets"]])
        with self.assertRaises(ClientError) as ctx:
            self.s3.head_bucket(Bucket=name)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    # ------------------------------------------------------------------ objects
    def test_put_get_head_list_delete(self):
        data = os.urandom(100_000)
        key = "dir/obj-" + unique("k")
        put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/x-test",
                                 Metadata={"color": "blue", "owner": "tests"})
        self.assertEqual(put["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.moto.object_bytes(self.bucket, key), data)

        got = self.s3.get_object(Bucket=self.bucket, Key=key)
        self.assertEqual(got["Body"].read(), data)
        self.assertEqual(got["ContentLength"], len(data))
        self.assertEqual(got["ContentType"], "application/x-test")
        self.assertEqual(got["ETag"].strip('"'), hashlib.md5(data).hexdigest())
        self.assertTrue(got["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id"))

        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(head["ContentLength"], len(data))
        self.assertEqual(head["Metadata"], {"color": "blue", "owner": "tests"})

        # (No '/' in query values here: moto's own signature check mis-decodes it; see
        # AwkwardNamesTest for those.)
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="dir")
        sizes = {o["Key"]: o["Size"] for o in listed["Contents"]}
        self.assertEqual(sizes[key], len(data))
        v1 = self.s3.list_objects(Bucket=self.bucket, Prefix="dir", MaxKeys=1000)
        self.assertIn(key, [o["Key"] for o in v1["Contents"]])

        self.s3.delete_object(Bucket=self.bucket, Key=key)
        self.assertNotIn(key, self.moto.keys(self.bucket))
        with self.assertRaises(ClientError) as ctx:
            self.s3.get_object(Bucket=self.bucket, Key=key)
        self.assertBotoError(ctx, 404, "NoSuchKey")
        with self.assertRaises(ClientError) as ctx:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_empty_object(self):
        key = unique("empty")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"")
        self.assertIn(key, self.moto.keys(self.bucket))
        got = self.s3.get_object(Bucket=self.bucket, Key=key)
        self.assertEqual(got["Body"].read(), b"")
        self.assertEqual(got["ContentLength"], 0)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"second")
        self.assertEqual(self.moto.object_bytes(self.bucket, key), b"second")

    def test_user_metadata_round_trip(self):
        key = unique("meta")
        meta = {"alpha": "one", "mixed-case-name": "Two Words", "empty-ish": "-"}
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"m", Metadata=meta, CacheControl="max-age=60",
                           ContentDisposition='attachment; filename="x.bin"')
        expected = {k.lower(): v for k, v in meta.items()}
        self.assertEqual(self.moto.client().head_object(Bucket=self.bucket, Key=key)["Metadata"], expected)
        got = self.s3.get_object(Bucket=self.bucket, Key=key)
        self.assertEqual(got["Metadata"], expected)
        self.assertEqual(got["CacheControl"], "max-age=60")
        self.assertEqual(got["ContentDisposition"], 'attachment; filename="x.bin"')

    def test_range_get(self):
        data = os.urandom(300_000)
        key = unique("range")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        r = self.s3.get_object(Bucket=self.bucket, Key=key, Range="bytes=1000-1999")
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 206)
        self.assertEqual(r["Body"].read(), data[1000:2000])
        self.assertEqual(r["ContentRange"], f"bytes 1000-1999/{len(data)}")
        tail = self.s3.get_object(Bucket=self.bucket, Key=key, Range="bytes=-4096")
        self.assertEqual(tail["Body"].read(), data[-4096:])
        across = self.s3.get_object(Bucket=self.bucket, Key=key, Range="bytes=65000-200000")
        self.assertEqual(across["Body"].read(), data[65000:200001])

    def test_multipart_upload_50mib(self):
        size = 50 * MiB
        key = unique("multipart")
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src.bin")
            digest = write_random_file(src, size)
            cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4)
            self.s3.upload_file(src, self.bucket, key, Config=cfg)
            head = self.moto.client().head_object(Bucket=self.bucket, Key=key)
            self.assertEqual(head["ContentLength"], size)
            # 50 MiB in 8 MiB parts: 7 parts, and the ETag says so.
            self.assertTrue(head["ETag"].strip('"').endswith("-7"), head["ETag"])
            dst = os.path.join(d, "dst.bin")
            self.s3.download_file(self.bucket, key, dst, Config=cfg)
            self.assertEqual(file_sha256(dst), digest)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []), [])

    def test_multipart_low_level_and_abort(self):
        key = unique("mpu")
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)
        part1, part2 = os.urandom(5 * MiB), os.urandom(1234)
        e1 = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=part1)
        e2 = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up["UploadId"], PartNumber=2, Body=part2)
        parts = self.s3.list_parts(Bucket=self.bucket, Key=key, UploadId=up["UploadId"])["Parts"]
        self.assertEqual([p["PartNumber"] for p in parts], [1, 2])
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]}, {"PartNumber": 2, "ETag": e2["ETag"]}]})
        self.assertEqual(self.moto.object_bytes(self.bucket, key), part1 + part2)

        aborted = unique("aborted")
        up2 = self.s3.create_multipart_upload(Bucket=self.bucket, Key=aborted)
        self.s3.upload_part(Bucket=self.bucket, Key=aborted, UploadId=up2["UploadId"], PartNumber=1, Body=b"x" * 100)
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key=aborted, UploadId=up2["UploadId"])
        self.assertNotIn(aborted, self.moto.keys(self.bucket))
        uploads = self.moto.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        self.assertNotIn(up2["UploadId"], [u["UploadId"] for u in uploads])

    def test_copy_object(self):
        data = os.urandom(70_000)
        src, dst = unique("copy-src"), unique("copy-dst")
        self.s3.put_object(Bucket=self.bucket, Key=src, Body=data, Metadata={"from": "source"})
        r = self.s3.copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src})
        self.assertEqual(r["CopyObjectResult"]["ETag"].strip('"'), hashlib.md5(data).hexdigest())
        self.assertEqual(self.moto.object_bytes(self.bucket, dst), data)
        self.assertEqual(self.s3.get_object(Bucket=self.bucket, Key=dst)["Body"].read(), data)
        self.assertEqual(self.s3.head_object(Bucket=self.bucket, Key=dst)["Metadata"], {"from": "source"})
        # Across buckets, with replaced metadata.
        other = unique("copy-target")
        self.s3.create_bucket(Bucket=other)
        self.s3.copy_object(Bucket=other, Key="k", CopySource=f"{self.bucket}/{src}", MetadataDirective="REPLACE",
                            Metadata={"new": "meta"})
        self.assertEqual(self.moto.object_bytes(other, "k"), data)
        self.assertEqual(self.moto.client().head_object(Bucket=other, Key="k")["Metadata"], {"new": "meta"})

    def test_object_tagging(self):
        key = unique("tagged")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"t", Tagging="initial=yes")
        self.assertEqual(self.s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"],
                         [{"Key": "initial", "Value": "yes"}])
        tags = [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "storage"}]
        self.s3.put_object_tagging(Bucket=self.bucket, Key=key, Tagging={"TagSet": tags})
        got = self.s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
        self.assertEqual(sorted(got, key=lambda t: t["Key"]), tags)
        direct = self.moto.client().get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]
        self.assertEqual(sorted(direct, key=lambda t: t["Key"]), tags)
        self.s3.delete_object_tagging(Bucket=self.bucket, Key=key)
        self.assertEqual(self.moto.client().get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"], [])

    def test_delete_objects(self):
        prefix = unique("bulk") + "/"
        keys = [f"{prefix}{i}" for i in range(5)]
        for k in keys:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=k.encode())
        r = self.s3.delete_objects(Bucket=self.bucket,
                                   Delete={"Objects": [{"Key": k} for k in keys[:3]], "Quiet": False})
        self.assertEqual(sorted(d["Key"] for d in r["Deleted"]), keys[:3])
        self.assertEqual(r.get("Errors", []), [])
        self.assertEqual(sorted(self.moto.keys(self.bucket, prefix)), keys[3:])

    def test_presigned_get(self):
        data = os.urandom(5000)
        key = unique("presigned") + "/a b.bin"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        url = self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                             ExpiresIn=300)
        self.assertIn("X-Amz-Signature=", url)
        with urllib.request.urlopen(url, timeout=30) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.read(), data)
        # The same URL with one signature digit changed is refused.
        i = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        bad = url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1:]
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(bad, timeout=30)
        self.assertEqual(ctx.exception.code, 403)
        self.assertEqual(harness.s3_error(ctx.exception.read())[0], "SignatureDoesNotMatch")

    def test_presigned_put(self):
        data = os.urandom(3000)
        key = unique("presigned-put")
        url = self.s3.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=300)
        # (An explicit type: urllib's default form type makes moto parse the body as a form.)
        req = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)
        self.assertEqual(self.moto.object_bytes(self.bucket, key), data)

    def test_virtual_hosted_style(self):
        data = os.urandom(2048)
        key = unique("vhost") + "/file.txt"
        host = f"{self.bucket}.localhost:{self.tagd.port}"
        put = signed_request(self.tagd.port, "PUT", f"/{key}", data, host=host)
        self.assertEqual(put[0], 200, put)
        self.assertEqual(self.moto.object_bytes(self.bucket, key), data)
        status, headers, body = signed_request(self.tagd.port, "GET", f"/{key}", host=host)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(body, data)
        self.assertTrue(headers.get("x-amz-request-id"))
        # Bucket-level request through the virtual host: a listing.
        status, _, body = signed_request(self.tagd.port, "GET", "/?list-type=2&prefix=" + key.split("/")[0],
                                         host=host)
        self.assertEqual(status, 200, body[:300])
        self.assertIn(f"<Key>{key}</Key>".encode(), body)

    def test_chunked_transfer_encoding_upload(self):
        # HTTP/1.1 chunked request body (no Content-Length), larger than one transfer piece.
        data = os.urandom(300_000)
        key = unique("te-chunked")
        host = f"127.0.0.1:{self.tagd.port}"
        headers = harness.sign_headers("PUT", f"http://{host}/{self.bucket}/{key}",
                                       {"Host": host, "Transfer-Encoding": "chunked"}, sha256_hex(data))

        def chunks():
            for i in range(0, len(data), 50_000):
                piece = data[i:i + 50_000]
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            yield b"0\r\n\r\n"
        status, _, body = harness.raw_request(self.tagd.port, "PUT", f"/{self.bucket}/{key}", headers, chunks())
        self.assertEqual(status, 200, body[:500])
        self.assertEqual(self.moto.object_bytes(self.bucket, key), data)

    def test_keep_alive_many_requests_one_connection(self):
        key = unique("ka")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"keepalive")
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.tagd.port, timeout=10)
        try:
            for _ in range(5):
                path = f"/{self.bucket}/{key}"
                h = harness.sign_headers("GET", f"http://127.0.0.1:{self.tagd.port}{path}",
                                         {"Host": f"127.0.0.1:{self.tagd.port}"}, harness.EMPTY_SHA256)
                conn.request("GET", path, headers=h)
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.read(), b"keepalive")
                self.assertFalse(r.will_close, "tagd closed a keep-alive connection")
        finally:
            conn.close()

    def test_boto3_upload_flavours(self):
        """The bodies boto3 sends by configuration: checksum algorithms, unsigned
        payloads, and non-seekable streams."""
        import io
        data = os.urandom(3 * MiB + 5)
        for alg in ("CRC32", "SHA1", "SHA256"):
            with self.subTest(checksum=alg):
                key = unique("alg-" + alg)
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm=alg)
                self.assertEqual(self.moto.object_bytes(self.bucket, key), data)
        with self.subTest("UNSIGNED-PAYLOAD"):
            key = unique("unsigned")
            c = harness.s3_client(self.tagd.endpoint, harness.ADMIN_KEY,
                                  s3={"addressing_style": "path", "payload_signing_enabled": False})
            c.put_object(Bucket=self.bucket, Key=key, Body=data)
            self.assertEqual(self.moto.object_bytes(self.bucket, key), data)
        with self.subTest("no checksum"):
            key = unique("nochecksum")
            self.tagd.client(request_checksum_calculation="when_required").put_object(
                Bucket=self.bucket, Key=key, Body=data)
            self.assertEqual(self.moto.object_bytes(self.bucket, key), data)
        with self.subTest("non-seekable stream"):
            class NonSeekable(io.RawIOBase):
                def __init__(self, payload):
                    self.inner = io.BytesIO(payload)

                def readable(self):
                    return True

                def seekable(self):
                    return False

                def readinto(self, buf):
                    chunk = self.inner.read(len(buf))
                    buf[:len(chunk)] = chunk
                    return len(chunk)
            key = unique("nonseekable")
            self.s3.upload_fileobj(NonSeekable(data), self.bucket, key)
            self.assertEqual(self.moto.object_bytes(self.bucket, key), data)

    def test_upstream_errors_pass_through(self):
        missing = unique("no-such-bucket")
        with self.assertRaises(ClientError) as ctx:
            self.s3.put_object(Bucket=missing, Key="k", Body=os.urandom(200_000))
        self.assertBotoError(ctx, 404, "NoSuchBucket")
        with self.assertRaises(ClientError) as ctx:
            self.s3.list_objects_v2(Bucket=missing)
        self.assertBotoError(ctx, 404, "NoSuchBucket")
        # tagd stays usable on the same client afterwards.
        self.s3.put_object(Bucket=self.bucket, Key="after-error", Body=b"fine")
        self.assertEqual(self.moto.object_bytes(self.bucket, "after-error"), b"fine")

    def test_access_log_line(self):
        key = unique("logged")
        data = os.urandom(12345)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        # (moto's x-amz-request-id reaches the client, tagd logs its own: match by key.)
        line = self.tagd.wait_for_log(rf"\[access\] PUT bucket={self.bucket} key={key} status=200 in=12345 ")
        self.assertRegex(line, r" ms=\d+\.\d+")
        self.assertIn(f"akid={harness.ADMIN_KEY[0]}", line)
        self.assertIn("op=PutObject", line)
        get = self.tagd.wait_for_log(rf"\[access\] GET bucket={self.bucket} key={key} status=200 in=0 out=12345 ")
        self.assertIn("op=GetObject", get)

    # ------------------------------------------------------------------ aws CLI
    def aws(self, *args, check=True):
        env = dict(os.environ)
        env.update({"AWS_ACCESS_KEY_ID": harness.ADMIN_KEY[0], "AWS_SECRET_ACCESS_KEY": harness.ADMIN_KEY[1],
                    "AWS_DEFAULT_REGION": harness.REGION, "AWS_CONFIG_FILE": self.aws_config,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": ""})
        env.pop("AWS_SESSION_TOKEN", None)
        if args[0] == "s3" and args[1] in ("cp", "mv", "rm", "sync"):
            args = (*args, "--only-show-errors")
        p = subprocess.run(["aws", "--endpoint-url", self.tagd.endpoint, *args],
                           capture_output=True, env=env, timeout=120)
        if check:
            self.assertEqual(p.returncode, 0, f"aws {' '.join(args)} failed: {p.stderr.decode()}")
        return p

    def test_aws_cli(self):
        with tempfile.TemporaryDirectory() as d:
            self.aws_config = os.path.join(d, "config")
            with open(self.aws_config, "w") as f:
                f.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
            bucket = unique("cli")
            self.aws("s3", "mb", f"s3://{bucket}")
            self.assertIn(bucket, [b["Name"] for b in self.moto.client().list_buckets()["Buckets"]])
            small = os.path.join(d, "small.txt")
            with open(small, "wb") as f:
                f.write(b"hello from the aws cli\n")
            big = os.path.join(d, "big.bin")
            big_digest = write_random_file(big, 12 * MiB)  # above the CLI's 8 MiB multipart threshold
            self.aws("s3", "cp", small, f"s3://{bucket}/docs/small.txt")
            self.aws("s3", "cp", big, f"s3://{bucket}/data/big.bin")
            self.assertEqual(self.moto.object_bytes(bucket, "docs/small.txt"), b"hello from the aws cli\n")
            self.assertEqual(sha256_hex(self.moto.object_bytes(bucket, "data/big.bin")), big_digest)

            ls = self.aws("s3", "ls", f"s3://{bucket}/", "--recursive").stdout.decode()
            self.assertIn("docs/small.txt", ls)
            self.assertIn("data/big.bin", ls)
            self.assertIn(str(12 * MiB), ls)

            out = os.path.join(d, "back.bin")
            self.aws("s3", "cp", f"s3://{bucket}/data/big.bin", out)
            self.assertEqual(file_sha256(out), big_digest)

            head = self.aws("s3api", "head-object", "--bucket", bucket, "--key", "docs/small.txt").stdout.decode()
            self.assertIn('"ContentLength": 23', head)

            self.aws("s3", "rm", f"s3://{bucket}/docs/small.txt")
            self.assertEqual(self.moto.keys(bucket), ["data/big.bin"])
            self.aws("s3", "rb", f"s3://{bucket}", "--force")
            self.assertNotIn(bucket, [b["Name"] for b in self.moto.client().list_buckets()["Buckets"]])
            missing = self.aws("s3", "cp", f"s3://{bucket}/nope", out, check=False)
            self.assertNotEqual(missing.returncode, 0)


class AwkwardNamesTest(TagdTestCase):
    """Keys and query values that need percent-encoding. moto's signature check rebuilds
    the URL from werkzeug's decoded form ('+', '/', '=', non-ASCII in query values come
    back unescaped), so it refuses correctly signed requests for these names whoever
    sends them; this class runs moto without signature checks to test tagd's own
    canonicalization (client side) and re-encoding (upstream side) of such names."""

    moto_auth = False

    def test_awkward_keys_round_trip(self):
        s3 = self.tagd.client()
        bucket = unique("awkward")
        s3.create_bucket(Bucket=bucket)
        keys = ["spaces and+plus/ünïcödé=%20~!(x).txt", "a'b,c;d:e@f$g&h", "tilde~/star*/dots..", "q?uery#hash"]
        for i, key in enumerate(keys):
            s3.put_object(Bucket=bucket, Key=key, Body=f"body {i}".encode())
        self.assertEqual(sorted(self.moto.keys(bucket)), sorted(keys))
        for i, key in enumerate(keys):
            self.assertEqual(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), f"body {i}".encode())
        # Listing with '/' in query values, as every S3 browser does.
        v1 = s3.list_objects(Bucket=bucket, Prefix="spaces and+plus/", Delimiter="/")
        self.assertEqual([o["Key"] for o in v1["Contents"]], [keys[0]])
        v2 = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
        self.assertEqual(sorted(p["Prefix"] for p in v2["CommonPrefixes"]),
                         ["spaces and+plus/", "tilde~/"])
        self.assertEqual(sorted(o["Key"] for o in v2["Contents"]), sorted([keys[1], keys[3]]))
        copy = s3.copy_object(Bucket=bucket, Key="copied+ü", CopySource={"Bucket": bucket, "Key": keys[0]})
        self.assertEqual(copy["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(self.moto.object_bytes(bucket, "copied+ü"), b"body 0")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": keys[1]}, ExpiresIn=60)
        with urllib.request.urlopen(url, timeout=30) as r:
            self.assertEqual(r.read(), b"body 1")


if __name__ == "__main__":
    unittest.main()
