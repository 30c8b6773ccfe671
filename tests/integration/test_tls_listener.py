"""tagd's own HTTPS listener (tls.cert_file / tls.key_file, TAG_TLS_CERT_FILE / TAG_TLS_KEY_FILE).

A CA and two server certificates are made with the openssl CLI. Real clients talk to tagd
over HTTPS: the aws CLI with --ca-bundle, and boto3 with verify=<ca>, whose uploads over
HTTPS are aws-chunked bodies with a trailing CRC checksum (checked here, not assumed).
SIGHUP swaps the certificate for new connections (the serial a new handshake sees
changes) without touching open ones; a broken or mismatched pair on SIGHUP is refused and
the certificate in use stays."""
import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import unittest

import harness
from harness import ADMIN_KEY, REGION, TagdTestCase, parse_prometheus, unique, wait_until

SERIAL_1, SERIAL_2, SERIAL_3 = "1001", "2002", "3003"


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr.decode()}")


def make_ca(d: str):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tagd listener test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")


def make_server_cert(d: str, name: str, serial: str, rsa: bool = False):
    """<name>.pem / <name>.key signed by the CA, CN=tagd-<name>, the given hex serial."""
    if rsa:
        newkey = ["-newkey", "rsa:2048"]
    else:
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    openssl("req", *newkey, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=tagd-{name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", f"0x{serial}",
            "-out", f"{name}.pem", "-days", "2", "-extfile", "server.ext", cwd=d)


def replace_file(src: str, dst: str):
    """Renamed into place, as certificate tools do: a reader never sees half a file."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class TlsTagd:
    """HTTPS helpers for one tagd whose listener speaks TLS."""

    def __init__(self, tagd: harness.Tagd, ca: str):
        self.tagd, self.ca = tagd, ca
        self.endpoint = f"https://127.0.0.1:{tagd.port}"

    def context(self, **kw) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def connection(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.tagd.port, timeout=timeout, context=self.context())

    def get(self, path: str, conn: http.client.HTTPSConnection | None = None):
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            if own:
                conn.close()

    def metrics(self) -> dict:
        status, _, body = self.get("/metrics")
        assert status == 200, status
        return parse_prometheus(body.decode())

    def peer_serial(self) -> str:
        """The serial a new handshake presents (upper-case hex, as Python reports it)."""
        with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=5) as raw:
            with self.context().wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert()["serialNumber"]

    def wait_healthy(self, timeout: float = 20.0):
        def healthy():
            if not self.tagd.alive():
                raise RuntimeError(f"tagd exited:\n{self.tagd.log_tail()}")
            return self.get("/health")[0] == 200
        wait_until(healthy, timeout, 0.05, "tagd /health over HTTPS")

    def s3(self, key=ADMIN_KEY, **config):
        """boto3 over HTTPS, trusting the test CA."""
        import boto3
        from botocore.config import Config as BotoConfig
        cfg = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4", "retries": {"max_attempts": 1}}
        cfg.update(config)
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key[0],
                            aws_secret_access_key=key[1], verify=self.ca, config=BotoConfig(**cfg))


class TlsListenerTest(TagdTestCase):

    @classmethod
    def setUpClass(cls):
        cls.workdir = __import__("tempfile").mkdtemp(prefix="tagd-it-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.pki = os.path.join(cls.workdir, "pki")
        os.makedirs(cls.pki)
        make_ca(cls.pki)
        make_server_cert(cls.pki, "one", SERIAL_1)
        make_server_cert(cls.pki, "two", SERIAL_2, rsa=True)
        make_server_cert(cls.pki, "three", SERIAL_3)
        # What tagd is configured with: files replaced in place on "renewal".
        cls.cert = os.path.join(cls.pki, "live.pem")
        cls.key = os.path.join(cls.pki, "live.key")
        shutil.copyfile(os.path.join(cls.pki, "one.pem"), cls.cert)
        shutil.copyfile(os.path.join(cls.pki, "one.key"), cls.key)
        # moto without its own signature check: it refuses correctly signed listings with a
        # delimiter (`aws s3 ls`), and what is tested here is the listener, not re-signing.
        cls.moto = harness.Moto(cls.workdir, auth=False)
        cls.addClassCleanup(cls.moto.stop)
        cls.moto.start()
        cls.tagd = cls.start_tagd(["--tls-cert-file", cls.cert, "--tls-key-file", cls.key], wait=False)
        cls.https = TlsTagd(cls.tagd, os.path.join(cls.pki, "ca.pem"))
        cls.https.wait_healthy()
        cls.bucket = unique("tls")
        cls.https.s3().create_bucket(Bucket=cls.bucket)

    def aws(self, *args, input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=ADMIN_KEY[0], AWS_SECRET_ACCESS_KEY=ADMIN_KEY[1], AWS_DEFAULT_REGION=REGION,
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        p = subprocess.run(["aws", "--endpoint-url", self.https.endpoint, "--ca-bundle", self.https.ca, "s3", *args],
                           env=env, input=input_bytes, capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, f"aws s3 {' '.join(args)}: {p.stderr.decode()[-2000:]}")
        return p

    def test_aws_cli_over_https(self):
        src = os.path.join(self.workdir, "cli-upload.bin")
        data = os.urandom(3 * harness.MiB + 17)
        with open(src, "wb") as f:
            f.write(data)
        self.aws("cp", src, f"s3://{self.bucket}/cli/object.bin")
        listing = self.aws("ls", f"s3://{self.bucket}/cli/").stdout.decode()
        self.assertIn("object.bin", listing)
        self.assertIn(str(len(data)), listing)
        got = self.aws("cp", f"s3://{self.bucket}/cli/object.bin", "-").stdout
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        self.assertEqual(self.moto.object_bytes(self.bucket, "cli/object.bin"), data)

    def test_boto3_uploads_are_aws_chunked_with_trailing_checksums(self):
        s3 = self.https.s3()
        seen = []

        def record(request, **_):
            seen.append({k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()})
        s3.meta.events.register("before-send.s3.PutObject", record)
        s3.meta.events.register("before-send.s3.UploadPart", record)
        for size in (1024, 200 * 1024 + 3):  # one 64 KiB piece, and several
            key = f"boto/{size}.bin"
            data = os.urandom(size)
            s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            sent = seen[-1]
            # What boto3 sends over HTTPS by default: the body framed aws-chunked with a
            # CRC trailer, unsigned payload (the TLS channel protects it).
            self.assertIn("aws-chunked", sent.get("content-encoding", ""), sent)
            self.assertEqual(sent.get("x-amz-content-sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER", sent)
            self.assertTrue(sent.get("x-amz-trailer", "").startswith("x-amz-checksum-"), sent)
            for attempt in range(2):  # a miss, then a hit from the cache
                r = s3.get_object(Bucket=self.bucket, Key=key)
                self.assertEqual(r["Body"].read(), data)
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"].get("x-cache"), "HIT")
            self.assertEqual(self.moto.object_bytes(self.bucket, key), data)
        # Multipart: each part is its own aws-chunked upload with a trailer.
        from boto3.s3.transfer import TransferConfig
        import io
        big = os.urandom(11 * harness.MiB)
        s3.upload_fileobj(io.BytesIO(big), self.bucket, "boto/multipart.bin",
                          Config=TransferConfig(multipart_threshold=5 * harness.MiB,
                                                multipart_chunksize=5 * harness.MiB))
        self.assertTrue(any("x-amz-trailer" in h for h in seen[-3:]))
        self.assertEqual(s3.get_object(Bucket=self.bucket, Key="boto/multipart.bin")["Body"].read(), big)

    def test_tls_versions_and_ciphers(self):
        with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=5) as raw:
            with self.https.context().wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertEqual(tls.version(), "TLSv1.3")
        ctx12 = self.https.context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=5) as raw:
            with ctx12.wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertEqual(tls.version(), "TLSv1.2")
                name = tls.cipher()[0]
                self.assertTrue(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name)
        # A TLS 1.2 client that offers only CBC (non-AEAD) suites is refused.
        cbc = self.https.context(maximum_version=ssl.TLSVersion.TLSv1_2)
        cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA")
        with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=5) as raw:
            with self.assertRaises(ssl.SSLError):
                cbc.wrap_socket(raw, server_hostname="localhost")

    def test_plain_http_on_the_tls_port_is_a_failed_handshake(self):
        before = self.https.metrics().get("tagd_tls_handshake_failures_total", 0)
        with socket.create_connection(("127.0.0.1", self.tagd.port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            got = s.recv(4096)
            self.assertFalse(got.startswith(b"HTTP/1.1 200"), got)
        wait_until(lambda: self.https.metrics()["tagd_tls_handshake_failures_total"] >= before + 1, 5,
                   what="tagd_tls_handshake_failures_total to count the plain-HTTP client")
        self.assertEqual(self.https.metrics()["tagd_tls_enabled"], 1)

    def test_sighup_reload_new_certificate_then_broken_files_keep_it(self):
        pki = self.pki
        # Start from certificate one (another test may have run first: put it back).
        replace_file(os.path.join(pki, "one.pem"), self.cert)
        replace_file(os.path.join(pki, "one.key"), self.key)
        ok = 'tagd_tls_reloads_total{result="ok"}'
        before_first = self.https.metrics()[ok]
        self.tagd.proc.send_signal(signal.SIGHUP)
        # Serial one may already be in use before this reload is handled: wait for its count.
        wait_until(lambda: self.https.metrics()[ok] == before_first + 1, 5, what="the first reload")
        self.assertEqual(self.https.peer_serial(), SERIAL_1)
        m0 = self.https.metrics()

        # A connection opened before the reload, kept alive across it.
        old_conn = self.https.connection()
        self.assertEqual(self.https.get("/health", old_conn)[0], 200)
        old_sock = old_conn.sock

        # Renewal: a new key pair (RSA this time) and serial.
        replace_file(os.path.join(pki, "two.pem"), self.cert)
        replace_file(os.path.join(pki, "two.key"), self.key)
        self.tagd.proc.send_signal(signal.SIGHUP)
        self.tagd.wait_for_log(r"TLS certificate reloaded: .*tagd-two.*serial 2002")
        self.assertEqual(self.https.peer_serial(), SERIAL_2)
        # The old connection was not dropped and still speaks with certificate one.
        self.assertEqual(self.https.get("/health", old_conn)[0], 200)
        self.assertIs(old_conn.sock, old_sock, "the pre-reload connection was reconnected")
        self.assertEqual(old_conn.sock.getpeercert()["serialNumber"], SERIAL_1)
        # And S3 works over a new connection with the new certificate.
        self.assertEqual(self.https.s3().head_bucket(Bucket=self.bucket)["ResponseMetadata"]["HTTPStatusCode"], 200)
        m1 = self.https.metrics()
        self.assertEqual(m1['tagd_tls_reloads_total{result="ok"}'], m0['tagd_tls_reloads_total{result="ok"}'] + 1)

        # A half-written certificate: refused, certificate two stays.
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nMIIBroken\n")
        self.tagd.proc.send_signal(signal.SIGHUP)
        self.tagd.wait_for_log(r"TLS certificate reload refused, keeping .*tagd-two.*: certificate ")
        self.assertEqual(self.https.peer_serial(), SERIAL_2)
        self.assertEqual(self.https.get("/health")[0], 200)

        # A certificate with another certificate's key: refused too.
        replace_file(os.path.join(pki, "three.pem"), self.cert)
        replace_file(os.path.join(pki, "one.key"), self.key)
        self.tagd.proc.send_signal(signal.SIGHUP)
        self.tagd.wait_for_log(r"TLS certificate reload refused.*(key values mismatch|does not match)")
        self.assertEqual(self.https.peer_serial(), SERIAL_2)
        m2 = self.https.metrics()
        self.assertEqual(m2['tagd_tls_reloads_total{result="failed"}'],
                         m1['tagd_tls_reloads_total{result="failed"}'] + 2)
        self.assertTrue(self.tagd.alive())
        old_conn.close()


class TlsStartupTest(TagdTestCase):
    """A pair that cannot be loaded stops start-up with exit 2, naming the setting."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = __import__("tempfile").mkdtemp(prefix="tagd-it-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)

    def run_tagd(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([harness.TAGD_BINARY, "--port", "0", "--upstream-endpoint", "http://127.0.0.1:9",
                               "--cache-disabled", "--allow-anonymous", *args], capture_output=True, timeout=30)

    def test_missing_key_and_mismatched_pair(self):
        make_ca(self.workdir)
        make_server_cert(self.workdir, "a", "a1")
        make_server_cert(self.workdir, "b", "b1")
        cert = os.path.join(self.workdir, "a.pem")
        only_cert = self.run_tagd("--tls-cert-file", cert)
        self.assertEqual(only_cert.returncode, 2, only_cert.stderr)
        self.assertIn(b"tls.cert_file/tls.key_file: both or neither", only_cert.stderr)
        mismatched = self.run_tagd("--tls-cert-file", cert, "--tls-key-file", os.path.join(self.workdir, "b.key"))
        self.assertEqual(mismatched.returncode, 2, mismatched.stderr)
        self.assertIn(b"invalid setting tls.cert_file/tls.key_file", mismatched.stderr)
        self.assertRegex(mismatched.stderr.decode(), r"key values mismatch|does not match")


if __name__ == "__main__":
    unittest.main()
