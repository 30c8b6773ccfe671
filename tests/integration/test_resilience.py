"""tagd when things go wrong: a dead or silent upstream, slow and oversized clients,
bad settings, shutdown with a download in flight, and the io_uring fallback."""
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from botocore.exceptions import ClientError

import harness
from harness import MiB, TAGD_BINARY, TagdTestCase, http_get, s3_error, unique


class SilentUpstream:
    """Accepts connections, reads whatever arrives, never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class ResilienceTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("res")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    # ------------------------------------------------------------------ local endpoints
    def test_health_and_ready(self):
        status, headers, body = http_get(self.tagd.port, "/health")
        self.assertEqual((status, body), (200, b"ok\n"))
        status, headers, body = http_get(self.tagd.port, "/ready")
        self.assertEqual((status, body), (200, b"ready\n"))
        m = self.tagd.metrics()
        self.assertIn("tagd_requests_total", m)
        self.assertEqual(m["tagd_draining"], 0)

    # ------------------------------------------------------------------ upstream failures
    def test_upstream_down(self):
        dead = harness.free_port()  # nothing listens there
        t = self.start_test_tagd(upstream=f"http://127.0.0.1:{dead}")
        before = t.metrics()["tagd_upstream_connect_errors_total"]
        s3 = t.client()
        start = time.monotonic()
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket="any-bucket", Key="k")
        self.assertBotoError(ctx, 503, "ServiceUnavailable")
        with self.assertRaises(ClientError) as ctx:
            s3.put_object(Bucket="any-bucket", Key="k", Body=b"x" * 1000)
        self.assertBotoError(ctx, 503, "ServiceUnavailable")
        self.assertLess(time.monotonic() - start, 10, "an unreachable upstream must fail fast")
        status, headers, body = harness.signed_request(t.port, "GET", "/any-bucket/k")
        self.assertEqual(status, 503)
        self.assertTrue(headers.get("x-amz-request-id"))
        self.assertEqual(s3_error(body)[0], "ServiceUnavailable")
        self.assertEqual(headers.get("content-type"), "application/xml")
        after = t.metrics()
        self.assertGreaterEqual(after["tagd_upstream_connect_errors_total"], before + 3)
        line = t.wait_for_log(r"\bwarn(ing)?\b.*upstream unavailable")
        self.assertIn(str(dead), line)

    def test_upstream_never_answers(self):
        silent = SilentUpstream()
        self.addCleanup(silent.stop)
        t = self.start_test_tagd(["--upstream-read-timeout", "1s"], upstream=silent.endpoint)
        s3 = t.client()
        start = time.monotonic()
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=self.bucket, Key="k")
        elapsed = time.monotonic() - start
        self.assertBotoError(ctx, 504, "GatewayTimeout")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 6, "the read timeout did not bound the wait")
        with self.assertRaises(ClientError) as ctx:
            s3.put_object(Bucket=self.bucket, Key="k", Body=os.urandom(200_000))
        self.assertBotoError(ctx, 504, "GatewayTimeout")
        self.assertGreaterEqual(silent.connections, 2)
        self.assertGreaterEqual(t.metrics()["tagd_upstream_errors_total"], 2)

    def test_upstream_tls_handshake_never_completes(self):
        silent = SilentUpstream()
        self.addCleanup(silent.stop)
        t = self.start_test_tagd(["--upstream-connect-timeout", "1s", "--upstream-retries", "0"],
                                 upstream=f"https://127.0.0.1:{silent.port}")
        start = time.monotonic()
        status, headers, body = harness.signed_request(t.port, "GET", f"/{self.bucket}/k")
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(status, 504, body)
        self.assertEqual(s3_error(body)[0], "GatewayTimeout")
        self.assertTrue(headers.get("x-amz-request-id"))
        t.wait_for_log(r"\bwarn(ing)?\b.*TLS handshake .* timed out")

    # ------------------------------------------------------------------ client limits
    def test_trickled_header_is_cut_off(self):
        t = self.start_test_tagd(["--header-timeout", "1s"])
        before = t.metrics()["tagd_client_timeouts_total"]
        sock = socket.create_connection(("127.0.0.1", t.port), timeout=10)
        start = time.monotonic()
        cut = None
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            for byte in b"X-Slow: " + b"a" * 200:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    cut = time.monotonic() - start
                    break
                sock.settimeout(0.1)
                try:
                    data = sock.recv(4096)
                    if data == b"":
                        cut = time.monotonic() - start
                        break
                    self.fail(f"tagd answered a request whose head never ended: {data!r}")
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    cut = time.monotonic() - start
                    break
        finally:
            sock.close()
        self.assertIsNotNone(cut, "tagd kept a connection that trickled header bytes for 20 s")
        self.assertGreaterEqual(cut, 0.9)
        self.assertLess(cut, 4.0)
        harness.wait_until(lambda: t.metrics()["tagd_client_timeouts_total"] > before, 5,
                           what="client_timeouts_total to grow")

    def test_stalled_upload_body_times_out(self):
        t = self.start_test_tagd(["--idle-timeout", "1s"])
        # Stalls before tagd contacts the upstream (inside the first piece), and after it
        # has streamed part of the body there.
        for sent in (1000, 300_000):
            with self.subTest(sent=sent):
                self.check_stalled_upload(t, sent)

    def check_stalled_upload(self, t, sent):
        before = t.metrics()["tagd_client_timeouts_total"]
        key = unique("stalled")
        path = f"/{self.bucket}/{key}"
        body = os.urandom(1_000_000)
        host = f"127.0.0.1:{t.port}"
        headers = harness.sign_headers("PUT", f"http://{host}{path}",
                                       {"Host": host, "Content-Length": str(len(body))}, harness.sha256_hex(body))
        sock = socket.create_connection(("127.0.0.1", t.port), timeout=10)
        try:
            head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            # Part of the body, and then nothing.
            sock.sendall(head.encode() + body[:sent])
            start = time.monotonic()
            response = b""
            while True:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                response += data
            elapsed = time.monotonic() - start
        finally:
            sock.close()
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5, "a stalled upload body was not cut off")
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response[:300])
        self.assertIn(b"<Code>RequestTimeout</Code>", response)
        self.assertIn(b"x-amz-request-id:", response.lower())
        harness.wait_until(lambda: t.metrics()["tagd_client_timeouts_total"] > before, 5,
                           what="client_timeouts_total to grow")
        self.assertNotIn(key, self.moto.keys(self.bucket))
        if sent > 64 * 1024:
            t.wait_for_log(r"upload aborted upstream")

    def test_oversized_request_head(self):
        t = self.start_test_tagd(["--max-header-bytes", "4096"])
        status, headers, body = harness.raw_request(
            t.port, "GET", f"/{self.bucket}/k", {"Host": f"127.0.0.1:{t.port}", "X-Padding": "p" * 8000})
        self.assertEqual(status, 400, body)
        self.assertTrue(headers.get("x-amz-request-id"))
        self.assertEqual(s3_error(body)[0], "RequestHeaderSectionTooLarge")
        # A normal request on the same tagd still works.
        self.assertEqual(http_get(t.port, "/health")[0], 200)
        s3 = t.client()
        s3.put_object(Bucket=self.bucket, Key="under-limit", Body=b"ok")
        self.assertEqual(self.moto.object_bytes(self.bucket, "under-limit"), b"ok")

    def test_malformed_request(self):
        with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=10) as sock:
            sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response[:200])
        self.assertIn(b"x-amz-request-id:", response.lower())
        self.assertIn(b"<Code>InvalidRequest</Code>", response)

    # ------------------------------------------------------------------ settings
    def run_tagd(self, args, env=None):
        e = {k: v for k, v in os.environ.items() if not (k.startswith("TAG_") or k.startswith("AWS_"))}
        e.update(env or {})
        return subprocess.run([TAGD_BINARY, "--upstream-endpoint", self.moto.endpoint, *args], capture_output=True,
                              env=e, timeout=15)

    def test_invalid_settings_stop_startup(self):
        creds = ["--credentials-file", self.tagd.credentials_path]
        cases = [
            (["--port", "99999", *creds], None, ["listen.port", "--port", "99999"]),
            (creds, {"TAG_LOG_LEVEL": "loud"}, ["log.level", "TAG_LOG_LEVEL", "loud"]),
            (["--upstream-endpoint", "ftp://example.com", *creds], None, ["upstream.endpoint"]),
            (["--io-uring", "maybe", *creds], None, ["io_uring", "--io-uring"]),
            (["--header-timeout", "soon", *creds], None, ["limits.header_timeout"]),
            (["--no-such-flag", "1", *creds], None, ["--no-such-flag"]),
        ]
        for args, env, names in cases:
            with self.subTest(args=args, env=env):
                p = self.run_tagd(args, env)
                out = (p.stderr + p.stdout).decode()
                self.assertEqual(p.returncode, 2, out)
                for name in names:
                    self.assertIn(name, out)

    def test_settings_precedence(self):
        """flags > environment > config file > defaults, seen through the port tagd binds."""
        file_port, env_port, flag_port = (harness.free_port() for _ in range(3))
        config = os.path.join(self.workdir, "precedence.json")
        with open(config, "w") as f:
            f.write('{"listen": {"port": %d}, "upstream": {"endpoint": "%s", "region": "us-east-1"},\n'
                    ' // comments are allowed\n "auth": {"credentials_file": "%s"}}'
                    % (file_port, self.moto.endpoint, self.tagd.credentials_path))
        cases = [([], {}, file_port), ([], {"TAG_HTTP_PORT": str(env_port)}, env_port),
                 (["--port", str(flag_port)], {"TAG_HTTP_PORT": str(env_port)}, flag_port)]
        for args, env, expected in cases:
            with self.subTest(args=args, env=env):
                e = {k: v for k, v in os.environ.items() if not (k.startswith("TAG_") or k.startswith("AWS_"))}
                e.update(env)
                log = open(os.path.join(self.workdir, f"precedence-{expected}.log"), "wb")
                p = subprocess.Popen([TAGD_BINARY, "--config", config, *args], stdout=log, stderr=subprocess.STDOUT,
                                     env=e, start_new_session=True)
                try:
                    harness.wait_until(lambda: p.poll() is None and http_get(expected, "/health", 1)[0] == 200, 10,
                                       what=f"tagd on port {expected}")
                finally:
                    self.assertEqual(harness.stop_process(p), 0)
                    log.close()

    def test_aws_environment_shortcut(self):
        """TAG's shortcut: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are one full-access
        client key and tagd's upstream credentials, with no credentials file."""
        key = (self.moto.access_key, self.moto.secret_key)
        t = self.start_test_tagd(credentials=False, upstream_key=None,
                                 env={"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]})
        s3 = t.client(key)
        name = unique("env-key")
        s3.put_object(Bucket=self.bucket, Key=name, Body=b"via the environment key")
        self.assertEqual(self.moto.object_bytes(self.bucket, name), b"via the environment key")
        with self.assertRaises(ClientError) as ctx:  # the file's keys are not loaded
            t.client().get_object(Bucket=self.bucket, Key=name)
        self.assertBotoError(ctx, 403, "InvalidAccessKeyId")

    def test_json_logs(self):
        import json
        t = self.start_test_tagd(["--log-format", "json"])
        t.client().head_bucket(Bucket=self.bucket)
        harness.wait_until(lambda: "HeadBucket" in t.log(), 5, what="the access log line")
        records = [json.loads(line) for line in t.log().splitlines() if line.strip()]
        self.assertTrue(all({"time", "level", "msg"} <= r.keys() for r in records), records[:3])
        access = [r for r in records if r.get("logger") == "access" and "HeadBucket" in r["msg"]]
        self.assertEqual(len(access), 1, records)
        self.assertIn(f"bucket={self.bucket}", access[0]["msg"])
        self.assertIn("status=200", access[0]["msg"])

    def test_bad_credentials_file_stops_startup(self):
        path = os.path.join(self.workdir, "broken-credentials.json")
        with open(path, "w") as f:
            f.write('{"keys": [{"access_key_id": "A"}]}')
        p = self.run_tagd(["--credentials-file", path, "--port", "0"])
        out = (p.stderr + p.stdout).decode()
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn(path, out)
        self.assertIn("secret_access_key", out)

    def test_io_uring_off_and_auto(self):
        off = self.start_test_tagd(["--io-uring", "off"])
        line = off.wait_for_log(r"io_uring unavailable")
        self.assertRegex(line, r"\bwarn(ing)?\b")
        self.assertEqual(off.metrics()["tagd_io_uring_enabled"], 0)
        self.assertEqual(off.metrics()["tagd_disk_io_uring"], 0)
        # With the flag off tagd still serves.
        self.assertEqual(off.client().head_bucket(Bucket=self.bucket)["ResponseMetadata"]["HTTPStatusCode"], 200)

        auto = self.tagd  # started without the flag
        log = auto.log()
        if "io_uring unavailable" in log:
            self.skipTest("this kernel or sandbox refuses io_uring, so the probe's positive half cannot be "
                          "checked here: " + next(l for l in log.splitlines() if "io_uring unavailable" in l))
        self.assertIn("io_uring ready", log)
        self.assertEqual(auto.metrics()["tagd_io_uring_enabled"], 1)
        # Cache reads go through io_uring (the gauge drops to 0 if a loop cannot set up its ring).
        auto.client().put_object(Bucket=self.bucket, Key="uring-probe", Body=b"x" * 4096)
        for _ in range(2):
            self.assertEqual(auto.client().get_object(Bucket=self.bucket, Key="uring-probe")["Body"].read(), b"x" * 4096)
        self.assertEqual(auto.metrics()["tagd_disk_io_uring"], 1)

    # ------------------------------------------------------------------ shutdown
    def test_sigterm_drains_download_in_flight(self):
        t = self.start_test_tagd(["--drain-timeout", "30s"])
        key = unique("drain")
        data = os.urandom(24 * MiB)
        t.client().put_object(Bucket=self.bucket, Key=key, Body=data)

        path = f"/{self.bucket}/{key}"
        host = f"127.0.0.1:{t.port}"
        headers = harness.sign_headers("GET", f"http://{host}{path}", {"Host": host}, harness.EMPTY_SHA256)
        sock = socket.create_connection(("127.0.0.1", t.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        try:
            head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            sock.sendall(head.encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                self.assertTrue(chunk, "connection closed before the response head")
                buf += chunk
            head_bytes, body = buf.split(b"\r\n\r\n", 1)
            self.assertTrue(head_bytes.startswith(b"HTTP/1.1 200"), head_bytes)
            self.assertIn(f"content-length: {len(data)}".encode(), head_bytes.lower())

            t.proc.send_signal(signal.SIGTERM)
            t.wait_for_log(r"signal 15 received", timeout=5)

            # New connections are refused while the download goes on.
            def refused():
                try:
                    socket.create_connection(("127.0.0.1", t.port), timeout=1).close()
                    return False
                except ConnectionRefusedError:
                    return True
            harness.wait_until(refused, 5, what="tagd to stop accepting")
            self.assertTrue(t.alive(), "tagd exited with a download in flight")

            received = bytearray(body)
            while len(received) < len(data):
                chunk = sock.recv(256 * 1024)
                if not chunk:
                    break
                received += chunk
                time.sleep(0.001)
        finally:
            sock.close()
        self.assertEqual(len(received), len(data), "the download was cut short by the shutdown")
        self.assertEqual(hashlib.sha256(received).digest(), hashlib.sha256(data).digest())
        try:
            rc = t.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("tagd did not exit after its last request finished")
        self.assertEqual(rc, 0)
        self.assertIn("stopped", t.log())


if __name__ == "__main__":
    unittest.main()
