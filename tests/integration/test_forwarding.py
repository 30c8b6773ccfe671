"""What exactly tagd sends upstream and relays back, seen from a scripted upstream:
re-signing with tagd's own key, vendor headers both ways, hop-by-hop headers dropped,
chunked responses, retries only where safe, and truncated upstream bodies."""
import hashlib
import os
import re
import shutil
import tempfile
import time
import unittest

from botocore.exceptions import ClientError

import harness
from harness import FakeUpstream, Tagd, TagdTestCase

UPSTREAM_KEY = ("AKIDUPSTREAMFAKE0001", "upstream-fake-secret-0123456789abcdefgh")


class ForwardingTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-fwd-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)

    def start_pair(self, respond, args=(), read_pace=0.0):
        upstream = FakeUpstream(respond, read_pace)
        self.addCleanup(upstream.stop)
        t = Tagd(self.workdir, upstream.endpoint, UPSTREAM_KEY, extra_args=args)
        self.__dict__.setdefault("_test_tagds", []).append(t)
        self.addCleanup(t.stop)
        t.start()
        return upstream, t

    def test_resigned_request_and_vendor_headers(self):
        def respond(req):
            return FakeUpstream.response(200, b"payload", {"ETag": '"abc"', "X-Tigris-Region": "iad",
                                                           "x-amz-meta-color": "blue", "Keep-Alive": "timeout=5",
                                                           "Content-Type": "text/plain"})
        upstream, t = self.start_pair(respond)
        body = os.urandom(1000)
        status, headers, data = harness.signed_request(
            t.port, "PUT", "/bucket/dir/key.txt?tagging=", body,
            headers={"X-Tigris-Consistent": "true", "x-amz-meta-owner": "tests", "Content-Type": "text/plain",
                     "Connection": "keep-alive", "Expect": "100-continue"})
        self.assertEqual(status, 200, data)
        self.assertEqual(data, b"payload")
        # Vendor and metadata headers from the upstream reach the client; hop-by-hop ones do not.
        self.assertEqual(headers.get("x-tigris-region"), "iad")
        self.assertEqual(headers.get("x-amz-meta-color"), "blue")
        self.assertNotIn("keep-alive", headers)
        self.assertTrue(headers.get("x-amz-request-id"))

        self.assertEqual(len(upstream.requests), 1)
        req = upstream.requests[0]
        h = req["headers"]
        self.assertEqual(req["method"], "PUT")
        self.assertEqual(req["target"], "/bucket/dir/key.txt?tagging=")
        self.assertEqual(req["body"], body)
        self.assertEqual(h["host"], f"127.0.0.1:{upstream.port}")
        self.assertEqual(h["x-tigris-consistent"], "true")
        self.assertEqual(h["x-amz-meta-owner"], "tests")
        self.assertEqual(h["content-type"], "text/plain")
        self.assertNotIn("expect", h)
        # Signed with tagd's upstream key, never the client's.
        auth = h["authorization"]
        self.assertTrue(auth.startswith(f"AWS4-HMAC-SHA256 Credential={UPSTREAM_KEY[0]}/"), auth)
        self.assertIn("/us-east-1/s3/aws4_request", auth)
        self.assertNotIn(harness.ADMIN_KEY[0], auth)
        signed = re.search(r"SignedHeaders=([^,]+)", auth).group(1).split(";")
        for name in ("host", "x-amz-date", "x-amz-content-sha256", "x-amz-meta-owner", "content-type"):
            self.assertIn(name, signed)
        self.assertEqual(h["x-amz-content-sha256"], hashlib.sha256(body).hexdigest())
        # And the signature is right: recompute it with botocore from what arrived.
        self.assertEqual(recompute_signature(req, upstream.port), re.search(r"Signature=(\w+)", auth).group(1))

    def test_chunked_upstream_response(self):
        body = os.urandom(200_000)
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(200, body, {"ETag": '"x"'}, chunked=True))
        status, headers, data = harness.signed_request(t.port, "GET", "/bucket/key")
        self.assertEqual(status, 200)
        self.assertEqual(data, body)
        self.assertEqual(headers.get("transfer-encoding"), "chunked")

    def test_http10_client_gets_no_chunked_coding(self):
        body = os.urandom(100_000)
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(200, body, chunked=True))
        with harness.open_signed_get(t.port, "/bucket/key", http_version="1.0", timeout=10) as sock:
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        head, _, data = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head)
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertEqual(data, body)

    def test_anonymous_requests_go_upstream_unsigned_and_bypass_the_cache(self):
        def respond(req):
            return FakeUpstream.response(200, b"public bytes", {"ETag": '"pub"'})
        upstream, t = self.start_pair(respond, ["--allow-anonymous"])
        for _ in range(2):
            status, headers, data = harness.raw_request(t.port, "GET", "/bucket/public.txt",
                                                        {"Host": f"127.0.0.1:{t.port}"})
            self.assertEqual((status, data), (200, b"public bytes"))
            self.assertEqual(headers.get("x-cache"), "BYPASS")
        self.assertEqual(len(upstream.requests), 2)  # never served from the cache
        for req in upstream.requests:
            self.assertNotIn("authorization", req["headers"])  # the upstream's ACLs decide
        t.wait_for_log(r"anonymous access is enabled")

    def test_cache_hits_replay_every_object_header(self):
        def respond(req):
            return FakeUpstream.response(200, b"x" * 1000, {
                "ETag": '"v1"', "X-Tigris-Region": "iad", "x-amz-object-lock-legal-hold": "ON",
                "x-amz-server-side-encryption-aws-kms-key-id": "arn:key/1", "Content-Type": "text/x-test"})
        upstream, t = self.start_pair(respond)
        seen = []
        for _ in range(2):
            status, headers, data = harness.signed_request(t.port, "GET", "/bucket/replayed")
            self.assertEqual((status, data), (200, b"x" * 1000))
            seen.append(headers)
        self.assertEqual([h["x-cache"] for h in seen], ["MISS", "HIT"])
        self.assertEqual(len(upstream.requests), 1)
        for h in seen:
            self.assertEqual(h.get("x-tigris-region"), "iad")
            self.assertEqual(h.get("x-amz-object-lock-legal-hold"), "ON")
            self.assertEqual(h.get("x-amz-server-side-encryption-aws-kms-key-id"), "arn:key/1")
            self.assertEqual(h.get("content-type"), "text/x-test")

    def test_cors_preflight_goes_upstream_unsigned(self):
        def respond(req):
            return FakeUpstream.response(200, b"", {"Access-Control-Allow-Origin": "*"})
        upstream, t = self.start_pair(respond)
        status, headers, _ = harness.raw_request(t.port, "OPTIONS", "/bucket/key", {
            "Host": f"127.0.0.1:{t.port}", "Origin": "https://example.com", "Access-Control-Request-Method": "GET"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("access-control-allow-origin"), "*")
        self.assertEqual(upstream.requests[0]["method"], "OPTIONS")
        self.assertNotIn("authorization", upstream.requests[0]["headers"])

    def test_idempotent_request_retried_on_dropped_connection(self):
        def respond(req):
            if req["index"] == 0:
                return None  # close without answering
            return FakeUpstream.response(200, b"second time lucky")
        upstream, t = self.start_pair(respond)
        before = t.metrics()["tagd_upstream_retries_total"]
        status, _, data = harness.signed_request(t.port, "GET", "/bucket/key")
        self.assertEqual((status, data), (200, b"second time lucky"))
        self.assertEqual(len(upstream.requests), 2)
        self.assertEqual(t.metrics()["tagd_upstream_retries_total"], before + 1)

    def test_non_idempotent_request_not_retried(self):
        upstream, t = self.start_pair(lambda req: None)  # every connection dropped
        status, headers, data = harness.signed_request(t.port, "POST", "/bucket/key?uploads=", b"")
        self.assertEqual(status, 502, data)
        self.assertEqual(harness.s3_error(data)[0], "BadGateway")
        self.assertTrue(headers.get("x-amz-request-id"))
        self.assertEqual(len(upstream.requests), 1, "a POST was sent upstream twice")

    def test_streamed_upload_not_retried(self):
        # A body larger than one piece has left tagd before the answer: never replayed.
        upstream, t = self.start_pair(lambda req: None)
        status, _, data = harness.signed_request(t.port, "PUT", "/bucket/key", os.urandom(500_000))
        self.assertEqual(status, 502, data)
        self.assertEqual(len(upstream.requests), 1)

    def test_long_upload_to_slow_upstream(self):
        # The upstream timeout bounds each read/write, not the whole transfer: an upload
        # that takes several timeouts' worth of time while the upstream keeps reading
        # must go through.
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(200, b""), ["--upstream-read-timeout", "1s"],
                                      read_pace=0.01)
        data = os.urandom(16 * harness.MiB)  # 256 pieces x 10 ms: ~2.6 s upstream
        start = time.monotonic()
        status, _, body = harness.signed_request(t.port, "PUT", "/bucket/big", data)
        elapsed = time.monotonic() - start
        self.assertEqual(status, 200, body[:300])
        self.assertGreater(elapsed, 1.5, "the upstream was not slow enough to test anything")
        self.assertEqual(len(upstream.requests), 1)
        self.assertEqual(hashlib.sha256(upstream.requests[0]["body"]).digest(), hashlib.sha256(data).digest())

    def test_upstream_that_stops_reading_the_body(self):
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(200, b""), ["--upstream-read-timeout", "1s"],
                                      read_pace=60)  # reads 64 KiB, then nothing for a minute
        start = time.monotonic()
        status, headers, body = harness.signed_request(t.port, "PUT", "/bucket/stuck", os.urandom(16 * harness.MiB))
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(status, 504, body[:300])
        self.assertEqual(harness.s3_error(body)[0], "GatewayTimeout")
        self.assertTrue(headers.get("x-amz-request-id"))
        t.wait_for_log(r"\bwarn(ing)?\b.*upstream stopped reading the request body")

    def test_truncated_upstream_body(self):
        def respond(req):
            full = FakeUpstream.response(200, b"z" * 1_000_000, {"Connection": "close"})
            return full[:len(full) - 900_000]  # promises 1 MB, sends 100 KB, closes
        upstream, t = self.start_pair(respond)
        before = t.metrics()["tagd_upstream_truncated_bodies_total"]
        import http.client
        host = f"127.0.0.1:{t.port}"
        headers = harness.sign_headers("GET", f"http://{host}/bucket/key", {"Host": host}, harness.EMPTY_SHA256)
        start = time.monotonic()
        with self.assertRaises((http.client.IncompleteRead, ConnectionResetError)):
            harness.raw_request(t.port, "GET", "/bucket/key", headers, timeout=20)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(t.metrics()["tagd_upstream_truncated_bodies_total"], before + 1)
        t.wait_for_log(r"\bwarn(ing)?\b.*upstream body ended early")

    def test_upstream_error_relayed(self):
        xml = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code>'
               b'<Message>The specified bucket does not exist</Message></Error>')
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(
            404, xml, {"Content-Type": "application/xml", "x-amz-request-id": "UPSTREAMID"}))
        with self.assertRaises(ClientError) as ctx:
            t.client().put_object(Bucket="nobucket", Key="k", Body=os.urandom(100_000))
        self.assertBotoError(ctx, 404, "NoSuchBucket")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"], "UPSTREAMID")

    def test_slow_down_when_too_many_in_flight(self):
        import threading
        release = threading.Event()

        def respond(req):
            release.wait(20)  # hold the first request in flight
            return FakeUpstream.response(200, b"done")
        upstream, t = self.start_pair(respond, ["--max-inflight-requests", "1"])
        first = {}
        worker = threading.Thread(target=lambda: first.update(
            r=harness.signed_request(t.port, "GET", "/bucket/slow", )), daemon=True)
        worker.start()
        harness.wait_until(lambda: len(upstream.requests) == 1, 10, what="the first request to reach upstream")
        try:
            status, headers, data = harness.signed_request(t.port, "GET", "/bucket/other")
            self.assertEqual(status, 503, data)
            self.assertEqual(harness.s3_error(data)[0], "SlowDown")
            self.assertTrue(headers.get("x-amz-request-id"))
            self.assertEqual(harness.http_get(t.port, "/health")[0], 200)  # exempt
        finally:
            release.set()
            worker.join(20)
        self.assertEqual(first["r"][0], 200)
        self.assertEqual(len(upstream.requests), 1)

    def test_upstream_keep_alive_reuse_and_concurrency(self):
        def body_for(target):
            return hashlib.sha256(target.encode()).digest() * 2000  # 64000 bytes, unique per target

        def respond(req):
            body = body_for(req["target"])
            if req["method"] == "HEAD":
                return FakeUpstream.response(200, b"", {"ETag": '"h"'}, content_length=len(body))
            return FakeUpstream.response(200, body, {"ETag": '"g"'})
        upstream, t = self.start_pair(respond, ["--threads", "1"])
        # Sequential: HEAD and GET alternate on one kept-alive upstream connection.
        for i in range(6):
            method = "HEAD" if i % 2 else "GET"
            status, headers, data = harness.signed_request(t.port, method, f"/bucket/seq-{i}")
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("content-length"), str(64000))
            self.assertEqual(data, b"" if method == "HEAD" else body_for(f"/bucket/seq-{i}"))
        self.assertEqual(upstream.connections, 1, "tagd did not reuse its upstream connection")
        self.assertGreaterEqual(t.metrics()["tagd_upstream_connections_reused_total"], 5)

        # Concurrent: every client gets its own object back, whatever connection carried it.
        from concurrent.futures import ThreadPoolExecutor

        def fetch(i):
            status, _, data = harness.signed_request(t.port, "GET", f"/bucket/par-{i}")
            return status, data == body_for(f"/bucket/par-{i}")
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(fetch, range(64)))
        self.assertEqual(results, [(200, True)] * 64)


def recompute_signature(req, port) -> str:
    """SigV4 signature of a request as received, computed with botocore."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    h = req["headers"]
    signed = re.search(r"SignedHeaders=([^,]+)", h["authorization"]).group(1).split(";")
    headers = {k: v for k, v in h.items() if k in signed}
    r = botocore.awsrequest.AWSRequest(method=req["method"], url=f"http://127.0.0.1:{port}{req['target']}",
                                       headers=headers)
    r.context["timestamp"] = h["x-amz-date"]
    auth = botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(*UPSTREAM_KEY), "s3", "us-east-1")
    return auth.signature(auth.string_to_sign(r, auth.canonical_request(r)), r)


if __name__ == "__main__":
    unittest.main()
