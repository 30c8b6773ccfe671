"""A local webhook receiver for tagd's upload-notification tests: a threaded stdlib HTTP
server on 127.0.0.1 that records every POST (headers, raw body, parsed events), can be
stopped and started again on the same port, and can be told to fail."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time


class WebhookReceiver:
    def __init__(self, port: int, secret: str | None = None, token: str | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.secret = secret
        self.token = token
        self.fail_with = 0  # answer this status instead of 200 when non-zero
        self.posts: list[dict] = []
        self.bad_signatures = 0
        self.bad_auth = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.fail_with or 200
                with receiver._lock:
                    if receiver.secret is not None:
                        want = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                        if not hmac.compare_digest(want, headers.get("x-tagd-signature", "")):
                            receiver.bad_signatures += 1
                            status = 401
                    if receiver.token is not None and headers.get("authorization") != f"Bearer {receiver.token}":
                        receiver.bad_auth += 1
                        status = 401
                    if status == 200:
                        receiver.posts.append({"headers": headers, "body": body, "events": json.loads(body)["events"]})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[dict]:
        with self._lock:
            return [e for p in self.posts for e in p["events"]]

    def keys(self, name: str | None = None) -> list[str]:
        return [e["object"]["key"] for e in self.events() if name is None or e["eventName"] == name]

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "events"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self.events()):
                return self.events()
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {[(e['eventName'], e['object']['key']) for e in self.events()]}")
