"""Warm jobs (issue 10): `tagd warm s3://bucket/prefix` asks the running daemon to fill a
prefix through its cache, and `tagd warm --keys FILE` an ordered key list; the job reports
progress (JSON lines when not on a terminal), survives the client that started it, can be
cancelled, reports failures per object, and only a key with an admin grant may start it.
Afterwards every read of the warmed objects is a HIT. Runs with io_uring on and off.

(Prefixes here have no '/': moto's signature check refuses listings whose prefix holds
an encoded '/', which tagd sends correctly; see harness.READER_PREFIX.)"""
import json
import os
import subprocess
import unittest

import harness
from harness import ADMIN_KEY, READER_KEY, TagdTestCase, signed_request, unique


class WarmTestCase(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cache_dir = os.path.join("/tmp", unique("tagd-warm"))
        cls.tagd_args = ["--cache-disk-path", cls.cache_dir, "--cache-max-disk-usage", "256MiB",
                         "--cache-region-size", "4MiB", "--cache-block-size", "1MiB",
                         # Narrower than the jobs' concurrency: their fetches must wait for
                         # the fill budget, not fail (test_a_job_wider_than_the_fill_budget...).
                         "--cache-max-fills", "2",
                         # Two jobs at once (test_jobs_beyond_warm_max_jobs_are_refused...).
                         "--warm-max-jobs", "2"]
        super().setUpClass()
        cls.addClassCleanup(harness.shutil.rmtree, cls.cache_dir, True)
        cls.bucket = unique("warm")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)

    def fill_upstream(self, prefix, count, size=50_000):
        s3 = self.moto.client()
        data = {}
        for i in range(count):
            key = f"{prefix}{i:04d}.bin"
            data[key] = os.urandom(size + i)
            s3.put_object(Bucket=self.bucket, Key=key, Body=data[key])
        return data

    def warm(self, *args, key=ADMIN_KEY, check=True):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1], AWS_REGION=harness.REGION)
        env.pop("AWS_ENDPOINT_URL", None)
        p = subprocess.run([harness.TAGD_BINARY, "warm", *args, "--endpoint", f"127.0.0.1:{self.tagd.port}"],
                           env=env, capture_output=True, text=True, timeout=120)
        if check:
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p

    def assert_all_hit(self, data):
        s3 = self.tagd.client()
        for key, body in data.items():
            r = s3.get_object(Bucket=self.bucket, Key=key)
            self.assertEqual(r["Body"].read(), body, key)
            self.assertEqual(r["ResponseMetadata"]["HTTPHeaders"]["x-cache"], "HIT", key)

    def test_warm_a_prefix_then_every_read_is_a_hit(self):
        data = self.fill_upstream("prefixset-", 30)
        total = sum(len(b) for b in data.values())
        p = self.warm(f"s3://{self.bucket}/prefixset-", "--json", "--concurrency", "8")
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        self.assertTrue(lines, p.stdout)
        last = lines[-1]
        self.assertEqual(last["state"], "done", last)
        self.assertEqual((last["objects_total"], last["objects_done"], last["objects_failed"]), (30, 30, 0))
        self.assertEqual((last["bytes_done"], last["bytes_fetched"], last["bytes_cached"]), (total, total, 0), last)
        self.assertEqual(last["bytes_total"], last["bytes_done"])
        self.assertEqual(last["keys_held"], 0, "a finished job drops its key list")
        self.assert_all_hit(data)
        # A second warm finds everything cached: nothing fetched, so no upstream rate (it
        # used to report the disk's speed as bytes_per_second).
        before = self.tagd.metrics()
        again = json.loads(self.warm(f"s3://{self.bucket}/prefixset-", "--json").stdout.splitlines()[-1])
        self.assertEqual(again["objects_cached"], 30, again)
        self.assertEqual((again["bytes_done"], again["bytes_fetched"], again["bytes_cached"]), (total, 0, total), again)
        self.assertEqual(again["bytes_per_second"], 0, again)
        m = self.tagd.metrics()
        self.assertEqual(m['tagd_warm_bytes_total{source="upstream"}'],
                         before['tagd_warm_bytes_total{source="upstream"}'])
        self.assertEqual(m['tagd_warm_bytes_total{source="cache"}'],
                         before.get('tagd_warm_bytes_total{source="cache"}', 0) + total)
        self.assertGreaterEqual(m.get("tagd_warm_jobs_total", 0), 2)
        self.assertGreaterEqual(m.get('tagd_warm_objects_total{result="filled"}', 0), 30)

    def test_a_job_wider_than_the_fill_budget_waits_instead_of_failing(self):
        data = self.fill_upstream("budgetset-", 24)
        before = self.tagd.metrics().get("tagd_warm_budget_waits_total", 0)
        p = self.warm(f"s3://{self.bucket}/budgetset-", "--json", "--concurrency", "16")
        last = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual((last["state"], last["objects_done"], last["objects_failed"]), ("done", 24, 0), last)
        self.assertGreater(self.tagd.metrics().get("tagd_warm_budget_waits_total", 0), before,
                           "16 workers over a budget of 2 fills must have waited")
        self.assert_all_hit(data)

    def test_warm_an_ordered_key_list_and_report_failures_per_object(self):
        data = self.fill_upstream("listset-", 12)
        keys = sorted(data, reverse=True)  # the order the "sampler" wants
        listing = os.path.join(self.workdir, unique("keys"))
        with open(listing, "w") as f:
            f.write("\n".join(keys + ["listset-missing"]) + "\n")
        p = self.warm(f"s3://{self.bucket}/listset-", "--keys", listing, "--json", check=False)
        self.assertEqual(p.returncode, 1, "a failed object makes the run fail")
        last = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(last["state"], "done")
        self.assertEqual((last["objects_total"], last["objects_done"], last["objects_failed"]), (13, 12, 1))
        self.assertEqual([f["key"] for f in last["failures"]], ["listset-missing"])
        self.assert_all_hit(data)

    def test_jobs_outlive_their_client_and_can_be_cancelled(self):
        self.fill_upstream("cancelset-", 40, size=200_000)
        started = self.warm(f"s3://{self.bucket}/cancelset-", "--json", "--detach", "--concurrency", "1")
        job = json.loads(started.stdout.splitlines()[-1])["id"]
        cancelled = json.loads(self.warm("--cancel", job).stdout)
        self.assertEqual(cancelled["id"], job)
        harness.wait_until(lambda: json.loads(self.warm("--status", job).stdout)["state"] in ("cancelled", "done"),
                           20, what="the job to stop")
        status = json.loads(self.warm("--status", job).stdout)
        self.assertLessEqual(status["objects_done"], 40)
        listed = json.loads(self.warm("--list").stdout)["jobs"]
        self.assertIn(job, [j["id"] for j in listed])

    def test_only_an_admin_grant_may_start_a_warm_job(self):
        self.fill_upstream("deniedset-", 2)
        p = self.warm(f"s3://{self.bucket}/deniedset-", "--json", key=READER_KEY, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("403", p.stderr)
        self.assertIn("AccessDenied", p.stderr)
        # Unsigned and badly signed calls of the API are refused too, with S3 errors.
        st, h, body = harness.raw_request(self.tagd.port, "POST", "/_tagd/warm",
                                          {"Host": f"127.0.0.1:{self.tagd.port}", "Content-Length": "2"}, b"{}")
        self.assertEqual(st, 403, body)
        self.assertTrue(h.get("x-amz-request-id"))
        self.assertS3Error(signed_request(self.tagd.port, "POST", "/_tagd/warm", body=b'{"bucket": 5}'), 400,
                           "InvalidArgument")
        self.assertS3Error(signed_request(self.tagd.port, "POST", "/_tagd/warm",
                                          body=json.dumps({"bucket": self.bucket, "pin": "always"}).encode()),
                           400, "InvalidArgument")
        self.assertS3Error(signed_request(self.tagd.port, "GET", "/_tagd/warm/w999999"), 404, "NoSuchJob")

    def test_job_specs_are_bounded_and_checked_like_s3_requests(self):
        # A key without an admin grant is refused before its body is read or parsed.
        denied_before = self.tagd.metrics()["tagd_policy_denials_total"]
        big = b'{"bucket":"%s","keys":[' % self.bucket.encode() + b",".join([b'"a"'] * 200_000) + b"]}"
        self.assertS3Error(signed_request(self.tagd.port, "POST", "/_tagd/warm", body=big, key=READER_KEY), 403,
                           "AccessDenied")
        self.assertEqual(self.tagd.metrics()["tagd_policy_denials_total"], denied_before + 1)
        # Nesting the parser would have to build node by node is refused by shape.
        self.assertS3Error(signed_request(self.tagd.port, "POST", "/_tagd/warm", body=b"[" * 100_000), 400,
                           "InvalidArgument")
        # Keys, prefixes and buckets follow the S3 path's rules ('.'/'..' segments refused).
        for spec, code in (({"bucket": self.bucket, "keys": ["a/../b"]}, "InvalidArgument"),
                           ({"bucket": self.bucket, "prefix": "x/../"}, "InvalidArgument"),
                           ({"bucket": "../etc"}, "InvalidBucketName")):
            self.assertS3Error(signed_request(self.tagd.port, "POST", "/_tagd/warm", body=json.dumps(spec).encode()),
                               400, code)
        self.assertS3Error(signed_request(self.tagd.port, "GET", f"/_tagd/pins?bucket={self.bucket}&prefix=a%2F..%2F"),
                           400, "InvalidArgument")

    def test_finished_jobs_are_dropped_oldest_first(self):
        # More jobs than the registry keeps (64 finished): the newest stay readable (job ids
        # sorted as strings once made "w100" older than "w41").
        self.fill_upstream("manyjobs-", 1, size=1000)
        key = "manyjobs-0000.bin"
        ids = []
        for _ in range(110):
            st, h, body = signed_request(self.tagd.port, "POST", "/_tagd/warm",
                                         body=json.dumps({"bucket": self.bucket, "keys": [key], "pin": False}).encode())
            self.assertEqual(st, 202, body)
            ids.append(json.loads(body)["id"])
            harness.wait_until(lambda: json.loads(signed_request(self.tagd.port, "GET", f"/_tagd/warm/{ids[-1]}")[2])
                               ["state"] == "done", 20, what="the job to finish")
        for job in ids[-60:]:
            st, _, body = signed_request(self.tagd.port, "GET", f"/_tagd/warm/{job}")
            self.assertEqual(st, 200, (job, body))
        self.assertS3Error(signed_request(self.tagd.port, "GET", f"/_tagd/warm/{ids[0]}"), 404, "NoSuchJob")

    def test_an_unknown_job_is_404_and_one_line_on_stderr(self):
        for method in ("GET", "DELETE"):
            self.assertS3Error(signed_request(self.tagd.port, method, "/_tagd/warm/w999"), 404, "NoSuchJob",
                               "w999")
        self.assertS3Error(signed_request(self.tagd.port, "GET", "/_tagd/warm/nonsense"), 404, "NoSuchJob")
        for flag in ("--status", "--cancel"):
            p = self.warm(flag, "w999", check=False)
            self.assertEqual(p.returncode, 1, p)
            self.assertEqual(p.stdout, "", "no XML on stdout")
            self.assertEqual(p.stderr.splitlines(), ["tagd warm: NoSuchJob: no such warm job: w999 (404)"], p.stderr)

    def test_a_key_listed_twice_is_fetched_once(self):
        data = self.fill_upstream("dupset-", 3)
        keys = sorted(data)
        listed = [keys[2], keys[0], keys[2], keys[1], keys[0], keys[2]]
        st, _, body = signed_request(self.tagd.port, "POST", "/_tagd/warm",
                                     body=json.dumps({"bucket": self.bucket, "keys": listed, "concurrency": 1,
                                                      "pin": False}).encode())
        self.assertEqual(st, 202, body)
        started = json.loads(body)
        self.assertEqual((started["objects_total"], started["duplicate_keys"]), (3, 3), started)
        self.assertEqual(started["keys_held"], 3, started)
        job = started["id"]
        harness.wait_until(lambda: json.loads(signed_request(self.tagd.port, "GET", f"/_tagd/warm/{job}")[2])
                           ["state"] == "done", 20, what="the job to finish")
        last = json.loads(signed_request(self.tagd.port, "GET", f"/_tagd/warm/{job}")[2])
        # Each fetched once (a second pass would have found it cached).
        self.assertEqual((last["objects_done"], last["objects_cached"], last["objects_failed"]), (3, 0, 0), last)
        self.assertEqual(last["bytes_fetched"], sum(len(b) for b in data.values()), last)
        self.assertEqual(last["keys_held"], 0, last)
        self.assert_all_hit(data)

    def test_jobs_beyond_warm_max_jobs_are_refused_until_one_ends(self):
        # Two jobs of 24 MiB fetched one object at a time (hundreds of ms): the refusals are
        # sent within milliseconds of their start.
        self.fill_upstream("capset-", 24, size=1 << 20)
        refused = self.tagd.metrics().get("tagd_warm_jobs_refused_total", 0)
        spec = json.dumps({"bucket": self.bucket, "prefix": "capset-", "concurrency": 1, "pin": False}).encode()
        running = []
        for _ in range(2):
            st, _, body = signed_request(self.tagd.port, "POST", "/_tagd/warm", body=spec)
            self.assertEqual(st, 202, body)
            running.append(json.loads(body)["id"])
        self.assertS3Error(signed_request(self.tagd.port, "POST", "/_tagd/warm", body=spec), 503, "SlowDown",
                           "warm.max_jobs")
        p = self.warm(f"s3://{self.bucket}/capset-", "--detach", check=False)
        states = [json.loads(signed_request(self.tagd.port, "GET", f"/_tagd/warm/{j}")[2])["state"] for j in running]
        self.assertEqual(p.returncode, 1, (p, states))
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("SlowDown", p.stderr)
        self.assertEqual(self.tagd.metrics()["tagd_warm_jobs_refused_total"], refused + 2)
        self.tagd.wait_for_log("warm job by .* refused: 2 jobs are running")
        for job in running:
            self.warm("--cancel", job)
        harness.wait_until(lambda: all(json.loads(self.warm("--status", j).stdout)["state"] in ("cancelled", "done")
                                       for j in running), 20, what="the jobs to stop")
        # A job that ended frees its place.
        st, _, body = signed_request(self.tagd.port, "POST", "/_tagd/warm", body=spec)
        self.assertEqual(st, 202, body)
        self.warm("--cancel", json.loads(body)["id"])

    def test_a_virtual_hosted_key_under_tagd_is_an_object_not_the_admin_api(self):
        self.moto.client().put_object(Bucket=self.bucket, Key="_tagd/warm", Body=b"an object")
        host = f"{self.bucket}.localhost:{self.tagd.port}"
        st, h, body = signed_request(self.tagd.port, "GET", "/_tagd/warm", host=host)
        self.assertEqual((st, body), (200, b"an object"))


if __name__ == "__main__":
    unittest.main()
