#pragma once
// Process-wide counters, rendered in the Prometheus text format at GET /metrics.
// Relaxed atomics: each counter is independent, readers tolerate slight skew.
#include <atomic>
#include <cstdint>
#include <string>

namespace tagd {

class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

struct Metrics {
  Counter requests_total;
  Counter responses_2xx, responses_3xx, responses_4xx, responses_5xx;
  Counter request_body_bytes;   // payload bytes received from clients
  Counter response_body_bytes;  // bytes sent to clients
  Counter auth_failures;
  Counter policy_denials;
  Counter body_verification_failures;  // digest/chunk-signature mismatches (upload aborted)
  Counter slow_down_rejections;        // max_inflight_requests reached
  Counter client_timeouts;             // head or body did not arrive in time
  Counter client_aborts;               // client went away mid-response
  Counter upstream_requests;
  Counter upstream_retries;
  Counter upstream_errors;             // answered 502/503/504 because of the upstream
  Counter upstream_truncated_bodies;   // upstream response ended early
  Counter upstream_connect_errors;
  Counter upstream_tls_errors;
  Counter upstream_connections_opened;
  Counter upstream_connections_reused;
  // Cache. X-Cache on each object response is derived from the same outcome that bumps
  // exactly one of these five (TAG bug 10: the two drifted apart).
  Counter cache_hits, cache_misses, cache_revalidated, cache_bypass, cache_disabled;
  Counter cache_hit_bytes;             // body bytes served from the cache
  Counter cache_fill_bytes;            // bytes fetched from upstream into the cache
  Counter cache_fills_started, cache_fills_completed, cache_fills_failed;
  Counter cache_fills_rejected;        // admission budget spent: served, not cached
  Counter cache_joined_fills;          // requests that joined a fill in progress
  Counter cache_checksum_failures;     // corrupt blocks detected on read (then refetched)
  Counter cache_write_errors;          // device write failures (disk full, I/O error)
  Counter cache_stale_served;          // stale entries served because the upstream failed
  Counter cache_invalidations;
  Counter cache_changed_resets;        // cached object changed upstream mid-response: client connection reset
  Gauge cache_enabled;
  Gauge inflight_requests;
  Gauge open_connections;
  Gauge io_uring_enabled;  // 1 when the io_uring probe succeeded and it is in use
  Gauge draining;

  std::string render_prometheus() const;
};

Metrics& metrics();

}  // namespace tagd
