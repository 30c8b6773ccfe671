"""Issue 7, classes 1, 3 and 5 (log): tagd authorizes exactly what it forwards, every
request gets exactly one response, and request text cannot forge log lines.

Each test here failed on the code before the fix (see the class docstrings)."""
import socket
import unittest

import botocore.auth
import botocore.awsrequest
import botocore.credentials

from harness import (ADMIN_KEY, EMPTY_SHA256, REGION, STREAMING_UNSIGNED_TRAILER, TagdTestCase, credentials_doc,
                     encode_unsigned_trailer_chunks, checksum_b64, raw_request, sha256_hex, sign_headers,
                     signed_request, unique)

PREFIX_KEY = ("AKIDTAGDPREFIX000001", "prefix-secret-0123456789abcdefghijklmno")
WRITER_KEY = ("AKIDTAGDWRITER000001", "writer-secret-0123456789abcdefghijklmno")
NODELETE_KEY = ("AKIDTAGDNODELETE0001", "nodelete-secret-0123456789abcdefghijklm")


def read_all(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes (or stays silent for `timeout`)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            out += piece
    except socket.timeout:
        pass
    return out


def s3_signed_request(port: int, method: str, path: str, key: tuple[str, str], body: bytes = b""):
    """Like harness.signed_request, but signed as S3 signs: the path exactly as sent (no
    dot-segment or '//' normalization, which the generic SigV4 signer applies)."""
    host = f"127.0.0.1:{port}"
    request = botocore.awsrequest.AWSRequest(method=method, url=f"http://{host}{path}",
                                             headers={"Host": host, "Content-Length": str(len(body))})
    request.headers["X-Amz-Content-SHA256"] = sha256_hex(body)
    botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(*key), "s3", REGION).add_auth(request)
    return raw_request(port, method, path, dict(request.headers.items()), body)


class PolicyTest(TagdTestCase):
    """Class 1. Before: a repeated `prefix` listed the whole bucket for a prefix-limited
    key; `?policy&prefix=` was a listing; PUT / was ListBuckets; a plain `write` grant set
    ACLs; dot segments and X-Tigris-Rename were not authorized as what they are."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("trust-policy")
        extra = [
            {"access_key_id": PREFIX_KEY[0], "secret_access_key": PREFIX_KEY[1],
             "grants": [{"bucket": cls.bucket, "prefix": "pub/", "actions": ["read", "list", "write", "delete"]}]},
            {"access_key_id": WRITER_KEY[0], "secret_access_key": WRITER_KEY[1],
             "grants": [{"bucket": cls.bucket, "actions": ["read", "list", "write", "delete"]}]},
            {"access_key_id": NODELETE_KEY[0], "secret_access_key": NODELETE_KEY[1],
             "grants": [{"bucket": cls.bucket, "actions": ["read", "list", "write"]}]},
        ]
        cls.gw = cls.start_tagd(credentials=credentials_doc(extra), name="policy")
        admin = cls.gw.client()
        admin.create_bucket(Bucket=cls.bucket)
        admin.put_object(Bucket=cls.bucket, Key="pub/a", Body=b"public")
        admin.put_object(Bucket=cls.bucket, Key="secret/b", Body=b"secret")

    def req(self, method, path, key=ADMIN_KEY, **kw):
        return signed_request(self.gw.port, method, path, key=key, **kw)

    def test_trust1_repeated_prefix_is_refused(self):
        r = self.req("GET", f"/{self.bucket}?list-type=2&prefix=pub%2F&prefix=", key=PREFIX_KEY)
        self.assertS3Error(r, 400, "InvalidArgument", "repeated")
        self.assertNotIn(b"secret/b", r[2])
        r = self.req("GET", f"/{self.bucket}/pub/a?versionId=1&versionId=2", key=PREFIX_KEY)
        self.assertS3Error(r, 400, "InvalidArgument")

    def test_trust1_subresource_is_never_a_listing(self):
        r = self.req("GET", f"/{self.bucket}?policy&prefix=pub%2F", key=PREFIX_KEY)
        self.assertS3Error(r, 400, "InvalidArgument")
        for sub in ("acl", "policy", "versioning"):
            with self.subTest(sub=sub):
                self.assertS3Error(self.req("GET", f"/{self.bucket}?{sub}", key=PREFIX_KEY), 403, "AccessDenied")
        # The whole-bucket key reads the ACL (it is a listing of the bucket's grants).
        st, _, body = self.req("GET", f"/{self.bucket}?acl", key=WRITER_KEY)
        self.assertEqual(st, 200, body)

    def test_trust1_unknown_operations_are_refused(self):
        for method in ("PUT", "POST", "DELETE"):
            with self.subTest(method=method):
                self.assertS3Error(self.req(method, "/"), 405, "MethodNotAllowed")
        self.assertS3Error(self.req("GET", f"/{self.bucket}/pub/a?frobnicate=1"), 400, "InvalidArgument")
        self.assertS3Error(self.req("POST", f"/{self.bucket}/pub/a"), 501, "NotImplemented")

    def test_trust1_access_control_needs_admin(self):
        key = unique("w/acl")
        r = self.req("PUT", f"/{self.bucket}/{key}", key=WRITER_KEY, body=b"x",
                     headers={"x-amz-acl": "public-read"})
        self.assertS3Error(r, 403, "AccessDenied")
        self.assertNotIn(key, self.moto.keys(self.bucket, "w/"))
        acl = (b'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>x</ID></Owner>'
               b'<AccessControlList/></AccessControlPolicy>')
        self.assertS3Error(self.req("PUT", f"/{self.bucket}/pub/a?acl", key=WRITER_KEY, body=acl), 403,
                           "AccessDenied")
        self.assertS3Error(self.req("PUT", f"/{self.bucket}?policy", key=WRITER_KEY, body=b"{}"), 403,
                           "AccessDenied")
        # The same write without the ACL header is fine, and admin may set the ACL.
        st, _, body = self.req("PUT", f"/{self.bucket}/{key}", key=WRITER_KEY, body=b"x")
        self.assertEqual(st, 200, body)
        st, _, body = self.req("PUT", f"/{self.bucket}/{key}", body=b"x", headers={"x-amz-acl": "public-read"})
        self.assertEqual(st, 200, body)

    def test_trust1_dot_segments_stay_inside_the_prefix(self):
        # Dot segments are refused for every key (a normalizing upstream would leave the
        # bucket with them); an empty segment only for prefix-limited keys.
        for path, key, status, code in (("pub/../secret/b", PREFIX_KEY, 400, "InvalidArgument"),
                                        ("pub/./x", PREFIX_KEY, 400, "InvalidArgument"),
                                        ("x/../../other/secret", WRITER_KEY, 400, "InvalidArgument"),
                                        ("pub//x", PREFIX_KEY, 403, "AccessDenied")):
            with self.subTest(path=path):
                r = s3_signed_request(self.gw.port, "GET", f"/{self.bucket}/{path}", key)
                self.assertS3Error(r, status, code)
                r = s3_signed_request(self.gw.port, "PUT", f"/{self.bucket}/{path}", key, b"evil")
                self.assertS3Error(r, status, code)
        st, _, body = self.req("GET", f"/{self.bucket}/pub/a", key=PREFIX_KEY)
        self.assertEqual((st, body), (200, b"public"))

    def test_trust1_virtual_hosted_bucket_cannot_carry_a_path(self):
        # A '/' in the Host's bucket label went upstream as "%2F" and was split there:
        # a listing the policy allowed became a GetObject of another prefix.
        star = ("AKIDTAGDSTAR00000001", "star-secret-0123456789abcdefghijklmnopq")
        gw = self.start_test_tagd(args=["--virtual-host-domain", "s3.local"], credentials=credentials_doc(
            [{"access_key_id": star[0], "secret_access_key": star[1],
              "grants": [{"bucket": "*", "prefix": "pub/", "actions": ["read", "list", "write"]}]}]))
        for host in (f"{self.bucket}/secret.s3.local", f"{self.bucket}%2Fsecret.s3.local", "..s3.local"):
            with self.subTest(host=host):
                r = signed_request(gw.port, "GET", "/?prefix=pub/", key=star, host=host)
                self.assertS3Error(r, 400, "InvalidBucketName")
                self.assertNotIn(b"secret", r[2].split(b"<Resource>")[0])

    def test_trust1_tigris_rename_is_a_move(self):
        src, dst = unique("mv/src"), unique("mv/dst")
        self.assertEqual(self.req("PUT", f"/{self.bucket}/{src}", body=b"move me")[0], 200)
        headers = {"x-amz-copy-source": f"/{self.bucket}/{src}", "X-Tigris-Rename": "true"}
        r = self.req("PUT", f"/{self.bucket}/{dst}", key=NODELETE_KEY, headers=headers)
        self.assertS3Error(r, 403, "AccessDenied")
        # A plain copy is within the same key's rights.
        st, _, body = self.req("PUT", f"/{self.bucket}/{dst}", key=NODELETE_KEY,
                               headers={"x-amz-copy-source": f"/{self.bucket}/{src}"})
        self.assertEqual(st, 200, body)
        # A move invalidates its source: warm it, move it, and the next read is not a hit.
        self.assertEqual(self.req("GET", f"/{self.bucket}/{src}")[1].get("x-cache"), "MISS")
        self.assertEqual(self.req("GET", f"/{self.bucket}/{src}")[1].get("x-cache"), "HIT")
        st, _, body = self.req("PUT", f"/{self.bucket}/{dst}", key=WRITER_KEY, headers=headers)
        self.assertEqual(st, 200, body)  # moto copies (it does not know the header)
        self.assertNotEqual(self.req("GET", f"/{self.bucket}/{src}")[1].get("x-cache"), "HIT")
        # AWS RenameObject needs delete on its source too.
        r = self.req("PUT", f"/{self.bucket}/{dst}?renameObject", key=NODELETE_KEY,
                     headers={"x-amz-rename-source": f"/{self.bucket}/{src}"})
        self.assertS3Error(r, 403, "AccessDenied")


class OneResponseTest(TagdTestCase):
    """Class 3. Before: a GET answered from the cache left its body unread, and that body
    ran as a second request; `Transfer-Encoding: xchunked` was "no body" (a 0-byte object,
    then the body ran as the next request); an aws-chunked PUT without its body stored a
    0-byte object."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("trust-one")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def test_trust3_unread_body_never_becomes_a_request(self):
        key = unique("obj")
        client = self.tagd.client()
        client.put_object(Bucket=self.bucket, Key=key, Body=b"keep me")
        client.get_object(Bucket=self.bucket, Key=key)["Body"].read()  # now cached
        host = f"127.0.0.1:{self.tagd.port}"
        smuggled_headers = sign_headers("DELETE", f"http://{host}/{self.bucket}/{key}", {"Host": host}, EMPTY_SHA256)
        smuggled = (f"DELETE /{self.bucket}/{key} HTTP/1.1\r\n" +
                    "".join(f"{k}: {v}\r\n" for k, v in smuggled_headers.items()) + "\r\n").encode()
        for path in (f"/{self.bucket}/{key}", f"/{self.bucket}/missing-{key}"):  # a hit, and a local 404 path
            with self.subTest(path=path):
                get_headers = sign_headers("GET", f"http://{host}{path}",
                                           {"Host": host, "Content-Length": str(len(smuggled))}, sha256_hex(smuggled))
                head = (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in get_headers.items()) +
                        "\r\n").encode()
                with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=10) as sock:
                    sock.sendall(head + smuggled)
                    answer = read_all(sock)
                self.assertEqual(answer.count(b"HTTP/1.1 "), 1, answer[:2000])
        self.assertEqual(self.moto.object_bytes(self.bucket, key), b"keep me")

    def test_trust3_transfer_encoding_must_end_in_chunked(self):
        host = f"127.0.0.1:{self.tagd.port}"
        for te, status, code in (("xchunked", 400, "InvalidRequest"), ("chunked, identity", 400, "InvalidRequest"),
                                 ("gzip", 400, "InvalidRequest"), ("gzip, chunked", 501, "NotImplemented")):
            with self.subTest(te=te):
                key = unique("te")
                path = f"/{self.bucket}/{key}"
                headers = sign_headers("PUT", f"http://{host}{path}", {"Host": host, "Transfer-Encoding": te},
                                       "UNSIGNED-PAYLOAD")
                head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                body = b"5\r\nhello\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=10) as sock:
                    sock.sendall(head.encode() + body)
                    answer = read_all(sock)
                self.assertTrue(answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:500])
                self.assertIn(f"<Code>{code}</Code>".encode(), answer)
                self.assertEqual(answer.count(b"HTTP/1.1 "), 1, answer[:2000])
                self.assertNotIn(key, self.moto.keys(self.bucket))

    def test_trust3_aws_chunked_without_its_body_commits_nothing(self):
        host = f"127.0.0.1:{self.tagd.port}"
        payload = b"x" * 100
        for name, body in (("empty", b""),
                           ("short", encode_unsigned_trailer_chunks(payload[:50], 64 * 1024, "x-amz-checksum-crc32",
                                                                    checksum_b64("crc32", payload[:50])))):
            with self.subTest(body=name):
                key = unique("chunked")
                path = f"/{self.bucket}/{key}"
                headers = {"Host": host, "Content-Encoding": "aws-chunked", "Content-Length": str(len(body)),
                           "x-amz-decoded-content-length": str(len(payload)),
                           "x-amz-trailer": "x-amz-checksum-crc32"}
                signed = sign_headers("PUT", f"http://{host}{path}", headers, STREAMING_UNSIGNED_TRAILER)
                r = raw_request(self.tagd.port, "PUT", path, signed, body)
                self.assertS3Error(r, 400, "IncompleteBody")
                self.assertNotIn(key, self.moto.keys(self.bucket))


class ForwardedHeadersTest(TagdTestCase):
    """Class 2 (tagd signs only what it authorized). Before: headers with '_' (which some
    servers map to '-': `x_amz_acl`) and method overrides went upstream under tagd's
    signature."""

    def test_trust2_lookalike_and_override_headers_are_not_forwarded(self):
        from harness import FakeUpstream
        fake = FakeUpstream(lambda req: FakeUpstream.response(200, headers={"ETag": '"e"'}))
        self.addCleanup(fake.stop)
        gw = self.start_test_tagd(upstream=fake.endpoint)
        r = signed_request(gw.port, "PUT", "/bucket/k", body=b"x",
                           headers={"x_amz_acl": "public-read", "X-HTTP-Method-Override": "DELETE",
                                    "X-Method-Override": "DELETE", "x-amz-meta-ok": "1",
                                    "x-amz-meta-my_key": "kept"})
        self.assertEqual(r[0], 200, r[2])
        sent = fake.requests[-1]["headers"]
        for name in ("x_amz_acl", "x-http-method-override", "x-method-override"):
            self.assertNotIn(name, sent)
        self.assertEqual(sent.get("x-amz-meta-ok"), "1")
        self.assertEqual(sent.get("x-amz-meta-my_key"), "kept")  # user metadata may hold '_'



class AccessLogTest(TagdTestCase):
    """Class 5 (log). Before: keys went into the access log verbatim, so a key holding
    %0A wrote a line of the client's choosing."""

    def test_trust5_keys_cannot_forge_log_lines(self):
        forged = "FORGED 2026-01-01T00:00:00.000 info [access] GET bucket=x status=200"
        path = "/nobucket/k%0A" + forged.replace(" ", "%20")
        signed_request(self.tagd.port, "GET", path)
        log = self.tagd.wait_for_log("key=k%0AFORGED")
        self.assertFalse(any(line.startswith("FORGED") for line in log.splitlines()), log[-2000:])




class TrailerChecksumTest(TagdTestCase):
    """Class 5 (checksums end to end). Before: a checksum sent as an aws-chunked trailer
    was verified by tagd and then dropped, while x-amz-sdk-checksum-algorithm still went
    upstream (AWS answers that combination 400)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("trust-trailer")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def test_trust5_trailer_checksum_reaches_the_upstream(self):
        from harness import FakeUpstream, streaming_put
        # What tagd sends, seen by a scripted upstream: the same checksum, as a trailer of
        # an unsigned aws-chunked body, with the algorithm header beside it.
        fake = FakeUpstream(lambda req: FakeUpstream.response(200, headers={"ETag": '"e"'}))
        self.addCleanup(fake.stop)
        gw = self.start_test_tagd(upstream=fake.endpoint)
        for algorithm, size in (("crc32", 300 * 1024 + 7), ("crc32c", 0), ("sha256", 65536), ("sha1", 5)):
            with self.subTest(algorithm=algorithm, size=size):
                key = unique(f"tr-{algorithm}")
                payload = bytes((i * 7) % 251 for i in range(size))
                value = checksum_b64(algorithm, payload)
                st, _, body = streaming_put(gw.port, f"/{self.bucket}/{key}", payload,
                                            mode=STREAMING_UNSIGNED_TRAILER, trailer_algorithm=algorithm)
                self.assertEqual(st, 200, body)
                sent = fake.requests[-1]
                self.assertEqual(sent["headers"]["x-amz-content-sha256"], STREAMING_UNSIGNED_TRAILER)
                self.assertEqual(sent["headers"]["x-amz-trailer"], f"x-amz-checksum-{algorithm}")
                self.assertEqual(sent["headers"]["x-amz-decoded-content-length"], str(size))
                self.assertIn("aws-chunked", sent["headers"]["content-encoding"])
                self.assertTrue(sent["body"].endswith(f"0\r\nx-amz-checksum-{algorithm}:{value}\r\n\r\n".encode()),
                                sent["body"][-100:])
                # A real S3 implementation (moto) decodes that framing to the same bytes.
                st, _, body = streaming_put(self.tagd.port, f"/{self.bucket}/{key}", payload,
                                            mode=STREAMING_UNSIGNED_TRAILER, trailer_algorithm=algorithm)
                self.assertEqual(st, 200, body)
                self.assertEqual(self.moto.object_bytes(self.bucket, key), payload)

    def test_trust5_algorithm_header_never_travels_without_its_value(self):
        from harness import FakeUpstream
        fake = FakeUpstream(lambda req: FakeUpstream.response(200, headers={"ETag": '"e"'}))
        self.addCleanup(fake.stop)
        gw = self.start_test_tagd(upstream=fake.endpoint)
        # A signed PUT that names an algorithm but carries no checksum value: the name is
        # dropped. With its value, both travel.
        r = signed_request(gw.port, "PUT", f"/{self.bucket}/a", body=b"abc",
                           headers={"x-amz-sdk-checksum-algorithm": "CRC32"})
        self.assertEqual(r[0], 200, r[2])
        self.assertNotIn("x-amz-sdk-checksum-algorithm", fake.requests[-1]["headers"])
        r = signed_request(gw.port, "PUT", f"/{self.bucket}/b", body=b"abc",
                           headers={"x-amz-sdk-checksum-algorithm": "CRC32",
                                    "x-amz-checksum-crc32": checksum_b64("crc32", b"abc")})
        self.assertEqual(r[0], 200, r[2])
        self.assertEqual(fake.requests[-1]["headers"].get("x-amz-sdk-checksum-algorithm"), "CRC32")
        self.assertEqual(fake.requests[-1]["headers"].get("x-amz-checksum-crc32"), checksum_b64("crc32", b"abc"))


if __name__ == "__main__":
    unittest.main()
