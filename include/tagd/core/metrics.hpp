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
  Gauge inflight_requests;
  Gauge open_connections;
  Gauge io_uring_enabled;  // 1 when the io_uring probe succeeded and it is in use
  Gauge draining;

  std::string render_prometheus() const;
};

Metrics& metrics();

}  // namespace tagd
