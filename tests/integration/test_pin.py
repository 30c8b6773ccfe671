"""Pins (issue 10, "warm and pin"): `tagd warm s3://bucket/prefix --pin` keeps a prefix in
the cache while a dataset twice the cache streams through, across a restart, until
`tagd unpin` — objects filled under the prefix later included; unpinning one of two
overlapping prefixes keeps what the other covers; a pin beyond cache.pin_quota is
reported per object (QuotaExceeded) or, for a later fill, counted and logged, instead of
evicting another pin; a key list's until-read pins survive a restart until read; only a
key with an admin grant may pin or unpin. Runs with io_uring on and off.

The cache: 8 regions of 4 MiB (32 MiB), 1 MiB blocks, a pin quota of 3 regions."""
import json
import os
import subprocess
import unittest

import harness
from harness import ADMIN_KEY, READER_KEY, TagdTestCase, unique

MiB = 1 << 20


class PinTestCase(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cache_dir = os.path.join("/tmp", unique("tagd-pin"))
        cls.tagd_args = ["--cache-disk-path", cls.cache_dir, "--cache-max-disk-usage", "32MiB",
                         "--cache-region-size", "4MiB", "--cache-block-size", "1MiB", "--cache-memory-size", "0",
                         "--cache-pin-quota", "12MiB"]
        super().setUpClass()
        cls.addClassCleanup(harness.shutil.rmtree, cls.cache_dir, True)
        cls.bucket = unique("pin")
        cls.tagd.client().create_bucket(Bucket=cls.bucket)
        # The stream: 64 MiB, twice the cache, uploaded once and read by each test that needs it.
        cls.stream = {}
        s3 = cls.moto.client()
        for i in range(32):
            key = f"stream-{i:03d}"
            cls.stream[key] = os.urandom(2 * MiB - 4096 * (i % 5))
            s3.put_object(Bucket=cls.bucket, Key=key, Body=cls.stream[key])

    def put(self, prefix, count, size):
        s3 = self.moto.client()
        data = {}
        for i in range(count):
            key = f"{prefix}{i:03d}"
            data[key] = os.urandom(size + i)
            s3.put_object(Bucket=self.bucket, Key=key, Body=data[key])
        return data

    def cli(self, *args, key=ADMIN_KEY):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1], AWS_REGION=harness.REGION)
        env.pop("AWS_ENDPOINT_URL", None)
        return subprocess.run([harness.TAGD_BINARY, *args, "--endpoint", f"127.0.0.1:{self.tagd.port}"],
                              env=env, capture_output=True, text=True, timeout=120)

    def stream_through(self):
        s3 = self.tagd.client()
        for key, body in self.stream.items():
            self.assertEqual(s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(), body, key)

    def x_cache(self, data):
        s3 = self.tagd.client()
        out = {}
        for key, body in data.items():
            r = s3.get_object(Bucket=self.bucket, Key=key)
            self.assertEqual(r["Body"].read(), body, key)
            out[key] = r["ResponseMetadata"]["HTTPHeaders"]["x-cache"]
        return out

    def test_pinned_prefix_survives_a_stream_twice_the_cache_and_a_restart_until_unpinned(self):
        data = self.put("keep-", 6, 500_000)
        p = self.cli("warm", f"s3://{self.bucket}/keep-", "--pin", "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        last = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual((last["state"], last["pin"], last["objects_pinned"], last["objects_failed"]),
                         ("done", "held", 6, 0), last)
        self.assertGreater(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)
        self.assertEqual(self.tagd.metrics()["tagd_cache_pin_quota_bytes"], 12 * MiB)
        self.stream_through()
        self.assertEqual(set(self.x_cache(data).values()), {"HIT"})
        listed = json.loads(self.cli("unpin", f"s3://{self.bucket}/keep-", "--list").stdout)
        self.assertEqual(listed["objects_pinned"], 6)
        self.assertEqual(sorted(o["key"] for o in listed["objects"]), sorted(data))

        # A restart keeps the pins (persisted in the index, pinned again at start-up).
        self.tagd.stop()
        self.tagd.start()
        self.assertGreater(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)
        self.stream_through()
        self.assertEqual(set(self.x_cache(data).values()), {"HIT"})

        # Unpinned, they go the way of everything else.
        pinned = self.tagd.metrics()["tagd_cache_pinned_bytes"]
        p = self.cli("unpin", f"s3://{self.bucket}/keep-")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((json.loads(p.stdout)["prefixes_unpinned"], json.loads(p.stdout)["objects_unpinned"]), (1, 6))
        self.assertLess(self.tagd.metrics()["tagd_cache_pinned_bytes"], pinned)
        self.stream_through()
        self.assertIn("MISS", set(self.x_cache(data).values()))

    def test_a_pin_beyond_the_quota_is_reported_per_object_and_evicts_no_other_pin(self):
        small = self.put("fits-", 3, 300_000)
        p = self.cli("warm", f"s3://{self.bucket}/fits-", "--pin", "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        refused = self.tagd.metrics().get("tagd_cache_pins_refused_total", 0)
        # 6 objects of 3 blocks: more than the 3 regions of quota can hold.
        self.put("big-", 6, 3 * MiB - 8192)
        p = self.cli("warm", f"s3://{self.bucket}/big-", "--pin", "--json", "--concurrency", "2")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        last = json.loads(p.stdout.splitlines()[-1])
        self.assertGreater(last["objects_failed"], 0, last)
        self.assertGreater(last["objects_pinned"], 0, last)
        self.assertTrue(all(f["error"].startswith("QuotaExceeded") for f in last["failures"]), last)
        self.assertGreater(self.tagd.metrics()["tagd_cache_pins_refused_total"], refused)
        self.assertLessEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 12 * MiB)
        self.stream_through()
        self.assertEqual(set(self.x_cache(small).values()), {"HIT"})
        self.unpin_all()

    def unpin_all(self):
        p = self.cli("unpin", f"s3://{self.bucket}", "--all", "--recursive")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)

    def test_objects_filled_under_a_pinned_prefix_later_are_pinned_across_a_restart(self):
        first = self.put("grow-", 2, 400_000)
        p = self.cli("warm", f"s3://{self.bucket}/grow-", "--pin", "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Added after the job: one upstream (a client's miss fills it), one written through tagd.
        later = self.put("grow-late-", 1, 300_000)
        written = {"grow-written": os.urandom(200_000)}
        self.tagd.client().put_object(Bucket=self.bucket, Key="grow-written", Body=written["grow-written"])
        self.x_cache({**later, **written})  # the reads that fill them
        listed = json.loads(self.cli("unpin", f"s3://{self.bucket}/grow-", "--list").stdout)
        self.assertEqual(listed["prefixes"], ["grow-"], listed)
        self.assertEqual(sorted(o["key"] for o in listed["objects"]), sorted({**first, **later, **written}))
        self.stream_through()
        self.assertEqual(set(self.x_cache({**first, **later, **written}).values()), {"HIT"})

        # The prefix record survives a restart, and still pins what is filled after it.
        self.tagd.stop()
        self.tagd.start()
        after = self.put("grow-after-", 1, 300_000)
        self.x_cache(after)
        self.stream_through()
        everything = {**first, **later, **written, **after}
        self.assertEqual(set(self.x_cache(everything).values()), {"HIT"})

        p = self.cli("unpin", f"s3://{self.bucket}/grow-")
        self.assertEqual(p.returncode, 0, p.stderr)
        answer = json.loads(p.stdout)
        self.assertEqual((answer["prefixes_unpinned"], answer["objects_unpinned"]), (1, len(everything)), answer)
        self.assertEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)
        # Unpinned: a new object under it is not pinned any more.
        self.x_cache(self.put("grow-unpinned-", 1, 1000))
        self.assertEqual(json.loads(self.cli("unpin", f"s3://{self.bucket}/grow-", "--list").stdout)["objects"], [])

    def test_unpinning_one_of_two_overlapping_prefixes_keeps_what_the_other_covers(self):
        wide = self.put("ov-", 2, 300_000)
        narrow = self.put("ov-a-", 2, 300_000)
        for prefix in ("ov-", "ov-a-"):
            p = self.cli("warm", f"s3://{self.bucket}/{prefix}", "--pin", "--json")
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.cli("unpin", f"s3://{self.bucket}/ov-a-")
        self.assertEqual(p.returncode, 0, p.stderr)
        answer = json.loads(p.stdout)
        self.assertEqual((answer["objects_unpinned"], answer["objects_kept"], answer["still_pinned_by"]),
                         (0, 2, ["ov-"]), answer)
        self.assertIn("stay pinned by another pinned prefix", p.stderr)
        self.stream_through()
        self.assertEqual(set(self.x_cache({**wide, **narrow}).values()), {"HIT"})

        p = self.cli("warm", f"s3://{self.bucket}/ov-a-", "--pin", "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        answer = json.loads(self.cli("unpin", f"s3://{self.bucket}/ov-").stdout)
        self.assertEqual((answer["objects_unpinned"], answer["objects_kept"]), (2, 2), answer)
        # (Both were pinned into the same regions, which the narrow prefix keeps: pins hold
        # whole regions. What each prefix holds is the listing.)
        listed = json.loads(self.cli("unpin", f"s3://{self.bucket}/ov-", "--list").stdout)
        self.assertEqual(sorted(o["key"] for o in listed["objects"]), sorted(narrow), listed)
        self.assertEqual(listed["prefixes"], ["ov-a-"], listed)
        self.stream_through()
        self.assertEqual(set(self.x_cache(narrow).values()), {"HIT"})
        self.unpin_all()

    def test_fills_under_a_pinned_prefix_beyond_the_quota_are_refused_counted_and_logged(self):
        p = self.cli("warm", f"s3://{self.bucket}/over-", "--pin", "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        refused = self.tagd.metrics().get("tagd_cache_pins_refused_total", 0)
        # 6 objects of 3 blocks filled by clients under the pinned prefix: 3 regions of
        # quota hold 3 (3 blocks a region); the others are refused, whole.
        data = self.put("over-", 6, 3 * MiB - 8192)
        self.x_cache(data)
        # (The fills' blocks are written after the answers went out.)
        harness.wait_until(lambda: self.tagd.metrics().get("tagd_cache_pins_refused_total", 0) > refused, 5,
                           what="a refused pin")
        self.tagd.wait_for_log("under a pinned prefix but not pinned")
        self.assertLessEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 12 * MiB)
        listed = json.loads(self.cli("unpin", f"s3://{self.bucket}/over-", "--list").stdout)
        self.assertTrue(0 < listed["objects_pinned"] < 6, listed)
        pinned = {o["key"]: data[o["key"]] for o in listed["objects"]}
        self.stream_through()
        self.assertEqual(set(self.x_cache(pinned).values()), {"HIT"})
        self.unpin_all()

    def warm_key_list(self, prefix, keys_in_order):
        """`tagd warm s3://bucket/prefix --keys FILE --json` (pins until read); its last status line."""
        path = os.path.join(self.cache_dir + f"-{prefix}keys.txt")
        self.addCleanup(os.unlink, path)
        with open(path, "w") as f:
            f.write("\n".join(keys_in_order) + "\n")
        p = self.cli("warm", f"s3://{self.bucket}/{prefix}", "--keys", path, "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout.splitlines()[-1])

    def test_a_key_lists_until_read_pins_survive_a_restart_until_read(self):
        data = self.put("ahead-", 3, 600_000)
        last = self.warm_key_list("ahead-", data)
        self.assertEqual((last["pin"], last["objects_pinned"]), ("until_read", 3), last)
        # Listed with what holds them: the run ahead of this job (they hold quota too).
        listed = json.loads(self.cli("unpin", f"s3://{self.bucket}/ahead-", "--list").stdout)
        self.assertEqual(listed["objects_until_read"], 3, listed)
        self.assertEqual(sorted(o["key"] for o in listed["objects"]), sorted(data), listed)
        for o in listed["objects"]:
            self.assertEqual((o["owners"], o["jobs"]), (["until_read"], [last["id"]]), o)
        self.tagd.stop()
        self.tagd.start()
        self.assertGreater(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)
        # After a restart the job is gone; the pins stay, listed without a job.
        listed = json.loads(self.cli("unpin", f"s3://{self.bucket}/ahead-", "--list").stdout)
        self.assertEqual([(o["owners"], o["jobs"]) for o in listed["objects"]], [(["until_read"], [])] * 3, listed)
        self.stream_through()  # twice the cache, and none of it reads the run ahead's objects
        self.assertEqual(set(self.x_cache(data).values()), {"HIT"})
        # Read once: released, records and all.
        self.assertEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)
        self.assertEqual(json.loads(self.cli("unpin", f"s3://{self.bucket}/ahead-", "--list").stdout)["objects"], [])

    def test_cancelling_a_finished_run_ahead_releases_its_pins(self):
        # The job drops its key list when it ends; its until-read pins are found in the cache.
        data = self.put("gone-", 2, 300_000)
        last = self.warm_key_list("gone-", data)
        self.assertEqual((last["state"], last["objects_pinned"], last["keys_held"]), ("done", 2, 0), last)
        self.assertEqual(json.loads(self.cli("unpin", f"s3://{self.bucket}/gone-", "--list").stdout)
                         ["objects_until_read"], 2)
        p = self.cli("warm", "--cancel", last["id"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(self.cli("unpin", f"s3://{self.bucket}/gone-", "--list").stdout)["objects"], [])
        self.assertEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)

    def test_a_whole_bucket_is_unpinned_only_with_all(self):
        self.put("whole-", 1, 300_000)
        p = self.cli("warm", f"s3://{self.bucket}/whole-", "--pin", "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        pinned = self.tagd.metrics()["tagd_cache_pinned_bytes"]
        self.assertGreater(pinned, 0)
        for url in (f"s3://{self.bucket}", f"s3://{self.bucket}/"):
            for extra in ([], ["--recursive"]):
                p = self.cli("unpin", url, *extra)
                self.assertEqual(p.returncode, 2, p)
                self.assertEqual(p.stdout, "")
                self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
                self.assertIn("add --all", p.stderr)
        p = self.cli("unpin", f"s3://{self.bucket}/whole-", "--all")
        self.assertEqual(p.returncode, 2, p)
        # The API says so too: an empty prefix needs all=true.
        self.assertS3Error(harness.signed_request(self.tagd.port, "DELETE", f"/_tagd/pins?bucket={self.bucket}"),
                           400, "InvalidArgument", "all=true")
        self.assertS3Error(harness.signed_request(self.tagd.port, "DELETE",
                                                  f"/_tagd/pins?all=true&bucket={self.bucket}&prefix=whole-"),
                           400, "InvalidArgument")
        self.assertEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], pinned, "nothing was unpinned")
        # Listing the whole bucket needs no --all.
        self.assertEqual(self.cli("unpin", f"s3://{self.bucket}", "--list").returncode, 0)
        p = self.cli("unpin", f"s3://{self.bucket}", "--all", "--recursive")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["prefixes_unpinned"], 1)
        self.assertEqual(self.tagd.metrics()["tagd_cache_pinned_bytes"], 0)

    def test_only_an_admin_grant_may_pin_or_unpin(self):
        self.put("denied-", 1, 1000)
        p = self.cli("warm", f"s3://{self.bucket}/denied-", "--pin", "--json", key=READER_KEY)
        self.assertEqual(p.returncode, 1)
        self.assertIn("AccessDenied", p.stderr)
        for args in (["unpin", f"s3://{self.bucket}/denied-"], ["unpin", f"s3://{self.bucket}/", "--list"]):
            p = self.cli(*args, key=READER_KEY)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn("403", p.stderr)
            self.assertIn("AccessDenied", p.stderr)
        st, h, body = harness.raw_request(self.tagd.port, "DELETE", f"/_tagd/pins?bucket={self.bucket}",
                                          {"Host": f"127.0.0.1:{self.tagd.port}"})
        self.assertEqual(st, 403, body)


if __name__ == "__main__":
    unittest.main()
