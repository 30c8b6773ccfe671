"""Shared plumbing for tagd's integration tests.

Starts a real moto S3 server on a free loopback port with SigV4 checking on (so the
upstream itself proves tagd's re-signed requests are correct), and tagd in front of it,
then gives tests boto3 clients, raw signed requests and process introspection (peak
RSS, /metrics, the log).

moto's quirk: its signature check rebuilds the URL from werkzeug's decoded form, so it
refuses correctly signed requests whose path has '+', non-ASCII or other reserved
characters, or whose query values contain '/', '=' etc. (boto3 straight to moto fails
the same way). Tests against a signature-checking moto therefore use plain names;
test_gateway.AwkwardNamesTest covers the others with moto's checks off.

Everything is started and stopped by pid; nothing here touches processes it did not
start. Environment:
  TAGD_BINARY      path of the built tagd (default: <source>/build/tagd)
  TAGD_SOURCE_DIR  source tree (default: two levels above this file)
"""
from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
import xml.etree.ElementTree as ET
import zlib
from typing import Iterable
from unittest import mock

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.config import Config as BotoConfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TAGD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_DIR, "scripts"))
from local_s3 import create_s3_user  # noqa: E402  (shared with the demo)
TAGD_BINARY = os.environ.get("TAGD_BINARY") or os.path.join(SOURCE_DIR, "build", "tagd")
REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MiB = 1024 * 1024

# Client keys every standard tagd gets (see credentials_doc()).
ADMIN_KEY = ("AKIDTAGDADMIN0000001", "admin-secret-0123456789abcdefghijklmnop")
READER_KEY = ("AKIDTAGDREADER000001", "reader-secret-0123456789abcdefghijklmno")
# The reader may only read (and list) under this prefix of READER_BUCKET.
READER_BUCKET = "policy-bucket"
READER_PREFIX = "public-"  # (no '/': moto mis-checks signatures of "prefix=a%2F" listings)
# A key that may do anything, but only under this prefix of READER_BUCKET
# (see writer_credentials_doc()).
WRITER_KEY = ("AKIDTAGDWRITER000001", "writer-secret-0123456789abcdefghijklmno")
WRITER_PREFIX = "scratch-"


# ----------------------------------------------------------------------------- ports, waits

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_error = e
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")


def wait_fill_stored(tagd, block_file: str, needle: bytes, timeout: float = 10.0, read_limit: int = -1):
    """Waits until a fill's block holding `needle` is in `block_file` and tagd's fill write
    queue is empty: fills are written on a writer thread after the client has its answer,
    so a test that edits the block file must not race a late write. `read_limit`: search
    only the file's first bytes (block files are preallocated, often far larger)."""
    def stored():
        with open(block_file, "rb") as f:
            on_disk = f.read(read_limit).find(needle) >= 0
        return on_disk and tagd.metrics().get("tagd_cache_fill_write_queue_bytes", 0) == 0
    wait_until(stored, timeout, what="the fill's block to be written")


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Stops one process we started, by its pid: signal, wait, then kill."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# ----------------------------------------------------------------------------- moto

class Moto:
    """moto's S3 server with signature checking on, plus an IAM user tagd signs as."""

    def __init__(self, workdir: str, auth: bool = True):
        self.workdir = workdir
        self.auth = auth
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, f"moto-{self.port}.log")
        self.proc: subprocess.Popen | None = None
        self.access_key = ""
        self.secret_key = ""

    def start(self) -> "Moto":
        env = dict(os.environ)
        # The first 3 requests skip auth (they create the IAM user); after that moto
        # checks every request's SigV4 signature and the user's policy.
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        wait_until(up, 30, 0.1, "moto to listen")
        if not self.auth:
            self.access_key, self.secret_key = "unchecked", "unchecked"
            return self
        self.access_key, self.secret_key = create_s3_user(self.endpoint)
        return self

    def client(self):
        """boto3 straight to moto with the upstream key: the ground truth for tests."""
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in `bucket` starting with `prefix`, straight from moto. (The prefix
        is applied here: moto's signature check mis-decodes '/' in query values.)"""
        out, token = [], None
        s3 = self.client()
        while True:
            kw = {"Bucket": bucket}
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_objects_v2(**kw)
            out += [o["Key"] for o in r.get("Contents", []) if o["Key"].startswith(prefix)]
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def object_bytes(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self):
        stop_process(self.proc)
        if getattr(self, "_log", None):
            self._log.close()


# ----------------------------------------------------------------------------- tagd

def credentials_doc(extra: Iterable[dict] = ()) -> dict:
    keys = [
        {"access_key_id": ADMIN_KEY[0], "secret_access_key": ADMIN_KEY[1],
         "grants": [{"bucket": "*", "actions": ["*"]}]},
        {"access_key_id": READER_KEY[0], "secret_access_key": READER_KEY[1],
         "grants": [{"bucket": READER_BUCKET, "prefix": READER_PREFIX, "actions": ["read", "list"]}]},
    ]
    keys += list(extra)
    return {"keys": keys}


def writer_credentials_doc() -> dict:
    """The standard keys plus WRITER_KEY, limited to WRITER_PREFIX of READER_BUCKET."""
    return credentials_doc([{"access_key_id": WRITER_KEY[0], "secret_access_key": WRITER_KEY[1],
                             "grants": [{"bucket": READER_BUCKET, "prefix": WRITER_PREFIX, "actions": ["*"]}]}])


class Tagd:
    """One tagd process in front of `upstream_endpoint`."""

    def __init__(self, workdir: str, upstream_endpoint: str, upstream_key: tuple[str, str] | None,
                 extra_args: Iterable[str] = (), env: dict | None = None, credentials: dict | bool | None = None,
                 region: str = REGION, name: str = "tagd"):
        self.workdir = workdir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, f"{name}-{self.port}.log")
        self.args = [TAGD_BINARY, "--port", str(self.port), "--upstream-endpoint", upstream_endpoint,
                     "--upstream-region", region, "--log-level", "info"]
        self.credentials_path = None
        if credentials is not False:  # False: no credentials file (e.g. the AWS_* shortcut)
            self.credentials_path = os.path.join(workdir, f"{name}-{self.port}-credentials.json")
            with open(self.credentials_path, "w") as f:
                json.dump(credentials if credentials is not None else credentials_doc(), f)
            self.args += ["--credentials-file", self.credentials_path]
        if upstream_key:
            self.args += ["--upstream-access-key-id", upstream_key[0],
                          "--upstream-secret-access-key", upstream_key[1]]
        extra_args = list(extra_args)
        if "--cache-disk-path" not in extra_args and "--cache-disabled" not in extra_args:
            # Each tagd gets its own small cache in the test's directory.
            self.args += ["--cache-disk-path", os.path.join(workdir, f"{name}-{self.port}-cache"),
                          "--cache-max-disk-usage", "128MiB", "--cache-region-size", "4MiB",
                          "--cache-memory-size", "32MiB"]
        self.args += extra_args
        # TAGD_TEST_IO_URING=off (ctest's integration_io_uring_off.* run) starts every tagd
        # that does not choose for itself with io_uring off: the suite must pass on the
        # fallback (epoll sockets, pread thread pool) too.
        if os.environ.get("TAGD_TEST_IO_URING") == "off" and "--io-uring" not in extra_args:
            self.args += ["--io-uring", "off"]
        self.env = dict(os.environ)
        # Only what the test says: no ambient AWS_*/TAG_* settings.
        for k in list(self.env):
            if k.startswith("TAG_") or k.startswith("AWS_"):
                del self.env[k]
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "Tagd":
        if not os.access(TAGD_BINARY, os.X_OK):
            raise RuntimeError(f"tagd binary not found at {TAGD_BINARY} (set TAGD_BINARY)")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20.0):
        def healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tagd exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            status, _, body = http_get(self.port, "/health", timeout=1)
            return status == 200
        try:
            wait_until(healthy, timeout, 0.05, "tagd /health")
        except Exception:
            print(f"\n--- tagd log ({self.log_path}) ---\n{tail(self.log_path)}", file=sys.stderr)
            raise

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        rc = stop_process(self.proc, timeout)
        if getattr(self, "_log", None):
            self._log.close()
        return rc

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        rx = re.compile(pattern)

        def found():
            for line in self.log().splitlines():
                if rx.search(line):
                    return line
            return None
        return wait_until(found, timeout, 0.05, f"log line matching {pattern!r}")

    def status_field(self, field: str) -> int:
        """A kB value from /proc/PID/status (VmHWM, VmRSS), in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(field)

    def peak_rss(self) -> int:
        return self.status_field("VmHWM")

    def rss(self) -> int:
        return self.status_field("VmRSS")

    def metrics(self) -> dict[str, float]:
        status, _, body = http_get(self.port, "/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return parse_prometheus(body.decode())

    def client(self, key: tuple[str, str] = ADMIN_KEY, **config):
        return s3_client(self.endpoint, key, **config)


def parse_prometheus(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def s3_client(endpoint: str, key: tuple[str, str], **config):
    cfg = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4", "retries": {"max_attempts": 1},
           "connect_timeout": 10, "read_timeout": 120}
    cfg.update(config)
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], config=BotoConfig(**cfg))


# ----------------------------------------------------------------------------- raw signed requests

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign_headers(method: str, url: str, headers: dict, payload_hash: str, key: tuple[str, str] = ADMIN_KEY,
                 when: datetime.datetime | None = None) -> dict:
    """SigV4-signs a request with botocore.auth.SigV4Auth; returns the headers to send.

    `url` names the host the signature covers (e.g. http://bucket.localhost:PORT/key);
    `payload_hash` goes into x-amz-content-sha256 as given. `when` (UTC) fakes the
    signing time, for clock-skew tests.
    """
    request = botocore.awsrequest.AWSRequest(method=method, url=url, headers=dict(headers))
    request.headers["X-Amz-Content-SHA256"] = payload_hash
    creds = botocore.credentials.Credentials(key[0], key[1])
    signer = botocore.auth.SigV4Auth(creds, "s3", REGION)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda: when):
            signer.add_auth(request)
    return dict(request.headers.items())


def signature_of(headers: dict) -> str:
    return re.search(r"Signature=([0-9a-f]{64})", headers["Authorization"]).group(1)


def raw_request(port: int, method: str, path: str, headers, body=None, timeout: float = 30.0):
    """Sends one request over a fresh connection; returns (status, headers, body).
    `headers` is a dict, or a list of (name, value) pairs when a name must repeat."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in (headers.items() if isinstance(headers, dict) else headers):
            conn.putheader(k, v)
        conn.endheaders()
        try:
            if body is not None:
                if isinstance(body, (bytes, bytearray, memoryview)):
                    conn.send(body)
                else:
                    for piece in body:
                        conn.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            # The server answered early and closed (an error mid-upload): read the answer.
            pass
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def signed_request(tagd_port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                   key: tuple[str, str] = ADMIN_KEY, payload_hash: str | None = None,
                   send_body=None, when: datetime.datetime | None = None, host: str | None = None):
    """Signs (method, path, headers, sha256(body)) and sends it to tagd, optionally with
    a different body (`send_body`) than the one signed."""
    host = host or f"127.0.0.1:{tagd_port}"
    h = {"Host": host}
    h.update(headers or {})
    if method in ("PUT", "POST") or body:
        h.setdefault("Content-Length", str(len(send_body if send_body is not None else body)))
    signed = sign_headers(method, f"http://{host}{path}", h,
                          payload_hash if payload_hash is not None else sha256_hex(body), key, when)
    return raw_request(tagd_port, method, path, signed, send_body if send_body is not None else body)


def open_signed_get(port: int, path: str, http_version: str = "1.1", rcvbuf: int | None = None,
                    timeout: float = 30.0) -> socket.socket:
    """Sends a SigV4-signed GET head over a raw socket and returns the socket, for tests
    that control how (and whether) the response is read. `rcvbuf` shrinks the receive
    buffer so the kernel cannot absorb a large body on the reader's behalf."""
    host = f"127.0.0.1:{port}"
    headers = sign_headers("GET", f"http://{host}{path}", {"Host": host}, EMPTY_SHA256)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    head = f"GET {path} HTTP/{http_version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    return sock


def s3_error(body: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 XML error body."""
    root = ET.fromstring(body)
    return root.findtext("Code") or "", root.findtext("Message") or ""


# ----------------------------------------------------------------------------- aws-chunked

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str = REGION, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def encode_signed_chunks(payload: bytes, chunk_size: int, seed_signature: str, amz_date: str, secret: str,
                         tamper_chunk: int | None = None) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD framing. Each chunk's signature chains off the
    previous one (the first off the request's own signature). With tamper_chunk=i the
    data of chunk i is altered after signing (same length)."""
    date = amz_date[:8]
    scope = f"{date}/{REGION}/s3/aws4_request"
    key = signing_key(secret, date)
    prev = seed_signature
    out = bytearray()
    chunks = [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for i, chunk in enumerate(chunks):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256, sha256_hex(chunk)])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        prev = sig
        data = chunk
        if tamper_chunk is not None and i == tamper_chunk:
            data = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        # The final chunk ("0;chunk-signature=...\r\n\r\n") ends the body.
        out += f"{len(chunk):x};chunk-signature={sig}\r\n".encode() + data + b"\r\n"
    return bytes(out)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def checksum_b64(algorithm: str, data: bytes) -> str:
    """Base64 x-amz-checksum-<algorithm> value (crc32, crc32c, sha1, sha256)."""
    if algorithm == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif algorithm == "crc32c":
        raw = crc32c(data).to_bytes(4, "big")
    else:
        raw = hashlib.new(algorithm, data).digest()
    return base64.b64encode(raw).decode()


def encode_unsigned_trailer_chunks(payload: bytes, chunk_size: int, trailer_name: str, trailer_value: str) -> bytes:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER framing with one trailing checksum header."""
    out = bytearray()
    for i in range(0, len(payload), chunk_size):
        chunk = payload[i:i + chunk_size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n" + f"{trailer_name}:{trailer_value}\r\n".encode() + b"\r\n"
    return bytes(out)


def streaming_put(tagd_port: int, path: str, payload: bytes, *, mode: str, chunk_size: int = 64 * 1024,
                  key: tuple[str, str] = ADMIN_KEY, tamper_chunk: int | None = None,
                  trailer_value: str | None = None, pace: float = 0.0, trailer_algorithm: str = "crc32"):
    """PUTs `payload` as an aws-chunked body (mode: STREAMING_SIGNED or
    STREAMING_UNSIGNED_TRAILER). `pace` sleeps between 64 KiB writes so tagd streams
    the early chunks upstream before it sees the end."""
    host = f"127.0.0.1:{tagd_port}"
    headers = {"Host": host, "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(payload))}
    if mode == STREAMING_SIGNED:
        # The framing length depends only on the chunk sizes, so sign a dummy first.
        dummy = encode_signed_chunks(payload, chunk_size, "0" * 64, "20000101T000000Z", key[1])
        headers["Content-Length"] = str(len(dummy))
        signed = sign_headers("PUT", f"http://{host}{path}", headers, STREAMING_SIGNED, key)
        body = encode_signed_chunks(payload, chunk_size, signature_of(signed), signed["X-Amz-Date"], key[1],
                                    tamper_chunk)
        assert len(body) == len(dummy)
    elif mode == STREAMING_UNSIGNED_TRAILER:
        value = trailer_value if trailer_value is not None else checksum_b64(trailer_algorithm, payload)
        trailer = f"x-amz-checksum-{trailer_algorithm}"
        body = encode_unsigned_trailer_chunks(payload, chunk_size, trailer, value)
        headers["Content-Length"] = str(len(body))
        headers["x-amz-trailer"] = trailer
        signed = sign_headers("PUT", f"http://{host}{path}", headers, STREAMING_UNSIGNED_TRAILER, key)
    else:
        raise ValueError(mode)

    def pieces():
        step = 64 * 1024
        for i in range(0, len(body), step):
            yield body[i:i + step]
            if pace:
                time.sleep(pace)
    return raw_request(tagd_port, "PUT", path, signed, pieces())


# ----------------------------------------------------------------------------- a scriptable upstream

class FakeUpstream:
    """A tiny HTTP/1.1 server standing in for the upstream when a test needs to see
    exactly what tagd sends, or to misbehave on purpose. `respond(request)` gets a dict
    (method, target, headers (lower-case names), body, index) and returns the raw bytes
    to send, or None to close the connection without answering. Keep-alive is honoured
    unless the response says Connection: close."""

    def __init__(self, respond, read_pace: float = 0.0):
        import threading
        self.respond = respond
        self.read_pace = read_pace  # seconds to sleep after each 64 KiB of request body
        self.requests: list[dict] = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if read_pace:
            # A small window, so a slow reader really holds the sender back.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._open = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = f.readline().decode("latin-1")
                    if h in ("\r\n", "\n", ""):
                        break
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(f.readline().split(b";")[0], 16)
                        if size == 0:
                            while f.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        body += f.read(size)
                        f.readline()
                elif "content-length" in headers:
                    left = int(headers["content-length"])
                    parts = []
                    while left:
                        piece = f.read(min(left, 64 * 1024))
                        if not piece:
                            return
                        parts.append(piece)
                        left -= len(piece)
                        if self.read_pace:
                            time.sleep(self.read_pace)
                    body = b"".join(parts)
                with self._lock:
                    request = {"method": method, "target": target, "headers": headers, "body": body,
                               "index": len(self.requests)}
                    self.requests.append(request)
                out = self.respond(request)
                if out is None:
                    return
                conn.sendall(out)
                if b"\r\nconnection: close\r\n" in out.split(b"\r\n\r\n", 1)[0].lower() + b"\r\n":
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    @staticmethod
    def response(status: int, body: bytes = b"", headers: dict | None = None, chunked: bool = False,
                 content_length: int | None = None) -> bytes:
        """Raw response bytes; content_length overrides the length announced (HEAD)."""
        lines = [f"HTTP/1.1 {status} X"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            payload = b"".join(f"{len(body[i:i + 7000]):x}\r\n".encode() + body[i:i + 7000] + b"\r\n"
                               for i in range(0, len(body), 7000)) + b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
            payload = body
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    def stop(self):
        self.sock.close()
        with self._lock:
            for c in self._open:
                with contextlib.suppress(OSError):
                    c.close()


# ----------------------------------------------------------------------------- files

def write_random_file(path: str, size: int) -> str:
    """Writes `size` pseudo-random bytes; returns their SHA-256 (hex)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(4 * MiB, left))
            f.write(piece)
            h.update(piece)
            left -= len(piece)
    return h.hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- base test case

def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class TagdTestCase(unittest.TestCase):
    """One moto and one tagd per test class; on any failure the tagd log tail is printed."""

    tagd_args: list[str] = []
    moto_auth = True
    tagd_env: dict = {}

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="tagd-it-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.moto = Moto(cls.workdir, auth=cls.moto_auth)
        cls.addClassCleanup(cls.moto.stop)
        cls.moto.start()
        cls.tagd = cls.start_tagd(cls.tagd_args, cls.tagd_env)

    @classmethod
    def start_tagd(cls, args=(), env=None, upstream: str | None = None, wait: bool = True, **kw) -> Tagd:
        t = Tagd(cls.workdir, upstream or cls.moto.endpoint, (cls.moto.access_key, cls.moto.secret_key),
                 extra_args=args, env=env, **kw)
        cls.addClassCleanup(t.stop)
        t.start(wait=wait)
        return t

    def start_test_tagd(self, args=(), env=None, upstream: str | None = None, wait: bool = True,
                        upstream_key: tuple[str, str] | bool | None = True, **kw) -> Tagd:
        """A tagd of this test's own, stopped when the test ends. upstream_key=True signs
        as moto's user; None passes no upstream key flags."""
        if upstream_key is True:
            upstream_key = (self.moto.access_key, self.moto.secret_key)
        t = Tagd(self.workdir, upstream or self.moto.endpoint, upstream_key, extra_args=args, env=env, **kw)
        self.__dict__.setdefault("_test_tagds", []).append(t)
        self.addCleanup(t.stop)
        t.start(wait=wait)
        return t

    def tearDown(self):
        # unittest records a failure in the result as soon as it happens (this
        # includes failed subtests, whose test_case is this test).
        result = getattr(getattr(self, "_outcome", None), "result", None)
        problems = (getattr(result, "failures", []) or []) + (getattr(result, "errors", []) or [])
        if any(getattr(t, "test_case", t) is self for t, _ in problems):
            for t in self._tagds_to_report():
                state = "running" if t.alive() else f"exited with {t.proc.returncode if t.proc else 'never started'}"
                print(f"\n--- tail of tagd log {t.log_path} (tagd {state}) ---\n{t.log_tail(80)}\n--- end ---",
                      file=sys.stderr)

    def _tagds_to_report(self) -> list[Tagd]:
        out = []
        for v in list(vars(type(self)).values()) + list(vars(self).values()):
            if isinstance(v, Tagd) and v not in out:
                out.append(v)
        if isinstance(getattr(self, "tagd", None), Tagd) and self.tagd not in out:
            out.append(self.tagd)
        out += [t for t in self.__dict__.get("_test_tagds", []) if t not in out]
        return out

    # ---- assertions
    def assertS3Error(self, response, status: int, code: str, message_contains: str | None = None):
        st, headers, body = response
        self.assertEqual(st, status, f"expected {status} {code}, got {st}: {body[:500]!r}")
        self.assertTrue(headers.get("x-amz-request-id"), f"no x-amz-request-id in {headers}")
        got_code, message = s3_error(body)
        self.assertEqual(got_code, code, body)
        if message_contains:
            self.assertIn(message_contains.lower(), message.lower())
        return message

    def assertBotoError(self, ctx, status: int, code: str):
        err = ctx.exception.response
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status, err)
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertTrue(err["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id"), err)
