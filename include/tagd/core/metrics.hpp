#pragma once
// Process-wide counters, rendered in the Prometheus text format at GET /metrics.
// Relaxed atomics: each counter is independent, readers tolerate slight skew.
//
// Every metric is declared exactly once, in TAGD_ALL_METRICS below (the model is Envoy's
// ALL_X_STATS(COUNTER, GAUGE) lists). The Metrics members, the family descriptors and
// the /metrics renderer are all generated from it, so a metric cannot exist in one
// place and be missing (or misspelled) in another.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
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

// Every latency histogram shares these bucket bounds (seconds): from a DRAM hit (~100 us)
// through a disk read and an upstream round trip to a large object over a slow link. Fixed
// so that series of different histograms and of different tagd versions can be compared
// and aggregated; a value above the last bound falls in +Inf.
struct HistogramBound {
  std::int64_t upper_ns;
  std::string_view le;  // the bound as Prometheus' le label spells it
};
inline constexpr std::array<HistogramBound, 18> kLatencyBuckets{{{100'000, "0.0001"},
                                                                {250'000, "0.00025"},
                                                                {500'000, "0.0005"},
                                                                {1'000'000, "0.001"},
                                                                {2'500'000, "0.0025"},
                                                                {5'000'000, "0.005"},
                                                                {10'000'000, "0.01"},
                                                                {25'000'000, "0.025"},
                                                                {50'000'000, "0.05"},
                                                                {100'000'000, "0.1"},
                                                                {250'000'000, "0.25"},
                                                                {500'000'000, "0.5"},
                                                                {1'000'000'000, "1"},
                                                                {2'500'000'000, "2.5"},
                                                                {5'000'000'000, "5"},
                                                                {10'000'000'000, "10"},
                                                                {30'000'000'000, "30"},
                                                                {60'000'000'000, "60"}}};

// One latency histogram: a relaxed atomic per bucket (not cumulative: observe() touches one
// bucket and the sum), made cumulative when rendered. _count is rendered as the sum of the
// buckets read, so it always equals the +Inf bucket of the same scrape.
class Histogram {
 public:
  static constexpr std::size_t kBuckets = kLatencyBuckets.size();
  void observe(std::chrono::nanoseconds d) noexcept {
    const std::int64_t ns = std::max<std::int64_t>(0, d.count());
    std::size_t i = 0;
    while (i < kBuckets && ns > kLatencyBuckets[i].upper_ns) ++i;  // le: a value equal to a bound is in it
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
  }
  // Observations in bucket i alone (i == kBuckets: above the last bound).
  std::uint64_t in_bucket(std::size_t i) const noexcept { return counts_[i].load(std::memory_order_relaxed); }
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
    return n;
  }
  std::uint64_t sum_ns() const noexcept { return sum_ns_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets + 1> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

// A histogram per combination of fixed label values. Each Dim is a type with
// `static constexpr std::string_view name` and `static constexpr std::array values`: the
// label set is closed, so the series are all known (and all rendered) from the start and
// a label value can never come from request data (no unbounded cardinality).
template <class... Dims>
class HistogramVec {
 public:
  static constexpr std::string_view kPromType = "histogram";
  static constexpr std::size_t kDims = sizeof...(Dims);
  static constexpr std::size_t kSeries = (std::size_t{1} * ... * Dims::values.size());
  static constexpr std::array<std::string_view, kDims> kLabelNames{Dims::name...};

  // One index (an enum or integer) per dimension, in order; an index past its
  // dimension's last value counts as that last value.
  template <class... Index>
    requires(sizeof...(Index) == kDims)
  Histogram& at(Index... index) noexcept {
    std::size_t flat = 0;
    ((flat = flat * Dims::values.size() +
             std::min<std::size_t>(static_cast<std::size_t>(index), Dims::values.size() - 1)),
     ...);
    return series_[flat];
  }
  const Histogram& series(std::size_t flat) const noexcept { return series_[flat]; }
  // The label values of series `flat`, in dimension order.
  static std::array<std::string_view, kDims> label_values(std::size_t flat) {
    std::array<std::string_view, kDims> out{};
    if constexpr (kDims > 0) {
      const std::array<const std::string_view*, kDims> lists{Dims::values.data()...};
      const std::array<std::size_t, kDims> extents{Dims::values.size()...};
      for (std::size_t d = kDims; d-- > 0;) {
        out[d] = lists[d][flat % extents[d]];
        flat /= extents[d];
      }
    }
    return out;
  }

 private:
  std::array<Histogram, kSeries> series_{};
};

// Label dimensions of the histograms below.
namespace metric_label {
// What a request did, coarsely: object reads, writes, listings, everything else.
struct Op {
  static constexpr std::string_view name = "op";
  enum Value : std::size_t { kGet, kHead, kPut, kList, kOther };
  static constexpr std::array<std::string_view, 5> values{"get", "head", "put", "list", "other"};
};
// CacheOutcome (core/cache_outcome.hpp), in its enum order: "none" for requests that are
// not object reads.
struct CacheResult {
  static constexpr std::string_view name = "result";
  static constexpr std::array<std::string_view, 6> values{"none", "hit", "miss", "revalidated", "bypass", "disabled"};
};
}  // namespace metric_label

// The one list of metrics. Entry kinds:
//   COUNTER(member, "exported_name", "help")    a plain counter: Counter member;
//   GAUGE(member, "exported_name", "help")      a plain gauge:   Gauge member;
//   FAMILY(family, Kind, "exported_name", "label_name", "help")
//                                               a labelled family (Kind is Counter or
//                                               Gauge); HELP/TYPE are rendered once for it
//   LABELLED(member, family, "label_value")     one series of a family: Kind member;
//                                               rendered as exported_name{label_name="label_value"}
//   HISTOGRAM(member, "exported_name", "help", Dim...)
//                                               latency histograms, one per combination of
//                                               the Dims' values (metric_label::...; none:
//                                               one histogram): HistogramVec<Dim...> member;
//                                               rendered as _bucket{...,le=".."}, _sum, _count
// Entries render in list order; a family renders all its LABELLED members (in list order)
// where its FAMILY entry stands. Exported names and help texts are part of the interface
// (dashboards, docs and the integration tests grep them): do not rename.
// No "//" comments inside the macro: the line continuation would swallow the next line.
// clang-format off
#define TAGD_ALL_METRICS(COUNTER, GAUGE, FAMILY, LABELLED, HISTOGRAM)                                                \
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
  /* Part 8 (operations): latency histograms, bytes by source, admission. */                                        \
  HISTOGRAM(request_duration, "tagd_request_duration_seconds",                                                       \
            "S3 requests from the parsed head to the last byte sent, by operation and cache result",                 \
            metric_label::Op, metric_label::CacheResult)                                                             \
  HISTOGRAM(upstream_latency, "tagd_upstream_latency_seconds",                                                       \
            "Upstream attempts from taking a connection to the response head")                                      \
  FAMILY(served_bytes, Counter, "tagd_served_bytes_total", "source",                                                \
         "Body bytes sent to clients by where they came from")                                                       \
  LABELLED(served_bytes_dram, served_bytes, "dram")                                                                  \
  LABELLED(served_bytes_disk, served_bytes, "disk")                                                                  \
  LABELLED(served_bytes_upstream, served_bytes, "upstream")                                                          \
  FAMILY(admission_sheds, Counter, "tagd_admission_shed_total", "reason",                                            \
         "Requests or connections refused by admission control, by the limit that refused them")                    \
  LABELLED(shed_requests, admission_sheds, "requests")                                                               \
  LABELLED(shed_bytes, admission_sheds, "bytes")                                                                     \
  LABELLED(shed_connections, admission_sheds, "connections")                                                         \
  GAUGE(inflight_response_bytes, "tagd_inflight_response_bytes",                                                     \
        "Response body bytes admitted and not sent yet (each response counts at most its admission window)")        \
  GAUGE(max_connections, "tagd_max_connections", "limits.max_connections (0: no cap)")                              \
  GAUGE(max_inflight_requests, "tagd_max_inflight_requests", "limits.max_inflight_requests")                         \
  GAUGE(max_inflight_bytes, "tagd_max_inflight_bytes", "limits.max_inflight_bytes (0: no limit)")                    \
  GAUGE(cache_capacity_bytes, "tagd_cache_capacity_bytes", "Size of the cache's block file")                         \
  GAUGE(cache_used_bytes, "tagd_cache_used_bytes", "Block-file bytes in use (whole regions that hold blocks)")       \
  GAUGE(cache_memory_capacity_bytes, "tagd_cache_memory_capacity_bytes", "Size of the DRAM tier")                    \
  GAUGE(cache_memory_used_bytes, "tagd_cache_memory_used_bytes", "Bytes held by the DRAM tier")                      \
  COUNTER(cache_memory_promotions_declined, "tagd_cache_memory_promotions_declined_total",                             \
          "Blocks read from disk not kept by a full DRAM tier (not read from disk twice recently)")                  \
  COUNTER(cache_region_evictions, "tagd_cache_region_evictions_total", "Regions of the block file evicted for reuse") \
  COUNTER(cache_evicted_bytes, "tagd_cache_evicted_bytes_total", "Bytes of block-file regions evicted for reuse")    \
  COUNTER(client_timeouts, "tagd_client_timeouts_total", "Connections cut because the client was too slow")          \
  COUNTER(client_aborts, "tagd_client_aborts_total", "Clients that went away mid-response")                          \
  /* TLS listener and SIGHUP reloads (server/tls_listener.cpp, main.cpp). */                                        \
  GAUGE(tls_enabled, "tagd_tls_enabled", "1 if the listener speaks HTTPS (tls.cert_file)")                           \
  COUNTER(tls_handshake_failures, "tagd_tls_handshake_failures_total",                                               \
          "Client connections dropped because the TLS handshake failed or timed out")                                \
  GAUGE(tls_certificate_expiry, "tagd_tls_certificate_expiry_timestamp_seconds",                                      \
        "notAfter of the listener certificate in use, Unix seconds")                                                 \
  FAMILY(tls_reloads, Counter, "tagd_tls_reloads_total", "result",                                                   \
         "Listener certificate reloads on SIGHUP (failed: the old certificate stays)")                               \
  LABELLED(tls_reloads_ok, tls_reloads, "ok")                                                                        \
  LABELLED(tls_reloads_failed, tls_reloads, "failed")                                                                \
  FAMILY(credentials_reloads, Counter, "tagd_credentials_reloads_total", "result",                                   \
         "Client key reloads on SIGHUP (failed: the old keys stay)")                                                 \
  LABELLED(credentials_reloads_ok, credentials_reloads, "ok")                                                        \
  LABELLED(credentials_reloads_failed, credentials_reloads, "failed")                                                \
  GAUGE(client_keys, "tagd_client_keys", "Client access keys in use")                                                \
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
  COUNTER(cache_revalidations_joined, "tagd_cache_revalidations_joined_total",                                      \
          "Reads of a stale object that waited for another request's revalidation instead of sending their own")    \
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
  COUNTER(cache_prefetch_held, "tagd_cache_prefetch_held_total",                                                     \
          "Runs not fetched ahead yet because the object had cache.fetch_parallelism fetches in flight")             \
  COUNTER(cache_readahead_parallel_reads, "tagd_cache_readahead_parallel_reads_total",                               \
          "Ranged GETs given no read-ahead because the client had other ranged GETs of the object in flight")        \
  GAUGE(cache_fill_write_queue_bytes, "tagd_cache_fill_write_queue_bytes",                                           \
        "Finished fill blocks waiting for their disk write (readers copy them from memory meanwhile)")               \
  COUNTER(cache_fill_writes_inline, "tagd_cache_fill_writes_inline_total",                                           \
          "Fill blocks written on the event loop because the write queue was full")                                  \
  GAUGE(cache_fill_buffer_pool_bytes, "tagd_cache_fill_buffer_pool_bytes",                                           \
        "Idle fill block buffers kept for reuse (an eighth of cache.memory_size, 8 blocks to 64 MiB)")             \
  COUNTER(cache_fill_buffers_allocated, "tagd_cache_fill_buffers_allocated_total",                                   \
          "Fill block buffers taken from the allocator because none was idle (fresh pages to fault in)")            \
  COUNTER(cache_fill_buffers_unshared, "tagd_cache_fill_buffers_unshared_total",                                     \
          "Fill block buffers in plain memory because no memfd slot could be had (their hits are copied into "       \
          "the socket, not sent from the file)")                                                                   \
  COUNTER(response_body_bytes_sendfile, "tagd_response_body_bytes_sendfile_total",                                   \
          "Response body bytes handed to the kernel by reference (sendfile from the DRAM tier), not copied")         \
  COUNTER(warm_jobs_started, "tagd_warm_jobs_total", "Warm jobs started through the admin API")                    \
  GAUGE(warm_jobs_running, "tagd_warm_jobs_running", "Warm jobs listing or filling")                                 \
  FAMILY(warm_objects, Counter, "tagd_warm_objects_total", "result", "Objects warm jobs finished, by result")         \
  LABELLED(warm_objects_filled, warm_objects, "filled")                                                              \
  LABELLED(warm_objects_cached, warm_objects, "cached")                                                              \
  LABELLED(warm_objects_failed, warm_objects, "failed")                                                              \
  FAMILY(warm_bytes, Counter, "tagd_warm_bytes_total", "source",                                                     \
         "Object bytes warm jobs read through the cache, by where they came from (upstream: fetched, cache: found "   \
         "cached)")                                                                                                   \
  LABELLED(warm_bytes_fetched, warm_bytes, "upstream")                                                               \
  LABELLED(warm_bytes_cached, warm_bytes, "cache")                                                                   \
  COUNTER(warm_jobs_refused, "tagd_warm_jobs_refused_total",                                                          \
          "Warm jobs refused because warm.max_jobs jobs were running")                                               \
  COUNTER(warm_budget_waits, "tagd_warm_budget_waits_total",                                                          \
          "Times a warm job's fetch found the fill budget spent and waited to retry")                               \
  GAUGE(cache_enabled, "tagd_cache_enabled", "1 if the cache is in use")                                             \
  GAUGE(inflight_requests, "tagd_inflight_requests", "Requests in flight")                                           \
  GAUGE(open_connections, "tagd_open_connections", "Client connections open")                                        \
  GAUGE(io_uring_enabled, "tagd_io_uring_enabled", "1 if io_uring is in use, 0 if tagd fell back")                   \
  GAUGE(io_uring_sockets, "tagd_io_uring_sockets", "1 if sockets run on io_uring, 0 on the epoll reactor")           \
  GAUGE(disk_io_uring, "tagd_disk_io_uring", "1 if cached block reads go through io_uring, 0 through a pread pool")  \
  GAUGE(disk_direct_io, "tagd_disk_direct_io", "1 if the block file is read with O_DIRECT, 0 through the page cache") \
  GAUGE(disk_reads_in_flight, "tagd_disk_reads_in_flight", "Asynchronous cache block reads in flight")              \
  /* Upload notifications (src/notify): outbox, delivery, dead letters, a full outbox. */                         \
  COUNTER(notify_events_recorded, "tagd_notify_events_recorded_total",                                               \
          "Notification events fsynced into the outbox (one per matching endpoint)")                                 \
  COUNTER(notify_events_delivered, "tagd_notify_events_delivered_total", "Notification events acknowledged (2xx)")   \
  COUNTER(notify_delivery_failures, "tagd_notify_delivery_failures_total",                                           \
          "Webhook POSTs that failed (retried with backoff)")                                                        \
  COUNTER(notify_dead_lettered, "tagd_notify_dead_lettered_total",                                                   \
          "Notification events given up after notify max_attempts (dead letters)")                                   \
  COUNTER(notify_dropped_events, "tagd_notify_dropped_events_total",                                                 \
          "Notification events dropped because the outbox was full (when_full=drop)")                                \
  COUNTER(notify_rejected_writes, "tagd_notify_rejected_writes_total",                                               \
          "Writes refused with SlowDown because the outbox was full (when_full=reject)")                             \
  COUNTER(notify_outbox_errors, "tagd_notify_outbox_errors_total",                                                   \
          "Notification events the outbox could not write (their writes were answered 503)")                         \
  COUNTER(notify_size_unknown, "tagd_notify_size_unknown_total",                                                    \
          "Copy/multipart events recorded with size 0: the HEAD after the write failed")                             \
  GAUGE(notify_outbox_events, "tagd_notify_outbox_events", "Notification events waiting for delivery")               \
  GAUGE(notify_dead_letters, "tagd_notify_dead_letter_events", "Dead-lettered notification events kept")             \
  GAUGE(notify_endpoints, "tagd_notify_endpoints", "Notification endpoints configured (a SIGHUP reload changes it)") \
  FAMILY(notify_reloads, Counter, "tagd_notify_reloads_total", "result",                                             \
         "Notification config reloads on SIGHUP (failed: the old endpoints stay)")                                   \
  LABELLED(notify_reloads_ok, notify_reloads, "ok")                                                                  \
  LABELLED(notify_reloads_failed, notify_reloads, "failed")                                                          \
  /* Scan resistance (cache.eviction_policy=hit-gated, src/cache/hit_gated_eviction.cpp). */                          \
  COUNTER(cache_fills_declined, "tagd_cache_fills_declined_total",                                                   \
          "Misses served without caching because every cache region was still being read (hit-gated)")              \
  COUNTER(cache_regions_evicted_dead, "tagd_cache_regions_evicted_dead_total",                                       \
          "Regions reused because nothing read them for twice the cache's blocks in reads (hit-gated)")              \
  /* Pins (warm --pin, cache.pin_quota; src/cache/block_store.cpp, docs/warm.md). */                                \
  GAUGE(cache_pinned_bytes, "tagd_cache_pinned_bytes", "Block-file bytes held by pins (whole regions)")               \
  GAUGE(cache_pin_quota_bytes, "tagd_cache_pin_quota_bytes", "Block-file bytes pins may hold (cache.pin_quota)")      \
  COUNTER(cache_pins_refused, "tagd_cache_pins_refused_total",                                                       \
          "Objects (or refilled blocks) not pinned because the pin quota was spent")                                  \
  COUNTER(cache_pin_blocked_writes, "tagd_cache_pin_blocked_writes_total",                                           \
          "Block writes refused because every evictable cache region was pinned")                                     \
  COUNTER(cache_pin_records_failed, "tagd_cache_pin_record_failures_total",                                          \
          "Pin records the index failed to write or erase (a pin not recorded is not taken)")                        \
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
TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_FAMILY_DESCRIPTOR, TAGD_METRIC_IGNORE,
                 TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_FAMILY_DESCRIPTOR
}  // namespace metric_family

struct Metrics {
#define TAGD_METRIC_COUNTER_MEMBER(member, prom_name, help) Counter member;
#define TAGD_METRIC_GAUGE_MEMBER(member, prom_name, help) Gauge member;
#define TAGD_METRIC_LABELLED_MEMBER(member, family, label_value) metric_family::family::type member;
#define TAGD_METRIC_HISTOGRAM_MEMBER(member, prom_name, help, ...) HistogramVec<__VA_ARGS__> member;
  TAGD_ALL_METRICS(TAGD_METRIC_COUNTER_MEMBER, TAGD_METRIC_GAUGE_MEMBER, TAGD_METRIC_IGNORE,
                   TAGD_METRIC_LABELLED_MEMBER, TAGD_METRIC_HISTOGRAM_MEMBER)
#undef TAGD_METRIC_COUNTER_MEMBER
#undef TAGD_METRIC_GAUGE_MEMBER
#undef TAGD_METRIC_LABELLED_MEMBER
#undef TAGD_METRIC_HISTOGRAM_MEMBER

  std::string render_prometheus() const;
};

Metrics& metrics();

}  // namespace tagd
