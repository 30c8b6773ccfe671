#pragma once
// Process-wide counters, rendered in the Prometheus text format at GET /metrics.
// Relaxed atomics: each counter is independent, readers tolerate slight skew.
//
// Every metric is declared exactly once, in TAGD_ALL_METRICS below (the model is Envoy's
// ALL_X_STATS(COUNTER, GAUGE) lists). The Metrics members, the family descriptors and
// the /metrics renderer are all generated from it, so a metric cannot exist in one
// place and be missing (or misspelled) in another.
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace tagd {

class Counter {
 public:
  static constexpr std::string_view kPromType = "counter";
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  static constexpr std::string_view kPromType = "gauge";
  void add(std::int64_t n) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// The one list of metrics. Entry kinds:
//   COUNTER(member, "exported_name", "help")    a plain counter: Counter member;
//   GAUGE(member, "exported_name", "help")      a plain gauge:   Gauge member;
//   FAMILY(family, Kind, "exported_name", "label_name", "help")
//                                               a labelled family (Kind is Counter or
//                                               Gauge); HELP/TYPE are rendered once for it
//   LABELLED(member, family, "label_value")     one series of a family: Kind member;
//                                               rendered as exported_name{label_name="label_value"}
// Entries render in list order; a family renders all its LABELLED members (in list order)
// where its FAMILY entry stands. Exported names and help texts are part of the interface
// (dashboards, docs and the integration tests grep them): do not rename.
// No "//" comments inside the macro: the line continuation would swallow the next line.
// clang-format off
#define TAGD_ALL_METRICS(COUNTER, GAUGE, FAMILY, LABELLED)                                                           \
  COUNTER(requests_total, "tagd_requests_total", "Requests received")                                                \
  FAMILY(responses, Counter, "tagd_responses_total", "class", "Responses by status class")                           \
  LABELLED(responses_2xx, responses, "2xx")                                                                          \
  LABELLED(responses_3xx, responses, "3xx")                                                                          \
  LABELLED(responses_4xx, responses, "4xx")                                                                          \
  LABELLED(responses_5xx, responses, "5xx")                                                                          \
  COUNTER(request_body_bytes, "tagd_request_body_bytes_total", "Payload bytes received from clients")                \
  COUNTER(response_body_bytes, "tagd_response_body_bytes_total", "Body bytes sent to clients")                       \
  COUNTER(auth_failures, "tagd_auth_failures_total", "Requests refused by signature checks")                         \
  COUNTER(policy_denials, "tagd_policy_denials_total", "Requests refused by key policy")                             \
  COUNTER(body_verification_failures, "tagd_body_verification_failures_total",                                       \
          "Uploads aborted on a digest or chunk signature mismatch")                                                 \
  COUNTER(slow_down_rejections, "tagd_slow_down_total", "Requests refused with SlowDown (max_inflight_requests)")    \
  COUNTER(client_timeouts, "tagd_client_timeouts_total", "Connections cut because the client was too slow")          \
  COUNTER(client_aborts, "tagd_client_aborts_total", "Clients that went away mid-response")                          \
  COUNTER(upstream_requests, "tagd_upstream_requests_total", "Requests sent upstream")                               \
  COUNTER(upstream_retries, "tagd_upstream_retries_total", "Upstream attempts retried")                              \
  COUNTER(upstream_errors, "tagd_upstream_errors_total", "Requests answered 502/503/504 because of the upstream")    \
  COUNTER(upstream_truncated_bodies, "tagd_upstream_truncated_bodies_total", "Upstream responses that ended early")  \
  COUNTER(upstream_connect_errors, "tagd_upstream_connect_errors_total", "Failed upstream connects")                 \
  COUNTER(upstream_tls_errors, "tagd_upstream_tls_errors_total", "Failed upstream TLS handshakes")                   \
  COUNTER(upstream_connections_opened, "tagd_upstream_connections_opened_total", "Upstream connections opened")      \
  COUNTER(upstream_connections_reused, "tagd_upstream_connections_reused_total",                                     \
          "Upstream requests on a kept-alive connection")                                                            \
  /* X-Cache on each object response is derived from the same outcome that bumps exactly */                          \
  /* one of these five (TAG bug 10: the two drifted apart). */                                                       \
  FAMILY(cache_requests, Counter, "tagd_cache_requests_total", "result",                                             \
         "Object GET/HEAD outcomes (same source as X-Cache)")                                                        \
  LABELLED(cache_hits, cache_requests, "hit")                                                                        \
  LABELLED(cache_misses, cache_requests, "miss")                                                                     \
  LABELLED(cache_revalidated, cache_requests, "revalidated")                                                         \
  LABELLED(cache_bypass, cache_requests, "bypass")                                                                   \
  LABELLED(cache_disabled, cache_requests, "disabled")                                                               \
  COUNTER(cache_hit_bytes, "tagd_cache_hit_bytes_total", "Body bytes served from the cache")                         \
  COUNTER(cache_disk_read_bytes, "tagd_cache_disk_read_bytes_total",                                                 \
          "Payload bytes read from the cache device (whole blocks, or the 64 KiB pieces a range needs)")             \
  COUNTER(cache_fill_bytes, "tagd_cache_fill_bytes_total", "Bytes fetched from upstream into the cache")             \
  COUNTER(cache_fills_started, "tagd_cache_fills_started_total", "Fills started")                                    \
  COUNTER(cache_fills_completed, "tagd_cache_fills_completed_total", "Fills that completed")                         \
  COUNTER(cache_fills_failed, "tagd_cache_fills_failed_total",                                                       \
          "Fills that failed or were truncated (nothing partial published)")                                         \
  COUNTER(cache_fills_rejected, "tagd_cache_fills_rejected_total",                                                   \
          "Objects served but not cached: fill budget spent")                                                        \
  COUNTER(cache_joined_fills, "tagd_cache_joined_fills_total",                                                       \
          "Waits on a fill in progress (object head or block being fetched)")                                        \
  COUNTER(cache_checksum_failures, "tagd_cache_checksum_failures_total",                                             \
          "Corrupt cache blocks detected (dropped and refetched)")                                                   \
  COUNTER(cache_write_errors, "tagd_cache_write_errors_total", "Cache device write failures (disk full, I/O error)") \
  COUNTER(cache_stale_served, "tagd_cache_stale_served_total", "Stale entries served because the upstream failed")   \
  COUNTER(cache_invalidations, "tagd_cache_invalidations_total", "Entries invalidated by writes through tagd")       \
  COUNTER(cache_changed_resets, "tagd_cache_changed_resets_total",                                                   \
          "Responses cut (connection reset) because the object changed upstream after the head was sent")            \
  /* Part 7 (misses): what started each fill, and what prefetch fetched ahead of readers. */                       \
  FAMILY(cache_fill_causes, Counter, "tagd_cache_fills_by_cause_total", "cause", "Fills started, by what started them") \
  LABELLED(fill_cause_miss, cache_fill_causes, "miss")                                                               \
  LABELLED(fill_cause_range, cache_fill_causes, "range")                                                             \
  LABELLED(fill_cause_suffix, cache_fill_causes, "suffix")                                                           \
  LABELLED(fill_cause_conditional, cache_fill_causes, "conditional")                                                 \
  LABELLED(fill_cause_head, cache_fill_causes, "head")                                                               \
  LABELLED(fill_cause_block, cache_fill_causes, "block")                                                             \
  LABELLED(fill_cause_parallel, cache_fill_causes, "parallel")                                                       \
  LABELLED(fill_cause_readahead, cache_fill_causes, "readahead")                                                     \
  LABELLED(fill_cause_warm, cache_fill_causes, "warm")                                                               \
  COUNTER(cache_prefetch_bytes, "tagd_cache_prefetch_bytes_total",                                                   \
          "Bytes fetched ahead of readers (read-ahead and parallel parts)")                                          \
  COUNTER(cache_prefetch_used_bytes, "tagd_cache_prefetch_used_bytes_total", "Prefetched bytes a reader then read")  \
  COUNTER(cache_prefetch_unused_bytes, "tagd_cache_prefetch_unused_bytes_total",                                     \
          "Prefetched bytes forgotten unread (the prefetch ledger is bounded)")                                      \
  GAUGE(cache_prefetch_unread_bytes, "tagd_cache_prefetch_unread_bytes", "Prefetched bytes not read yet")            \
  COUNTER(cache_prefetch_budget_spent, "tagd_cache_prefetch_budget_spent_total",                                     \
          "Runs not fetched ahead of a reader because the prefetch budget was spent")                                \
  GAUGE(cache_enabled, "tagd_cache_enabled", "1 if the cache is in use")                                             \
  GAUGE(inflight_requests, "tagd_inflight_requests", "Requests in flight")                                           \
  GAUGE(open_connections, "tagd_open_connections", "Client connections open")                                        \
  GAUGE(io_uring_enabled, "tagd_io_uring_enabled", "1 if io_uring is in use, 0 if tagd fell back")                   \
  GAUGE(io_uring_sockets, "tagd_io_uring_sockets", "1 if sockets run on io_uring, 0 on the epoll reactor")           \
  GAUGE(disk_io_uring, "tagd_disk_io_uring", "1 if cached block reads go through io_uring, 0 through a pread pool")  \
  GAUGE(disk_direct_io, "tagd_disk_direct_io", "1 if the block file is read with O_DIRECT, 0 through the page cache") \
  GAUGE(disk_reads_in_flight, "tagd_disk_reads_in_flight", "Asynchronous cache block reads in flight")              \
  GAUGE(draining, "tagd_draining", "1 while shutting down")
// clang-format on

// Expands to nothing: pass it for the entry kinds a consumer of the list does not need.
#define TAGD_METRIC_IGNORE(...)

// One descriptor type per labelled family: metric_family::responses::type is Counter, etc.
namespace metric_family {
#define TAGD_METRIC_FAMILY_DESCRIPTOR(family, Kind, prom_name, label, help_text) \
  struct family {                                                                \
    using type = Kind;                                                           \
    static constexpr std::string_view name = prom_name;                          \
    static constexpr std::string_view label_name = label;                        \
    static constexpr std::string_view help = help_text;                          \
  };
TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_FAMILY_DESCRIPTOR, TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_FAMILY_DESCRIPTOR
}  // namespace metric_family

struct Metrics {
#define TAGD_METRIC_COUNTER_MEMBER(member, prom_name, help) Counter member;
#define TAGD_METRIC_GAUGE_MEMBER(member, prom_name, help) Gauge member;
#define TAGD_METRIC_LABELLED_MEMBER(member, family, label_value) metric_family::family::type member;
  TAGD_ALL_METRICS(TAGD_METRIC_COUNTER_MEMBER, TAGD_METRIC_GAUGE_MEMBER, TAGD_METRIC_IGNORE,
                   TAGD_METRIC_LABELLED_MEMBER)
#undef TAGD_METRIC_COUNTER_MEMBER
#undef TAGD_METRIC_GAUGE_MEMBER
#undef TAGD_METRIC_LABELLED_MEMBER

  std::string render_prometheus() const;
};

Metrics& metrics();

}  // namespace tagd
