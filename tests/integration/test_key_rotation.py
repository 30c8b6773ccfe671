"""Client key rotation: SIGHUP re-reads auth.credentials_file.

A rotated key works from the next request on and the retired one is refused, on the same
kept-alive connection opened before the reload (no connection is dropped); a broken file
is refused with an error log line and the keys in use stay. Counted in
tagd_credentials_reloads_total{result="ok|failed"}."""
import http.client
import json
import os
import signal
import unittest

import harness
from harness import ADMIN_KEY, EMPTY_SHA256, TagdTestCase, credentials_doc, s3_error, sign_headers, unique

OLD_KEY = ("AKIDROTATEOLD0000001", "old-secret-0123456789abcdefghijklmnopqrs")
NEW_KEY = ("AKIDROTATENEW0000001", "new-secret-0123456789abcdefghijklmnopqrs")


def full_access(key) -> dict:
    return {"access_key_id": key[0], "secret_access_key": key[1], "grants": [{"bucket": "*", "actions": ["*"]}]}


class KeyRotationTest(TagdTestCase):
    # moto checks tagd's re-signed requests; the listings here have no delimiter.
    tagd_args = ["--cache-disabled"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bucket = unique("rotate")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def write_keys(self, doc):
        tmp = self.tagd.credentials_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        os.replace(tmp, self.tagd.credentials_path)

    def sighup_and_wait(self, pattern: str):
        before = self.tagd.log().count("\n")
        self.tagd.proc.send_signal(signal.SIGHUP)

        def logged():
            lines = self.tagd.log().splitlines()[before:]
            return any(__import__("re").search(pattern, line) for line in lines)
        harness.wait_until(logged, 5, what=f"log line matching {pattern!r}")

    def list_on(self, conn: http.client.HTTPConnection, key):
        """A signed ListObjectsV2 on an existing connection: (status, S3 code or '')."""
        host = f"127.0.0.1:{self.tagd.port}"
        path = f"/{self.bucket}?list-type=2"
        headers = sign_headers("GET", f"http://{host}{path}", {"Host": host}, EMPTY_SHA256, key)
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        return r.status, (s3_error(body)[0] if r.status >= 300 else "")

    def reloads(self) -> tuple[float, float]:
        m = self.tagd.metrics()
        return (m['tagd_credentials_reloads_total{result="ok"}'], m['tagd_credentials_reloads_total{result="failed"}'])

    def test_rotation_keeps_connections_and_a_broken_file_keeps_the_keys(self):
        self.write_keys(credentials_doc([full_access(OLD_KEY)]))
        self.sighup_and_wait(r"client keys reloaded: 3 key\(s\)")
        ok0, failed0 = self.reloads()

        conn = http.client.HTTPConnection("127.0.0.1", self.tagd.port, timeout=10)
        self.assertEqual(self.list_on(conn, OLD_KEY), (200, ""))
        sock = conn.sock

        # Rotate: the old key retired, a new one added.
        self.write_keys(credentials_doc([full_access(NEW_KEY)]))
        self.sighup_and_wait(r"client keys reloaded: 3 key\(s\)")
        self.assertEqual(self.list_on(conn, NEW_KEY), (200, ""))
        self.assertEqual(self.list_on(conn, OLD_KEY), (403, "InvalidAccessKeyId"))
        self.assertEqual(self.list_on(conn, ADMIN_KEY), (200, ""))
        self.assertIs(conn.sock, sock, "the connection opened before the reload was dropped")
        self.assertEqual(self.tagd.metrics()["tagd_client_keys"], 3)

        # A half-written file: refused, the keys in use stay.
        self.write_keys('{"keys": [{"access_key_id": "AKIDHALF"')
        self.sighup_and_wait(r"client keys reload refused, keeping the 3 key\(s\) in use: credentials file .*")
        self.assertEqual(self.list_on(conn, NEW_KEY), (200, ""))
        # A file without any key (auth.allow_anonymous is off): refused too.
        self.write_keys({"keys": []})
        self.sighup_and_wait(r"client keys reload refused, keeping the 3 key\(s\) in use: it leaves no client key")
        self.assertEqual(self.list_on(conn, NEW_KEY), (200, ""))
        self.assertIs(conn.sock, sock)
        conn.close()

        ok1, failed1 = self.reloads()
        self.assertEqual((ok1 - ok0, failed1 - failed0), (1, 2))
        self.assertTrue(self.tagd.alive())
        # The log says which problem, at error level.
        self.assertRegex(self.tagd.log(), r"error \[tagd\] client keys reload refused")

    def test_a_request_in_flight_across_a_reload_completes(self):
        """An upload whose head was verified before the reload finishes after it, even
        though its key is retired meanwhile (the request holds the store it began with)."""
        self.write_keys(credentials_doc([full_access(OLD_KEY)]))
        self.sighup_and_wait(r"client keys reloaded")
        host = f"127.0.0.1:{self.tagd.port}"
        body = os.urandom(256 * 1024)
        key = "inflight/object.bin"
        headers = sign_headers("PUT", f"http://{host}/{self.bucket}/{key}",
                               {"Host": host, "Content-Length": str(len(body))}, harness.sha256_hex(body), OLD_KEY)
        conn = http.client.HTTPConnection("127.0.0.1", self.tagd.port, timeout=10)
        conn.putrequest("PUT", f"/{self.bucket}/{key}", skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body[:1000])  # the head is verified; the body is still coming
        # >= 2: the scrape counts itself, so 1 would be true before tagd had read the upload's head.
        harness.wait_until(lambda: self.tagd.metrics()["tagd_inflight_requests"] >= 2, 5,
                           what="the upload to be in flight")
        self.write_keys(credentials_doc([full_access(NEW_KEY)]))
        self.sighup_and_wait(r"client keys reloaded")
        conn.send(body[1000:])
        r = conn.getresponse()
        r.read()
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(self.moto.object_bytes(self.bucket, key), body)


if __name__ == "__main__":
    unittest.main()
