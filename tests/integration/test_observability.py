"""Metrics people can read (part 8): the latency histograms and bytes by source as a
live tagd renders them, the Grafana dashboard's queries against a real /metrics, and
`tagd stats` against a running daemon."""
import json
import os
import re
import subprocess
import unittest

import harness
from harness import TagdTestCase

DASHBOARD = os.path.join(harness.SOURCE_DIR, "docs", "grafana", "tagd.json")
BUCKET = "observability"


def series(metrics: dict, name: str, **labels) -> float:
    """The value of name{labels} in a parsed scrape, whatever the label order."""
    want = {f'{k}="{v}"' for k, v in labels.items()}
    total = None
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        have = set(rest.rstrip("}").split(",")) if rest else set()
        if want <= have:
            if total is not None and want != have:
                raise AssertionError(f"{name}{labels} matches several series")
            total = value
    if total is None:
        raise AssertionError(f"no series {name}{labels}")
    return total


class ObservabilityTest(TagdTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.moto.client().create_bucket(Bucket=BUCKET)

    def test_request_and_upstream_histograms(self):
        c = self.tagd.client()
        before = self.tagd.metrics()
        c.put_object(Bucket=BUCKET, Key="h", Body=b"x" * 100_000)
        self.assertEqual(c.get_object(Bucket=BUCKET, Key="h")["Body"].read(), b"x" * 100_000)  # miss
        self.assertEqual(c.get_object(Bucket=BUCKET, Key="h")["Body"].read(), b"x" * 100_000)  # hit
        c.list_objects_v2(Bucket=BUCKET)
        # A request is observed after its response is written: the client may have the LIST's
        # answer before tagd observed it (the scrape comes on another connection).
        def scrape_once_list_observed():
            m = self.tagd.metrics()
            listed = series(m, "tagd_request_duration_seconds_count", op="list", result="none")
            return m if listed > series(before, "tagd_request_duration_seconds_count", op="list", result="none") else None
        after = harness.wait_until(scrape_once_list_observed, 10, what="the LIST to be observed")

        def delta(op, result):
            return (series(after, "tagd_request_duration_seconds_count", op=op, result=result)
                    - series(before, "tagd_request_duration_seconds_count", op=op, result=result))
        self.assertEqual(delta("put", "none"), 1)
        self.assertEqual(delta("get", "miss"), 1)
        self.assertEqual(delta("get", "hit"), 1)
        self.assertEqual(delta("list", "none"), 1)
        # Cumulative buckets: +Inf is the count; sums are seconds, positive once observed.
        for op, result in (("get", "hit"), ("put", "none")):
            self.assertEqual(series(after, "tagd_request_duration_seconds_bucket", op=op, result=result, le="+Inf"),
                             series(after, "tagd_request_duration_seconds_count", op=op, result=result))
            self.assertGreater(series(after, "tagd_request_duration_seconds_sum", op=op, result=result), 0)
        # PUT, the miss's fetch and LIST each went upstream at least once.
        up = after["tagd_upstream_latency_seconds_count"] - before["tagd_upstream_latency_seconds_count"]
        self.assertGreaterEqual(up, 3)
        self.assertEqual(after["tagd_upstream_latency_seconds_count"],
                         series(after, "tagd_upstream_latency_seconds_bucket", le="+Inf"))
        # Local endpoints are not S3 requests: scrapes observe nothing.
        self.tagd.metrics()
        again = self.tagd.metrics()
        self.assertEqual(sum(v for k, v in again.items() if k.startswith("tagd_request_duration_seconds_count")),
                         sum(v for k, v in after.items() if k.startswith("tagd_request_duration_seconds_count")))

    def test_relayed_bytes_count_as_upstream(self):
        body = os.urandom(300_000)
        self.moto.client().put_object(Bucket=BUCKET, Key="relayed", Body=body)
        before = self.tagd.metrics()
        # no-store: the cache may not be used, the answer is relayed (X-Cache: BYPASS).
        status, headers, data = harness.signed_request(self.tagd.port, "GET", f"/{BUCKET}/relayed",
                                                       headers={"Cache-Control": "no-store"})
        self.assertEqual((status, data), (200, body))
        self.assertEqual(headers.get("x-cache"), "BYPASS")
        # Counted after the whole body was written, which the client may have read already.
        harness.wait_until(lambda: self.tagd.metrics()['tagd_served_bytes_total{source="upstream"}']
                           - before['tagd_served_bytes_total{source="upstream"}'] >= len(body), 10,
                           what="the relayed bytes to be counted")
        after = self.tagd.metrics()
        self.assertEqual(after['tagd_served_bytes_total{source="upstream"}']
                         - before['tagd_served_bytes_total{source="upstream"}'], len(body))

    def test_dashboard_queries_only_metrics_tagd_exports(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        status, _, text = harness.http_get(self.tagd.port, "/metrics")
        self.assertEqual(status, 200)
        text = text.decode()
        exported = set(re.findall(r"^(tagd_[a-z0-9_]+)", text, re.M))
        labels = {}  # metric -> label names it carries
        for m in re.finditer(r"^(tagd_[a-z0-9_]+)\{([^}]*)\}", text, re.M):
            labels.setdefault(m.group(1), set()).update(re.findall(r'([a-z_]+)="', m.group(2)))
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(exprs), 10)
        used = set()
        for expr in exprs:
            for name, matchers in re.findall(r"(tagd_[a-z0-9_]+)(\{[^}]*\})?", expr):
                used.add(name)
                with self.subTest(expr=expr, metric=name):
                    self.assertIn(name, exported)
                    for label, value in re.findall(r'([a-z_]+)=~?"([^"]*)"', matchers):
                        if label == "instance":  # added by Prometheus at scrape time
                            continue
                        self.assertIn(label, labels.get(name, set()))
                        # Every alternative of a regex matcher is a value tagd renders.
                        for alternative in value.split("|"):
                            self.assertRegex(text, rf'{name}\{{[^}}]*{label}="{re.escape(alternative)}"')
            for by in re.findall(r"by \(([^)]*)\)", expr):
                for label in (l.strip() for l in by.split(",")):
                    with self.subTest(expr=expr, by=label):
                        self.assertTrue(any(label in labels.get(n, set()) for n in used), label)
        # What the issue asks the dashboard to show.
        for needed in ("tagd_cache_requests_total", "tagd_request_duration_seconds_bucket", "tagd_served_bytes_total",
                       "tagd_cache_used_bytes", "tagd_upstream_latency_seconds_bucket", "tagd_inflight_requests",
                       "tagd_admission_shed_total", "tagd_responses_total"):
            self.assertIn(needed, used)

    def test_tagd_stats_against_the_daemon(self):
        c = self.tagd.client()
        c.put_object(Bucket=BUCKET, Key="s", Body=b"s" * 1000)
        c.get_object(Bucket=BUCKET, Key="s")["Body"].read()
        endpoint = f"127.0.0.1:{self.tagd.port}"
        r = subprocess.run([harness.TAGD_BINARY, "stats", "--endpoint", endpoint], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(r.returncode, 0, f"{r.stdout}{r.stderr} (is `tagd stats` wired in main.cpp?)")
        self.assertRegex(r.stdout, r"Cache +hit ratio \d+\.\d%")
        self.assertIn("Bytes served", r.stdout)
        self.assertIn("Top buckets", r.stdout)
        r = subprocess.run([harness.TAGD_BINARY, "stats", "--json", "--endpoint", endpoint], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        scrape = self.tagd.metrics()
        self.assertGreaterEqual(doc["requests"]["total"], 2)
        self.assertLessEqual(doc["requests"]["total"], scrape["tagd_requests_total"])
        self.assertEqual(doc["cache"]["by_result"]["miss"], scrape['tagd_cache_requests_total{result="miss"}'])
        # A daemon that is not there: exit 1, not a summary of nothing.
        r = subprocess.run([harness.TAGD_BINARY, "stats", "--endpoint", f"127.0.0.1:{harness.free_port()}"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1, r.stdout)


if __name__ == "__main__":
    unittest.main()
