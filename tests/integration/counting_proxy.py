"""A TCP proxy between tagd and its upstream that counts what crosses it: each HTTP request
tagd sends (method, target, Range header) and the bytes the upstream answers with. It is
how the workflow tests measure "the upstream paid for the file once" independently of
tagd's own metrics. Loopback only; started and stopped by the test."""
from __future__ import annotations

import socket
import threading


class CountingProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # {"method", "target", "range"}
        self.bytes_down = 0  # upstream -> tagd, heads included
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.bytes_down = 0

    def snapshot(self) -> tuple[list[dict], int]:
        with self.lock:
            return list(self.requests), self.bytes_down

    def stop(self):
        self.sock.close()
        with self.lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, src, dst):
        """tagd -> upstream: forwarded as is, request heads parsed on the way."""
        buf = b""
        skip = 0  # body bytes of the current request still to pass
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                buf += data
                while True:
                    if skip:
                        n = min(skip, len(buf))
                        buf, skip = buf[n:], skip - n
                        if skip:
                            break
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buf = buf[:end].decode("latin-1"), buf[end + 4:]
                    lines = head.split("\r\n")
                    method, target = lines[0].split(" ")[:2]
                    headers = {}
                    for line in lines[1:]:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                    with self.lock:
                        self.requests.append({"method": method, "target": target, "range": headers.get("range")})
                    skip = int(headers.get("content-length", "0") or 0)
                    if headers.get("transfer-encoding", "").lower() == "chunked":
                        return self._pipe_rest(src, dst)  # not parsed further (no test needs it)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _pipe_rest(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _down(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
