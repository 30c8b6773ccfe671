"""Upload notifications end to end: boto3 writes through tagd (moto upstream), a local
webhook receiver started and stopped by the tests, tagd restarted with kill -9.

Each test uses its own bucket and keys; the receiver deduplicates nothing, so the tests
check "every event at least once" (and, where nothing failed, exactly once)."""
import json
import os
import signal
import time
import unittest

from harness import (MiB, FakeUpstream, TagdTestCase, free_port, stop_process, unique, wait_until)
from webhook_receiver import WebhookReceiver

SECRET = "hmac-secret-for-tests"
TOKEN = "bearer-token-for-tests"


def notify_config(path, endpoints, **limits):
    doc = {"endpoints": endpoints, "retry_base_ms": 50, "retry_max_ms": 400, "max_attempts": 1000}
    doc.update(limits)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


class NotificationsTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.receiver = WebhookReceiver(free_port(), secret=SECRET, token=TOKEN).start()
        cls.addClassCleanup(cls.receiver.stop)
        cls.filtered = WebhookReceiver(free_port()).start()
        cls.addClassCleanup(cls.filtered.stop)
        cls.outbox = os.path.join(cls.workdir, "outbox-main")
        cls.config_path = notify_config(os.path.join(cls.workdir, "notify.json"), [
            {"name": "all", "url": cls.receiver.url, "auth": {"type": "bearer", "token": TOKEN},
             "hmac_secret": SECRET},
            {"name": "ckpt-metadata", "url": cls.filtered.url,
             "filter": {"buckets": ["ntf-filtered"], "prefix": "run1/", "suffix": ".metadata",
                        "events": ["OBJECT_CREATED_PUT", "OBJECT_CREATED_COPY"]}},
        ], outbox_path=cls.outbox)
        cls.ntagd = cls.start_tagd(["--notify-config-file", cls.config_path])
        cls.s3 = cls.ntagd.client()

    def new_bucket(self, name=None):
        bucket = name or unique("ntf")
        try:
            self.s3.create_bucket(Bucket=bucket)
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        return bucket

    def events_for(self, bucket):
        return [e for e in self.receiver.events() if e["bucket"] == bucket]

    def test_every_write_produces_its_event_in_tigris_shape(self):
        b = self.new_bucket()
        put = self.s3.put_object(Bucket=b, Key="a.bin", Body=b"x" * 1234)
        self.s3.copy_object(Bucket=b, Key="b.bin", CopySource={"Bucket": b, "Key": "a.bin"})
        mpu = self.s3.create_multipart_upload(Bucket=b, Key="big.bin")
        part = self.s3.upload_part(Bucket=b, Key="big.bin", UploadId=mpu["UploadId"], PartNumber=1,
                                   Body=b"p" * (5 * MiB))
        part2 = self.s3.upload_part(Bucket=b, Key="big.bin", UploadId=mpu["UploadId"], PartNumber=2, Body=b"q" * 10)
        done = self.s3.complete_multipart_upload(
            Bucket=b, Key="big.bin", UploadId=mpu["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]},
                                       {"PartNumber": 2, "ETag": part2["ETag"]}]})
        self.s3.delete_object(Bucket=b, Key="a.bin")
        self.s3.put_object(Bucket=b, Key="c1", Body=b"1")
        self.s3.put_object(Bucket=b, Key="c2", Body=b"2")
        self.s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "c1"}, {"Key": "c2"}]})

        want = [("OBJECT_CREATED_PUT", "a.bin"), ("OBJECT_CREATED_COPY", "b.bin"),
                ("OBJECT_CREATED_MULTIPART", "big.bin"), ("OBJECT_DELETED", "a.bin"),
                ("OBJECT_CREATED_PUT", "c1"), ("OBJECT_CREATED_PUT", "c2"),
                ("OBJECT_DELETED", "c1"), ("OBJECT_DELETED", "c2")]
        self.receiver.wait_for(lambda ev: len([e for e in ev if e["bucket"] == b]) >= len(want))
        time.sleep(0.3)  # anything extra would show up now
        got = self.events_for(b)
        self.assertEqual(sorted((e["eventName"], e["object"]["key"]) for e in got), sorted(want))
        by = {(e["eventName"], e["object"]["key"]): e for e in got}
        for e in got:
            self.assertEqual(e["eventVersion"], "1")
            self.assertEqual(e["eventSource"], "tigris")
            self.assertRegex(e["eventTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertRegex(e["eventId"], r"^[0-9a-f]{32}$")
        self.assertEqual(len({e["eventId"] for e in got}), len(got))
        self.assertEqual(by[("OBJECT_CREATED_PUT", "a.bin")]["object"]["size"], 1234)
        self.assertEqual(by[("OBJECT_CREATED_PUT", "a.bin")]["object"]["eTag"], put["ETag"].strip('"'))
        self.assertEqual(by[("OBJECT_CREATED_COPY", "b.bin")]["object"]["size"], 1234)
        self.assertEqual(by[("OBJECT_CREATED_MULTIPART", "big.bin")]["object"]["size"], 5 * MiB + 10)
        self.assertEqual(by[("OBJECT_CREATED_MULTIPART", "big.bin")]["object"]["eTag"], done["ETag"].strip('"'))
        # Every POST was signed with the endpoint's secret and carried its token.
        self.assertEqual(self.receiver.bad_signatures, 0)
        self.assertEqual(self.receiver.bad_auth, 0)
        for p in self.receiver.posts:
            self.assertEqual(p["headers"]["content-type"], "application/json")
            self.assertTrue(p["headers"]["x-tagd-signature"].startswith("sha256="))

    def test_failed_upstream_writes_produce_no_event(self):
        b = self.new_bucket()
        missing = unique("ntf-missing")  # never created
        with self.assertRaises(self.s3.exceptions.NoSuchBucket):
            self.s3.put_object(Bucket=missing, Key="x", Body=b"1")
        with self.assertRaises(Exception):
            self.s3.copy_object(Bucket=b, Key="copy-of-nothing", CopySource={"Bucket": b, "Key": "nothing"})
        with self.assertRaises(Exception):
            self.s3.complete_multipart_upload(Bucket=b, Key="never", UploadId="no-such-upload",
                                              MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
        self.s3.put_object(Bucket=b, Key="marker", Body=b"m")  # a later event proves delivery ran
        self.receiver.wait_for(lambda ev: any(e["bucket"] == b and e["object"]["key"] == "marker" for e in ev))
        time.sleep(0.3)
        self.assertEqual([e["object"]["key"] for e in self.events_for(b)], ["marker"])
        self.assertFalse([e for e in self.receiver.events() if e["bucket"] == missing])

    def test_filters_choose_what_an_endpoint_gets(self):
        b = self.new_bucket("ntf-filtered")
        other = self.new_bucket()
        self.s3.put_object(Bucket=b, Key="run1/.metadata", Body=b"m")           # matches
        self.s3.put_object(Bucket=b, Key="run1/__0_0.distcp", Body=b"s")        # suffix
        self.s3.put_object(Bucket=b, Key="run2/.metadata", Body=b"m")           # prefix
        self.s3.put_object(Bucket=other, Key="run1/.metadata", Body=b"m")       # bucket
        self.s3.copy_object(Bucket=b, Key="run1/copy.metadata", CopySource={"Bucket": b, "Key": "run1/.metadata"})
        self.s3.delete_object(Bucket=b, Key="run1/.metadata")                  # event type
        # The unfiltered endpoint sees all six; the filtered one only the two that match.
        self.receiver.wait_for(lambda ev: len([e for e in ev if e["bucket"] in (b, other)]) >= 6)
        self.filtered.wait_for(lambda ev: len(ev) >= 2)
        time.sleep(0.3)
        self.assertEqual(sorted((e["eventName"], e["object"]["key"]) for e in self.filtered.events()),
                         [("OBJECT_CREATED_COPY", "run1/copy.metadata"), ("OBJECT_CREATED_PUT", "run1/.metadata")])


class NotificationOutageTest(TagdTestCase):
    """The receiver down for a while; tagd killed with kill -9 with events pending."""

    def start_notifying_tagd(self, receiver_url, outbox, **limits):
        path = notify_config(os.path.join(self.workdir, unique("notify") + ".json"),
                             [{"name": "hook", "url": receiver_url}], outbox_path=outbox, **limits)
        return self.start_test_tagd(["--notify-config-file", path])

    def test_receiver_down_then_up_everything_arrives(self):
        receiver = WebhookReceiver(free_port())  # not started: connections are refused
        self.addCleanup(receiver.stop)
        t = self.start_notifying_tagd(receiver.url, os.path.join(self.workdir, unique("outbox")))
        s3 = t.client()
        b = unique("ntf-down")
        s3.create_bucket(Bucket=b)
        keys = [f"k{i}" for i in range(20)]
        for k in keys:
            s3.put_object(Bucket=b, Key=k, Body=k.encode())  # each answered: its event is on disk
        wait_until(lambda: t.metrics().get("tagd_notify_delivery_failures_total", 0) >= 2, 10, what="failed tries")
        self.assertEqual(t.metrics()["tagd_notify_outbox_events"], 20)
        self.assertIn("delivery of", t.log())  # the warn line of a failed attempt
        time.sleep(0.5)
        receiver.start()
        receiver.wait_for(lambda ev: set(keys) <= {e["object"]["key"] for e in ev})
        wait_until(lambda: t.metrics()["tagd_notify_outbox_events"] == 0, 10, what="an empty outbox")
        self.assertEqual(t.metrics()["tagd_notify_events_delivered_total"], 20)

    def test_kill_9_with_events_pending_then_everything_arrives(self):
        receiver = WebhookReceiver(free_port())  # down while the first tagd runs
        self.addCleanup(receiver.stop)
        outbox = os.path.join(self.workdir, unique("outbox"))
        first = self.start_notifying_tagd(receiver.url, outbox)
        s3 = first.client()
        b = unique("ntf-kill")
        s3.create_bucket(Bucket=b)
        keys = [f"k{i}" for i in range(15)]
        for k in keys:
            s3.put_object(Bucket=b, Key=k, Body=b"v")
        s3.delete_object(Bucket=b, Key="k0")
        stop_process(first.proc, sig=signal.SIGKILL)
        self.assertEqual(first.proc.returncode, -signal.SIGKILL)
        receiver.start()
        second = self.start_notifying_tagd(receiver.url, outbox)
        self.assertRegex(second.wait_for_log(r"notify: 1 endpoint\(s\)"), r"16 event\(s\) pending")
        events = receiver.wait_for(lambda ev: len(ev) >= 16)
        self.assertEqual(sorted(e["object"]["key"] for e in events if e["eventName"] == "OBJECT_CREATED_PUT"),
                         sorted(keys))
        self.assertEqual([e["object"]["key"] for e in events if e["eventName"] == "OBJECT_DELETED"], ["k0"])

    def test_full_outbox_refuses_writes_before_forwarding(self):
        receiver = WebhookReceiver(free_port())  # never up
        self.addCleanup(receiver.stop)
        t = self.start_notifying_tagd(receiver.url, os.path.join(self.workdir, unique("outbox")),
                                      max_outbox_events=3)
        s3 = t.client()
        b = unique("ntf-full")
        s3.create_bucket(Bucket=b)
        for i in range(3):
            s3.put_object(Bucket=b, Key=f"k{i}", Body=b"v")
        with self.assertRaises(Exception) as ctx:
            s3.put_object(Bucket=b, Key="refused", Body=b"v")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "SlowDown")
        # Refused before forwarding: the upstream never got the object.
        self.assertNotIn("refused", self.moto.keys(b))
        self.assertGreaterEqual(t.metrics()["tagd_notify_rejected_writes_total"], 1)
        self.assertIn("outbox full", t.log())
        # Reads are never refused.
        self.assertEqual(s3.get_object(Bucket=b, Key="k0")["Body"].read(), b"v")


class NotificationAnswerBodyTest(TagdTestCase):
    """What only a scripted upstream shows: S3's 200 answers whose body reports a failure
    (CopyObject, CompleteMultipartUpload) or the keys DeleteObjects could not delete."""

    def test_200_with_error_body_and_partial_delete_objects(self):
        copy_error = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                      b'<Message>We encountered an internal error.</Message></Error>')
        copy_ok = b'<CopyObjectResult><ETag>"c0ffee"</ETag><LastModified>2026-12-05T00:00:00Z</LastModified></CopyObjectResult>'
        deleted = (b'<DeleteResult><Deleted><Key>gone</Key></Deleted>'
                   b'<Error><Key>a&amp;b</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>')

        def respond(req):
            m, target, h = req["method"], req["target"], req["headers"]
            if m == "PUT" and "x-amz-copy-source" in h:
                return FakeUpstream.response(200, copy_error if "bad-copy" in target else copy_ok)
            if m == "HEAD" and "nohead" in target:
                return FakeUpstream.response(503, b"<Error><Code>SlowDown</Code></Error>")
            if m == "HEAD":
                return FakeUpstream.response(200, headers={"ETag": '"c0ffee"'}, content_length=777)
            if m == "POST" and "delete" in target:
                return FakeUpstream.response(200, deleted)
            return FakeUpstream.response(200, headers={"ETag": '"e"'})

        upstream = FakeUpstream(respond)
        self.addCleanup(upstream.stop)
        receiver = WebhookReceiver(free_port()).start()
        self.addCleanup(receiver.stop)
        path = notify_config(os.path.join(self.workdir, unique("notify") + ".json"),
                             [{"name": "hook", "url": receiver.url}],
                             outbox_path=os.path.join(self.workdir, unique("outbox")))
        t = self.start_test_tagd(["--notify-config-file", path], upstream=upstream.endpoint,
                                 upstream_key=("AKIDUPSTREAM", "upstream-secret"))
        s3 = t.client()
        with self.assertRaises(Exception) as ctx:  # botocore turns the 200 <Error> into an error
            s3.copy_object(Bucket="b", Key="bad-copy", CopySource={"Bucket": "b", "Key": "src"})
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InternalError")
        s3.copy_object(Bucket="b", Key="good-copy", CopySource={"Bucket": "b", "Key": "src"})
        r = s3.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "gone"}, {"Key": "a&b"}]})
        self.assertEqual([d["Key"] for d in r["Deleted"]], ["gone"])  # the held body was relayed intact
        self.assertEqual([e["Key"] for e in r["Errors"]], ["a&b"])
        # The HEAD for the size fails: the event still goes out, with size 0 (counted, logged).
        s3.copy_object(Bucket="b", Key="nohead-copy", CopySource={"Bucket": "b", "Key": "src"})
        events = receiver.wait_for(lambda ev: len(ev) >= 3)
        time.sleep(0.3)
        got = sorted((e["eventName"], e["object"]["key"], e["object"]["size"]) for e in receiver.events())
        self.assertEqual(got, [("OBJECT_CREATED_COPY", "good-copy", 777), ("OBJECT_CREATED_COPY", "nohead-copy", 0),
                               ("OBJECT_DELETED", "gone", 0)])
        self.assertEqual(t.metrics()["tagd_notify_size_unknown_total"], 1)
        self.assertIn("size unknown", t.log())
        # The ETag comes from the copy's own answer, so it is there even without the HEAD.
        self.assertEqual([e["object"]["eTag"] for e in events if e["eventName"] == "OBJECT_CREATED_COPY"],
                         ["c0ffee", "c0ffee"])


if __name__ == "__main__":
    unittest.main()
