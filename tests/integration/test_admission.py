"""Admission under load (part 8): 503 SlowDown with Retry-After past the request and byte
limits, sheds counted by reason, /health and /metrics answering while tagd is saturated,
and the connection cap (accept and reset, one warning per burst).

The upstream is a FakeUpstream so a test decides exactly how long a request stays in
flight; the cache is off, so every GET is a relay whose body goes through the admission
accounting (gateway/admitted_body.hpp).
"""
import shutil
import socket
import tempfile
import threading
import time
import unittest

import harness
from harness import FakeUpstream, Tagd

UPSTREAM_KEY = ("AKIDUPSTREAMFAKE0001", "upstream-fake-secret-0123456789abcdefgh")


class AdmissionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-admission-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)

    def start_pair(self, respond, args=()):
        upstream = FakeUpstream(respond)
        self.addCleanup(upstream.stop)
        t = Tagd(self.workdir, upstream.endpoint, UPSTREAM_KEY, extra_args=["--cache-disabled", *args])
        self.addCleanup(t.stop)
        t.start()
        return upstream, t

    def assertSlowDown(self, status, headers, data):
        self.assertEqual(status, 503, data[:300])
        self.assertEqual(harness.s3_error(data)[0], "SlowDown")
        self.assertEqual(headers.get("retry-after"), "1")
        self.assertTrue(headers.get("x-amz-request-id"))

    def assertLocalEndpointsAnswer(self, t):
        start = time.monotonic()
        status, _, body = harness.http_get(t.port, "/health", timeout=2)
        self.assertEqual((status, body), (200, b"ok\n"))
        # Held requests wait up to 20 s upstream: /health must not queue behind them. The bound
        # leaves room for a loaded 2-core CI machine.
        self.assertLess(time.monotonic() - start, 1.5, "/health was slow under overload")
        status, _, body = harness.http_get(t.port, "/metrics", timeout=2)
        self.assertEqual(status, 200)
        return harness.parse_prometheus(body.decode())

    def test_request_limit_saturated(self):
        """4 requests held upstream fill max_inflight_requests=4; 20 more at once are all shed
        with Retry-After, counted as reason="requests", while the local endpoints answer."""
        release = threading.Event()

        def respond(req):
            release.wait(20)
            return FakeUpstream.response(200, b"done")
        upstream, t = self.start_pair(respond, ["--max-inflight-requests", "4"])
        held = []
        workers = [threading.Thread(target=lambda i=i: held.append(
            harness.signed_request(t.port, "GET", f"/bucket/held-{i}")), daemon=True) for i in range(4)]
        for w in workers:
            w.start()
        try:
            harness.wait_until(lambda: len(upstream.requests) == 4, 10, what="4 requests held upstream")
            shed = []
            extra = [threading.Thread(target=lambda i=i: shed.append(
                harness.signed_request(t.port, "GET", f"/bucket/extra-{i}")), daemon=True) for i in range(20)]
            for w in extra:
                w.start()
            for w in extra:
                w.join(20)
            self.assertEqual(len(shed), 20)
            for status, headers, data in shed:
                self.assertSlowDown(status, headers, data)
            m = self.assertLocalEndpointsAnswer(t)
            self.assertEqual(m['tagd_admission_shed_total{reason="requests"}'], 20)
            self.assertEqual(m['tagd_admission_shed_total{reason="bytes"}'], 0)
            self.assertEqual(m["tagd_slow_down_total"], 20)
            # The 4 held, and the scrape itself; a shed request leaves the gauge only after its
            # response is written, which its client may already have read: wait, do not assume.
            harness.wait_until(lambda: t.metrics()["tagd_inflight_requests"] == 4 + 1, 10,
                               what="only the 4 held requests (and the scrape) in flight")
            self.assertEqual(m["tagd_max_inflight_requests"], 4)
        finally:
            release.set()
            for w in workers:
                w.join(20)
        self.assertEqual([r[0] for r in held], [200] * 4)
        self.assertEqual(len(upstream.requests), 4)  # nothing shed reached the upstream

    def test_byte_limit(self):
        """A client that stops reading a 6 MiB body holds more than max_inflight_bytes=1MiB in
        flight: the next request is shed (reason="bytes"); once the client goes, the bytes
        are released and requests are admitted again."""
        body = b"x" * (6 * harness.MiB)
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(200, body if "big" in req["target"] else b"small"),
                                      ["--max-inflight-bytes", "1MiB"])
        self.assertEqual(t.metrics()["tagd_max_inflight_bytes"], harness.MiB)
        stuck = harness.open_signed_get(t.port, "/bucket/big", rcvbuf=4096)
        try:
            harness.wait_until(lambda: t.metrics()["tagd_inflight_response_bytes"] > harness.MiB, 10,
                               what="the stuck response to hold bytes")
            m = self.assertLocalEndpointsAnswer(t)
            # At most one admission window (8 MiB) per response, here the unsent part of 6 MiB.
            self.assertLessEqual(m["tagd_inflight_response_bytes"], len(body))
            status, headers, data = harness.signed_request(t.port, "GET", "/bucket/small")
            self.assertSlowDown(status, headers, data)
            self.assertEqual(t.metrics()['tagd_admission_shed_total{reason="bytes"}'], 1)
        finally:
            stuck.close()
        harness.wait_until(lambda: t.metrics()["tagd_inflight_response_bytes"] == 0, 10,
                           what="the aborted response to release its bytes")
        status, _, data = harness.signed_request(t.port, "GET", "/bucket/small")
        self.assertEqual((status, data), (200, b"small"))
        # A body read to its end releases everything too.
        status, _, data = harness.signed_request(t.port, "GET", "/bucket/big")
        self.assertEqual((status, len(data)), (200, len(body)))
        # The last piece is released when the writer comes back after its write completes,
        # which can be after the client has read it.
        harness.wait_until(lambda: t.metrics()["tagd_inflight_response_bytes"] == 0, 10,
                           what="the response read to its end to release its bytes")

    def test_connection_cap(self):
        """Past max_connections a new connection is accepted and reset at once, counted as
        reason="connections", with one warning for the burst; below it again, tagd accepts."""
        upstream, t = self.start_pair(lambda req: FakeUpstream.response(200, b"ok"), ["--max-connections", "2"])
        # Start-up's health probes closed their connections, but tagd may not have seen the
        # close yet: wait until only the scrape's own connection is open, or a lingering one
        # would count against the cap of 2 and refuse an idle connection below.
        harness.wait_until(lambda: "\ntagd_open_connections 1\n" in harness.http_get(t.port, "/metrics")[2].decode(),
                           5, what="start-up's connections to close")
        # One idle connection at a time: the scrape above closes its own connection, and
        # until tagd has seen that close a second idle connection would be over the cap.
        idle = [socket.create_connection(("127.0.0.1", t.port))]
        try:
            harness.wait_until(lambda: "\ntagd_open_connections 1\n" in self.metrics_via(idle[0]), 5,
                               what="the scrape's connection to close")
            idle.append(socket.create_connection(("127.0.0.1", t.port)))
            harness.wait_until(lambda: "\ntagd_open_connections 2\n" in self.metrics_via(idle[0]), 5,
                               what="two connections open")
            for _ in range(3):
                extra = None
                try:
                    # On loopback the reset can beat connect()'s return (io_uring accepts
                    # and resets fast): that is the refusal too.
                    extra = socket.create_connection(("127.0.0.1", t.port), timeout=5)
                    extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    got = extra.recv(100)
                except (ConnectionResetError, BrokenPipeError):
                    got = b""
                finally:
                    if extra is not None:
                        extra.close()
                self.assertEqual(got, b"", "a connection over the cap was served")
            # Close the second idle connection and wait, on the first, until tagd has seen
            # that close: the probe below is then at most the second open connection, under
            # the cap even before tagd sees the first one close, so it is never refused (a
            # refused probe would count as a fourth shed).
            idle.pop().close()
            harness.wait_until(lambda: "\ntagd_open_connections 1\n" in self.metrics_via(idle[0]), 5,
                               what="the second idle connection to close")
        finally:
            for s in idle:
                s.close()
        harness.wait_until(lambda: harness.http_get(t.port, "/health", timeout=1)[0] == 200, 5,
                           what="tagd to accept again")
        m = t.metrics()
        self.assertEqual(m['tagd_admission_shed_total{reason="connections"}'], 3)
        self.assertEqual(m["tagd_max_connections"], 2)
        t.wait_for_log(r"accepting again \(3 connections refused")
        warnings = [l for l in t.log().splitlines() if "connection cap reached" in l]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertRegex(warnings[0], r"\bwarn(ing)?\b")

    @staticmethod
    def metrics_via(sock: socket.socket) -> str:
        """GET /metrics on an open keep-alive connection (a new one could be over the cap)."""
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
        while len(rest) < length:
            rest += sock.recv(65536)
        return rest[:length].decode()


if __name__ == "__main__":
    unittest.main()
