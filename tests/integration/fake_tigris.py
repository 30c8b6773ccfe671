"""A small fake Tigris for tagd's integration tests: an S3 subset (path-style buckets and
objects, ranges, conditionals, ListObjectsV2, CopyObject, DeleteObject) plus the Tigris
snapshot and fork headers, which moto does not implement:

- CreateBucket with `X-Tigris-Enable-Snapshot: true` makes a bucket that keeps history;
- CreateBucket of an existing snapshot-enabled bucket with `X-Tigris-Snapshot: true;
  name=<n>` takes a snapshot and answers its version in `X-Tigris-Snapshot-Version`;
- ListBuckets with `X-Tigris-Snapshot: <bucket>` lists that bucket's snapshots;
- `X-Tigris-Snapshot-Version: <version>` on GetObject, HeadObject, ListObjectsV2 and
  CopyObject (the copy's source) reads as of that version (any past Unix-nanosecond time);
- CreateBucket with `X-Tigris-Fork-Source-Bucket: <src>` (and optionally
  `X-Tigris-Fork-Source-Bucket-Snapshot: <version>`) creates a bucket that starts as
  <src> at that version and then lives on its own.

It checks no signature (tagd's re-signing is proven against moto elsewhere) but records
every request it received (method, target, headers with lower-case names), so a test can
check what tagd passed through and what it signed. Threaded stdlib http.server on
127.0.0.1; start() and stop() by the test."""
from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
import urllib.parse
from email.utils import formatdate
from xml.sax.saxutils import escape


class _Clock:
    """Strictly increasing Unix-nanosecond versions."""

    def __init__(self):
        self.last = 0
        self.lock = threading.Lock()

    def now(self) -> int:
        with self.lock:
            self.last = max(self.last + 1, time.time_ns())
            return self.last


class FakeTigris:
    def __init__(self):
        self.clock = _Clock()
        self.lock = threading.Lock()
        # bucket -> {"snapshots_enabled": bool, "objects": {key: [(version, data|None)]},
        #            "snapshots": [(name, version)]}
        self.buckets: dict[str, dict] = {}
        self.requests: list[dict] = []
        self._server = None

    # ---- lifecycle
    def start(self) -> "FakeTigris":
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake.lock:
                    fake.requests.append({"method": self.command, "target": self.path, "headers": headers,
                                          "body_length": len(body)})
                status, out_headers, out_body = fake.handle(self.command, self.path, headers, body)
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in out_headers:
                    self.send_header("Content-Length", str(len(out_body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out_body)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _serve

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---- what the tests look at
    def requests_for(self, method: str, path_prefix: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["target"].startswith(path_prefix)]

    @staticmethod
    def signed_headers(request: dict) -> list[str]:
        m = re.search(r"SignedHeaders=([^,\s]+)", request["headers"].get("authorization", ""))
        return m.group(1).split(";") if m else []

    # ---- S3
    @staticmethod
    def _error(status: int, code: str, message: str = "") -> tuple[int, dict, bytes]:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{escape(message or code)}</Message></Error>").encode()
        return status, {"Content-Type": "application/xml"}, body

    @staticmethod
    def _etag(data: bytes) -> str:
        return '"' + hashlib.md5(data).hexdigest() + '"'

    def _state(self, bucket: str, key: str, as_of: int | None):
        """(version, data) of key as of `as_of` (None: now), or None if absent/deleted."""
        history = self.buckets[bucket]["objects"].get(key, [])
        for version, data in reversed(history):
            if as_of is None or version <= as_of:
                return None if data is None else (version, data)
        return None

    def _keys(self, bucket: str, as_of: int | None) -> list[str]:
        return sorted(k for k in self.buckets[bucket]["objects"] if self._state(bucket, k, as_of) is not None)

    def handle(self, method: str, target: str, h: dict, body: bytes):
        parsed = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        parts = urllib.parse.unquote(parsed.path).lstrip("/").split("/", 1)
        bucket = parts[0]
        key = parts[1] if len(parts) > 1 else ""
        as_of = h.get("x-tigris-snapshot-version")
        if as_of is not None:
            if not as_of.isdigit():
                return self._error(400, "InvalidArgument", "bad X-Tigris-Snapshot-Version")
            as_of = int(as_of)
        with self.lock:
            if not bucket:
                return self._list_buckets(h)
            if not key and method == "PUT":
                return self._create_bucket(bucket, h)
            if bucket not in self.buckets:
                return self._error(404, "NoSuchBucket")
            if not key and method == "GET":
                return self._list_objects(bucket, query, as_of)
            if not key and method == "HEAD":
                return 200, {}, b""
            if method == "PUT":
                return self._put(bucket, key, h, body)
            if method == "DELETE":
                self.buckets[bucket]["objects"].setdefault(key, []).append((self.clock.now(), None))
                return 204, {}, b""
            if method in ("GET", "HEAD"):
                return self._get(bucket, key, h, as_of, method)
        return self._error(501, "NotImplemented")

    def _list_buckets(self, h: dict):
        of = h.get("x-tigris-snapshot")
        if of:
            snaps = self.buckets.get(of, {}).get("snapshots", [])
            items = "".join(f"<Bucket><Name>{escape(n)}</Name><CreationDate>{v}</CreationDate></Bucket>"
                            for n, v in snaps)
        else:
            items = "".join(f"<Bucket><Name>{escape(n)}</Name></Bucket>" for n in sorted(self.buckets))
        return 200, {"Content-Type": "application/xml"}, \
            f"<ListAllMyBucketsResult><Buckets>{items}</Buckets></ListAllMyBucketsResult>".encode()

    def _create_bucket(self, bucket: str, h: dict):
        snapshot = h.get("x-tigris-snapshot")
        if snapshot:
            b = self.buckets.get(bucket)
            if b is None:
                return self._error(404, "NoSuchBucket")
            if not b["snapshots_enabled"]:
                return self._error(400, "InvalidRequest", "snapshots are not enabled on this bucket")
            m = re.match(r"\s*true\s*(?:;\s*name=(.*))?$", snapshot)
            if not m:
                return self._error(400, "InvalidArgument", "bad X-Tigris-Snapshot")
            version = self.clock.now()
            b["snapshots"].append((m.group(1) or "", version))
            return 200, {"X-Tigris-Snapshot-Version": str(version)}, b""
        if bucket in self.buckets:
            return self._error(409, "BucketAlreadyOwnedByYou")
        new = {"snapshots_enabled": h.get("x-tigris-enable-snapshot", "").lower() == "true",
               "objects": {}, "snapshots": []}
        source = h.get("x-tigris-fork-source-bucket")
        if source:
            if source not in self.buckets:
                return self._error(404, "NoSuchBucket", "fork source")
            at = h.get("x-tigris-fork-source-bucket-snapshot")
            at = int(at) if at else None
            version = self.clock.now()
            for k in self._keys(source, at):
                new["objects"][k] = [(version, self._state(source, k, at)[1])]
            new["snapshots_enabled"] = True
        self.buckets[bucket] = new
        return 200, {}, b""

    def _list_objects(self, bucket: str, query: dict, as_of: int | None):
        prefix = query.get("prefix", "")
        items = ""
        keys = [k for k in self._keys(bucket, as_of) if k.startswith(prefix)]
        for k in keys:
            version, data = self._state(bucket, k, as_of)
            items += (f"<Contents><Key>{escape(k)}</Key><Size>{len(data)}</Size>"
                      f"<ETag>{escape(self._etag(data))}</ETag></Contents>")
        return 200, {"Content-Type": "application/xml"}, (
            f'<ListBucketResult><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>'
            f"<KeyCount>{len(keys)}</KeyCount><IsTruncated>false</IsTruncated>{items}</ListBucketResult>").encode()

    def _put(self, bucket: str, key: str, h: dict, body: bytes):
        source = h.get("x-amz-copy-source")
        if source:
            src = urllib.parse.unquote(source.split("?", 1)[0]).lstrip("/")
            sb, _, sk = src.partition("/")
            as_of = h.get("x-tigris-snapshot-version")
            state = self._state(sb, sk, int(as_of) if as_of else None) if sb in self.buckets else None
            if state is None:
                return self._error(404, "NoSuchKey")
            data = state[1]
            self.buckets[bucket]["objects"].setdefault(key, []).append((self.clock.now(), data))
            return 200, {"Content-Type": "application/xml"}, (
                f"<CopyObjectResult><ETag>{escape(self._etag(data))}</ETag>"
                f"<LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>").encode()
        self.buckets[bucket]["objects"].setdefault(key, []).append((self.clock.now(), body))
        return 200, {"ETag": self._etag(body)}, b""

    def _get(self, bucket: str, key: str, h: dict, as_of: int | None, method: str):
        state = self._state(bucket, key, as_of)
        if state is None:
            return (404, {}, b"") if method == "HEAD" else self._error(404, "NoSuchKey")
        version, data = state
        etag = self._etag(data)
        common = {"ETag": etag, "Last-Modified": formatdate(version / 1e9, usegmt=True),
                  "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if "if-match" in h and h["if-match"].strip() not in (etag, "*"):
            return self._error(412, "PreconditionFailed")
        if "if-none-match" in h and h["if-none-match"].strip() in (etag, "*"):
            return 304, {"ETag": etag}, b""
        rng = h.get("range")
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if m:
                size = len(data)
                if m.group(1):
                    first = int(m.group(1))
                    last = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                else:
                    first, last = max(size - int(m.group(2)), 0), size - 1
                if first >= size:
                    return self._error(416, "InvalidRange")
                piece = data[first:last + 1]
                common.update({"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(len(piece))})
                return 206, common, piece
        common["Content-Length"] = str(len(data))
        return 200, common, data
