"""Generates docs/grafana/tagd.json beside it: edit the panels here, run it, commit both.
tests/integration/test_observability.py checks every metric the JSON queries against a live tagd."""
import json
import os

SEL = 'instance=~"$instance"'


def sel(extra=""):
    return "{" + SEL + ("," + extra if extra else "") + "}"


panels = []
y = 0


def panel(title, targets, unit="short", kind="timeseries", w=12, h=8, description="", max_=None):
    global y
    x = 0 if len(panels) % 2 == 0 or w == 24 else 12
    if x == 0 and panels:
        y += 8
    p = {
        "id": len(panels) + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]}}
        if kind == "timeseries" else {},
        "targets": [{"refId": chr(ord("A") + i), "expr": e, "legendFormat": l,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}} for i, (e, l) in enumerate(targets)],
    }
    if max_ is not None:
        p["fieldConfig"]["defaults"]["max"] = max_
        p["fieldConfig"]["defaults"]["min"] = 0
    panels.append(p)


R = "[$__rate_interval]"
panel("Cache hit ratio",
      [(f'sum(rate(tagd_cache_requests_total{sel(chr(34).join(["result=~", "hit|revalidated", ""]))}{R})) / '
        f'sum(rate(tagd_cache_requests_total{sel(chr(34).join(["result=~", "hit|revalidated|miss", ""]))}{R}))',
        "hit ratio")],
      unit="percentunit", max_=1,
      description="Object GET/HEAD served from the cache (hit, or revalidated with the upstream) over all cacheable "
                  "reads; bypass and disabled are not cacheable.")
panel("Request rate by cache result",
      [(f"sum by (result) (rate(tagd_cache_requests_total{sel()}{R}))", "{{result}}"),
       (f"sum(rate(tagd_requests_total{sel()}{R}))", "all requests")],
      unit="reqps")
panel("Request latency p50 by operation",
      [(f"histogram_quantile(0.5, sum by (le, op) (rate(tagd_request_duration_seconds_bucket{sel()}{R})))",
        "{{op}}")], unit="s")
panel("Request latency p99 by operation",
      [(f"histogram_quantile(0.99, sum by (le, op) (rate(tagd_request_duration_seconds_bucket{sel()}{R})))",
        "{{op}}")], unit="s")
panel("GET latency p99 by cache result",
      [(f"histogram_quantile(0.99, sum by (le, result) "
        f"(rate(tagd_request_duration_seconds_bucket{sel(chr(34).join(['op=', 'get', '']))}{R})))", "{{result}}")],
      unit="s")
panel("Upstream latency (time to response head)",
      [(f"histogram_quantile(0.5, sum by (le) (rate(tagd_upstream_latency_seconds_bucket{sel()}{R})))", "p50"),
       (f"histogram_quantile(0.99, sum by (le) (rate(tagd_upstream_latency_seconds_bucket{sel()}{R})))", "p99"),
       (f"sum(rate(tagd_upstream_latency_seconds_sum{sel()}{R})) / "
        f"sum(rate(tagd_upstream_latency_seconds_count{sel()}{R}))", "mean")],
      unit="s")
panel("Bytes served by source",
      [(f"sum by (source) (rate(tagd_served_bytes_total{sel()}{R}))", "{{source}}"),
       (f"sum(rate(tagd_response_body_bytes_total{sel()}{R}))", "all response bodies")],
      unit="Bps")
panel("Cache fill",
      [(f"sum(tagd_cache_used_bytes{sel()}) / sum(tagd_cache_capacity_bytes{sel()})", "disk"),
       (f"sum(tagd_cache_memory_used_bytes{sel()}) / sum(tagd_cache_memory_capacity_bytes{sel()})", "DRAM")],
      unit="percentunit", max_=1)
panel("Evictions and fills",
      [(f"sum(rate(tagd_cache_evicted_bytes_total{sel()}{R}))", "evicted"),
       (f"sum(rate(tagd_cache_fill_bytes_total{sel()}{R}))", "filled from upstream")],
      unit="Bps")
panel("Errors",
      [(f"sum by (class) (rate(tagd_responses_total{sel(chr(34).join(['class=~', '4xx|5xx', '']))}{R}))",
        "{{class}}"),
       (f"sum(rate(tagd_upstream_errors_total{sel()}{R}))", "upstream errors"),
       (f"sum(rate(tagd_cache_fills_failed_total{sel()}{R}))", "failed fills"),
       (f"sum(rate(tagd_client_aborts_total{sel()}{R}))", "client aborts")],
      unit="reqps")
panel("In flight",
      [(f"sum(tagd_inflight_requests{sel()})", "requests"),
       (f"sum(tagd_max_inflight_requests{sel()})", "request limit"),
       (f"sum(tagd_open_connections{sel()})", "connections"),
       (f"sum(tagd_max_connections{sel()})", "connection cap")])
panel("In-flight response bytes",
      [(f"sum(tagd_inflight_response_bytes{sel()})", "in flight"),
       (f"sum(tagd_max_inflight_bytes{sel()})", "limit")], unit="bytes")
panel("Admission sheds by reason",
      [(f"sum by (reason) (rate(tagd_admission_shed_total{sel()}{R}))", "{{reason}}")], unit="reqps",
      description="Requests answered 503 SlowDown (reason requests or bytes) and connections reset at the "
                  "connection cap.")
panel("I/O and state",
      [(f"min(tagd_io_uring_enabled{sel()})", "io_uring"),
       (f"min(tagd_disk_direct_io{sel()})", "O_DIRECT"),
       (f"max(tagd_draining{sel()})", "draining")], kind="stat",
      description="io_uring 0: tagd fell back (seccomp in containers, docker/Dockerfile).")
panel("DRAM tier: disk reads kept out",
      [(f"sum(rate(tagd_cache_memory_promotions_declined_total{sel()}{R}))", "declined")], unit="ops",
      description="Blocks read from the block file that a full DRAM tier did not take in (read from disk only "
                  "once within the window). High in shuffled epochs over more data than the tier holds, by design: "
                  "the tier keeps a stable part of the dataset instead of churning.")

dashboard = {
    "title": "tagd",
    "uid": "tagd-overview",
    "description": "tagd, the S3 caching gateway: cache results, latency, bytes by source, cache fill, admission. "
                   "Built on the metrics of GET /metrics (include/tagd/core/metrics.hpp).",
    "tags": ["tagd", "s3", "cache"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
        {"name": "instance", "type": "query", "label": "tagd instance",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(tagd_requests_total, instance)", "refId": "instance"},
         "definition": "label_values(tagd_requests_total, instance)",
         "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
    ]},
    "panels": panels,
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tagd.json"), "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
