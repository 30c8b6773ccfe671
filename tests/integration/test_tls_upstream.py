"""An HTTPS upstream, as with Tigris: nginx terminates TLS in front of moto with a
certificate from a CA this test makes. tagd trusts it through --upstream-ca-file (and
moto still checks tagd's signatures through the proxy), and a tagd without that CA
refuses the certificate with a clear 502."""
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from botocore.exceptions import ClientError

import harness
from harness import TagdTestCase, free_port, stop_process, tail, unique, wait_until

NGINX = "/usr/sbin/nginx"


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr.decode()}")


def make_test_ca(d: str):
    """ca.pem (a CA) and server.pem/server.key (signed by it, for 127.0.0.1 and localhost)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tagd integration test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    # Same CA, but for a name tagd will not be connecting to.
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "other.key", "-out", "other.csr", "-subj", "/CN=other.example", cwd=d)
    with open(os.path.join(d, "other.ext"), "w") as f:
        f.write("subjectAltName=DNS:other.example\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "other.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "other.pem", "-days", "2", "-extfile", "other.ext", cwd=d)


NGINX_CONF = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy_temp;
  fastcgi_temp_path {d}/fastcgi_temp;
  uwsgi_temp_path {d}/uwsgi_temp;
  scgi_temp_path {d}/scgi_temp;
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_http_version 1.1;
      # The signature covers Host: pass the client's unchanged.
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 120s;
    }}
  }}
  server {{
    listen 127.0.0.1:{other_port} ssl;
    ssl_certificate {d}/other.pem;
    ssl_certificate_key {d}/other.key;
    location / {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_set_header Host $http_host;
    }}
  }}
}}
"""


@unittest.skipUnless(os.access(NGINX, os.X_OK), f"nginx is not installed at {NGINX} (apt-get install nginx-light)")
class TlsUpstreamTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        # moto (checking signatures) first; the tagds come after nginx.
        cls.workdir = tempfile.mkdtemp(prefix="tagd-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.moto = harness.Moto(cls.workdir)
        cls.addClassCleanup(cls.moto.stop)
        cls.moto.start()

        cls.tls_dir = os.path.join(cls.workdir, "tls")
        os.mkdir(cls.tls_dir)
        make_test_ca(cls.tls_dir)
        cls.ca_file = os.path.join(cls.tls_dir, "ca.pem")
        cls.nginx_port = free_port()
        cls.other_port = free_port()
        conf = os.path.join(cls.tls_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=cls.tls_dir, port=cls.nginx_port, other_port=cls.other_port,
                                      upstream_port=cls.moto.port, user="user root;" if os.geteuid() == 0 else ""))
        cls.nginx_log = open(os.path.join(cls.tls_dir, "nginx.out"), "wb")
        cls.addClassCleanup(cls.nginx_log.close)
        cls.nginx = subprocess.Popen([NGINX, "-p", cls.tls_dir, "-c", conf, "-g", "daemon off;"],
                                     stdout=cls.nginx_log, stderr=subprocess.STDOUT, start_new_session=True)
        cls.addClassCleanup(stop_process, cls.nginx)
        context = ssl.create_default_context(cafile=cls.ca_file)

        def nginx_up():
            if cls.nginx.poll() is not None:
                raise RuntimeError("nginx exited: " + tail(os.path.join(cls.tls_dir, "nginx.out")) +
                                   tail(os.path.join(cls.tls_dir, "error.log")))
            try:
                urllib.request.urlopen(f"https://localhost:{cls.nginx_port}/", context=context, timeout=2)
            except urllib.error.HTTPError:
                pass  # moto answered (an unsigned request is refused) through nginx, over verified TLS
            return True
        wait_until(nginx_up, 20, 0.1, "nginx to serve TLS")

        cls.https_endpoint = f"https://localhost:{cls.nginx_port}"
        cls.tagd = cls.start_tagd(["--upstream-ca-file", cls.ca_file], upstream=cls.https_endpoint)
        cls.untrusting = cls.start_tagd([], upstream=cls.https_endpoint, name="tagd-no-ca")
        cls.wrong_name = cls.start_tagd(["--upstream-ca-file", cls.ca_file],
                                        upstream=f"https://localhost:{cls.other_port}", name="tagd-wrong-name")

    def test_put_get_list_through_https(self):
        s3 = self.tagd.client()
        bucket = unique("tls")
        s3.create_bucket(Bucket=bucket)
        data = os.urandom(3 * 1024 * 1024 + 17)
        s3.put_object(Bucket=bucket, Key="obj.bin", Body=data, Metadata={"via": "https"})
        s3.put_object(Bucket=bucket, Key="small.txt", Body=b"small")
        got = s3.get_object(Bucket=bucket, Key="obj.bin")
        self.assertEqual(got["Body"].read(), data)
        self.assertEqual(got["Metadata"], {"via": "https"})
        self.assertEqual(sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]),
                         ["obj.bin", "small.txt"])
        self.assertEqual(s3.get_object(Bucket=bucket, Key="obj.bin", Range="bytes=10-19")["Body"].read(),
                         data[10:20])
        # Ground truth, straight from moto (not through nginx).
        self.assertEqual(self.moto.object_bytes(bucket, "obj.bin"), data)
        s3.delete_object(Bucket=bucket, Key="small.txt")
        self.assertEqual(self.moto.keys(bucket), ["obj.bin"])
        # The traffic really went through nginx, and moto accepted tagd's signatures there.
        with open(os.path.join(self.tls_dir, "access.log")) as f:
            access = f.read()
        self.assertIn(f"PUT /{bucket}/obj.bin", access)
        m = self.tagd.metrics()
        self.assertEqual(m["tagd_upstream_tls_errors_total"], 0)

    def test_https_connections_are_kept_alive(self):
        # A TLS handshake per request would dominate small-object latency to Tigris.
        t = self.start_test_tagd(["--upstream-ca-file", self.ca_file, "--threads", "1"], upstream=self.https_endpoint)
        s3 = t.client()
        bucket = unique("tls-reuse")
        s3.create_bucket(Bucket=bucket)
        for i in range(8):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=os.urandom(1000 + i))
            self.assertEqual(len(s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read()), 1000 + i)
        m = t.metrics()
        self.assertLessEqual(m["tagd_upstream_connections_opened_total"], 2)
        self.assertGreaterEqual(m["tagd_upstream_connections_reused_total"], 14)

    def test_multipart_through_https(self):
        from boto3.s3.transfer import TransferConfig
        s3 = self.tagd.client()
        bucket = unique("tls-mpu")
        s3.create_bucket(Bucket=bucket)
        path = os.path.join(self.workdir, "mpu.bin")
        digest = harness.write_random_file(path, 12 * harness.MiB)
        try:
            s3.upload_file(path, bucket, "mpu.bin",
                           Config=TransferConfig(multipart_threshold=5 * harness.MiB,
                                                 multipart_chunksize=5 * harness.MiB))
        finally:
            os.unlink(path)
        self.assertEqual(harness.sha256_hex(self.moto.object_bytes(bucket, "mpu.bin")), digest)

    def test_unverifiable_certificate_is_refused(self):
        t = self.untrusting
        before = t.metrics()["tagd_upstream_tls_errors_total"]
        s3 = t.client()
        bucket = unique("tls-refused")
        with self.assertRaises(ClientError) as ctx:
            s3.create_bucket(Bucket=bucket)
        self.assertBotoError(ctx, 502, "BadGateway")
        message = ctx.exception.response["Error"]["Message"].lower()
        self.assertIn("certificate", message)
        self.assertIn("verif", message)
        with self.assertRaises(ClientError) as ctx:
            s3.get_object(Bucket=bucket, Key="k")
        self.assertBotoError(ctx, 502, "BadGateway")
        self.assertNotIn(bucket, [b["Name"] for b in self.moto.client().list_buckets()["Buckets"]])
        line = t.wait_for_log(r"\bwarn(ing)?\b.*TLS")
        self.assertIn("certificate", line.lower())
        self.assertGreater(t.metrics()["tagd_upstream_tls_errors_total"], before)


    def test_certificate_for_another_name_is_refused(self):
        # Trusting the CA is not enough: the certificate must name the endpoint's host.
        t = self.wrong_name
        with self.assertRaises(ClientError) as ctx:
            t.client().list_buckets()
        self.assertBotoError(ctx, 502, "BadGateway")
        message = ctx.exception.response["Error"]["Message"].lower()
        self.assertIn("certificate", message)
        self.assertIn("hostname mismatch", message)
        t.wait_for_log(r"\bwarn(ing)?\b.*TLS handshake.*hostname mismatch")

    def test_ip_literal_endpoint(self):
        # The certificate's IP:127.0.0.1 entry is checked when the endpoint is an address.
        t = self.start_test_tagd(["--upstream-ca-file", self.ca_file], upstream=f"https://127.0.0.1:{self.nginx_port}")
        s3 = t.client()
        bucket = unique("tls-ip")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"over an IP literal")
        self.assertEqual(s3.get_object(Bucket=bucket, Key="k")["Body"].read(), b"over an IP literal")
        self.assertEqual(self.moto.object_bytes(bucket, "k"), b"over an IP literal")


if __name__ == "__main__":
    unittest.main()
